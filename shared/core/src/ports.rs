//! Ports: the narrow traits through which the domain reaches the outside world. Adapters live
//! in `regate-aws` and `regate-chat`; in-memory fakes live in `regate-testkit`.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::checkpoint::{Checkpoint, Statement};
use crate::decision::Evaluation;
use crate::decision::NotifyTarget;
use crate::event::{Event, EventDraft};
use crate::metrics::Metrics;
use crate::pending::{
    ApprovalState, ApprovalView, Closing, Conditional, DueApproval, Identified, MessageRef,
    OutcomeNotice, PendingApproval, Reminder, TaskToken, Voter,
};
use crate::vote::Vote;

/// The ports of the approval workflow, named once: generic code takes one `P: Ports`, as axum
/// takes one state type, so adding a port changes this trait and its two wirings (AWS in
/// `regate-aws`, in-memory in `regate-testkit`), not every signature.
pub trait Ports: 'static {
    type Log: DecisionLog + 'static;
    type Pending: PendingStore + 'static;
    type Tokens: TaskTokens + 'static;
    type Chat: ChatPlatform + 'static;
    type Clock: Clock + 'static;
    type Metrics: Metrics + 'static;
}

/// The current time. Handlers take it as a port so tests can fix it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock, optionally shifted by a fixed offset. In AWS the offset is zero; the local
/// stack gives every function the same offset so that demos and tests see the same dates
/// whatever day they run on (see `REGATE_CLOCK_OFFSET_SECONDS` in docs/guide.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    pub offset: chrono::Duration,
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// Why a store call failed. [`crate::error::ErrorName`] names each for Step Functions
/// (`DecisionLog.Throttled`, `PendingStore.Unavailable`, ...) and says which are retryable.
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

/// The append-only, hash-chained decision log.
pub trait DecisionLog: Send + Sync {
    /// Appends `draft` as the next event of the request's chain and returns it. Concurrent
    /// appends to one request all succeed with contiguous sequence numbers (a lost race is
    /// retried, within a bound). A draft whose idempotency key (`once`) already has its event
    /// appends nothing and returns `None`.
    fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;

    /// Every event of one request, in sequence order.
    fn events(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
}

/// The open approvals, with conditional writes so that concurrent clicks resolve cleanly.
///
/// Each unresumed approval carries when the sweeper next needs it
/// ([`PendingApproval::due_at`]). A write that changes what is due stores the new time in the
/// same conditional write: the caller gives it (`due`, from [`PendingApproval::due_after`])
/// where it depends on the whole item, and the store derives it where the write alone says
/// (a closed approval is due when its resume claim lapses; a resumed one never).
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

