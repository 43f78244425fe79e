//! Real concurrency on the local stack: simultaneous signed clicks over real HTTP to the real
//! callback, whose runtime takes several invocations at once (AWS_LAMBDA_MAX_CONCURRENCY). The
//! proxy holds each click's first read of the approval a little, so the clicks must overlap to
//! answer in time, and it counts how many it held at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regate_chat::slack::interaction::{click_payload, form_body};
use regate_core::EventKind;
use regate_tests::count;
use regate_tests::stack::{Answer, LocalStack};

const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
/// Each click's first read of the approval is held this long.
const HOLD_MS: u64 = 100;

/// Sends every click at once, each from its own task; the answers and how long each took.
async fn click_all(
    stack: &Arc<LocalStack>,
    clicks: &[(String, &str)],
    id: &str,
) -> Vec<(Answer, Duration)> {
    let (channel, ts, _) = stack.message_for(id).await;
    let mut bodies = Vec::new();
    for (email, action) in clicks {
        let user = stack.slack_user(email).await;
        let payload = click_payload(&user, action, id, &channel, &ts);
        bodies.push(form_body(&payload));
    }
    // Only the click itself is timed, as Slack times it.
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let stack = stack.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let signed_at = chrono::Utc::now().timestamp();
            let answer = stack.post_signed(&body, signed_at, None).await;
            (answer, started.elapsed())
        });
    }
    tasks.join_all().await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(what: &str, timings: &[(Answer, Duration)], overlapped: u64) {
    let mut times: Vec<Duration> = timings.iter().map(|(_, t)| *t).collect();
    times.sort();
    println!(
        "{what}: {} clicks answered, p50 {:?}, p99 {:?}, max {:?}; {overlapped} invocations overlapped",
        timings.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap()
    );
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
        .delay(GET_ITEM, HOLD_MS, 50, &[&id, "request_id"])
        .await;
    let captains: Vec<(String, &str)> = (1..=50)
        .map(|i| (format!("captain{i:02}@example.com"), "approve"))
        .collect();
    let answers = click_all(&stack, &captains, &id).await;
    let overlapped = stack.max_in_flight(&id).await;
    report("50 approvers", &answers, overlapped);
    // Every click is answered. Their times are printed and recorded in BENCHMARKS.md, not
    // asserted: on this stack a burst waits for `cargo lambda watch` to start instances.
    for (answer, _) in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert!(
        overlapped >= 4,
        "the invocations ran side by side: {overlapped} at once"
    );
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    let mut heard: Vec<String> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Vote | EventKind::VoteRefused))
        .map(|e| e.actor.clone().unwrap())
        .collect();
    heard.sort();
    let voters = heard.len();
    heard.dedup();
    assert_eq!(
        heard.len(),
        50,
        "every click is logged, as a vote or a refusal"
    );
    assert_eq!(voters, 50, "and exactly once");
    let counted = count(&events, EventKind::Vote);
    let output = stack.status(&execution).await.output.unwrap();
    assert_eq!(
        output["approvers"].as_array().unwrap().len(),
        counted,
        "no counted vote lost"
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
        .delay(GET_ITEM, HOLD_MS, 20, &[&id, "request_id"])
        .await;
    let double: Vec<(String, &str)> = (0..20)
        .map(|_| ("captain07@example.com".to_string(), "approve"))
        .collect();
    let answers = click_all(&stack, &double, &id).await;
    let overlapped = stack.max_in_flight(&id).await;
    report("20 double clicks", &answers, overlapped);
    assert!(answers.iter().all(|(a, _)| a.status == 200), "{answers:?}");
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 1);
    assert_eq!(count(&events, EventKind::Decided), 1);
    regate_core::chain::verify_chain(&id, &events).unwrap();
    stack.heal(&id).await;
}
