//! Telling the requester how their request ended: once, after the workflow has the outcome,
//! retried by sweeps while the platform fails, given up on after a few attempts, and never in
//! the way of the resume.

use super::*;
use regate_core::approvals::{TELL_ATTEMPTS, TO_REQUESTER};
use regate_core::decision::NotifyTarget;
use regate_core::ports::ChatError;
use regate_core::Event;

/// The `notified` events that tell the requester.
fn tellings(f: &Fakes, id: &str) -> Vec<Event> {
    let to_requester = |e: &Event| {
        e.kind == EventKind::Notified && e.data.get("to").is_some_and(|to| to == TO_REQUESTER)
    };
    f.log.of(id).into_iter().filter(to_requester).collect()
}

fn outcomes(f: &Fakes) -> Vec<(NotifyTarget, String, ApprovalState)> {
    f.chat.outcomes.lock().unwrap().clone()
}

/// Sweeps as of the clock, `minutes` on.
async fn sweep_later(f: &Fakes, s: &MemoryApprovals, minutes: i64) {
    f.clock.advance(chrono::Duration::minutes(minutes));
    s.sweep(SweepBudget::items(10)).await.unwrap();
}

#[tokio::test]
async fn an_approved_requester_is_told_once_in_a_direct_message_after_the_resume() {
    let (f, s) = opened("t1", DEPLOY).await;
    s.vote(&ballot("t1", "alice@example.com")).await.unwrap();
    let dev = NotifyTarget::SlackUser {
        user: "dev@example.com".into(),
    };
    assert_eq!(
        outcomes(&f),
        [(dev.clone(), "t1".to_string(), ApprovalState::Approved)]
    );
    assert!(
        f.kinds("t1")
            .ends_with(&[EventKind::Decided, EventKind::Notified]),
        "told after the workflow took the outcome: {:?}",
        f.kinds("t1")
    );
    let told = tellings(&f, "t1");
    assert_eq!(told.len(), 1);
    let data = &told[0].data;
    assert_eq!(
        (
            &data["status"],
            &data["outcome"],
            &data["user"],
            &data["platform"]
        ),
        (
            &serde_json::json!("sent"),
            &serde_json::json!("approved"),
            &serde_json::json!("dev@example.com"),
            &serde_json::json!("slack")
        )
    );
    let item = f.pending.item("t1").unwrap();
    assert!(item.requester_told && item.due_at.is_none(), "{item:?}");
    // Later clicks and sweeps tell nobody again.
    s.vote(&ballot("t1", "bob@example.com")).await.unwrap();
    sweep_later(&f, &s, 10).await;
    assert_eq!(outcomes(&f).len(), 1);
    assert_eq!(tellings(&f, "t1").len(), 1);
    regate_core::chain::verify_chain("t1", &f.log.of("t1")).unwrap();
}

#[tokio::test]
async fn a_chat_outage_never_holds_up_the_resume_and_a_later_sweep_tells_the_requester() {
    let (f, s) = opened("t2", DEPLOY).await;
    f.chat
        .fault
        .set(ChatError::Unavailable("Slack is down".into()));
    s.vote(&rejecting(
        ballot("t2", "alice@example.com"),
        Some("not today"),
    ))
    .await
    .unwrap();
    // The workflow has its outcome; the requester does not, yet.
    assert!(matches!(
        f.tokens.calls().as_slice(),
        [Resumed::Failure { .. }]
    ));
    let item = f.pending.item("t2").unwrap();
    assert!(item.resumed && item.owes_tell() && item.tell_claims == 1);
    assert!(tellings(&f, "t2").is_empty());
    // A sweep before the claim lapses leaves it to its holder.
    f.chat.fault.clear();
    sweep_later(&f, &s, 1).await;
    assert!(outcomes(&f).is_empty());
    sweep_later(&f, &s, 2).await;
    let told = outcomes(&f);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].2, ApprovalState::Rejected);
    assert_eq!(tellings(&f, "t2")[0].data["status"], "sent");
    sweep_later(&f, &s, 5).await;
    assert_eq!(outcomes(&f).len(), 1);
    assert_eq!(f.tokens.calls().len(), 1);
}

