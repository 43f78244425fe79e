//! An audit in two passes, so that a log of any size verifies in bounded memory on every core.
//! The first pass reads the export's data files, several at once, checks each file's count,
//! keeps the policy bundles, and spills each request's items to one of many partition files by
//! a hash of its id. The second verifies the partitions, several at once: each holds whole
//! requests, so it is checked alone and then let go. Checkpoints and bundles are shared.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use regate_core::audit::{
    partition_of, AuditContext, AuditReport, Finding, FindingKind, LogAudit, PolicySet,
    VerifiedDecision,
};
use regate_core::event::keys;

use crate::export::{self, DataFileOnDisk, Export};

/// About this much of the export's gzipped data goes to one partition, at most: a partition's
/// requests are held in memory while it is verified (about 630 bytes an event).
const GZIP_BYTES_PER_PARTITION: u64 = 4 << 20;
/// Partitions for each worker, at least, so that the last ones to finish are small.
const PARTITIONS_PER_WORKER: usize = 8;
/// Partition files open at once in the first pass, at most (each reader holds one of each
/// partition), well under the usual limit of 1,024 open files.
const MAX_OPEN_FILES: usize = 900;

/// The first pass done: partition files on disk, and what was found on the way.
pub struct Spilled {
    dir: tempfile::TempDir,
    partitions: usize,
    /// How many first-pass workers wrote: each wrote its own file of each partition.
    writers: usize,
    pub policies: PolicySet,
    /// What the first pass found: item counts, unreadable lines, changes in incremental exports.
    found: Vec<LogAudit>,
    /// Each data file's path and whether its export is incremental, by the index the partition
    /// files name it with.
    sources: Vec<(String, bool)>,
}

/// How many workers run at once: `--workers`, or one for each core.
pub fn workers(asked: Option<usize>) -> usize {
    asked
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

/// The first pass over every data file of `exports`, `workers` files at a time.
pub fn spill(exports: &[Export], workers: usize) -> anyhow::Result<Spilled> {
    let mut files = export::data_files(exports)?;
    files.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let writers = workers.min(files.len()).max(1);
    let most = (MAX_OPEN_FILES / writers).max(1);
    let partitions = usize::try_from(total.div_ceil(GZIP_BYTES_PER_PARTITION))
        .unwrap_or(most)
        .max(workers * PARTITIONS_PER_WORKER)
        .min(most);
    let dir = tempfile::tempdir().context("creating a folder for the partitions")?;
    let progress = export::progress_bar(total);
    let next = AtomicUsize::new(0);
    let results: Vec<anyhow::Result<(LogAudit, PolicySet)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let (files, next, progress, dir) = (&files, &next, &progress, dir.path());
                scope.spawn(move || {
                    let mut out = PartitionWriters::create(dir, writer, partitions)?;
                    let mut found = LogAudit::new();
                    let mut policies = PolicySet::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(index) else { break };
                        spill_file(index, file, progress, &mut out, &mut found, &mut policies)?;
                    }
                    out.finish()?;
                    Ok((found, policies))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a reader of the export failed")))
            })
            .collect()
    });
    progress.finish_and_clear();
    let mut policies = PolicySet::new();
    let mut found = Vec::new();
    for result in results {
        let (audit, set) = result?;
        policies.absorb(set);
        found.push(audit);
    }
    let sources = files
        .iter()
        .map(|f| (f.path.display().to_string(), f.incremental))
        .collect();
    Ok(Spilled {
        sources,
        dir,
        partitions,
        writers,
        policies,
        found,
    })
}

/// One data file: a request's line goes to its partition, tagged with where it came from; any
/// other line (a bundle, the checkpoint record, something else) is taken here.
fn spill_file(
    index: usize,
    file: &DataFileOnDisk<'_>,
    progress: &indicatif::ProgressBar,
    out: &mut PartitionWriters,
    found: &mut LogAudit,
    policies: &mut PolicySet,
) -> anyhow::Result<()> {
    let path = file.path.display().to_string();
    export::read_data_file(file, progress, found, |text, number, found| {
        let where_ = || format!("{path} line {number}");
        let Some(pk) = export::partition_key_of(text) else {
            // Read whole, it could be of a request the partitions hold: it is not read at all.
            found.report(Finding::new(
                where_(),
                None,
                FindingKind::Unreadable,
                "not a DynamoDB JSON item with one partition key".to_string(),
            ));
            return Ok(());
        };
        match pk.strip_prefix(keys::REQUEST_PREFIX) {
            Some(request_id) => {
                let partition = partition_of(request_id, out.files.len());
                writeln!(out.files[partition], "{index} {number}\t{text}")
                    .context("writing a partition file")
            }
            None => {
                export::take_text(text, file.incremental, found, policies, &where_);
                Ok(())
            }
        }
    })
}

