//! `regate audit verify` throughput on a generated export: `REGATE_BENCH_EVENTS` events
//! (default 1,000,000) in five-event requests (requested, evaluated, notified, vote, decided),
//! each decision made by the default policy, written as a gzipped DYNAMODB_JSON export with
//! manifests. It measures, in one run:
//!
//! - the baseline: reading the export (gunzip and parse every line as JSON), nothing checked;
//! - `regate audit verify` (the release binary) with one worker and with one for each core:
//!   every hash, link and decision evaluated again, with its peak memory (maximum resident set
//!   size, from `/usr/bin/time`);
//! - what evaluating the same decisions costs one core (timed while generating them).
//!
//! It fails above its bars: verify / baseline ≤ 3.5, two workers ≥ 1.7 × one, peak memory
//! ≤ 512 MiB.
//!
//! Run: `cargo bench -p regate-cli --bench verify` (see BENCHMARKS.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

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
    // REGATE_BENCH_DIR keeps the export there (to profile verify over it afterwards).
    let kept = std::env::var_os("REGATE_BENCH_DIR").map(std::path::PathBuf::from);
    let temporary = tempfile::tempdir().unwrap();
    let dir = kept.as_deref().unwrap_or(temporary.path());
    let started = Instant::now();
    let (written, evaluating) = generate(dir, events.div_ceil(EVENTS_PER_REQUEST));
    println!(
        "generated {written} events in {:.1} s ({} bytes gzipped)",
        started.elapsed().as_secs_f64(),
        folder_size(dir)
    );

    let started = Instant::now();
    let parsed = read_only(dir);
    let baseline = started.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(parsed, written + cores);

    let path = dir.to_str().unwrap();
    // REGATE_BENCH_ONE_RUN=1 runs verify once, on every core (the memory figure at 10,000,000
    // events; the one-worker run would add an hour).
    let one_run = std::env::var_os("REGATE_BENCH_ONE_RUN").is_some();
    let all = run_verify(path, cores, written);
    let one = if one_run {
        None
    } else {
        Some(run_verify(path, 1, written))
    };
    println!(
        "baseline (gunzip + parse, nothing checked): {baseline:.2} s, {:.0} events/s",
        written as f64 / baseline
    );
    for (run, workers) in [(one.as_ref(), 1), (Some(&all), cores)] {
        let Some(run) = run else { continue };
        println!(
            "regate audit verify --workers {workers}: {:.2} s, {:.0} events/s, {} decisions \
             evaluated again, peak memory {}",
            run.seconds,
            written as f64 / run.seconds,
            run.decisions,
            run.peak_mib
                .map_or("n/a (no /usr/bin/time)".to_string(), |m| format!(
                    "{m:.0} MiB"
                ))
        );
    }
    let ratio = all.seconds / baseline;
    println!("ratio verify / baseline: {ratio:.2} (bar {MAX_RATIO})");
    let mut failed = Vec::new();
    if ratio > MAX_RATIO {
        failed.push(format!("verify / baseline {ratio:.2} > {MAX_RATIO}"));
    }
    if let Some(one) = &one {
        let speedup = one.seconds / all.seconds;
        println!(
            "re-evaluation: {evaluating:.2} s of one core for the same decisions, {:.0}% of \
             the one-worker run",
            100.0 * evaluating / one.seconds
        );
        println!("{cores} workers / 1 worker: {speedup:.2}x (bar {MIN_SPEEDUP}x)");
        if cores >= 2 && speedup < MIN_SPEEDUP {
            failed.push(format!("speedup {speedup:.2} < {MIN_SPEEDUP}"));
        }
    }
    for run in one.iter().chain([&all]) {
        if run.peak_mib.is_some_and(|m| m > MAX_PEAK_MIB) {
            failed.push(format!(
                "peak memory {:.0} MiB > {MAX_PEAK_MIB}",
                run.peak_mib.unwrap_or_default()
            ));
        }
    }
    assert!(failed.is_empty(), "over the bar: {}", failed.join("; "));
}

