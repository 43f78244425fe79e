//! `regate request start|status`: approvals for pipelines that are not Step Functions
//! workflows. `start` starts the approval state machine with a request and says where approvers
//! were asked; with `--wait` it follows the votes to the outcome and exits by it (the exit-code
//! table of `regate --help`), as `status` does. Works against AWS and the local stack alike
//! (the standard AWS configuration).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_sfn::error::ProvideErrorMetadata;
use clap::{Args, Subcommand};
use regate_aws::{describe_sdk, DynamoDecisionLog, SfnTaskTokens};
use regate_core::approvals::TO_REQUESTER;
use regate_core::event::{Event, EventKind};
use regate_core::identity::{take_token, TOKEN_FIELD};
use regate_core::ports::{DecisionLog, ExecutionStatus, TaskTokens};
use regate_core::Request;
use serde_json::{json, Value};

use crate::log_cmd::TableArg;
use crate::output::{exit, Format, ERROR, EXPIRED, NO, OK, PENDING};

/// How a request still waiting for approval is described.
const WAITING: &str = "waiting for approval";

const STATE_MACHINE_ENV: &str = "REGATE_STATE_MACHINE_ARN";
/// How often a waiting command looks at the workflow and the log.
const POLL: Duration = Duration::from_secs(1);
/// How long `start` waits for the evaluator and the notifier to say where approvers were asked.
const ASKED_WITHIN: Duration = Duration::from_secs(30);
/// How long a finished workflow's closing event is waited for.
const CLOSING_WITHIN: Duration = Duration::from_secs(5);

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Start an approval; print the request id and where approvers were asked.
    Start(StartArgs),
    /// A request's state, votes, and where it was asked.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// The request as JSON (see the policy contract in docs/guide.md); without an `id`, one is made.
    #[arg(long)]
    input: PathBuf,
    /// Wait for the outcome, showing votes as they arrive. Exit codes: 0 approved or allowed,
    /// 1 rejected or denied, 3 expired, 4 still undecided at --timeout, 2 an error.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (90s, 30m, 2h) [default: until the workflow ends].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// A file holding the CI job's OIDC identity token (GitLab's `id_tokens`, say), sent as
    /// `identity_token`. In GitHub Actions (with `permissions: id-token: write`) the token is
    /// fetched without it.
    #[arg(long, value_name = "FILE")]
    identity_token: Option<PathBuf>,
    /// The audience to ask GitHub Actions' token for (the stack's IdentityAudience).
    #[arg(long, default_value = "regate")]
    audience: String,
    /// text, or json: one document on stdout at the end (progress lines go to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    place: Place,
}

#[derive(Args)]
pub struct StatusArgs {
    request_id: String,
    /// text or json. Exit codes: 0 approved or allowed, 1 rejected or denied, 3 expired,
    /// 4 still waiting for approval, 2 an error.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    place: Place,
}

/// Where regate runs: a deployed stack's outputs, or the state machine and table named.
#[derive(Args)]
pub struct Place {
    /// The approval state machine's ARN.
    #[arg(long, env = STATE_MACHINE_ENV)]
    state_machine: Option<String>,
    /// A deployed regate stack: its StateMachineArn and DecisionLogTableName outputs (they take
    /// precedence over --state-machine and --table).
    #[arg(long)]
    stack: Option<String>,
    #[command(flatten)]
    table: TableArg,
}

pub fn run(command: RequestCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            RequestCommand::Start(args) => start(&args).await,
            RequestCommand::Status(args) => status(&args).await,
        }
    })
}

/// The clients and names a command works with.
struct Regate {
    sfn: aws_sdk_sfn::Client,
    tokens: SfnTaskTokens,
    log: DynamoDecisionLog,
    state_machine: Option<String>,
}

