//! Maps AWS SDK errors to the typed errors of the ports.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use regate_core::ports::StoreError;

/// Error codes AWS uses for throttling across services.
const THROTTLING_CODES: [&str; 5] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "Throttling",
];

/// What kind of failure an SDK error is, before it is turned into a port's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Throttled(String),
    Unavailable(String),
    /// The service answered with this error code.
    Service {
        code: String,
        message: String,
    },
}

pub fn classify<E, R>(error: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown").to_string();
            let message = inner.message().unwrap_or_default().to_string();
            if THROTTLING_CODES.contains(&code.as_str()) {
                Failure::Throttled(format!("{code}: {message}"))
            } else if code.starts_with("InternalServer") || code == "ServiceUnavailable" {
                Failure::Unavailable(format!("{code}: {message}"))
            } else {
                Failure::Service { code, message }
            }
        }
        SdkError::ResponseError(_) | SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            Failure::Unavailable(describe(error))
        }
        other => Failure::Service {
            code: "Client".into(),
            message: describe(other),
        },
    }
}

/// An SDK error as one line, with its code when the service gave one.
pub fn describe_sdk<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match classify(error) {
        Failure::Throttled(m) | Failure::Unavailable(m) => m,
        Failure::Service { code, message } => format!("{code}: {message}"),
    }
}

/// The error with its sources, for people.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

pub fn store_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Throttled(m) => StoreError::Throttled(m),
        Failure::Unavailable(m) => StoreError::Unavailable(m),
        Failure::Service { code, message } => StoreError::Refused(format!("{code}: {message}")),
    }
}

/// Whether a DynamoDB error is a failed condition (a lost race), which callers handle.
pub fn is_condition_failure(failure: &Failure) -> bool {
    matches!(failure, Failure::Service { code, .. } if code == "ConditionalCheckFailedException")
}
