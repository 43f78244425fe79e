//! `regate audit verify|backtest` over DynamoDB exports shaped as AWS writes them (manifests,
//! gzipped DYNAMODB_JSON, incremental exports), holding a log that the real workflow wrote:
//! requests evaluated by the evaluator's core and voted on through the callback's core. Each
//! tamper case is caught with its finding and exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use regate_core::approvals::SweepBudget;
use regate_core::chain::compute_hash;
use regate_core::checkpoint::Checkpoint;
use regate_core::evaluator::Evaluator;
use regate_core::event::keys;
use regate_core::{Event, EventKind, Outcome};
use regate_testkit::{
    ballot, default_policy, execution_of, open, rejecting, request, Fakes, FixedClock, MemoryLog,
    RecordingMetrics, TestIssuer,
};
use regate_tests::checkpoint::{heads_of, write_checkpoints, KmsSigner};
use regate_tests::export::{
    dynamo, export_decision_log, gzip_lines, local_s3, of_requests, upload_folder, write_export,
    EXPORT_BUCKET,
};
use regate_tests::stack::LocalStack;
use regate_tests::{local_config, local_env, run_local, unique};
use serde_json::{json, Value};

const ALLOWED: &str = "aud-staging";
const APPROVED: &str = "aud-approved";
const REJECTED: &str = "aud-rejected";
const DENIED: &str = "aud-denied";
const EXPIRED: &str = "aud-expired";

/// The evaluator over the fakes' log and clock, with the default policy.
fn evaluator_of(fakes: &Fakes) -> Evaluator<MemoryLog, FixedClock, RecordingMetrics, TestIssuer> {
    Evaluator::new(
        fakes.log.clone(),
        fakes.clock.clone(),
        fakes.metrics.clone(),
        Arc::new(regate_core::LivePolicy::new(default_policy())),
    )
    .with_identity(issuer().clone())
}

/// The issuer of the requests' identity tokens, trusted by [`evaluator_of`].
fn issuer() -> &'static TestIssuer {
    static ISSUER: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(TestIssuer::default)
}

/// The decision log of five requests as the workflow writes it: one allowed at once, one
/// denied at once, one approved by an owner, one rejected, and one that expired after its
/// requester's own vote was refused.
async fn workflow_log() -> Vec<Event> {
    let fakes = Fakes::default();
    let evaluator = evaluator_of(&fakes);
    let approvals = fakes.approvals();
    let requests = [
        request(ALLOWED).change("deploy", "staging", "service", "payments"),
        request(DENIED).change("delete", "production", "database", "orders-db"),
        request(APPROVED),
        request(REJECTED),
        request(EXPIRED),
    ];
    for r in &requests {
        let id = r.build().id;
        let evaluated = evaluator
            .evaluate(&r.json_signed_by(issuer()), None, &execution_of(&id))
            .await
            .unwrap();
        // The approval opens with the request as the evaluator verified it, as the notifier
        // opens it: its identity claims are those the requested event records.
        if evaluated.decision.evaluation.decision.outcome == Outcome::ApprovalRequired {
            open(&approvals, &evaluated.request, &format!("token-{id}")).await;
        }
    }
    approvals
        .vote(&ballot(APPROVED, "alice@example.com"))
        .await
        .unwrap();
    let no = rejecting(
        ballot(REJECTED, "bob@example.com"),
        Some("not during the sale"),
    );
    approvals.vote(&no).await.unwrap();
    approvals
        .vote(&ballot(EXPIRED, "dev@example.com"))
        .await
        .unwrap();
    approvals
        .expire(EXPIRED, &execution_of(EXPIRED))
        .await
        .unwrap();
    let mut events = Vec::new();
    for id in [ALLOWED, DENIED, APPROVED, REJECTED, EXPIRED] {
        events.extend(fakes.log.of(id));
    }
    assert_eq!(
        fakes.kinds(APPROVED),
        [
            EventKind::Requested,
            EventKind::Evaluated,
            EventKind::Notified,
            EventKind::Vote,
            EventKind::Decided
        ]
    );
    assert_eq!(fakes.kinds(DENIED).last(), Some(&EventKind::Evaluated));
    assert_eq!(
        fakes.kinds(EXPIRED)[3..],
        [EventKind::VoteRefused, EventKind::Expired]
    );
    events
}

/// An event as the DynamoDB adapter stores it: its fields plus `pk`, `sk` and `day_shard`.
fn event_item(event: &Event) -> Value {
    let mut item = serde_json::to_value(event).unwrap();
    item["pk"] = json!(keys::partition_key(&event.request_id));
    item["sk"] = json!(keys::sort_key(event.seq));
    item["day_shard"] = json!(format!("{}#0", &event.at[..10]));
    item
}

/// The default bundle's item, as the adapter keeps it.
fn policy_item() -> Value {
    let bundle = regate_policies::bundle().unwrap();
    json!({
        "pk": keys::policy_key(&bundle.revision),
        "sk": keys::POLICY_SORT_KEY,
        "revision": bundle.revision,
        "bundle": serde_json::to_string(&bundle.archive()).unwrap(),
    })
}

/// A full export of `events` and the policy, a day after the requests.
fn full_export(root: &Path, events: &[Event]) {
    let mut lines: Vec<Value> = events
        .iter()
        .map(|e| json!({"Item": dynamo(&event_item(e))}))
        .collect();
    lines.push(json!({"Item": dynamo(&policy_item())}));
    write_export(
        root,
        "01790000000000-full0001",
        "FULL_EXPORT",
        "2026-06-02T12:00:00.000Z",
        &lines,
    );
}

