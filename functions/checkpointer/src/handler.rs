//! One run: the next checkpoint cut when it is due, and the latest checkpoint's age measured,
//! whether this run cut one or not (its alarm says when checkpoints stopped).

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use regate_core::checkpoint::{self, Cadence};
use regate_core::metrics::{Measurement, Metrics};
use regate_core::ports::CheckpointPorts;
use serde::Serialize;

/// What one run did: the number of the checkpoint it cut, if it cut one.
#[derive(Debug, Serialize)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// A run at `now`. A failed cut fails the run (the scheduler retries it, and the next run cuts
/// it anyway); the age is measured first, so that a run that keeps failing still says how old
/// the latest checkpoint is.
pub async fn handle<P: CheckpointPorts>(
    ports: &P,
    metrics: &impl Metrics,
    cadence: Cadence,
    now: DateTime<Utc>,
) -> Result<Output, Diagnostic> {
    match ports.last().await {
        Ok(Some(last)) => {
            if let Some(until) = regate_core::time::parse_rfc3339(&last.until) {
                let age = (now - until).num_milliseconds().max(0) as f64 / 1000.0;
                metrics.record(Measurement::checkpoint_age(age));
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(error = %error, "could not read the latest checkpoint"),
    }
    match checkpoint::cut(ports, now, cadence).await {
        Ok(Some(statement)) => {
            tracing::info!(
                number = statement.number,
                heads = statement.heads,
                until = %statement.until,
                "checkpoint signed and kept"
            );
            Ok(Output {
                checkpoint: Some(statement.number),
            })
        }
        Ok(None) => Ok(Output { checkpoint: None }),
        Err(error) => {
            tracing::error!(error = %error, "checkpoint failed");
            Err(Diagnostic {
                error_type: "CheckpointFailed".into(),
                error_message: error.to_string(),
            })
        }
    }
}
