//! AWS adapters for the ports of `regate-core`: the DynamoDB decision log and pending store,
//! and Step Functions task tokens. Endpoints, region and credentials come from the standard
//! AWS configuration (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same code talks to AWS and
//! to the local stack.

mod attr;
pub mod config;
pub mod decision_log;
mod error;
pub mod pending;
pub mod task_tokens;

pub use decision_log::{DynamoDecisionLog, LogQuery};
pub use pending::DynamoPendingStore;
pub use task_tokens::SfnTaskTokens;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use regate_core::approvals::Approvals;
use regate_core::PolicyEngine;

/// Throttling and 5xx answers are retried by the SDK's standard retry mode (exponential
/// backoff with jitter) this many times in all before an adapter sees an error.
pub const SDK_MAX_ATTEMPTS: u32 = 4;

/// The shared AWS configuration, loaded once per process (cold start).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
        .load()
        .await
}

/// The approval workflow on AWS: the decision log and pending store in the tables named by
/// `REGATE_DECISION_LOG_TABLE` and `REGATE_PENDING_TABLE`, task tokens through Step Functions.
pub type AwsApprovals = Approvals<DynamoDecisionLog, DynamoPendingStore, SfnTaskTokens>;

pub fn approvals_from_env(
    config: &aws_config::SdkConfig,
    policy: Arc<PolicyEngine>,
) -> Result<AwsApprovals, config::ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    Ok(Approvals {
        log: DynamoDecisionLog::new(
            dynamodb.clone(),
            config::required("REGATE_DECISION_LOG_TABLE")?,
        ),
        pending: DynamoPendingStore::new(dynamodb, config::required("REGATE_PENDING_TABLE")?),
        tokens: SfnTaskTokens::new(aws_sdk_sfn::Client::new(config)),
        policy,
    })
}
