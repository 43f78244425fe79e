//! The scheduled backstop: resumes still owed, expiry of approvals whose workflow is gone or
//! timed out, closes on stored votes a click left undone, re-evaluation when time passes, and
//! reminders in the message's thread.

use chrono::{DateTime, Utc};

use crate::metrics::{Measurement, Metrics};

use super::close::{reevaluated, Closer};
use super::vote::VoteResult;
use super::{attempt_tag, ApprovalError, Approvals, Closed, CLOSE_ATTEMPTS, RESUME_LEASE};
use crate::decision::NotifyTarget;
use crate::event::{EventDraft, EventKind};
use crate::pending::{ApprovalState, Closing, Conditional, PendingApproval, Reminder};
use crate::policy::PreparedRequest;
use crate::ports::{
    ChatPlatform, Clock, ExecutionStatus, PendingStore, Ports, StoreError, TaskTokens,
};
use crate::rules::normalize;

/// What one sweep did, for its logs and its result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Approvals due that the sweep found (up to its batch).
    pub due: usize,
    /// Of those, the ones it looked at (the others had moved on since the index listed them,
    /// or were left for the next sweep when its time ran out).
    pub checked: usize,
    /// Due approvals left for the next sweep, first in line, because this one ran out of time.
    pub deferred: usize,
    /// Closed approvals whose workflow now has the outcome.
    pub resumed: usize,
    /// Approvals closed as expired: their workflow is gone, or timed out before taking a vote.
    pub expired: usize,
    /// Resumed approvals whose requester was still owed the outcome.
    pub told: usize,
    /// Approvals whose workflow still waits.
    pub waiting: usize,
    /// Of those, how many were evaluated again because time passed, and how many reminded.
    pub reevaluated: usize,
    pub reminded: usize,
    /// Approvals that failed this time (retried after [`RETRY_FAILED_SWEEP_AFTER`]), by
    /// request id.
    pub failed: Vec<String>,
}

/// How much one sweep may do: look at `items` approvals at most, and start none after `time`
/// (the rest stay due, first in line for the next sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepBudget {
    pub items: usize,
    pub time: std::time::Duration,
}

impl SweepBudget {
    /// A budget of `items` approvals, with no time limit.
    pub fn items(items: usize) -> Self {
        Self {
            items,
            time: std::time::Duration::MAX,
        }
    }
}

pub use crate::pending::RETRY_FAILED_SWEEP_AFTER;

impl<P: Ports> Approvals<P> {
    /// The durable backstop, run on a schedule: looks at each approval that is due (see
    /// [`PendingApproval::next_due`]), oldest first, within `budget`. It resumes every closed
    /// approval whose workflow has not taken its outcome, expires open approvals whose workflow
    /// is gone (so no message keeps live buttons for a workflow that will never read them), and
    /// does what time asks of the others.
    pub async fn sweep(&self, budget: SweepBudget) -> Result<SweepReport, ApprovalError> {
        self.sweep_at(budget, self.clock.now()).await
    }

