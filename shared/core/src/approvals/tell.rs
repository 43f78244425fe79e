//! Telling the requester how their request ended: a direct message once the workflow has the
//! outcome, sent by the sweeper (a resumed approval stays due until its requester is told), so
//! it is never in the way of a click's answer, the resume or the Expire step. Each attempt is
//! claimed with a conditional write, so of many sweepers one sends it; a few attempts at most,
//! each logged once as a `notified` event.

use serde_json::Value;

use super::{ApprovalError, Approvals};
use crate::event::{EventDraft, EventKind};
use crate::pending::{Conditional, OutcomeNotice, PendingApproval, RETRY_FAILED_SWEEP_AFTER};
use crate::ports::{ChatError, ChatPlatform, Clock, DecisionLog, PendingStore, Ports};

/// Claims on telling a requester before regate gives up (a platform, or the log, that keeps
/// failing): at most this many messages, however each attempt ended.
pub const TELL_ATTEMPTS: u64 = 5;
/// How long a claim to tell holds: an attempt that failed is retried when it lapses.
const TELL_LEASE: chrono::Duration = RETRY_FAILED_SWEEP_AFTER;
/// The `to` of the `notified` event that tells the requester (other `notified` events are the
/// approval messages).
pub const TO_REQUESTER: &str = "requester";

/// How an attempt to tell the requester ended, as the `notified` event's `status` says.
enum Told {
    Sent,
    /// The policy gave no address for the requester (a service without a known actor).
    NoAddress,
    /// The platform does not know the person, or is not configured.
    Undeliverable(String),
    /// The platform kept failing for every attempt.
    GaveUp(ChatError),
}

impl<P: Ports> Approvals<P> {
    /// Tells the requester of a resumed approval how it ended, when that is still owed and no
    /// other path holds the claim to. A failure is logged and left to a later sweep; it never
    /// fails the caller. Returns the approval as it is now.
    pub(super) async fn tell_requester(&self, approval: PendingApproval) -> PendingApproval {
        if !approval.owes_tell() {
            return approval;
        }
        match self.try_to_tell(&approval).await {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not tell the requester the outcome; a later sweep tries again");
                approval
            }
        }
    }

    async fn try_to_tell(
        &self,
        approval: &PendingApproval,
    ) -> Result<PendingApproval, ApprovalError> {
        let request_id = &approval.request_id;
        let now = self.clock.now();
        let claimed = self
            .pending
            .claim_tell(request_id, approval.tell_claims, now, now + TELL_LEASE)
            .await
            .map_err(ApprovalError::PendingStore)?;
        let claimed = match claimed {
            Conditional::Done(item) => *item,
            Conditional::Lost(item) => return Ok(item.map_or_else(|| approval.clone(), |i| *i)),
        };
        let claim = claimed.tell_claims;
        // An earlier claim may have sent and logged the message, then ended before recording so.
        if claim > 1 && self.logged_telling(request_id).await? {
            return self.mark_told(claimed, claim).await;
        }
        let to = claimed.evaluation.decision.tell_requester.clone();
        let told = match &to {
            // Earlier attempts may have sent it and failed to log it: never more than this many.
            _ if claim > TELL_ATTEMPTS => Told::GaveUp(ChatError::Unavailable(format!(
                "{} attempts did not record a message",
                claim - 1
            ))),
            None => Told::NoAddress,
            Some(to) => {
                let notice = OutcomeNotice { approval: &claimed };
                match self.chat.tell_outcome(to, notice).await {
                    Ok(Some(_)) => Told::Sent,
                    Ok(None) => {
                        Told::Undeliverable(format!("{} is not configured", to.platform().as_str()))
                    }
                    Err(ChatError::Refused(why)) => Told::Undeliverable(why),
                    Err(error) => {
                        let error = self.chat_failed(to.platform(), error);
                        if claim < TELL_ATTEMPTS {
                            tracing::warn!(request_id, attempt = claim, error = %error, "telling the requester failed; the sweeper tries again");
                            return Ok(claimed);
                        }
                        Told::GaveUp(error)
                    }
                }
            }
        };
        let mut draft = EventDraft::new(EventKind::Notified)
            .data("to", TO_REQUESTER)
            .data("outcome", claimed.state.as_str())
            .once(format!("notified#{TO_REQUESTER}"));
        if let Some(to) = &to {
            draft = draft
                .data("platform", to.platform().as_str())
                .data("user", to.person().unwrap_or_default());
        }
        let (status, reason) = match told {
            Told::Sent => ("sent", None),
            Told::NoAddress => (
                "no_address",
                Some("the policy knows no address for the requester (tell_requester)".to_string()),
            ),
            Told::Undeliverable(why) => ("undeliverable", Some(why)),
            Told::GaveUp(error) => (
                "gave_up",
                Some(format!(
                    "{TELL_ATTEMPTS} attempts failed; the last: {error}"
                )),
            ),
        };
        draft = draft.data("status", status);
        if let Some(reason) = reason {
            tracing::warn!(
                request_id,
                status,
                reason,
                "the requester was not told the outcome"
            );
            draft = draft.reasons(vec![reason]);
        }
        self.append(request_id, draft).await?;
        self.mark_told(claimed, claim).await
    }

    /// Whether the log already has the `notified` event of telling the requester.
    async fn logged_telling(&self, request_id: &str) -> Result<bool, ApprovalError> {
        let events = self
            .log
            .events(request_id)
            .await
            .map_err(ApprovalError::DecisionLog)?;
        Ok(events.iter().any(|event| {
            event.kind == EventKind::Notified
                && event.data.get("to").and_then(Value::as_str) == Some(TO_REQUESTER)
        }))
    }

    async fn mark_told(
        &self,
        claimed: PendingApproval,
        claim: u64,
    ) -> Result<PendingApproval, ApprovalError> {
        let told = self
            .pending
            .told(&claimed.request_id, claim)
            .await
            .map_err(ApprovalError::PendingStore)?;
        Ok(match told {
            Conditional::Done(item) | Conditional::Lost(Some(item)) => *item,
            Conditional::Lost(None) => claimed,
        })
    }
}
