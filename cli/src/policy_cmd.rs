//! `regate policy test|eval` and `regate simulate`: try a policy bundle before deploying it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use regate_core::{
    Choice, Evaluation, EvaluationTime, Outcome, PolicyBundle, PolicyEngine, PreparedRequest,
    Request, Vote,
};
use regate_policies::run_tests;
use serde_json::{json, Value};

use crate::output::{exit, paint, Format, NO, OK, PENDING};
use crate::publish_cmd;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_*` rule in the bundle (OPA's test convention).
    Test {
        /// The policy: a folder, or a bundle file (`regate policy build`).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// text (lines for people), json, or junit (JUnit XML, which CI systems display).
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
    },
    /// Evaluate the decision (or, with --voter, whether that person may vote) and print it as JSON.
    Eval(EvalArgs),
    /// Make a bundle file (OPA's format) from a folder; refused unless it compiles and its
    /// tests pass. The same files give the same bytes.
    Build(publish_cmd::BuildArgs),
    /// Sign a bundle file (OPA's .signatures.json, ES256) with a KMS key or a local key.
    Sign(publish_cmd::SignArgs),
    /// Check a signed bundle and make it the one the functions use (the policy bucket's
    /// current.json), without a redeploy.
    Push(publish_cmd::PushArgs),
    /// Show the bundle the functions use: its revision, and when and by whom it was pushed.
    Status(publish_cmd::BucketArgs),
    /// Point the functions back to a bundle pushed before.
    Rollback(publish_cmd::RollbackArgs),
}

/// How `policy test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    Text,
    Json,
    Junit,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    common: InputArgs,
    /// json (the decision, or the vote check, as the policy returned it) or text (one line).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// A JSON file with a list of votes: [{"voter", "vote": "approve"|"reject", "reason", "at"}].
    #[arg(long)]
    votes: Option<PathBuf>,
    /// Ask data.approvals.vote for this identity instead of the decision.
    #[arg(long)]
    voter: Option<String>,
}

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    common: InputArgs,
    /// A vote as ID=approve or ID=reject (optionally ID=reject:reason); repeat in order.
    #[arg(long = "vote", value_name = "ID=approve|reject")]
    votes: Vec<String>,
    /// text (a line a step) or json (every step and the final decision).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct InputArgs {
    /// A request, or a whole policy input {"request", "votes", "now", "opened_at", "voter",
    /// "identity"} (an identity as the evaluator proves it from a token, to try a policy with).
    #[arg(long)]
    input: PathBuf,
    /// The evaluation time (RFC 3339); defaults to the input's "now", then to the current time.
    #[arg(long)]
    now: Option<String>,
    /// When the approval opened (RFC 3339); defaults to the input's "opened_at", then to the
    /// evaluation time (a first evaluation).
    #[arg(long)]
    opened_at: Option<String>,
    /// The policy: a folder, or a bundle file (`regate policy build`).
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
}

pub fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Test { dir, format } => test(&dir, format),
        PolicyCommand::Eval(args) => eval(&args),
        PolicyCommand::Build(args) => publish_cmd::build(&args),
        PolicyCommand::Sign(args) => publish_cmd::sign(&args),
        PolicyCommand::Push(args) => publish_cmd::push(&args),
        PolicyCommand::Status(args) => publish_cmd::status(&args),
        PolicyCommand::Rollback(args) => publish_cmd::rollback(&args),
    }
}

