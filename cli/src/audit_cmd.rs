//! `regate audit verify|backtest`: the decision log checked offline, from DynamoDB exports,
//! without trusting the people who run regate. Exit codes: 0 all verified, 1 an integrity
//! finding, 3 a re-evaluation mismatch (or, for backtest with `--fail-on-change`, a changed
//! decision), 2 a usage or I/O error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use regate_core::audit::{
    backtest, AuditContext, AuditReport, ChangedDecision, Finding, VerifiedDecision,
};
use regate_core::checkpoint::{check_checkpoints, Anchors, Cadence, PublicKey};
use regate_core::PolicyEngine;
use serde_json::json;

use crate::log_cmd::{csv_cell, Format};
use crate::{export, partitions, report};

pub const EXIT_INTEGRITY: u8 = 1;
pub const EXIT_MISMATCH: u8 = 3;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify DynamoDB exports of the decision log: every chain, every hash, and every recorded
    /// decision evaluated again under the policy that made it.
    Verify(VerifyArgs),
    /// Replay every verified decision of the exports under another policy bundle and list the
    /// decisions whose outcome changes.
    Backtest(BacktestArgs),
    /// Fetch the public key of the KMS key that signs checkpoints, write it to a file and print
    /// its fingerprint, to pin it for later verifications.
    PublicKey(PublicKeyArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// A folder holding one or more DynamoDB exports (`AWSDynamoDB/<id>/...`), as
    /// `aws s3 sync` downloads them, or the S3 prefix they are under (`s3://bucket/prefix`,
    /// read with the standard AWS configuration).
    export: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// How many data files and partitions are read at once (default: one for each core).
    /// Partitions are spilled under TMPDIR, about the size of the export uncompressed.
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    export: ExportArgs,
    /// Policy bundle folders to use for revisions the export does not hold.
    #[arg(long = "policies")]
    policies: Vec<PathBuf>,
    /// The signed checkpoints: a folder, or the S3 prefix they are under (`s3://bucket/checkpoints`).
    #[arg(long, requires = "public_key")]
    checkpoints: Option<String>,
    /// The key that signs checkpoints: a file with its SubjectPublicKeyInfo DER (as
    /// `regate audit public-key` pins it), or a KMS key id or ARN to fetch it from.
    #[arg(long, requires = "checkpoints")]
    public_key: Option<String>,
    /// Minutes between checkpoints, as the stack's CheckpointMinutes: a last checkpoint more
    /// than three of these older than the export is `stale_checkpoints`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1440))]
    checkpoint_minutes: u32,
    /// Seconds the checkpointer leaves an event to reach the table (CHECKPOINT_SETTLE_SECONDS):
    /// events older than the last checkpoint's until, less this, must be under a signed head.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3600))]
    checkpoint_settle_seconds: u32,
    /// The log is older than its checkpoints (they were turned on later): a request whose every
    /// event predates what checkpoint 1 looked back on is counted, not a finding.
    #[arg(long, requires = "checkpoints")]
    accept_older_log: bool,
    /// Also write the verification as one self-contained HTML page: the summary, each finding
    /// and what it means, timelines, time to decision and the checkpoints covered.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// How many timelines of requests without findings a report shows.
const REPORT_TIMELINES: usize = 50;

#[derive(Args)]
pub struct PublicKeyArgs {
    /// The KMS key that signs checkpoints (id, ARN or alias).
    #[arg(long)]
    key_id: String,
    /// Where to write its public key (SubjectPublicKeyInfo DER).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    export: ExportArgs,
    /// The policy to replay the decisions under: a folder, or a bundle file (`regate policy build`).
    #[arg(long = "policies")]
    policies: PathBuf,
    /// Exit 3 when any decision changes: a gate for the CI of a policy repository.
    #[arg(long)]
    fail_on_change: bool,
}

pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(&args),
        AuditCommand::Backtest(args) => run_backtest(&args),
        AuditCommand::PublicKey(args) => public_key(&args),
    }
}

/// What an audit found, and what it was checked against.
struct Audited<S> {
    report: AuditReport,
    /// Each worker's state, as `visit` left it.
    workers: Vec<S>,
    context: AuditContext,
    exports: usize,
}

