//! AWS adapters for the ports of `regate-core`: the DynamoDB decision log and pending store,
//! and Step Functions task tokens; and the wiring every function shares at cold start. Region,
//! credentials and endpoint come from the variables Lambda sets (`AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, ...) and `AWS_ENDPOINT_URL`, so the same code talks to AWS and to the
//! local stack.

pub mod checkpoints;
pub mod config;
pub mod decision_log;
mod error;
pub mod http_client;
pub mod identity_tokens;
pub mod logging;
pub mod metrics;
pub mod pending;
pub mod policy_bucket;
pub mod signed_http;
pub mod task_tokens;

pub use decision_log::{DynamoDecisionLog, KeptPolicies, KeptPolicy, LogQuery};
pub use error::describe_sdk;
pub use metrics::EmfMetrics;
pub use pending::DynamoPendingStore;
pub use task_tokens::SfnTaskTokens;

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_types::region::Region;
use aws_types::sdk_config::RetryConfig;
use aws_types::SdkConfig;
use config::{secret_string, AwsSettings, ConfigError, WorkflowConfig};
use http_client::ReqwestHttpClient;
use policy_bucket::{FunctionPolicy, PolicyInitError};
use regate_chat::slack::{SlackApi, SlackChat, SlackSecrets};
use regate_chat::teams::{BotAuthenticator, BotCredentials, Connector, TeamsChat};
use regate_chat::Chats;
use regate_core::approvals::{ApprovalError, Approvals};
use regate_core::ports::{Ports, SystemClock};
use secrecy::SecretString;

/// Throttling and 5xx answers are retried by the SDK's standard retry mode (exponential
/// backoff with jitter) this many times in all before an adapter sees an error.
pub const SDK_MAX_ATTEMPTS: u32 = 4;

/// A function's AWS configuration, built once at cold start from `aws` (the variables Lambda
/// sets) without `aws-config`: its default chain would also build an STS client and, with it, a
/// second HTTPS client, which a function whose credentials come from its environment never
/// uses (about 425 KB of each zip, see BENCHMARKS.md). The SDK sends through `http`, the client
/// the chat platforms use (see `http_client`).
pub fn function_sdk_config(aws: &AwsSettings, http: &reqwest::Client) -> SdkConfig {
    let builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(aws.region.clone()))
        .credentials_provider(SharedCredentialsProvider::new(aws.credentials.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
        .http_client(ReqwestHttpClient::new(http.clone()));
    match &aws.endpoint_url {
        Some(url) => builder.endpoint_url(url).build(),
        None => builder.build(),
    }
}

/// A function's HTTP client, for AWS and for the chat platforms; `connect_timeout` bounds each
/// connection. It trusts Mozilla's root certificates compiled into the binary
/// (`webpki-root-certs`) instead of reading and parsing the system's store at every cold start
/// (about 19 M instructions each time, see BENCHMARKS.md); AWS, Slack and Microsoft all serve
/// certificates from public roots in that set. The roots change with that crate's version.
pub fn function_http_client(connect_timeout: Duration) -> Result<reqwest::Client, InitError> {
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InitError::Http(e.to_string()))?;
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tls_certs_only(roots)
        .build()
        .map_err(|e| InitError::Http(e.to_string()))
}

/// The approval workflow's ports on AWS: the DynamoDB tables, Step Functions, the configured
/// chat platforms and the system clock.
pub struct AwsPorts;

impl Ports for AwsPorts {
    type Log = DynamoDecisionLog;
    type Pending = DynamoPendingStore;
    type Tokens = SfnTaskTokens;
    type Chat = Chats;
    type Clock = SystemClock;
    type Metrics = EmfMetrics;
}

/// The approval workflow on AWS, asking approvers on the configured chat platforms.
pub type AwsApprovals = Approvals<AwsPorts>;

