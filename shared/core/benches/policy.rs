//! Policy evaluation speed: the default policy for each outcome and a re-evaluation with three
//! votes, against a baseline in the same run (a fresh engine parsed and compiled for every
//! decision, which is what evaluating without compile-once would cost).
//!
//! Run: `cargo bench -p regate-core --bench policy`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::Criterion;
use regate_core::{
    Choice, EvaluationTime, PolicyBundle, PolicyEngine, PreparedRequest, Request, Vote,
};
use serde_json::Value;

fn example(name: &str) -> (PreparedRequest, Vec<Vote>, EvaluationTime) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies/examples")
        .join(name);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let request = PreparedRequest::new(Request::from_policy_input(&json, None).unwrap()).unwrap();
    let votes: Vec<Vote> = serde_json::from_value(json["votes"].clone()).unwrap();
    let now = regate_core::time::parse_rfc3339(json["now"].as_str().unwrap()).unwrap();
    (request, votes, EvaluationTime::opening(now))
}

fn bundle() -> PolicyBundle {
    regate_policies::bundle().unwrap()
}

const CASES: [(&str, &str); 3] = [
    ("allow", "01-staging-deploy.json"),
    ("deny", "02-prod-database-delete.json"),
    ("approval_required", "05-prod-iam-change.json"),
];

fn three_votes() -> (PreparedRequest, Vec<Vote>, EvaluationTime) {
    let (request, _, now) = example("07-freeze-break-glass.json");
    let at = regate_core::time::format_rfc3339_ms(now.now);
    let votes = ["alice@example.com", "erin@example.com", "frank@example.com"]
        .map(|voter| Vote {
            voter: voter.into(),
            vote: Choice::Approve,
            reason: None,
            at: at.clone(),
        })
        .to_vec();
    (request, votes, now)
}

/// The outcome the benchmarked evaluation gives, checked before it is timed.
fn outcome_of(
    engine: &PolicyEngine,
    request: &PreparedRequest,
    votes: &[Vote],
    now: EvaluationTime,
) -> &'static str {
    engine
        .evaluate(request, votes, now)
        .unwrap()
        .decision
        .outcome
        .as_str()
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let bundle = bundle();
    let engine = PolicyEngine::compile(&bundle).unwrap();

    let mut group = c.benchmark_group("decision");
    for (outcome, file) in CASES {
        let (request, votes, now) = example(file);
        assert_eq!(outcome_of(&engine, &request, &votes, now), outcome);
        group.bench_function(outcome, |b| {
            b.iter(|| {
                engine
                    .evaluate(black_box(&request), black_box(&votes), now)
                    .unwrap()
            })
        });
    }
    let (request, votes, now) = three_votes();
    assert_eq!(outcome_of(&engine, &request, &votes, now), "allow");
    group.bench_function("reevaluate_3_votes", |b| {
        b.iter(|| {
            engine
                .evaluate(black_box(&request), black_box(&votes), now)
                .unwrap()
        })
    });
    let (request, votes, now) = example("05-prod-iam-change.json");
    group.bench_function("baseline_compile_per_decision", |b| {
        b.iter(|| {
            PolicyEngine::compile(&bundle)
                .unwrap()
                .evaluate(&request, &votes, now)
                .unwrap()
        })
    });
    group.finish();
    c.final_summary();
    print_ratio();
}

/// Reads criterion's medians back so the ratio against the baseline is printed by the same run.
fn print_ratio() {
    let root = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .display()
            .to_string()
    });
    let median = |id: &str| -> Option<f64> {
        let path = Path::new(&root)
            .join("criterion/decision")
            .join(id)
            .join("new/estimates.json");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        json["median"]["point_estimate"].as_f64()
    };
    let Some(baseline) = median("baseline_compile_per_decision") else {
        return;
    };
    println!("\nmedian per decision (ratio = baseline / case):");
    for id in ["allow", "deny", "approval_required", "reevaluate_3_votes"] {
        if let Some(ns) = median(id) {
            println!(
                "  {id:<20} {:>8.2} us   {:>6.1}x faster than compiling per decision",
                ns / 1000.0,
                baseline / ns
            );
        }
    }
    println!("  {:<20} {:>8.2} us", "baseline", baseline / 1000.0);
}