/// Reads the exports and audits them in two passes (see `partitions`), each worker handing the
/// decisions that verified to `visit` with its own `state`; `timelines` are kept for a report.
fn audit<S: Send>(
    args: &ExportArgs,
    policies: &[PathBuf],
    anchors: Option<Anchors>,
    timelines: usize,
    start: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, VerifiedDecision) + Sync,
) -> Result<Audited<S>> {
    let mut downloaded = None;
    let folder = export::local_folder(
        &export::Source::parse(&args.export),
        &mut downloaded,
        export::Download::Latest,
    )?;
    let exports = export::find_exports(&folder)?;
    let as_of = exports.iter().filter_map(export::Export::as_of).max();
    if anchors.is_some() && as_of.is_none() {
        bail!(
            "the exports' manifests give no export time (exportTime): without it, whether \
             checkpoints stopped cannot be checked"
        );
    }
    let workers = partitions::workers(args.workers);
    let mut spilled = partitions::spill(&exports, workers)?;
    for dir in policies {
        spilled.policies.add_known(regate_policies::load(dir)?);
    }
    let context = AuditContext {
        policies: std::mem::take(&mut spilled.policies),
        anchors,
        as_of,
        timelines,
    };
    let (report, workers) = partitions::verify(spilled, &context, workers, start, visit)?;
    Ok(Audited {
        report,
        workers,
        context,
        exports: exports.len(),
    })
}

/// The checkpoints, checked against the key: what they vouch for, and what is wrong with them.
fn checked_checkpoints(
    source: &str,
    key: &str,
    cadence: Cadence,
) -> Result<(Anchors, Vec<Finding>)> {
    let key = PublicKey::from_spki_der(&public_key_der(key)?).map_err(anyhow::Error::msg)?;
    let mut downloaded = None;
    let folder = export::local_folder(
        &export::Source::parse(source),
        &mut downloaded,
        export::Download::EveryVersion,
    )?;
    let (checkpoints, mut rewritten) = export::read_checkpoints(&folder)?;
    let (anchors, findings) = check_checkpoints(checkpoints, &key, cadence);
    rewritten.extend(findings);
    Ok((anchors, rewritten))
}

/// The key's DER: read from a file, or fetched from KMS when `key` names no file.
fn public_key_der(key: &str) -> Result<Vec<u8>> {
    if std::path::Path::new(key).is_file() {
        return Ok(std::fs::read(key)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let kms = aws_sdk_kms::Client::new(&crate::load_aws_config().await);
        let answer = kms.get_public_key().key_id(key).send().await.map_err(|e| {
            anyhow::anyhow!(
                "fetching the public key of {key} from KMS: {}",
                e.into_service_error()
            )
        })?;
        if let Some(spec) = answer.key_spec().filter(|s| s.as_str() != "ECC_NIST_P256") {
            bail!(
                "KMS key {key} is {}; regate signs checkpoints with ECC_NIST_P256",
                spec.as_str()
            );
        }
        Ok(answer
            .public_key()
            .map(|k| k.as_ref().to_vec())
            .unwrap_or_default())
    })
}

fn public_key(args: &PublicKeyArgs) -> Result<ExitCode> {
    let der = public_key_der(&args.key_id)?;
    let key = PublicKey::from_spki_der(&der).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.out, &der)?;
    outln!(
        "wrote {} (sha256 {}): pass it as --public-key to `regate audit verify`",
        args.out.display(),
        key.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let cadence = Cadence {
        every: chrono::Duration::minutes(args.checkpoint_minutes.into()),
        settle: chrono::Duration::seconds(args.checkpoint_settle_seconds.into()),
    };
    let (anchors, checkpoint_findings) = match (&args.checkpoints, &args.public_key) {
        (Some(source), Some(key)) => {
            let (mut anchors, findings) = checked_checkpoints(source, key, cadence)?;
            anchors.accept_older_log = args.accept_older_log;
            (Some(anchors), findings)
        }
        _ => (None, Vec::new()),
    };
    let timelines = if args.report.is_some() {
        REPORT_TIMELINES
    } else {
        0
    };
    let audited = audit(
        &args.export,
        &args.policies,
        anchors,
        timelines,
        || (),
        |_, _| {},
    )?;
    let mut report = audited.report;
    report.findings.splice(0..0, checkpoint_findings);
    if let Some(path) = &args.report {
        let sources = report::Sources {
            exports: audited.exports,
            export: &args.export.export,
            checkpoints: args.checkpoints.as_deref(),
            anchors: audited.context.anchors.as_ref(),
        };
        std::fs::write(path, report::render(&report, &sources))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    print_report(&report, args.export.format)?;
    Ok(ExitCode::from(if report.integrity_findings() > 0 {
        EXIT_INTEGRITY
    } else if report.mismatches() > 0 {
        EXIT_MISMATCH
    } else {
        0
    }))
}

fn print_report(report: &AuditReport, format: Format) -> Result<()> {
    let counts = &report.counts;
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "verified": report.findings.is_empty(),
                "summary": counts,
                "findings": report.findings,
            }))?
        ),
        Format::Csv => {
            outln!("request_id,seq,kind,detail");
            for f in &report.findings {
                let seq = f.seq.map(|s| s.to_string()).unwrap_or_default();
                outln!(
                    "{},{seq},{},{}",
                    csv_cell(&f.request_id),
                    f.kind,
                    csv_cell(&f.detail)
                );
            }
        }
        Format::Table => {
            let anchored = match (counts.unanchored_events, counts.predating_checkpoints) {
                (Some(unanchored), predating) => format!(
                    ", {} ({unanchored} events newer than the last, {} older than the first)",
                    plural(counts.checkpoints, "checkpoint"),
                    predating.unwrap_or_default()
                ),
                _ => String::new(),
            };
            let verdict = match (report.integrity_findings(), report.mismatches()) {
                (0, 0) => "everything verified".to_string(),
                (integrity, mismatches) => format!(
                    "{}, {}",
                    plural(integrity, "integrity finding"),
                    plural(mismatches, "re-evaluation mismatch")
                ),
            };
            outln!(
                "{}, {}, {}, {}{anchored}: {verdict}",
                plural(counts.requests, "request"),
                plural(counts.events, "event"),
                plural(counts.decisions, "decision"),
                plural(counts.policies, "policy bundle"),
            );
            for f in &report.findings {
                let seq = f.seq.map(|s| format!(" seq {s}")).unwrap_or_default();
                outln!("{}{seq}: {}: {}", f.request_id, f.kind, f.detail);
            }
        }
    }
    Ok(())
}

