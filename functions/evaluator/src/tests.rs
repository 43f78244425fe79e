//! The evaluator's handler over an in-memory log: default ids, logging once across retries,
//! and named errors for Step Functions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::handler::{handle, Input};
use regate_core::evaluator::Evaluator;
use regate_core::EventKind;
use regate_testkit::{
    default_policy, execution_of, request, FixedClock, MemoryLog, RecordingMetrics, TestIssuer,
};
use serde_json::json;
use serde_json::Value;
use std::sync::Arc;

/// The evaluator over `log`, trusting the tests' issuer (whose tokens [`deploy`] carries).
fn evaluator(log: &MemoryLog) -> Evaluator<MemoryLog, FixedClock, RecordingMetrics, TestIssuer> {
    Evaluator::new(
        log.clone(),
        FixedClock::default(),
        RecordingMetrics::default(),
        Arc::new(regate_core::LivePolicy::new(default_policy())),
    )
    .with_identity(issuer().clone())
}

/// The tests' issuer: one key for the whole run.
fn issuer() -> &'static TestIssuer {
    static ISSUER: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(TestIssuer::default)
}

fn input(request: Value) -> Input {
    Input {
        request,
        execution_name: Some("exec-7".into()),
        execution_id: execution_of("exec-7"),
    }
}

fn deploy() -> Value {
    let mut request = request("unused").json_signed_by(issuer());
    request.as_object_mut().unwrap().remove("id");
    request
}

#[tokio::test]
async fn a_request_without_id_takes_the_execution_name_and_is_logged_once() {
    let log = MemoryLog::default();
    let e = evaluator(&log);
    // A retried step sends the same input again, token included.
    let request = deploy();
    let out = handle(&e, input(request.clone())).await.unwrap();
    assert_eq!(out.decision.request_id, "exec-7");
    assert_eq!(
        out.decision.evaluation.decision.outcome,
        regate_core::Outcome::ApprovalRequired
    );
    handle(&e, input(request)).await.unwrap();
    let kinds: Vec<_> = log.of("exec-7").iter().map(|ev| ev.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Requested, EventKind::Evaluated],
        "a retried step logs nothing twice"
    );
    // A first evaluation happens at the approval's opening; its event says when, and how
    // long the workflow waits.
    let evaluated = &log.of("exec-7")[1];
    assert_eq!(evaluated.data["opened_at"], evaluated.data["now"]);
    assert_eq!(
        evaluated.data["now"],
        regate_testkit::CALM_DAY.replace('Z', ".000Z")
    );
    assert_eq!(evaluated.data["timeout_seconds"], 3600);
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
    let diagnostic = handle(&evaluator(&MemoryLog::default()), input(bad))
        .await
        .unwrap_err();
    assert_eq!(diagnostic.error_type, "InvalidRequest");
    assert!(
        diagnostic.error_message.contains("resource.name"),
        "{}",
        diagnostic.error_message
    );
}

#[tokio::test]
async fn a_throttled_log_fails_with_its_retryable_name() {
    let log = MemoryLog::default();
    log.fault.set(regate_core::ports::StoreError::Throttled(
        "slow down".into(),
    ));
    let diagnostic = handle(&evaluator(&log), input(deploy())).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "DecisionLog.Throttled");
}

#[tokio::test]
async fn another_execution_reusing_a_request_id_fails_with_request_id_in_use() {
    let log = MemoryLog::default();
    let e = evaluator(&log);
    handle(&e, input(deploy())).await.unwrap();
    let mut other = input(deploy());
    other.execution_id = execution_of("someone-else");
    let diagnostic = handle(&e, other).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "RequestIdInUse");
    assert!(diagnostic.error_message.contains(&execution_of("exec-7")));
    assert_eq!(
        log.of("exec-7").len(),
        2,
        "nothing was logged for the other execution"
    );
}

/// The in-memory log with a yield before every call, so two evaluations run concurrently on
/// one thread interleave at each round trip, as two Lambda instances do.
#[derive(Clone)]
struct Interleaving(MemoryLog);

