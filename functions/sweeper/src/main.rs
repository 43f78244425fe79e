//! The sweeper Lambda: wiring only. Run by an EventBridge schedule (every minute by default), it
//! is the durable backstop of the approval workflow; [`handler`] maps each run to the core.
//! (Signed checkpoints are the checkpointer's: this role cannot sign.)

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
    let config = config::Config::from_env()?;
    let wired = regate_aws::wire_approvals(
        "sweeper",
        &config.workflow,
        regate_policies::bundle,
        Duration::from_secs(3),
    )
    .await?;
    let approvals = Arc::new(wired.approvals);
    let policy = Arc::new(wired.policy);
    let settings = handler::Settings {
        batch: config.batch,
        time: Duration::MAX,
        accepts_now: config.accepts_now,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (approvals, policy) = (approvals.clone(), policy.clone());
        let input = handler::Input::from_payload(event.payload);
        let left = deadline_in(event.context.deadline);
        async move {
            policy.refresh_if_due().await;
            handler::handle(&approvals, input?, settings.with_time_left(left)).await
        }
    }))
    .await
}

/// The time left before an invocation's deadline (milliseconds since the epoch, as the Lambda
/// runtime gives it); `None` when that is not ahead.
fn deadline_in(deadline_ms: u64) -> Option<Duration> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    deadline_ms.checked_sub(now_ms).map(Duration::from_millis)
}
