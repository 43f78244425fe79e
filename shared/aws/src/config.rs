//! Typed settings that functions build once at cold start, from variables their `main.rs`
//! reads. This module never reads the environment itself: it parses what it is given, so a
//! missing or malformed variable fails initialisation with a message naming it.

use std::time::Duration;

use regate_chat::slack::SlackWorkspace;
use regate_chat::teams::{self, auth, connector};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: String, problem: String },
    #[error("secret {id} cannot be read: {problem}")]
    Secret { id: String, problem: String },
}

/// Variables by name: the process environment in a function's `main.rs`, a map in tests.
pub struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl<'a> Vars<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self(lookup)
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A required variable.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::Missing(name.to_string()))
    }

    /// An optional variable.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// An optional variable with a default.
    pub fn or_default(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    /// A duration in milliseconds, with a default.
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self
            .number::<u64>(name, "a number of milliseconds")?
            .map_or(default, Duration::from_millis))
    }

    /// A whole number, with a default.
    pub fn whole_number(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        Ok(self
            .number::<u64>(name, "a whole number")?
            .unwrap_or(default))
    }

    /// `true` or `false`, false when unset.
    pub fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name: name.to_string(),
                problem: format!("{other:?} is neither true nor false"),
            }),
        }
    }

    /// A whole number of seconds that may be negative (an offset), zero when unset.
    pub fn seconds(&self, name: &str) -> Result<chrono::Duration, ConfigError> {
        Ok(chrono::Duration::seconds(
            self.number::<i64>(name, "a whole number of seconds")?
                .unwrap_or(0),
        ))
    }

    fn number<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        text.trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                name: name.to_string(),
                problem: format!("{text:?} is not {what}"),
            })
    }
}

/// The two DynamoDB tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub decision_log: String,
    pub pending: String,
}

impl Tables {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            decision_log: vars.required("REGATE_DECISION_LOG_TABLE")?,
            pending: vars.required("REGATE_PENDING_TABLE")?,
        })
    }
}

/// Where the Slack app's secret is, which app and workspace it is, which Web API to call, and
/// how long a call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackSettings {
    pub secret_id: String,
    pub workspace: SlackWorkspace,
    pub api_url: String,
    /// Each Web API call's total budget, retries and waits included.
    pub call_budget: Duration,
}

impl SlackSettings {
    /// `default_budget` differs per function: the callback must answer Slack within 3 s.
    pub fn from_vars(vars: &Vars, default_budget: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            secret_id: vars.required("SLACK_SECRET_ID")?,
            workspace: SlackWorkspace {
                app_id: vars.required("SLACK_APP_ID")?,
                team_id: vars.required("SLACK_TEAM_ID")?,
                enterprise_id: vars.optional("SLACK_ENTERPRISE_ID"),
            },
            api_url: vars.or_default("SLACK_API_URL", "https://slack.com/api"),
            call_budget: vars.millis("SLACK_CALL_BUDGET_MS", default_budget)?,
        })
    }
}

/// Where the Teams bot's secret is (app id, tenant id, client secret), where it logs in and
/// posts, which connector hosts may receive its token, and how long a call may take. Teams is
/// configured when `TEAMS_SECRET_ID` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsSettings {
    pub secret_id: String,
    pub service_url: String,
    pub service_hosts: Vec<String>,
    pub login_url: String,
    pub metadata_url: String,
    /// How often an unknown signing key id may make the callback fetch the keys again.
    pub key_refetch: Duration,
    pub call_budget: Duration,
}

