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

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

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
