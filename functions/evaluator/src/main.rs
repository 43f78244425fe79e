//! The evaluator Lambda: wiring only. Tracing, configuration, the SDK client and the policy are
//! set up once at cold start; [`handler`] maps each event to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::{DynamoDecisionLog, KeptPolicy};
use regate_core::evaluator::Evaluator;
use regate_core::PolicyEngine;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::Config::from_env()?;
    let bundle = regate_policies::bundle()?;
    let policy = Arc::new(PolicyEngine::compile(&bundle)?);
    let http = regate_aws::function_http_client(Duration::from_secs(3))?;
    let sdk = regate_aws::function_sdk_config(&config.aws, &http);
    let log = DynamoDecisionLog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.decision_log_table,
    )
    .keeping(KeptPolicy::new(&bundle)?);
    let metrics = regate_aws::EmfMetrics::new("evaluator");
    let evaluator = Arc::new(Evaluator::new(log, config.clock, metrics, policy));
    tracing::info!(
        policy_revision = evaluator.policy().revision(),
        "evaluator ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<handler::Input>| {
        let evaluator = evaluator.clone();
        async move { handler::handle(&evaluator, event.payload).await }
    }))
    .await
}
