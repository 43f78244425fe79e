//! The checkpointer's settings, read once at cold start.

use regate_aws::config::{clock, AwsSettings, ConfigError, Vars};
use regate_core::checkpoint::Cadence;
use regate_core::ports::SystemClock;

/// Minutes between signed checkpoints, unless `CHECKPOINT_MINUTES` says otherwise.
const DEFAULT_CHECKPOINT_MINUTES: u64 = 5;
/// Seconds an event is given to reach the table before its time is checkpointed.
const DEFAULT_SETTLE_SECONDS: u64 = 30;

pub struct Config {
    pub aws: AwsSettings,
    pub decision_log: String,
    /// Where checkpoints go (`checkpoints/` in this bucket), and the KMS key that signs them.
    pub bucket: String,
    pub key_id: String,
    pub cadence: Cadence,
    pub clock: SystemClock,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        Self::from_vars(&Vars::new(&env))
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let minutes = vars.whole_number("CHECKPOINT_MINUTES", DEFAULT_CHECKPOINT_MINUTES)?;
        let settle = vars.whole_number("CHECKPOINT_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)?;
        let whole = |n: u64| i64::try_from(n).unwrap_or(i64::MAX / 1000);
        Ok(Self {
            aws: AwsSettings::from_vars(vars)?,
            decision_log: vars.required("REGATE_DECISION_LOG_TABLE")?,
            bucket: vars.required("CHECKPOINT_BUCKET")?,
            key_id: vars.required("CHECKPOINT_KEY_ID")?,
            cadence: Cadence {
                every: chrono::Duration::minutes(whole(minutes).min(24 * 60)),
                settle: chrono::Duration::seconds(whole(settle).min(3600)),
            },
            clock: clock(vars)?,
        })
    }
}
