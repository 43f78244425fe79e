//! The approval workflow, generic over the ports: open an approval for a paused workflow and
//! post its messages, count a vote, close and resume the workflow exactly once, expire it, and
//! keep every message showing the approval as it is. Handlers call these and map the results;
//! they never touch the ports themselves.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::decision::{Evaluation, NotifyTarget, Outcome};
use crate::error::ErrorName;
use crate::event::{EventDraft, EventKind};
use crate::pending::{
    ApprovalState, ApprovalView, Closing, Conditional, Identified, MessageRef, PendingApproval,
    Reminder, TaskToken, Voter, KEEP_AFTER_TIMEOUT,
};
use crate::policy::{EvaluationTime, PolicyEngine, PolicyError, PreparedRequest};
use crate::ports::{
    ChatError, ChatPlatform, Clock, DecisionLog, ExecutionStatus, PendingStore, StoreError,
    TaskTokenError, TaskTokens,
};
use crate::request::{Request, RequestError};
use crate::rules::normalize;
use crate::vote::{Ballot, Choice, Vote};

/// The error Step Functions sees when approvers reject a change.
pub const REJECTED_ERROR: &str = "ApprovalRejected";
/// Rounds of "evaluate, try to close" when other votes keep arriving concurrently.
const CLOSE_ATTEMPTS: usize = 20;
/// How many times [`Approvals::refresh`] reads an approval back and shows a newer state: a
/// state changes at most three times after it is first shown (closed, resumed, expired).
const REFRESH_READBACKS: usize = 3;
/// How long a claim to resume a workflow holds: longer than any function runs (the notifier's
/// timeout is 60 s), so a claim lapses only when its holder is gone, and the sweeper (once a
/// minute) takes the duty over.
const RESUME_LEASE: Duration = Duration::seconds(90);
/// How many times a click tries to store its vote. Each lost try means another vote or a close
/// was stored first (someone made progress), so a click loses about as many times as other
/// votes arrive at once; the bound only keeps a broken store from looping.
const VOTE_ATTEMPTS: usize = 64;
/// Why a `vote` event was appended by the close rather than by the click that cast the vote.
const LOGGED_LATE: &str =
    "logged when the request was decided: the click that recorded this vote had not logged it yet";

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
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
            Self::Policy(_) => ErrorName::PolicyError,
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

/// What became of a vote.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteResult {
    /// The vote was recorded. `closed` is set when it decided the request.
    Counted {
        approval: PendingApproval,
        evaluation: Box<Evaluation>,
        closed: Option<Closed>,
    },
    /// An eligible voter's rejection needs a reason, and the ballot had none: ask for one.
    /// Nothing was recorded.
    ReasonRequired { approval: PendingApproval },
    /// The vote does not count; `reason` is for the voter.
    Refused {
        reason: String,
        approval: PendingApproval,
    },
    /// The request no longer takes votes.
    AlreadyDecided { approval: PendingApproval },
    /// No approval is open under that id.
    Unknown,
    /// The voter's platform account has no identity regate can see (an e-mail address), so the
    /// vote cannot be matched against the policy's approvers. Nothing was recorded.
    Unidentified,
}

impl VoteResult {
    /// What the voter is told privately when their vote does not count.
    pub fn explanation(&self) -> Option<String> {
        match self {
            Self::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            } => Some(
                "Your vote decided this request; regate is still handing the decision to its \
                 workflow (which may have timed out), and the message will show how it ends."
                    .into(),
            ),
            Self::Counted { .. } => None,
            Self::ReasonRequired { .. } => Some("Give a reason for the rejection.".into()),
            Self::Refused { reason, .. } => Some(format!("Your vote was not counted: {reason}.")),
            Self::AlreadyDecided { approval } => Some(match approval.state {
                ApprovalState::Expired => {
                    "This request has expired; votes no longer count.".to_string()
                }
                ApprovalState::Pending => "This request is already decided and regate is \
                     closing it; your vote was not counted."
                    .to_string(),
                state => format!(
                    "This request is already decided ({}); your vote was not counted.",
                    state.as_str()
                ),
            }),
            Self::Unknown => {
                Some("regate knows no open request with this id; it may have expired.".into())
            }
            Self::Unidentified => Some(
                "regate cannot see the e-mail address of your account, so it cannot count your vote."
                    .into(),
            ),
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

/// What `notify` did: the approval as stored, and the targets no configured platform serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Notified {
    pub approval: PendingApproval,
    pub skipped: Vec<NotifyTarget>,
}

/// What one sweep did, for its logs and its result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unresumed approvals looked at.
    pub checked: usize,
    /// Closed approvals whose workflow now has the outcome.
    pub resumed: usize,
    /// Approvals closed as expired: their workflow is gone, or timed out before taking a vote.
    pub expired: usize,
    /// Approvals whose workflow still waits.
    pub waiting: usize,
    /// Of those, how many were evaluated again because time passed, and how many reminded.
    pub reevaluated: usize,
    pub reminded: usize,
    /// Approvals that failed this time (retried on the next sweep), by request id.
    pub failed: Vec<String>,
}

/// The approval workflow over its ports: the decision log, the pending store, task tokens, the
/// chat platform(s) and a clock, with the compiled policy.
pub struct Approvals<L, P, T, C, K> {
    log: L,
    pending: P,
    tokens: T,
    chat: C,
    clock: K,
    policy: Arc<PolicyEngine>,
}

