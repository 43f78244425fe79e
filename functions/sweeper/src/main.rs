//! The sweeper Lambda: wiring only. Run by an EventBridge schedule (every minute by default), it
//! is the durable backstop of the approval workflow, and it cuts the decision log's signed
//! checkpoints; [`handler`] maps each run to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::checkpoints::AwsCheckpoints;
use regate_aws::DynamoDecisionLog;
use regate_core::ports::Clock;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::Config::from_env()?;
    let bundle = regate_policies::bundle()?;
    let wired =
        regate_aws::wire_approvals(&config.workflow, &bundle, Duration::from_secs(3)).await?;
    let (approvals, sdk) = (Arc::new(wired.approvals), wired.sdk);
    let checkpoints = match &config.checkpoints {
        Some(settings) => {
            let log = DynamoDecisionLog::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                config.workflow.tables.decision_log.clone(),
            );
            let ports =
                AwsCheckpoints::new(&sdk, log, settings.key_id.clone(), settings.bucket.clone());
            Some((Arc::new(ports), settings.cadence))
        }
        None => None,
    };
    let (batch, clock) = (config.batch, config.workflow.clock);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let approvals = approvals.clone();
        let checkpoints = checkpoints.clone();
        // A scheduled event's fields are not ours; only a direct invoke's `limit` is.
        let input = serde_json::from_value(event.payload).unwrap_or_default();
        async move {
            let checkpoints = checkpoints
                .as_ref()
                .map(|(ports, cadence)| handler::Checkpoints {
                    ports: ports.as_ref(),
                    cadence: *cadence,
                    now: clock.now(),
                });
            handler::handle(&approvals, checkpoints, input, batch).await
        }
    }))
    .await
}
