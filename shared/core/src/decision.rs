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

/// Another way to meet a decision: every requirement of one alternative met, instead of the
/// decision's own `requirements` (an escalation: "or 1 approval from sre").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    pub requirements: Vec<Requirement>,
}

/// Where the approval message goes: a Slack channel or Teams conversation, or a person, by
/// e-mail address (or Teams UPN), in a direct message. As JSON: `{"platform": "slack",
/// "channel": "C0PAYMENTS"}`, `{"platform": "slack", "user": "erin@example.com"}`,
/// `{"platform": "teams", "conversation": "19:…@thread.tacv2"}`, `{"platform": "teams",
/// "user": "erin@example.com"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TargetFields", into = "TargetFields")]
pub enum NotifyTarget {
    Slack { channel: String },
    SlackUser { user: String },
    Teams { conversation: String },
    TeamsUser { user: String },
}

impl NotifyTarget {
    /// The target as one stable text (`slack:C0PAYMENTS`, `slack-user:erin@example.com`), for
    /// recording an intent to post.
    pub fn key(&self) -> String {
        match self {
            Self::Slack { channel } => format!("slack:{channel}"),
            Self::SlackUser { user } => format!("slack-user:{}", crate::rules::normalize(user)),
            Self::Teams { conversation } => format!("teams:{conversation}"),
            Self::TeamsUser { user } => format!("teams-user:{}", crate::rules::normalize(user)),
        }
    }

    /// The person a direct message goes to, for a person target.
    pub fn person(&self) -> Option<&str> {
        match self {
            Self::SlackUser { user } | Self::TeamsUser { user } => Some(user),
            Self::Slack { .. } | Self::Teams { .. } => None,
        }
    }

    /// Whether this target is on Slack (else on Teams).
    pub fn is_slack(&self) -> bool {
        matches!(self, Self::Slack { .. } | Self::SlackUser { .. })
    }

    /// The platform this target is on.
    pub fn platform(&self) -> crate::pending::Platform {
        if self.is_slack() {
            crate::pending::Platform::Slack
        } else {
            crate::pending::Platform::Teams
        }
    }
}

/// A notify target as its JSON has it.
#[derive(Serialize, Deserialize)]
struct TargetFields {
    platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

impl TryFrom<TargetFields> for NotifyTarget {
    type Error = String;

    fn try_from(fields: TargetFields) -> Result<Self, String> {
        let TargetFields {
            platform,
            channel,
            conversation,
            user,
        } = fields;
        match (platform.as_str(), channel, conversation, user) {
            ("slack", Some(channel), None, None) => Ok(Self::Slack { channel }),
            ("slack", None, None, Some(user)) => Ok(Self::SlackUser { user }),
            ("teams", None, Some(conversation), None) => Ok(Self::Teams { conversation }),
            ("teams", None, None, Some(user)) => Ok(Self::TeamsUser { user }),
            ("slack", ..) => Err("a slack notify target has either a channel or a user".into()),
            ("teams", ..) => {
                Err("a teams notify target has either a conversation or a user".into())
            }
            (other, ..) => Err(format!(
                "unknown notify platform {other:?}: expected slack or teams"
            )),
        }
    }
}

impl From<NotifyTarget> for TargetFields {
    fn from(target: NotifyTarget) -> Self {
        let mut fields = Self {
            platform: target.platform().as_str().into(),
            channel: None,
            conversation: None,
            user: None,
        };
        match target {
            NotifyTarget::Slack { channel } => fields.channel = Some(channel),
            NotifyTarget::Teams { conversation } => fields.conversation = Some(conversation),
            NotifyTarget::SlackUser { user } | NotifyTarget::TeamsUser { user } => {
                fields.user = Some(user)
            }
        }
        fields
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
    /// Other sets of requirements, any one of which also meets the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
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
    /// Where the requester hears how an approval ended: a person target (a direct message),
    /// or none when the policy knows no address for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tell_requester: Option<NotifyTarget>,
}

/// A decision may name at most this many reminder or re-evaluation offsets.
pub const MAX_OFFSETS: usize = 20;

impl Decision {
    /// Checks what the types cannot: `tell_requester` names a person, and the time offsets are
    /// each list strictly ascending, at most [`MAX_OFFSETS`] long, with every offset at least 1
    /// and before the timeout (nothing can happen after it).
    pub fn check(&self) -> Result<(), String> {
        if let Some(target) = self
            .tell_requester
            .as_ref()
            .filter(|t| t.person().is_none())
        {
            return Err(format!(
                "tell_requester must name a person (platform and user), not {}",
                target.key()
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::NotifyTarget;

    #[test]
    fn notify_targets_read_and_write_the_documented_json() {
        let cases = [
            (r#"{"platform":"slack","channel":"C0SRE"}"#, "slack:C0SRE"),
            (
                r#"{"platform":"slack","user":"Erin@Example.com"}"#,
                "slack-user:erin@example.com",
            ),
            (
                r#"{"platform":"teams","conversation":"19:a@thread.tacv2"}"#,
                "teams:19:a@thread.tacv2",
            ),
            (
                r#"{"platform":"teams","user":"erin@example.com"}"#,
                "teams-user:erin@example.com",
            ),
        ];
        for (json, key) in cases {
            let target: NotifyTarget = serde_json::from_str(json).unwrap();
            assert_eq!(target.key(), key);
            assert_eq!(serde_json::to_string(&target).unwrap(), json, "round trip");
        }
        for bad in [
            r#"{"platform":"slack"}"#,
            r#"{"platform":"slack","channel":"C1","user":"a@b.c"}"#,
            r#"{"platform":"teams","channel":"C1"}"#,
            r#"{"platform":"email","user":"a@b.c"}"#,
        ] {
            assert!(serde_json::from_str::<NotifyTarget>(bad).is_err(), "{bad}");
        }
    }
}
