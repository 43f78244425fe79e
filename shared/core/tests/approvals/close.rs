//! Closing once and resuming once: timeouts, throttled resumes, claims, lost answers, bursts.

use super::*;

#[tokio::test]
async fn an_owner_approval_closes_the_request_and_resumes_the_workflow_once() {
    let (f, s) = opened("r1", DEPLOY).await;
    let result = s.vote(&ballot("r1", "Alice@Example.com")).await.unwrap();
    let VoteResult::Counted {
        approval, closed, ..
    } = result
    else {
        panic!("{result:?}")
    };
    assert_eq!(
        closed,
        Some(Closed {
            state: ApprovalState::Approved,
            resumed: true
        })
    );
    assert_eq!(approval.decided_by.as_deref(), Some("alice@example.com"));
    let calls = f.tokens.calls();
    assert_eq!(calls.len(), 1);
    let Resumed::Success { token, output } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(token, "token-1");
    assert_eq!(output["request_id"], "r1");
    assert_eq!(
        output["approvers"],
        serde_json::json!(["alice@example.com"])
    );
    assert!(output["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        f.kinds("r1"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    regate_core::chain::verify_chain("r1", &f.log.of("r1")).unwrap();
    let updates = f.chat.updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 1, "the message shows the decision");
    assert_eq!(updates[0].1, ApprovalState::Approved);
}

#[tokio::test]
async fn a_decision_records_when_its_approval_opened_so_its_input_can_be_rebuilt() {
    let (f, s) = opened("r1t", DEPLOY).await;
    let opened_at = f.pending.item("r1t").unwrap().created_at;
    f.clock.advance(chrono::Duration::minutes(40));
    let mut click = ballot("r1t", "alice@example.com");
    click.at = opened_at + chrono::Duration::minutes(40);
    s.vote(&click).await.unwrap();
    let events = f.log.of("r1t");
    let decided = events
        .iter()
        .find(|e| e.kind == EventKind::Decided)
        .unwrap();
    let text = |key: &str| decided.data[key].as_str().unwrap().to_string();
    assert_eq!(
        text("opened_at"),
        regate_core::time::format_rfc3339_ms(opened_at)
    );
    assert_eq!(
        text("now"),
        regate_core::time::format_rfc3339_ms(opened_at + chrono::Duration::minutes(40))
    );
    // The digest is of the input with `opened_at`: evaluating it again gives the same one.
    let item = f.pending.item("r1t").unwrap();
    let again = regate_testkit::default_policy()
        .evaluate(
            &regate_core::PreparedRequest::new(item.request.clone()).unwrap(),
            &item.votes,
            regate_core::EvaluationTime::since(opened_at, item.decided_at.unwrap()),
        )
        .unwrap();
    assert_eq!(
        decided.input_digest.as_deref(),
        Some(again.input_digest.as_str())
    );
}

#[tokio::test]
async fn a_vote_after_the_timeout_ends_expired_and_the_voter_is_told() {
    let (f, s) = opened("r5", DEPLOY).await;
    // The task timed out: its token is closed and the Expire step has not run yet.
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let result = s.vote(&ballot("r5", "bob@example.com")).await.unwrap();
    assert!(
        matches!(
            result,
            VoteResult::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert!(result
        .explanation()
        .unwrap()
        .contains("still handing the decision"));
    assert!(
        !f.kinds("r5").contains(&EventKind::Decided),
        "nobody took the decision"
    );
    let expired = s.expire("r5", &execution_of("r5")).await.unwrap().unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
    assert!(expired.resumed);
    assert_eq!(
        f.kinds("r5"),
        [EventKind::Notified, EventKind::Vote, EventKind::Expired]
    );
    let updates = f.chat.updates.lock().unwrap().clone();
    assert_eq!(updates.last().unwrap().1, ApprovalState::Expired);
    assert!(f.tokens.calls().is_empty());
}

#[tokio::test]
async fn a_vote_on_a_workflow_that_ended_otherwise_ends_expired_at_once() {
    let (f, s) = opened("r11", DEPLOY).await;
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let failed = ExecutionStatus::Failed(Some("ApprovalExpired".into()));
    f.tokens
        .executions
        .lock()
        .unwrap()
        .insert(execution_of("r11"), failed);
    let result = s.vote(&ballot("r11", "bob@example.com")).await.unwrap();
    let VoteResult::Counted { approval, .. } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(approval.state, ApprovalState::Expired);
    assert_eq!(
        f.kinds("r11"),
        [EventKind::Notified, EventKind::Vote, EventKind::Expired]
    );
}

#[tokio::test]
async fn a_throttled_resume_is_owed_and_a_later_click_carries_it_out_once() {
    let (f, s) = opened("r12", DEPLOY).await;
    f.tokens.fault.set(TaskTokenError::Throttled(
        "Rate exceeded for arn:aws:states:secret".into(),
    ));
    let counted = s.vote(&ballot("r12", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            counted,
            VoteResult::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            }
        ),
        "the vote counts; resuming is owed: {counted:?}"
    );
    let item = f.pending.item("r12").unwrap();
    assert!(item.owes_resume(), "closed, not resumed: {item:?}");
    let logged = serde_json::to_string(&f.log.of("r12")).unwrap();
    assert!(logged.contains("StepFunctions.Throttled"), "{logged}");
    assert!(
        !logged.contains("Rate exceeded"),
        "no raw service text in the log"
    );
    f.tokens.fault.clear();
    let later = s.vote(&ballot("r12", "bob@example.com")).await.unwrap();
    assert!(
        matches!(later, VoteResult::AlreadyDecided { .. }),
        "{later:?}"
    );
    assert_eq!(f.tokens.calls().len(), 1);
    assert!(f.pending.item("r12").unwrap().resumed);
    let decided = f
        .kinds("r12")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
    // Nothing is owed any more: another click resumes nothing and logs no second decision.
    s.vote(&ballot("r12", "carol@example.com")).await.unwrap();
    assert_eq!(f.tokens.calls().len(), 1);
    regate_core::chain::verify_chain("r12", &f.log.of("r12")).unwrap();
}

#[tokio::test]
async fn a_live_claim_to_resume_keeps_other_paths_off_until_it_lapses() {
    let (f, s) = opened("r19", DEPLOY).await;
    f.tokens
        .fault
        .set(TaskTokenError::Unavailable("connection reset".into()));
    s.vote(&ballot("r19", "alice@example.com")).await.unwrap();
    f.tokens.fault.clear();
    // A path took the duty over and died mid-call (a Lambda timeout): its claim is live.
    f.pending.edit("r19", |i| {
        i.resume_claims += 1;
        i.resume_until = Some(s.now() + chrono::Duration::seconds(90));
    });
    let late = s.vote(&ballot("r19", "bob@example.com")).await.unwrap();
    assert!(
        matches!(late, VoteResult::AlreadyDecided { .. }),
        "{late:?}"
    );
    let report = s.sweep(SweepBudget::items(10)).await.unwrap();
    assert_eq!(report.waiting, 1, "{report:?}");
    assert!(
        f.tokens.calls().is_empty(),
        "nobody calls Step Functions while another path holds the claim"
    );
    f.clock.advance(chrono::Duration::seconds(91));
    let report = s.sweep(SweepBudget::items(10)).await.unwrap();
    assert_eq!(report.resumed, 1, "{report:?}");
    assert_eq!(f.tokens.calls().len(), 1);
    assert!(f.pending.item("r19").unwrap().resumed);
}

#[tokio::test]
async fn a_close_whose_answer_was_lost_is_recognised_as_its_own() {
    let (f, s) = opened("r13", DEPLOY).await;
    f.pending.lose_next_answer_after(1);
    let result = s.vote(&ballot("r13", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            result,
            VoteResult::Counted {
                closed: Some(Closed { resumed: true, .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert_eq!(f.tokens.calls().len(), 1);
    assert_eq!(f.kinds("r13").last(), Some(&EventKind::Decided));
}

#[tokio::test]
async fn a_counted_vote_whose_click_did_not_log_it_is_logged_before_the_decision() {
    // An IAM change needs an owner and security. Alice's (owner) vote is stored, not logged;
    // Ivan's (security) vote decides it: the decision counts both, so both must be in the log.
    let (f, s) = opened("r27", IAM).await;
    vote_stored_not_logged(&f, &s, "r27", "alice@example.com").await;
    let deciding = s.vote(&ballot("r27", "ivan@example.com")).await.unwrap();
    assert!(
        matches!(
            deciding,
            VoteResult::Counted {
                closed: Some(Closed {
                    state: ApprovalState::Approved,
                    resumed: true
                }),
                ..
            }
        ),
        "{deciding:?}"
    );
    assert_eq!(
        f.kinds("r27"),
        [
            EventKind::Notified,
            EventKind::Vote,
            EventKind::Vote,
            EventKind::Decided
        ]
    );
    let votes = vote_events(&f, "r27");
    assert_eq!(votes[0], ("ivan@example.com".to_string(), vec![]));
    assert_eq!(votes[1].0, "alice@example.com");
    assert!(
        votes[1].1[0].contains("logged when the request was decided"),
        "{votes:?}"
    );
    // The decided event counts exactly the voters the log records.
    let decided = f.log.of("r27").pop().unwrap();
    let counted: Vec<&str> = decided.data["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["voter"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["alice@example.com", "ivan@example.com"]);
    // Her click was still on its way (a burst): it finds her entry made and adds nothing.
    let hers = s.vote(&ballot("r27", "alice@example.com")).await.unwrap();
    assert!(
        matches!(hers, VoteResult::Counted { closed: None, .. }),
        "{hers:?}"
    );
    assert_eq!(f.kinds("r27").len(), 4, "{:?}", f.kinds("r27"));
    regate_core::chain::verify_chain("r27", &f.log.of("r27")).unwrap();
}

#[tokio::test]
async fn many_concurrent_votes_resume_the_workflow_exactly_once() {
    let (f, s) = opened("r6", LEDGER).await;
    let s = Arc::new(s);
    let voters = [
        "erin", "frank", "grace", "heidi", "mallory", "dev", "erin", "frank",
    ];
    let tasks: Vec<_> = voters
        .iter()
        .map(|v| {
            let s = s.clone();
            let ballot = ballot("r6", &format!("{v}@example.com"));
            tokio::spawn(async move { s.vote(&ballot).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.tokens.calls().len(), 1);
    let decided = f
        .kinds("r6")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
    regate_core::chain::verify_chain("r6", &f.log.of("r6")).unwrap();
}

#[tokio::test]
async fn a_decision_is_counted_once_with_its_votes_its_refusals_and_its_resume() {
    let (f, s) = opened("r43", DEPLOY).await;
    s.vote(&ballot("r43", "mallory@example.com")).await.unwrap();
    s.vote(&ballot("r43", "alice@example.com")).await.unwrap();
    // A double click and a late click change nothing the metrics count, but the refusal.
    s.vote(&ballot("r43", "alice@example.com")).await.unwrap();
    s.vote(&ballot("r43", "bob@example.com")).await.unwrap();
    let m = &f.metrics;
    assert_eq!(m.total("VotesCounted", &[("platform", "slack")]), 1.0);
    assert_eq!(m.total("VotesRefused", &[("reason", "policy")]), 1.0);
    assert_eq!(
        m.total("VotesRefused", &[("reason", "already_decided")]),
        1.0
    );
    assert_eq!(m.total("Decisions", &[("outcome", "approved")]), 1.0);
    assert_eq!(m.total("ResumeAttempts", &[("result", "resumed")]), 1.0);
    assert_eq!(
        m.total("DecisionToResumeSeconds", &[]),
        0.0,
        "the fixed clock stood still"
    );
    assert_eq!(
        m.all()
            .iter()
            .filter(|x| x.name == "DecisionToResumeSeconds")
            .count(),
        1
    );
    // A throttled resume is an attempt to retry; expiry is a decision of its own.
    let (f, s) = opened("r44", DEPLOY).await;
    f.tokens
        .fault
        .set(TaskTokenError::Throttled("slow down".into()));
    s.vote(&ballot("r44", "alice@example.com")).await.unwrap();
    assert_eq!(
        f.metrics.total("ResumeAttempts", &[("result", "retry")]),
        1.0
    );
    let (f, s) = opened("r45", DEPLOY).await;
    s.expire("r45", &execution_of("r45")).await.unwrap();
    assert_eq!(f.metrics.total("Decisions", &[("outcome", "expired")]), 1.0);
}
