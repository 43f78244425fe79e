//! The approval workflow, generic over one [`Ports`] type: open an approval for a paused
//! workflow and post its messages, count a vote, close and resume the workflow exactly once,
//! expire it, and keep every message showing the approval as it is. Handlers call these and map
//! the results; they never touch the ports themselves.
//!
//! One file a duty, each an `impl` block of [`Approvals`]:
//! - `notify`: open the approval of a paused workflow and post its messages, once;
//! - `vote`: a click or a ballot, checked against the policy and the hard rules, then stored;
//! - `close`: decide with every vote counted, close once, and resume the workflow once
//!   (`Closer` names who closes);
//! - `sweep`: the scheduled backstop: resumes still owed, reminders, re-evaluation when time
//!   passes, closes on stored votes, and expiry;
//! - `refresh`: every message shows the approval as it is now;
//! - `tell`: the requester hears how it ended, once the workflow has.
//!
//! A vote reaches `close` through `vote`; the sweeper reaches it through `sweep`; both end in
//! `refresh`.

mod close;
mod notify;
mod refresh;
mod sweep;
mod tell;
mod vote;

pub use close::approved_output;
pub use notify::Notified;
pub use sweep::{SweepBudget, SweepReport, RETRY_FAILED_SWEEP_AFTER};
pub use tell::{TELL_ATTEMPTS, TO_REQUESTER};
pub use vote::VoteResult;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::ErrorName;
use crate::event::EventDraft;
use crate::metrics::{Measurement, Metrics};
use crate::pending::{ApprovalState, PendingApproval, Platform, RESUME_LEASE};
use crate::policy::{LivePolicy, PolicyError};
use crate::ports::{
    ChatError, Clock, DecisionLog, PendingStore, Ports, StoreError, TaskTokenError,
};
use crate::request::RequestError;

/// The error Step Functions sees when approvers reject a change.
pub const REJECTED_ERROR: &str = "ApprovalRejected";
/// Rounds of "evaluate, try to close" when other votes keep arriving concurrently.
const CLOSE_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    IdentityUnavailable(crate::identity::IssuerUnavailable),
    #[error("decision log: {0}")]
    DecisionLog(StoreError),
    #[error("pending store: {0}")]
    PendingStore(StoreError),
    #[error("step functions: {0}")]
    TaskToken(TaskTokenError),
    #[error("{0}")]
    Chat(ChatError),
    #[error("no notify target of request {request_id} can be reached: none of {targets} is served by a configured platform")]
    NoTarget { request_id: String, targets: String },
    #[error("votes kept arriving while closing request {0}; try again")]
    Contended(String),
    #[error(
        "request id {request_id} belongs to execution {held_by}; start this change with a new id"
    )]
    RequestIdInUse { request_id: String, held_by: String },
}

impl ApprovalError {
    /// The name Step Functions sees (see [`ErrorName`]).
    pub fn name(&self) -> ErrorName {
        match self {
            Self::InvalidRequest(_) => ErrorName::InvalidRequest,
            Self::Policy(PolicyError::Unavailable(_)) => ErrorName::PolicyUnavailable,
            Self::Policy(_) => ErrorName::PolicyError,
            Self::IdentityUnavailable(_) => ErrorName::IdentityUnavailable,
            Self::DecisionLog(e) => ErrorName::decision_log(e),
            Self::PendingStore(e) => ErrorName::pending_store(e),
            Self::TaskToken(e) => ErrorName::task_tokens(e),
            Self::Chat(e) => ErrorName::chat(e),
            Self::NoTarget { .. } => ErrorName::ChatNoTarget,
            Self::Contended(_) => ErrorName::PendingStoreConflict,
            Self::RequestIdInUse { .. } => ErrorName::RequestIdInUse,
        }
    }
}

/// How a request was closed by a vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub state: ApprovalState,
    /// False while the workflow has not taken the outcome: resuming failed for now, or the
    /// workflow no longer waited (then the approval ends `expired`).
    pub resumed: bool,
}

/// The approval workflow over its ports (the decision log, the pending store, task tokens, the
/// chat platform(s), a clock and the metrics; see [`Ports`]), with the compiled policy.
pub struct Approvals<P: Ports> {
    log: P::Log,
    pending: P::Pending,
    tokens: P::Tokens,
    chat: P::Chat,
    clock: P::Clock,
    metrics: P::Metrics,
    policy: Arc<LivePolicy>,
}

impl<P: Ports> Approvals<P> {
    pub fn new(
        log: P::Log,
        pending: P::Pending,
        tokens: P::Tokens,
        chat: P::Chat,
        clock: P::Clock,
        metrics: P::Metrics,
        policy: Arc<LivePolicy>,
    ) -> Self {
        Self {
            log,
            pending,
            tokens,
            chat,
            clock,
            metrics,
            policy,
        }
    }

    /// The time this workflow works in (votes, events and the policy's `now`).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn load(&self, request_id: &str) -> Result<Option<PendingApproval>, ApprovalError> {
        self.pending
            .get(request_id)
            .await
            .map_err(ApprovalError::PendingStore)
    }

    /// Counts a Slack or Teams call that failed after its retries, and hands the error back.
    fn chat_failed(&self, platform: Platform, error: ChatError) -> ChatError {
        self.metrics
            .record(Measurement::chat_error(platform, &error));
        error
    }

    /// Records a measurement of something a handler saw (a refused click, a checkpoint's age).
    pub fn record(&self, measurement: Measurement) {
        self.metrics.record(measurement);
    }

    /// Appends `draft` to the request's chain; false when its idempotency key already has its
    /// event (nothing was appended).
    async fn append(&self, request_id: &str, draft: EventDraft) -> Result<bool, ApprovalError> {
        self.log
            .append(request_id, draft, self.clock.now())
            .await
            .map(|appended| appended.is_some())
            .map_err(ApprovalError::DecisionLog)
    }
}

/// A tag no other attempt shares, even one by the same voter in the same millisecond on another
/// instance: a per-process counter hashed with process-random keys.
fn attempt_tag() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    let keys = std::collections::hash_map::RandomState::new();
    format!("{:016x}", keys.hash_one(next))
}
