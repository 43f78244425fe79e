//! What the policy decides about a request, and the record of one evaluation
//! (the decision plus the policy revision and input digest that produced it).

use serde::{Deserialize, Serialize};

/// Step Functions waits at most a year on a task token.
pub const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    ApprovalRequired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ApprovalRequired => "approval_required",
        }
    }

    /// Allow and deny close a request; approval_required keeps it open.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::ApprovalRequired)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group's approval requirement and how many counted approvals it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub group: String,
    pub min: u32,
    #[serde(default)]
    pub have: u32,
}

/// Where the approval message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum NotifyTarget {
    Slack { channel: String },
    Teams { conversation: String },
}

impl NotifyTarget {
    /// The target as one stable text (`slack:C0PAYMENTS`), for recording an intent to post.
    pub fn key(&self) -> String {
        match self {
            Self::Slack { channel } => format!("slack:{channel}"),
            Self::Teams { conversation } => format!("teams:{conversation}"),
        }
    }
}

/// `data.approvals.decision`, as the policy returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub requirements: Vec<Requirement>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub notify: Vec<NotifyTarget>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub reject_reason_required: bool,
    /// Offsets from `input.opened_at` at which approvers who have not voted are reminded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remind_after_seconds: Vec<u64>,
    /// Offsets from `input.opened_at` at which the decision may change because time passed, and
    /// the request is evaluated again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reevaluate_after_seconds: Vec<u64>,
}

/// A decision may name at most this many reminder or re-evaluation offsets.
pub const MAX_OFFSETS: usize = 20;

impl Decision {
    /// Checks the time offsets: each list strictly ascending, at most [`MAX_OFFSETS`] long, and
    /// every offset at least 1 and before the timeout (nothing can happen after it).
    pub fn check_offsets(&self) -> Result<(), String> {
        for (name, offsets) in [
            ("remind_after_seconds", &self.remind_after_seconds),
            ("reevaluate_after_seconds", &self.reevaluate_after_seconds),
        ] {
            if offsets.len() > MAX_OFFSETS {
                return Err(format!(
                    "{name} has {} offsets; at most {MAX_OFFSETS} are allowed",
                    offsets.len()
                ));
            }
            if let Some(bad) = offsets
                .iter()
                .find(|&&offset| offset == 0 || offset >= self.timeout_seconds)
            {
                return Err(format!(
                    "{name} must be between 1 and timeout_seconds - 1 ({}), not {bad}",
                    self.timeout_seconds.saturating_sub(1)
                ));
            }
            if offsets.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(format!(
                    "{name} must be in ascending order without repeats, not {offsets:?}"
                ));
            }
        }
        Ok(())
    }
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

/// A decision together with what produced it, as recorded in the decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub decision: Decision,
    pub policy_revision: String,
    pub input_digest: String,
}
