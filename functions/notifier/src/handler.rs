//! Maps the state machine's events to the core: `notify` opens the approval and posts its
//! messages (once, even when the step is retried); `expire` closes a timed-out approval.

use lambda_runtime::Diagnostic;
use regate_core::approvals::Approvals;
use regate_core::ports::{ChatPlatform, Clock, DecisionLog, PendingStore, TaskTokens};
use regate_core::{Evaluation, Request, TaskToken};
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

pub async fn handle<L, P, T, C, K>(
    approvals: &Approvals<L, P, T, C, K>,
    input: Input,
) -> Result<Value, Diagnostic>
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    C: ChatPlatform,
    K: Clock,
{
    let result = match input {
        Input::Notify {
            task_token,
            request,
            decision,
        } => approvals
            .notify(&request, &decision, &task_token)
            .await
            .map(|notified| {
                if !notified.skipped.is_empty() {
                    tracing::warn!(request_id = %request.id, skipped = ?notified.skipped, "notify targets skipped: their platform is not configured");
                }
                json!({"request_id": request.id, "messages": notified.approval.messages.len()})
            }),
        Input::Expire { request } => approvals.expire(&request.id).await.map(|approval| {
            let state = approval.map_or("unknown", |a| a.state.as_str());
            json!({"request_id": request.id, "state": state})
        }),
    };
    result.map_err(|error| {
        tracing::error!(error = %error, "notifier step failed");
        regate_aws::diagnostic(error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use regate_core::ports::{ChatError, PendingStore};
    use regate_core::{ApprovalState, EventKind};
    use regate_testkit::{first_evaluation, request, Fakes};

    fn notify_input(fakes: &Fakes, id: &str, token: &str) -> Input {
        let request = request(id).build();
        Input::Notify {
            task_token: TaskToken::new(token),
            decision: first_evaluation(&request, fakes.clock.now()),
            request,
        }
    }

    #[tokio::test]
    async fn the_message_is_posted_once_even_when_the_step_is_retried() {
        let fakes = Fakes::default();
        let approvals = fakes.approvals();
        handle(&approvals, notify_input(&fakes, "n1", "t1"))
            .await
            .unwrap();
        handle(&approvals, notify_input(&fakes, "n1", "t2"))
            .await
            .unwrap();
        assert_eq!(
            fakes.chat.posts.lock().unwrap().len(),
            1,
            "the teams target is skipped, the slack one posted once"
        );
        let stored = fakes.pending.get("n1").await.unwrap().unwrap();
        assert_eq!(
            stored.task_token.expose(),
            "t2",
            "the retried step's token replaces the dead one"
        );
        assert_eq!(stored.messages.len(), 1);
        assert_eq!(fakes.kinds("n1"), [EventKind::Notified]);
        let logged = &fakes.log.of("n1")[0];
        assert!(
            !serde_json::to_string(logged).unwrap().contains("t1"),
            "no task token in the log"
        );
    }

    #[tokio::test]
    async fn a_slack_outage_fails_with_a_retryable_name_and_posts_later() {
        let fakes = Fakes::default();
        let approvals = fakes.approvals();
        fakes
            .chat
            .fault
            .set(ChatError::RateLimited("Retry-After 30 s".into()));
        let error = handle(&approvals, notify_input(&fakes, "n2", "t1"))
            .await
            .unwrap_err();
        assert_eq!(error.error_type, "Chat.RateLimited");
        fakes.chat.fault.clear();
        handle(&approvals, notify_input(&fakes, "n2", "t2"))
            .await
            .unwrap();
        assert_eq!(fakes.chat.posts.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn expire_closes_the_request_and_updates_its_messages() {
        let fakes = Fakes::default();
        let approvals = fakes.approvals();
        handle(&approvals, notify_input(&fakes, "n3", "t1"))
            .await
            .unwrap();
        let request = request("n3").build();
        let out = handle(&approvals, Input::Expire { request }).await.unwrap();
        assert_eq!(out["state"], "expired");
        let updates = fakes.chat.updates.lock().unwrap().clone();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].1, ApprovalState::Expired);
        assert_eq!(fakes.log.of("n3").last().unwrap().kind, EventKind::Expired);
    }
}