fn run_backtest(args: &BacktestArgs) -> Result<ExitCode> {
    let bundle = regate_policies::load(&args.policies)?;
    PolicyEngine::compile(&bundle)?;
    // Each worker replays under its own engine: (the engine, decisions replayed, changes).
    let Audited {
        report, workers, ..
    } = audit(
        &args.export,
        &[],
        None,
        0,
        || (PolicyEngine::compile(&bundle).ok(), 0usize, Vec::new()),
        |(engine, replayed, changes), decision| {
            *replayed += 1;
            if let Some(engine) = engine {
                changes.extend(backtest(&decision, engine));
            }
        },
    )?;
    let replayed: usize = workers.iter().map(|w| w.1).sum();
    let mut changes: Vec<ChangedDecision> = workers.into_iter().flat_map(|w| w.2).collect();
    if report.integrity_findings() > 0 {
        bail!(
            "the export does not verify ({} integrity findings): run `regate audit verify` first",
            report.integrity_findings()
        );
    }
    changes.sort_by(|a, b| (&a.request_id, a.seq).cmp(&(&b.request_id, b.seq)));
    let mut by_change: BTreeMap<String, usize> = BTreeMap::new();
    for change in &changes {
        *by_change.entry(transition(change)).or_default() += 1;
    }
    match args.export.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "policy_revision": bundle.revision,
                "replayed": replayed,
                "changed": changes.len(),
                "by_change": by_change,
                "changes": changes,
            }))?
        ),
        Format::Csv => {
            outln!("request_id,seq,old,new,old_reasons,new_reasons");
            for c in &changes {
                outln!(
                    "{},{},{},{},{},{}",
                    csv_cell(&c.request_id),
                    c.seq,
                    c.old,
                    new_outcome(c),
                    csv_cell(&c.old_reasons.join("; ")),
                    csv_cell(&c.new_reasons.join("; "))
                );
            }
        }
        Format::Table => {
            outln!(
                "{replayed} decisions replayed under {}: {} changed",
                bundle.revision,
                changes.len()
            );
            for (change, count) in &by_change {
                outln!("  {change}: {count}");
            }
            for c in &changes {
                outln!(
                    "{} seq {}: {} -> {}: {}",
                    c.request_id,
                    c.seq,
                    c.old,
                    new_outcome(c),
                    c.new_reasons.join("; ")
                );
            }
        }
    }
    Ok(ExitCode::from(
        if args.fail_on_change && !changes.is_empty() {
            EXIT_MISMATCH
        } else {
            0
        },
    ))
}

fn new_outcome(change: &ChangedDecision) -> &'static str {
    change.new.map_or("error", |o| o.as_str())
}

fn transition(change: &ChangedDecision) -> String {
    format!("{} -> {}", change.old, new_outcome(change))
}

/// `1 request`, `2 requests`; `2 mismatches`.
fn plural(count: usize, noun: &str) -> String {
    match (count, noun.ends_with('h')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{count} {noun}es"),
        _ => format!("{count} {noun}s"),
    }
}
