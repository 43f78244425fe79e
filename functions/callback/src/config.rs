//! The callback's settings, read once at cold start.

use std::time::Duration;

use regate_aws::config::{ConfigError, Vars, WorkflowConfig};

/// Slack wants an answer within 3 s; the chat calls after a vote is recorded share this budget.
const SLACK_CALL_BUDGET: Duration = Duration::from_millis(1500);

pub fn from_env() -> Result<WorkflowConfig, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    WorkflowConfig::from_vars(&Vars::new(&env), SLACK_CALL_BUDGET)
}
