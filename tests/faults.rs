//! The approval gate under faults, on the local stack: the functions reach moto through a
//! proxy that fails chosen calls on purpose (infra/local/fault_proxy.py). Each test ends with
//! the right execution status, exactly one `decided` (or none, for an expiry), a valid chain
//! and no live buttons left behind.

use std::time::Duration;

use regate_core::EventKind;
use regate_tests::count;
use regate_tests::stack::{LocalStack, WAIT};

const SEND_TASK_SUCCESS: &str = "AWSStepFunctions.SendTaskSuccess";
const UPDATE_ITEM: &str = "DynamoDB_20120810.UpdateItem";
const TRANSACT_WRITE: &str = "DynamoDB_20120810.TransactWriteItems";
const GET_ITEM: &str = "DynamoDB_20120810.GetItem";

/// Every chat.update of the request's message, the last one first.
async fn last_update(stack: &LocalStack, id: &str) -> String {
    let updates = stack.calls_about("chat.update", id).await;
    updates
        .last()
        .map(|u| u["body"].to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_approval_whose_resume_keeps_failing_is_resumed_by_the_sweeper_once() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("fault-resume", |r| r).await;
    stack.message_for(&id).await;
    stack
        .inject(SEND_TASK_SUCCESS, "throttle", 50, &[&id])
        .await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    assert!(stack.fired(&id).await >= 1, "the throttling was hit");
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 0);
    assert!(
        events.iter().any(|e| e.kind == EventKind::Error
            && e.reasons[0].contains("StepFunctions.Throttled")
            && !e.reasons[0].contains("Rate exceeded")),
        "the error is recorded by name, without the service's text: {events:?}"
    );
    stack.heal(&id).await;
    // This request alone: another test's approvals are theirs to sweep.
    let report = stack.sweep_request_now(&id).await;
    assert!(report["resumed"].as_u64().unwrap() >= 1, "{report}");
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    stack.sweep_request_now(&id).await;
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    regate_core::chain::verify_chain(&id, &events).unwrap();
    assert!(last_update(&stack, &id).await.contains("*Approved*"));
}

#[tokio::test]
async fn a_closing_write_whose_answer_is_lost_still_resumes_once() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("fault-lost", |r| r).await;
    stack.message_for(&id).await;
    // Only the closing transition writes `closed_by`.
    stack
        .inject(UPDATE_ITEM, "drop", 1, &[&id, "closed_by"])
        .await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    assert_eq!(
        stack.fired(&id).await,
        1,
        "the answer of the closing write was lost"
    );
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    assert_eq!(count(&events, EventKind::Vote), 1);
    regate_core::chain::verify_chain(&id, &events).unwrap();
    stack.heal(&id).await;
}

/// Alice approves request `id` while its vote log entries are throttled past every retry: her
/// vote is stored, its log entry is not, and her click fails; then the throttling stops.
async fn alice_votes_and_her_log_entry_fails(stack: &LocalStack, id: &str, execution: &str) {
    stack.message_for(id).await;
    stack
        .inject(TRANSACT_WRITE, "throttle", 50, &[id, "KEY#vote#"])
        .await;
    let click = stack.click("alice@example.com", "approve", id).await;
    assert_eq!(
        click.status, 500,
        "the vote is stored, its log entry is not: {click:?}"
    );
    assert_eq!(stack.status(execution).await.status, "RUNNING");
    stack.heal(id).await;
}

