//! The notifier Lambda: wiring only. Configuration, SDK clients, the Slack secret and the
//! policy are set up once at cold start; [`handler`] does the work.

mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::config::{millis, or_default, required, secret_string};
use regate_chat::slack::{api::DEFAULT_BASE_URL, SlackApi, SlackChat, SlackSecrets};
use regate_core::ports::SystemClock;
use regate_core::PolicyEngine;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let secret_id = required("SLACK_SECRET_ID")?;
    let slack_url = or_default("SLACK_API_URL", DEFAULT_BASE_URL);
    let slack_budget = millis("SLACK_CALL_BUDGET_MS", Duration::from_secs(20))?;
    let policy = Arc::new(PolicyEngine::compile(&regate_policies::bundle()?)?);

    let config = regate_aws::load_config().await;
    let secrets = SlackSecrets::from_json(
        &secret_string(&aws_sdk_secretsmanager::Client::new(&config), &secret_id).await?,
    )?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()?;
    let notifier = Arc::new(handler::Notifier {
        approvals: regate_aws::approvals_from_env(&config, policy)?,
        chat: SlackChat {
            api: Arc::new(SlackApi::new(
                http,
                &slack_url,
                secrets.bot_token,
                slack_budget,
            )),
        },
        clock: SystemClock,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<handler::Input>| {
        let notifier = notifier.clone();
        async move { notifier.handle(event.payload).await }
    }))
    .await
}
