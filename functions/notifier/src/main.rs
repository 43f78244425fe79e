//! The notifier Lambda: wiring only. Configuration, SDK clients, the Slack secret and the
//! policy are set up once at cold start; [`handler`] maps each event to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::from_env()?;
    let wired = regate_aws::wire_approvals(
        "notifier",
        &config,
        regate_policies::bundle,
        Duration::from_secs(3),
    )
    .await?;
    let approvals = Arc::new(wired.approvals);
    let policy = Arc::new(wired.policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<handler::Input>| {
        let (approvals, policy) = (approvals.clone(), policy.clone());
        async move {
            policy.refresh_if_due().await;
            handler::handle(&approvals, event.payload).await
        }
    }))
    .await
}
