//! The approval workflow over in-memory fakes of the ports: votes counted or refused, the
//! workflow resumed exactly once, messages kept current, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use regate_core::approvals::{Closed, VoteResult, REJECTED_ERROR};
use regate_core::event::EventKind;
use regate_core::{ApprovalState, TaskToken};
use regate_testkit::{
    ballot, first_evaluation, open, rejecting, request, Fakes, MemoryApprovals, Resumed,
};

const DEPLOY: (&str, &str, &str) = ("deploy", "service", "payments");
const LEDGER: (&str, &str, &str) = ("deploy", "service", "ledger");
const IAM: (&str, &str, &str) = ("iam_change", "iam_role", "payments");

/// Fakes and their workflow, with request `id` (a production `change`) opened on token-1.
async fn opened(id: &str, change: (&str, &str, &str)) -> (Fakes, MemoryApprovals) {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let (action, kind, name) = change;
    let request = request(id).change(action, "production", kind, name).build();
    open(&approvals, &request, "token-1").await;
    (fakes, approvals)
}

#[tokio::test]
async fn an_owner_approval_closes_the_request_and_resumes_the_workflow_once() {
    let (f, s) = opened("r1", DEPLOY).await;
    let result = s.vote(&ballot("r1", "Alice@Example.com")).await.unwrap();
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
    let calls = f.tokens.calls();
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
    assert_eq!(
        f.kinds("r1"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    regate_core::chain::verify_chain("r1", &f.log.of("r1")).unwrap();
    let updates = f.chat.updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 1, "the message shows the decision");
    assert_eq!(updates[0].1, ApprovalState::Approved);
}

#[tokio::test]
async fn the_requester_is_refused_with_a_logged_reason_and_nothing_resumes() {
    let (f, s) = opened("r2", DEPLOY).await;
    let result = s.vote(&ballot("r2", "dev@example.com")).await.unwrap();
    let VoteResult::Refused { reason, .. } = &result else {
        panic!("{result:?}")
    };
    assert!(reason.contains("cannot vote"), "{reason}");
    assert!(result.explanation().unwrap().contains("not counted"));
    assert!(f.tokens.calls().is_empty());
    let events = f.log.of("r2");
    assert_eq!(events[1].kind, EventKind::VoteRefused);
    assert_eq!(events[1].reasons, std::slice::from_ref(reason));
    assert!(f.pending.item("r2").unwrap().votes.is_empty());
    assert!(
        f.chat.updates.lock().unwrap().is_empty(),
        "nothing changed to show"
    );
}

#[tokio::test]
async fn a_second_click_counts_once_and_a_click_after_the_decision_is_already_decided() {
    let (f, s) = opened("r3", LEDGER).await;
    let first = s.vote(&ballot("r3", "erin@example.com")).await.unwrap();
    assert!(matches!(first, VoteResult::Counted { closed: None, .. }));
    let again = s.vote(&ballot("r3", "erin@example.com")).await.unwrap();
    assert!(
        matches!(again, VoteResult::Refused { ref reason, .. } if reason.contains("already voted")),
        "{again:?}"
    );
    let deciding = s.vote(&ballot("r3", "frank@example.com")).await.unwrap();
    assert!(matches!(
        deciding,
        VoteResult::Counted {
            closed: Some(_),
            ..
        }
    ));
    let late = rejecting(ballot("r3", "grace@example.com"), Some("no"));
    let late = s.vote(&late).await.unwrap();
    assert!(
        matches!(late, VoteResult::AlreadyDecided { .. }),
        "{late:?}"
    );
    assert!(late.explanation().unwrap().contains("already decided"));
    assert_eq!(f.tokens.calls().len(), 1);
    assert_eq!(f.pending.item("r3").unwrap().votes.len(), 2);
    assert_eq!(f.kinds("r3").last(), Some(&EventKind::VoteRefused));
}

#[tokio::test]
async fn an_iam_rejection_asks_for_a_reason_and_fails_the_workflow_with_approval_rejected() {
    let (f, s) = opened("r4", IAM).await;
    s.vote(&ballot("r4", "alice@example.com")).await.unwrap();
    let bare = rejecting(ballot("r4", "ivan@example.com"), Some("  "));
    let bare = s.vote(&bare).await.unwrap();
    assert!(
        matches!(bare, VoteResult::ReasonRequired { ref approval } if approval.request_id == "r4"),
        "{bare:?}"
    );
    assert_eq!(
        f.pending.item("r4").unwrap().votes.len(),
        1,
        "nothing recorded"
    );
    let refused = rejecting(ballot("r4", "mallory@example.com"), None);
    assert!(
        matches!(s.vote(&refused).await.unwrap(), VoteResult::Refused { .. }),
        "an ineligible voter is refused before being asked for a reason"
    );
    let reasoned = rejecting(ballot("r4", "ivan@example.com"), Some("too broad"));
    let result = s.vote(&reasoned).await.unwrap();
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
    let calls = f.tokens.calls();
    let Resumed::Failure { error, cause, .. } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(error, REJECTED_ERROR);
    assert!(cause.contains("too broad"));
}

#[tokio::test]
async fn a_decision_after_the_workflow_timed_out_is_recorded_and_reported() {
    let (f, s) = opened("r5", DEPLOY).await;
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let result = s.vote(&ballot("r5", "bob@example.com")).await.unwrap();
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
        f.kinds("r5"),
        [
            EventKind::Notified,
            EventKind::Vote,
            EventKind::Error,
            EventKind::Decided
        ]
    );
}