/// Verify time over the gunzip-and-parse baseline, at most.
const MAX_RATIO: f64 = 3.5;
/// Two workers over one, at least.
const MIN_SPEEDUP: f64 = 1.7;
/// Peak memory, at most, at any size (the target is set at 10,000,000 events).
const MAX_PEAK_MIB: f64 = 512.0;

struct Run {
    seconds: f64,
    peak_mib: Option<f64>,
    decisions: u64,
}

/// The release `regate audit verify --workers N` over the export, timed, with its peak memory.
fn run_verify(path: &str, workers: usize, written: usize) -> Run {
    let regate = env!("CARGO_BIN_EXE_regate");
    let workers = workers.to_string();
    let args = [
        "audit",
        "verify",
        path,
        "--format",
        "json",
        "--workers",
        &workers,
    ];
    let timed = Path::new("/usr/bin/time").exists();
    let started = Instant::now();
    let output = if timed {
        Command::new("/usr/bin/time")
            .args(["-f", "peak_rss_kb=%M", regate])
            .args(args)
            .output()
    } else {
        Command::new(regate).args(args).output()
    }
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["summary"]["events"], written);
    let peak_mib = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb=").map(str::to_string))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0);
    Run {
        seconds,
        peak_mib,
        decisions: report["summary"]["decisions"].as_u64().unwrap_or_default(),
    }
}

/// Writes `requests` requests, each decided by one owner's approval, and the policy item, as
/// one export per core, made at once: the events written, and the seconds spent evaluating the
/// decisions (what re-evaluating them costs one core).
fn generate(root: &Path, requests: usize) -> (usize, f64) {
    let bundle = regate_policies::bundle().unwrap();
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parts)
            .map(|part| {
                let bundle = &bundle;
                scope.spawn(move || generate_part(root, bundle, part, parts, requests))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0.0), |(w, e), (pw, pe)| (w + pw, e + pe))
    })
}

/// Every `parts`-th request from `part` on, as export `part`.
fn generate_part(
    root: &Path,
    bundle: &regate_core::PolicyBundle,
    part: usize,
    parts: usize,
    requests: usize,
) -> (usize, f64) {
    let engine = Arc::new(PolicyEngine::compile(bundle).unwrap());
    let mut export = ExportWriter::new(root, &format!("0179000000000{part}-bench{part:03}"), 4);
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let (mut written, mut evaluating_seconds) = (0, 0.0);
    for i in (part..requests).step_by(parts) {
        let id = format!("bench-{i:07}");
        let now = start + Duration::milliseconds(i as i64 * 10);
        let request = regate_testkit::request(&id).build();
        let prepared = PreparedRequest::new(request.clone()).unwrap();
        let time = EvaluationTime::opening(now);
        let evaluating = Instant::now();
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
        evaluating_seconds += evaluating.elapsed().as_secs_f64();
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
    // Taken an hour after the last request (a request a 10 ms).
    let taken = start + Duration::milliseconds(requests as i64 * 10) + Duration::hours(1);
    export.finish("FULL_EXPORT", &regate_core::time::format_rfc3339_ms(taken));
    (written, evaluating_seconds)
}

/// Every data file of every export under `root`.
fn data_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for export in std::fs::read_dir(root.join("AWSDynamoDB")).unwrap() {
        for file in std::fs::read_dir(export.unwrap().path().join("data")).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files
}

/// The baseline: every line of every data file gunzipped and parsed as JSON.
fn read_only(root: &Path) -> usize {
    let mut lines = 0;
    for path in data_files(root) {
        let file = std::fs::File::open(path).unwrap();
        let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
        for line in reader.lines() {
            let _: Value = serde_json::from_str(&line.unwrap()).unwrap();
            lines += 1;
        }
    }
    lines
}

fn folder_size(dir: &Path) -> u64 {
    data_files(dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}
