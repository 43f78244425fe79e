//! The callback Lambda: wiring only. Configuration, SDK clients, the Slack secret and the policy
//! are set up once at cold start; the axum router in [`handler`] serves API Gateway.

mod handler;

use std::sync::Arc;
use std::time::Duration;

use regate_aws::config::{millis, or_default, required, secret_string};
use regate_chat::slack::{api::DEFAULT_BASE_URL, SlackApi, SlackChat, SlackSecrets};
use regate_core::ports::SystemClock;
use regate_core::PolicyEngine;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let secret_id = required("SLACK_SECRET_ID")?;
    let slack_url = or_default("SLACK_API_URL", DEFAULT_BASE_URL);
    // Slack wants an answer within 3 s; chat calls after the vote is recorded share this budget.
    let slack_budget = millis("SLACK_CALL_BUDGET_MS", Duration::from_millis(1500))?;
    let policy = Arc::new(PolicyEngine::compile(&regate_policies::bundle()?)?);

    let config = regate_aws::load_config().await;
    let secrets = SlackSecrets::from_json(
        &secret_string(&aws_sdk_secretsmanager::Client::new(&config), &secret_id).await?,
    )?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .build()?;
    let slack = Arc::new(SlackApi::new(
        http,
        &slack_url,
        secrets.bot_token,
        slack_budget,
    ));
    let app = Arc::new(handler::App {
        approvals: regate_aws::approvals_from_env(&config, policy)?,
        chat: SlackChat { api: slack.clone() },
        slack,
        signing_secret: secrets.signing_secret,
        clock: SystemClock,
    });
    lambda_http::run(handler::router(app)).await
}
