//! Function configuration from environment variables, read once at cold start. A variable that
//! is missing or wrong stops initialisation with a message naming it.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: String, problem: String },
    #[error("secret {id} cannot be read: {problem}")]
    Secret { id: String, problem: String },
}

/// A required variable.
pub fn required(name: &str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConfigError::Missing(name.to_string()))
}

/// An optional variable with a default.
pub fn or_default(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A duration in milliseconds, with a default.
pub fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| ConfigError::Invalid {
                name: name.to_string(),
                problem: format!("{text:?} is not a number of milliseconds"),
            }),
    }
}

/// The text of a Secrets Manager secret (read once per container; never logged).
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, ConfigError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| ConfigError::Secret {
            id: id.to_string(),
            problem: crate::error::describe_sdk(&e),
        })?;
    output
        .secret_string()
        .map(str::to_string)
        .ok_or_else(|| ConfigError::Secret {
            id: id.to_string(),
            problem: "it has no SecretString".into(),
        })
}