impl regate_core::ports::DecisionLog for Interleaving {
    async fn append(
        &self,
        request_id: &str,
        draft: regate_core::EventDraft,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<regate_core::Event>, regate_core::ports::StoreError> {
        tokio::task::yield_now().await;
        self.0.append(request_id, draft, at).await
    }

    async fn events(
        &self,
        request_id: &str,
    ) -> Result<Vec<regate_core::Event>, regate_core::ports::StoreError> {
        tokio::task::yield_now().await;
        self.0.events(request_id).await
    }
}

#[tokio::test]
async fn two_executions_starting_at_once_with_one_request_id_give_it_to_one_only() {
    for trial in 0..20 {
        let log = MemoryLog::default();
        let e = Evaluator::new(
            Interleaving(log.clone()),
            FixedClock::default(),
            RecordingMetrics::default(),
            Arc::new(regate_core::LivePolicy::new(default_policy())),
        )
        .with_identity(issuer().clone());
        let id = format!("twins-{trial}");
        let start = |name: &str| Input {
            request: request(&id).json_signed_by(issuer()),
            execution_name: Some(name.into()),
            execution_id: execution_of(name),
        };
        let (a, b) = tokio::join!(handle(&e, start("a")), handle(&e, start("b")));
        let refused: Vec<_> = [&a, &b]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        assert_eq!(refused.len(), 1, "trial {trial}: {a:?} {b:?}");
        assert_eq!(refused[0].error_type, "RequestIdInUse");
        let kinds: Vec<EventKind> = log.of(&id).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Requested, EventKind::Evaluated],
            "trial {trial}: the loser appended nothing"
        );
    }
}

#[tokio::test]
async fn the_identity_token_is_checked_and_never_logged_and_a_bad_or_missing_one_is_denied() {
    let log = MemoryLog::default();
    let e = evaluator(&log);
    let signed = deploy();
    let token = signed["identity_token"].as_str().unwrap().to_string();
    let out = handle(&e, input(signed)).await.unwrap();
    assert_eq!(
        out.decision.evaluation.decision.outcome,
        regate_core::Outcome::ApprovalRequired
    );
    let logged = serde_json::to_string(&log.of("exec-7")).unwrap();
    assert!(!logged.contains(&token), "the token is never logged");
    let requested = &log.of("exec-7")[0];
    let identity = &requested.data["request"]["identity"];
    assert_eq!(identity["claims"]["actor"], "dev@example.com");
    assert_eq!(identity["key_id"], "testkit");
    assert!(serde_json::to_string(&out).unwrap().find(&token).is_none());

    let outcome_of = |request: Value, name: &'static str| {
        let e = &e;
        async move {
            let mut run = input(request);
            run.execution_name = Some(name.into());
            run.execution_id = execution_of(name);
            handle(e, run).await.unwrap().decision.evaluation.decision
        }
    };
    let stranger = TestIssuer::default();
    let forged = outcome_of(
        request("x").without("id").json_signed_by(&stranger),
        "forged",
    )
    .await;
    assert_eq!(forged.outcome, regate_core::Outcome::Deny);
    assert!(
        forged.reasons[0].contains("signature does not verify"),
        "{:?}",
        forged.reasons
    );
    let bare = outcome_of(request("x").without("id").json(), "bare").await;
    assert_eq!(bare.outcome, regate_core::Outcome::Deny);
    assert!(
        bare.reasons[0].contains("must prove who asked"),
        "{:?}",
        bare.reasons
    );
    let claimed = request("x")
        .without("id")
        .with("identity", json!({"issuer": "me"}))
        .json();
    let diagnostic = handle(&e, input(claimed)).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "InvalidRequest");
    assert!(
        diagnostic.error_message.contains("identity"),
        "{}",
        diagnostic.error_message
    );
}

/// An issuer that cannot be reached.
struct IssuerOut;

impl regate_core::identity::IdentityTokens for IssuerOut {
    async fn check(
        &self,
        _token: &str,
    ) -> Result<regate_core::identity::ProvenIdentity, regate_core::identity::IssuerUnavailable>
    {
        Err(regate_core::identity::IssuerUnavailable(
            "connection refused".into(),
        ))
    }
}

#[tokio::test]
async fn an_unreachable_issuer_fails_with_identity_unavailable_and_logs_nothing() {
    let log = MemoryLog::default();
    let e = Evaluator::new(
        log.clone(),
        FixedClock::default(),
        RecordingMetrics::default(),
        Arc::new(regate_core::LivePolicy::new(default_policy())),
    )
    .with_identity(IssuerOut);
    let diagnostic = handle(&e, input(deploy())).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "IdentityUnavailable");
    assert!(log.of("exec-7").is_empty());
    assert!(regate_core::ErrorName::IdentityUnavailable.is_retryable());
}
