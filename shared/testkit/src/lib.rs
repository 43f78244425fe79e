//! Test support, written once: in-memory fakes of the `regate-core` ports (with the same
//! contracts as the real adapters: conditional writes, one vote per person, append-only chains,
//! and faults on demand), a fixed clock, request and ballot builders, an in-memory `Approvals`,
//! the default policy, and Slack requests signed as Slack signs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use regate_core::approvals::Approvals;
use regate_core::chain::next_event;
use regate_core::checkpoint::{Checkpoint, Statement};
use regate_core::decision::NotifyTarget;
use regate_core::event::{Event, EventDraft};
use regate_core::pending::{
    ApprovalState, ApprovalView, Closing, Conditional, Identified, MessageRef, PendingApproval,
    Platform, Reminder, TaskToken, Voter,
};
use regate_core::ports::{
    ChatError, ChatPlatform, CheckpointPorts, Clock, DecisionLog, ExecutionStatus, PendingStore,
    StoreError, TaskTokenError, TaskTokens,
};
use regate_core::rules::normalize;
use regate_core::{Ballot, Choice, Evaluation, PolicyEngine, PreparedRequest, Request, Vote};
use serde_json::{json, Value};

mod slack;
pub use slack::{
    signed_slack_click, signed_slack_reason, SignedRequest, SLACK_APP_ID, SLACK_SIGNING_SECRET,
    SLACK_TEAM_ID,
};

/// A fault to inject: the next calls fail with this error until it is cleared.
#[derive(Clone)]
pub struct Fault<E>(Arc<Mutex<Option<E>>>);

impl<E> Default for Fault<E> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<E: Clone> Fault<E> {
    pub fn set(&self, error: E) {
        *self.0.lock().unwrap() = Some(error);
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }

    fn check(&self) -> Result<(), E> {
        match self.0.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The decision log in memory.
#[derive(Clone, Default)]
pub struct MemoryLog {
    events: Arc<Mutex<BTreeMap<String, Vec<Event>>>>,
    /// `(request id, idempotency key)` to the seq of the event appended under it.
    keys: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    pub fault: Fault<StoreError>,
    /// When set, `fault` applies to appends of this kind only.
    fault_kind: Arc<Mutex<Option<regate_core::EventKind>>>,
}

impl MemoryLog {
    /// Appends of `kind` fail with `error` until `fault` is cleared.
    pub fn fail_kind(&self, kind: regate_core::EventKind, error: StoreError) {
        *self.fault_kind.lock().unwrap() = Some(kind);
        self.fault.set(error);
    }

    pub fn of(&self, request_id: &str) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .get(request_id)
            .cloned()
            .unwrap_or_default()
    }
}

impl DecisionLog for MemoryLog {
    async fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        let only = *self.fault_kind.lock().unwrap();
        if only.is_none() || only == draft.kind {
            self.fault.check()?;
        }
        let mut all = self.events.lock().unwrap();
        let chain = all.entry(request_id.to_string()).or_default();
        let mut keys = self.keys.lock().unwrap();
        let key = draft.once.clone().map(|k| (request_id.to_string(), k));
        if key.as_ref().is_some_and(|k| keys.contains_key(k)) {
            return Ok(None);
        }
        let event = next_event(request_id, chain.last(), draft, at).unwrap();
        if let Some(key) = key {
            keys.insert(key, event.seq);
        }
        chain.push(event.clone());
        Ok(Some(event))
    }

    async fn events(&self, request_id: &str) -> Result<Vec<Event>, StoreError> {
        if self.fault_kind.lock().unwrap().is_none() {
            self.fault.check()?;
        }
        Ok(self.of(request_id))
    }
}

/// The pending store in memory, with the same conditions as DynamoDB's.
#[derive(Clone, Default)]
pub struct MemoryPending {
    items: Arc<Mutex<BTreeMap<String, PendingApproval>>>,
    pub fault: Fault<StoreError>,
    /// Updates to let through before one whose answer is lost (see `lose_next_answer_after`).
    lose_answer: Arc<Mutex<Option<usize>>>,
    /// Votes stored just before the next vote's write (see `vote_first`).
    racing_votes: Arc<Mutex<Vec<Vote>>>,
}

