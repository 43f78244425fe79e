//! regate's policy engine beside OPA v1, in one process, on the same inputs, interleaved.
//!
//! For each case the default policy (`policies/`) decides the same request under both engines:
//! regate through `PolicyEngine::evaluate`, the path every function takes (the hard rules, the
//! policy input and its sha256, the compiled policy on a pooled regorus VM, the typed
//! decision), and OPA through its Go `rego` package in process, timed from the call to the
//! returned JSON (its input text made once, outside the timing: the most favourable way to
//! measure OPA). Before timing, both must return the same decision document; a disagreement
//! fails the bench. Then one regate evaluation and one OPA evaluation alternate, so that both
//! see the same machine, and p50, p90 and p99 of each are printed with OPA / regate.
//!
//! Run: `bash bench/run.sh opa` (downloads OPA), or with the library at hand:
//! `REGATE_OPA_LIB=path/to/libopabridge.so cargo bench -p regate-bench --bench opa`;
//! `REGATE_BENCH_CASE=scale` runs one case, `REGATE_BENCH_QUICK=1` a twentieth of the rounds:
//! such trials print their table but leave BENCHMARKS.md's to a full run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regate_bench::opa::{Opa, Query};
use regate_bench::stats::{human, publish, Samples};
use regate_core::policy::{PolicyBundle, PolicyEngine, PolicyFile, DECISION_RULE};
use regate_core::{Choice, EvaluationTime, PreparedRequest, Request, Vote};
use serde_json::{json, Value};

/// A request decided by a bundle.
struct Case {
    name: &'static str,
    what: String,
    bundle: PolicyBundle,
    request: PreparedRequest,
    votes: Vec<Vote>,
    now: DateTime<Utc>,
    rounds: usize,
    target: &'static str,
}

impl Case {
    /// A first evaluation at the example's `now`.
    fn time(&self) -> EvaluationTime {
        EvaluationTime::opening(self.now)
    }
}

const ROUNDS: usize = 20_000;
const SCALE_ROUNDS: usize = 300;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("opa bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let library = std::env::var_os("REGATE_OPA_LIB")
        .map(PathBuf::from)
        .ok_or("set REGATE_OPA_LIB to libopabridge.so (bash bench/opa.sh downloads it)")?;
    let quick = std::env::var_os("REGATE_BENCH_QUICK").is_some();
    let only = std::env::var("REGATE_BENCH_CASE").ok();
    let mut rows = Vec::new();
    for case in cases()? {
        if only.as_deref().is_some_and(|name| name != case.name) {
            continue;
        }
        let rounds = if quick { case.rounds / 20 } else { case.rounds };
        rows.push(measure(&library, &case, rounds)?);
    }
    let mut table = String::from(
        "| case | regate p50 | p90 | p99 | OPA p50 | p90 | p99 | OPA / regate at p50 (p90, p99) | target |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in &rows {
        table.push_str(&row.markdown());
    }
    if quick || only.is_some() {
        // A trial: printed, but BENCHMARKS.md keeps the last full run.
        println!("\n{table}");
        return Ok(());
    }
    publish("opa", &table).map_err(|e| e.to_string())
}

struct Row {
    case: String,
    regate: Samples,
    opa: Samples,
    target: &'static str,
}

impl Row {
    fn markdown(&self) -> String {
        let ratio =
            |p: f64| self.opa.percentile(p).as_secs_f64() / self.regate.percentile(p).as_secs_f64();
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}× ({:.1}×, {:.1}×) | {} |\n",
            self.case,
            human(self.regate.median()),
            human(self.regate.percentile(90.0)),
            human(self.regate.percentile(99.0)),
            human(self.opa.median()),
            human(self.opa.percentile(90.0)),
            human(self.opa.percentile(99.0)),
            ratio(50.0),
            ratio(90.0),
            ratio(99.0),
            self.target,
        )
    }
}

