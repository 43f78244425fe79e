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
