//! Request in, decision out: validate the request, evaluate the policy, record `requested`
//! and `evaluated` (once, even when Step Functions retries the step).

use lambda_runtime::Diagnostic;
use regate_core::event::{EventDraft, EventKind};
use regate_core::ports::{Clock, DecisionLog, StoreError};
use regate_core::{Evaluation, PolicyEngine, PolicyError, PreparedRequest, Request, RequestError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the state machine passes: the execution input and the execution name (the default
/// request id).
#[derive(Debug, Deserialize)]
pub struct Input {
    pub request: Value,
    #[serde(default)]
    pub execution_name: Option<String>,
}

/// The validated request and the decision record, for the state machine's next steps.
#[derive(Debug, Serialize)]
pub struct Output {
    pub request: Request,
    pub decision: DecisionRecord,
}

#[derive(Debug, Serialize)]
pub struct DecisionRecord {
    pub request_id: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    DecisionLog(#[from] StoreError),
}

impl From<EvaluatorError> for Diagnostic {
    fn from(error: EvaluatorError) -> Self {
        let error_type = match &error {
            EvaluatorError::InvalidRequest(_) => "InvalidRequest".to_string(),
            EvaluatorError::Policy(_) => "PolicyError".to_string(),
            EvaluatorError::DecisionLog(e) => format!("DecisionLog.{}", e.kind_name()),
        };
        Diagnostic {
            error_type,
            error_message: error.to_string(),
        }
    }
}

pub struct Evaluator<L, C> {
    pub log: L,
    pub policy: PolicyEngine,
    pub clock: C,
}

impl<L: DecisionLog, C: Clock> Evaluator<L, C> {
    pub async fn handle(&self, input: Input) -> Result<Output, EvaluatorError> {
        let request = Request::from_value(&input.request, input.execution_name.as_deref())
            .inspect_err(|e| {
                tracing::warn!(error = %e, "invalid request");
            })?;
        let now = self.clock.now();
        let prepared = PreparedRequest::new(request.clone())?;
        let evaluation = self.policy.evaluate(&prepared, &[], now)?;
        let logged = self.log.events(&request.id).await?;
        if !logged.iter().any(|e| e.kind == EventKind::Requested) {
            let requested = EventDraft::new(EventKind::Requested)
                .actor(&request.requester.id)
                .data(
                    "request",
                    serde_json::to_value(&request).unwrap_or_default(),
                );
            self.log.append(&request.id, requested, now).await?;
        }
        let already_evaluated = logged.iter().any(|e| {
            e.kind == EventKind::Evaluated
                && e.input_digest.as_deref() == Some(evaluation.input_digest.as_str())
        });
        if !already_evaluated {
            self.log
                .append(
                    &request.id,
                    EventDraft::new(EventKind::Evaluated).evaluation(&evaluation),
                    now,
                )
                .await?;
        }
        tracing::info!(request_id = %request.id, outcome = %evaluation.decision.outcome, "evaluated");
        Ok(Output {
            decision: DecisionRecord {
                request_id: request.id.clone(),
                evaluation,
            },
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use regate_testkit::{default_policy, MemoryLog};
    use serde_json::json;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            regate_core::time::parse_rfc3339("2026-06-01T12:00:00Z").unwrap()
        }
    }

    fn evaluator() -> Evaluator<MemoryLog, Fixed> {
        Evaluator {
            log: MemoryLog::default(),
            policy: default_policy(),
            clock: Fixed,
        }
    }

    fn input(request: Value) -> Input {
        Input {
            request,
            execution_name: Some("exec-7".into()),
        }
    }

    fn deploy() -> Value {
        json!({"action": "deploy", "environment": "production", "resource": {"type": "service", "name": "payments"},
               "requester": {"id": "dev@example.com", "kind": "human"}, "summary": "Deploy payments"})
    }

    #[tokio::test]
    async fn a_request_without_id_takes_the_execution_name_and_is_logged_once() {
        let e = evaluator();
        let out = e.handle(input(deploy())).await.unwrap();
        assert_eq!(out.decision.request_id, "exec-7");
        assert_eq!(
            out.decision.evaluation.decision.outcome,
            regate_core::Outcome::ApprovalRequired
        );
        e.handle(input(deploy())).await.unwrap();
        let kinds: Vec<_> = e.log.of("exec-7").iter().map(|ev| ev.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Requested, EventKind::Evaluated],
            "a retried step logs nothing twice"
        );
        let output = serde_json::to_value(&out).unwrap();
        assert_eq!(output["decision"]["timeout_seconds"], 3600);
        assert!(output["decision"]["policy_revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
    }

    #[tokio::test]
    async fn an_invalid_request_fails_with_invalid_request_naming_the_field() {
        let mut bad = deploy();
        bad["resource"] = json!({"type": "service"});
        let error = evaluator().handle(input(bad)).await.unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "InvalidRequest");
        assert!(
            diagnostic.error_message.contains("resource.name"),
            "{}",
            diagnostic.error_message
        );
    }
}