impl MemoryPending {
    fn update(
        &self,
        request_id: &str,
        allowed: impl FnOnce(&PendingApproval) -> bool,
        change: impl FnOnce(&mut PendingApproval),
    ) -> Result<Conditional, StoreError> {
        self.fault.check()?;
        let lost = {
            let mut countdown = self.lose_answer.lock().unwrap();
            match *countdown {
                Some(0) => {
                    *countdown = None;
                    true
                }
                Some(n) => {
                    *countdown = Some(n - 1);
                    false
                }
                None => false,
            }
        };
        let mut items = self.items.lock().unwrap();
        Ok(match items.get_mut(request_id) {
            Some(item) if allowed(item) => {
                change(item);
                item.version += 1;
                let now = Box::new(item.clone());
                // A lost answer: the write commits, the SDK's retry then fails its condition
                // and reads the item as it is now.
                if lost {
                    Conditional::Lost(Some(now))
                } else {
                    Conditional::Done(now)
                }
            }
            Some(item) => Conditional::Lost(Some(Box::new(item.clone()))),
            None => Conditional::Lost(None),
        })
    }

    /// After `updates` more conditional updates, the next one commits but answers as if it
    /// lost (a committed write whose response was lost, retried by the SDK).
    pub fn lose_next_answer_after(&self, updates: usize) {
        *self.lose_answer.lock().unwrap() = Some(updates);
    }

    /// Stores `vote` just before the next vote's write, as another click's write that got
    /// there first (between that click's read and its write).
    pub fn vote_first(&self, vote: Vote) {
        self.racing_votes.lock().unwrap().push(vote);
    }

    /// Changes the stored item behind the workflow's back (a crash's leftovers, say).
    pub fn edit(&self, request_id: &str, change: impl FnOnce(&mut PendingApproval)) {
        change(self.items.lock().unwrap().get_mut(request_id).unwrap());
    }

    /// The stored item, as a test sees it.
    pub fn item(&self, request_id: &str) -> Option<PendingApproval> {
        self.items.lock().unwrap().get(request_id).cloned()
    }
}

impl PendingStore for MemoryPending {
    async fn create(&self, approval: &PendingApproval) -> Result<Conditional, StoreError> {
        self.fault.check()?;
        let mut items = self.items.lock().unwrap();
        if let Some(existing) = items.get(&approval.request_id) {
            return Ok(Conditional::Lost(Some(Box::new(existing.clone()))));
        }
        items.insert(approval.request_id.clone(), approval.clone());
        Ok(Conditional::Done(Box::new(approval.clone())))
    }

    async fn get(&self, request_id: &str) -> Result<Option<PendingApproval>, StoreError> {
        self.fault.check()?;
        Ok(self.item(request_id))
    }

    async fn add_messages(
        &self,
        request_id: &str,
        messages: &[MessageRef],
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.messages.extend_from_slice(messages),
        )
    }

    async fn mark_posting(
        &self,
        request_id: &str,
        target_key: &str,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.posting.push(target_key.to_string()),
        )
    }

    async fn record_vote(
        &self,
        request_id: &str,
        vote: &Vote,
        version: u64,
    ) -> Result<Conditional, StoreError> {
        let racing: Vec<Vote> = self.racing_votes.lock().unwrap().drain(..).collect();
        for first in racing {
            self.edit(request_id, |item| {
                item.votes.push(first);
                item.version += 1;
            });
        }
        let voter = normalize(&vote.voter);
        self.update(
            request_id,
            |i| {
                i.state == ApprovalState::Pending
                    && i.version == version
                    && !i.votes.iter().any(|v| normalize(&v.voter) == voter)
            },
            |i| i.votes.push(vote.clone()),
        )
    }

    async fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> Result<Conditional, StoreError> {
        self.update(request_id, |i| !i.resumed, |i| i.task_token = token.clone())
    }

    async fn unresumed(&self, limit: usize) -> Result<Vec<PendingApproval>, StoreError> {
        self.fault.check()?;
        let items = self.items.lock().unwrap();
        Ok(items
            .values()
            .filter(|i| !i.resumed)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn advance_reminders(
        &self,
        request_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.reminded_through == from,
            |i| i.reminded_through = to,
        )
    }

    async fn reevaluate(
        &self,
        request_id: &str,
        expected_version: u64,
        evaluation: &Evaluation,
        through: u64,
        at: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.evaluation = evaluation.clone();
                i.reevaluated_through = through;
                i.evaluated_at = Some(at);
            },
        )
    }

    async fn claim_resume(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| {
                i.owes_resume()
                    && i.resume_claims == claims_seen
                    && i.resume_until.is_none_or(|held| held <= now)
            },
            |i| {
                i.resume_claims = claims_seen + 1;
                i.resume_until = Some(until);
            },
        )
    }

    async fn release_resume(
        &self,
        request_id: &str,
        claim: u64,
        now: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| !i.resumed && i.resume_claims == claim,
            |i| i.resume_until = Some(now),
        )
    }

    async fn settle(
        &self,
        request_id: &str,
        token: &TaskToken,
        state: ApprovalState,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| !i.resumed && i.task_token == *token,
            |i| {
                i.resumed = true;
                i.state = state;
            },
        )
    }

    async fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.state = closing.state;
                i.evaluation = closing.evaluation.clone();
                i.decided_by = closing.decided_by.clone();
                i.decided_at = Some(closing.decided_at);
                i.closed_by = Some(closing.closed_by.clone());
                i.resumed = closing.resumed;
                i.resume_claims += 1;
                i.resume_until = Some(closing.resume_until);
            },
        )
    }
}