/// What a function that runs the approval workflow is built from.
pub struct Wired {
    pub approvals: AwsApprovals,
    /// For verifying inbound Slack requests (the callback).
    pub slack_signing_secret: SecretString,
    /// For verifying inbound Teams activities (the callback), when Teams is configured.
    pub teams_auth: Option<BotAuthenticator>,
    /// The AWS configuration the workflow's clients were built from, for a function's other
    /// clients: loading it again would cost a second cold-start setup.
    pub sdk: SdkConfig,
    /// The policy the workflow evaluates with; refresh it before each invocation.
    pub policy: FunctionPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("secret {id}: {problem}")]
    Secret { id: String, problem: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Policy(#[from] PolicyInitError),
}

/// The approval workflow of `function` over the tables, Step Functions and Slack, built once at
/// cold start, with the Slack app's secrets read once from Secrets Manager and the policy
/// loaded once (from the policy bucket, or `embedded`). `connect_timeout` bounds each
/// connection, to AWS and to the chat platforms.
pub async fn wire_approvals(
    function: &'static str,
    config: &WorkflowConfig,
    embedded: policy_bucket::EmbeddedBundle,
    connect_timeout: Duration,
) -> Result<Wired, InitError> {
    let http = function_http_client(connect_timeout)?;
    let sdk_config = function_sdk_config(&config.aws, &http);
    let sdk = &sdk_config;
    let policy =
        FunctionPolicy::load(&config.policy, &config.aws, &http, embedded, function).await?;
    let (tables, slack) = (&config.tables, &config.slack);
    let secret_text =
        secret_string(&aws_sdk_secretsmanager::Client::new(sdk), &slack.secret_id).await?;
    let secrets = SlackSecrets::from_json(&secret_text).map_err(|problem| InitError::Secret {
        id: slack.secret_id.clone(),
        problem,
    })?;
    let api = SlackApi::new(
        http.clone(),
        &slack.api_url,
        secrets.bot_token,
        slack.call_budget,
    );
    let (teams, teams_auth) = match &config.teams {
        Some(settings) => {
            let text = secret_string(
                &aws_sdk_secretsmanager::Client::new(sdk),
                &settings.secret_id,
            )
            .await?;
            let credentials =
                BotCredentials::from_json(&text).map_err(|problem| InitError::Secret {
                    id: settings.secret_id.clone(),
                    problem,
                })?;
            let auth =
                BotAuthenticator::new(&credentials.app_id, &settings.metadata_url, http.clone())
                    .with_unknown_key_refetch(settings.key_refetch);
            let connector = Connector::new(
                http,
                credentials,
                &settings.login_url,
                settings.service_hosts.clone(),
                settings.call_budget,
            );
            let chat = TeamsChat {
                connector: Arc::new(connector),
                service_url: settings.service_url.clone(),
            };
            (Some(chat), Some(auth))
        }
        None => (None, None),
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let approvals = Approvals::new(
        DynamoDecisionLog::new(dynamodb.clone(), tables.decision_log.clone())
            .keeping(Arc::clone(&policy.kept)),
        DynamoPendingStore::new(dynamodb, tables.pending.clone()),
        SfnTaskTokens::new(aws_sdk_sfn::Client::new(sdk)),
        Chats {
            slack: Some(SlackChat {
                api: Arc::new(api),
                workspace: slack.workspace.clone(),
            }),
            teams,
        },
        config.clock,
        EmfMetrics::new(function),
        Arc::clone(&policy.live),
    );
    Ok(Wired {
        approvals,
        slack_signing_secret: secrets.signing_secret,
        teams_auth,
        sdk: sdk_config,
        policy,
    })
}

/// An S3 client. A custom endpoint (a local S3 such as the local stack's) answers on paths, not
/// on bucket host names, so path-style addressing is on when one is set.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(custom_endpoint)
            .build(),
    )
}

/// A workflow error as Lambda reports it: the stable name (see `regate_core::ErrorName`) as
/// the error type Step Functions matches, and the message.
pub fn diagnostic(error: ApprovalError) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: error.name().as_str().to_string(),
        error_message: error.to_string(),
    }
}