#[tokio::test]
async fn a_vote_whose_log_entry_was_throttled_completes_on_the_next_click() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("fault-append", |r| r).await;
    alice_votes_and_her_log_entry_fails(&stack, &id, &execution).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 1);
    assert_eq!(count(&events, EventKind::Decided), 1);
    assert_eq!(
        count(&events, EventKind::VoteRefused),
        0,
        "the second click was not refused"
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_vote_whose_click_ended_before_logging_it_is_closed_by_the_sweeper() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("fault-unlogged", |r| r).await;
    alice_votes_and_her_log_entry_fails(&stack, &id, &execution).await;
    // Alice never clicks again. Within the lease the sweeper leaves the click its chance...
    let voted = regate_tests::stack_now();
    let soon = stack
        .sweep_request(&id, voted + chrono::Duration::seconds(30))
        .await;
    assert_eq!(soon["waiting"], 1, "{soon}");
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    // ...after it, the sweeper closes the request her stored vote decides, once.
    let later = voted + chrono::Duration::minutes(2);
    let (a, b) = tokio::join!(
        stack.sweep_request(&id, later),
        stack.sweep_request(&id, later)
    );
    assert_eq!(a["failed"], serde_json::json!([]), "{a}");
    assert_eq!(b["failed"], serde_json::json!([]), "{b}");
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    done.assert_approved_by(&["alice@example.com"]);
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    let votes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Vote)
        .collect();
    assert_eq!(votes.len(), 1, "{events:?}");
    assert!(
        votes[0].reasons[0].contains("logged when the request was decided"),
        "the vote entry says it was logged late: {:?}",
        votes[0]
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
    assert!(last_update(&stack, &id).await.contains("*Approved*"));
}

#[tokio::test]
async fn a_vote_after_the_timeout_ends_expired_and_the_message_says_so() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("fault-late", |r| {
            r.with("details", serde_json::json!({"timeout_seconds": 5}))
        })
        .await;
    stack.message_for(&id).await;
    // Hold the Expire step's first read, so a click lands between the timeout and the expiry.
    stack
        .inject(GET_ITEM, "slow", 1, &[&id, "request_id"])
        .await;
    let started = std::time::Instant::now();
    while stack.fired(&id).await == 0 {
        assert!(started.elapsed() < WAIT, "the Expire step never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // moto closes a timed-out token a moment after the Expire step starts (the launcher's
    // patch reports it when the task's own wait ends); click after that, while Expire is held.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let late = stack.click("alice@example.com", "approve", &id).await;
    assert_eq!(late.status, 200);
    let done = stack.wait_finished(&execution).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_deref()),
        ("FAILED", Some("ApprovalExpired"))
    );
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 0);
    assert_eq!(count(&events, EventKind::Expired), 1);
    assert!(last_update(&stack, &id).await.contains("*Expired*"));
    let alice = stack.slack_user("alice@example.com").await;
    let told = stack.calls().await.into_iter().any(|c| {
        c["method"] == "chat.postEphemeral"
            && c["body"]["user"] == alice.as_str()
            && c["body"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("still handing")
    });
    assert!(told, "the late voter was told privately");
    stack.heal(&id).await;
}

#[tokio::test]
async fn a_notifier_that_dies_after_posting_leaves_one_message_and_the_approval_works() {
    let stack = LocalStack::connect().await;
    let id = regate_tests::unique("fault-post");
    // Recording the posted message fails (past the SDK's retries) for two notifier attempts;
    // Step Functions retries the step, and the third attempt finds the message it posted.
    stack
        .inject(UPDATE_ITEM, "error", 8, &[&id, "list_append(messages"])
        .await;
    let execution = stack.start(&regate_testkit::request(&id).json()).await;
    let started = std::time::Instant::now();
    while count(&stack.events(&id).await, EventKind::Notified) == 0 {
        assert!(started.elapsed() < WAIT, "the message was never recorded");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        stack.fired(&id).await >= 4,
        "at least one attempt died after posting"
    );
    let posted = stack
        .calls_about("chat.postMessage", &format!("\"value\":\"{id}\""))
        .await;
    assert_eq!(posted.len(), 1, "one message, not one per attempt");
    stack.click_ok("alice@example.com", "approve", &id).await;
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    let notified_on = |platform: &str| {
        events
            .iter()
            .filter(|e| e.kind == EventKind::Notified && e.platform.as_deref() == Some(platform))
            .count()
    };
    assert_eq!(notified_on("slack"), 1);
    assert_eq!(
        notified_on("teams"),
        1,
        "each platform's message logged once"
    );
    assert_eq!(count(&events, EventKind::Decided), 1);
    stack.heal(&id).await;
}
