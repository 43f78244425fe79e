//! The sweeper's settings, read once at cold start.

use std::time::Duration;

use regate_aws::config::{ConfigError, Vars, WorkflowConfig};

/// Slack calls share the sweeper's minute with many approvals.
const SLACK_CALL_BUDGET: Duration = Duration::from_secs(5);
/// Approvals one run looks at, unless `SWEEP_BATCH` says otherwise.
const DEFAULT_BATCH: u64 = 100;

pub struct Config {
    pub workflow: WorkflowConfig,
    /// How many unresumed approvals one run looks at (the rest wait for the next run).
    pub batch: usize,
    /// Whether a direct invoke may sweep as of a later time (`SWEEP_ACCEPTS_NOW=true`): for
    /// local and test stacks; the template never sets it.
    pub accepts_now: bool,
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
        })
    }
}
