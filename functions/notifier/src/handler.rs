//! Maps the state machine's events to the core: `notify` opens the approval and posts its
//! messages (once, even when the step is retried); `expire` closes a timed-out approval.

use lambda_runtime::Diagnostic;
use regate_core::approvals::Approvals;
use regate_core::ports::Ports;
use regate_core::{Evaluation, Request, TaskToken};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Input {
    Notify {
        task_token: TaskToken,
        request: Request,
        decision: Box<Evaluation>,
        execution_id: String,
    },
    Expire {
        request: Request,
        execution_id: String,
    },
}

pub async fn handle<P: Ports>(approvals: &Approvals<P>, input: Input) -> Result<Value, Diagnostic> {
    let result = match input {
        Input::Notify {
            task_token,
            request,
            decision,
            execution_id,
        } => approvals
            .notify(&request, &decision, &task_token, &execution_id)
            .await
            .map(|notified| {
                if !notified.skipped.is_empty() {
                    tracing::warn!(request_id = %request.id, skipped = ?notified.skipped, "notify targets skipped: their platform is not configured");
                }
                json!({"request_id": request.id, "messages": notified.approval.messages.len()})
            }),
        Input::Expire {
            request,
            execution_id,
        } => (approvals.expire(&request.id, &execution_id).await).map(|approval| {
            let state = approval.map_or("unknown", |a| a.state.as_str());
            json!({"request_id": request.id, "state": state})
        }),
    };
    result.map_err(|error| {
        tracing::error!(error = %error, "notifier step failed");
        regate_aws::diagnostic(error)
    })
}
