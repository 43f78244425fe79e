//! One sweep at scale, in process: the core's sweep (`Approvals::sweep`) over the testkit's
//! in-memory pending store, which counts what it is asked to read as DynamoDB would bill it:
//! whole items (`get`, a GetItem each) and entries of the due index (`due`, a Query a shard).
//! The DynamoDB adapter makes the same calls (tests/sweep_scale.rs checks its index on the
//! local stack). 1,000 and 10,000 open approvals, 1% of them due (their first reminder); each
//! round makes the same ones due again and sweeps once. The baseline, from the same run: the
//! same sweep with only the due approvals open.
//!
//! Run: `bash bench/run.sh sweep`.

use std::process::ExitCode;
use std::time::Instant;

use regate_bench::stats::{human, publish, Samples};
use regate_core::approvals::SweepBudget;
use regate_core::ports::Clock;
use regate_testkit::{open_backlog, Fakes, Reads};

const OPEN: [usize; 2] = [1_000, 10_000];
const ROUNDS: usize = 30;
/// Items read a sweep, at most, for each one due.
const READS_PER_DUE: f64 = 1.1;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("sweep bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// What one case measured: the reads of one sweep, and each round's time.
struct Case {
    reads: Reads,
    times: Samples,
}

async fn run() -> Result<(), String> {
    let mut table = String::from(
        "| open approvals | due | items read a sweep | due index entries read | items read / due | time a sweep, median (p90) | baseline: only the due ones open | time / baseline | target |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut over = Vec::new();
    for open in OPEN {
        let due = open / 100;
        let measured = sweep_rounds(open, due).await?;
        let baseline = sweep_rounds(due, due).await?;
        let per_due = measured.reads.items as f64 / due as f64;
        let ratio = measured.times.median().as_secs_f64() / baseline.times.median().as_secs_f64();
        table.push_str(&format!(
            "| {open} | {due} | {} | {} | {per_due:.2} | {} ({}) | {} | {ratio:.2}× | items read ≤ {READS_PER_DUE} × due |\n",
            measured.reads.items,
            measured.reads.due_entries,
            human(measured.times.median()),
            human(measured.times.percentile(90.0)),
            human(baseline.times.median()),
        ));
        if per_due > READS_PER_DUE {
            over.push(format!("{open} open: {per_due:.2} items read for each due"));
        }
    }
    print!("{table}");
    publish("sweep", &table).map_err(|e| e.to_string())?;
    match over.is_empty() {
        true => Ok(()),
        false => Err(format!("over the bar: {}", over.join("; "))),
    }
}

/// `open` approvals, `due` of them due; `ROUNDS` sweeps, each after making the same ones due
/// again. The reads are one sweep's (the first round's).
async fn sweep_rounds(open: usize, due: usize) -> Result<Case, String> {
    let fakes = Fakes::default();
    let now = fakes.clock.now();
    fakes.pending.insert_all(open_backlog(
        "fresh",
        open - due,
        now - chrono::Duration::minutes(1),
    ));
    let late = open_backlog("late", due, now - chrono::Duration::minutes(20));
    let approvals = fakes.approvals();
    let mut reads = Reads {
        items: 0,
        due_entries: 0,
    };
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        fakes.pending.insert_all(late.iter().cloned());
        let before = fakes.pending.reads();
        let started = Instant::now();
        let report = approvals
            .sweep(SweepBudget::items(open))
            .await
            .map_err(|e| e.to_string())?;
        times.push(started.elapsed());
        if report.reminded != due {
            return Err(format!("{open} open: {report:?}, not {due} reminded"));
        }
        if round == 0 {
            let after = fakes.pending.reads();
            reads = Reads {
                items: after.items - before.items,
                due_entries: after.due_entries - before.due_entries,
            };
        }
    }
    Ok(Case {
        reads,
        times: Samples::new(times),
    })
}