fn measure(library: &Path, case: &Case, rounds: usize) -> Result<Row, String> {
    let engine = PolicyEngine::compile(&case.bundle).map_err(|e| e.to_string())?;
    let opa = Opa::load(library)?;
    for file in &case.bundle.policies {
        opa.add_policy(&file.path, &file.source)?;
    }
    opa.add_data(&case.bundle.data_json)?;
    let input = PolicyEngine::decision_input(&case.request, &case.votes, case.time())
        .map_err(|e| e.to_string())?;
    let query = Query::new(DECISION_RULE.trim_start_matches("data."), &input)?;
    same_decision(case.name, &engine, &opa, &query, &input)?;
    let outcome = engine
        .evaluate(&case.request, &case.votes, case.time())
        .map_err(|e| e.to_string())?
        .decision
        .outcome;
    println!("{}: both engines decide {}", case.name, outcome.as_str());

    let evaluate_regate = || {
        let start = Instant::now();
        let evaluation = engine.evaluate(&case.request, &case.votes, case.time());
        let took = start.elapsed();
        std::hint::black_box(evaluation).map(|_| took)
    };
    let evaluate_opa = || {
        let start = Instant::now();
        let envelope = opa.evaluate(&query);
        let took = start.elapsed();
        drop(std::hint::black_box(envelope));
        took
    };
    let warm_up = (rounds / 10).max(10);
    let (mut regate, mut opa_times) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..warm_up + rounds {
        let regate_took = evaluate_regate().map_err(|e| e.to_string())?;
        let opa_took: Duration = evaluate_opa();
        if round >= warm_up {
            regate.push(regate_took);
            opa_times.push(opa_took);
        }
    }
    let row = Row {
        case: format!("{} ({})", case.name, case.what),
        regate: Samples::new(regate),
        opa: Samples::new(opa_times),
        target: case.target,
    };
    println!(
        "{}: regate p50 {} / OPA p50 {} over {rounds} rounds",
        case.name,
        human(row.regate.median()),
        human(row.opa.median())
    );
    Ok(row)
}

/// Both engines' `data.approvals.decision` for the same input, compared as JSON documents.
fn same_decision(
    name: &str,
    engine: &PolicyEngine,
    opa: &Opa,
    query: &Query,
    input: &str,
) -> Result<(), String> {
    let input_value = regorus::Value::from_json_str(input).map_err(|e| e.to_string())?;
    let ours = engine
        .evaluate_raw(DECISION_RULE, input_value)
        .map_err(|e| e.to_string())?;
    let ours: Value = serde_json::to_value(&ours).map_err(|e| e.to_string())?;
    let theirs = opa.document(query)?;
    if ours != theirs {
        return Err(format!(
            "{name}: the engines disagree\nregate: {ours:#}\nOPA:    {theirs:#}"
        ));
    }
    Ok(())
}

fn cases() -> Result<Vec<Case>, String> {
    let bundle = regate_policies::bundle().map_err(|e| e.to_string())?;
    let example = |file: &str| -> Result<(PreparedRequest, Vec<Vote>, DateTime<Utc>), String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/examples")
            .join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let request = prepared(&json)?;
        let votes: Vec<Vote> =
            serde_json::from_value(json["votes"].clone()).map_err(|e| e.to_string())?;
        let now = json["now"]
            .as_str()
            .and_then(regate_core::time::parse_rfc3339)
            .ok_or("an example without now")?;
        Ok((request, votes, now))
    };
    let mut cases = Vec::new();
    for (name, file, target) in [
        ("allow", "01-staging-deploy.json", "≤ 10 µs, ≥ 8× OPA"),
        ("deny", "02-prod-database-delete.json", "≤ 10 µs, ≥ 8× OPA"),
        (
            "approval_required",
            "05-prod-iam-change.json",
            "≤ 10 µs, ≥ 8× OPA",
        ),
    ] {
        let (request, votes, now) = example(file)?;
        cases.push(Case {
            name,
            what: format!("`{file}`"),
            bundle: bundle.clone(),
            request,
            votes,
            now,
            rounds: ROUNDS,
            target,
        });
    }
    let (request, _, now) = example("07-freeze-break-glass.json")?;
    let votes = approvals(
        &["alice@example.com", "erin@example.com", "frank@example.com"],
        now,
    );
    cases.push(Case {
        name: "reevaluate_3_votes",
        what: "`07-freeze-break-glass.json` + 3 approvals → allow".into(),
        bundle,
        request,
        votes,
        now,
        rounds: ROUNDS,
        target: "≤ 10 µs, ≥ 8× OPA",
    });
    cases.push(scale_case()?);
    Ok(cases)
}