/// What a workflow was told through its task token.
#[derive(Debug, Clone, PartialEq)]
pub enum Resumed {
    Success {
        token: String,
        output: serde_json::Value,
    },
    Failure {
        token: String,
        error: String,
        cause: String,
    },
}

/// Task tokens that record every call; tokens listed in `closed` answer "already closed", and
/// `executions` says how each execution stands (running when not listed).
#[derive(Clone, Default)]
pub struct RecordingTokens {
    pub calls: Arc<Mutex<Vec<Resumed>>>,
    pub closed: Arc<Mutex<Vec<String>>>,
    pub executions: Arc<Mutex<BTreeMap<String, ExecutionStatus>>>,
    pub fault: Fault<TaskTokenError>,
}

impl RecordingTokens {
    pub fn calls(&self) -> Vec<Resumed> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, token: &TaskToken) -> Result<(), TaskTokenError> {
        self.fault.check()?;
        if self
            .closed
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == token.expose())
        {
            return Err(TaskTokenError::AlreadyClosed("TaskTimedOut".into()));
        }
        Ok(())
    }
}

impl TaskTokens for RecordingTokens {
    async fn execution_status(
        &self,
        execution_id: &str,
    ) -> Result<ExecutionStatus, TaskTokenError> {
        Ok(self
            .executions
            .lock()
            .unwrap()
            .get(execution_id)
            .cloned()
            .unwrap_or(ExecutionStatus::Running))
    }

    async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), TaskTokenError> {
        self.check(token)?;
        self.calls.lock().unwrap().push(Resumed::Success {
            token: token.expose().into(),
            output: output.clone(),
        });
        self.closed.lock().unwrap().push(token.expose().into());
        Ok(())
    }

    async fn fail(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), TaskTokenError> {
        self.check(token)?;
        self.calls.lock().unwrap().push(Resumed::Failure {
            token: token.expose().into(),
            error: error.into(),
            cause: cause.into(),
        });
        self.closed.lock().unwrap().push(token.expose().into());
        Ok(())
    }
}

/// A reminder as [`RecordingChat`] records it: the message it was posted under, and who it
/// named.
pub type Reminded = (MessageRef, Vec<String>);

/// A chat platform that records every call. It serves Slack targets; `people` maps platform
/// user ids to identities; `fault` makes posts and updates fail.
#[derive(Clone, Default)]
pub struct RecordingChat {
    pub posts: Arc<Mutex<Vec<(NotifyTarget, ApprovalState)>>>,
    /// Every message posted, by target key and request id, as `find_posted` finds them.
    pub posted: Arc<Mutex<BTreeMap<(String, String), MessageRef>>>,
    pub updates: Arc<Mutex<Vec<(MessageRef, ApprovalState)>>>,
    pub told: Arc<Mutex<Vec<(String, String)>>>,
    pub reminders: Arc<Mutex<Vec<Reminded>>>,
    /// E-mail addresses no account has: a direct message to one is refused.
    pub strangers: Arc<Mutex<Vec<String>>>,
    pub asked_reason: Arc<Mutex<Vec<(String, String)>>>,
    pub people: Arc<Mutex<BTreeMap<String, Identified>>>,
    pub fault: Fault<ChatError>,
}

impl RecordingChat {
    /// Knows `user_id` as `identity`.
    pub fn knows(&self, user_id: &str, identity: &str) {
        let person = Identified::Person(vec![identity.into()]);
        self.people.lock().unwrap().insert(user_id.into(), person);
    }

