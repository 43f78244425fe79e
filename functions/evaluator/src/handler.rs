//! Maps the state machine's event to [`Evaluator::evaluate`] and its error to a diagnostic.

use lambda_runtime::Diagnostic;
use regate_core::evaluator::{Evaluated, Evaluator};
use regate_core::identity::IdentityTokens;
use regate_core::metrics::Metrics;
use regate_core::ports::{Clock, DecisionLog};
use serde::Deserialize;
use serde_json::Value;

/// What the state machine passes: the execution input, the execution name (the default
/// request id) and the execution id (whose request id this becomes).
#[derive(Debug, Deserialize)]
pub struct Input {
    pub request: Value,
    #[serde(default)]
    pub execution_name: Option<String>,
    pub execution_id: String,
}

pub async fn handle<L: DecisionLog, K: Clock, M: Metrics, I: IdentityTokens>(
    evaluator: &Evaluator<L, K, M, I>,
    input: Input,
) -> Result<Evaluated, Diagnostic> {
    evaluator
        .evaluate(
            &input.request,
            input.execution_name.as_deref(),
            &input.execution_id,
        )
        .await
        .map_err(|error| {
            tracing::warn!(error = %error, "evaluation failed");
            regate_aws::diagnostic(error)
        })
}
