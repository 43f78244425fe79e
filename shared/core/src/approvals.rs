//! The approval workflow as the domain sees it, generic over the ports: open an approval for a
//! paused workflow, count a vote, close and resume the workflow exactly once, expire it.
//! Handlers call these; they never touch the stores directly.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::decision::{Evaluation, Outcome};
use crate::event::{EventDraft, EventKind};
use crate::policy::{PolicyEngine, PolicyError, PreparedRequest};
use crate::ports::{
    ApprovalState, Closing, Conditional, DecisionLog, PendingApproval, PendingStore, StoreError,
    TaskToken, TaskTokenError, TaskTokens,
};
use crate::request::Request;
use crate::rules::normalize;
use crate::vote::{Choice, Vote};

/// The error Step Functions sees when approvers reject a change.
pub const REJECTED_ERROR: &str = "ApprovalRejected";
/// How long a closed approval stays in the pending store after its timeout.
const KEEP_AFTER_TIMEOUT: Duration = Duration::days(1);
/// Rounds of "evaluate, try to close" when other votes keep arriving concurrently.
const CLOSE_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("decision log: {0}")]
    DecisionLog(StoreError),
    #[error("pending store: {0}")]
    PendingStore(StoreError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("step functions: {0}")]
    TaskToken(TaskTokenError),
    #[error("votes kept arriving while closing request {0}; try again")]
    Contended(String),
}

impl ApprovalError {
    /// The Step Functions error name (`DecisionLog.Throttled`, `PolicyError`, ...).
    pub fn name(&self) -> String {
        match self {
            Self::DecisionLog(e) => format!("DecisionLog.{}", e.kind_name()),
            Self::PendingStore(e) => format!("PendingStore.{}", e.kind_name()),
            Self::Policy(_) => "PolicyError".into(),
            Self::TaskToken(TaskTokenError::Throttled(_)) => "StepFunctions.Throttled".into(),
            Self::TaskToken(_) => "StepFunctions.Unavailable".into(),
            Self::Contended(_) => "PendingStore.Conflict".into(),
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
    /// The vote does not count; `reason` is for the voter.
    Refused {
        reason: String,
        approval: PendingApproval,
    },
    /// The request no longer takes votes.
    AlreadyDecided { approval: PendingApproval },
    /// No approval is open under that id.
    Unknown,
}

/// How a request was closed by a vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub state: ApprovalState,
    /// False when Step Functions no longer waited (the request had already timed out).
    pub resumed: bool,
}

pub struct Approvals<L, P, T> {
    pub log: L,
    pub pending: P,
    pub tokens: T,
    pub policy: Arc<PolicyEngine>,
}

impl<L: DecisionLog, P: PendingStore, T: TaskTokens> Approvals<L, P, T> {
    async fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> Result<(), ApprovalError> {
        self.log
            .append(request_id, draft, at)
            .await
            .map(|_| ())
            .map_err(ApprovalError::DecisionLog)
    }

