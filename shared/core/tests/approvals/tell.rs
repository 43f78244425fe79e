//! Telling the requester how their request ended: once, by the sweeper after the workflow has
//! the outcome (never by the click or the Expire step), retried while the platform fails, given
//! up on after a few attempts.

use super::*;
use regate_core::approvals::{TELL_ATTEMPTS, TO_REQUESTER};
use regate_core::decision::NotifyTarget;
use regate_core::ports::{ChatError, StoreError};
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
async fn an_approved_requester_is_told_once_by_the_next_sweep_never_by_the_click() {
    let (f, s) = opened("t1", DEPLOY).await;
    s.vote(&ballot("t1", "alice@example.com")).await.unwrap();
    // The click resumed the workflow and left the message to the sweeper: due at once.
    assert!(outcomes(&f).is_empty(), "the click sends nothing more");
    let item = f.pending.item("t1").unwrap();
    assert!(
        item.owes_tell() && item.due_at == Some(f.clock.now()),
        "{item:?}"
    );
    sweep_later(&f, &s, 0).await;
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
async fn a_chat_outage_leaves_the_message_to_a_later_sweep_once_the_claim_lapses() {
    let (f, s) = opened("t2", DEPLOY).await;
    s.vote(&rejecting(
        ballot("t2", "alice@example.com"),
        Some("not today"),
    ))
    .await
    .unwrap();
    assert!(matches!(
        f.tokens.calls().as_slice(),
        [Resumed::Failure { .. }]
    ));
    f.chat
        .fault
        .set(ChatError::Unavailable("Slack is down".into()));
    sweep_later(&f, &s, 0).await;
    let item = f.pending.item("t2").unwrap();
    assert!(item.owes_tell() && item.tell_claims == 1, "{item:?}");
    assert_eq!(
        item.due_at, item.tell_until,
        "due again when the claim lapses"
    );
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
    s.vote(&ballot("t3", "alice@example.com")).await.unwrap();
    f.chat
        .fault
        .set(ChatError::RateLimited("ratelimited".into()));
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
async fn a_log_that_keeps_failing_after_the_message_went_out_caps_the_messages() {
    let (f, s) = opened("t8", DEPLOY).await;
    s.vote(&ballot("t8", "alice@example.com")).await.unwrap();
    // The first attempt sends, then cannot log it; later ones cannot read the log to see
    // whether it went out, and send nothing.
    f.log
        .fault
        .set(StoreError::Unavailable("DynamoDB is down".into()));
    for _ in 0..(TELL_ATTEMPTS + 3) {
        sweep_later(&f, &s, 3).await;
    }
    assert_eq!(outcomes(&f).len(), 1, "one message while the log is down");
    // The log is back, but the attempts are spent: given up, logged, no second message.
    f.log.fault.clear();
    sweep_later(&f, &s, 3).await;
    assert_eq!(outcomes(&f).len(), 1);
    let told = tellings(&f, "t8");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].data["status"], "gave_up");
    assert!(!f.pending.item("t8").unwrap().owes_tell());
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
    sweep_later(&f, &s, 0).await;
    let told = tellings(&f, "t4");
    assert_eq!(told[0].data["status"], "undeliverable");
    assert!(told[0].reasons[0].contains("dev@example.com"), "{told:?}");
    // A service asked, and its token proves an actor nobody in data.people is: expired by the
    // workflow's timeout, then the sweep logs that nobody can be told.
    let f = Fakes::default();
    let s = f.approvals();
    let bot = serde_json::json!({"id": "deploy-bot", "kind": "service"});
    let r = request("t5").with("requester", bot).build();
    open(&s, &r, "token-1").await;
    s.expire("t5", &execution_of("t5")).await.unwrap();
    assert!(
        tellings(&f, "t5").is_empty(),
        "the Expire step sends nothing more"
    );
    sweep_later(&f, &s, 0).await;
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
    sweep_later(&f, &s, 10).await;
    assert_eq!(tellings(&f, "t5").len(), 1, "not retried");
}

#[tokio::test]
async fn of_two_claims_with_the_same_view_one_wins_and_only_it_records_the_telling() {
    use regate_core::pending::Conditional;
    use regate_core::ports::PendingStore;
    let (f, s) = opened("t6", DEPLOY).await;
    s.vote(&ballot("t6", "alice@example.com")).await.unwrap();
    let now = f.clock.now();
    let until = now + chrono::Duration::minutes(2);
    let first = f.pending.claim_tell("t6", 0, now, until).await.unwrap();
    let second = f.pending.claim_tell("t6", 0, now, until).await.unwrap();
    assert!(matches!(first, Conditional::Done(ref item) if item.tell_claims == 1));
    assert!(matches!(second, Conditional::Lost(Some(_))), "{second:?}");
    assert!(matches!(
        f.pending.told("t6", 2).await.unwrap(),
        Conditional::Lost(_)
    ));
    assert!(matches!(
        f.pending.told("t6", 1).await.unwrap(),
        Conditional::Done(_)
    ));
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
