//! The evaluator Lambda: wiring only. Tracing, configuration, the SDK client and the policy are
//! set up once at cold start; [`handler`] does the work.

mod handler;

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use regate_aws::config::required;
use regate_aws::DynamoDecisionLog;
use regate_core::ports::SystemClock;
use regate_core::PolicyEngine;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = required("REGATE_DECISION_LOG_TABLE")?;
    let policy = PolicyEngine::compile(&regate_policies::bundle()?)?;
    let config = regate_aws::load_config().await;
    let evaluator = Arc::new(handler::Evaluator {
        log: DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&config), table),
        policy,
        clock: SystemClock,
    });
    tracing::info!(
        policy_revision = evaluator.policy.revision(),
        "evaluator ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<handler::Input>| {
        let evaluator = evaluator.clone();
        async move { evaluator.handle(event.payload).await }
    }))
    .await
}