fn test(dir: &Path, format: TestFormat) -> Result<ExitCode> {
    let bundle = load_bundle(dir)?;
    let outcomes = run_tests(&bundle)?;
    if outcomes.is_empty() {
        bail!("no test_* rules found in {}", dir.display());
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match format {
        TestFormat::Text => {
            for o in &outcomes {
                let word = paint(if o.passed { "PASS" } else { "FAIL" }, o.passed);
                match &o.message {
                    Some(message) if !o.passed => outln!("{word} {}: {message}", o.name),
                    _ => outln!("{word} {}", o.name),
                }
            }
            outln!("{} passed, {failed} failed", outcomes.len() - failed);
        }
        TestFormat::Json => crate::output::json(&json!({
            "passed": outcomes.len() - failed,
            "failed": failed,
            "tests": outcomes.iter().map(|o| json!({
                "name": o.name, "passed": o.passed, "message": o.message,
            })).collect::<Vec<_>>(),
        })),
        TestFormat::Junit => outln!("{}", junit(&dir.display().to_string(), &outcomes)),
    }
    Ok(exit(if failed == 0 { OK } else { NO }))
}

/// `policy test`'s outcomes as JUnit XML: one suite, one test case a `test_*` rule (its package
/// as the class), a `<failure>` for each that failed.
fn junit(suite: &str, outcomes: &[regate_policies::TestOutcome]) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;")
    };
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"regate policy test\" tests=\"{}\" failures=\"{failed}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
        outcomes.len(),
        escape(suite),
        outcomes.len()
    );
    for o in outcomes {
        let (class, name) = o.name.rsplit_once('.').unwrap_or(("", &o.name));
        let case = format!(
            "    <testcase classname=\"{}\" name=\"{}\"",
            escape(class),
            escape(name)
        );
        if o.passed {
            xml.push_str(&format!("{case}/>\n"));
        } else {
            let message = escape(o.message.as_deref().unwrap_or("the rule was not true"));
            xml.push_str(&format!(
                "{case}>\n      <failure message=\"{message}\"/>\n    </testcase>\n"
            ));
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>");
    xml
}

fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let loaded = LoadedInput::read(&args.common)?;
    let engine = compile(&args.common.policies)?;
    let mut votes = loaded.votes;
    if let Some(path) = &args.votes {
        votes = parse_votes(&read_json(path)?, loaded.time.now)
            .with_context(|| format!("{}", path.display()))?;
    }
    if let Some(voter) = args.voter.as_deref().or(loaded.voter.as_deref()) {
        let check = engine.check_vote(&loaded.request, &votes, voter, loaded.time)?;
        match args.format {
            Format::Json => crate::output::json(&check),
            Format::Text if check.allowed => outln!("{voter} may vote"),
            Format::Text => outln!("{voter} may not vote: {}", check.reason),
        }
        return Ok(exit(if check.allowed { OK } else { NO }));
    }
    let evaluation = engine.evaluate(&loaded.request, &votes, loaded.time)?;
    match args.format {
        Format::Json => crate::output::json(&evaluation),
        Format::Text => outln!("{}", summary(&evaluation)),
    }
    Ok(outcome_exit(evaluation.decision.outcome))
}

/// A decision's exit code: allow 0, deny 1, approval required 4 (still pending).
fn outcome_exit(outcome: Outcome) -> ExitCode {
    exit(match outcome {
        Outcome::Allow => OK,
        Outcome::Deny => NO,
        Outcome::ApprovalRequired => PENDING,
    })
}

pub fn simulate(args: &SimulateArgs) -> Result<ExitCode> {
    let loaded = LoadedInput::read(&args.common)?;
    let engine = compile(&args.common.policies)?;
    let steps: Vec<(String, Choice, Option<String>)> = args
        .votes
        .iter()
        .map(|v| parse_vote_flag(v))
        .collect::<Result<_>>()?;
    let text = args.format == Format::Text;
    let mut votes = loaded.votes;
    let mut current = engine.evaluate(&loaded.request, &votes, loaded.time)?;
    let start = current.decision.clone();
    if text {
        outln!("start: {}", summary(&current));
    }
    let mut shown = Vec::new();
    for (i, (voter, choice, reason)) in steps.into_iter().enumerate() {
        let label = format!("vote {}: {voter} {}", i + 1, choice.as_str());
        let step = json!({"voter": voter, "vote": choice.as_str(), "reason": reason});
        let refused = if current.decision.outcome.is_final() {
            Some(format!(
                "the request is already decided ({})",
                current.decision.outcome
            ))
        } else {
            let check = engine.check_vote(&loaded.request, &votes, &voter, loaded.time)?;
            (!check.allowed).then_some(check.reason)
        };
        if let Some(why) = refused {
            if text {
                outln!("{label} -> refused: {why}");
            }
            shown.push(json!({"vote": step, "counted": false, "refused": why}));
            continue;
        }
        votes.push(Vote {
            voter,
            vote: choice,
            reason,
            at: regate_core::time::format_rfc3339_ms(loaded.time.now),
        });
        current = engine.evaluate(&loaded.request, &votes, loaded.time)?;
        if text {
            outln!("{label} -> counted; {}", summary(&current));
        }
        shown.push(json!({"vote": step, "counted": true, "decision": current.decision}));
    }
    if text {
        outln!("final outcome: {}", current.decision.outcome);
    } else {
        crate::output::json(&json!({
            "start": start,
            "steps": shown,
            "final": current,
        }));
    }
    Ok(outcome_exit(current.decision.outcome))
}