/// The CLI, with the local stack's settings.
fn regate(args: &[&str]) -> Output {
    run_local(env!("CARGO_BIN_EXE_regate"), args)
}

/// A full export, named `name`, of the local stack's decision log: the events of `ids` and the
/// policy bundles, with manifests as AWS writes them (the table holds every test's requests).
async fn local_export(ids: &[String], name: &str) -> tempfile::TempDir {
    let lines: Vec<Value> = export_decision_log(&local_config().await)
        .await
        .into_iter()
        .filter(|line| of_requests(line, ids))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let at = regate_core::time::format_rfc3339_ms(regate_tests::stack_now());
    write_export(dir.path(), name, "FULL_EXPORT", &at, &lines);
    dir
}

/// `regate audit verify <source> --format json`: its exit code and report.
fn verify(source: impl AsRef<std::ffi::OsStr>, extra: &[&str]) -> (i32, Value) {
    let source = source.as_ref().to_str().unwrap().to_string();
    let mut args = vec!["audit", "verify", source.as_str(), "--format", "json"];
    args.extend(extra);
    let out = regate(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "not a JSON report: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// `events` exported (with the policy) and verified.
fn verify_events(events: &[Event]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    full_export(dir.path(), events);
    verify(dir.path(), &[])
}

/// The `(request_id, seq, kind)` of each finding.
fn findings(report: &Value) -> Vec<(String, Option<u64>, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["request_id"].as_str().unwrap().to_string(),
                f["seq"].as_u64(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts a verify run's exit code and its findings.
fn assert_verdict(
    (code, report): (i32, Value),
    expected_code: i32,
    expected: &[(String, Option<u64>, String)],
) {
    assert_eq!(code, expected_code, "{report:#}");
    assert_eq!(findings(&report), expected, "{report:#}");
}

fn finding(request_id: &str, seq: u64, kind: &str) -> (String, Option<u64>, String) {
    (request_id.to_string(), Some(seq), kind.to_string())
}

/// Re-hashes `event` (and nothing after it), as someone who can write the table would.
fn rehash(event: &mut Event) {
    event.hash = compute_hash(event).unwrap();
}

/// Re-hashes the event at `from` and every later event of its request, linking each to the one
/// before: the chain holds again, as after a rewrite by someone who can write the table.
fn rehash_chain_from(events: &mut [Event], from: usize) {
    let request_id = events[from].request_id.clone();
    for i in from..events.len() {
        if events[i].request_id != request_id {
            break;
        }
        if i > from {
            events[i].prev_hash = events[i - 1].hash.clone();
        }
        rehash(&mut events[i]);
    }
}

fn position(events: &[Event], request_id: &str, seq: u64) -> usize {
    events
        .iter()
        .position(|e| e.request_id == request_id && e.seq == seq)
        .unwrap()
}

#[tokio::test]
async fn an_untouched_export_verifies_and_every_decision_comes_out_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let events = workflow_log().await;
    full_export(dir.path(), &events);
    let (code, report) = verify(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    // Its reader gone (`| head -1`), verify still ends quietly with its verdict's exit code,
    // as a table and as JSON.
    for format in ["table", "json"] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regate"));
        command
            .args(["audit", "verify", "--format", format])
            .arg(dir.path())
            .envs(regate_tests::local_env());
        regate_tests::assert_quiet_on_a_closed_pipe(command, 0);
    }
    assert_eq!(report["verified"], true);
    assert_eq!(report["summary"]["requests"], 5);
    assert_eq!(report["summary"]["events"], events.len());
    // Five first evaluations and two decisions by vote, each evaluated again.
    assert_eq!(report["summary"]["decisions"], 7);
    assert_eq!(report["summary"]["policies"], 1);

    let table = regate(&["audit", "verify", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("5 requests") && text.contains("everything verified"),
        "{text}"
    );
}

/// The log of two requests time changed: one the sweeper escalated after 30 minutes and sre
/// then approved, one the sweeper denied when its window closed.
async fn time_aware_log() -> Vec<Event> {
    let fakes = Fakes::default();
    let evaluator = evaluator_of(&fakes);
    let approvals = fakes.approvals();
    let escalated = request("aud-escalated");
    let closed =
        request("aud-window-closed").with("details", json!({"not_after": "2026-06-01T12:10:00Z"}));
    for r in [&escalated, &closed] {
        let id = r.build().id;
        let evaluated = evaluator
            .evaluate(&r.json_signed_by(issuer()), None, &execution_of(&id))
            .await
            .unwrap();
        open(&approvals, &evaluated.request, &format!("token-{id}")).await;
    }
    let later = approvals.now() + chrono::Duration::minutes(31);
    let report = approvals
        .sweep_at(SweepBudget::items(100), later)
        .await
        .unwrap();
    assert_eq!(
        (report.reevaluated, report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    approvals
        .vote(&ballot("aud-escalated", "erin@example.com"))
        .await
        .unwrap();
    // Closed by the sweeper as time passed, which then tells the requester.
    let closing = [
        EventKind::Evaluated,
        EventKind::Decided,
        EventKind::Notified,
    ];
    assert_eq!(
        fakes.kinds("aud-escalated")[3..],
        [
            EventKind::Evaluated,
            EventKind::Notified,
            EventKind::Reminded,
            EventKind::Vote,
            EventKind::Decided
        ],
        "re-evaluated, sre asked, reminded, then approved by sre"
    );
    assert_eq!(fakes.kinds("aud-window-closed")[3..], closing);
    let mut events = fakes.log.of("aud-escalated");
    events.extend(fakes.log.of("aud-window-closed"));
    events
}

#[tokio::test]
async fn decisions_made_again_as_time_passed_verify_too() {
    let dir = tempfile::tempdir().unwrap();
    let events = time_aware_log().await;
    full_export(dir.path(), &events);
    let (code, report) = verify(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    // Per request: the first evaluation, the re-evaluation, and the closing decision.
    assert_eq!(report["summary"]["decisions"], 6, "{report:#}");
}

/// Edits a vote's voter, leaving its hash as it was.
fn edit_a_field(events: &mut [Event]) {
    let vote = position(events, APPROVED, 4);
    events[vote].actor = Some("mallory@example.com".into());
}

fn delete_a_middle_event(events: &mut Vec<Event>) {
    events.remove(position(events, REJECTED, 3));
}

/// Swaps two events and rehashes both.
fn reorder_events(events: &mut [Event]) {
    let (a, b) = (position(events, APPROVED, 3), position(events, APPROVED, 4));
    events.swap(a, b);
    let (sa, sb) = (events[a].seq, events[b].seq);
    events[a].seq = sb;
    events[b].seq = sa;
    rehash(&mut events[a]);
    rehash(&mut events[b]);
}

/// Drops a request's last event, past its timeout.
fn truncate_a_tail(events: &mut Vec<Event>) {
    events.remove(position(events, APPROVED, 5));
}

/// Turns a rejection into an allow, with its hash recomputed.
fn change_a_decision(events: &mut [Event]) {
    let decided = position(events, REJECTED, 5);
    assert_eq!(events[decided].kind, EventKind::Decided);
    events[decided].outcome = Some(Outcome::Allow);
    rehash(&mut events[decided]);
}

/// Rewrites the approver and every hash after, so that every link holds.
fn rewrite_a_vote(events: &mut [Event]) {
    let from = position(events, APPROVED, 4);
    events[from].actor = Some("mallory@example.com".into());
    rehash_chain_from(events, from);
}

/// Each tampering is found where it was done: an edited field is altered, a deleted event is
/// missing, reordered events break the chain even when rehashed, a truncated tail is caught
/// once the request is past its timeout, a changed decision is caught by evaluating it again,
/// and a rewritten vote by the decision that counted it.
#[tokio::test]
async fn every_kind_of_tampering_is_found_where_it_was_done() {
    type Tamper = fn(&mut Vec<Event>);
    type Case = (&'static str, Tamper, i32, (&'static str, u64, &'static str));
    #[rustfmt::skip]
    let cases: [Case; 6] = [
        ("edit", |e| edit_a_field(e), 1, (APPROVED, 4, "altered")),
        ("delete", delete_a_middle_event, 1, (REJECTED, 4, "missing_event")),
        ("reorder", |e| reorder_events(e), 1, (APPROVED, 3, "broken_link")),
        ("truncate", truncate_a_tail, 1, (APPROVED, 4, "no_terminal_event")),
        ("decision", |e| change_a_decision(e), 3, (REJECTED, 5, "outcome_mismatch")),
        ("rewrite", |e| rewrite_a_vote(e), 1, (APPROVED, 5, "input_mismatch")),
    ];
    let log = workflow_log().await;
    for (what, tamper, expected_code, (request_id, seq, kind)) in cases {
        let mut events = log.clone();
        tamper(&mut events);
        let (code, report) = verify_events(&events);
        assert_eq!(code, expected_code, "{what}: {report:#}");
        assert_eq!(
            findings(&report),
            [finding(request_id, seq, kind)],
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_changed_or_deleted_item_in_an_incremental_export_is_an_alteration() {
    let dir = tempfile::tempdir().unwrap();
    let events = workflow_log().await;
    full_export(dir.path(), &events);
    let vote = &events[position(&events, APPROVED, 4)];
    let mut edited = vote.clone();
    edited.reasons = vec!["edited later".into()];
    let keys_of = |e: &Event| {
        dynamo(&json!({"pk": keys::partition_key(&e.request_id), "sk": keys::sort_key(e.seq)}))
    };
    let meta = json!({"WriteTimestampMicros": {"N": "1780401600000000"}});
    let lines = [
        json!({"Metadata": meta, "Keys": keys_of(vote), "OldImage": dynamo(&event_item(vote)), "NewImage": dynamo(&event_item(&edited))}),
        json!({"Metadata": meta, "Keys": keys_of(&events[0]), "OldImage": dynamo(&event_item(&events[0]))}),
        // The record of the last checkpoint moves on: the one update regate makes.
        json!({"Metadata": meta, "Keys": dynamo(&json!({"pk": "CHECKPOINT", "sk": "LAST"})),
               "OldImage": dynamo(&json!({"pk": "CHECKPOINT", "sk": "LAST", "number": 1})),
               "NewImage": dynamo(&json!({"pk": "CHECKPOINT", "sk": "LAST", "number": 2}))}),
    ];
    write_export(
        dir.path(),
        "01790000000000-incr0001",
        "INCREMENTAL_EXPORT",
        "2026-06-02T13:00:00.000Z",
        &lines,
    );
    assert_verdict(
        verify(dir.path(), &[]),
        1,
        &[
            finding(APPROVED, 4, "changed_after_write"),
            finding(&events[0].request_id, 1, "changed_after_write"),
        ],
    );
}

#[tokio::test]
async fn a_data_file_that_lost_items_or_a_policy_that_is_not_there_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let events = workflow_log().await;
    // The events only: the policy item is not in the export.
    let lines: Vec<Value> = events
        .iter()
        .map(|e| json!({"Item": dynamo(&event_item(e))}))
        .collect();
    write_export(
        dir.path(),
        "01790000000000-nopolicy",
        "FULL_EXPORT",
        "2026-06-02T12:00:00.000Z",
        &lines,
    );
    let (code, report) = verify(dir.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    let kinds: Vec<String> = findings(&report).into_iter().map(|f| f.2).collect();
    assert_eq!(kinds, vec!["policy_missing"; 7]);
    // The bundle from a folder stands in for the missing item.
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let (code, report) = verify(dir.path(), &["--policies", policies.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");

    // A data file that holds fewer items than its manifest lists.
    let data = dir
        .path()
        .join("AWSDynamoDB/01790000000000-nopolicy/data/part-1.json.gz");
    let last = json!({"Item": dynamo(&event_item(&events[events.len() - 1]))});
    std::fs::write(&data, gzip_lines(&[last])).unwrap();
    let (code, report) = verify(dir.path(), &["--policies", policies.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        findings(&report).iter().any(|f| f.2 == "item_count"),
        "{report:#}"
    );
}

#[test]
fn an_ion_export_or_a_folder_without_an_export_is_a_clear_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = regate(&["audit", "verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no DynamoDB export under"));

    write_export(
        dir.path(),
        "01790000000000-ion00001",
        "FULL_EXPORT",
        "2026-06-02T12:00:00.000Z",
        &[],
    );
    let summary = dir
        .path()
        .join("AWSDynamoDB/01790000000000-ion00001/manifest-summary.json");
    let text = std::fs::read_to_string(&summary)
        .unwrap()
        .replace("DYNAMODB_JSON", "ION");
    std::fs::write(&summary, text).unwrap();
    let out = regate(&["audit", "verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ION format") && stderr.contains("DYNAMODB_JSON"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_backtest_lists_the_decisions_another_policy_changes() {
    let dir = tempfile::tempdir().unwrap();
    full_export(dir.path(), &workflow_log().await);
    // The same policy, but alice is no longer a payments owner.
    let policies = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for file in ["approvals.rego", "data.json"] {
        let text = std::fs::read_to_string(source.join(file)).unwrap();
        let text = text.replace(
            "\"alice@example.com\", \"bob@example.com\"",
            "\"bob@example.com\"",
        );
        std::fs::write(policies.path().join(file), text).unwrap();
    }
    let (policies, export) = (
        policies.path().to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );
    let backtest = |extra: &[&str]| {
        let mut args = vec!["audit", "backtest", "--policies", policies, export];
        args.extend(extra);
        regate(&args)
    };
    let out = backtest(&["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 7, "{report:#}");
    assert_eq!(report["changed"], 1, "{report:#}");
    assert_eq!(report["by_change"]["allow -> approval_required"], 1);
    let change = &report["changes"][0];
    assert_eq!(change["request_id"], APPROVED);
    assert_eq!(change["seq"], 5);

    let gate = backtest(&["--fail-on-change"]);
    assert_eq!(gate.status.code(), Some(3));
    let text = String::from_utf8_lossy(&gate.stdout);
    assert!(
        text.contains(&format!("{APPROVED} seq 5: allow -> approval_required")),
        "{text}"
    );

    // The same policy as a bundle file, as a policy repository's CI builds it, replays alike.
    let bundle = dir.path().join("new-policy.tar.gz");
    let bundle = bundle.to_str().unwrap();
    let built = regate(&["policy", "build", policies, "--out", bundle]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = regate(&[
        "audit",
        "backtest",
        "--policies",
        bundle,
        export,
        "--format",
        "json",
    ]);
    let from_file: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_file["changes"], report["changes"], "{from_file:#}");
}

#[tokio::test]
async fn an_export_of_requests_decided_on_the_local_stack_verifies() {
    let stack = LocalStack::connect().await;
    let (staging, staging_run) = stack
        .begin("audit-staging", |r| {
            r.change("deploy", "staging", "service", "payments")
        })
        .await;
    let (approved, approved_run) = stack.begin("audit-approved", |r| r).await;
    let (rejected, rejected_run) = stack
        .begin("audit-rejected", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    stack.message_for(&approved).await;
    stack
        .click_ok("alice@example.com", "approve", &approved)
        .await;
    stack.message_for(&rejected).await;
    stack
        .submit_reason("ivan@example.com", &rejected, "too broad")
        .await;
    for run in [&staging_run, &approved_run, &rejected_run] {
        stack.wait_finished(run).await;
    }

    // The table holds every test's requests (one edits an event on purpose): the export keeps
    // this test's requests and the policy bundles, with manifests as AWS writes them.
    let ids = [staging.clone(), approved.clone(), rejected.clone()];
    let dir = local_export(&ids, "01790000000000-local001").await;
    let (code, report) = verify(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["requests"], 3, "{report:#}");
    // The evaluator and the callback kept the bundle they evaluated with.
    assert!(
        report["summary"]["policies"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    // Three first evaluations and the two decisions made by clicks.
    assert_eq!(report["summary"]["decisions"], 5, "{report:#}");

    // The same export read straight from S3, as `aws dynamodb export-table-to-point-in-time`
    // leaves it.
    let prefix = unique("audit-s3");
    let s3 = local_s3(&local_config().await);
    upload_folder(&s3, dir.path(), EXPORT_BUCKET, &prefix).await;
    let (code, from_s3) = verify(format!("s3://{EXPORT_BUCKET}/{prefix}"), &[]);
    assert_eq!(code, 0, "{from_s3:#}");
    assert_eq!(from_s3["summary"], report["summary"]);
    let (code, _) = {
        let out = regate(&[
            "audit",
            "verify",
            &format!("s3://{EXPORT_BUCKET}/nothing-here"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(stderr.contains("nothing under s3://"), "{stderr}");
        (out.status.code().unwrap(), stderr)
    };
    assert_eq!(code, 2);
}

#[tokio::test]
async fn the_athena_queries_answer_over_an_export_in_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    full_export(dir.path(), &workflow_log().await);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join(".local/checks-venv/bin/python"))
        .arg(root.join("infra/athena/queries.py"))
        .args(["run", dir.path().to_str().unwrap()])
        .output()
        .expect("the checks venv (infra/local/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();

    let approvals = results["approvals_in_period"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{results:#}");
    assert_eq!(approvals[0]["request_id"], APPROVED);
    assert_eq!(approvals[0]["approver"], "alice@example.com");
    assert_eq!(approvals[0]["platform"], "slack");

    let per_day: Vec<(String, String, u64)> = results["decisions_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["decisions"].as_u64().unwrap(),
            )
        })
        .collect();
    // Allowed: the staging deploy and the approved one; denied: the database drop and the
    // rejected one.
    assert_eq!(
        per_day,
        [
            ("2026-06-01".to_string(), "allow".to_string(), 2),
            ("2026-06-01".to_string(), "deny".to_string(), 2)
        ]
    );

    let refused = results["refused_votes"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{results:#}");
    assert_eq!(refused[0]["request_id"], EXPIRED);
    assert_eq!(refused[0]["voter"], "dev@example.com");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("request"),
        "{results:#}"
    );

    let expired = results["expired_requests"].as_array().unwrap();
    assert_eq!(expired.len(), 1, "{results:#}");
    assert_eq!(expired[0]["request_id"], EXPIRED);
    assert!(expired[0]["reason"].as_str().unwrap().contains("timeout"));
}

/// An export of `events` and, beside it, `checkpoints/`, with the key pinned in `key.der`.
struct Anchored {
    export: tempfile::TempDir,
    checkpoints: tempfile::TempDir,
    key: std::path::PathBuf,
    signer: KmsSigner,
}

impl Anchored {
    /// Checkpoint 1 signs every head of `signed`; checkpoint 2, later, is empty (nothing changed).
    async fn new(signed: &[Event]) -> Self {
        let signer = KmsSigner::create(&local_config().await).await;
        let first = signer
            .checkpoint(None, "2026-06-01T12:05:00.000Z", heads_of(signed))
            .await;
        let second = signer
            .checkpoint(Some(&first), "2026-06-01T12:10:00.000Z", vec![])
            .await;
        let checkpoints = tempfile::tempdir().unwrap();
        write_checkpoints(checkpoints.path(), &[first, second]);
        let key = checkpoints.path().join("key.der");
        let out = regate(&[
            "audit",
            "public-key",
            "--key-id",
            &signer.key_id,
            "--out",
            key.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("sha256 "));
        Self {
            export: tempfile::tempdir().unwrap(),
            checkpoints,
            key,
            signer,
        }
    }

    /// Verifies `events` exported a day after the checkpoints, against them, cut daily.
    fn verify(&self, events: &[Event]) -> (i32, Value) {
        self.verify_with(events, &["--checkpoint-minutes", "1440"])
    }

    /// As [`Self::verify`], with other options.
    fn verify_with(&self, events: &[Event], extra: &[&str]) -> (i32, Value) {
        full_export(self.export.path(), events);
        let checkpoints = self.checkpoints.path().join("checkpoints");
        let mut args = vec![
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--public-key",
            self.key.to_str().unwrap(),
        ];
        args.extend(extra);
        verify(self.export.path(), &args)
    }
}

/// A request approved by alice, written by the real core, as someone who can write the table
/// would make one up: every hash holds and its decision comes out the same again.
async fn made_up_request(id: &str) -> Vec<Event> {
    let fakes = Fakes::default();
    let evaluator = evaluator_of(&fakes);
    let approvals = fakes.approvals();
    let made_up = request(id);
    let evaluated = evaluator
        .evaluate(&made_up.json_signed_by(issuer()), None, &execution_of(id))
        .await
        .unwrap();
    open(&approvals, &evaluated.request, "token").await;
    approvals
        .vote(&ballot(id, "alice@example.com"))
        .await
        .unwrap();
    fakes.log.of(id)
}

#[tokio::test]
async fn signed_checkpoints_vouch_for_an_untouched_export() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    let (code, report) = anchored.verify(&events);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["checkpoints"], 2);
    assert_eq!(report["summary"]["unanchored_events"], 0);

    // The key can come straight from KMS too.
    let checkpoints = anchored.checkpoints.path().join("checkpoints");
    let (code, report) = verify(
        anchored.export.path(),
        &[
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--public-key",
            &anchored.signer.key_id,
            "--checkpoint-minutes",
            "1440",
        ],
    );
    assert_eq!(code, 0, "{report:#}");

    // Events after what the last checkpoint covers are reported as not anchored yet, not as a
    // finding: here the vote and the decision came at 12:20, after checkpoint 2 (12:10).
    let earlier: Vec<Event> = events
        .iter()
        .filter(|e| e.request_id != APPROVED || e.seq < 4)
        .cloned()
        .collect();
    let partly = Anchored::new(&earlier).await;
    let mut later = events.clone();
    let vote = position(&later, APPROVED, 4);
    for event in &mut later[vote..vote + 2] {
        event.at = "2026-06-01T12:20:00.000Z".into();
    }
    rehash_chain_from(&mut later, vote);
    let (code, report) = partly.verify(&later);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["unanchored_events"], 2);
    assert_eq!(report["summary"]["predating_checkpoints"], 0);
}

#[tokio::test]
async fn a_request_made_up_after_its_time_was_signed_fails_naming_it() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    // Dated 12:00, before checkpoint 2's until (12:10), and in no checkpoint.
    let mut with_made_up = events.clone();
    with_made_up.extend(made_up_request("aud-made-up").await);
    let plain = tempfile::tempdir().unwrap();
    full_export(plain.path(), &with_made_up);
    assert_eq!(
        verify(plain.path(), &[]).0,
        0,
        "without checkpoints it cannot be told from a real one"
    );
    let (code, report) = anchored.verify(&with_made_up);
    assert_verdict(
        (code, report.clone()),
        1,
        &[finding("aud-made-up", 1, "unanchored_before_checkpoint")],
    );
    let detail = report["findings"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("checkpoint 2"), "{detail}");

    // A vote slipped into a signed request after its time was signed is caught the same way.
    let mut slipped = events.clone();
    let last = position(&slipped, DENIED, 2);
    let mut extra = slipped[last].clone();
    extra.seq = 3;
    extra.prev_hash = slipped[last].hash.clone();
    rehash(&mut extra);
    slipped.insert(last + 1, extra);
    let verdict = anchored.verify(&slipped);
    assert_eq!(verdict.0, 1, "{:#}", verdict.1);
    assert!(
        findings(&verdict.1).contains(&finding(DENIED, 3, "unanchored_before_checkpoint")),
        "{:#}",
        verdict.1
    );
}

/// `events` of one request moved to `at` and hashed again from its first event: a chain that
/// holds, dated as someone who can write the table chose.
fn dated(mut events: Vec<Event>, at: &str) -> Vec<Event> {
    for event in &mut events {
        event.at = at.into();
    }
    rehash_chain_from(&mut events, 0);
    events
}

#[tokio::test]
async fn events_dated_before_the_checkpoints_or_after_the_export_are_found() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    // A whole request dated years before checkpoint 1 looked back: a finding, unless the auditor
    // says the log is older than its checkpoints; then it is counted.
    let mut with_old = events.clone();
    with_old.extend(dated(
        made_up_request("aud-long-ago").await,
        "2020-01-01T09:00:00.000Z",
    ));
    assert_verdict(
        anchored.verify(&with_old),
        1,
        &[finding("aud-long-ago", 1, "unanchored_before_checkpoint")],
    );
    let (code, report) = anchored.verify_with(
        &with_old,
        &["--checkpoint-minutes", "1440", "--accept-older-log"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["predating_checkpoints"], 5, "{report:#}");

    // A vote and an approval appended to a signed, denied request, dated long ago: never, even
    // with --accept-older-log, since its request was signed.
    let mut approved_late = events.clone();
    let last = position(&approved_late, DENIED, 2);
    let mut vote = approved_late[last].clone();
    vote.seq = 3;
    vote.kind = EventKind::Vote;
    vote.at = "2020-01-01T09:00:00.000Z".into();
    vote.prev_hash = approved_late[last].hash.clone();
    rehash(&mut vote);
    approved_late.insert(last + 1, vote);
    let (code, report) = anchored.verify_with(
        &approved_late,
        &["--checkpoint-minutes", "1440", "--accept-older-log"],
    );
    assert_eq!(code, 1, "{report:#}");
    assert!(
        findings(&report).contains(&finding(DENIED, 3, "unanchored_before_checkpoint")),
        "{report:#}"
    );

    // A request dated after the export (2026-06-02 12:00), for a later checkpoint to sign.
    let mut ahead = events.clone();
    ahead.extend(dated(
        made_up_request("aud-ahead").await,
        "2026-06-03T09:00:00.000Z",
    ));
    let (code, report) = anchored.verify(&ahead);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        findings(&report).contains(&finding("aud-ahead", 1, "dated_after_export")),
        "{report:#}"
    );
}

#[tokio::test]
async fn a_checkpoint_series_that_stopped_is_stale() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    // Cut every 5 minutes, the last at 12:10; the export is from the next day.
    let (code, report) = anchored.verify_with(&events, &["--checkpoint-minutes", "5"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        findings(&report),
        [(
            "checkpoint 2".to_string(),
            None,
            "stale_checkpoints".to_string()
        )]
    );
    // The same series, cut hourly, has lagged more than three periods too; daily, it has not.
    assert_eq!(
        anchored
            .verify_with(&events, &["--checkpoint-minutes", "60"])
            .0,
        1
    );
    assert_eq!(
        anchored
            .verify_with(&events, &["--checkpoint-minutes", "600"])
            .0,
        0
    );
}

#[tokio::test]
async fn a_whole_chain_rewritten_with_fresh_hashes_is_caught_only_by_a_checkpoint() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    let mut rewritten = events.clone();
    // Where the message was posted, changed, and every later hash recomputed: each link holds.
    let from = position(&rewritten, APPROVED, 3);
    rewritten[from]
        .data
        .insert("channel".into(), json!("C0ELSEWHERE"));
    rehash_chain_from(&mut rewritten, from);
    let plain = tempfile::tempdir().unwrap();
    full_export(plain.path(), &rewritten);
    assert_eq!(
        verify(plain.path(), &[]).0,
        0,
        "the chain alone cannot tell"
    );
    let verdict = anchored.verify(&rewritten);
    assert_verdict(verdict, 1, &[finding(APPROVED, 5, "rewritten_chain")]);
}

#[tokio::test]
async fn a_deleted_request_and_a_truncated_chain_are_caught_by_a_checkpoint() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    let without_denied: Vec<Event> = events
        .iter()
        .filter(|e| e.request_id != DENIED)
        .cloned()
        .collect();
    let verdict = anchored.verify(&without_denied);
    assert_verdict(verdict, 1, &[finding(DENIED, 2, "deleted_request")]);

    let mut truncated = events.clone();
    truncated.remove(position(&truncated, ALLOWED, 2));
    let verdict = anchored.verify(&truncated);
    assert_verdict(verdict, 1, &[finding(ALLOWED, 2, "truncated_chain")]);
}

#[tokio::test]
async fn a_forged_checkpoint_signature_is_caught() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    // Checkpoint 2 signed by another key, then put in place of the real one.
    let other = KmsSigner::create(&local_config().await).await;
    let first: Checkpoint = serde_json::from_str(
        &std::fs::read_to_string(
            anchored
                .checkpoints
                .path()
                .join("checkpoints/0000000001.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let forged = other
        .checkpoint(Some(&first), "2026-06-01T12:10:00.000Z", vec![])
        .await;
    write_checkpoints(anchored.checkpoints.path(), &[forged]);
    let (code, report) = anchored.verify(&events);
    assert_eq!(code, 1, "{report:#}");
    let found = findings(&report);
    assert_eq!(
        found,
        [(
            "checkpoint 2".to_string(),
            None,
            "bad_signature".to_string()
        )]
    );
}

#[tokio::test]
async fn the_checkpointer_signs_checkpoints_that_verify_and_that_nobody_can_delete() {
    let stack = LocalStack::connect().await;
    let (id, run) = stack.begin("audit-anchored", |r| r).await;
    stack.message_for(&id).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    stack.wait_finished(&run).await;
    // The workflow may take the outcome a moment before `decided` is logged: the checkpoint
    // is cut once it is.
    stack
        .events_once(&id, "`decided` logged last", |events| {
            events.last().map(|e| e.kind) == Some(EventKind::Decided)
        })
        .await;
    // The local checkpointer cuts a checkpoint at every run (CHECKPOINT_MINUTES=0); the
    // sweeper cuts none any more.
    let swept = stack.sweep_request_now(&id).await;
    assert!(swept.get("checkpoint").is_none(), "{swept}");
    let cut = stack.checkpoint().await;
    let number = cut["checkpoint"].as_u64();
    assert!(number.is_some(), "no checkpoint: {cut}");

    let ids = [id.clone()];
    let dir = local_export(&ids, "01790000000000-anchor01").await;
    let env = local_env();
    let (bucket, key) = (&env["CHECKPOINT_BUCKET"], &env["CHECKPOINT_KEY_ID"]);
    let pinned = dir.path().join("checkpoints.der");
    let out = regate(&[
        "audit",
        "public-key",
        "--key-id",
        key,
        "--out",
        pinned.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, report) = verify(
        dir.path(),
        &[
            "--checkpoints",
            &format!("s3://{bucket}/checkpoints"),
            "--public-key",
            pinned.to_str().unwrap(),
            // The local checkpointer cuts at every run, but runs only when a test asks.
            "--checkpoint-minutes",
            "60",
        ],
    );
    // Every checkpoint the checkpointer signed holds, and this request's chain is anchored to its
    // end. (The checkpoints vouch for the other tests' requests too, which this export leaves
    // out on purpose: those, and only those, are reported as missing.)
    assert!(
        report["summary"]["checkpoints"].as_u64().unwrap() >= number.unwrap(),
        "{report:#}"
    );
    assert_eq!(report["summary"]["unanchored_events"], 0, "{report:#}");
    for finding in report["findings"].as_array().unwrap() {
        assert_eq!(finding["kind"], "deleted_request", "{finding}");
        assert_ne!(finding["request_id"], id.as_str());
    }

    // Object Lock in compliance mode: a checkpoint's version cannot be deleted.
    let s3 = local_s3(&local_config().await);
    let object = "checkpoints/0000000001.json";
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(object)
        .send()
        .await
        .unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_string();
    let deleted = s3
        .delete_object()
        .bucket(bucket)
        .key(object)
        .version_id(&version)
        .send()
        .await;
    assert!(deleted.is_err(), "a locked checkpoint was deleted");
}

#[tokio::test]
async fn a_checkpoint_put_again_over_object_lock_fails_from_s3_and_from_a_folder() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    full_export(anchored.export.path(), &events);
    let s3 = local_s3(&local_config().await);
    let bucket = unique("regate-locked").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let folder = anchored.checkpoints.path().join("checkpoints");
    upload_folder(&s3, &folder, &bucket, "checkpoints").await;
    let source = format!("s3://{bucket}/checkpoints");
    let key = anchored.key.to_str().unwrap();
    let args = [
        "--checkpoints",
        source.as_str(),
        "--public-key",
        key,
        "--checkpoint-minutes",
        "1440",
    ];
    let (code, report) = verify(anchored.export.path(), &args);
    assert_eq!(code, 0, "{report:#}");

    // Someone who can sign re-cuts checkpoint 2 and puts it over the original: a new version,
    // itself well signed and chained.
    let first: Checkpoint =
        serde_json::from_slice(&std::fs::read(folder.join("0000000001.json")).unwrap()).unwrap();
    let recut = anchored
        .signer
        .checkpoint(Some(&first), "2026-06-01T12:11:00.000Z", vec![])
        .await;
    let object = "checkpoints/0000000002.json";
    s3.put_object()
        .bucket(&bucket)
        .key(object)
        .body(serde_json::to_vec_pretty(&recut).unwrap().into())
        .send()
        .await
        .unwrap();
    let (code, report) = verify(anchored.export.path(), &args);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        findings(&report),
        [(object.to_string(), None, "rewritten_checkpoint".to_string())]
    );
    let listed = s3
        .list_object_versions()
        .bucket(&bucket)
        .prefix(object)
        .send()
        .await
        .unwrap();
    let detail = report["findings"][0]["detail"].as_str().unwrap();
    assert_eq!(listed.versions().len(), 2);
    for version in listed.versions() {
        assert!(detail.contains(version.version_id().unwrap()), "{detail}");
    }
    assert_eq!(detail.matches("sha256 ").count(), 2, "{detail}");

    // The same from a folder, as `aws s3 sync` and `aws s3api list-object-versions` leave it.
    let downloaded = tempfile::tempdir().unwrap();
    std::fs::copy(
        folder.join("0000000001.json"),
        downloaded.path().join("0000000001.json"),
    )
    .unwrap();
    std::fs::write(
        downloaded.path().join("0000000002.json"),
        serde_json::to_vec_pretty(&recut).unwrap(),
    )
    .unwrap();
    let versions: Vec<Value> = listed
        .versions()
        .iter()
        .map(|v| {
            json!({
                "Key": v.key().unwrap(),
                "VersionId": v.version_id().unwrap(),
                "IsLatest": v.is_latest().unwrap(),
                "ETag": v.e_tag().unwrap(),
                "LastModified": v.last_modified().unwrap().to_string(),
            })
        })
        .collect();
    std::fs::write(
        downloaded.path().join("versions.json"),
        serde_json::to_vec_pretty(&json!({ "Versions": versions })).unwrap(),
    )
    .unwrap();
    let from_folder = [
        "--checkpoints",
        downloaded.path().to_str().unwrap(),
        "--public-key",
        key,
        "--checkpoint-minutes",
        "1440",
    ];
    let (code, report) = verify(anchored.export.path(), &from_folder);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        findings(&report),
        [(object.to_string(), None, "rewritten_checkpoint".to_string())]
    );
}

#[tokio::test]
async fn a_bundle_whose_paths_could_be_read_two_ways_is_refused() {
    let events = workflow_log().await;
    let bundle = regate_policies::bundle().unwrap();
    let mut archived = bundle.archive();
    // One file named so that `path NUL sha LF` reads as two files.
    let first = archived.policies[0].clone();
    archived.policies = vec![regate_core::policy::PolicyFile {
        path: format!(
            "{}\0{}\nsecond.rego",
            first.path,
            regate_core::canonical::sha256_hex(&first.source)
        ),
        source: first.source,
    }];
    let item = json!({
        "pk": keys::policy_key(&bundle.revision),
        "sk": keys::POLICY_SORT_KEY,
        "revision": bundle.revision,
        "bundle": serde_json::to_string(&archived).unwrap(),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Value> = events
        .iter()
        .map(|e| json!({"Item": dynamo(&event_item(e))}))
        .collect();
    lines.push(json!({"Item": dynamo(&item)}));
    write_export(
        dir.path(),
        "01790000000000-ambig001",
        "FULL_EXPORT",
        "2026-06-02T12:00:00.000Z",
        &lines,
    );
    let (code, report) = verify(dir.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    let invalid: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "policy_invalid")
        .collect();
    assert_eq!(invalid.len(), 1, "{report:#}");
    assert!(
        invalid[0]["detail"]
            .as_str()
            .unwrap()
            .contains("a bundle path"),
        "{report:#}"
    );
}

#[tokio::test]
async fn the_report_lists_the_findings_and_renders_in_chromium() {
    let events = workflow_log().await;
    let anchored = Anchored::new(&events).await;
    let mut with_made_up = events.clone();
    with_made_up.extend(made_up_request("aud-made-up").await);
    let report = anchored.export.path().join("report.html");
    let (code, json_report) = anchored.verify_with(
        &with_made_up,
        &[
            "--checkpoint-minutes",
            "1440",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{json_report:#}");
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing is fetched from anywhere, and nothing runs.
    for outside in ["src=", "href=", "<script", "@import", "url("] {
        assert!(!html.contains(outside), "the report holds {outside:?}");
    }
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("audit-report.png");
    let page = regate_tests::open_in_chromium(
        &format!("file://{}", report.display()),
        &screenshot,
        &[
            ("verdict", "document.getElementById('verdict').innerText"),
            ("findings", "document.getElementById('findings').innerText"),
            (
                "bars",
                "document.querySelectorAll('#wait-chart rect').length",
            ),
            (
                "timelines",
                "document.querySelectorAll('section.timeline').length",
            ),
            (
                "flagged",
                "document.querySelector('section.timeline.flagged h3').innerText",
            ),
            (
                "checkpoints",
                "document.getElementById('checkpoints').innerText",
            ),
            ("height", "document.documentElement.scrollHeight"),
        ],
    );
    assert_eq!(page["console_errors"], json!([]), "{page:#}");
    let values = &page["values"];
    assert!(
        values["verdict"]
            .as_str()
            .unwrap()
            .contains("1 integrity finding"),
        "{page:#}"
    );
    let findings_text = values["findings"].as_str().unwrap();
    assert!(findings_text.contains("aud-made-up"), "{page:#}");
    assert!(
        findings_text.contains("unanchored_before_checkpoint"),
        "{page:#}"
    );
    assert_eq!(values["bars"], 7, "{page:#}");
    // The flagged request first, then the five real ones.
    assert_eq!(values["timelines"], 6, "{page:#}");
    assert_eq!(values["flagged"], "aud-made-up", "{page:#}");
    assert!(
        values["checkpoints"]
            .as_str()
            .unwrap()
            .contains("2 verified"),
        "{page:#}"
    );
    assert!(values["height"].as_u64().unwrap() > 900, "{page:#}");
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank screenshot: {} bytes",
        png.len()
    );
}
