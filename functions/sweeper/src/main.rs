//! The sweeper Lambda: wiring only. Run by an EventBridge schedule (every minute by default), it
//! is the durable backstop of the approval workflow; [`handler`] maps each run to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = config::Config::from_env()?;
    let bundle = regate_policies::bundle()?;
    let wired =
        regate_aws::wire_approvals(&config.workflow, &bundle, Duration::from_secs(3)).await?;
    let approvals = Arc::new(wired.approvals);
    let batch = config.batch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let approvals = approvals.clone();
        // A scheduled event's fields are not ours; only a direct invoke's `limit` is.
        let input = serde_json::from_value(event.payload).unwrap_or_default();
        async move { handler::handle(&approvals, input, batch).await }
    }))
    .await
}