#[tokio::test]
async fn many_concurrent_votes_resume_the_workflow_exactly_once() {
    let (f, s) = opened("r6", LEDGER).await;
    let s = Arc::new(s);
    let voters = [
        "erin", "frank", "grace", "heidi", "mallory", "dev", "erin", "frank",
    ];
    let tasks: Vec<_> = voters
        .iter()
        .map(|v| {
            let s = s.clone();
            let ballot = ballot("r6", &format!("{v}@example.com"));
            tokio::spawn(async move { s.vote(&ballot).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.tokens.calls().len(), 1);
    let decided = f
        .kinds("r6")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
    regate_core::chain::verify_chain("r6", &f.log.of("r6")).unwrap();
}

#[tokio::test]
async fn a_retried_notifier_keeps_the_approval_posts_nothing_new_and_takes_the_new_token() {
    let (f, s) = opened("r7", DEPLOY).await;
    let r = request("r7").build();
    let evaluation = first_evaluation(&r, s.now());
    let again = s
        .notify(&r, &evaluation, &TaskToken::new("token-2"))
        .await
        .unwrap();
    assert_eq!(again.approval.task_token.expose(), "token-2");
    assert_eq!(again.approval.messages.len(), 1);
    assert_eq!(f.chat.posts.lock().unwrap().len(), 1);
    assert_eq!(f.kinds("r7"), [EventKind::Notified]);
}

#[tokio::test]
async fn a_request_no_platform_serves_fails_with_chat_no_target() {
    let f = Fakes::default();
    let s = f.approvals();
    let r = request("r9").build();
    let mut evaluation = first_evaluation(&r, s.now());
    evaluation
        .decision
        .notify
        .retain(|t| matches!(t, regate_core::NotifyTarget::Teams { .. }));
    let error = s
        .notify(&r, &evaluation, &TaskToken::new("t"))
        .await
        .unwrap_err();
    assert_eq!(error.name().as_str(), "Chat.NoTarget");
    assert!(error.to_string().contains("teams"), "{error}");
}

#[tokio::test]
async fn expiry_closes_a_pending_request_logs_it_and_shows_it() {
    let (f, s) = opened("r8", DEPLOY).await;
    let expired = s.expire("r8").await.unwrap().unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
    assert_eq!(f.kinds("r8"), [EventKind::Notified, EventKind::Expired]);
    assert_eq!(f.chat.updates.lock().unwrap()[0].1, ApprovalState::Expired);
    let late = s.vote(&ballot("r8", "alice@example.com")).await.unwrap();
    assert!(matches!(late, VoteResult::AlreadyDecided { .. }));
    assert!(late.explanation().unwrap().contains("expired"));
    assert!(f.tokens.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_request_is_reported_as_such() {
    let s = Fakes::default().approvals();
    let result = s.vote(&ballot("nope", "alice@example.com")).await.unwrap();
    assert_eq!(result, VoteResult::Unknown);
}

#[tokio::test]
async fn a_message_update_that_fails_never_loses_the_recorded_decision() {
    let (f, s) = opened("r10", DEPLOY).await;
    f.chat
        .fault
        .set(regate_core::ports::ChatError::Unavailable("down".into()));
    let result = s.vote(&ballot("r10", "alice@example.com")).await.unwrap();
    assert!(matches!(
        result,
        VoteResult::Counted {
            closed: Some(_),
            ..
        }
    ));
    assert_eq!(f.tokens.calls().len(), 1);
}
