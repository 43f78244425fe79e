//! Deciding with every vote counted, closing once (a conditional state change), and resuming
//! the workflow once: a claim on the resume, `SendTaskSuccess`/`Failure`, `decided` logged.

use chrono::DateTime;
use chrono::Utc;
use serde_json::{json, Value};

use super::vote::{vote_event, VoteResult};
use super::{ApprovalError, Approvals, Closed, CLOSE_ATTEMPTS, REJECTED_ERROR, RESUME_LEASE};
use crate::decision::{Evaluation, Outcome};
use crate::error::ErrorName;
use crate::event::{EventDraft, EventKind};
use crate::metrics::{Measurement, Metrics, ResumeResult};
use crate::pending::{ApprovalState, Closing, Conditional, PendingApproval};
use crate::policy::{EvaluationTime, PreparedRequest};
use crate::ports::{
    Clock, DecisionLog, ExecutionStatus, PendingStore, Ports, TaskTokenError, TaskTokens,
};
use crate::vote::{Choice, Vote};

/// Why a `vote` event was appended by the close rather than by the click that cast the vote.
const LOGGED_LATE: &str =
    "logged when the request was decided: the click that recorded this vote had not logged it yet";

impl<P: Ports> Approvals<P> {
    /// Evaluates with every vote counted and, on allow or deny, closes the request once, as
    /// `closer` says.
    pub(super) async fn close_if_decided(
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
            let evaluation = self
                .policy
                .current()?
                .evaluate(prepared, &current.votes, time)?;
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
    /// the current token, logs `decided` (once per request), and records that it was resumed,
    /// which leaves it due for the sweeper to tell its requester (see `tell`).
    /// A token that answers "closed" is checked against the execution: if it took this outcome,
    /// it was resumed; if it ended otherwise, the approval ends `expired`; if it is still
    /// running (a retried step, or the timeout path on its way), the duty stays for the next
    /// path. Only the holder of a live claim does this: `held` is the caller's claim, if it
    /// has one (the closing attempt); otherwise it claims the duty first, and when another path
    /// holds it, leaves it to that path. Returns the approval as it is now, and how it closed.
    pub(super) async fn finish(
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
        let (approval, closed) = self.resume(approval, claim).await?;
        if approval.owes_resume() {
            // Not settled: give the claim up so the next path need not wait for it to lapse.
            let released = self
                .pending
                .release_resume(&approval.request_id, claim, self.clock.now())
                .await;
            if let Err(error) = released {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not release the claim to resume; it lapses");
            }
            return Ok((approval, closed));
        }
        Ok((approval, closed))
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
        if approval.state.is_decision() {
            let result = match &sent {
                Ok(()) => ResumeResult::Resumed,
                Err(TaskTokenError::AlreadyClosed(_)) => ResumeResult::Closed,
                Err(_) => ResumeResult::Retry,
            };
            self.metrics.record(Measurement::resume_attempt(result));
        }
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
            if self.append(&approval.request_id, draft).await? {
                self.metrics.record(Measurement::closed(approval.state));
                if let Some(decided_at) = approval.decided_at {
                    let waited = (self.clock.now() - decided_at).num_milliseconds();
                    let seconds = waited.max(0) as f64 / 1000.0;
                    self.metrics
                        .record(Measurement::decision_to_resume(seconds));
                }
            }
            approval.state
        } else {
            let draft = EventDraft::new(EventKind::Expired)
                .reasons(vec![format!(
                    "the approvers decided ({}), but the workflow had already timed out",
                    approval.state.as_str()
                )])
                .once("expired");
            if self.append(&approval.request_id, draft).await? {
                self.metrics
                    .record(Measurement::closed(ApprovalState::Expired));
            }
            ApprovalState::Expired
        };
        let settled = self
            .pending
            .settle(
                &approval.request_id,
                &approval.task_token,
                state,
                self.clock.now(),
            )
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

    /// Logs each of `votes` that has no `vote` event yet, before an event that counts them: a
    /// click can store its vote and end (a crash, a throttled log) before logging it, and an
    /// auditor must find every counted vote in the chain. Such a vote often belongs to a click
    /// still on its way, which then finds its entry made (its idempotency key), so the entry
    /// says only that it was logged late, and when the vote was cast; it has no
    /// platform (the stored vote does not keep one).
    pub(super) async fn log_unlogged_votes(
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
}

/// Who closes a request in [`Approvals::close_if_decided`].
pub(super) struct Closer<'a> {
    /// The deciding voter; none when time decided.
    pub(super) decided_by: Option<&'a str>,
    /// Names the attempt (see [`PendingApproval::closed_by`]).
    pub(super) attempt: String,
    /// The re-evaluation offset, when the sweeper evaluates again because time passed: its
    /// `evaluated` event is logged before the workflow is resumed.
    pub(super) reevaluation: Option<u64>,
}

/// The `evaluated` event of a re-evaluation at `offset`: the evaluation with the time and the
/// votes it saw, so an auditor can rebuild its input.
pub(super) fn reevaluated(
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
