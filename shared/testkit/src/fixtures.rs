//! Builders of requests, ballots and approvals, and the default policy, written once.

use regate_core::pending::{PendingApproval, Platform, TaskToken, Voter};
use regate_core::ports::Clock;
use regate_core::{Ballot, Choice, Evaluation, PolicyEngine, Request, Vote};
use serde_json::{json, Value};

use crate::{first_evaluation, FixedClock, SLACK_TEAM_ID};

/// The repository's default policy bundle (the one the functions embed).
pub fn default_policy() -> PolicyEngine {
    PolicyEngine::compile(&regate_policies::bundle().unwrap()).unwrap()
}

/// A request as a workflow would send it, built from the default: a production deploy of
/// `payments` requested by `dev@example.com` through `ci-bot`, with a pipeline link.
#[derive(Debug, Clone)]
pub struct RequestBuilder(Value);

/// Starts a request with `id`.
pub fn request(id: &str) -> RequestBuilder {
    RequestBuilder(
        json!({"id": id, "action": "deploy", "environment": "production",
        "resource": {"type": "service", "name": "payments"},
        "requester": {"id": "dev@example.com", "kind": "human"},
        "initiator": {"id": "ci-bot", "kind": "service"},
        "summary": "Deploy payments v1.4.2", "details": {},
        "links": [{"title": "Pipeline", "url": format!("https://ci.example.com/{id}")}]}),
    )
}

impl RequestBuilder {
    /// What changes: `action` on the `kind` named `name` in `environment`.
    pub fn change(mut self, action: &str, environment: &str, kind: &str, name: &str) -> Self {
        self.0["action"] = json!(action);
        self.0["environment"] = json!(environment);
        self.0["resource"] = json!({"type": kind, "name": name});
        self.0["summary"] = json!(format!("{action} {name} in {environment}"));
        self
    }

    pub fn requester(mut self, id: &str) -> Self {
        self.0["requester"]["id"] = json!(id);
        self
    }

    /// Sets any top-level field (`summary`, `details`, `links`, ...).
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.0[field] = value;
        self
    }

    /// Removes a top-level field (`id`, `initiator`, ...).
    pub fn without(mut self, field: &str) -> Self {
        if let Some(fields) = self.0.as_object_mut() {
            fields.remove(field);
        }
        self
    }

    pub fn json(&self) -> Value {
        self.0.clone()
    }

    /// The request as the evaluator makes it: validated, its requester proven (a token from a
    /// pipeline the requester ran, see [`crate::ran_by`]).
    pub fn build(&self) -> Request {
        let mut request = Request::from_value(&self.0, None).unwrap();
        request.identity = Some(crate::ran_by(&request.requester.id));
        request
    }

    /// The request as a pipeline sends it, with an identity token `issuer` signed for its
    /// requester.
    pub fn json_signed_by(&self, issuer: &crate::TestIssuer) -> Value {
        let mut json = self.0.clone();
        json["identity_token"] =
            json!(issuer.token_for(json["requester"]["id"].as_str().unwrap_or_default()));
        json
    }
}

/// A pending approval of `request` (its first evaluation, no votes, no messages) waiting on
/// `token`, as a store holds it.
pub fn pending_approval(request: &Request, token: &str) -> PendingApproval {
    let now = FixedClock::default().now();
    let evaluation = first_evaluation(request, now);
    let execution = execution_of(&request.id);
    PendingApproval::opened(
        request,
        &evaluation,
        &TaskToken::new(token),
        &execution,
        now,
    )
}

/// `count` open production deploys of the default policy (reminders at 15 and 50 minutes, a
/// re-evaluation at 30, an hour's timeout), named `prefix-00000` on, opened a millisecond
/// apart from `opened` and due at their first duty: a backlog to store directly.
pub fn open_backlog(
    prefix: &str,
    count: usize,
    opened: chrono::DateTime<chrono::Utc>,
) -> Vec<PendingApproval> {
    let template = pending_approval(&request("template").build(), "token");
    (0..count)
        .map(|n| {
            let mut approval = template.clone();
            let id = format!("{prefix}-{n:05}");
            let at = opened + chrono::Duration::milliseconds(i64::try_from(n).unwrap());
            approval.expires_at += at - approval.created_at;
            approval.created_at = at;
            approval.due_at = approval.next_due(at);
            approval.execution_id = execution_of(&id);
            approval.request.id = id.clone();
            approval.request_id = id;
            approval
        })
        .collect()
}

/// An approval of request `chg-9` about `summary` (past the request's own limits when a test
/// needs that), and the evaluation to show it with.
pub fn approval_about(summary: &str) -> (PendingApproval, Evaluation) {
    let mut approval = pending_approval(&request("chg-9").build(), "t");
    approval.request.summary = summary.into();
    let evaluation = approval.evaluation.clone();
    (approval, evaluation)
}

/// A counted vote, cast at `at` (RFC 3339).
pub fn counted_vote(voter: &str, choice: Choice, reason: Option<&str>, at: &str) -> Vote {
    Vote {
        voter: voter.into(),
        vote: choice,
        reason: reason.map(String::from),
        at: at.into(),
    }
}

/// The execution tests open request `request_id` from.
pub fn execution_of(request_id: &str) -> String {
    format!("arn:aws:states:us-east-1:123456789012:execution:regate-approval:{request_id}")
}

/// An approve ballot by `voter` on `request_id`, on Slack, now.
pub fn ballot(request_id: &str, voter: &str) -> Ballot {
    Ballot {
        request_id: request_id.into(),
        voter: voter.into(),
        choice: Choice::Approve,
        reason: None,
        platform: Platform::Slack,
        place: None,
        message: None,
        at: FixedClock::default().now(),
    }
}

/// Turns a ballot into a rejection with `reason`.
pub fn rejecting(mut ballot: Ballot, reason: Option<&str>) -> Ballot {
    ballot.choice = Choice::Reject;
    ballot.reason = reason.map(str::to_string);
    ballot
}

/// A Slack voter who clicked in `channel`.
pub fn slack_voter(user_id: &str) -> Voter {
    Voter {
        platform: Platform::Slack,
        user_id: user_id.into(),
        conversation: Some("C0PAYMENTS".into()),
        trigger: Some("trigger-1".into()),
        tenant: Some(SLACK_TEAM_ID.into()),
        endpoint: None,
        message: None,
    }
}
