//! The checkpointer Lambda: wiring only. Run by its own EventBridge schedule, it signs the
//! decision log's checkpoints with the KMS key no other role may sign with, and keeps them in
//! the Object Lock bucket; [`handler`] maps each run to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::checkpoints::AwsCheckpoints;
use regate_aws::metrics::EmfMetrics;
use regate_aws::DynamoDecisionLog;
use regate_core::ports::Clock;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::Config::from_env()?;
    let http = regate_aws::function_http_client(Duration::from_secs(3))?;
    let sdk = regate_aws::function_sdk_config(&config.aws, &http);
    let log = DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&sdk), config.decision_log);
    let ports = AwsCheckpoints::new(&sdk, log, config.key_id, config.bucket);
    let metrics = EmfMetrics::new("checkpointer");
    let (ports, metrics, cadence, clock) = (&ports, &metrics, config.cadence, config.clock);
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            handler::handle(ports, metrics, cadence, clock.now()).await
        },
    ))
    .await
}