impl<L, P, T, C, K> Approvals<L, P, T, C, K>
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    C: ChatPlatform,
    K: Clock,
{
    pub fn new(
        log: L,
        pending: P,
        tokens: T,
        chat: C,
        clock: K,
        policy: Arc<PolicyEngine>,
    ) -> Self {
        Self {
            log,
            pending,
            tokens,
            chat,
            clock,
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

    async fn append(&self, request_id: &str, draft: EventDraft) -> Result<(), ApprovalError> {
        self.log
            .append(request_id, draft, self.clock.now())
            .await
            .map(|_| ())
            .map_err(ApprovalError::DecisionLog)
    }

    /// Logs each of `votes` that has no `vote` event yet, before an event that counts them: a
    /// click can store its vote and end (a crash, a throttled log) before logging it, and an
    /// auditor must find every counted vote in the chain. Such a vote often belongs to a click
    /// still on its way, which then finds its entry made (its idempotency key), so the entry
    /// says only that it was logged late, and when the vote was cast; it has no
    /// platform (the stored vote does not keep one).
    async fn log_unlogged_votes(
        &self,
        request_id: &str,
        votes: &[Vote],
    ) -> Result<(), ApprovalError> {
        if votes.is_empty() {
            return Ok(());
        }
        let events = self
            .log
            .events(request_id)
            .await
            .map_err(ApprovalError::DecisionLog)?;
        let logged = |vote: &Vote| {
            events.iter().any(|event| {
                event.kind == EventKind::Vote
                    && event.actor.as_deref() == Some(vote.voter.as_str())
                    && event.data.get("vote").and_then(Value::as_str) == Some(vote.vote.as_str())
            })
        };
        for vote in votes.iter().filter(|vote| !logged(vote)) {
            tracing::info!(request_id, voter = %vote.voter, "a counted vote has no log entry yet; logging it now");
            let draft = vote_event(vote)
                .data("voted_at", vote.at.as_str())
                .reasons(vec![LOGGED_LATE.into()]);
            self.append(request_id, draft).await?;
        }
        Ok(())
    }

    /// Opens the approval of workflow `execution_id`, which now waits on `token`, and posts its
    /// message to each notify target, once: a retried step finds the approval it opened, gives it
    /// the new token and posts only where it has not posted yet. When a vote closed it before the
    /// retry, the retry resumes the workflow with its new token instead. Each posted message is
    /// logged `notified`. Another execution reusing the request id fails with `RequestIdInUse`.
    pub async fn notify(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
        execution_id: &str,
    ) -> Result<Notified, ApprovalError> {
        let approval = self.open(request, evaluation, token, execution_id).await?;
        if approval.state != ApprovalState::Pending {
            let approval = self.finish(approval, None).await?.0;
            return Ok(Notified {
                approval,
                skipped: Vec::new(),
            });
        }
        let (approval, skipped) = self.post_missing(approval, evaluation).await?;
        if approval.messages.is_empty() {
            return Err(ApprovalError::NoTarget {
                request_id: request.id.clone(),
                targets: serde_json::to_string(&skipped).unwrap_or_default(),
            });
        }
        Ok(Notified { approval, skipped })
    }

    /// Posts the approval message to each of `evaluation`'s notify targets that has none yet,
    /// once: an attempt that posted but did not live to record it left its intent, and the
    /// message it posted is adopted. Returns the approval as stored and the targets no
    /// configured platform serves.
    async fn post_missing(
        &self,
        mut approval: PendingApproval,
        evaluation: &Evaluation,
    ) -> Result<(PendingApproval, Vec<NotifyTarget>), ApprovalError> {
        let mut skipped = Vec::new();
        let request_id = approval.request_id.clone();
        for target in &evaluation.decision.notify {
            if approval.messages.iter().any(|m| m.is_for(target)) {
                continue;
            }
            let key = target.key();
            if approval.posting.contains(&key) {
                let found = self.chat.find_posted(target, &request_id).await;
                if let Some(message) = found.map_err(ApprovalError::Chat)? {
                    approval = self.record_message(approval, message).await?;
                    continue;
                }
            } else if let Conditional::Done(marked) = self
                .pending
                .mark_posting(&request_id, &key)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                approval = *marked;
            }
            let view = ApprovalView {
                approval: &approval,
                evaluation,
            };
            match self.chat.post(target, view).await {
                Ok(Some(message)) => approval = self.record_message(approval, message).await?,
                Ok(None) => skipped.push(target.clone()),
                // A person the platform cannot find is an error on the request, logged for
                // everyone to see; the other targets are still asked.
                Err(ChatError::Refused(reason)) if target.person().is_some() => {
                    self.unreachable(&request_id, target, &reason).await?;
                }
                Err(error) => return Err(ApprovalError::Chat(error)),
            }
        }
        Ok((approval, skipped))
    }

    /// Logs (once per target) that the person a target names cannot be reached, and why.
    async fn unreachable(
        &self,
        request_id: &str,
        target: &NotifyTarget,
        reason: &str,
    ) -> Result<(), ApprovalError> {
        let person = target.person().unwrap_or_default();
        let platform = if target.is_slack() { "slack" } else { "teams" };
        tracing::error!(
            request_id,
            platform,
            person,
            reason,
            "a person to ask cannot be reached"
        );
        let draft = EventDraft::new(EventKind::Error)
            .platform(platform)
            .reasons(vec![format!(
                "{person} cannot be asked directly on {platform}: {reason}"
            )])
            .data("unreachable", person)
            .once(format!("error#unreachable#{}", target.key()));
        self.append(request_id, draft).await
    }

    async fn open(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
        execution_id: &str,
    ) -> Result<PendingApproval, ApprovalError> {
        let now = self.clock.now();
        let timeout = Duration::seconds(
            i64::try_from(evaluation.decision.timeout_seconds).unwrap_or(i64::MAX / 2_000_000),
        );
        let fresh = PendingApproval {
            request_id: request.id.clone(),
            execution_id: execution_id.to_string(),
            task_token: token.clone(),
            request: request.clone(),
            evaluation: evaluation.clone(),
            messages: Vec::new(),
            posting: Vec::new(),
            votes: Vec::new(),
            state: ApprovalState::Pending,
            version: 1,
            created_at: now,
            expires_at: now + timeout + KEEP_AFTER_TIMEOUT,
            decided_by: None,
            decided_at: None,
            closed_by: None,
            resumed: false,
            resume_claims: 0,
            resume_until: None,
            reminded_through: 0,
            reevaluated_through: 0,
            evaluated_at: None,
        };
        let pending_error = ApprovalError::PendingStore;
        let existing = match self.pending.create(&fresh).await.map_err(pending_error)? {
            Conditional::Done(created) => return Ok(*created),
            Conditional::Lost(Some(existing)) => *existing,
            Conditional::Lost(None) => {
                return Err(ApprovalError::PendingStore(StoreError::Conflict(format!(
                    "approval {} neither created nor found",
                    request.id
                ))))
            }
        };
        if existing.execution_id != execution_id {
            return Err(ApprovalError::RequestIdInUse {
                request_id: request.id.clone(),
                held_by: existing.execution_id,
            });
        }
        if existing.task_token == *token || existing.resumed {
            return Ok(existing);
        }
        match self
            .pending
            .replace_token(&request.id, token)
            .await
            .map_err(pending_error)?
        {
            Conditional::Done(updated) | Conditional::Lost(Some(updated)) => Ok(*updated),
            Conditional::Lost(None) => Ok(existing),
        }
    }

    /// Stores where a message was posted and logs `notified`.
    async fn record_message(
        &self,
        approval: PendingApproval,
        message: MessageRef,
    ) -> Result<PendingApproval, ApprovalError> {
        let request_id = approval.request_id.clone();
        let stored = match self
            .pending
            .add_messages(&request_id, std::slice::from_ref(&message))
            .await
            .map_err(ApprovalError::PendingStore)?
        {
            Conditional::Done(updated) => *updated,
            Conditional::Lost(_) => approval,
        };
        let platform = message.platform().as_str();
        let mut draft = EventDraft::new(EventKind::Notified)
            .platform(platform)
            .once(format!("notified#{}", message.target_key()));
        draft.data = message.log_fields();
        self.append(&request_id, draft).await?;
        tracing::info!(request_id, platform, "approval message posted");
        Ok(stored)
    }

    /// A button click: the vote of whoever clicked, answered privately when it does not count,
    /// or with a request for a reason when their rejection needs one.
    pub async fn click(
        &self,
        voter: &Voter,
        request_id: &str,
        choice: Choice,
    ) -> Result<VoteResult, ApprovalError> {
        let result = self.vote_as(voter, request_id, choice, None).await?;
        match &result {
            VoteResult::ReasonRequired { approval } => self
                .chat
                .ask_reason(voter, approval)
                .await
                .map_err(ApprovalError::Chat)?,
            other => {
                if let Some(text) = other.explanation() {
                    self.tell(voter, &text).await;
                }
            }
        }
        Ok(result)
    }

    /// The vote of whoever clicked, as their platform account identifies them, cast now.
    pub async fn vote_as(
        &self,
        voter: &Voter,
        request_id: &str,
        choice: Choice,
        reason: Option<String>,
    ) -> Result<VoteResult, ApprovalError> {
        let identity = match self
            .chat
            .identify(voter)
            .await
            .map_err(ApprovalError::Chat)?
        {
            Identified::Person(addresses) => {
                match self.address_to_count(request_id, addresses).await? {
                    Some(address) => address,
                    None => return Ok(VoteResult::Unidentified),
                }
            }
            Identified::Unknown => return Ok(VoteResult::Unidentified),
            Identified::Ineligible { identity, reason } => {
                let who = identity
                    .unwrap_or_else(|| format!("{}:{}", voter.platform.as_str(), voter.user_id));
                return self
                    .refuse_account(request_id, &who, voter, choice, reason)
                    .await;
            }
        };
        let ballot = Ballot {
            request_id: request_id.to_string(),
            voter: identity,
            choice,
            reason,
            platform: voter.platform,
            place: voter.conversation.clone(),
            at: self.clock.now(),
        };
        self.vote(&ballot).await
    }

    /// Which of a person's addresses votes: the one the request lists among its approvers,
    /// or else the first.
    async fn address_to_count(
        &self,
        request_id: &str,
        addresses: Vec<String>,
    ) -> Result<Option<String>, ApprovalError> {
        if addresses.len() > 1 {
            if let Some(approval) = self.load(request_id).await? {
                let approvers = &approval.evaluation.decision.approvers;
                let listed = addresses.iter().find(|address| {
                    approvers
                        .iter()
                        .any(|approver| normalize(approver) == normalize(address))
                });
                if let Some(address) = listed {
                    return Ok(Some(address.clone()));
                }
            }
        }
        Ok(addresses.into_iter().next())
    }

    /// A click from an account that may not vote: logged as refused, whoever it claims to be.
    async fn refuse_account(
        &self,
        request_id: &str,
        who: &str,
        voter: &Voter,
        choice: Choice,
        reason: String,
    ) -> Result<VoteResult, ApprovalError> {
        let Some(approval) = self.load(request_id).await? else {
            return Ok(VoteResult::Unknown);
        };
        let ballot = Ballot {
            request_id: request_id.to_string(),
            voter: who.to_string(),
            choice,
            reason: None,
            platform: voter.platform,
            place: voter.conversation.clone(),
            at: self.clock.now(),
        };
        self.refuse(&ballot, reason, approval).await
    }

    /// Tells a voter something privately; best effort (the answer to the click still goes out).
    async fn tell(&self, voter: &Voter, text: &str) {
        if let Err(error) = self.chat.tell(voter, text).await {
            tracing::warn!(error = %error, "could not tell the voter privately");
        }
    }

    /// Counts a ballot if the policy and the hard rules allow it, closes the request (resuming
    /// the workflow exactly once) when it decides it, and shows the result on every message.
    pub async fn vote(&self, ballot: &Ballot) -> Result<VoteResult, ApprovalError> {
        let result = self.count(ballot).await?;
        if let VoteResult::Counted {
            approval,
            evaluation,
            ..
        } = &result
        {
            self.refresh(approval, evaluation).await;
        }
        Ok(result)
    }

    async fn refuse(
        &self,
        ballot: &Ballot,
        reason: String,
        approval: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        let voter = normalize(&ballot.voter);
        let at = crate::time::format_rfc3339_ms(ballot.at);
        let draft = EventDraft::new(EventKind::VoteRefused)
            .actor(&voter)
            .platform(ballot.platform.as_str())
            .reasons(vec![reason.clone()])
            .data("vote", ballot.choice.as_str())
            .once(format!("refused#{voter}#{at}"));
        self.append(&ballot.request_id, draft).await?;
        Ok(VoteResult::Refused { reason, approval })
    }

    /// A ballot on a closed request, or on one the votes already counted decide: carries out a
    /// resume still owed, then refuses it. It changes nothing, so it is not a step of the
    /// decision: the voter is told privately and the click is traced in the function's log, not
    /// appended to the request's chain (a storm of late clicks would otherwise queue on that
    /// chain and answer after Slack's 3 s).
    async fn already_decided(
        &self,
        ballot: &Ballot,
        approval: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        let approval = self.finish(approval, None).await?.0;
        tracing::info!(
            request_id = %approval.request_id,
            voter = %normalize(&ballot.voter),
            vote = ballot.choice.as_str(),
            state = approval.state.as_str(),
            "late click refused: the request is already decided"
        );
        Ok(VoteResult::AlreadyDecided { approval })
    }

    async fn count(&self, ballot: &Ballot) -> Result<VoteResult, ApprovalError> {
        let request_id = ballot.request_id.as_str();
        let Some(mut approval) = self.load(request_id).await? else {
            return Ok(VoteResult::Unknown);
        };
        let voter = normalize(&ballot.voter);
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let reason = ballot
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        // A vote is stored only on the approval it was checked against (its version): one that
        // lost to another vote is checked again with that vote counted, so no vote is stored
        // once the votes before it decide the request.
        for _ in 0..VOTE_ATTEMPTS {
            // A repeated identical vote completes what its first click may have left undone
            // (the log entry, closing, resuming); the log's idempotency keys keep it from
            // counting twice. So does a vote whose write committed but whose answer was lost.
            let same_vote = approval
                .votes
                .iter()
                .find(|v| normalize(&v.voter) == voter && v.vote == ballot.choice)
                .cloned();
            if let Some(vote) = same_vote {
                return self.complete(ballot, &vote, approval).await;
            }
            if approval.state != ApprovalState::Pending {
                return self.already_decided(ballot, approval).await;
            }
            if let Some(refused) = elsewhere(ballot, &approval) {
                return self.refuse(ballot, refused, approval).await;
            }
            let time = approval.evaluation_time(ballot.at);
            let check = self
                .policy
                .check_vote(&prepared, &approval.votes, &ballot.voter, time)?;
            if !check.allowed {
                // The votes already counted decide the request and the vote that decided it is
                // closing it: like a click on a closed request, this one changes nothing and is
                // not appended to the chain (in a burst of clicks most arrive in this moment).
                let evaluation = self.policy.evaluate(&prepared, &approval.votes, time)?;
                if evaluation.decision.outcome.is_final() {
                    return self.already_decided(ballot, approval).await;
                }
                return self.refuse(ballot, check.reason, approval).await;
            }
            if ballot.choice == Choice::Reject
                && reason.is_none()
                && approval.evaluation.decision.reject_reason_required
            {
                return Ok(VoteResult::ReasonRequired { approval });
            }
            let vote = Vote {
                voter: voter.clone(),
                vote: ballot.choice,
                reason: reason.clone(),
                at: crate::time::format_rfc3339_ms(ballot.at),
            };
            match self
                .pending
                .record_vote(request_id, &vote, approval.version)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(item) => return self.complete(ballot, &vote, *item).await,
                // Another vote, a close or this voter's double click came first: check again.
                Conditional::Lost(Some(item)) => approval = *item,
                Conditional::Lost(None) => return Ok(VoteResult::Unknown),
            }
        }
        Err(ApprovalError::Contended(request_id.to_string()))
    }

    /// Logs a recorded vote (once) and closes the request if the vote decides it.
    async fn complete(
        &self,
        ballot: &Ballot,
        vote: &Vote,
        current: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        let draft = vote_event(vote).platform(ballot.platform.as_str());
        self.append(&current.request_id, draft).await?;
        if current.state != ApprovalState::Pending {
            let (approval, closed) = self.finish(current, None).await?;
            let evaluation = approval.evaluation.clone();
            // It closed earlier; it is this voter's close only if their vote decided it.
            let closed = closed.filter(|_| approval.decided_by.as_deref() == Some(&vote.voter));
            return Ok(VoteResult::Counted {
                approval,
                evaluation: Box::new(evaluation),
                closed,
            });
        }
        let prepared = PreparedRequest::new(current.request.clone())?;
        let attempt = format!(
            "vote:{}:{}:{}",
            vote.voter,
            crate::time::format_rfc3339_ms(ballot.at),
            attempt_tag()
        );
        let closer = Closer {
            decided_by: Some(&vote.voter),
            attempt,
            reevaluation: None,
        };
        self.close_if_decided(&prepared, current, closer, ballot.at)
            .await
    }

    /// Evaluates with every vote counted and, on allow or deny, closes the request once, as
    /// `closer` says.
    async fn close_if_decided(
        &self,
        prepared: &PreparedRequest,
        mut current: PendingApproval,
        closer: Closer<'_>,
        now: DateTime<Utc>,
    ) -> Result<VoteResult, ApprovalError> {
        let Closer {
            decided_by,
            attempt,
            reevaluation,
        } = closer;
        let request_id = current.request_id.clone();
        for _ in 0..CLOSE_ATTEMPTS {
            let time = current.evaluation_time(now);
            let evaluation = self.policy.evaluate(prepared, &current.votes, time)?;
            let state = match evaluation.decision.outcome {
                Outcome::ApprovalRequired => {
                    return Ok(VoteResult::Counted {
                        approval: current,
                        evaluation: Box::new(evaluation),
                        closed: None,
                    })
                }
                Outcome::Allow => ApprovalState::Approved,
                Outcome::Deny => ApprovalState::Rejected,
            };
            let closing = Closing {
                state,
                evaluation: evaluation.clone(),
                decided_by: decided_by.map(str::to_string),
                decided_at: time.now,
                closed_by: attempt.clone(),
                resumed: false,
                resume_until: self.clock.now() + RESUME_LEASE,
            };
            let closed = match self
                .pending
                .transition(&request_id, current.version, &closing)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(closed) => *closed,
                // Our own close whose answer was lost: the retry sees its own name on it.
                Conditional::Lost(Some(item)) if item.closed_by.as_deref() == Some(&attempt) => {
                    *item
                }
                // Someone else closed it: our vote counted, the decision was theirs; a resume
                // they still owe is ours to carry out too.
                Conditional::Lost(Some(other)) if other.state != ApprovalState::Pending => {
                    let approval = self.finish(*other, None).await?.0;
                    return Ok(VoteResult::Counted {
                        approval,
                        evaluation: Box::new(evaluation),
                        closed: None,
                    });
                }
                // Another vote arrived in between: decide again with it counted.
                Conditional::Lost(Some(newer)) => {
                    current = *newer;
                    continue;
                }
                Conditional::Lost(None) => return Ok(VoteResult::Unknown),
            };
            if let Some(offset) = reevaluation {
                self.log_unlogged_votes(&request_id, &closed.votes).await?;
                let draft = reevaluated(offset, &evaluation, time, &closed.votes);
                self.append(&request_id, draft).await?;
            }
            // The closing write is the first claim to resume: this attempt holds it.
            let claim = closed.resume_claims;
            let (approval, closed) = self.finish(closed, Some(claim)).await?;
            return Ok(VoteResult::Counted {
                approval,
                evaluation: Box::new(evaluation),
                closed,
            });
        }
        Err(ApprovalError::Contended(request_id))
    }

    /// Carries out the durable duty of a closed approval: tells its workflow the outcome with
    /// the current token, logs `decided` (once per request), and records that it was resumed.
    /// A token that answers "closed" is checked against the execution: if it took this outcome,
    /// it was resumed; if it ended otherwise, the approval ends `expired`; if it is still
    /// running (a retried step, or the timeout path on its way), the duty stays for the next
    /// path. Only the holder of a live claim does this: `held` is the caller's claim, if it
    /// has one (the closing attempt); otherwise it claims the duty first, and when another path
    /// holds it, leaves it to that path. Returns the approval as it is now, and how it closed.
    async fn finish(
        &self,
        approval: PendingApproval,
        held: Option<u64>,
    ) -> Result<(PendingApproval, Option<Closed>), ApprovalError> {
        let unresumed = |approval: PendingApproval| {
            let closed = (approval.state != ApprovalState::Pending).then_some(Closed {
                state: approval.state,
                resumed: approval.resumed,
            });
            (approval, closed)
        };
        if !approval.owes_resume() {
            return Ok(unresumed(approval));
        }
        let (approval, claim) = match held {
            Some(claim) => (approval, claim),
            None => match self.claim_resume(approval).await? {
                Ok(claimed) => claimed,
                Err(as_it_is) => return Ok(unresumed(as_it_is)),
            },
        };
        let settled = self.resume(approval, claim).await?;
        let (approval, _) = &settled;
        if approval.owes_resume() {
            // Not settled: give the claim up so the next path need not wait for it to lapse.
            let released = self
                .pending
                .release_resume(&approval.request_id, claim, self.clock.now())
                .await;
            if let Err(error) = released {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not release the claim to resume; it lapses");
            }
        }
        Ok(settled)
    }

    /// Claims the duty to resume `approval`: the claimed item and its claim number, or the item
    /// as it is now when another path holds a live claim (or it no longer owes a resume).
    async fn claim_resume(
        &self,
        approval: PendingApproval,
    ) -> Result<Result<(PendingApproval, u64), PendingApproval>, ApprovalError> {
        let now = self.clock.now();
        let claimed = self
            .pending
            .claim_resume(
                &approval.request_id,
                approval.resume_claims,
                now,
                now + RESUME_LEASE,
            )
            .await
            .map_err(ApprovalError::PendingStore)?;
        Ok(match claimed {
            Conditional::Done(item) => {
                let claim = item.resume_claims;
                Ok((*item, claim))
            }
            Conditional::Lost(Some(item)) => {
                if item.owes_resume() {
                    tracing::debug!(request_id = %item.request_id, "another path holds the claim to resume this workflow");
                }
                Err(*item)
            }
            Conditional::Lost(None) => Err(approval),
        })
    }

    /// Tells the workflow the outcome, as the holder of `claim` (see [`Self::finish`]).
    async fn resume(
        &self,
        approval: PendingApproval,
        claim: u64,
    ) -> Result<(PendingApproval, Option<Closed>), ApprovalError> {
        tracing::debug!(request_id = %approval.request_id, claim, "resuming the workflow");
        let evaluation = &approval.evaluation;
        let sent = match approval.state {
            ApprovalState::Approved => {
                let output = approved_output(&approval, evaluation);
                self.tokens.succeed(&approval.task_token, &output).await
            }
            ApprovalState::Rejected => {
                let cause = evaluation.decision.reasons.join("; ");
                let token = &approval.task_token;
                self.tokens.fail(token, REJECTED_ERROR, &cause).await
            }
            ApprovalState::Expired | ApprovalState::Pending => Ok(()),
        };
        let took_it = match sent {
            Ok(()) => true,
            Err(TaskTokenError::AlreadyClosed(code)) => {
                match self.execution_took(&approval).await? {
                    Some(took) => took,
                    None => {
                        tracing::warn!(request_id = %approval.request_id, code, "the workflow is not waiting on this token now; a later path resumes it");
                        let closed = Closed {
                            state: approval.state,
                            resumed: false,
                        };
                        return Ok((approval, Some(closed)));
                    }
                }
            }
            // Throttled or unreachable: the approval stays closed and owed, and the next path
            // that meets it (a click, a retried step, the sweeper) resumes it.
            Err(other) => {
                let name = ErrorName::task_tokens(&other).as_str();
                let at = crate::time::format_rfc3339_ms(self.clock.now());
                let draft = EventDraft::new(EventKind::Error)
                    .reasons(vec![format!(
                        "resuming the workflow failed ({name}); it will be retried"
                    )])
                    .once(format!("error#resume#{at}"));
                self.append(&approval.request_id, draft).await?;
                tracing::warn!(request_id = %approval.request_id, error = name, "resuming the workflow failed; it stays owed");
                let closed = Closed {
                    state: approval.state,
                    resumed: false,
                };
                return Ok((approval, Some(closed)));
            }
        };
        let state = if took_it {
            let mut draft = EventDraft::new(EventKind::Decided)
                .evaluation(evaluation)
                .data("state", approval.state.as_str())
                .once("decided");
            // What the closing evaluation saw, so an auditor can rebuild its input: votes are
            // recorded only while pending, so the closed item holds exactly those it counted.
            if let Some(decided_at) = approval.decided_at {
                self.log_unlogged_votes(&approval.request_id, &approval.votes)
                    .await?;
                draft = draft
                    .evaluated_at(EvaluationTime::since(approval.created_at, decided_at))
                    .votes(&approval.votes);
            }
            if let Some(by) = &approval.decided_by {
                draft = draft.actor(by);
            }
            self.append(&approval.request_id, draft).await?;
            approval.state
        } else {
            let draft = EventDraft::new(EventKind::Expired)
                .reasons(vec![format!(
                    "the approvers decided ({}), but the workflow had already timed out",
                    approval.state.as_str()
                )])
                .once("expired");
            self.append(&approval.request_id, draft).await?;
            ApprovalState::Expired
        };
        let settled = self
            .pending
            .settle(&approval.request_id, &approval.task_token, state)
            .await
            .map_err(ApprovalError::PendingStore)?;
        let approval = match settled {
            Conditional::Done(item) | Conditional::Lost(Some(item)) => *item,
            Conditional::Lost(None) => approval,
        };
        let closed = Closed {
            state: approval.state,
            resumed: took_it && approval.resumed,
        };
        Ok((approval, Some(closed)))
    }

    /// Whether the execution took this approval's outcome (`Some(true)`), ended otherwise
    /// (`Some(false)`), or still runs (`None`).
    async fn execution_took(
        &self,
        approval: &PendingApproval,
    ) -> Result<Option<bool>, ApprovalError> {
        let status = self
            .tokens
            .execution_status(&approval.execution_id)
            .await
            .map_err(ApprovalError::TaskToken)?;
        Ok(match status {
            ExecutionStatus::Running => None,
            ExecutionStatus::Succeeded => Some(approval.state == ApprovalState::Approved),
            ExecutionStatus::Failed(error) => Some(
                approval.state == ApprovalState::Rejected
                    && error.as_deref() == Some(REJECTED_ERROR),
            ),
            ExecutionStatus::Gone => Some(false),
        })
    }

    /// The durable backstop, run on a schedule: resumes every closed approval whose workflow has
    /// not taken its outcome, and expires open approvals whose workflow is gone (so no message
    /// keeps live buttons for a workflow that will never read them). Looks at `limit` at most.
    pub async fn sweep(&self, limit: usize) -> Result<SweepReport, ApprovalError> {
        self.sweep_at(limit, self.clock.now()).await
    }

    /// A sweep that also carries out what time asks of each open approval whose workflow still
    /// waits, as of `now`: a re-evaluation that is due (see [`Self::reevaluate_if_due`]), then a
    /// reminder that is due (see [`Self::remind_if_due`]).
    pub async fn sweep_at(
        &self,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, ApprovalError> {
        let due = self
            .pending
            .unresumed(limit)
            .await
            .map_err(ApprovalError::PendingStore)?;
        Ok(self.sweep_these(due, now).await)
    }

    /// The sweep of one request's approval alone, as of `now`: an operator's nudge to a request
    /// they are watching (nothing when it owes its workflow nothing).
    pub async fn sweep_request(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, ApprovalError> {
        let due = self.load(request_id).await?.filter(|a| !a.resumed);
        Ok(self.sweep_these(due.into_iter().collect(), now).await)
    }

    async fn sweep_these(&self, due: Vec<PendingApproval>, now: DateTime<Utc>) -> SweepReport {
        let mut report = SweepReport {
            checked: due.len(),
            ..SweepReport::default()
        };
        for approval in due {
            let request_id = approval.request_id.clone();
            match self.sweep_one(approval, now).await {
                Ok(Swept::Resumed) => report.resumed += 1,
                Ok(Swept::Expired) => report.expired += 1,
                Ok(Swept::Waiting {
                    reevaluated,
                    reminded,
                }) => {
                    report.waiting += 1;
                    report.reevaluated += usize::from(reevaluated);
                    report.reminded += usize::from(reminded);
                }
                Err(error) => {
                    tracing::warn!(request_id, error = %error, "sweeping an approval failed; the next sweep retries it");
                    report.failed.push(request_id);
                }
            }
        }
        report
    }

    async fn sweep_one(
        &self,
        approval: PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<Swept, ApprovalError> {
        if approval.state != ApprovalState::Pending {
            return self.sweep_closed(approval).await;
        }
        let status = self
            .tokens
            .execution_status(&approval.execution_id)
            .await
            .map_err(ApprovalError::TaskToken)?;
        if status == ExecutionStatus::Running {
            return self.on_time(approval, now).await;
        }
        let reason = format!("the workflow ended ({status:?}) while the approval was open");
        let closed = self
            .close_expired(&approval.request_id, &approval.execution_id, &reason)
            .await?;
        if let Some(closed) = &closed {
            self.refresh(closed, &closed.evaluation).await;
        }
        Ok(Swept::Expired)
    }

    async fn sweep_closed(&self, approval: PendingApproval) -> Result<Swept, ApprovalError> {
        let (now, closed) = self.finish(approval, None).await?;
        self.refresh(&now, &now.evaluation).await;
        Ok(match closed {
            Some(Closed {
                state: ApprovalState::Expired,
                ..
            }) => Swept::Expired,
            Some(Closed { resumed: true, .. }) => Swept::Resumed,
            _ => Swept::Waiting {
                reevaluated: false,
                reminded: false,
            },
        })
    }

    /// What time asks of an open approval whose workflow still waits, as of `now`.
    async fn on_time(
        &self,
        approval: PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<Swept, ApprovalError> {
        if let Some(closed) = self.close_on_stored_votes(&approval, now).await? {
            return self.sweep_closed(closed).await;
        }
        let (approval, reevaluated) = match self.reevaluate_if_due(approval, now).await? {
            Reevaluated::Closed(closed) => return self.sweep_closed(closed).await,
            Reevaluated::Open(approval, reevaluated) => (approval, reevaluated),
        };
        // Targets a re-evaluation added get the message: right away from the sweep that stored
        // it, or from a later one when that sweep is over (it crashed, or a target failed).
        let stale = approval
            .evaluated_at
            .is_some_and(|at| now - at > RESUME_LEASE);
        let approval = if reevaluated || stale {
            self.post_new_targets(approval).await?
        } else {
            approval
        };
        let reminded = self.remind_if_due(&approval, now).await?;
        Ok(Swept::Waiting {
            reevaluated,
            reminded,
        })
    }

    /// Closes an open approval that its stored votes already decide, once the last vote is older
    /// than [`RESUME_LEASE`]: the click that stored the deciding vote ended before closing (a
    /// crash, a throttled log, a timeout) and its voter may never click again. It decides as
    /// that click would have, as of the vote's time and with the last voter as the decider,
    /// through the same closing path, so the workflow is resumed once. Returns the approval
    /// when this closed it (or found it closed).
    async fn close_on_stored_votes(
        &self,
        approval: &PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingApproval>, ApprovalError> {
        let last = approval
            .votes
            .iter()
            .filter_map(|vote| Some((vote, crate::time::parse_rfc3339(&vote.at)?)))
            .max_by_key(|(_, at)| *at);
        let Some((last, voted_at)) = last else {
            return Ok(None);
        };
        if now - voted_at < RESUME_LEASE {
            return Ok(None);
        }
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let time = approval.evaluation_time(voted_at);
        let evaluation = self.policy.evaluate(&prepared, &approval.votes, time)?;
        if !evaluation.decision.outcome.is_final() {
            return Ok(None);
        }
        tracing::warn!(request_id = %approval.request_id, voter = %last.voter, "the stored votes decide this approval but no click closed it; closing it now");
        let closer = Closer {
            decided_by: Some(&last.voter),
            attempt: format!("sweep:vote:{}:{}:{}", last.voter, last.at, attempt_tag()),
            reevaluation: None,
        };
        let result = self
            .close_if_decided(&prepared, approval.clone(), closer, voted_at)
            .await?;
        Ok(match result {
            VoteResult::Counted { approval, .. } if approval.state != ApprovalState::Pending => {
                Some(approval)
            }
            _ => None,
        })
    }

    /// When a re-evaluation offset has passed since the approval opened, evaluates it again as
    /// of `now` with every vote counted. On allow or deny it closes through the same path as a
    /// deciding vote (and the workflow is resumed once); otherwise the new evaluation is stored
    /// (one sweeper wins each offset) and shown on every message, so new requirements and
    /// approvers take effect. Each re-evaluation is logged `evaluated`, with its input digest,
    /// time and votes. Returns whether this call stored one.
    async fn reevaluate_if_due(
        &self,
        approval: PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<Reevaluated, ApprovalError> {
        let offsets = &approval.evaluation.decision.reevaluate_after_seconds;
        let Some(offset) = due_offset(offsets, approval.reevaluated_through, &approval, now) else {
            return Ok(Reevaluated::Open(approval, false));
        };
        let request_id = approval.request_id.clone();
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let mut current = approval;
        for _ in 0..CLOSE_ATTEMPTS {
            let closer = Closer {
                decided_by: None,
                attempt: format!("time:{offset}:{}", attempt_tag()),
                reevaluation: Some(offset),
            };
            let time = current.evaluation_time(now);
            let result = self
                .close_if_decided(&prepared, current, closer, now)
                .await?;
            let VoteResult::Counted {
                approval,
                evaluation,
                ..
            } = result
            else {
                return Err(ApprovalError::PendingStore(StoreError::Conflict(format!(
                    "approval {request_id} disappeared while it was evaluated again"
                ))));
            };
            if approval.state != ApprovalState::Pending {
                return Ok(Reevaluated::Closed(approval));
            }
            let stored = self
                .pending
                .reevaluate(&request_id, approval.version, &evaluation, offset, time.now)
                .await
                .map_err(ApprovalError::PendingStore)?;
            match stored {
                Conditional::Done(updated) => {
                    self.log_unlogged_votes(&request_id, &updated.votes).await?;
                    let draft = reevaluated(offset, &evaluation, time, &updated.votes);
                    self.append(&request_id, draft).await?;
                    tracing::info!(request_id, offset, outcome = %evaluation.decision.outcome, "approval evaluated again");
                    self.refresh(&updated, &evaluation).await;
                    return Ok(Reevaluated::Open(*updated, true));
                }
                // A vote arrived in between: evaluate again with it counted.
                Conditional::Lost(Some(item))
                    if item.state == ApprovalState::Pending
                        && item.reevaluated_through < offset =>
                {
                    current = *item;
                }
                // Another sweeper took this offset, or the approval closed.
                Conditional::Lost(Some(item)) if item.state == ApprovalState::Pending => {
                    return Ok(Reevaluated::Open(*item, false))
                }
                Conditional::Lost(Some(item)) => return Ok(Reevaluated::Closed(*item)),
                Conditional::Lost(None) => {
                    return Err(ApprovalError::PendingStore(StoreError::Conflict(format!(
                        "approval {request_id} disappeared while it was evaluated again"
                    ))))
                }
            }
        }
        Err(ApprovalError::Contended(request_id))
    }

    /// Posts the message to the stored evaluation's targets that have none yet. A target that
    /// fails is logged as an `error` event on the request (once per target) and retried by the
    /// next sweep.
    async fn post_new_targets(
        &self,
        approval: PendingApproval,
    ) -> Result<PendingApproval, ApprovalError> {
        let missing: Vec<String> = approval
            .evaluation
            .decision
            .notify
            .iter()
            .filter(|target| !approval.messages.iter().any(|m| m.is_for(target)))
            .map(NotifyTarget::key)
            .collect();
        if missing.is_empty() {
            return Ok(approval);
        }
        let request_id = approval.request_id.clone();
        let evaluation = approval.evaluation.clone();
        match self.post_missing(approval, &evaluation).await {
            Ok((approval, _skipped)) => Ok(approval),
            Err(ApprovalError::Chat(error)) => {
                let targets = missing.join(", ");
                let draft = EventDraft::new(EventKind::Error)
                    .reasons(vec![format!(
                        "posting the approval to {targets} failed ({error}); the next sweep tries again"
                    )])
                    .once(format!("error#post#{}", missing.join(",")));
                self.append(&request_id, draft).await?;
                Err(ApprovalError::Chat(error))
            }
            Err(other) => Err(other),
        }
    }

    /// When a reminder offset has passed since the approval opened, posts one reminder in the
    /// thread of each of its messages, mentioning the eligible approvers who have not voted and
    /// saying how long is left. Several offsets passed at once make one reminder. One sweeper
    /// claims each offset before posting, so a reminder goes out once however many sweeps run;
    /// when no message could take it, the claim is given back for the next sweep. Logged as
    /// `reminded`. Returns whether this call sent one.
    async fn remind_if_due(
        &self,
        approval: &PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<bool, ApprovalError> {
        let offsets = &approval.evaluation.decision.remind_after_seconds;
        let Some(offset) = due_offset(offsets, approval.reminded_through, approval, now) else {
            return Ok(false);
        };
        let request_id = approval.request_id.as_str();
        let from = approval.reminded_through;
        let claimed = self
            .pending
            .advance_reminders(request_id, from, offset)
            .await
            .map_err(ApprovalError::PendingStore)?;
        let Conditional::Done(claimed) = claimed else {
            return Ok(false);
        };
        let reminder = Reminder {
            approval: &claimed,
            waiting_on: waiting_on(&claimed),
            left: claimed.deadline() - now,
        };
        let mut places = Vec::new();
        let mut failure = None;
        for message in &claimed.messages {
            match self.chat.remind(message, &reminder).await {
                Ok(()) => places.push(format!(
                    "{}:{}",
                    message.platform().as_str(),
                    message.place()
                )),
                Err(error) => {
                    tracing::warn!(request_id, error = %error, "could not post a reminder");
                    failure = Some(error);
                }
            }
        }
        if let (true, Some(error)) = (places.is_empty(), failure) {
            let given_back = self
                .pending
                .advance_reminders(request_id, offset, from)
                .await;
            if let Err(store) = given_back {
                tracing::warn!(request_id, error = %store, "could not give the reminder back; it is skipped");
            }
            return Err(ApprovalError::Chat(error));
        }
        let draft = EventDraft::new(EventKind::Reminded)
            .data("remind_after", offset)
            .data("waiting_on", reminder.waiting_on.clone())
            .data("left_seconds", reminder.left.num_seconds().max(0))
            .data("places", places)
            .once(format!("reminded#{offset}"));
        self.append(request_id, draft).await?;
        tracing::info!(request_id, offset, "reminder posted");
        Ok(true)
    }

    /// Closes the approval of workflow `execution_id`, which timed out, and shows it on its
    /// messages; it never asks the policy, so a broken policy cannot keep it open. An approval
    /// a late vote closed first ends `expired` too (the workflow took no outcome). Returns the
    /// approval as it is now, or `None` when the workflow has none.
    pub async fn expire(
        &self,
        request_id: &str,
        execution_id: &str,
    ) -> Result<Option<PendingApproval>, ApprovalError> {
        let timed_out = "no decision reached the workflow within its timeout";
        let expired = self
            .close_expired(request_id, execution_id, timed_out)
            .await?;
        if let Some(approval) = &expired {
            self.refresh(approval, &approval.evaluation).await;
        }
        Ok(expired)
    }

    async fn close_expired(
        &self,
        request_id: &str,
        execution_id: &str,
        reason: &str,
    ) -> Result<Option<PendingApproval>, ApprovalError> {
        let attempt = format!("expire:{execution_id}");
        for _ in 0..CLOSE_ATTEMPTS {
            let current = self
                .load(request_id)
                .await?
                .filter(|item| item.execution_id == execution_id);
            let Some(current) = current else {
                let draft = EventDraft::new(EventKind::Expired)
                    .reasons(vec![
                        "the workflow timed out; it had no pending approval".into()
                    ])
                    .once(format!("expired#{execution_id}"));
                self.append(request_id, draft).await?;
                return Ok(None);
            };
            if current.state != ApprovalState::Pending {
                let settled = match current.resumed {
                    true => current,
                    false => self.settle_expired(current, reason).await?,
                };
                return Ok(Some(settled));
            }
            let now = self.clock.now();
            let closing = Closing {
                state: ApprovalState::Expired,
                evaluation: current.evaluation.clone(),
                decided_by: None,
                decided_at: now,
                closed_by: attempt.clone(),
                resumed: true,
                resume_until: now,
            };
            match self
                .pending
                .transition(request_id, current.version, &closing)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(expired) => {
                    return self.log_expired(*expired, reason).await.map(Some)
                }
                Conditional::Lost(Some(item)) if item.closed_by.as_deref() == Some(&attempt) => {
                    return self.log_expired(*item, reason).await.map(Some)
                }
                _ => continue,
            }
        }
        Err(ApprovalError::Contended(request_id.to_string()))
    }

    /// A late vote closed it, but the workflow timed out: it ends expired.
    async fn settle_expired(
        &self,
        current: PendingApproval,
        reason: &str,
    ) -> Result<PendingApproval, ApprovalError> {
        let settled = self
            .pending
            .settle(
                &current.request_id,
                &current.task_token,
                ApprovalState::Expired,
            )
            .await
            .map_err(ApprovalError::PendingStore)?;
        match settled {
            Conditional::Done(item) => self.log_expired(*item, reason).await,
            Conditional::Lost(Some(item)) => Ok(*item),
            Conditional::Lost(None) => Ok(current),
        }
    }

    async fn log_expired(
        &self,
        expired: PendingApproval,
        reason: &str,
    ) -> Result<PendingApproval, ApprovalError> {
        let draft = EventDraft::new(EventKind::Expired)
            .evaluation(&expired.evaluation)
            .reasons(vec![reason.to_string()])
            .once("expired");
        self.append(&expired.request_id, draft).await?;
        Ok(expired)
    }

    /// Shows the approval on every message, then reads it back: if another path closed,
    /// resumed or expired it meanwhile, shows that instead. Slack and Teams have no conditional
    /// update, so a path that rendered an older state (a click slowed by retries, say) could
    /// otherwise write last; the path that stores the last state refreshes after storing it,
    /// and whoever wrote before that reads it back. The state is already stored, so a failure
    /// is logged and never loses anything.
    pub async fn refresh(&self, approval: &PendingApproval, evaluation: &Evaluation) {
        self.show(approval, evaluation).await;
        let mut shown = (approval.state, approval.resumed);
        for _ in 0..REFRESH_READBACKS {
            let stored = match self.load(&approval.request_id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(request_id = %approval.request_id, error = %error, "could not read the approval back after updating its messages");
                    return;
                }
            };
            // A pending approval shown with other votes is brought up to date by the next
            // vote or by its close; only a state the messages do not show yet is shown here.
            if stored.state == ApprovalState::Pending || (stored.state, stored.resumed) == shown {
                return;
            }
            tracing::info!(request_id = %approval.request_id, state = stored.state.as_str(), "the approval moved on while its messages were updated; showing it as it is now");
            self.show(&stored, &stored.evaluation).await;
            shown = (stored.state, stored.resumed);
        }
    }

    async fn show(&self, approval: &PendingApproval, evaluation: &Evaluation) {
        let view = ApprovalView {
            approval,
            evaluation,
        };
        for message in &approval.messages {
            if let Err(error) = self.chat.update(message, view).await {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not update an approval message");
            }
        }
    }
}

/// Who closes a request in [`Approvals::close_if_decided`].
struct Closer<'a> {
    /// The deciding voter; none when time decided.
    decided_by: Option<&'a str>,
    /// Names the attempt (see [`PendingApproval::closed_by`]).
    attempt: String,
    /// The re-evaluation offset, when the sweeper evaluates again because time passed: its
    /// `evaluated` event is logged before the workflow is resumed.
    reevaluation: Option<u64>,
}

/// The `evaluated` event of a re-evaluation at `offset`: the evaluation with the time and the
/// votes it saw, so an auditor can rebuild its input.
fn reevaluated(
    offset: u64,
    evaluation: &Evaluation,
    time: EvaluationTime,
    votes: &[crate::vote::Vote],
) -> EventDraft {
    EventDraft::new(EventKind::Evaluated)
        .evaluation(evaluation)
        .evaluated_at(time)
        .votes(votes)
        .data("reevaluate_after", offset)
        .once(format!("evaluated#{offset}"))
}

/// The `vote` event of a counted vote (once per voter).
fn vote_event(vote: &Vote) -> EventDraft {
    let mut draft = EventDraft::new(EventKind::Vote)
        .actor(&vote.voter)
        .data("vote", vote.vote.as_str())
        .once(format!("vote#{}", vote.voter));
    if let Some(reason) = &vote.reason {
        draft = draft.data("reason", reason.as_str());
    }
    draft
}

/// What a sweep did with one approval.
enum Swept {
    Resumed,
    Expired,
    /// Still open: whether it was evaluated again, and reminded.
    Waiting {
        reevaluated: bool,
        reminded: bool,
    },
}

/// What a due re-evaluation did: the approval closed, or stays open (and whether this call
/// stored the new evaluation).
enum Reevaluated {
    Closed(PendingApproval),
    Open(PendingApproval, bool),
}

/// The latest of `offsets` (seconds after the approval opened) that has passed by `now` and is
/// after `through`, the last one taken care of; several passed at once are handled as one.
fn due_offset(
    offsets: &[u64],
    through: u64,
    approval: &PendingApproval,
    now: DateTime<Utc>,
) -> Option<u64> {
    let waited = u64::try_from((now - approval.created_at).num_seconds()).ok()?;
    offsets
        .iter()
        .copied()
        .filter(|&offset| offset > through && offset <= waited)
        .max()
}

/// The eligible approvers of the stored evaluation who have not voted.
fn waiting_on(approval: &PendingApproval) -> Vec<String> {
    let voted: std::collections::BTreeSet<String> =
        approval.votes.iter().map(|v| normalize(&v.voter)).collect();
    approval
        .evaluation
        .decision
        .approvers
        .iter()
        .filter(|a| !voted.contains(&normalize(a)))
        .cloned()
        .collect()
}

/// The workflow's output when approvers approve: what was decided, by whom, under which policy.
pub fn approved_output(approval: &PendingApproval, evaluation: &Evaluation) -> Value {
    let approvers: Vec<&str> = approval
        .votes
        .iter()
        .filter(|v| v.vote == Choice::Approve)
        .map(|v| v.voter.as_str())
        .collect();
    json!({
        "request_id": approval.request_id,
        "outcome": evaluation.decision.outcome,
        "approvers": approvers,
        "reasons": evaluation.decision.reasons,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.map(crate::time::format_rfc3339_ms),
        "policy_revision": evaluation.policy_revision,
        "input_digest": evaluation.input_digest,
    })
}

/// Why a ballot cast somewhere this request's messages are not does not count: a click must
/// come from a message regate posted for the request (a card copied or forwarded elsewhere
/// does not vote). Unknown places, and platforms with no message, are not checked.
fn elsewhere(ballot: &Ballot, approval: &PendingApproval) -> Option<String> {
    let place = ballot.place.as_deref()?;
    let mut ours = approval
        .messages
        .iter()
        .filter(|m| m.platform() == ballot.platform)
        .peekable();
    ours.peek()?;
    if ours.any(|m| m.place() == place) {
        return None;
    }
    Some("this request was not posted where you clicked".into())
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
