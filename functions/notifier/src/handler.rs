//! `notify`: store the pending approval with its task token and post the approval message to
//! each target, once (a retried step posts only where it has not posted yet). `expire`: close a
//! timed-out request and show it on its messages.

use lambda_runtime::Diagnostic;
use regate_core::approvals::{ApprovalError, Approvals};
use regate_core::decision::NotifyTarget;
use regate_core::event::{EventDraft, EventKind};
use regate_core::ports::{
    ApprovalView, ChatError, ChatPlatform, Clock, DecisionLog, MessageRef, PendingApproval,
    PendingStore, StoreError, TaskToken, TaskTokens,
};
use regate_core::{Evaluation, Request};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Input {
    Notify {
        task_token: TaskToken,
        request: Request,
        decision: Evaluation,
    },
    Expire {
        request: Request,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("{0}")]
    Chat(#[from] ChatError),
    #[error("decision log: {0}")]
    DecisionLog(StoreError),
    #[error("no notify target of request {0} can be reached: {1}")]
    NoTarget(String, String),
}

impl From<NotifierError> for Diagnostic {
    fn from(error: NotifierError) -> Self {
        let error_type = match &error {
            NotifierError::Approval(e) => e.name(),
            NotifierError::Chat(e) => format!("Chat.{}", e.kind_name()),
            NotifierError::DecisionLog(e) => format!("DecisionLog.{}", e.kind_name()),
            NotifierError::NoTarget(..) => "Chat.NoTarget".into(),
        };
        Diagnostic {
            error_type,
            error_message: error.to_string(),
        }
    }
}

pub struct Notifier<L, P, T, C, K> {
    pub approvals: Approvals<L, P, T>,
    pub chat: C,
    pub clock: K,
}

fn same_target(message: &MessageRef, target: &NotifyTarget) -> bool {
    match (message, target) {
        (
            MessageRef::Slack {
                channel: posted, ..
            },
            NotifyTarget::Slack { channel },
        ) => posted == channel,
        (
            MessageRef::Teams {
                conversation: posted,
                ..
            },
            NotifyTarget::Teams { conversation },
        ) => posted == conversation,
        _ => false,
    }
}

impl<L: DecisionLog, P: PendingStore, T: TaskTokens, C: ChatPlatform, K: Clock>
    Notifier<L, P, T, C, K>
{
    pub async fn handle(&self, input: Input) -> Result<Value, NotifierError> {
        match input {
            Input::Notify {
                task_token,
                request,
                decision,
            } => self.notify(&request, &decision, &task_token).await,
            Input::Expire { request } => self.expire(&request.id).await,
        }
    }

    async fn notify(
        &self,
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
    ) -> Result<Value, NotifierError> {
        let now = self.clock.now();
        let mut approval = self.approvals.open(request, evaluation, token, now).await?;
        let mut skipped = Vec::new();
        for target in &evaluation.decision.notify {
            if approval.messages.iter().any(|m| same_target(m, target)) {
                continue;
            }
            let view = ApprovalView {
                approval: &approval,
                evaluation,
            };
            let Some(message) = self.chat.post(target, view).await? else {
                skipped.push(serde_json::to_string(target).unwrap_or_default());
                continue;
            };
            if let regate_core::ports::Conditional::Done(updated) = self
                .approvals
                .pending
                .add_messages(&request.id, std::slice::from_ref(&message))
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                approval = *updated;
            }
            let (platform, data) = match &message {
                MessageRef::Slack { channel, ts } => {
                    ("slack", json!({"channel": channel, "ts": ts}))
                }
                MessageRef::Teams {
                    conversation,
                    activity_id,
                    ..
                } => (
                    "teams",
                    json!({"conversation": conversation, "activity_id": activity_id}),
                ),
            };
            let mut draft = EventDraft::new(EventKind::Notified).platform(platform);
            if let Value::Object(fields) = data {
                draft.data = fields;
            }
            self.approvals
                .log
                .append(&request.id, draft, now)
                .await
                .map_err(NotifierError::DecisionLog)?;
            tracing::info!(request_id = %request.id, platform, "approval message posted");
        }
        if approval.messages.is_empty() {
            return Err(NotifierError::NoTarget(
                request.id.clone(),
                format!("none of {skipped:?} is served by a configured platform"),
            ));
        }
        if !skipped.is_empty() {
            tracing::warn!(request_id = %request.id, ?skipped, "notify targets skipped: their platform is not configured");
        }
        Ok(json!({"request_id": request.id, "messages": approval.messages.len()}))
    }

    async fn expire(&self, request_id: &str) -> Result<Value, NotifierError> {
        let now = self.clock.now();
        let Some(approval) = self.approvals.expire(request_id, now).await? else {
            return Ok(json!({"request_id": request_id, "state": "unknown"}));
        };
        self.refresh_messages(&approval).await;
        Ok(json!({"request_id": request_id, "state": approval.state.as_str()}))
    }

    /// Shows the approval's current state on every message; a failure is logged, never fatal.
    async fn refresh_messages(&self, approval: &PendingApproval) {
        let view = ApprovalView {
            approval,
            evaluation: &approval.evaluation,
        };
        for message in &approval.messages {
            if let Err(error) = self.chat.update(message, view).await {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not update an approval message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use regate_core::ports::{ApprovalState, SystemClock};
    use regate_core::PreparedRequest;
    use regate_testkit::{
        default_policy, request, MemoryLog, MemoryPending, RecordingChat, RecordingTokens,
    };
    use std::sync::Arc;

    type TestNotifier =
        Notifier<MemoryLog, MemoryPending, RecordingTokens, RecordingChat, SystemClock>;

    fn notifier() -> TestNotifier {
        Notifier {
            approvals: Approvals {
                log: MemoryLog::default(),
                pending: MemoryPending::default(),
                tokens: RecordingTokens::default(),
                policy: Arc::new(default_policy()),
            },
            chat: RecordingChat::default(),
            clock: SystemClock,
        }
    }

    fn notify_input(id: &str, token: &str) -> Input {
        let request = request(id, "deploy", "production", "service", "payments");
        let now: DateTime<Utc> = Utc::now();
        let decision = default_policy()
            .evaluate(&PreparedRequest::new(request.clone()).unwrap(), &[], now)
            .unwrap();
        Input::Notify {
            task_token: TaskToken::new(token),
            request,
            decision,
        }
    }

    #[tokio::test]
    async fn the_message_is_posted_once_even_when_the_step_is_retried() {
        let n = notifier();
        n.handle(notify_input("n1", "t1")).await.unwrap();
        n.handle(notify_input("n1", "t2")).await.unwrap();
        assert_eq!(
            n.chat.posts.lock().unwrap().len(),
            1,
            "the teams target is skipped, the slack one posted once"
        );
        let stored = n.approvals.pending.get("n1").await.unwrap().unwrap();
        assert_eq!(
            stored.task_token.expose(),
            "t2",
            "the retried step's token replaces the dead one"
        );
        assert_eq!(stored.messages.len(), 1);
        let kinds: Vec<_> = n.approvals.log.of("n1").iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Notified]);
        let logged = &n.approvals.log.of("n1")[0];
        assert!(
            !serde_json::to_string(logged).unwrap().contains("t1"),
            "no task token in the log"
        );
    }

    #[tokio::test]
    async fn a_slack_outage_fails_with_a_retryable_name_and_posts_later() {
        let n = notifier();
        *n.chat.fail_with.lock().unwrap() = Some(ChatError::RateLimited("Retry-After 30 s".into()));
        let error = n.handle(notify_input("n2", "t1")).await.unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "Chat.RateLimited");
        *n.chat.fail_with.lock().unwrap() = None;
        n.handle(notify_input("n2", "t2")).await.unwrap();
        assert_eq!(n.chat.posts.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn expire_closes_the_request_and_updates_its_messages() {
        let n = notifier();
        n.handle(notify_input("n3", "t1")).await.unwrap();
        let request = request("n3", "deploy", "production", "service", "payments");
        let out = n.handle(Input::Expire { request }).await.unwrap();
        assert_eq!(out["state"], "expired");
        let updates = n.chat.updates.lock().unwrap().clone();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].1, ApprovalState::Expired);
        assert_eq!(
            n.approvals.log.of("n3").last().unwrap().kind,
            EventKind::Expired
        );
    }
}