    /// A sweep as of `now`. Each open approval whose workflow still waits gets what time asks
    /// of it: a close on its stored votes, a re-evaluation that is due (see
    /// [`Self::reevaluate_if_due`]), then a reminder that is due (see [`Self::remind_if_due`]);
    /// then it is due again at its next duty.
    pub async fn sweep_at(
        &self,
        budget: SweepBudget,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, ApprovalError> {
        let started = std::time::Instant::now();
        let due = self
            .pending
            .due(now, budget.items)
            .await
            .map_err(ApprovalError::PendingStore)?;
        // The lag: how long the oldest due approval has waited for a sweep (0 when none is
        // due). A sweep a minute keeps it under a minute; more means sweeps fall behind.
        let lag = due
            .first()
            .map_or(0, |oldest| (now - oldest.due_at).num_milliseconds().max(0));
        self.metrics
            .record(Measurement::sweep_lag(lag as f64 / 1000.0));
        let mut report = SweepReport {
            due: due.len(),
            ..SweepReport::default()
        };
        for (looked_at, entry) in due.iter().enumerate() {
            if looked_at > 0 && started.elapsed() >= budget.time {
                report.deferred = due.len() - looked_at;
                tracing::warn!(
                    deferred = report.deferred,
                    "the sweep ran out of time; the next one carries on"
                );
                break;
            }
            let approval = match self.load(&entry.request_id).await {
                Ok(approval) => approval,
                Err(error) => {
                    tracing::warn!(request_id = %entry.request_id, error = %error, "could not read a due approval; the next sweep retries it");
                    report.failed.push(entry.request_id.clone());
                    continue;
                }
            };
            // The index lags behind the item: one another path moved on is not due now.
            let Some(approval) = approval.filter(|a| a.due_at.is_some_and(|at| at <= now)) else {
                continue;
            };
            self.visit(approval, now, &mut report).await;
        }
        self.record_sweep(&report);
        Ok(report)
    }

    /// The sweep of one request's approval alone, as of `now`, due or not: an operator's nudge
    /// to a request they are watching (nothing when it owes its workflow nothing).
    pub async fn sweep_request(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, ApprovalError> {
        let mut report = SweepReport::default();
        if let Some(approval) = self.load(request_id).await?.filter(|a| a.owes_anything()) {
            report.due = 1;
            self.visit(approval, now, &mut report).await;
        }
        self.record_sweep(&report);
        Ok(report)
    }

    /// Sweeps one approval and counts what happened. One that fails is looked at again after
    /// [`RETRY_FAILED_SWEEP_AFTER`] (sooner when a write moves it): a request that keeps
    /// failing does not take every sweep's first place.
    async fn visit(&self, approval: PendingApproval, now: DateTime<Utc>, report: &mut SweepReport) {
        report.checked += 1;
        let request_id = approval.request_id.clone();
        match self.sweep_one(approval, now).await {
            Ok(Swept::Resumed) => report.resumed += 1,
            Ok(Swept::Expired) => report.expired += 1,
            Ok(Swept::Told) => report.told += 1,
            Ok(Swept::Waiting {
                reevaluated,
                reminded,
            }) => {
                report.waiting += 1;
                report.reevaluated += usize::from(reevaluated);
                report.reminded += usize::from(reminded);
            }
            Err(error) => {
                tracing::warn!(request_id, error = %error, "sweeping an approval failed; a later sweep retries it");
                if let Err(error) = self.back_off(&request_id, now).await {
                    tracing::warn!(request_id, error = %error, "could not put the failed approval back; the next sweep retries it");
                }
                report.failed.push(request_id);
            }
        }
    }

    /// Puts an approval whose sweep failed back for [`RETRY_FAILED_SWEEP_AFTER`], or until its
    /// next duty when that comes sooner, as it is now (the failed sweep may have written it).
    async fn back_off(&self, request_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        for _ in 0..2 {
            let Some(current) = self.pending.get(request_id).await? else {
                return Ok(());
            };
            if current.resumed {
                return Ok(());
            }
            let retry = now + RETRY_FAILED_SWEEP_AFTER;
            let sooner = current.next_due(now).filter(|due| *due > now);
            let due = sooner.map_or(retry, |due| due.min(retry));
            match self
                .pending
                .reschedule(request_id, current.version, due)
                .await?
            {
                Conditional::Done(_) => return Ok(()),
                Conditional::Lost(_) => continue,
            }
        }
        Ok(())
    }

    fn record_sweep(&self, report: &SweepReport) {
        for (name, value) in [
            ("SweepItems", report.due),
            ("SweepResumed", report.resumed),
            ("Reminders", report.reminded),
            ("Escalations", report.reevaluated),
            ("Expiries", report.expired),
            ("SweepFailures", report.failed.len()),
        ] {
            self.metrics.record(Measurement::sweep(name, value));
        }
    }

    async fn sweep_one(
        &self,
        approval: PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<Swept, ApprovalError> {
        if approval.resumed {
            self.tell_requester(approval).await;
            return Ok(Swept::Told);
        }
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
        if let Some(closed) = closed {
            self.refresh(&closed, &closed.evaluation).await;
            self.tell_requester(closed).await;
        }
        Ok(Swept::Expired)
    }

    async fn sweep_closed(&self, approval: PendingApproval) -> Result<Swept, ApprovalError> {
        let (now, closed) = self.finish(approval, None).await?;
        self.refresh(&now, &now.evaluation).await;
        self.tell_requester(now).await;
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
        let (approval, reminded) = self.remind_if_due(approval, now).await?;
        // Its next duty: a write above stored it, unless nothing was written (a settle time
        // or the deadline's grace passed with nothing to do).
        if let Some(due) = approval
            .next_due(now)
            .filter(|due| approval.due_at != Some(*due))
        {
            let moved = self
                .pending
                .reschedule(&approval.request_id, approval.version, due)
                .await
                .map_err(ApprovalError::PendingStore)?;
            if let Conditional::Lost(_) = moved {
                tracing::debug!(request_id = %approval.request_id, "the approval changed while it was swept; its writer set when it is due");
            }
        }
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
        let evaluation = self
            .policy
            .current()?
            .evaluate(&prepared, &approval.votes, time)?;
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
            let due = approval.due_after(now, |a| {
                a.evaluation = (*evaluation).clone();
                a.reevaluated_through = offset;
                a.evaluated_at = Some(time.now);
            });
            let stored = self
                .pending
                .reevaluate(
                    &request_id,
                    approval.version,
                    &evaluation,
                    offset,
                    time.now,
                    due,
                )
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
        approval: PendingApproval,
        now: DateTime<Utc>,
    ) -> Result<(PendingApproval, bool), ApprovalError> {
        let offsets = &approval.evaluation.decision.remind_after_seconds;
        let Some(offset) = due_offset(offsets, approval.reminded_through, &approval, now) else {
            return Ok((approval, false));
        };
        let request_id = approval.request_id.clone();
        let from = approval.reminded_through;
        let due = approval.due_after(now, |a| a.reminded_through = offset);
        let claimed = self
            .pending
            .advance_reminders(&request_id, approval.version, offset, due)
            .await
            .map_err(ApprovalError::PendingStore)?;
        let claimed = match claimed {
            Conditional::Done(claimed) => *claimed,
            // Another sweeper took it, or a vote came in between (the next sweep sends it).
            Conditional::Lost(Some(item)) => return Ok((*item, false)),
            Conditional::Lost(None) => return Ok((approval, false)),
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
                    let error = self.chat_failed(message.platform(), error);
                    tracing::warn!(request_id, error = %error, "could not post a reminder");
                    failure = Some(error);
                }
            }
        }
        if let (true, Some(error)) = (places.is_empty(), failure) {
            self.give_reminder_back(claimed, from, offset, now).await;
            return Err(ApprovalError::Chat(error));
        }
        let draft = EventDraft::new(EventKind::Reminded)
            .data("remind_after", offset)
            .data("waiting_on", reminder.waiting_on.clone())
            .data("left_seconds", reminder.left.num_seconds().max(0))
            .data("places", places)
            .once(format!("reminded#{offset}"));
        self.append(&request_id, draft).await?;
        tracing::info!(request_id, offset, "reminder posted");
        Ok((claimed, true))
    }

    /// Gives the reminder at `offset`, which no message could take, back to a later sweep
    /// (reminders taken care of up to `from` again, due after [`RETRY_FAILED_SWEEP_AFTER`]),
    /// however many votes come in meanwhile.
    async fn give_reminder_back(
        &self,
        mut claimed: PendingApproval,
        from: u64,
        offset: u64,
        now: DateTime<Utc>,
    ) {
        let request_id = claimed.request_id.clone();
        for _ in 0..CLOSE_ATTEMPTS {
            // Back in two minutes, or at a duty that comes sooner (a vote's settle time).
            let retry = now + RETRY_FAILED_SWEEP_AFTER;
            let sooner = claimed.due_after(now, |a| a.reminded_through = offset);
            let due = if sooner > now {
                sooner.min(retry)
            } else {
                retry
            };
            let given_back = self
                .pending
                .advance_reminders(&request_id, claimed.version, from, due)
                .await;
            match given_back {
                Ok(Conditional::Lost(Some(item)))
                    if item.state == ApprovalState::Pending && item.reminded_through == offset =>
                {
                    claimed = *item;
                }
                Ok(_) => return,
                Err(store) => {
                    tracing::warn!(request_id, error = %store, "could not give the reminder back; it is skipped");
                    return;
                }
            }
        }
        tracing::warn!(
            request_id,
            "could not give the reminder back against concurrent votes; it is skipped"
        );
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
                self.clock.now(),
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
        if self.append(&expired.request_id, draft).await? {
            self.metrics
                .record(Measurement::closed(ApprovalState::Expired));
        }
        Ok(expired)
    }
}

/// What a sweep did with one approval.
enum Swept {
    Resumed,
    Expired,
    /// Resumed before; its requester was owed the outcome.
    Told,
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
