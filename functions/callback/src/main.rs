//! The callback Lambda: wiring only. Configuration, SDK clients, the Slack secret and the policy
//! are set up once at cold start; the axum router in [`handler`] serves API Gateway.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use regate_aws::policy_bucket::FunctionPolicy;
use regate_core::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::from_env()?;
    let wired = regate_aws::wire_approvals(
        "callback",
        &config,
        regate_policies::bundle,
        Duration::from_secs(1),
    )
    .await?;
    let policy = Arc::new(wired.policy);
    let app = Arc::new(handler::App {
        approvals: wired.approvals,
        signing_secret: wired.slack_signing_secret,
        workspace: config.slack.workspace.clone(),
        // Slack signs with the real time, whatever clock the workflow works in.
        clock: SystemClock::default(),
        teams_auth: wired.teams_auth,
    });
    let router = handler::router(app).layer(axum::middleware::from_fn_with_state(
        policy,
        refresh_policy_first,
    ));
    lambda_http::run(router).await
}

/// Each click is checked under the policy bucket's current revision.
async fn refresh_policy_first(
    axum::extract::State(policy): axum::extract::State<Arc<FunctionPolicy>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    policy.refresh_if_due().await;
    next.run(request).await
}