fn summary(evaluation: &Evaluation) -> String {
    let d = &evaluation.decision;
    let progress: Vec<String> = d
        .requirements
        .iter()
        .map(|r| format!("{}: {} of {}", r.group, r.have, r.min))
        .collect();
    let mut line = format!("{} - {}", d.outcome, d.reasons.join("; "));
    if !progress.is_empty() {
        line.push_str(&format!(" [{}]", progress.join(", ")));
    }
    line
}

fn parse_vote_flag(flag: &str) -> Result<(String, Choice, Option<String>)> {
    let (voter, rest) = flag
        .split_once('=')
        .with_context(|| format!("--vote {flag:?} must look like ID=approve or ID=reject"))?;
    let (choice, reason) = match rest.split_once(':') {
        Some((c, r)) => (c, Some(r.to_string())),
        None => (rest, None),
    };
    let choice = match choice {
        "approve" => Choice::Approve,
        "reject" => Choice::Reject,
        other => bail!("--vote {flag:?}: {other:?} is neither approve nor reject"),
    };
    if voter.trim().is_empty() {
        bail!("--vote {flag:?} names no voter");
    }
    Ok((voter.to_string(), choice, reason))
}

struct LoadedInput {
    request: PreparedRequest,
    votes: Vec<Vote>,
    time: EvaluationTime,
    voter: Option<String>,
}

impl LoadedInput {
    fn read(args: &InputArgs) -> Result<Self> {
        let json = read_json(&args.input)?;
        let whole_input = json.get("request").is_some();
        // As in the workflow, where the execution name stands in, a request without an id
        // gets one: the input file's name.
        let default_id = default_id(&args.input);
        let request = if whole_input {
            Request::from_policy_input(&json, Some(&default_id))
        } else {
            Request::from_value(&json, Some(&default_id))
        }
        .map_err(|e| anyhow::anyhow!("{}: invalid request: {e}", args.input.display()))?;
        let time_of = |name: &str, flag: &Option<String>| -> Result<Option<DateTime<Utc>>> {
            let text = flag
                .clone()
                .or_else(|| json.get(name).and_then(Value::as_str).map(String::from));
            text.map(|text| {
                regate_core::time::parse_rfc3339(&text)
                    .with_context(|| format!("{name} {text:?} is not an RFC 3339 timestamp"))
            })
            .transpose()
        };
        let now = time_of("now", &args.now)?.unwrap_or_else(Utc::now);
        let opened_at = time_of("opened_at", &args.opened_at)?.unwrap_or(now);
        let votes = match json.get("votes") {
            Some(v) if whole_input => {
                parse_votes(v, now).with_context(|| format!("{}", args.input.display()))?
            }
            _ => Vec::new(),
        };
        let voter = if whole_input {
            json.get("voter").and_then(Value::as_str).map(String::from)
        } else {
            None
        };
        Ok(Self {
            request: PreparedRequest::new(request)?,
            votes,
            time: EvaluationTime::since(opened_at, now),
            voter,
        })
    }
}

/// The input file's name as a request id (characters an id may not hold become `-`).
fn default_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id: String = stem
        .chars()
        .take(regate_core::request::MAX_ID_CHARS)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | ':' => c,
            _ => '-',
        })
        .collect();
    if id.is_empty() {
        "cli-request".into()
    } else {
        id
    }
}

/// Votes from JSON; a vote without `at` is taken as cast at `now`.
fn parse_votes(json: &Value, now: DateTime<Utc>) -> Result<Vec<Vote>> {
    let items = json.as_array().context("votes must be a JSON list")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            if let Some(map) = item.as_object_mut() {
                map.entry("at")
                    .or_insert_with(|| Value::from(regate_core::time::format_rfc3339_ms(now)));
            }
            serde_json::from_value(item).with_context(|| format!("votes[{i}] is not a vote"))
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn load_bundle(dir: &Path) -> Result<PolicyBundle> {
    Ok(regate_policies::load(dir)?)
}

fn compile(dir: &Path) -> Result<PolicyEngine> {
    Ok(PolicyEngine::compile(&load_bundle(dir)?)?)
}
