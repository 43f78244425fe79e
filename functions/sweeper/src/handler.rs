//! Maps a scheduled event (or a direct invoke, `{"limit": n}`) to one sweep of the core, and
//! its report to the result and the logs.

use lambda_runtime::Diagnostic;
use regate_core::approvals::{Approvals, SweepReport};
use regate_core::ports::{ChatPlatform, Clock, DecisionLog, PendingStore, TaskTokens};
use serde::Deserialize;

/// An EventBridge scheduled event carries nothing the sweep needs; a direct invoke may bound it.
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub limit: Option<usize>,
}

pub async fn handle<L, P, T, C, K>(
    approvals: &Approvals<L, P, T, C, K>,
    input: Input,
    batch: usize,
) -> Result<SweepReport, Diagnostic>
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    C: ChatPlatform,
    K: Clock,
{
    let limit = input.limit.unwrap_or(batch).min(batch);
    match approvals.sweep(limit).await {
        Ok(report) => {
            tracing::info!(
                checked = report.checked,
                resumed = report.resumed,
                expired = report.expired,
                waiting = report.waiting,
                failed = report.failed.len(),
                "sweep done"
            );
            Ok(report)
        }
        Err(error) => {
            tracing::error!(error = %error, "sweep failed");
            Err(regate_aws::diagnostic(error))
        }
    }
}