impl Regate {
    async fn connect(place: &Place) -> Result<Self> {
        let config = crate::load_aws_config().await;
        let (state_machine, table) = match &place.stack {
            Some(stack) => {
                let outputs = stack_outputs(&config, stack).await?;
                let output = |key: &str| {
                    outputs
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                        .with_context(|| format!("stack {stack} has no {key} output"))
                };
                (
                    Some(output("StateMachineArn")?),
                    Some(output("DecisionLogTableName")?),
                )
            }
            None => (place.state_machine.clone(), place.table.name()),
        };
        let table = table.with_context(|| {
            "no decision log table: pass --stack, --table or set REGATE_DECISION_LOG_TABLE"
        })?;
        let sfn = aws_sdk_sfn::Client::new(&config);
        Ok(Self {
            tokens: SfnTaskTokens::new(sfn.clone()),
            sfn,
            log: DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&config), table),
            state_machine: state_machine.filter(|s| !s.is_empty()),
        })
    }

    async fn events(&self, request_id: &str) -> Result<Vec<Event>> {
        self.log
            .events(request_id)
            .await
            .with_context(|| format!("reading {request_id} from {}", self.log.table()))
    }

    /// The workflow's status as the sweeper reads it (`SfnTaskTokens::execution_status`),
    /// with a failure's error name from the history when the description leaves it out (moto
    /// does).
    async fn workflow(&self, execution: &str) -> Result<ExecutionStatus> {
        let status = self
            .tokens
            .execution_status(execution)
            .await
            .map_err(|e| anyhow::anyhow!("describing {execution}: {e}"))?;
        if status != ExecutionStatus::Failed(None) {
            return Ok(status);
        }
        let error = regate_aws::task_tokens::failure_error(&self.sfn, execution)
            .await
            .map_err(|e| anyhow::anyhow!("reading {execution}'s history: {e}"))?;
        Ok(ExecutionStatus::Failed(error))
    }
}

