//! `regate log show|query`: the decision log for auditors. Talks to DynamoDB through the
//! standard AWS configuration, so it works against AWS and against the local stack alike.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use regate_aws::{DynamoDecisionLog, LogQuery};
use regate_core::chain::verify_chain;
use regate_core::event::{Event, EventKind};
use regate_core::ports::DecisionLog;
use regate_core::Outcome;

const TABLE_ENV: &str = "REGATE_DECISION_LOG_TABLE";

#[derive(Subcommand)]
pub enum LogCommand {
    /// One request's events in order, then whether its hash chain verifies.
    Show {
        request_id: String,
        #[command(flatten)]
        table: TableArg,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Events by actor and/or time range (default: the last 7 days).
    Query(QueryArgs),
}

#[derive(Args)]
pub struct TableArg {
    /// The DecisionLog table name.
    #[arg(long = "table", env = TABLE_ENV)]
    name: Option<String>,
}

impl TableArg {
    /// The table named, if one is.
    pub fn name(&self) -> Option<String> {
        self.name.clone().filter(|n| !n.is_empty())
    }
}

#[derive(Args)]
pub struct QueryArgs {
    /// Only events by this identity (uses the by_actor index).
    #[arg(long)]
    actor: Option<String>,
    /// From this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (RFC 3339) [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Only events of this kind (requested, evaluated, notified, vote, vote_refused, decided, expired, error).
    #[arg(long)]
    kind: Option<String>,
    /// Only events with this outcome (allow, deny, approval_required).
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    table: TableArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn run(command: LogCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            LogCommand::Show {
                request_id,
                table,
                format,
            } => show(&request_id, &table, format).await,
            LogCommand::Query(args) => query(&args).await,
        }
    })
}

async fn open(table: &TableArg) -> Result<DynamoDecisionLog> {
    let name = table
        .name()
        .with_context(|| format!("no table: pass --table or set {TABLE_ENV}"))?;
    let config = crate::load_aws_config().await;
    Ok(DynamoDecisionLog::new(
        aws_sdk_dynamodb::Client::new(&config),
        name,
    ))
}

async fn show(request_id: &str, table: &TableArg, format: Format) -> Result<ExitCode> {
    let log = open(table).await?;
    let events = log
        .events(request_id)
        .await
        .with_context(|| format!("reading {} from {}", request_id, log.table()))?;
    if events.is_empty() {
        bail!("no events for request {request_id} in {}", log.table());
    }
    print_events(&events, format)?;
    let (verdict, code) = match verify_chain(request_id, &events) {
        Ok(()) => (
            format!(
                "chain verified: {} events, head {}",
                events.len(),
                short(events.last().map_or("", |e| &e.hash))
            ),
            ExitCode::SUCCESS,
        ),
        Err(broken) => (
            format!("chain BROKEN at seq {}: {}", broken.seq, broken.problem),
            ExitCode::FAILURE,
        ),
    };
    // The verdict ends a table; it goes to stderr when stdout is JSON or CSV for a program.
    match format {
        Format::Table => outln!("{verdict}"),
        Format::Json | Format::Csv => eprintln!("{verdict}"),
    }
    Ok(code)
}

async fn query(args: &QueryArgs) -> Result<ExitCode> {
    let time = |flag: &str, text: &Option<String>| -> Result<_> {
        text.as_deref()
            .map(|t| {
                regate_core::time::parse_rfc3339(t)
                    .with_context(|| format!("--{flag} {t:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let kind = args
        .kind
        .as_deref()
        .map(|k| EventKind::parse(k).with_context(|| format!("--kind {k:?} is not an event kind")))
        .transpose()?;
    let outcome = args
        .outcome
        .as_deref()
        .map(|o| {
            serde_json::from_value::<Outcome>(serde_json::Value::from(o))
                .with_context(|| format!("--outcome {o:?} is not allow, deny or approval_required"))
        })
        .transpose()?;
    let query = LogQuery {
        actor: args.actor.clone(),
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        kind,
        outcome,
        page_size: None,
    };
    let log = open(&args.table).await?;
    let events = log
        .query(&query)
        .await
        .with_context(|| format!("querying {}", log.table()))?;
    print_events(&events, args.format)?;
    eprintln!("{} events", events.len());
    Ok(ExitCode::SUCCESS)
}

fn print_events(events: &[Event], format: Format) -> Result<()> {
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(events)?),
        Format::Csv => {
            outln!("request_id,seq,kind,at,actor,platform,outcome,reasons,policy_revision,input_digest,data,prev_hash,hash");
            for e in events {
                let row = [
                    e.request_id.clone(),
                    e.seq.to_string(),
                    e.kind.to_string(),
                    e.at.clone(),
                    e.actor.clone().unwrap_or_default(),
                    e.platform.clone().unwrap_or_default(),
                    e.outcome.map(|o| o.to_string()).unwrap_or_default(),
                    e.reasons.join("; "),
                    e.policy_revision.clone().unwrap_or_default(),
                    e.input_digest.clone().unwrap_or_default(),
                    if e.data.is_empty() {
                        String::new()
                    } else {
                        serde_json::Value::Object(e.data.clone()).to_string()
                    },
                    e.prev_hash.clone(),
                    e.hash.clone(),
                ];
                outln!(
                    "{}",
                    row.iter()
                        .map(|cell| csv_cell(cell))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        Format::Table => {
            outln!(
                "{:<24}  {:<20}  {:>4}  {:<12}  {:<24}  {:<17}  DETAIL",
                "AT",
                "REQUEST",
                "SEQ",
                "KIND",
                "ACTOR",
                "OUTCOME"
            );
            for e in events {
                let detail = if e.reasons.is_empty() {
                    if e.data.is_empty() {
                        String::new()
                    } else {
                        serde_json::Value::Object(e.data.clone()).to_string()
                    }
                } else {
                    e.reasons.join("; ")
                };
                outln!(
                    "{:<24}  {:<20}  {:>4}  {:<12}  {:<24}  {:<17}  {}",
                    e.at,
                    e.request_id,
                    e.seq,
                    e.kind.as_str(),
                    e.actor.as_deref().unwrap_or("-"),
                    e.outcome.map_or("-", Outcome::as_str),
                    detail
                );
            }
        }
    }
    Ok(())
}

/// One CSV field (RFC 4180 quoting). Text that a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) is prefixed with `'`, as OWASP advises for CSV exports.
pub(crate) fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@sum"), "'@sum");
    }
}