/// Groups of 1,000 members, 2,000 services, and a production IAM change with 500 approvals
/// from its owners: still waiting for security, so every part of the policy runs.
fn scale_case() -> Result<Case, String> {
    const TEAMS: usize = 20;
    const MEMBERS: usize = 1_000;
    const SERVICES: usize = 2_000;
    const VOTES: usize = 500;
    let member = |group: &str, i: usize| format!("{group}-{i:04}@example.com");
    let mut groups = serde_json::Map::new();
    let team_names: Vec<String> = (0..TEAMS).map(|t| format!("team{t:02}-owners")).collect();
    for group in team_names
        .iter()
        .map(String::as_str)
        .chain(["sre", "security"])
    {
        let members: Vec<String> = (0..MEMBERS).map(|i| member(group, i)).collect();
        groups.insert(group.to_string(), json!(members));
    }
    let mut services = serde_json::Map::new();
    for s in 0..SERVICES {
        services.insert(
            format!("service-{s:04}"),
            json!({
                "owners": team_names[s % TEAMS],
                "slack_channel": format!("C0SVC{s:04}"),
                "teams_conversation": format!("19:service-{s:04}@thread.tacv2"),
            }),
        );
    }
    let default_data: Value = serde_json::from_str(
        &regate_policies::bundle()
            .map_err(|e| e.to_string())?
            .data_json,
    )
    .map_err(|e| e.to_string())?;
    let data = json!({
        "groups": groups,
        "services": services,
        "freeze": default_data["freeze"],
        "defaults": default_data["defaults"],
    });
    let policies: Vec<PolicyFile> = regate_policies::bundle()
        .map_err(|e| e.to_string())?
        .policies;
    let bundle =
        PolicyBundle::from_files(policies, Some(data.to_string())).map_err(|e| e.to_string())?;
    let service = 1_234;
    let owners = &team_names[service % TEAMS];
    let github = "https://token.actions.githubusercontent.com";
    let request = prepared(&json!({
        "request": {
            "id": "chg-scale",
            "action": "iam_change",
            "environment": "production",
            "resource": {"type": "iam_role", "name": format!("service-{service:04}")},
            "requester": {"id": "dev@example.com", "kind": "human"},
            "initiator": {"id": "ci-bot", "kind": "service"},
            "summary": "Grant the deployer s3:PutObject",
            "details": {},
            "links": [],
        },
        "identity": {"issuer": github, "subject": "repo:acme/iam:ref:refs/heads/main",
            "key_id": "bench", "claims": {"actor": "dev@example.com", "repository": "acme/iam",
            "ref": "refs/heads/main"}},
    }))?;
    let now = regate_core::time::parse_rfc3339("2026-06-01T12:00:00Z").ok_or("a bad date")?;
    let voters: Vec<String> = (0..VOTES).map(|i| member(owners, i)).collect();
    let voters: Vec<&str> = voters.iter().map(String::as_str).collect();
    Ok(Case {
        name: "scale",
        what: "groups of 1,000, 2,000 services, 500 votes".into(),
        bundle,
        request,
        votes: approvals(&voters, now),
        now,
        rounds: SCALE_ROUNDS,
        target: "≤ 1 ms, ≥ 5× OPA",
    })
}

/// A whole policy input's request and identity, prepared.
fn prepared(input: &Value) -> Result<PreparedRequest, String> {
    let request = Request::from_policy_input(input, None).map_err(|e| e.to_string())?;
    PreparedRequest::new(request).map_err(|e| e.to_string())
}

fn approvals(voters: &[&str], now: DateTime<Utc>) -> Vec<Vote> {
    let at = regate_core::time::format_rfc3339_ms(now);
    voters
        .iter()
        .map(|voter| Vote {
            voter: (*voter).into(),
            vote: Choice::Approve,
            reason: None,
            at: at.clone(),
        })
        .collect()
}