pub(crate) async fn stack_outputs(
    config: &aws_config::SdkConfig,
    stack: &str,
) -> Result<Vec<(String, String)>> {
    let described = aws_sdk_cloudformation::Client::new(config)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("stack {stack}: {}", describe_sdk(&e)))?;
    let outputs = described
        .stacks()
        .first()
        .with_context(|| format!("no stack named {stack}"))?
        .outputs();
    Ok(outputs
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

async fn start(args: &StartArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut request: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", args.input.display()))?;
    if request.get("id").and_then(Value::as_str).is_none() {
        if let Some(object) = request.as_object_mut() {
            object.insert("id".into(), new_request_id().into());
        }
    }
    if let Some(token) = identity_token(args).await? {
        if let Some(object) = request.as_object_mut() {
            object.insert(TOKEN_FIELD.into(), token.into());
        }
    }
    // The evaluator checks it too; checking here fails a pipeline before anything starts.
    let checked = Request::from_value(&take_token(&request).0, None)
        .map_err(|e| anyhow::anyhow!("{}: invalid request: {e}", args.input.display()))?;
    let regate = Regate::connect(&args.place).await?;
    let state_machine = regate.state_machine.clone().with_context(|| {
        format!("no state machine: pass --stack, --state-machine or set {STATE_MACHINE_ENV}")
    })?;
    let id = checked.id;
    let started = regate
        .sfn
        .start_execution()
        .state_machine_arn(&state_machine)
        .name(&id)
        .input(request.to_string())
        .send()
        .await;
    let execution = match started {
        Ok(started) => started.execution_arn().to_string(),
        Err(e) if e.code() == Some("ExecutionAlreadyExists") => {
            same_request_waiting(&regate, &state_machine, &id, &request).await?
        }
        Err(e) => bail!("starting {state_machine}: {}", describe_sdk(&e)),
    };
    let mut shown = Shown::new(args.format);
    shown.say(&format!("request {id}"));
    shown.say(&format!("execution {execution}"));
    let followed = follow(&regate, args, &id, &execution, &mut shown).await;
    // A pipeline reads one document whatever happened, an error included (its exit code is 2).
    if args.format == Format::Json {
        let (outcome, error) = match &followed {
            Ok((outcome, _)) => (outcome.clone(), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        crate::output::json(&json!({"request_id": id, "execution": execution,
            "outcome": outcome, "error": error, "events": shown.lines}));
    }
    followed.map(|(_, code)| exit(code))
}

/// Follows a started request: where approvers were asked and, with `--wait`, the votes as they
/// come and the outcome. Returns the outcome (none without `--wait`) and its exit code.
async fn follow(
    regate: &Regate,
    args: &StartArgs,
    id: &str,
    execution: &str,
    shown: &mut Shown,
) -> Result<(Option<String>, u8)> {
    let events = asked(regate, id, execution).await?;
    shown.print_new(&events);
    if !args.wait {
        return Ok((None, OK));
    }
    let deadline = args.timeout.map(|t| Instant::now() + t);
    loop {
        let status = regate.workflow(execution).await?;
        shown.print_new(&regate.events(id).await?);
        if status != ExecutionStatus::Running {
            let events = closing_events(regate, id).await?;
            shown.print_new(&events);
            let (code, outcome) = outcome(&status, asked_people(&events));
            shown.say(&format!("outcome {outcome}"));
            return Ok((Some(outcome), code));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            say_on_stderr(&format!(
                "request {id} is still waiting for approval; see regate request status {id}"
            ));
            return Ok((Some(WAITING.into()), PENDING));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A line on standard error, which may be closed too: then it is dropped, never a panic.
fn say_on_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A request started before under the same id: when its workflow still waits and it is the
/// same request (its identity token aside: a re-run job gets a new one), this start is a retry
/// and follows it; otherwise it is an error, never a second approval.
async fn same_request_waiting(
    regate: &Regate,
    state_machine: &str,
    id: &str,
    request: &Value,
) -> Result<String> {
    let started_before =
        || anyhow::anyhow!("request {id} was started before: see regate request status {id}");
    let execution = format!(
        "{}:{id}",
        state_machine.replacen(":stateMachine:", ":execution:", 1)
    );
    let described = regate
        .sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .map_err(|_| started_before())?;
    let before: Value = described
        .input()
        .and_then(|input| serde_json::from_str(input).ok())
        .unwrap_or_default();
    let running = described.status().as_str() == "RUNNING";
    if !running || take_token(&before).0 != take_token(request).0 {
        return Err(started_before());
    }
    Ok(execution)
}

/// GitHub Actions' variables for asking the job's identity token.
const GITHUB_TOKEN_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GITHUB_TOKEN_BEARER: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// The identity token to send: the `--identity-token` file's, else GitHub Actions' (asked for
/// `--audience`) when the job may have one, else none. The token is never printed.
async fn identity_token(args: &StartArgs) -> Result<Option<String>> {
    if let Some(path) = &args.identity_token {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the identity token {}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            bail!("the identity token file {} is empty", path.display());
        }
        return Ok(Some(token.to_string()));
    }
    let (Ok(url), Ok(bearer)) = (
        std::env::var(GITHUB_TOKEN_URL),
        std::env::var(GITHUB_TOKEN_BEARER),
    ) else {
        return Ok(None);
    };
    let mut url =
        reqwest::Url::parse(&url).with_context(|| format!("{GITHUB_TOKEN_URL} is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("audience", &args.audience);
    let asking = |e: reqwest::Error| {
        anyhow::anyhow!(
            "asking GitHub Actions for the job's identity token: {}",
            e.without_url()
        )
    };
    let answer = regate_aws::function_http_client(Duration::from_secs(5))?
        .get(url)
        .timeout(Duration::from_secs(10))
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(asking)?;
    if !answer.status().is_success() {
        bail!(
            "asking GitHub Actions for the job's identity token: HTTP {} (does the job have \
             `permissions: id-token: write`?)",
            answer.status()
        );
    }
    let body: Value = answer.json().await.map_err(asking)?;
    match body.get("value").and_then(Value::as_str) {
        Some(token) if !token.is_empty() => Ok(Some(token.to_string())),
        _ => bail!("GitHub Actions answered the identity token request without a token"),
    }
}

/// The request's events once the evaluator has decided and, when it asked for approval, the
/// notifier has posted (or the workflow has ended), within [`ASKED_WITHIN`].
async fn asked(regate: &Regate, id: &str, execution: &str) -> Result<Vec<Event>> {
    let since = Instant::now();
    loop {
        let events = regate.events(id).await?;
        let evaluated = events.iter().any(|e| e.kind == EventKind::Evaluated);
        let posted = events.iter().any(|e| e.kind == EventKind::Notified);
        if evaluated && (posted || !asked_people(&events)) {
            return Ok(events);
        }
        if since.elapsed() >= ASKED_WITHIN
            || regate.workflow(execution).await? != ExecutionStatus::Running
        {
            return Ok(events);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the request needed approvers (its first evaluation said so).
fn asked_people(events: &[Event]) -> bool {
    events
        .iter()
        .find(|e| e.kind == EventKind::Evaluated)
        .and_then(|e| e.outcome)
        .is_some_and(|o| !o.is_final())
}

/// The events of a request whose workflow has ended. The callback resumes the workflow before
/// it logs the decision, so the closing event may trail the end by a moment: wait for it a
/// little, within [`CLOSING_WITHIN`].
async fn closing_events(regate: &Regate, id: &str) -> Result<Vec<Event>> {
    let since = Instant::now();
    loop {
        let events = regate.events(id).await?;
        let closed = events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Decided | EventKind::Expired));
        if closed || !asked_people(&events) || since.elapsed() >= CLOSING_WITHIN {
            return Ok(events);
        }
        tokio::time::sleep(POLL / 4).await;
    }
}

/// The exit code and the word for a finished workflow (see the state machine's end states);
/// `asked_people` when approvers decided it, not the policy alone.
fn outcome(status: &ExecutionStatus, asked_people: bool) -> (u8, String) {
    let failed = |name: Option<&str>| match name {
        Some("ApprovalRejected") => (NO, "rejected".into()),
        Some("PolicyDenied") => (NO, "denied".into()),
        Some("ApprovalExpired") => (EXPIRED, "expired".into()),
        Some(error) => (ERROR, format!("failed ({error})")),
        None => (ERROR, "failed, timed out or aborted".into()),
    };
    match status {
        ExecutionStatus::Succeeded if asked_people => (OK, "approved".into()),
        ExecutionStatus::Succeeded => (OK, "allowed".into()),
        ExecutionStatus::Failed(name) => failed(name.as_deref()),
        ExecutionStatus::Running => (PENDING, WAITING.into()),
        ExecutionStatus::Gone => (ERROR, "no longer known to Step Functions".into()),
    }
}

/// A request id for a request that has none: `req-<UTC time>-<UUID v4>`, readable by when it
/// was made and unique whoever makes it.
fn new_request_id() -> String {
    format!(
        "req-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        uuid::Uuid::new_v4().simple()
    )
}

/// What a command has shown: the events it printed, and every line (for `--format json`,
/// where the lines go to stderr as progress and into the document at the end).
struct Shown {
    format: Format,
    seqs: std::collections::BTreeSet<u64>,
    lines: Vec<String>,
}

impl Shown {
    fn new(format: Format) -> Self {
        Self {
            format,
            seqs: std::collections::BTreeSet::new(),
            lines: Vec::new(),
        }
    }

    /// A line for people: on stdout as text, on stderr beside a JSON document.
    fn say(&mut self, line: &str) {
        match self.format {
            Format::Text => outln!("{line}"),
            Format::Json => say_on_stderr(line),
        }
        self.lines.push(line.to_string());
    }

    fn print_new(&mut self, events: &[Event]) {
        for event in events {
            if self.seqs.insert(event.seq) {
                if let Some(line) = describe(event) {
                    self.say(&line);
                }
            }
        }
    }
}

/// One line for the events a pipeline's log wants: the decision, where approvers were asked,
/// the votes, and how it ended.
fn describe(event: &Event) -> Option<String> {
    let text = |key: &str| event.data.get(key).and_then(Value::as_str).unwrap_or("");
    let outcome = event.outcome.map(|o| o.as_str()).unwrap_or("");
    let actor = event.actor.as_deref().unwrap_or("");
    let platform = event.platform.as_deref().unwrap_or("");
    let reasons = event.reasons.join("; ");
    Some(match event.kind {
        EventKind::Evaluated => format!("evaluated {outcome}: {reasons}"),
        EventKind::Notified if text("to") == TO_REQUESTER => format!(
            "told the requester {} on {}: {}",
            text("user"),
            text("platform"),
            text("status")
        ),
        EventKind::Notified if platform == "slack" => {
            format!(
                "asked slack channel {} (message {})",
                text("channel"),
                text("ts")
            )
        }
        EventKind::Notified => format!(
            "asked {platform} conversation {} (activity {})",
            text("conversation"),
            text("activity_id")
        ),
        EventKind::Vote => format!("vote {actor} {} ({platform})", text("vote")),
        EventKind::VoteRefused => format!("vote refused {actor}: {reasons}"),
        EventKind::Decided if actor.is_empty() => {
            format!("decided {} as time passed: {reasons}", text("state"))
        }
        EventKind::Decided => format!("decided {} by {actor}: {reasons}", text("state")),
        EventKind::Reminded => {
            let waiting: Vec<&str> = event
                .data
                .get("waiting_on")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!("reminded, still waiting on {}", waiting.join(", "))
        }
        EventKind::Expired => format!("expired: {reasons}"),
        EventKind::Error => format!("error: {reasons}"),
        EventKind::Requested => return None,
    })
}

async fn status(args: &StatusArgs) -> Result<ExitCode> {
    let regate = Regate::connect(&args.place).await?;
    let id = &args.request_id;
    let events = regate.events(id).await?;
    let Some(requested) = events.iter().find(|e| e.kind == EventKind::Requested) else {
        bail!("no request {id} in {}", regate.log.table());
    };
    let request = requested.data.get("request").cloned().unwrap_or_default();
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(&request, |v, key| v.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let change = json!({
        "action": field(&["action"]),
        "resource": {"type": field(&["resource", "type"]), "name": field(&["resource", "name"])},
        "environment": field(&["environment"]),
        "requester": field(&["requester", "id"]),
    });
    let lines: Vec<String> = events.iter().filter_map(describe).collect();
    let execution = requested.data.get("execution").and_then(Value::as_str);
    let (code, state) = match execution {
        Some(execution) => {
            let (code, word) = outcome(&regate.workflow(execution).await?, asked_people(&events));
            (code, Some(word))
        }
        None => (ERROR, None),
    };
    let links: Vec<Value> = request
        .get("links")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.format == Format::Json {
        crate::output::json(&json!({
            "request_id": id, "summary": field(&["summary"]), "change": change,
            "state": state, "execution": execution, "links": links, "events": lines,
        }));
        return Ok(exit(code));
    }
    outln!("request {id}: {}", field(&["summary"]));
    outln!(
        "change {} {} {} in {}, requested by {}",
        field(&["action"]),
        field(&["resource", "type"]),
        field(&["resource", "name"]),
        field(&["environment"]),
        field(&["requester", "id"])
    );
    if let (Some(execution), Some(state)) = (execution, &state) {
        outln!("state {state}");
        outln!("execution {execution}");
    }
    for link in &links {
        let text = |k: &str| link.get(k).and_then(Value::as_str).unwrap_or("");
        outln!("link {}: {}", text("title"), text("url"));
    }
    for line in lines {
        outln!("{line}");
    }
    Ok(exit(code))
}

/// A duration as humantime reads it (`90s`, `30m`, `2h`, `1h 30m`, `1d`), or a number of
/// seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too long"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 90s, 30m, 2h or 1h 30m ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_states_map_to_the_documented_exit_codes() {
        let failed =
            |name: Option<&str>| outcome(&ExecutionStatus::Failed(name.map(String::from)), true);
        assert_eq!(
            outcome(&ExecutionStatus::Succeeded, true),
            (0, "approved".into())
        );
        assert_eq!(
            outcome(&ExecutionStatus::Succeeded, false),
            (0, "allowed".into())
        );
        assert_eq!(failed(Some("ApprovalRejected")), (1, "rejected".into()));
        assert_eq!(failed(Some("PolicyDenied")), (1, "denied".into()));
        assert_eq!(failed(Some("ApprovalExpired")), (3, "expired".into()));
        assert_eq!(failed(Some("PolicyError")).0, 2);
        assert_eq!(failed(None).0, 2);
        assert_eq!(outcome(&ExecutionStatus::Gone, false).0, 2);
    }

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn a_made_up_request_id_is_a_valid_execution_name() {
        let id = new_request_id();
        assert!(id.starts_with("req-") && id.len() <= 80, "{id}");
        assert_ne!(id, new_request_id(), "two ids made in one second differ");
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }
}
