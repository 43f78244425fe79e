//! The functions' CloudWatch Embedded Metric Format lines, read from the local functions' log
//! after driving what each metric counts: decisions, votes counted and refused, refused clicks,
//! resumes, sweeps, checkpoints and chat API errors.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use regate_tests::functions_log;
use regate_tests::stack::LocalStack;
use serde_json::{json, Value};

/// The metric names (with their dimension values) in the functions' EMF lines after the first
/// `from` bytes of their log.
fn emitted(from: usize) -> BTreeSet<String> {
    let log = functions_log();
    let mut found = BTreeSet::new();
    for line in log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("\"_aws\""))
    {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(emf) = serde_json::from_str::<Value>(&line[start..]) else {
            continue;
        };
        let directive = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "regate", "{line}");
        assert!(emf["_aws"]["Timestamp"].is_u64(), "{line}");
        assert_eq!(directive["Dimensions"][1], json!([]), "and a total: {line}");
        let dimensions: Vec<String> = directive["Dimensions"][0]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                emf[d.as_str()?]
                    .as_str()
                    .map(|v| format!("{}={v}", d.as_str().unwrap_or_default()))
            })
            .collect();
        assert!(
            dimensions.iter().all(|d| !d.contains('@')),
            "no person in a dimension: {line}"
        );
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let name = metric["Name"].as_str().unwrap_or_default();
            assert!(emf[name].is_number(), "{line}");
            found.insert(format!("{name}{{{}}}", dimensions.join(",")));
        }
    }
    found
}

#[tokio::test]
async fn the_functions_write_every_metric_as_emf_lines() {
    let stack = LocalStack::connect().await;
    // Only what the functions write from now on counts (the log holds earlier tests too).
    let from = functions_log().len();
    let (denied, _) = stack
        .begin("metrics-denied", |r| {
            r.change("delete", "production", "database", "orders-db")
        })
        .await;
    let (id, execution) = stack.begin("metrics", |r| r).await;
    stack.message_for(&id).await;
    // A click with a bad signature, a vote the policy refuses, one that counts and decides.
    let forged = stack
        .post_signed(
            "payload=%7B%7D",
            chrono::Utc::now().timestamp(),
            Some("v0=00".into()),
        )
        .await;
    assert_eq!(forged.status, 401);
    stack.click_ok("mallory@example.com", "approve", &id).await;
    // Every update of the message fails: a chat API error, after its retries.
    let fault = json!({"method": "chat.update", "match": id, "status": 500, "times": 1000});
    regate_tests::control_chat("_fail", &fault).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    // Its own sweep, so as not to race the sweeps of other tests.
    let later = stack.opened_by(&id).await + chrono::Duration::hours(1);
    stack.sweep_request(&id, later).await;
    // A full sweep's lag, from a run that looks at nothing.
    let nothing = stack.sweep_nothing().await;
    assert_eq!(nothing["due"], 0, "{nothing}");
    // Two checkpointer runs: the second measures the age of the checkpoint the first cut.
    stack.checkpoint().await;
    stack.checkpoint().await;
    let expected = [
        "Decisions{function=evaluator,outcome=deny}",
        "Decisions{function=callback,outcome=approved}",
        "VotesCounted{function=callback,platform=slack}",
        "VotesRefused{function=callback,platform=slack,reason=policy}",
        "ClicksRefused{function=callback,platform=slack,status=401}",
        "ResumeAttempts{function=callback,result=resumed}",
        "DecisionToResumeSeconds{function=callback}",
        "ChatApiErrors{function=callback,platform=slack,reason=unavailable}",
        "SweepItems{function=sweeper}",
        "SweepLagSeconds{function=sweeper}",
        "Reminders{function=sweeper}",
        "Escalations{function=sweeper}",
        "Expiries{function=sweeper}",
        "CheckpointAgeSeconds{function=checkpointer}",
    ];
    // The log is written as the functions run: look again for a while.
    let started = Instant::now();
    let missing = loop {
        let found = emitted(from);
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|m| !found.contains(*m))
            .collect();
        if missing.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        missing.is_empty(),
        "missing {missing:?} (for {denied} and {id}); found {:?}",
        emitted(from)
    );
}
