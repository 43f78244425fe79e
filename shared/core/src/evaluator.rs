//! The first step of every approval: validate the request, evaluate the policy, and record
//! `requested` and `evaluated` once, even when Step Functions retries the step.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::approvals::ApprovalError;
use crate::decision::Evaluation;
use crate::event::{EventDraft, EventKind};
use crate::identity::{take_token, IdentityTokens, NoTrustedIssuers};
use crate::metrics::{Measurement, Metrics};
use crate::policy::{EvaluationTime, LivePolicy, PreparedRequest};
use crate::ports::{Clock, DecisionLog};
use crate::request::Request;

/// The validated request and its decision record, for the state machine's next steps.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluated {
    pub request: Request,
    pub decision: DecisionRecord,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub request_id: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// Evaluates requests with the current policy; `I` checks their identity tokens (by default
/// no issuer is trusted, and every token is refused saying so).
pub struct Evaluator<L, K, M, I = NoTrustedIssuers> {
    log: L,
    clock: K,
    metrics: M,
    policy: Arc<LivePolicy>,
    identity: I,
}

impl<L: DecisionLog, K: Clock, M: Metrics> Evaluator<L, K, M> {
    pub fn new(log: L, clock: K, metrics: M, policy: Arc<LivePolicy>) -> Self {
        Self {
            log,
            clock,
            metrics,
            policy,
            identity: NoTrustedIssuers,
        }
    }
}

impl<L: DecisionLog, K: Clock, M: Metrics, I: IdentityTokens> Evaluator<L, K, M, I> {
    /// The same evaluator, checking identity tokens with `identity`.
    pub fn with_identity<J: IdentityTokens>(self, identity: J) -> Evaluator<L, K, M, J> {
        Evaluator {
            log: self.log,
            clock: self.clock,
            metrics: self.metrics,
            policy: self.policy,
            identity,
        }
    }

    /// The policy it evaluates with now.
    pub fn policy(&self) -> &LivePolicy {
        &self.policy
    }

    /// Evaluates `raw` for workflow `execution_id` (the request id defaults to
    /// `default_id`, the execution name) and logs it. A request id that another execution
    /// already used fails with `RequestIdInUse`. An identity token is taken out of the request
    /// first and checked: what the check found is `input.identity` (a refused token is the
    /// policy's to decide on); an issuer that cannot be reached fails with
    /// `IdentityUnavailable`, which the state machine retries.
    pub async fn evaluate(
        &self,
        raw: &Value,
        default_id: Option<&str>,
        execution_id: &str,
    ) -> Result<Evaluated, ApprovalError> {
        let (raw, token) = take_token(raw);
        let mut request = Request::from_value(&raw, default_id)?;
        request.identity = match token {
            None => None,
            Some(Err(refused)) => Some(refused),
            Some(Ok(token)) => Some(
                self.identity
                    .check(&token)
                    .await
                    .map_err(ApprovalError::IdentityUnavailable)?,
            ),
        };
        let now = self.clock.now();
        let prepared = PreparedRequest::new(request.clone())?;
        let time = EvaluationTime::opening(now);
        let evaluation = self.policy.current()?.evaluate(&prepared, &[], time)?;
        let log_error = ApprovalError::DecisionLog;
        let requested = EventDraft::new(EventKind::Requested)
            .actor(&request.requester.id)
            .data(
                "request",
                serde_json::to_value(&request).unwrap_or_default(),
            )
            .data("execution", execution_id)
            .once("requested");
        let mut evaluated = EventDraft::new(EventKind::Evaluated)
            .evaluation(&evaluation)
            .evaluated_at(time)
            .once(format!("evaluated#{}", evaluation.input_digest));
        if !evaluation.decision.outcome.is_final() {
            evaluated = evaluated.waiting(&evaluation);
        }
        // The `requested` event's key decides whose request id this is: a second append of it
        // is this execution's own retry, or another execution that started with the same id at
        // the same time (or earlier). Only the holder's execution goes on.
        let first = self.log.append(&request.id, requested, now).await;
        let first = first.map_err(log_error)?.is_some();
        if !first {
            let logged = self.log.events(&request.id).await.map_err(log_error)?;
            check_holder(&request.id, &logged, execution_id)?;
        }
        self.log
            .append(&request.id, evaluated, now)
            .await
            .map_err(log_error)?;
        // A request decided at once is a decision (once: a retried step is not another); one
        // that waits for approvers counts when its approval closes.
        if first && evaluation.decision.outcome.is_final() {
            let outcome = evaluation.decision.outcome.as_str();
            self.metrics.record(Measurement::decision(outcome));
        }
        tracing::info!(request_id = %request.id, outcome = %evaluation.decision.outcome, "evaluated");
        Ok(Evaluated {
            decision: DecisionRecord {
                request_id: request.id.clone(),
                evaluation,
            },
            request,
        })
    }
}

/// Fails with `RequestIdInUse` when the `requested` event of `request_id` names an execution other
/// than `execution_id`.
fn check_holder(
    request_id: &str,
    events: &[crate::event::Event],
    execution_id: &str,
) -> Result<(), ApprovalError> {
    let holder = events
        .iter()
        .find(|e| e.kind == EventKind::Requested)
        .and_then(|e| e.data.get("execution").and_then(Value::as_str));
    match holder {
        Some(holder) if holder != execution_id => Err(ApprovalError::RequestIdInUse {
            request_id: request_id.to_string(),
            held_by: holder.to_string(),
        }),
        _ => Ok(()),
    }
}