    /// Stores the pending approval of a workflow that now waits on `token`. A retried
    /// notifier finds the approval it already opened (with its posted messages) and gives it
    /// the new token.
    pub async fn open(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
        now: DateTime<Utc>,
    ) -> Result<PendingApproval, ApprovalError> {
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
        match self
            .pending
            .create(&fresh)
            .await
            .map_err(ApprovalError::PendingStore)?
        {
            Conditional::Done(created) => Ok(*created),
            Conditional::Lost(Some(existing))
                if existing.task_token != *token && existing.state == ApprovalState::Pending =>
            {
                match self
                    .pending
                    .replace_token(&request.id, token)
                    .await
                    .map_err(ApprovalError::PendingStore)?
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

    /// Counts `voter`'s vote on `request_id` if the policy and the hard rules allow it, and closes
    /// the request (resuming the workflow exactly once) when the vote decides it.
    pub async fn cast_vote(
        &self,
        request_id: &str,
        voter: &str,
        choice: Choice,
        reason: Option<String>,
        platform: &str,
        now: DateTime<Utc>,
    ) -> Result<VoteResult, ApprovalError> {
        let Some(approval) = self
            .pending
            .get(request_id)
            .await
            .map_err(ApprovalError::PendingStore)?
        else {
            return Ok(VoteResult::Unknown);
        };
        let refuse = |reason: String, approval: PendingApproval| async move {
            let draft = EventDraft::new(EventKind::VoteRefused)
                .actor(normalize(voter))
                .platform(platform)
                .reasons(vec![reason.clone()])
                .data("vote", choice.as_str());
            self.append(request_id, draft, now).await?;
            Ok::<_, ApprovalError>(VoteResult::Refused { reason, approval })
        };
        if approval.state != ApprovalState::Pending {
            refuse(already_decided(&approval), approval.clone()).await?;
            return Ok(VoteResult::AlreadyDecided { approval });
        }
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let check = self
            .policy
            .check_vote(&prepared, &approval.votes, voter, now)?;
        if !check.allowed {
            return refuse(check.reason, approval).await;
        }
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if choice == Choice::Reject
            && reason.is_none()
            && approval.evaluation.decision.reject_reason_required
        {
            return refuse("this request needs a reason to reject it".into(), approval).await;
        }
        let vote = Vote {
            voter: normalize(voter),
            vote: choice,
            reason,
            at: crate::time::format_rfc3339_ms(now),
        };
        let mut current = match self
            .pending
            .record_vote(request_id, &vote)
            .await
            .map_err(ApprovalError::PendingStore)?
        {
            Conditional::Done(item) => *item,
            Conditional::Lost(Some(item)) if item.state != ApprovalState::Pending => {
                refuse(already_decided(&item), (*item).clone()).await?;
                return Ok(VoteResult::AlreadyDecided { approval: *item });
            }
            Conditional::Lost(Some(item)) => {
                return refuse(crate::rules::REFUSED_ALREADY_VOTED.into(), *item).await
            }
            Conditional::Lost(None) => return Ok(VoteResult::Unknown),
        };
        let mut draft = EventDraft::new(EventKind::Vote)
            .actor(&vote.voter)
            .platform(platform)
            .data("vote", choice.as_str());
        if let Some(reason) = &vote.reason {
            draft = draft.data("reason", reason.as_str());
        }
        self.append(request_id, draft, now).await?;

        for _ in 0..CLOSE_ATTEMPTS {
            let evaluation = self.policy.evaluate(&prepared, &current.votes, now)?;
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
                decided_by: Some(vote.voter.clone()),
                decided_at: now,
            };
            match self
                .pending
                .transition(request_id, current.version, &closing)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(closed) => {
                    let resumed = self.resume(&closed, &evaluation, now).await?;
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
        Err(ApprovalError::Contended(request_id.to_string()))
    }

    /// Resumes the workflow of a request this caller just closed, and logs `decided`.
    async fn resume(
        &self,
        closed: &PendingApproval,
        evaluation: &Evaluation,
        now: DateTime<Utc>,
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
                self.append(&closed.request_id, draft, now).await?;
                false
            }
            Err(other) => {
                let draft = EventDraft::new(EventKind::Error)
                    .reasons(vec![format!("resuming the workflow failed: {other}")]);
                self.append(&closed.request_id, draft, now).await?;
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
        self.append(&closed.request_id, draft, now).await?;
        Ok(resumed)
    }

    /// Closes a request whose workflow timed out. Returns the approval as it is now (an approval
    /// a late vote closed first keeps that state; the workflow has expired all the same).
    pub async fn expire(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingApproval>, ApprovalError> {
        for _ in 0..CLOSE_ATTEMPTS {
            let Some(current) = self
                .pending
                .get(request_id)
                .await
                .map_err(ApprovalError::PendingStore)?
            else {
                self.append(
                    request_id,
                    EventDraft::new(EventKind::Expired)
                        .reasons(vec!["no pending approval was found".into()]),
                    now,
                )
                .await?;
                return Ok(None);
            };
            if current.state != ApprovalState::Pending {
                let draft = EventDraft::new(EventKind::Expired).reasons(vec![format!(
                    "the workflow timed out; the approval was already {}",
                    current.state.as_str()
                )]);
                self.append(request_id, draft, now).await?;
                return Ok(Some(current));
            }
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
                self.append(request_id, draft, now).await?;
                return Ok(Some(*expired));
            }
        }
        Err(ApprovalError::Contended(request_id.to_string()))
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
