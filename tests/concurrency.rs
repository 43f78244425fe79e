//! Real concurrency on the local stack: simultaneous signed clicks over real HTTP to the real
//! callback, whose instances take several invocations at once (`cargo lambda watch
//! --concurrency`). The proxy holds the first wave's reads of the approval a little and counts
//! how many it held at once: proof that the invocations overlapped.
//!
//! It checks what must hold whatever the machine's speed: every click answered, one resume, no
//! vote lost or logged twice. How fast a burst is answered is measured, on a release build, by
//! the clicks bench (`bash bench/run.sh clicks`, BENCHMARKS.md), not asserted here: a debug
//! build on a shared 2-core machine answers a 50-click burst in 1 to 5 s depending on the
//! machine's day. Its own test binary, so that nothing else runs beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use regate_core::EventKind;
use regate_tests::count;
use regate_tests::stack::{Answer, LocalStack};

const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
const SEND_TASK_SUCCESS: &str = "AWSStepFunctions.SendTaskSuccess";
/// The first wave of clicks, one a callback instance (`FUNCTION_CONCURRENCY` in
/// infra/local/stack.py), has its first read of the approval held this long: enough to see
/// the invocations overlap without slowing the waves after it.
const HOLD_MS: u64 = 100;
const FIRST_WAVE: u32 = 16;

/// Checks that every click of the burst was answered with 200 and that the invocations ran
/// side by side; prints the slowest answer, for context.
fn report(what: &str, timings: &[(Answer, Duration)], overlapped: u64) {
    let slowest = timings.iter().map(|(_, t)| *t).max().unwrap();
    println!(
        "{what}: {} clicks answered, the slowest in {slowest:?}; {overlapped} invocations overlapped",
        timings.len()
    );
    for (answer, _) in timings {
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
    }
    assert!(
        overlapped >= 4,
        "{what}: the invocations ran side by side: {overlapped} at once"
    );
}

/// Private answers sent after the first `since` chat calls, per Slack user id.
async fn told_privately(stack: &LocalStack, since: usize) -> Vec<String> {
    stack.calls().await[since..]
        .iter()
        .filter(|c| c["method"] == "chat.postEphemeral")
        .map(|c| c["body"]["user"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn fifty_approvers_at_once_then_twenty_double_clicks_resume_exactly_once() {
    let stack = Arc::new(LocalStack::connect().await);

    // 50 different eligible approvers (release-captains) click Approve at the same moment.
    let (id, execution) = stack
        .begin("race-fifty", |r| {
            r.change("deploy", "production", "service", "release-train")
        })
        .await;
    stack
        .delay(GET_ITEM, HOLD_MS, FIRST_WAVE, &[&id, "request_id"])
        .await;
    stack.watch(SEND_TASK_SUCCESS, &[&id]).await;
    let captains: Vec<(String, &str)> = (1..=50)
        .map(|i| (format!("captain{i:02}@example.com"), "approve"))
        .collect();
    let chat_calls = stack.calls().await.len();
    let answers = stack.clicks_at_once(&captains, &id).await;
    let overlapped = stack.max_in_flight(&id).await;
    report("50 approvers", &answers, overlapped);
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    assert_eq!(
        stack.accepted(SEND_TASK_SUCCESS, &id).await,
        1,
        "resumed once"
    );
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    // Every counted vote is logged exactly once and is in the workflow's output.
    let mut logged: Vec<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(|e| e.actor.clone().unwrap())
        .collect();
    logged.sort();
    let output = stack.status(&execution).await.output.unwrap();
    let mut approvers: Vec<String> = serde_json::from_value(output["approvers"].clone()).unwrap();
    approvers.sort();
    assert_eq!(logged, approvers, "no counted vote lost or logged twice");
    // Every other click came after the decision, was told so privately, and changed nothing.
    let mut told = told_privately(&stack, chat_calls).await;
    told.sort();
    told.dedup();
    assert_eq!(
        logged.len() + told.len(),
        50,
        "every click counted or answered privately"
    );
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
    stack.heal(&id).await;

    // One approver clicks 20 times at once: one vote, one decision.
    let (id, execution) = stack
        .begin("race-double", |r| {
            r.change("deploy", "production", "service", "release-train")
        })
        .await;
    stack
        .delay(GET_ITEM, HOLD_MS, FIRST_WAVE, &[&id, "request_id"])
        .await;
    let double: Vec<(String, &str)> = (0..20)
        .map(|_| ("captain07@example.com".to_string(), "approve"))
        .collect();
    stack.watch(SEND_TASK_SUCCESS, &[&id]).await;
    let answers = stack.clicks_at_once(&double, &id).await;
    let overlapped = stack.max_in_flight(&id).await;
    report("20 double clicks", &answers, overlapped);
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    assert_eq!(
        stack.accepted(SEND_TASK_SUCCESS, &id).await,
        1,
        "resumed once"
    );
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 1);
    assert_eq!(count(&events, EventKind::Decided), 1);
    regate_core::chain::verify_chain(&id, &events).unwrap();
    stack.heal(&id).await;
}