    /// Knows `user_id` as an account that may not vote, for `reason`.
    pub fn refuses(&self, user_id: &str, identity: &str, reason: &str) {
        let account = Identified::Ineligible {
            identity: Some(identity.into()),
            reason: reason.into(),
        };
        self.people.lock().unwrap().insert(user_id.into(), account);
    }

    /// What each voter was told privately: `(user id, text)`.
    pub fn told(&self) -> Vec<(String, String)> {
        self.told.lock().unwrap().clone()
    }
}

impl ChatPlatform for RecordingChat {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        self.fault.check()?;
        let (channel, user) = match target {
            NotifyTarget::Slack { channel } => (channel.clone(), None),
            NotifyTarget::SlackUser { user } if self.strangers.lock().unwrap().contains(user) => {
                return Err(ChatError::Refused(format!(
                    "no Slack user has the address {user}"
                )))
            }
            NotifyTarget::SlackUser { user } => (format!("D-{user}"), Some(user.clone())),
            NotifyTarget::Teams { .. } | NotifyTarget::TeamsUser { .. } => return Ok(None),
        };
        let mut posts = self.posts.lock().unwrap();
        posts.push((target.clone(), view.approval.state));
        let message = MessageRef::Slack {
            channel,
            ts: format!("1700000000.{:06}", posts.len()),
            user,
        };
        let key = (target.key(), view.approval.request_id.clone());
        self.posted.lock().unwrap().insert(key, message.clone());
        Ok(Some(message))
    }

    async fn find_posted(
        &self,
        target: &NotifyTarget,
        request_id: &str,
    ) -> Result<Option<MessageRef>, ChatError> {
        self.fault.check()?;
        let key = (target.key(), request_id.to_string());
        Ok(self.posted.lock().unwrap().get(&key).cloned())
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        self.fault.check()?;
        self.updates
            .lock()
            .unwrap()
            .push((message.clone(), view.approval.state));
        Ok(())
    }

    async fn remind(&self, message: &MessageRef, reminder: &Reminder<'_>) -> Result<(), ChatError> {
        self.fault.check()?;
        self.reminders
            .lock()
            .unwrap()
            .push((message.clone(), reminder.waiting_on.clone()));
        Ok(())
    }

    async fn identify(&self, voter: &Voter) -> Result<Identified, ChatError> {
        let people = self.people.lock().unwrap();
        Ok(people
            .get(&voter.user_id)
            .cloned()
            .unwrap_or(Identified::Unknown))
    }

    async fn tell(&self, voter: &Voter, text: &str) -> Result<(), ChatError> {
        self.told
            .lock()
            .unwrap()
            .push((voter.user_id.clone(), text.into()));
        Ok(())
    }

    async fn ask_reason(&self, voter: &Voter, approval: &PendingApproval) -> Result<(), ChatError> {
        self.asked_reason
            .lock()
            .unwrap()
            .push((voter.user_id.clone(), approval.request_id.clone()));
        Ok(())
    }
}

