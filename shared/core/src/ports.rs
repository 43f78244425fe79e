//! Ports: the narrow traits through which the domain reaches the outside world. Adapters live
//! in `regate-aws` and `regate-chat`; in-memory fakes live in `regate-testkit`.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::Evaluation;
use crate::event::{Event, EventDraft};
use crate::request::Request;
use crate::vote::Vote;

/// The current time. Handlers take it as a port so tests can fix it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why a store call failed. The variant names are the suffixes of the Step Functions error
/// names (`DecisionLog.Throttled`, `PendingStore.Unavailable`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Still throttled after the SDK's own retries; worth retrying later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Unreachable or failing (5xx, network) after the SDK's own retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Lost every attempt of a bounded retry against concurrent writers.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored item that cannot be read back as what it should be.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    /// A request the store refused (bad parameters, missing table, no permission).
    #[error("refused: {0}")]
    Refused(String),
}

impl StoreError {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "Throttled",
            Self::Unavailable(_) => "Unavailable",
            Self::Conflict(_) => "Conflict",
            Self::Corrupt(_) => "Corrupt",
            Self::Refused(_) => "Refused",
        }
    }

    /// Whether Step Functions should retry the step that failed with it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_) | Self::Unavailable(_) | Self::Conflict(_)
        )
    }
}

/// The append-only, hash-chained decision log.
pub trait DecisionLog: Send + Sync {
    /// Appends `draft` as the next event of the request's chain. Concurrent appends to one
    /// request all succeed with contiguous sequence numbers (a lost race is retried, within a
    /// bound).
    fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Event, StoreError>> + Send;

    /// Every event of one request, in sequence order.
    fn events(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
}

/// A Step Functions task token. It can resume a workflow, so it is never printed: `Debug`
/// shows only its length, and the value is reached through [`TaskToken::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskToken(String);

impl TaskToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskToken(<{} chars, redacted>)", self.0.len())
    }
}

/// Where an approval message was posted, so it can be updated later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum MessageRef {
    Slack {
        channel: String,
        ts: String,
    },
    Teams {
        conversation: String,
        activity_id: String,
        service_url: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One open (or closed) approval: what the callback needs to count a vote and resume the
/// workflow. Lives in the pending store, never in the decision log.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    pub request_id: String,
    pub task_token: TaskToken,
    pub request: Request,
    pub evaluation: Evaluation,
    pub messages: Vec<MessageRef>,
    pub votes: Vec<Vote>,
    pub state: ApprovalState,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    /// When the store may forget the item (DynamoDB TTL); after the workflow's own timeout.
    pub expires_at: DateTime<Utc>,
    /// Who cast the deciding vote, and when the request was closed.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// The answer to a conditional write on a pending approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional {
    /// The write happened; the item as it is now.
    Done(Box<PendingApproval>),
    /// Someone else changed the item first, or it is no longer in the required state; the
    /// item as it is now (None if it does not exist).
    Lost(Option<Box<PendingApproval>>),
}

/// The open approvals, with conditional writes so that concurrent clicks resolve cleanly.
pub trait PendingStore: Send + Sync {
    /// Stores a new pending approval. When one already exists for the request (a retried
    /// notifier), nothing is written and the existing one is returned as `Lost`.
    fn create(
        &self,
        approval: &PendingApproval,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    fn get(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<PendingApproval>, StoreError>> + Send;

    /// Adds the references of posted messages (state must be pending).
    fn add_messages(
        &self,
        request_id: &str,
        messages: &[MessageRef],
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Records a vote once per voter, only while the approval is pending.
    fn record_vote(
        &self,
        request_id: &str,
        vote: &Vote,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Replaces the task token of a pending approval (a retried `.waitForTaskToken` step gets a
    /// new token; the old one is dead).
    fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Moves a pending approval to a final state if it still has `expected_version`: of many
    /// concurrent callers exactly one gets `Done`. The closing evaluation and who decided are
    /// stored with it.
    fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;
}

/// How a pending approval closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    pub state: ApprovalState,
    pub evaluation: Evaluation,
    pub decided_by: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// Why a chat platform call failed. Variant names are the suffixes of the Step Functions
/// error names (`Chat.RateLimited`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Still rate limited after waiting as long as the platform asked, within a bound.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// Down, failing (5xx) or unreachable after bounded retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The platform refused the call (e.g. `channel_not_found`, `not_in_channel`,
    /// `invalid_auth`); retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
}

impl ChatError {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "RateLimited",
            Self::Unavailable(_) => "Unavailable",
            Self::Refused(_) => "Refused",
        }
    }
}

/// What people see about an approval, whatever the platform renders it as.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalView<'a> {
    pub approval: &'a PendingApproval,
    /// The latest evaluation (with every counted vote).
    pub evaluation: &'a Evaluation,
}

/// A chat platform that asks approvers: Slack, Teams.
pub trait ChatPlatform: Send + Sync {
    /// Posts the approval message to `target`; `None` when this platform does not serve the
    /// target's platform (a Teams target on Slack).
    fn post(
        &self,
        target: &crate::decision::NotifyTarget,
        view: ApprovalView<'_>,
    ) -> impl Future<Output = Result<Option<MessageRef>, ChatError>> + Send;

    /// Rewrites a posted message to show the approval as it is now. Messages of other
    /// platforms are left alone.
    fn update(
        &self,
        message: &MessageRef,
        view: ApprovalView<'_>,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
}

/// Why a task token call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTokenError {
    /// The execution already moved on: timed out, finished, or the token is unknown
    /// (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`). Show it to people; do not fail.
    #[error("the request is already closed or expired ({0})")]
    AlreadyClosed(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Resumes a workflow paused on a task token.
pub trait TaskTokens: Send + Sync {
    fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> impl Future<Output = Result<(), TaskTokenError>> + Send;

    fn fail(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> impl Future<Output = Result<(), TaskTokenError>> + Send;

    fn heartbeat(
        &self,
        token: &TaskToken,
    ) -> impl Future<Output = Result<(), TaskTokenError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_token_never_shows_in_debug_output() {
        let token = TaskToken::new("AQCEAAAAKgAAAA-secret-token");
        let printed = format!("{token:?} {:?}", Some(&token));
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("27 chars"));
    }
}
