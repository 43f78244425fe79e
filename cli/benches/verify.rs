//! `regate audit verify` throughput on a generated export: `REGATE_BENCH_EVENTS` events
//! (default 1,000,000) in five-event requests (requested, evaluated, notified, vote, decided),
//! each decision made by the default policy, written as a gzipped DYNAMODB_JSON export with
//! manifests. It measures, in one run:
//!
//! - the baseline: reading the export (gunzip and parse every line as JSON), nothing checked;
//! - `regate audit verify` (the release binary): every hash, link and decision evaluated again,
//!   with its peak memory (maximum resident set size, from `/usr/bin/time`).
//!
//! Run: `cargo bench -p regate-cli --bench verify` (see BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use regate_core::chain::next_event;
use regate_core::event::{keys, EventDraft, EventKind};
use regate_core::{Choice, EvaluationTime, Event, PolicyEngine, PreparedRequest, Vote};
use regate_tests::export::{dynamo, ExportWriter};
use serde_json::{json, Value};

const EVENTS_PER_REQUEST: usize = 5;

fn main() {
    let events: usize = std::env::var("REGATE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let written = generate(dir.path(), events.div_ceil(EVENTS_PER_REQUEST));
    println!(
        "generated {written} events in {:.1} s ({} bytes gzipped)",
        started.elapsed().as_secs_f64(),
        folder_size(dir.path())
    );

    let started = Instant::now();
    let parsed = read_only(dir.path());
    let baseline = started.elapsed().as_secs_f64();
    assert_eq!(parsed, written + 1);

    let regate = env!("CARGO_BIN_EXE_regate");
    let path = dir.path().to_str().unwrap();
    let started = Instant::now();
    let timed = Path::new("/usr/bin/time").exists();
    let output = if timed {
        Command::new("/usr/bin/time")
            .args([
                "-f",
                "peak_rss_kb=%M",
                regate,
                "audit",
                "verify",
                path,
                "--format",
                "json",
            ])
            .output()
    } else {
        Command::new(regate)
            .args(["audit", "verify", path, "--format", "json"])
            .output()
    }
    .unwrap();
    let verify = started.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["summary"]["events"], written);
    let peak = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb=").map(str::to_string))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map_or("n/a (no /usr/bin/time)".to_string(), |kb| {
            format!("{:.0} MiB", kb / 1024.0)
        });
    println!(
        "baseline (gunzip + parse, nothing checked): {baseline:.2} s, {:.0} events/s",
        written as f64 / baseline
    );
    println!(
        "regate audit verify: {verify:.2} s, {:.0} events/s, {} decisions evaluated again, peak memory {peak}",
        written as f64 / verify,
        report["summary"]["decisions"]
    );
    println!("ratio verify / baseline: {:.2}", verify / baseline);
}

/// Writes `requests` requests, each decided by one owner's approval, and the policy item.
fn generate(root: &Path, requests: usize) -> usize {
    let bundle = regate_policies::bundle().unwrap();
    let engine = Arc::new(PolicyEngine::compile(&bundle).unwrap());
    let mut export = ExportWriter::new(root, "01790000000000-bench001", 8);
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let mut written = 0;
    for i in 0..requests {
        let id = format!("bench-{i:07}");
        let now = start + Duration::milliseconds(i as i64 * 10);
        let request = regate_testkit::request(&id).build();
        let prepared = PreparedRequest::new(request.clone()).unwrap();
        let time = EvaluationTime::opening(now);
        let first = engine.evaluate(&prepared, &[], time).unwrap();
        let vote = Vote {
            voter: "alice@example.com".into(),
            vote: Choice::Approve,
            reason: None,
            at: regate_core::time::format_rfc3339_ms(now),
        };
        let decided = engine
            .evaluate(&prepared, std::slice::from_ref(&vote), time)
            .unwrap();
        let drafts = [
            EventDraft::new(EventKind::Requested)
                .actor(&request.requester.id)
                .data("request", serde_json::to_value(&request).unwrap())
                .data(
                    "execution",
                    format!("arn:aws:states:us-east-1:123456789012:execution:regate-approval:{id}"),
                ),
            EventDraft::new(EventKind::Evaluated)
                .evaluation(&first)
                .evaluated_at(time)
                .waiting(&first),
            EventDraft::new(EventKind::Notified)
                .platform("slack")
                .data("channel", "C0PAYMENTS")
                .data("ts", format!("1700000000.{i:06}")),
            EventDraft::new(EventKind::Vote)
                .actor("alice@example.com")
                .platform("slack")
                .data("vote", "approve"),
            EventDraft::new(EventKind::Decided)
                .evaluation(&decided)
                .actor("alice@example.com")
                .data("state", "approved")
                .evaluated_at(time)
                .votes(&[vote]),
        ];
        let mut prev: Option<Event> = None;
        for draft in drafts {
            let event = next_event(&id, prev.as_ref(), draft, now).unwrap();
            let mut item = serde_json::to_value(&event).unwrap();
            item["pk"] = json!(keys::partition_key(&id));
            item["sk"] = json!(keys::sort_key(event.seq));
            item["day_shard"] = json!("2026-06-01#0");
            export.push(&json!({"Item": dynamo(&item)}));
            written += 1;
            prev = Some(event);
        }
    }
    let policy = json!({
        "pk": keys::policy_key(&bundle.revision), "sk": keys::POLICY_SORT_KEY,
        "revision": bundle.revision, "bundle": serde_json::to_string(&bundle.archive()).unwrap(),
    });
    export.push(&json!({"Item": dynamo(&policy)}));
    export.finish("FULL_EXPORT", "2026-06-01T13:00:00.000Z");
    written
}

/// The baseline: every line of every data file gunzipped and parsed as JSON.
fn read_only(root: &Path) -> usize {
    let data = root.join("AWSDynamoDB/01790000000000-bench001/data");
    let mut lines = 0;
    for entry in std::fs::read_dir(data).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
        for line in reader.lines() {
            let _: Value = serde_json::from_str(&line.unwrap()).unwrap();
            lines += 1;
        }
    }
    lines
}

fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("AWSDynamoDB/01790000000000-bench001/data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}