#[tokio::test]
async fn a_platform_that_keeps_failing_is_given_up_on_after_the_last_attempt_and_logged() {
    let (f, s) = opened("t3", DEPLOY).await;
    f.chat
        .fault
        .set(ChatError::RateLimited("ratelimited".into()));
    s.vote(&ballot("t3", "alice@example.com")).await.unwrap();
    for _ in 0..(TELL_ATTEMPTS + 3) {
        sweep_later(&f, &s, 3).await;
    }
    let item = f.pending.item("t3").unwrap();
    assert_eq!(item.tell_claims, TELL_ATTEMPTS, "not retried forever");
    assert!(item.requester_told && item.due_at.is_none(), "{item:?}");
    let told = tellings(&f, "t3");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].data["status"], "gave_up");
    assert!(told[0].reasons[0].contains("ratelimited"), "{told:?}");
}

#[tokio::test]
async fn a_requester_the_platform_does_not_know_or_the_policy_cannot_name_is_logged_not_retried() {
    // Slack has no account for dev@example.com.
    let (f, s) = opened("t4", DEPLOY).await;
    f.chat
        .strangers
        .lock()
        .unwrap()
        .push("dev@example.com".into());
    s.vote(&ballot("t4", "alice@example.com")).await.unwrap();
    let told = tellings(&f, "t4");
    assert_eq!(told[0].data["status"], "undeliverable");
    assert!(told[0].reasons[0].contains("dev@example.com"), "{told:?}");
    // A service asked, and its token proves an actor nobody in data.people is.
    let f = Fakes::default();
    let s = f.approvals();
    let bot = serde_json::json!({"id": "deploy-bot", "kind": "service"});
    let r = request("t5").with("requester", bot).build();
    open(&s, &r, "token-1").await;
    s.expire("t5", &execution_of("t5")).await.unwrap();
    let told = tellings(&f, "t5");
    assert_eq!(
        (&told[0].data["status"], &told[0].data["outcome"]),
        (
            &serde_json::json!("no_address"),
            &serde_json::json!("expired")
        )
    );
    let item = f.pending.item("t5").unwrap();
    assert!(item.requester_told && item.due_at.is_none());
    assert!(outcomes(&f).is_empty());
}

#[tokio::test]
async fn of_two_sweeps_racing_to_tell_the_requester_one_sends_it() {
    for trial in 0..5 {
        let id = format!("t6-{trial}");
        let (f, s) = opened(&id, DEPLOY).await;
        f.chat.fault.set(ChatError::Unavailable("down".into()));
        s.vote(&ballot(&id, "alice@example.com")).await.unwrap();
        f.chat.fault.clear();
        f.clock.advance(chrono::Duration::minutes(3));
        let s = Arc::new(s);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let sweeps: Vec<_> = (0..2)
            .map(|_| {
                let (s, barrier) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.sweep(SweepBudget::items(10)).await.unwrap()
                })
            })
            .collect();
        for sweep in sweeps {
            sweep.await.unwrap();
        }
        assert_eq!(outcomes(&f).len(), 1, "trial {trial}");
        assert_eq!(tellings(&f, &id).len(), 1, "trial {trial}");
    }
}

#[test]
fn the_workflow_link_is_the_console_page_of_an_execution_arn_and_nothing_else() {
    let mut a = regate_testkit::pending_approval(&request("t7").build(), "token");
    a.execution_id = "arn:aws-us-gov:states:us-gov-west-1:1:execution:m:n".into();
    assert_eq!(
        a.workflow_url().as_deref(),
        Some("https://us-gov-west-1.console.amazonaws-us-gov.com/states/home?region=us-gov-west-1#/v2/executions/details/arn:aws-us-gov:states:us-gov-west-1:1:execution:m:n")
    );
    for odd in [
        "exec-1",
        "arn:aws:lambda:us-east-1:1:function:f",
        "arn:aws:states:us-east-1:1:execution:m:a b",
        "arn:aws:states:us-east-1:1:execution:m:<script>",
        "arn:other:states:r:1:execution:m:n",
    ] {
        a.execution_id = odd.into();
        assert_eq!(a.workflow_url(), None, "{odd}");
    }
}
