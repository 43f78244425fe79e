//! The approval workflow over in-memory fakes of the ports: votes counted or refused, the
//! workflow resumed exactly once, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::Utc;
use regate_core::approvals::{Approvals, Closed, VoteResult, REJECTED_ERROR};
use regate_core::event::EventKind;
use regate_core::ports::{ApprovalState, PendingStore, TaskToken};
use regate_core::{Choice, PreparedRequest, Request};
use regate_testkit::{default_policy, request, MemoryLog, MemoryPending, RecordingTokens, Resumed};

type Service = Approvals<MemoryLog, MemoryPending, RecordingTokens>;

fn service() -> Service {
    Approvals {
        log: MemoryLog::default(),
        pending: MemoryPending::default(),
        tokens: RecordingTokens::default(),
        policy: Arc::new(default_policy()),
    }
}

async fn opened(service: &Service, request: &Request) {
    let evaluation = service
        .policy
        .evaluate(
            &PreparedRequest::new(request.clone()).unwrap(),
            &[],
            Utc::now(),
        )
        .unwrap();
    service
        .open(request, &evaluation, &TaskToken::new("token-1"), Utc::now())
        .await
        .unwrap();
}

fn kinds(service: &Service, id: &str) -> Vec<EventKind> {
    service.log.of(id).iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn an_owner_approval_closes_the_request_and_resumes_the_workflow_once() {
    let s = service();
    opened(
        &s,
        &request("r1", "deploy", "production", "service", "payments"),
    )
    .await;
    let result = s
        .cast_vote(
            "r1",
            "Alice@Example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    let VoteResult::Counted {
        approval, closed, ..
    } = result
    else {
        panic!("{result:?}")
    };
    assert_eq!(
        closed,
        Some(Closed {
            state: ApprovalState::Approved,
            resumed: true
        })
    );
    assert_eq!(approval.decided_by.as_deref(), Some("alice@example.com"));
    let calls = s.tokens.calls();
    assert_eq!(calls.len(), 1);
    let Resumed::Success { token, output } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(token, "token-1");
    assert_eq!(output["request_id"], "r1");
    assert_eq!(
        output["approvers"],
        serde_json::json!(["alice@example.com"])
    );
    assert!(output["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(kinds(&s, "r1"), [EventKind::Vote, EventKind::Decided]);
    regate_core::chain::verify_chain("r1", &s.log.of("r1")).unwrap();
}

#[tokio::test]
async fn the_requester_is_refused_with_a_logged_reason_and_nothing_resumes() {
    let s = service();
    opened(
        &s,
        &request("r2", "deploy", "production", "service", "payments"),
    )
    .await;
    let result = s
        .cast_vote(
            "r2",
            "dev@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    let VoteResult::Refused { reason, .. } = result else {
        panic!("{result:?}")
    };
    assert!(reason.contains("cannot vote"), "{reason}");
    assert!(s.tokens.calls().is_empty());
    let events = s.log.of("r2");
    assert_eq!(events[0].kind, EventKind::VoteRefused);
    assert_eq!(events[0].reasons, [reason]);
    assert!(s.pending.get("r2").await.unwrap().unwrap().votes.is_empty());
}

#[tokio::test]
async fn a_second_click_counts_once_and_a_click_after_the_decision_is_already_decided() {
    let s = service();
    opened(
        &s,
        &request("r3", "deploy", "production", "service", "ledger"),
    )
    .await;
    let first = s
        .cast_vote(
            "r3",
            "erin@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(first, VoteResult::Counted { closed: None, .. }));
    let again = s
        .cast_vote(
            "r3",
            "erin@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(again, VoteResult::Refused { ref reason, .. } if reason.contains("already voted")),
        "{again:?}"
    );
    let deciding = s
        .cast_vote(
            "r3",
            "frank@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        deciding,
        VoteResult::Counted {
            closed: Some(_),
            ..
        }
    ));
    let late = s
        .cast_vote(
            "r3",
            "grace@example.com",
            Choice::Reject,
            Some("no".into()),
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(late, VoteResult::AlreadyDecided { .. }),
        "{late:?}"
    );
    assert_eq!(s.tokens.calls().len(), 1);
    assert_eq!(s.pending.get("r3").await.unwrap().unwrap().votes.len(), 2);
    assert_eq!(kinds(&s, "r3").last(), Some(&EventKind::VoteRefused));
}

#[tokio::test]
async fn an_iam_rejection_needs_a_reason_and_fails_the_workflow_with_approval_rejected() {
    let s = service();
    opened(
        &s,
        &request("r4", "iam_change", "production", "iam_role", "payments"),
    )
    .await;
    s.cast_vote(
        "r4",
        "alice@example.com",
        Choice::Approve,
        None,
        "slack",
        Utc::now(),
    )
    .await
    .unwrap();
    let bare = s
        .cast_vote(
            "r4",
            "ivan@example.com",
            Choice::Reject,
            Some("  ".into()),
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(bare, VoteResult::Refused { ref reason, .. } if reason.contains("reason")),
        "{bare:?}"
    );
    let result = s
        .cast_vote(
            "r4",
            "ivan@example.com",
            Choice::Reject,
            Some("too broad".into()),
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        result,
        VoteResult::Counted {
            closed: Some(Closed {
                state: ApprovalState::Rejected,
                resumed: true
            }),
            ..
        }
    ));
    let calls = s.tokens.calls();
    let Resumed::Failure { error, cause, .. } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(error, REJECTED_ERROR);
    assert!(cause.contains("too broad"));
}

#[tokio::test]
async fn a_decision_after_the_workflow_timed_out_is_recorded_and_reported() {
    let s = service();
    opened(
        &s,
        &request("r5", "deploy", "production", "service", "payments"),
    )
    .await;
    s.tokens.closed.lock().unwrap().push("token-1".into());
    let result = s
        .cast_vote(
            "r5",
            "bob@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            result,
            VoteResult::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert_eq!(
        kinds(&s, "r5"),
        [EventKind::Vote, EventKind::Error, EventKind::Decided]
    );
}

#[tokio::test]
async fn many_concurrent_votes_resume_the_workflow_exactly_once() {
    let s = Arc::new(service());
    opened(
        &s,
        &request("r6", "deploy", "production", "service", "ledger"),
    )
    .await;
    let voters = [
        "erin", "frank", "grace", "heidi", "mallory", "dev", "erin", "frank",
    ];
    let tasks: Vec<_> = voters
        .iter()
        .map(|v| {
            let s = s.clone();
            let voter = format!("{v}@example.com");
            tokio::spawn(async move {
                s.cast_vote("r6", &voter, Choice::Approve, None, "slack", Utc::now())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.tokens.calls().len(), 1);
    assert_eq!(
        kinds(&s, "r6")
            .iter()
            .filter(|k| **k == EventKind::Decided)
            .count(),
        1
    );
    regate_core::chain::verify_chain("r6", &s.log.of("r6")).unwrap();
}

#[tokio::test]
async fn a_retried_notifier_keeps_the_approval_and_takes_the_new_token() {
    let s = service();
    let r = request("r7", "deploy", "production", "service", "payments");
    opened(&s, &r).await;
    let evaluation = s
        .policy
        .evaluate(&PreparedRequest::new(r.clone()).unwrap(), &[], Utc::now())
        .unwrap();
    let again = s
        .open(&r, &evaluation, &TaskToken::new("token-2"), Utc::now())
        .await
        .unwrap();
    assert_eq!(again.task_token.expose(), "token-2");
    assert_eq!(again.version, 2);
}

#[tokio::test]
async fn expiry_closes_a_pending_request_and_logs_it() {
    let s = service();
    opened(
        &s,
        &request("r8", "deploy", "production", "service", "payments"),
    )
    .await;
    let expired = s.expire("r8", Utc::now()).await.unwrap().unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
    assert_eq!(kinds(&s, "r8"), [EventKind::Expired]);
    let late = s
        .cast_vote(
            "r8",
            "alice@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(late, VoteResult::AlreadyDecided { .. }));
    assert!(s.tokens.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_request_is_reported_as_such() {
    let s = service();
    assert_eq!(
        s.cast_vote(
            "nope",
            "alice@example.com",
            Choice::Approve,
            None,
            "slack",
            Utc::now()
        )
        .await
        .unwrap(),
        VoteResult::Unknown
    );
}