impl TeamsSettings {
    pub fn from_vars(vars: &Vars, default_budget: Duration) -> Result<Option<Self>, ConfigError> {
        let Some(secret_id) = vars.optional("TEAMS_SECRET_ID") else {
            return Ok(None);
        };
        let service_hosts: Vec<String> = match vars.optional("TEAMS_SERVICE_HOSTS") {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => connector::SERVICE_HOSTS.map(str::to_string).to_vec(),
        };
        let service_url = vars.or_default("TEAMS_SERVICE_URL", teams::DEFAULT_SERVICE_URL);
        let host = reqwest::Url::parse(&service_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        if !host.is_some_and(|host| service_hosts.contains(&host)) {
            return Err(ConfigError::Invalid {
                name: "TEAMS_SERVICE_URL".into(),
                problem: format!(
                    "{service_url:?} is not a URL on an allowed host ({}; TEAMS_SERVICE_HOSTS)",
                    service_hosts.join(", ")
                ),
            });
        }
        Ok(Some(Self {
            secret_id,
            service_url,
            service_hosts,
            login_url: vars.or_default("TEAMS_LOGIN_URL", connector::LOGIN_BASE),
            metadata_url: vars.or_default("TEAMS_METADATA_URL", auth::BOT_FRAMEWORK_METADATA),
            key_refetch: match vars.optional("TEAMS_KEY_REFETCH_SECONDS") {
                Some(_) => Duration::from_secs(vars.whole_number("TEAMS_KEY_REFETCH_SECONDS", 0)?),
                None => auth::UNKNOWN_KEY_REFETCH,
            },
            call_budget: vars.millis("TEAMS_CALL_BUDGET_MS", default_budget)?,
        }))
    }
}

/// The clock a function works in: the real one, shifted by `REGATE_CLOCK_OFFSET_SECONDS` (zero
/// when unset). The local stack sets an offset so its demo and tests see the same dates on any
/// day they run; a deployment leaves it unset.
pub fn clock(vars: &Vars) -> Result<regate_core::ports::SystemClock, ConfigError> {
    Ok(regate_core::ports::SystemClock {
        offset: vars.seconds("REGATE_CLOCK_OFFSET_SECONDS")?,
    })
}

/// Where and as whom a function calls AWS: the variables Lambda sets for every function
/// (`AWS_REGION`, and the execution role's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`), and `AWS_ENDPOINT_URL` when set (the local stack). A process's
/// environment never changes, so reading the credentials once is what the SDK's environment
/// provider would do on every call.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: String,
    /// Its `Debug` shows the access key id only.
    pub credentials: aws_credential_types::Credentials,
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let region = vars
            .optional("AWS_REGION")
            .or_else(|| vars.optional("AWS_DEFAULT_REGION"))
            .ok_or_else(|| ConfigError::Missing("AWS_REGION".into()))?;
        let credentials = aws_credential_types::Credentials::new(
            vars.required("AWS_ACCESS_KEY_ID")?,
            vars.required("AWS_SECRET_ACCESS_KEY")?,
            vars.optional("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoint_url = vars.optional("AWS_ENDPOINT_URL");
        if let Some(url) = &endpoint_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "AWS_ENDPOINT_URL".into(),
                    problem: format!("{url:?} is not an http(s) URL"),
                });
            }
        }
        Ok(Self {
            region,
            credentials,
            endpoint_url,
        })
    }
}

/// The settings of a function that runs the approval workflow (the notifier, the callback).
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    pub aws: AwsSettings,
    pub tables: Tables,
    pub slack: SlackSettings,
    pub teams: Option<TeamsSettings>,
    pub clock: regate_core::ports::SystemClock,
    pub policy: crate::policy_bucket::PolicySettings,
}