/// A clock that says what it is told.
#[derive(Clone)]
pub struct FixedClock(pub Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    pub fn at(rfc3339: &str) -> Self {
        Self(Arc::new(Mutex::new(
            regate_core::time::parse_rfc3339(rfc3339).unwrap(),
        )))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Default for FixedClock {
    /// A day no freeze window of the default policy covers.
    fn default() -> Self {
        Self::at(CALM_DAY)
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A time outside every freeze window of the default policy.
pub const CALM_DAY: &str = "2026-06-01T12:00:00Z";
/// A time inside the default policy's year-end freeze window.
pub const FROZEN_DAY: &str = "2026-12-24T12:00:00Z";

/// The repository's default policy bundle (the one the functions embed).
pub fn default_policy() -> PolicyEngine {
    PolicyEngine::compile(&regate_policies::bundle().unwrap()).unwrap()
}

/// A request as a workflow would send it, built from the default: a production deploy of
/// `payments` requested by `dev@example.com` through `ci-bot`, with a pipeline link.
#[derive(Debug, Clone)]
pub struct RequestBuilder(Value);

/// Starts a request with `id`.
pub fn request(id: &str) -> RequestBuilder {
    RequestBuilder(
        json!({"id": id, "action": "deploy", "environment": "production",
        "resource": {"type": "service", "name": "payments"},
        "requester": {"id": "dev@example.com", "kind": "human"},
        "initiator": {"id": "ci-bot", "kind": "service"},
        "summary": "Deploy payments v1.4.2", "details": {},
        "links": [{"title": "Pipeline", "url": format!("https://ci.example.com/{id}")}]}),
    )
}

impl RequestBuilder {
    /// What changes: `action` on the `kind` named `name` in `environment`.
    pub fn change(mut self, action: &str, environment: &str, kind: &str, name: &str) -> Self {
        self.0["action"] = json!(action);
        self.0["environment"] = json!(environment);
        self.0["resource"] = json!({"type": kind, "name": name});
        self.0["summary"] = json!(format!("{action} {name} in {environment}"));
        self
    }

    pub fn requester(mut self, id: &str) -> Self {
        self.0["requester"]["id"] = json!(id);
        self
    }

    /// Sets any top-level field (`summary`, `details`, `links`, ...).
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.0[field] = value;
        self
    }

    /// Removes a top-level field (`id`, `initiator`, ...).
    pub fn without(mut self, field: &str) -> Self {
        if let Some(fields) = self.0.as_object_mut() {
            fields.remove(field);
        }
        self
    }

    pub fn json(&self) -> Value {
        self.0.clone()
    }

    pub fn build(&self) -> Request {
        Request::from_value(&self.0, None).unwrap()
    }
}

/// A pending approval of `request` (its first evaluation, no votes, no messages) waiting on
/// `token`, as a store holds it.
pub fn pending_approval(request: &Request, token: &str) -> PendingApproval {
    let now = FixedClock::default().now();
    PendingApproval {
        request_id: request.id.clone(),
        execution_id: execution_of(&request.id),
        task_token: TaskToken::new(token),
        request: request.clone(),
        evaluation: first_evaluation(request, now),
        messages: vec![],
        posting: vec![],
        votes: vec![],
        state: ApprovalState::Pending,
        version: 1,
        created_at: now,
        expires_at: now + chrono::Duration::hours(2),
        decided_by: None,
        decided_at: None,
        closed_by: None,
        resumed: false,
        resume_claims: 0,
        resume_until: None,
        reminded_through: 0,
        reevaluated_through: 0,
        evaluated_at: None,
    }
}

/// The execution tests open request `request_id` from.
pub fn execution_of(request_id: &str) -> String {
    format!("arn:aws:states:us-east-1:123456789012:execution:regate-approval:{request_id}")
}

/// An approve ballot by `voter` on `request_id`, on Slack, now.
pub fn ballot(request_id: &str, voter: &str) -> Ballot {
    Ballot {
        request_id: request_id.into(),
        voter: voter.into(),
        choice: Choice::Approve,
        reason: None,
        platform: Platform::Slack,
        place: None,
        at: FixedClock::default().now(),
    }
}

/// Turns a ballot into a rejection with `reason`.
pub fn rejecting(mut ballot: Ballot, reason: Option<&str>) -> Ballot {
    ballot.choice = Choice::Reject;
    ballot.reason = reason.map(str::to_string);
    ballot
}

/// A Slack voter who clicked in `channel`.
pub fn slack_voter(user_id: &str) -> Voter {
    Voter {
        platform: Platform::Slack,
        user_id: user_id.into(),
        conversation: Some("C0PAYMENTS".into()),
        trigger: Some("trigger-1".into()),
        tenant: Some(SLACK_TEAM_ID.into()),
        endpoint: None,
    }
}

/// The approval workflow in memory, with a handle on each fake to look at or break.
pub type MemoryApprovals =
    Approvals<MemoryLog, MemoryPending, RecordingTokens, RecordingChat, FixedClock>;

#[derive(Clone, Default)]
pub struct Fakes {
    pub log: MemoryLog,
    pub pending: MemoryPending,
    pub tokens: RecordingTokens,
    pub chat: RecordingChat,
    pub clock: FixedClock,
}

impl Fakes {
    /// An `Approvals` over these fakes (they share state with it) and the default policy.
    pub fn approvals(&self) -> MemoryApprovals {
        self.approvals_with(default_policy())
    }

    /// The same with another policy.
    pub fn approvals_with(&self, policy: PolicyEngine) -> MemoryApprovals {
        Approvals::new(
            self.log.clone(),
            self.pending.clone(),
            self.tokens.clone(),
            self.chat.clone(),
            self.clock.clone(),
            Arc::new(policy),
        )
    }

    /// The kinds of a request's events, in order.
    pub fn kinds(&self, request_id: &str) -> Vec<regate_core::EventKind> {
        self.log.of(request_id).iter().map(|e| e.kind).collect()
    }
}

/// The default policy's first evaluation of `request` at `now`.
pub fn first_evaluation(request: &Request, now: DateTime<Utc>) -> Evaluation {
    default_policy()
        .evaluate(
            &PreparedRequest::new(request.clone()).unwrap(),
            &[],
            regate_core::EvaluationTime::opening(now),
        )
        .unwrap()
}

/// Opens `request` on `approvals` (as the notifier does) with task token `token`, for the
/// execution named after it ([`execution_of`]).
pub async fn open(approvals: &MemoryApprovals, request: &Request, token: &str) {
    let evaluation = first_evaluation(request, approvals.now());
    let execution = execution_of(&request.id);
    approvals
        .notify(request, &evaluation, &TaskToken::new(token), &execution)
        .await
        .unwrap();
}

/// A Bot Framework signing key a test generates: it signs inbound Teams tokens, and its public
/// half (a JWKS entry with `endorsements`) is served by the local stand-in.
pub struct TeamsKey {
    pub kid: String,
    encoding: jsonwebtoken::EncodingKey,
    /// The JWKS entry: kid, kty, n, e and the channels it is endorsed for.
    pub jwk: serde_json::Value,
}

impl TeamsKey {
    /// A fresh 2048-bit RSA key endorsed for `endorsements` (`["msteams"]` for a Teams key).
    pub fn generate(kid: &str, endorsements: &[&str]) -> Self {
        use aws_lc_rs::encoding::AsDer;
        use base64::Engine;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let public =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        let mut jwk = serde_json::to_value(public).unwrap();
        jwk["kid"] = kid.into();
        jwk["endorsements"] = serde_json::json!(endorsements);
        Self {
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    /// A token with these claims, signed RS256 under this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The claims the Bot Framework puts in a token for bot `app_id`, valid from a minute ago for
/// an hour, for activities from `service_url`.
pub fn bot_claims(app_id: &str, service_url: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({"iss": "https://api.botframework.com", "aud": app_id,
        "serviceurl": service_url, "nbf": now - 60, "exp": now + 3600})
}

/// Checkpoints over a [`MemoryLog`], signed with a P-256 key generated for the test (as KMS
/// signs with `ECC_NIST_P256`), kept in memory.
pub struct MemoryCheckpoints {
    log: MemoryLog,
    key: aws_lc_rs::signature::EcdsaKeyPair,
    pub kept: Mutex<Vec<Checkpoint>>,
    last: Mutex<Option<Statement>>,
    claims: Mutex<BTreeMap<u64, DateTime<Utc>>>,
}

impl MemoryCheckpoints {
    pub fn new(log: MemoryLog) -> Self {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        Self {
            log,
            key,
            kept: Mutex::default(),
            last: Mutex::default(),
            claims: Mutex::default(),
        }
    }

    /// The signing key's public half, as KMS `GetPublicKey` gives it (SubjectPublicKeyInfo DER).
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        self.key.public_key().as_der().unwrap().as_ref().to_vec()
    }
}

impl CheckpointPorts for MemoryCheckpoints {
    async fn last(&self) -> Result<Option<Statement>, StoreError> {
        Ok(self.last.lock().unwrap().clone())
    }

    async fn claim(
        &self,
        number: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(&number).is_some_and(|held| *held >= now) {
            return Ok(false);
        }
        claims.insert(number, until);
        Ok(true)
    }

    async fn events_between(
        &self,
        since: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let all = self.log.events.lock().unwrap();
        Ok(all
            .values()
            .flatten()
            .filter(|e| {
                let at = e.at_time().unwrap();
                since.is_none_or(|since| at > since) && at <= until
            })
            .cloned()
            .collect())
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ok(self.key.sign(&rng, message).unwrap().as_ref().to_vec())
    }

    fn key_id(&self) -> &str {
        "test-key"
    }

    async fn keep(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.kept.lock().unwrap().push(checkpoint.clone());
        Ok(())
    }

    async fn advance(
        &self,
        previous: Option<u64>,
        statement: &Statement,
    ) -> Result<(), StoreError> {
        let mut last = self.last.lock().unwrap();
        if last.as_ref().map(|l| l.number) == previous {
            *last = Some(statement.clone());
        }
        Ok(())
    }
}
