//! `regate log show|query` against the decision log on the local stack: events written by the
//! real adapter, a hand-edited event reported as the broken link.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use regate_aws::decision_log::{partition_key, sort_key};
use regate_aws::DynamoDecisionLog;
use regate_core::event::{EventDraft, EventKind};
use regate_core::ports::DecisionLog;
use regate_core::Outcome;
use regate_tests::{decision_log_table, local_config, run_local, unique};

/// The CLI, with the local stack's settings.
fn regate(args: &[&str]) -> Output {
    run_local(env!("CARGO_BIN_EXE_regate"), args)
}

async fn write_request(log: &DynamoDecisionLog, id: &str, actor: &str) {
    let now = Utc::now();
    log.append(
        id,
        EventDraft::new(EventKind::Requested).actor("dev@example.com"),
        now,
    )
    .await
    .unwrap();
    log.append(
        id,
        EventDraft::new(EventKind::Vote)
            .actor(actor)
            .data("vote", "approve"),
        now,
    )
    .await
    .unwrap();
    let decided = EventDraft::new(EventKind::Decided)
        .actor(actor)
        .outcome(Outcome::Allow)
        .reasons(vec!["approved by a, b".into()]);
    log.append(id, decided, now).await.unwrap();
}

#[tokio::test]
async fn show_prints_the_events_and_then_reports_a_hand_edited_event_as_the_broken_link() {
    let config = local_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let log = DynamoDecisionLog::new(client.clone(), decision_log_table());
    let id = unique("cli-show");
    write_request(&log, &id, "alice@example.com").await;

    let out = regate(&["log", "show", &id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "requested",
        "vote",
        "decided",
        "alice@example.com",
        "approved by a, b",
    ] {
        assert!(text.contains(kind), "{kind} missing from\n{text}");
    }
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("chain verified: 3 events"),
        "{text}"
    );

    client
        .update_item()
        .table_name(decision_log_table())
        .key("pk", AttributeValue::S(partition_key(&id)))
        .key("sk", AttributeValue::S(sort_key(2)))
        .update_expression("SET actor = :a")
        .expression_attribute_values(":a", AttributeValue::S("mallory@example.com".into()))
        .send()
        .await
        .unwrap();
    let out = regate(&["log", "show", &id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    assert!(text.contains("chain BROKEN at seq 2"), "{text}");
}

#[tokio::test]
async fn query_by_actor_prints_csv_and_json() {
    let config = local_config().await;
    let log = DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&config), decision_log_table());
    let actor = format!("{}@example.com", unique("csv"));
    write_request(&log, &unique("cli-query"), &actor).await;

    let out = regate(&["log", "query", "--actor", &actor, "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .starts_with("request_id,seq,kind,at,actor"));

    let out = regate(&[
        "log", "query", "--actor", &actor, "--kind", "decided", "--format", "json",
    ]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["outcome"], "allow");
}

#[tokio::test]
async fn show_and_query_end_quietly_when_the_reader_goes_away() {
    let config = local_config().await;
    let log = DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&config), decision_log_table());
    let id = unique("cli-pipe");
    let actor = format!("{}@example.com", unique("pipe"));
    write_request(&log, &id, &actor).await;
    for args in [
        vec!["log", "show", id.as_str()],
        vec!["log", "show", id.as_str(), "--format", "json"],
        vec!["log", "query", "--actor", actor.as_str(), "--format", "csv"],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regate"));
        command.args(&args).envs(regate_tests::local_env());
        regate_tests::assert_quiet_on_a_closed_pipe(command, 0);
    }
    // The README's example, as a shell runs it.
    let line = format!(
        "set -o pipefail; {} log show {id} | head -1",
        env!("CARGO_BIN_EXE_regate")
    );
    let out = Command::new("bash")
        .args(["-c", &line])
        .envs(regate_tests::local_env())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_log_arguments_are_one_clear_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_regate"))
        .args(["log", "show", "x"])
        .env_remove("REGATE_DECISION_LOG_TABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an operational error");
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("error: no table: pass --table or set REGATE_DECISION_LOG_TABLE"));
    let out = regate(&["log", "query", "--kind", "nonsense"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--kind \"nonsense\" is not an event kind")
    );
}