/// One first-pass worker's file of each partition. A line there is `<data file index> <line
/// number>\t<the line>`: enough to read it again and to say where it was.
struct PartitionWriters {
    files: Vec<BufWriter<File>>,
}

impl PartitionWriters {
    fn create(dir: &Path, writer: usize, partitions: usize) -> anyhow::Result<Self> {
        let files = (0..partitions)
            .map(|p| {
                let path = partition_file(dir, writer, p);
                File::create(&path)
                    .map(|f| BufWriter::with_capacity(1 << 15, f))
                    .with_context(|| format!("creating {}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { files })
    }

    fn finish(self) -> anyhow::Result<()> {
        for mut file in self.files {
            file.flush().context("writing a partition file")?;
        }
        Ok(())
    }
}

fn partition_file(dir: &Path, writer: usize, partition: usize) -> PathBuf {
    dir.join(format!("{writer}-{partition}"))
}

/// The second pass: every partition verified, `workers` at a time. Each worker keeps its own
/// engines and its own `state` (made by `start`), which `visit` gives each verified decision.
/// Returns the report of the whole audit and each worker's state.
pub fn verify<S: Send>(
    spilled: Spilled,
    context: &AuditContext,
    workers: usize,
    start: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, VerifiedDecision) + Sync,
) -> anyhow::Result<(AuditReport, Vec<S>)> {
    let Spilled {
        dir,
        partitions,
        writers,
        sources,
        found,
        ..
    } = spilled;
    let anchored = context.anchored_by_partition(partitions);
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::with_capacity(partitions + found.len()));
    let states: Vec<anyhow::Result<S>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(partitions))
            .map(|_| {
                let (next, reports, anchored, dir) = (&next, &reports, &anchored, dir.path());
                let sources = &sources;
                let (start, visit) = (&start, &visit);
                scope.spawn(move || -> anyhow::Result<S> {
                    let mut engines = context.policies.engines();
                    let mut state = start();
                    loop {
                        let partition = next.fetch_add(1, Ordering::Relaxed);
                        let Some(here) = anchored.get(partition) else {
                            break;
                        };
                        let audit = read_partition(dir, writers, partition, sources)?;
                        let report = audit.finish(context, &mut engines, here, |decision| {
                            visit(&mut state, decision)
                        });
                        reports
                            .lock()
                            .map_err(|_| anyhow!("a verifier failed"))?
                            .push(report);
                    }
                    Ok(state)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a verifier failed")))
            })
            .collect()
    });
    let states = states.into_iter().collect::<anyhow::Result<Vec<S>>>()?;
    let mut reports = reports
        .into_inner()
        .map_err(|_| anyhow!("a verifier failed"))?;
    let mut engines = context.policies.engines();
    for audit in found {
        reports.push(audit.finish(context, &mut engines, &[], |_| {}));
    }
    Ok((context.combine(reports), states))
}

/// A partition's lines, from every first-pass worker's file of it, taken into a fresh audit;
/// the files are removed once read.
fn read_partition(
    dir: &Path,
    writers: usize,
    partition: usize,
    sources: &[(String, bool)],
) -> anyhow::Result<LogAudit> {
    let mut audit = LogAudit::new();
    let mut no_policies = PolicySet::new();
    let mut line = String::new();
    for writer in 0..writers {
        let path = partition_file(dir, writer, partition);
        let mut reader = BufReader::with_capacity(
            1 << 16,
            File::open(&path).with_context(|| format!("opening {}", path.display()))?,
        );
        loop {
            line.clear();
            if reader
                .read_line(&mut line)
                .with_context(|| format!("reading {}", path.display()))?
                == 0
            {
                break;
            }
            let corrupt = || anyhow!("{} is not a partition file", path.display());
            let (origin, text) = line.trim_end().split_once('\t').ok_or_else(corrupt)?;
            let (index, number) = origin.split_once(' ').ok_or_else(corrupt)?;
            let (source, incremental) = index
                .parse::<usize>()
                .ok()
                .and_then(|i| sources.get(i))
                .ok_or_else(corrupt)?;
            let where_ = || format!("{source} line {number}");
            export::take_text(text, *incremental, &mut audit, &mut no_policies, &where_);
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(audit)
}
