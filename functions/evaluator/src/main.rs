//! The evaluator Lambda: wiring only. Tracing, configuration, the SDK client and the policy are
//! set up once at cold start; [`handler`] maps each event to the core.

mod config;
mod handler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::identity_tokens::OidcVerifier;
use regate_aws::policy_bucket::FunctionPolicy;
use regate_aws::DynamoDecisionLog;
use regate_core::evaluator::Evaluator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    regate_aws::logging::init(|name| std::env::var(name).ok());
    let config = config::Config::from_env()?;
    let http = regate_aws::function_http_client(Duration::from_secs(3))?;
    let sdk = regate_aws::function_sdk_config(&config.aws, &http);
    let embedded = regate_policies::bundle;
    let policy =
        FunctionPolicy::load(&config.policy, &config.aws, &http, embedded, "evaluator").await?;
    let log = DynamoDecisionLog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.decision_log_table,
    )
    .keeping(Arc::clone(&policy.kept));
    let metrics = regate_aws::EmfMetrics::new("evaluator");
    let identity = OidcVerifier::new(&config.identity, http.clone());
    let evaluator = Arc::new(
        Evaluator::new(log, config.clock, metrics, Arc::clone(&policy.live))
            .with_identity(identity),
    );
    let policy = Arc::new(policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<handler::Input>| {
        let (evaluator, policy) = (evaluator.clone(), policy.clone());
        async move {
            policy.refresh_if_due().await;
            handler::handle(&evaluator, event.payload).await
        }
    }))
    .await
}
