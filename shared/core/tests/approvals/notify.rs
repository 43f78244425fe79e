//! Opening an approval and posting its messages: retried steps, reused ids, unreachable targets.

use super::*;

#[tokio::test]
async fn a_vote_between_a_failed_notifier_and_its_retry_resumes_the_retrys_token() {
    let (f, s) = opened("r14", DEPLOY).await;
    // The first notifier attempt failed after opening: its token died with it.
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let first = s.vote(&ballot("r14", "alice@example.com")).await.unwrap();
    assert!(matches!(
        first,
        VoteResult::Counted {
            closed: Some(Closed { resumed: false, .. }),
            ..
        }
    ));
    let r = request("r14").build();
    let retried = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-2"),
            &execution_of("r14"),
        )
        .await
        .unwrap();
    assert!(retried.approval.resumed);
    let calls = f.tokens.calls();
    assert!(
        matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-2"),
        "{calls:?}"
    );
    assert_eq!(
        f.chat.posts.lock().unwrap().len(),
        1,
        "the retry posts nothing new"
    );
    let decided = f
        .kinds("r14")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
}

#[tokio::test]
async fn another_execution_reusing_a_live_request_id_is_refused_and_changes_nothing() {
    let (f, s) = opened("r15", DEPLOY).await;
    let r = request("r15")
        .change("iam_change", "production", "iam_role", "payments")
        .build();
    let hijack = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-b"),
            "execution-b",
        )
        .await
        .unwrap_err();
    assert_eq!(hijack.name().as_str(), "RequestIdInUse");
    assert!(
        hijack.to_string().contains(&execution_of("r15")),
        "{hijack}"
    );
    let item = f.pending.item("r15").unwrap();
    assert_eq!(item.task_token.expose(), "token-1");
    assert_eq!(f.chat.posts.lock().unwrap().len(), 1);
    s.vote(&ballot("r15", "alice@example.com")).await.unwrap();
    let calls = f.tokens.calls();
    assert!(matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-1"));
    assert!(s.expire("r15", "execution-b").await.unwrap().is_none());
    assert_eq!(
        f.pending.item("r15").unwrap().state,
        ApprovalState::Approved
    );
}

#[tokio::test]
async fn a_retried_notifier_keeps_the_approval_posts_nothing_new_and_takes_the_new_token() {
    let (f, s) = opened("r7", DEPLOY).await;
    let r = request("r7").build();
    let evaluation = first_evaluation(&r, s.now());
    let again = s
        .notify(
            &r,
            &evaluation,
            &TaskToken::new("token-2"),
            &execution_of("r7"),
        )
        .await
        .unwrap();
    assert_eq!(again.approval.task_token.expose(), "token-2");
    assert_eq!(again.approval.messages.len(), 1);
    assert_eq!(f.chat.posts.lock().unwrap().len(), 1);
    assert_eq!(f.kinds("r7"), [EventKind::Notified]);
}

#[tokio::test]
async fn a_request_no_platform_serves_fails_with_chat_no_target() {
    let f = Fakes::default();
    let s = f.approvals();
    let r = request("r9").build();
    let mut evaluation = first_evaluation(&r, s.now());
    evaluation
        .decision
        .notify
        .retain(|t| matches!(t, regate_core::NotifyTarget::Teams { .. }));
    let error = s
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("r9"))
        .await
        .unwrap_err();
    assert_eq!(error.name().as_str(), "Chat.NoTarget");
    assert!(error.to_string().contains("teams"), "{error}");
}

#[tokio::test]
async fn a_notifier_that_posted_but_died_before_recording_it_is_not_posted_twice() {
    let (f, s) = opened("r18", DEPLOY).await;
    // The first attempt posted and recorded its intent, then died before recording the message.
    f.pending.edit("r18", |item| item.messages.clear());
    let r = request("r18").build();
    let retried = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-2"),
            &execution_of("r18"),
        )
        .await
        .unwrap();
    assert_eq!(
        f.chat.posts.lock().unwrap().len(),
        1,
        "no second live message"
    );
    assert_eq!(
        retried.approval.messages.len(),
        1,
        "the first message is adopted"
    );
    assert!(retried
        .approval
        .posting
        .contains(&"slack:C0PAYMENTS".to_string()));
}

#[tokio::test]
async fn a_person_who_cannot_be_reached_is_an_error_on_the_request_and_the_others_are_asked() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    fakes
        .chat
        .strangers
        .lock()
        .unwrap()
        .push("alice@example.com".into());
    let asking = request("dm-1").with(
        "details",
        serde_json::json!({"ask": ["alice@example.com", "bob@example.com"]}),
    );
    let r = asking.build();
    let evaluation = first_evaluation(&r, approvals.now());
    let keys: Vec<String> = evaluation.decision.notify.iter().map(|t| t.key()).collect();
    assert!(
        keys.contains(&"slack-user:alice@example.com".to_string()),
        "{keys:?}"
    );
    let notified = approvals
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("dm-1"))
        .await
        .unwrap();
    // The channel message went out; bob's Teams message is not this fake's platform.
    assert_eq!(notified.approval.messages.len(), 1);
    let errors: Vec<_> = fakes
        .log
        .of("dm-1")
        .into_iter()
        .filter(|e| e.kind == EventKind::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].data["unreachable"], "alice@example.com");
    assert!(
        errors[0].reasons[0].contains("cannot be asked directly on slack"),
        "{errors:?}"
    );
    // A retried step tries again and logs nothing new.
    approvals
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("dm-1"))
        .await
        .unwrap();
    let kinds = fakes.kinds("dm-1");
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::Error).count(), 1);
}
