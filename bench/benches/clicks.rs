//! Click latency on the local stack: signed Slack clicks over real HTTP to the real callback
//! (release build, `REGATE_LOCAL_RELEASE=1 infra/local/stack up`), one at a time as an approver
//! clicks, each timed from sending to the answer, as Slack times it. Each of 20 requests (a
//! production deploy that needs two approvals from sre) gets four clicks: a refused one (not in
//! sre), a first approval, the same approver again (told privately that it does not count) and
//! the approval that decides and resumes the workflow. Then, three times, 50 eligible approvers
//! click Approve on one request at the same moment (what tests/concurrency.rs checks for
//! correctness): the burst's answer times beside the one-at-a-time clicks of the same run.
//!
//! The callback's own time comes from its `invocation timing` log lines
//! (`regate_aws::logging`): each invocation's time minus the union of its DynamoDB, Step
//! Functions and Slack round trips, as tracing spans measure them; beside it, the CPU time the
//! callback's process used over the invocation (an instance takes one at a time). The CPU time
//! is larger than the own time: it also holds the SDK's work inside its round-trip spans
//! (signing, serialising, parsing), so it is context, not a target.
//!
//! The same run counts what one approval costs on the local stack (Step Functions states
//! entered, from the execution's history; DynamoDB calls, from the fault proxy's tally;
//! Lambda invocations) and prices 1,000 approvals at AWS's published us-east-1 prices.
//!
//! Run: `bash bench/run.sh clicks` (starts and stops a release stack).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regate_bench::stats::{human, publish, Samples};
use regate_chat::slack::interaction::{click_payload, form_body};
use regate_tests::stack::LocalStack;