    /// Records that a message is about to be posted to `target_key` (only while pending).
    fn mark_posting(
        &self,
        request_id: &str,
        target_key: &str,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Records a vote once per voter, only while the approval is pending and still at
    /// `version` (the one the vote was checked against), and that it is next `due`.
    fn record_vote(
        &self,
        request_id: &str,
        vote: &Vote,
        version: u64,
        due: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Replaces the task token of an approval whose workflow has not been resumed (a retried
    /// `.waitForTaskToken` step gets a new token; the old one is dead), even when a vote closed
    /// it in between: the new token is the one to resume.
    fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Moves a pending approval to a final state if it still has `expected_version`: of many
    /// concurrent callers exactly one gets `Done`. The closing evaluation, who decided and which
    /// attempt closed it are stored with it.
    fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Up to `limit` approvals due by `now`, oldest due first: the sweeper's work list, read
    /// from an index that holds nothing else (never a table scan), so what it reads grows with
    /// what is due, not with what is open. A sweep that stops early leaves the rest due, first
    /// in line for the next one.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueApproval>, StoreError>> + Send;

    /// Records that the reminders up to offset `through` are taken care of, and that it is next
    /// `due`, only while pending and still at `expected_version`: of many sweepers, one sends
    /// each reminder. Going back gives a reminder that could not be sent to the next sweep.
    fn advance_reminders(
        &self,
        request_id: &str,
        expected_version: u64,
        through: u64,
        due: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Stores a re-evaluation made at `at` of a pending approval that still has
    /// `expected_version`, that the re-evaluation offsets up to `through` are taken care of,
    /// and that it is next `due`.
    fn reevaluate(
        &self,
        request_id: &str,
        expected_version: u64,
        evaluation: &Evaluation,
        through: u64,
        at: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Moves when an unresumed approval that still has `expected_version` is next due: the
    /// sweeper's last word on one it looked at and left with nothing else to write, or backs
    /// off one whose sweep failed.
    fn reschedule(
        &self,
        request_id: &str,
        expected_version: u64,
        due: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Claims the duty to resume a closed, unresumed approval until `until`: only if it has had
    /// `claims_seen` claims and the latest one has lapsed (its end is not after `now`). Of many callers with the
    /// same view, exactly one gets `Done` (holding claim `claims_seen + 1`).
    fn claim_resume(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Gives up claim number `claim` at `now` (its resume did not settle), so the next path
    /// need not wait for it to lapse: the next sweep (a minute on) is the retry's back-off.
    fn release_resume(
        &self,
        request_id: &str,
        claim: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Records that the workflow waiting on `token` has taken the outcome (or no longer waits),
    /// ending in `state`, and that telling its requester is `due`: only while unresumed and
    /// still on that token.
    fn settle(
        &self,
        request_id: &str,
        token: &TaskToken,
        state: ApprovalState,
        due: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Claims the duty to tell the requester of a resumed approval how it ended, until `until`
    /// (when it is due again): only if it has had `claims_seen` claims, the latest has lapsed
    /// (its end is not after `now`), and the requester has not been told. Of many callers with
    /// the same view, exactly one gets `Done` (holding claim `claims_seen + 1`).
    fn claim_tell(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;

    /// Records that the requester was told (or will not be), as the holder of claim `claim`:
    /// the approval then owes nothing and is never due again.
    fn told(
        &self,
        request_id: &str,
        claim: u64,
    ) -> impl Future<Output = Result<Conditional, StoreError>> + Send;
}

/// Why a chat platform call failed (`Chat.RateLimited`, ... in Step Functions).
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

/// A chat platform that asks approvers: Slack, Teams. Inbound clicks are verified and parsed
/// by the platform's own code; everything after that goes through this port.
pub trait ChatPlatform: Send + Sync {
    /// Posts the approval message to `target`; `None` when this platform does not serve the
    /// target's platform (a Teams target on Slack).
    fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> impl Future<Output = Result<Option<MessageRef>, ChatError>> + Send;

    /// The message an earlier attempt posted to `target` for `request_id` but did not live to
    /// record, if there is one.
    fn find_posted(
        &self,
        target: &NotifyTarget,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<MessageRef>, ChatError>> + Send;

    /// Rewrites a posted message to show the approval as it is now. Messages of other
    /// platforms are left alone.
    fn update(
        &self,
        message: &MessageRef,
        view: ApprovalView<'_>,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;

    /// Posts `reminder` in the thread of `message` (Slack: a reply under its `ts`; Teams: a
    /// reply to its activity). Messages of other platforms are left alone.
    fn remind(
        &self,
        message: &MessageRef,
        reminder: &Reminder<'_>,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;

    /// Tells the requester how an approval ended, in a direct message to `to` (a person
    /// target); `None` when this platform does not serve the target's platform. A person the
    /// platform does not know is `Refused`.
    fn tell_outcome(
        &self,
        to: &NotifyTarget,
        notice: OutcomeNotice<'_>,
    ) -> impl Future<Output = Result<Option<MessageRef>, ChatError>> + Send;

    /// Who the voter is, and whether their account may vote at all.
    fn identify(&self, voter: &Voter)
        -> impl Future<Output = Result<Identified, ChatError>> + Send;

    /// Tells the voter something only they see.
    fn tell(&self, voter: &Voter, text: &str)
        -> impl Future<Output = Result<(), ChatError>> + Send;

    /// Asks the voter for the reason of their rejection of `approval`.
    fn ask_reason(
        &self,
        voter: &Voter,
        approval: &PendingApproval,
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

/// An execution as `DescribeExecution` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    /// Failed, timed out or aborted, with its error name when there is one.
    Failed(Option<String>),
    /// No such execution (or it is too old to describe).
    Gone,
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

    /// Where an execution is: it tells apart "already took our outcome" from "timed out" when a
    /// token answers that it is closed.
    fn execution_status(
        &self,
        execution_id: &str,
    ) -> impl Future<Output = Result<ExecutionStatus, TaskTokenError>> + Send;
}

/// What cutting a signed checkpoint of the decision log needs: the log's recent events, the
/// signing key, the bucket the checkpoints are kept in, and the record of the last one.
pub trait CheckpointPorts: Send + Sync {
    /// The last checkpoint's statement (`None` before the first).
    fn last(&self) -> impl Future<Output = Result<Option<Statement>, StoreError>> + Send;

    /// Claims the right to cut checkpoint `number` until `until` (a lease): false when another
    /// run holds a live claim on it, so that one checkpoint has one author.
    fn claim(
        &self,
        number: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every event stamped after `since` (exclusive; `None`: as far back as the log keeps) and
    /// up to `until` (inclusive).
    fn events_between(
        &self,
        since: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// Signs `message` (ECDSA P-256 with SHA-256): the signature in ASN.1 DER.
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Which key signs (its ARN), recorded in each checkpoint for people.
    fn key_id(&self) -> &str;

    /// Stores the checkpoint where auditors read it.
    fn keep(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records `statement` as the last checkpoint, if the last is still number `previous`.
    fn advance(
        &self,
        previous: Option<u64>,
        statement: &Statement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
