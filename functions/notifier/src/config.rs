//! The notifier's settings, read once at cold start.

use std::time::Duration;

use regate_aws::config::{ConfigError, Vars, WorkflowConfig};

/// Each Slack call may take this long by default, retries included (the step's timeout is
/// longer).
const SLACK_CALL_BUDGET: Duration = Duration::from_secs(20);

pub fn from_env() -> Result<WorkflowConfig, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    WorkflowConfig::from_vars(&Vars::new(&env), SLACK_CALL_BUDGET)
}
