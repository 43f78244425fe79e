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
    ApprovalState, ApprovalView, Closing, Conditional, MessageRef, PendingApproval, TaskToken,
    Voter,
};
use crate::policy::{PolicyEngine, PolicyError, PreparedRequest};
use crate::ports::{
    ChatError, ChatPlatform, Clock, DecisionLog, PendingStore, StoreError, TaskTokenError,
    TaskTokens,
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
    /// False when Step Functions no longer waited (the request had already timed out).
    pub resumed: bool,
}

/// What `notify` did: the approval as stored, and the targets no configured platform serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Notified {
    pub approval: PendingApproval,
    pub skipped: Vec<NotifyTarget>,
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

    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    async fn append(&self, request_id: &str, draft: EventDraft) -> Result<(), ApprovalError> {
        self.log
            .append(request_id, draft, self.clock.now())
            .await
            .map(|_| ())
            .map_err(ApprovalError::DecisionLog)
    }

    /// Opens the approval of a workflow that now waits on `token` and posts its message to each
    /// notify target, once: a retried step finds the approval it opened, gives it the new token
    /// and posts only where it has not posted yet. Each posted message is logged `notified`.
    pub async fn notify(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
    ) -> Result<Notified, ApprovalError> {
        let mut approval = self.open(request, evaluation, token).await?;
        let mut skipped = Vec::new();
        for target in &evaluation.decision.notify {
            if approval.messages.iter().any(|m| m.is_for(target)) {
                continue;
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
    ) -> Result<PendingApproval, ApprovalError> {
        let now = self.clock.now();
        let timeout = Duration::seconds(
            i64::try_from(evaluation.decision.timeout_seconds).unwrap_or(i64::MAX / 2_000_000),
        );
        let fresh = PendingApproval {
            request_id: request.id.clone(),
            task_token: token.clone(),
            request: request.clone(),
            evaluation: evaluation.clone(),
            messages: Vec::new(),
            votes: Vec::new(),
            state: ApprovalState::Pending,
            version: 1,
            created_at: now,
            expires_at: now + timeout + KEEP_AFTER_TIMEOUT,
            decided_by: None,
            decided_at: None,
        };
        let pending_error = ApprovalError::PendingStore;
        match self.pending.create(&fresh).await.map_err(pending_error)? {
            Conditional::Done(created) => Ok(*created),
            Conditional::Lost(Some(existing))
                if existing.task_token != *token && existing.state == ApprovalState::Pending =>
            {
                match self
                    .pending
                    .replace_token(&request.id, token)
                    .await
                    .map_err(pending_error)?
                {
                    Conditional::Done(updated) | Conditional::Lost(Some(updated)) => Ok(*updated),
                    Conditional::Lost(None) => Ok(*existing),
                }
            }
            Conditional::Lost(Some(existing)) => Ok(*existing),
            Conditional::Lost(None) => Err(ApprovalError::PendingStore(StoreError::Conflict(
                format!("approval {} neither created nor found", request.id),
            ))),
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
        let mut draft = EventDraft::new(EventKind::Notified).platform(message.platform().as_str());
        draft.data = message.log_fields();
        self.append(&request_id, draft).await?;
        tracing::info!(
            request_id,
            platform = message.platform().as_str(),
            "approval message posted"
        );
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
        let Some(identity) = self
            .chat
            .identify(voter)
            .await
            .map_err(ApprovalError::Chat)?
        else {
            return Ok(VoteResult::Unidentified);
        };
        let ballot = Ballot {
            request_id: request_id.to_string(),
            voter: identity,
            choice,
            reason,
            platform: voter.platform,
            at: self.clock.now(),
        };
        self.vote(&ballot).await
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
        let draft = EventDraft::new(EventKind::VoteRefused)
            .actor(normalize(&ballot.voter))
            .platform(ballot.platform.as_str())
            .reasons(vec![reason.clone()])
            .data("vote", ballot.choice.as_str());
        self.append(&ballot.request_id, draft).await?;
        Ok(VoteResult::Refused { reason, approval })
    }

    async fn already_decided(
        &self,
        ballot: &Ballot,
        approval: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        self.refuse(ballot, already_decided(&approval), approval.clone())
            .await?;
        Ok(VoteResult::AlreadyDecided { approval })
    }

    async fn count(&self, ballot: &Ballot) -> Result<VoteResult, ApprovalError> {
        let request_id = ballot.request_id.as_str();
        let Some(approval) = self
            .pending
            .get(request_id)
            .await
            .map_err(ApprovalError::PendingStore)?
        else {
            return Ok(VoteResult::Unknown);
        };
        if approval.state != ApprovalState::Pending {
            return self.already_decided(ballot, approval).await;
        }
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let check = self
            .policy
            .check_vote(&prepared, &approval.votes, &ballot.voter, ballot.at)?;
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
            voter: normalize(&ballot.voter),
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
        let mut draft = EventDraft::new(EventKind::Vote)
            .actor(&vote.voter)
            .platform(ballot.platform.as_str())
            .data("vote", ballot.choice.as_str());
        if let Some(reason) = &vote.reason {
            draft = draft.data("reason", reason.as_str());
        }
        self.append(request_id, draft).await?;
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
        for _ in 0..CLOSE_ATTEMPTS {
            let evaluation = self.policy.evaluate(prepared, &current.votes, now)?;
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
            };
            match self
                .pending
                .transition(&request_id, current.version, &closing)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(closed) => {
                    let resumed = self.resume(&closed, &evaluation).await?;
                    return Ok(VoteResult::Counted {
                        approval: *closed,
                        evaluation,
                        closed: Some(Closed { state, resumed }),
                    });
                }
                // Someone else closed it: our vote counted, the decision was theirs.
                Conditional::Lost(Some(other)) if other.state != ApprovalState::Pending => {
                    return Ok(VoteResult::Counted {
                        approval: *other,
                        evaluation,
                        closed: None,
                    });
                }
                // Another vote arrived in between: decide again with it counted.
                Conditional::Lost(Some(newer)) => current = *newer,
                Conditional::Lost(None) => return Ok(VoteResult::Unknown),
            }
        }
        Err(ApprovalError::Contended(request_id))
    }

    /// Resumes the workflow of a request this caller just closed, and logs `decided`.
    async fn resume(
        &self,
        closed: &PendingApproval,
        evaluation: &Evaluation,
    ) -> Result<bool, ApprovalError> {
        let result = match closed.state {
            ApprovalState::Approved => {
                self.tokens
                    .succeed(&closed.task_token, &approved_output(closed, evaluation))
                    .await
            }
            _ => {
                self.tokens
                    .fail(
                        &closed.task_token,
                        REJECTED_ERROR,
                        &evaluation.decision.reasons.join("; "),
                    )
                    .await
            }
        };
        let resumed = match result {
            Ok(()) => true,
            Err(TaskTokenError::AlreadyClosed(code)) => {
                let draft = EventDraft::new(EventKind::Error).reasons(vec![format!(
                    "the workflow no longer waited for this decision ({code})"
                )]);
                self.append(&closed.request_id, draft).await?;
                false
            }
            Err(other) => {
                let draft = EventDraft::new(EventKind::Error)
                    .reasons(vec![format!("resuming the workflow failed: {other}")]);
                self.append(&closed.request_id, draft).await?;
                return Err(ApprovalError::TaskToken(other));
            }
        };
        let mut draft = EventDraft::new(EventKind::Decided)
            .evaluation(evaluation)
            .data("state", closed.state.as_str())
            .data("resumed", resumed);
        if let Some(by) = &closed.decided_by {
            draft = draft.actor(by);
        }
        self.append(&closed.request_id, draft).await?;
        Ok(resumed)
    }

    /// Closes a request whose workflow timed out and shows it on its messages. Returns the
    /// approval as it is now (one a late vote closed first keeps that state; the workflow has
    /// expired all the same), or `None` when there is none.
    pub async fn expire(&self, request_id: &str) -> Result<Option<PendingApproval>, ApprovalError> {
        let expired = self.close_expired(request_id).await?;
        if let Some(approval) = &expired {
            self.refresh(approval, &approval.evaluation).await;
        }
        Ok(expired)
    }

    async fn close_expired(
        &self,
        request_id: &str,
    ) -> Result<Option<PendingApproval>, ApprovalError> {
        for _ in 0..CLOSE_ATTEMPTS {
            let Some(current) = self
                .pending
                .get(request_id)
                .await
                .map_err(ApprovalError::PendingStore)?
            else {
                let draft = EventDraft::new(EventKind::Expired)
                    .reasons(vec!["no pending approval was found".into()]);
                self.append(request_id, draft).await?;
                return Ok(None);
            };
            if current.state != ApprovalState::Pending {
                let draft = EventDraft::new(EventKind::Expired).reasons(vec![format!(
                    "the workflow timed out; the approval was already {}",
                    current.state.as_str()
                )]);
                self.append(request_id, draft).await?;
                return Ok(Some(current));
            }
            let now = self.clock.now();
            let evaluation = self.policy.evaluate(
                &PreparedRequest::new(current.request.clone())?,
                &current.votes,
                now,
            )?;
            let closing = Closing {
                state: ApprovalState::Expired,
                evaluation,
                decided_by: None,
                decided_at: now,
            };
            if let Conditional::Done(expired) = self
                .pending
                .transition(request_id, current.version, &closing)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                let draft = EventDraft::new(EventKind::Expired)
                    .evaluation(&expired.evaluation)
                    .reasons(vec![format!(
                        "no decision within {} seconds",
                        current.evaluation.decision.timeout_seconds
                    )]);
                self.append(request_id, draft).await?;
                return Ok(Some(*expired));
            }
        }
        Err(ApprovalError::Contended(request_id.to_string()))
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

fn already_decided(approval: &PendingApproval) -> String {
    match approval.state {
        ApprovalState::Expired => "this request has expired".into(),
        ApprovalState::Pending => "this request is still open".into(),
        state => format!("this request is already decided ({})", state.as_str()),
    }
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