const REQUESTS: usize = 20;
/// Bursts of `BURST_CLICKS` simultaneous approvals, each on its own request.
const BURSTS: usize = 3;
const BURST_CLICKS: usize = 50;
const OWN_TIME_TARGET: Duration = Duration::from_millis(2);
/// Slack shows the clicker an error when an interaction is not answered within 3 s.
const SLACK_LIMIT: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("clicks bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let log_path = regate_tests::repo_root().join(".local/logs/functions.log");
    let stack = Arc::new(LocalStack::connect().await);
    let log_start = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut answers = Vec::new();
    let mut counted = None;
    for round in 0..REQUESTS {
        let id = regate_tests::unique("clicks");
        if round == 0 {
            for operation in DYNAMODB_CALLS {
                stack.watch(operation, &[&id]).await;
            }
        }
        let request =
            regate_testkit::request(&id).change("deploy", "production", "service", "billing");
        let execution = stack.start(&request.json()).await;
        let (channel, ts, _) = stack.message_for(&id).await;
        for (email, action) in [
            ("alice@example.com", "approve"),
            ("erin@example.com", "approve"),
            ("erin@example.com", "approve"),
            ("frank@example.com", "approve"),
        ] {
            let user = stack.slack_user(email).await;
            let body = form_body(&click_payload(&user, action, &id, &channel, &ts));
            let started = Instant::now();
            let answer = stack
                .post_signed(&body, chrono::Utc::now().timestamp(), None)
                .await;
            let took = started.elapsed();
            if answer.status != 200 {
                return Err(format!("{email} on {id}: {answer:?}"));
            }
            answers.push(took);
        }
        let finished = stack.wait_finished(&execution).await;
        if finished.status != "SUCCEEDED" {
            return Err(format!("{id} ended {}", finished.status));
        }
        if round == 0 {
            counted = Some(count_one(&stack, &id, &execution).await?);
        }
    }
    let own = own_times(&log_path, log_start)?;
    if own.len() < answers.len() {
        return Err(format!(
            "{} clicks but {} callback timing lines in {}",
            answers.len(),
            own.len(),
            log_path.display()
        ));
    }
    let answers = Samples::new(answers);
    let mut burst_answers = Vec::new();
    for _ in 0..BURSTS {
        burst_answers.extend(burst(&stack).await?);
    }
    let burst_answers = Samples::new(burst_answers);
    let own_samples = Samples::new(own.iter().map(|t| t.own).collect());
    let trips = Samples::new(own.iter().map(|t| t.round_trips).collect());
    let cpu = Samples::new(own.iter().map(|t| t.cpu).collect());
    let mut table = String::from(
        "| measure (release build) | p50 | p99 | max | target |\n|---|---:|---:|---:|---|\n",
    );
    let slack_limit = format!("< {} s (Slack)", SLACK_LIMIT.as_secs());
    for (what, samples, target) in [
        (
            format!(
                "answer time at the clicker, one click at a time ({} clicks)",
                answers.len()
            ),
            &answers,
            slack_limit.clone(),
        ),
        (
            format!(
                "answer time at the clicker, {BURST_CLICKS} approvers at once ({BURSTS} bursts)"
            ),
            &burst_answers,
            slack_limit,
        ),
        (
            "callback's DynamoDB, Step Functions and Slack round trips (one at a time)".into(),
            &trips,
            "baseline: the local stack's services".into(),
        ),
        (
            "callback's own time (the rest)".into(),
            &own_samples,
            format!("≤ {} ms at p99", OWN_TIME_TARGET.as_millis()),
        ),
        (
            "callback's CPU time (its process, over the invocation)".into(),
            &cpu,
            "context: includes the SDK's signing and parsing".into(),
        ),
    ] {
        table.push_str(&format!(
            "| {what} | {} | {} | {} | {target} |\n",
            human(samples.median()),
            human(samples.percentile(99.0)),
            human(samples.max()),
        ));
    }
    table.push_str(&format!(
        "\nIn a burst the median click is answered in {:.1}× the time of a click on its own \
         (p99 {:.1}×): they queue on one request's decision log, which moto serves one call \
         at a time.\n",
        ratio(burst_answers.median(), answers.median()),
        ratio(burst_answers.percentile(99.0), answers.percentile(99.0)),
    ));
    publish("clicks", &table).map_err(|e| e.to_string())?;
    let counts = counted.ok_or("no approval was counted")?;
    let callback_ms =
        own.iter().map(|t| t.total.as_secs_f64() * 1e3).sum::<f64>() / own.len() as f64;
    publish("cost", &cost_table(&counts, callback_ms)).map_err(|e| e.to_string())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// `BURST_CLICKS` eligible approvers (release-captains) click Approve on one request at the
/// same moment; each click's answer time. The workflow must end approved.
async fn burst(stack: &Arc<LocalStack>) -> Result<Vec<Duration>, String> {
    let id = regate_tests::unique("burst");
    let request =
        regate_testkit::request(&id).change("deploy", "production", "service", "release-train");
    let execution = stack.start(&request.json()).await;
    let clicks: Vec<(String, &str)> = (1..=BURST_CLICKS)
        .map(|i| (format!("captain{i:02}@example.com"), "approve"))
        .collect();
    let answers = stack.clicks_at_once(&clicks, &id).await;
    if let Some((answer, _)) = answers.iter().find(|(answer, _)| answer.status != 200) {
        return Err(format!("a click in the burst on {id}: {answer:?}"));
    }
    let finished = stack.wait_finished(&execution).await;
    if finished.status != "SUCCEEDED" {
        return Err(format!("{id} ended {}", finished.status));
    }
    Ok(answers.into_iter().map(|(_, took)| took).collect())
}

const DYNAMODB_CALLS: [&str; 6] = [
    "DynamoDB_20120810.PutItem",
    "DynamoDB_20120810.UpdateItem",
    "DynamoDB_20120810.TransactWriteItems",
    "DynamoDB_20120810.DeleteItem",
    "DynamoDB_20120810.GetItem",
    "DynamoDB_20120810.Query",
];

/// What one approval (four clicks) took on the local stack.
struct Counts {
    states_entered: u64,
    lambda_invocations: u64,
    dynamodb: Vec<(&'static str, u64)>,
}

async fn count_one(stack: &LocalStack, id: &str, execution: &str) -> Result<Counts, String> {
    let history = stack
        .sfn
        .get_execution_history()
        .execution_arn(execution)
        .max_results(1000)
        .send()
        .await
        .map_err(|e| format!("GetExecutionHistory: {e}"))?;
    let kinds: Vec<String> = history
        .events()
        .iter()
        .map(|e| e.r#type().as_str().to_string())
        .collect();
    let states_entered = kinds.iter().filter(|k| k.ends_with("StateEntered")).count() as u64;
    let task_invocations = kinds
        .iter()
        .filter(|k| k.as_str() == "TaskScheduled" || k.as_str() == "LambdaFunctionScheduled")
        .count() as u64;
    let mut dynamodb = Vec::new();
    for operation in DYNAMODB_CALLS {
        dynamodb.push((
            operation.trim_start_matches("DynamoDB_20120810."),
            stack.accepted(operation, id).await,
        ));
    }
    Ok(Counts {
        states_entered,
        // The workflow's Lambda tasks, and the four clicks the callback answered.
        lambda_invocations: task_invocations + 4,
        dynamodb,
    })
}

/// 1,000 approvals at AWS's published us-east-1 prices, from one approval's counts. Lambda on
/// arm64 at 256 MB (the template's), each invocation billed for `callback_ms` rounded up to the
/// millisecond (the callback's mean measured time, used for every function).
fn cost_table(counts: &Counts, callback_ms: f64) -> String {
    const APPROVALS: f64 = 1_000.0;
    // https://aws.amazon.com/step-functions/pricing/ : $0.025 per 1,000 state transitions.
    const SFN_PER_TRANSITION: f64 = 0.025 / 1_000.0;
    // https://aws.amazon.com/lambda/pricing/ (arm64): $0.0000133334 per GB-s, $0.20 per 1M requests.
    const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
    const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
    // https://aws.amazon.com/dynamodb/pricing/on-demand/ : $0.625 per 1M write request units,
    // $0.125 per 1M read request units. A transactional write costs 2 units per item.
    const WRITE_UNIT: f64 = 0.625 / 1e6;
    const READ_UNIT: f64 = 0.125 / 1e6;
    // https://aws.amazon.com/api-gateway/pricing/ : HTTP APIs, $1.00 per 1M requests.
    const API_REQUEST: f64 = 1.0 / 1e6;
    let calls = |name: &str| {
        counts
            .dynamodb
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c as f64)
            .unwrap_or(0.0)
    };
    // Items under 1 KB are one unit; the decision log's transactions write two items (the
    // event and its idempotency key), so four units each.
    let write_units = calls("PutItem")
        + calls("UpdateItem")
        + calls("DeleteItem")
        + 4.0 * calls("TransactWriteItems");
    let read_units = calls("GetItem") + calls("Query");
    let gb_seconds = counts.lambda_invocations as f64 * (callback_ms.ceil() / 1e3) * 0.25;
    let rows = [
        (
            "Step Functions state transitions",
            format!("{}", counts.states_entered),
            counts.states_entered as f64 * SFN_PER_TRANSITION,
        ),
        (
            "Lambda requests",
            format!("{}", counts.lambda_invocations),
            counts.lambda_invocations as f64 * LAMBDA_PER_REQUEST,
        ),
        (
            "Lambda GB-s (256 MB arm64)",
            format!("{gb_seconds:.4}"),
            gb_seconds * LAMBDA_PER_GB_SECOND,
        ),
        (
            "DynamoDB write units",
            format!("{write_units}"),
            write_units * WRITE_UNIT,
        ),
        (
            "DynamoDB read units",
            format!("{read_units}"),
            read_units * READ_UNIT,
        ),
        (
            "API Gateway HTTP API requests (the clicks)",
            "4".to_string(),
            4.0 * API_REQUEST,
        ),
    ];
    let mut table = String::from(
        "| item | per approval (local stack) | cost of 1,000 approvals |\n|---|---:|---:|\n",
    );
    let mut total = 0.0;
    for (what, count, dollars) in rows {
        total += dollars * APPROVALS;
        table.push_str(&format!(
            "| {what} | {count} | ${:.4} |\n",
            dollars * APPROVALS
        ));
    }
    table.push_str(&format!("| **total** | | **${total:.4}** |\n"));
    let calls: Vec<String> = counts
        .dynamodb
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    table.push_str(&format!(
        "\nDynamoDB calls for the approval: {}.\n",
        calls.join(", ")
    ));
    table
}

struct Timing {
    own: Duration,
    round_trips: Duration,
    total: Duration,
    cpu: Duration,
}

/// The callback's `invocation timing` lines written since `from`.
fn own_times(path: &Path, from: u64) -> Result<Vec<Timing>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .and_then(|n| n.trim_matches('"').parse().ok())
    };
    Ok(text
        .lines()
        .filter(|l| l.contains("invocation timing") && l.contains("function=callback"))
        .filter_map(|l| {
            Some(Timing {
                own: Duration::from_micros(field(l, "own_us")?),
                round_trips: Duration::from_micros(field(l, "round_trip_us")?),
                total: Duration::from_micros(field(l, "total_us")?),
                cpu: Duration::from_micros(field(l, "cpu_us")?),
            })
        })
        .collect())
}
