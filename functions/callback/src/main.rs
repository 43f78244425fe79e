//! The callback Lambda: wiring only. Configuration, SDK clients, the Slack secret and the policy
//! are set up once at cold start; the axum router in [`handler`] serves API Gateway.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use regate_core::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::from_env()?;
    let bundle = regate_policies::bundle()?;
    let wired =
        regate_aws::wire_approvals("callback", &config, &bundle, Duration::from_secs(1)).await?;
    let app = Arc::new(handler::App {
        approvals: wired.approvals,
        signing_secret: wired.slack_signing_secret,
        workspace: config.slack.workspace.clone(),
        // Slack signs with the real time, whatever clock the workflow works in.
        clock: SystemClock::default(),
        teams_auth: wired.teams_auth,
    });
    lambda_http::run(handler::router(app)).await
}
