//! Votes cast by approvers and the policy's answer on whether a voter may vote.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pending::Platform;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Approve,
    Reject,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// One recorded vote, in the shape the policy sees in `input.votes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub voter: String,
    pub vote: Choice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339.
    pub at: String,
}

/// `data.approvals.vote`: whether a voter may vote, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteCheck {
    pub allowed: bool,
    #[serde(default)]
    pub reason: String,
}

impl VoteCheck {
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// One vote as cast: on which request, by whom (their identity, an e-mail address), which
/// way, why, on which platform and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub request_id: String,
    pub voter: String,
    pub choice: Choice,
    pub reason: Option<String>,
    pub platform: Platform,
    /// Where it was cast (the channel or conversation of the clicked message), when known: a
    /// click must come from a message posted for this request.
    pub place: Option<String>,
    /// The id of the message clicked, when known: it must be one regate posted there.
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}
