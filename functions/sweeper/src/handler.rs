//! Maps a scheduled event (or a direct invoke, `{"limit": n}`) to one sweep of the core and, when
//! checkpoints are on, one signed checkpoint when it is due; and their reports to the result
//! and the logs.

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use regate_core::approvals::{Approvals, SweepReport};
use regate_core::checkpoint::{self, Cadence};
use regate_core::ports::{
    ChatPlatform, CheckpointPorts, Clock, DecisionLog, PendingStore, TaskTokens,
};
use serde::{Deserialize, Serialize};

/// An EventBridge scheduled event carries nothing the sweep needs; a direct invoke may bound it.
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub limit: Option<usize>,
}

/// What one run did: the sweep, and the number of the checkpoint it cut (or why it could not).
#[derive(Debug, Serialize)]
pub struct Output {
    #[serde(flatten)]
    pub sweep: SweepReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_error: Option<String>,
}

/// The checkpoint side of a run: where checkpoints go, and how often.
pub struct Checkpoints<'a, P> {
    pub ports: &'a P,
    pub cadence: Cadence,
    pub now: DateTime<Utc>,
}

pub async fn handle<L, P, T, C, K, X>(
    approvals: &Approvals<L, P, T, C, K>,
    checkpoints: Option<Checkpoints<'_, X>>,
    input: Input,
    batch: usize,
) -> Result<Output, Diagnostic>
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    C: ChatPlatform,
    K: Clock,
    X: CheckpointPorts,
{
    let limit = input.limit.unwrap_or(batch).min(batch);
    let sweep = match approvals.sweep(limit).await {
        Ok(report) => {
            tracing::info!(
                checked = report.checked,
                resumed = report.resumed,
                expired = report.expired,
                waiting = report.waiting,
                failed = report.failed.len(),
                "sweep done"
            );
            report
        }
        Err(error) => {
            tracing::error!(error = %error, "sweep failed");
            return Err(regate_aws::diagnostic(error));
        }
    };
    let mut output = Output {
        sweep,
        checkpoint: None,
        checkpoint_error: None,
    };
    let Some(checkpoints) = checkpoints else {
        return Ok(output);
    };
    // A failed checkpoint does not undo the sweep, nor stop the next runs: it is logged as an
    // error line (`checkpoint failed`) and in the result, and the next run cuts it.
    match checkpoint::cut(checkpoints.ports, checkpoints.now, checkpoints.cadence).await {
        Ok(Some(statement)) => {
            tracing::info!(
                number = statement.number,
                heads = statement.heads,
                until = %statement.until,
                "checkpoint signed and kept"
            );
            output.checkpoint = Some(statement.number);
        }
        Ok(None) => {}
        Err(error) => {
            tracing::error!(error = %error, "checkpoint failed");
            output.checkpoint_error = Some(error.to_string());
        }
    }
    Ok(output)
}
