//! The sweeper's settings, read once at cold start.

use std::time::Duration;

use regate_aws::config::{ConfigError, Vars, WorkflowConfig};
use regate_core::checkpoint::Cadence;

/// Slack calls share the sweeper's minute with many approvals.
const SLACK_CALL_BUDGET: Duration = Duration::from_secs(5);
/// Approvals one run looks at, unless `SWEEP_BATCH` says otherwise.
const DEFAULT_BATCH: u64 = 100;
/// Minutes between signed checkpoints, unless `CHECKPOINT_MINUTES` says otherwise.
const DEFAULT_CHECKPOINT_MINUTES: u64 = 5;
/// Seconds an event is given to reach the table before its time is checkpointed.
const DEFAULT_SETTLE_SECONDS: u64 = 30;

pub struct Config {
    pub workflow: WorkflowConfig,
    /// How many unresumed approvals one run looks at (the rest wait for the next run).
    pub batch: usize,
    /// Whether a direct invoke may sweep as of a later time (`SWEEP_ACCEPTS_NOW=true`): for
    /// local and test stacks; the template never sets it.
    pub accepts_now: bool,
    /// Where signed checkpoints go, when they are on.
    pub checkpoints: Option<CheckpointSettings>,
}

/// Signed checkpoints: on when both the bucket and the key are set.
pub struct CheckpointSettings {
    pub bucket: String,
    pub key_id: String,
    pub cadence: Cadence,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        Self::from_vars(&Vars::new(&env))
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let batch = vars.whole_number("SWEEP_BATCH", DEFAULT_BATCH)?;
        Ok(Self {
            workflow: WorkflowConfig::from_vars(vars, SLACK_CALL_BUDGET)?,
            batch: usize::try_from(batch).unwrap_or(usize::MAX),
            accepts_now: vars.flag("SWEEP_ACCEPTS_NOW")?,
            checkpoints: CheckpointSettings::from_vars(vars)?,
        })
    }
}

impl CheckpointSettings {
    fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let (bucket, key_id) = match (
            vars.optional("CHECKPOINT_BUCKET"),
            vars.optional("CHECKPOINT_KEY_ID"),
        ) {
            (None, None) => return Ok(None),
            (Some(bucket), Some(key_id)) => (bucket, key_id),
            (Some(_), None) => return Err(ConfigError::Missing("CHECKPOINT_KEY_ID".into())),
            (None, Some(_)) => return Err(ConfigError::Missing("CHECKPOINT_BUCKET".into())),
        };
        let minutes = vars.whole_number("CHECKPOINT_MINUTES", DEFAULT_CHECKPOINT_MINUTES)?;
        let settle = vars.whole_number("CHECKPOINT_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)?;
        let whole = |n: u64| i64::try_from(n).unwrap_or(i64::MAX / 1000);
        Ok(Some(Self {
            bucket,
            key_id,
            cadence: Cadence {
                every: chrono::Duration::minutes(whole(minutes).min(24 * 60)),
                settle: chrono::Duration::seconds(whole(settle).min(3600)),
            },
        }))
    }
}
