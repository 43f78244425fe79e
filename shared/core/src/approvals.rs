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
    TaskToken, Voter,
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
/// How long a closed approval stays in the pending store after its timeout.
const KEEP_AFTER_TIMEOUT: Duration = Duration::days(1);
/// Rounds of "evaluate, try to close" when other votes keep arriving concurrently.
const CLOSE_ATTEMPTS: usize = 20;
/// How long a claim to resume a workflow holds: longer than any function runs (the notifier's
/// timeout is 60 s), so a claim lapses only when its holder is gone, and the sweeper (once a
/// minute) takes the duty over.
const RESUME_LEASE: Duration = Duration::seconds(90);

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
        evaluation: Evaluation,
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
    /// Approvals whose workflow still waits: nothing to do yet.
    pub waiting: usize,
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
        let mut approval = self.open(request, evaluation, token, execution_id).await?;
        if approval.state != ApprovalState::Pending {
            let approval = self.finish(approval, None).await?.0;
            return Ok(Notified {
                approval,
                skipped: Vec::new(),
            });
        }
        let mut skipped = Vec::new();
        for target in &evaluation.decision.notify {
            if approval.messages.iter().any(|m| m.is_for(target)) {
                continue;
            }
            // An attempt that posted but did not live to record it left its intent: adopt
            // the message it posted instead of leaving a second one with live buttons.
            let key = target.key();
            if approval.posting.contains(&key) {
                let found = self.chat.find_posted(target, &request.id).await;
                if let Some(message) = found.map_err(ApprovalError::Chat)? {
                    approval = self.record_message(approval, message).await?;
                    continue;
                }
            } else if let Conditional::Done(marked) = self
                .pending
                .mark_posting(&request.id, &key)
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
                Err(error) => return Err(ApprovalError::Chat(error)),
            }
        }
        if approval.messages.is_empty() {
            return Err(ApprovalError::NoTarget {
                request_id: request.id.clone(),
                targets: serde_json::to_string(&skipped).unwrap_or_default(),
            });
        }
        Ok(Notified { approval, skipped })
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

    /// A ballot on a closed request: carries out a resume still owed, then refuses it. It
    /// changes nothing, so it is not a step of the decision: the voter is told privately and
    /// the click is traced in the function's log, not appended to the request's chain (a storm
    /// of late clicks would otherwise queue on that chain and answer after Slack's 3 s).
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
        let Some(approval) = self.load(request_id).await? else {
            return Ok(VoteResult::Unknown);
        };
        let voter = normalize(&ballot.voter);
        let same_vote = |item: &PendingApproval| {
            item.votes
                .iter()
                .find(|v| normalize(&v.voter) == voter && v.vote == ballot.choice)
                .cloned()
        };
        // A repeated identical vote completes what its first click may have left undone (the
        // log entry, closing, resuming); the log's idempotency keys keep it from counting twice.
        if let Some(vote) = same_vote(&approval) {
            return self.complete(ballot, &vote, approval).await;
        }
        if approval.state != ApprovalState::Pending {
            return self.already_decided(ballot, approval).await;
        }
        if let Some(reason) = elsewhere(ballot, &approval) {
            return self.refuse(ballot, reason, approval).await;
        }
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let check = self.policy.check_vote(
            &prepared,
            &approval.votes,
            &ballot.voter,
            EvaluationTime::since(approval.created_at, ballot.at),
        )?;
        if !check.allowed {
            return self.refuse(ballot, check.reason, approval).await;
        }
        let reason = ballot
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        if ballot.choice == Choice::Reject
            && reason.is_none()
            && approval.evaluation.decision.reject_reason_required
        {
            return Ok(VoteResult::ReasonRequired { approval });
        }
        let vote = Vote {
            voter: voter.clone(),
            vote: ballot.choice,
            reason,
            at: crate::time::format_rfc3339_ms(ballot.at),
        };
        let current = match self
            .pending
            .record_vote(request_id, &vote)
            .await
            .map_err(ApprovalError::PendingStore)?
        {
            Conditional::Done(item) => *item,
            // The write committed but its answer was lost, or a double click raced this one.
            Conditional::Lost(Some(item)) if same_vote(&item).is_some() => *item,
            Conditional::Lost(Some(item)) if item.state != ApprovalState::Pending => {
                return self.already_decided(ballot, *item).await;
            }
            Conditional::Lost(Some(item)) => {
                return self
                    .refuse(ballot, crate::rules::REFUSED_ALREADY_VOTED.into(), *item)
                    .await
            }
            Conditional::Lost(None) => return Ok(VoteResult::Unknown),
        };
        self.complete(ballot, &vote, current).await
    }

    /// Logs a recorded vote (once) and closes the request if the vote decides it.
    async fn complete(
        &self,
        ballot: &Ballot,
        vote: &Vote,
        current: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        let mut draft = EventDraft::new(EventKind::Vote)
            .actor(&vote.voter)
            .platform(ballot.platform.as_str())
            .data("vote", vote.vote.as_str())
            .once(format!("vote#{}", vote.voter));
        if let Some(reason) = &vote.reason {
            draft = draft.data("reason", reason.as_str());
        }
        self.append(&current.request_id, draft).await?;
        if current.state != ApprovalState::Pending {
            let (approval, closed) = self.finish(current, None).await?;
            let evaluation = approval.evaluation.clone();
            // It closed earlier; it is this voter's close only if their vote decided it.
            let closed = closed.filter(|_| approval.decided_by.as_deref() == Some(&vote.voter));
            return Ok(VoteResult::Counted {
                approval,
                evaluation,
                closed,
            });
        }
        let prepared = PreparedRequest::new(current.request.clone())?;
        self.close_if_decided(&prepared, current, &vote.voter, ballot.at)
            .await
    }

    /// Evaluates with every vote counted and, on allow or deny, closes the request once.
    async fn close_if_decided(
        &self,
        prepared: &PreparedRequest,
        mut current: PendingApproval,
        voter: &str,
        now: DateTime<Utc>,
    ) -> Result<VoteResult, ApprovalError> {
        let request_id = current.request_id.clone();
        let attempt = format!(
            "vote:{voter}:{}:{}",
            crate::time::format_rfc3339_ms(now),
            attempt_tag()
        );
        for _ in 0..CLOSE_ATTEMPTS {
            let time = EvaluationTime::since(current.created_at, now);
            let evaluation = self.policy.evaluate(prepared, &current.votes, time)?;
            let state = match evaluation.decision.outcome {
                Outcome::ApprovalRequired => {
                    return Ok(VoteResult::Counted {
                        approval: current,
                        evaluation,
                        closed: None,
                    })
                }
                Outcome::Allow => ApprovalState::Approved,
                Outcome::Deny => ApprovalState::Rejected,
            };
            let closing = Closing {
                state,
                evaluation: evaluation.clone(),
                decided_by: Some(voter.to_string()),
                decided_at: now,
                closed_by: attempt.clone(),
                resumed: false,
                resume_until: now + RESUME_LEASE,
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
                        evaluation,
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
            // The closing write is the first claim to resume: this attempt holds it.
            let claim = closed.resume_claims;
            let (approval, closed) = self.finish(closed, Some(claim)).await?;
            return Ok(VoteResult::Counted {
                approval,
                evaluation,
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
        let due = self
            .pending
            .unresumed(limit)
            .await
            .map_err(ApprovalError::PendingStore)?;
        let mut report = SweepReport {
            checked: due.len(),
            ..SweepReport::default()
        };
        for approval in due {
            let request_id = approval.request_id.clone();
            match self.sweep_one(approval).await {
                Ok(Swept::Resumed) => report.resumed += 1,
                Ok(Swept::Expired) => report.expired += 1,
                Ok(Swept::Waiting) => report.waiting += 1,
                Err(error) => {
                    tracing::warn!(request_id, error = %error, "sweeping an approval failed; the next sweep retries it");
                    report.failed.push(request_id);
                }
            }
        }
        Ok(report)
    }

    async fn sweep_one(&self, approval: PendingApproval) -> Result<Swept, ApprovalError> {
        if approval.state != ApprovalState::Pending {
            let (now, closed) = self.finish(approval, None).await?;
            self.refresh(&now, &now.evaluation).await;
            return Ok(match closed {
                Some(Closed {
                    state: ApprovalState::Expired,
                    ..
                }) => Swept::Expired,
                Some(Closed { resumed: true, .. }) => Swept::Resumed,
                _ => Swept::Waiting,
            });
        }
        let status = self
            .tokens
            .execution_status(&approval.execution_id)
            .await
            .map_err(ApprovalError::TaskToken)?;
        if status == ExecutionStatus::Running {
            return Ok(Swept::Waiting);
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

    /// Shows the approval as it is now on every message. The state is already stored, so a
    /// failure is logged and never loses anything.
    pub async fn refresh(&self, approval: &PendingApproval, evaluation: &Evaluation) {
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

/// What a sweep did with one approval.
enum Swept {
    Resumed,
    Expired,
    Waiting,
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
