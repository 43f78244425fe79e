//! Opening an approval for a paused workflow and posting its message to each notify target,
//! once: a retried step adopts what an earlier attempt posted instead of posting again.

use super::{ApprovalError, Approvals};
use crate::decision::{Evaluation, NotifyTarget};
use crate::event::{EventDraft, EventKind};
use crate::pending::{
    ApprovalState, ApprovalView, Conditional, MessageRef, PendingApproval, TaskToken,
};
use crate::ports::{ChatError, ChatPlatform, Clock, PendingStore, Ports, StoreError};
use crate::request::Request;

/// What `notify` did: the approval as stored, and the targets no configured platform serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Notified {
    pub approval: PendingApproval,
    pub skipped: Vec<NotifyTarget>,
}

impl<P: Ports> Approvals<P> {
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
    pub(super) async fn post_missing(
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
                let found = found.map_err(|e| self.chat_failed(target.platform(), e));
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
                Err(error) => {
                    let error = self.chat_failed(target.platform(), error);
                    return Err(ApprovalError::Chat(error));
                }
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
        let platform = target.platform().as_str();
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
        self.append(request_id, draft).await.map(drop)
    }

    async fn open(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
        execution_id: &str,
    ) -> Result<PendingApproval, ApprovalError> {
        let fresh =
            PendingApproval::opened(request, evaluation, token, execution_id, self.clock.now());
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
}
