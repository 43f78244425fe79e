//! The evaluator's settings, read once at cold start.

use regate_aws::config::{clock, AwsSettings, ConfigError, Vars};
use regate_aws::identity_tokens::IdentitySettings;
use regate_aws::policy_bucket::PolicySettings;
use regate_core::ports::SystemClock;

pub struct Config {
    pub aws: AwsSettings,
    pub decision_log_table: String,
    pub clock: SystemClock,
    pub policy: PolicySettings,
    pub identity: IdentitySettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let vars = Vars::new(&env);
        Ok(Self {
            aws: AwsSettings::from_vars(&vars)?,
            decision_log_table: vars.required("REGATE_DECISION_LOG_TABLE")?,
            clock: clock(&vars)?,
            policy: PolicySettings::from_vars(&vars)?,
            identity: IdentitySettings::from_vars(&vars)?,
        })
    }
}