impl WorkflowConfig {
    /// `default_chat_budget` bounds each Slack or Teams call unless configured otherwise.
    pub fn from_vars(vars: &Vars, default_chat_budget: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            aws: AwsSettings::from_vars(vars)?,
            tables: Tables::from_vars(vars)?,
            slack: SlackSettings::from_vars(vars, default_chat_budget)?,
            teams: TeamsSettings::from_vars(vars, default_chat_budget)?,
            clock: clock(vars)?,
            policy: crate::policy_bucket::PolicySettings::from_vars(vars)?,
        })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashMap;

    fn with<T>(pairs: &[(&str, &str)], read: impl Fn(&Vars) -> T) -> T {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        read(&Vars::new(&lookup))
    }

    #[test]
    fn a_flag_is_true_or_false_and_anything_else_names_the_variable() {
        let flag = |value: &str| with(&[("FLAG", value)], |vars| vars.flag("FLAG"));
        assert_eq!(flag("true"), Ok(true));
        assert_eq!(flag("false"), Ok(false));
        assert_eq!(with(&[], |vars| vars.flag("FLAG")), Ok(false));
        let bad = flag("yes").unwrap_err().to_string();
        assert!(bad.contains("FLAG") && bad.contains("\"yes\""), "{bad}");
    }

    #[test]
    fn teams_is_optional_and_its_service_url_must_be_on_an_allowed_host() {
        let none = with(&[], |v| TeamsSettings::from_vars(v, Duration::from_secs(1)));
        assert_eq!(none.unwrap(), None);
        let default = with(&[("TEAMS_SECRET_ID", "regate/teams")], |v| {
            TeamsSettings::from_vars(v, Duration::from_secs(1))
        })
        .unwrap()
        .unwrap();
        assert_eq!(default.service_url, teams::DEFAULT_SERVICE_URL);
        assert!(default
            .service_hosts
            .contains(&"smba.trafficmanager.net".to_string()));
        let elsewhere = with(
            &[
                ("TEAMS_SECRET_ID", "regate/teams"),
                ("TEAMS_SERVICE_URL", "https://evil.example/teams/"),
            ],
            |v| TeamsSettings::from_vars(v, Duration::from_secs(1)),
        );
        let error = elsewhere.unwrap_err().to_string();
        assert!(
            error.contains("TEAMS_SERVICE_URL") && error.contains("allowed host"),
            "{error}"
        );
    }

    #[test]
    fn aws_settings_come_from_the_lambda_variables_and_a_missing_one_is_named() {
        let lambda = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-example"),
            ("AWS_SESSION_TOKEN", "session-example"),
        ];
        let settings = with(&lambda, AwsSettings::from_vars).unwrap();
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(settings.credentials.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(
            settings.credentials.session_token(),
            Some("session-example")
        );
        assert_eq!(settings.endpoint_url, None);
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("secret-example") && !shown.contains("session-example"),
            "{shown}"
        );

        let error = with(&lambda[..2], AwsSettings::from_vars).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable AWS_SECRET_ACCESS_KEY is not set"
        );
        let error = with(&lambda[1..], AwsSettings::from_vars).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable AWS_REGION is not set"
        );
        let mut local = lambda.to_vec();
        local.push(("AWS_ENDPOINT_URL", "127.0.0.1:5005"));
        let error = with(&local, AwsSettings::from_vars)
            .unwrap_err()
            .to_string();
        assert!(error.contains("AWS_ENDPOINT_URL"), "{error}");
    }

    #[test]
    fn a_missing_table_is_named() {
        let error = with(&[("REGATE_DECISION_LOG_TABLE", "Log")], Tables::from_vars).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable REGATE_PENDING_TABLE is not set"
        );
    }

    #[test]
    fn a_malformed_budget_or_offset_is_named_with_its_value() {
        let slack = with(
            &[
                ("SLACK_SECRET_ID", "s"),
                ("SLACK_APP_ID", "A1"),
                ("SLACK_TEAM_ID", "T1"),
                ("SLACK_CALL_BUDGET_MS", "soon"),
            ],
            |v| SlackSettings::from_vars(v, Duration::from_secs(1)),
        );
        let error = slack.unwrap_err().to_string();
        assert!(
            error.contains("SLACK_CALL_BUDGET_MS") && error.contains("\"soon\""),
            "{error}"
        );
        let negative = with(&[("SLACK_CALL_BUDGET_MS", "-5")], |v| {
            v.millis("SLACK_CALL_BUDGET_MS", Duration::ZERO)
        });
        assert!(negative.is_err());
        assert_eq!(
            with(&[("OFFSET", "-90")], |v| v.seconds("OFFSET")).unwrap(),
            chrono::Duration::seconds(-90)
        );
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let vars = [
            ("SLACK_SECRET_ID", "s"),
            ("SLACK_APP_ID", "A1"),
            ("SLACK_TEAM_ID", "T1"),
            ("SLACK_API_URL", " "),
        ];
        let slack = with(&vars, |v| {
            SlackSettings::from_vars(v, Duration::from_millis(1500))
        })
        .unwrap();
        assert_eq!(slack.api_url, "https://slack.com/api");
        assert_eq!(slack.call_budget, Duration::from_millis(1500));
    }
}
