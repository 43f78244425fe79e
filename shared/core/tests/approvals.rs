//! The approval workflow over in-memory fakes of the ports: votes counted or refused, the
//! workflow resumed exactly once, messages kept current, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use regate_core::approvals::{Closed, VoteResult, REJECTED_ERROR};
use regate_core::event::EventKind;
use regate_core::ports::{ExecutionStatus, StoreError, TaskTokenError};
use regate_core::{ApprovalState, TaskToken};
use regate_testkit::{
    ballot, execution_of, first_evaluation, open, rejecting, request, Fakes, MemoryApprovals,
    Resumed,
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
async fn a_decision_records_when_its_approval_opened_so_its_input_can_be_rebuilt() {
    let (f, s) = opened("r1t", DEPLOY).await;
    let opened_at = f.pending.item("r1t").unwrap().created_at;
    f.clock.advance(chrono::Duration::minutes(40));
    let mut click = ballot("r1t", "alice@example.com");
    click.at = opened_at + chrono::Duration::minutes(40);
    s.vote(&click).await.unwrap();
    let events = f.log.of("r1t");
    let decided = events
        .iter()
        .find(|e| e.kind == EventKind::Decided)
        .unwrap();
    let text = |key: &str| decided.data[key].as_str().unwrap().to_string();
    assert_eq!(
        text("opened_at"),
        regate_core::time::format_rfc3339_ms(opened_at)
    );
    assert_eq!(
        text("now"),
        regate_core::time::format_rfc3339_ms(opened_at + chrono::Duration::minutes(40))
    );
    // The digest is of the input with `opened_at`: evaluating it again gives the same one.
    let item = f.pending.item("r1t").unwrap();
    let again = regate_testkit::default_policy()
        .evaluate(
            &regate_core::PreparedRequest::new(item.request.clone()).unwrap(),
            &item.votes,
            regate_core::EvaluationTime::since(opened_at, item.decided_at.unwrap()),
        )
        .unwrap();
    assert_eq!(
        decided.input_digest.as_deref(),
        Some(again.input_digest.as_str())
    );
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
async fn a_double_click_counts_once_a_changed_vote_is_refused_and_a_late_one_is_already_decided() {
    let (f, s) = opened("r3", LEDGER).await;
    let first = s.vote(&ballot("r3", "erin@example.com")).await.unwrap();
    assert!(matches!(first, VoteResult::Counted { closed: None, .. }));
    // A double click is the same vote again: it counts once and is not refused.
    let again = s.vote(&ballot("r3", "erin@example.com")).await.unwrap();
    assert!(
        matches!(again, VoteResult::Counted { closed: None, .. }),
        "{again:?}"
    );
    assert_eq!(f.pending.item("r3").unwrap().votes.len(), 1);
    let changed = rejecting(ballot("r3", "erin@example.com"), Some("changed my mind"));
    let changed = s.vote(&changed).await.unwrap();
    assert!(
        matches!(changed, VoteResult::Refused { ref reason, .. } if reason.contains("already voted")),
        "{changed:?}"
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
    // The late click changes nothing and is not a step of the decision: the chain ends with it.
    assert_eq!(f.kinds("r3").last(), Some(&EventKind::Decided));
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
async fn a_vote_after_the_timeout_ends_expired_and_the_voter_is_told() {
    let (f, s) = opened("r5", DEPLOY).await;
    // The task timed out: its token is closed and the Expire step has not run yet.
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
    assert!(result
        .explanation()
        .unwrap()
        .contains("still handing the decision"));
    assert!(
        !f.kinds("r5").contains(&EventKind::Decided),
        "nobody took the decision"
    );
    let expired = s.expire("r5", &execution_of("r5")).await.unwrap().unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
    assert!(expired.resumed);
    assert_eq!(
        f.kinds("r5"),
        [EventKind::Notified, EventKind::Vote, EventKind::Expired]
    );
    let updates = f.chat.updates.lock().unwrap().clone();
    assert_eq!(updates.last().unwrap().1, ApprovalState::Expired);
    assert!(f.tokens.calls().is_empty());
}

#[tokio::test]
async fn a_vote_on_a_workflow_that_ended_otherwise_ends_expired_at_once() {
    let (f, s) = opened("r11", DEPLOY).await;
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let failed = ExecutionStatus::Failed(Some("ApprovalExpired".into()));
    f.tokens
        .executions
        .lock()
        .unwrap()
        .insert(execution_of("r11"), failed);
    let result = s.vote(&ballot("r11", "bob@example.com")).await.unwrap();
    let VoteResult::Counted { approval, .. } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(approval.state, ApprovalState::Expired);
    assert_eq!(
        f.kinds("r11"),
        [EventKind::Notified, EventKind::Vote, EventKind::Expired]
    );
}

#[tokio::test]
async fn a_throttled_resume_is_owed_and_a_later_click_carries_it_out_once() {
    let (f, s) = opened("r12", DEPLOY).await;
    f.tokens.fault.set(TaskTokenError::Throttled(
        "Rate exceeded for arn:aws:states:secret".into(),
    ));
    let counted = s.vote(&ballot("r12", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            counted,
            VoteResult::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            }
        ),
        "the vote counts; resuming is owed: {counted:?}"
    );
    let item = f.pending.item("r12").unwrap();
    assert!(item.owes_resume(), "closed, not resumed: {item:?}");
    let logged = serde_json::to_string(&f.log.of("r12")).unwrap();
    assert!(logged.contains("StepFunctions.Throttled"), "{logged}");
    assert!(
        !logged.contains("Rate exceeded"),
        "no raw service text in the log"
    );
    f.tokens.fault.clear();
    let later = s.vote(&ballot("r12", "bob@example.com")).await.unwrap();
    assert!(
        matches!(later, VoteResult::AlreadyDecided { .. }),
        "{later:?}"
    );
    assert_eq!(f.tokens.calls().len(), 1);
    assert!(f.pending.item("r12").unwrap().resumed);
    let decided = f
        .kinds("r12")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
    // Nothing is owed any more: another click resumes nothing and logs no second decision.
    s.vote(&ballot("r12", "carol@example.com")).await.unwrap();
    assert_eq!(f.tokens.calls().len(), 1);
    regate_core::chain::verify_chain("r12", &f.log.of("r12")).unwrap();
}

#[tokio::test]
async fn a_live_claim_to_resume_keeps_other_paths_off_until_it_lapses() {
    let (f, s) = opened("r19", DEPLOY).await;
    f.tokens
        .fault
        .set(TaskTokenError::Unavailable("connection reset".into()));
    s.vote(&ballot("r19", "alice@example.com")).await.unwrap();
    f.tokens.fault.clear();
    // A path took the duty over and died mid-call (a Lambda timeout): its claim is live.
    f.pending.edit("r19", |i| {
        i.resume_claims += 1;
        i.resume_until = Some(s.now() + chrono::Duration::seconds(90));
    });
    let late = s.vote(&ballot("r19", "bob@example.com")).await.unwrap();
    assert!(
        matches!(late, VoteResult::AlreadyDecided { .. }),
        "{late:?}"
    );
    let report = s.sweep(10).await.unwrap();
    assert_eq!(report.waiting, 1, "{report:?}");
    assert!(
        f.tokens.calls().is_empty(),
        "nobody calls Step Functions while another path holds the claim"
    );
    f.clock.advance(chrono::Duration::seconds(91));
    let report = s.sweep(10).await.unwrap();
    assert_eq!(report.resumed, 1, "{report:?}");
    assert_eq!(f.tokens.calls().len(), 1);
    assert!(f.pending.item("r19").unwrap().resumed);
}

#[tokio::test]
async fn a_close_whose_answer_was_lost_is_recognised_as_its_own() {
    let (f, s) = opened("r13", DEPLOY).await;
    f.pending.lose_next_answer_after(1);
    let result = s.vote(&ballot("r13", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            result,
            VoteResult::Counted {
                closed: Some(Closed { resumed: true, .. }),
                ..
            }
        ),
        "{result:?}"
    );
    assert_eq!(f.tokens.calls().len(), 1);
    assert_eq!(f.kinds("r13").last(), Some(&EventKind::Decided));
}

#[tokio::test]
async fn a_vote_between_a_failed_notifier_and_its_retry_resumes_the_retrys_token() {
    let (f, s) = opened("r14", DEPLOY).await;
    // The first notifier attempt failed after opening: its token died with it.
    f.tokens.closed.lock().unwrap().push("token-1".into());
    let first = s.vote(&ballot("r14", "alice@example.com")).await.unwrap();
    assert!(matches!(
        first,
        VoteResult::Counted {
            closed: Some(Closed { resumed: false, .. }),
            ..
        }
    ));
    let r = request("r14").build();
    let retried = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-2"),
            &execution_of("r14"),
        )
        .await
        .unwrap();
    assert!(retried.approval.resumed);
    let calls = f.tokens.calls();
    assert!(
        matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-2"),
        "{calls:?}"
    );
    assert_eq!(
        f.chat.posts.lock().unwrap().len(),
        1,
        "the retry posts nothing new"
    );
    let decided = f
        .kinds("r14")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
}

#[tokio::test]
async fn another_execution_reusing_a_live_request_id_is_refused_and_changes_nothing() {
    let (f, s) = opened("r15", DEPLOY).await;
    let r = request("r15")
        .change("iam_change", "production", "iam_role", "payments")
        .build();
    let hijack = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-b"),
            "execution-b",
        )
        .await
        .unwrap_err();
    assert_eq!(hijack.name().as_str(), "RequestIdInUse");
    assert!(
        hijack.to_string().contains(&execution_of("r15")),
        "{hijack}"
    );
    let item = f.pending.item("r15").unwrap();
    assert_eq!(item.task_token.expose(), "token-1");
    assert_eq!(f.chat.posts.lock().unwrap().len(), 1);
    s.vote(&ballot("r15", "alice@example.com")).await.unwrap();
    let calls = f.tokens.calls();
    assert!(matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-1"));
    assert!(s.expire("r15", "execution-b").await.unwrap().is_none());
    assert_eq!(
        f.pending.item("r15").unwrap().state,
        ApprovalState::Approved
    );
}

/// A click whose vote is stored but whose log entry fails (the click ends with the error).
async fn vote_stored_not_logged(f: &Fakes, s: &MemoryApprovals, id: &str, voter: &str) {
    f.log
        .fail_kind(EventKind::Vote, StoreError::Throttled("busy".into()));
    s.vote(&ballot(id, voter)).await.unwrap_err();
    f.log.fault.clear();
    assert_eq!(f.kinds(id), [EventKind::Notified], "nothing logged");
}

/// The `vote` events of request `id`, as (voter, reasons).
fn vote_events(f: &Fakes, id: &str) -> Vec<(String, Vec<String>)> {
    f.log
        .of(id)
        .into_iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(|e| (e.actor.unwrap_or_default(), e.reasons))
        .collect()
}

#[tokio::test]
async fn a_repeated_vote_completes_a_vote_whose_log_entry_failed() {
    let (f, s) = opened("r16", DEPLOY).await;
    f.log
        .fail_kind(EventKind::Vote, StoreError::Throttled("busy".into()));
    let error = s
        .vote(&ballot("r16", "alice@example.com"))
        .await
        .unwrap_err();
    assert_eq!(error.name().as_str(), "DecisionLog.Throttled");
    assert_eq!(
        f.pending.item("r16").unwrap().votes.len(),
        1,
        "the vote is stored"
    );
    f.log.fault.clear();
    let again = s.vote(&ballot("r16", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            again,
            VoteResult::Counted {
                closed: Some(_),
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(
        f.kinds("r16"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    assert_eq!(f.tokens.calls().len(), 1);
    let once_more = s.vote(&ballot("r16", "alice@example.com")).await.unwrap();
    assert!(
        matches!(once_more, VoteResult::Counted { .. }),
        "{once_more:?}"
    );
    assert_eq!(f.kinds("r16").len(), 3, "a third click adds nothing");
}

#[tokio::test]
async fn a_click_after_the_deciding_vote_but_before_the_close_is_already_decided_and_not_logged() {
    // Alice's vote is stored but its log entry fails: the votes decide the request, and her
    // retry is what closes it. Bob clicks in between.
    let (f, s) = opened("r23", DEPLOY).await;
    vote_stored_not_logged(&f, &s, "r23", "alice@example.com").await;
    let between = s.vote(&ballot("r23", "bob@example.com")).await.unwrap();
    let VoteResult::AlreadyDecided { approval } = &between else {
        panic!("{between:?}")
    };
    assert_eq!(approval.state, ApprovalState::Pending);
    assert!(
        between
            .explanation()
            .unwrap()
            .contains("already decided and regate is closing it"),
        "{between:?}"
    );
    assert_eq!(f.kinds("r23"), [EventKind::Notified], "nothing appended");
    assert_eq!(f.pending.item("r23").unwrap().votes.len(), 1);
    // Alice's retry closes it with her vote, once.
    let retry = s.vote(&ballot("r23", "alice@example.com")).await.unwrap();
    assert!(
        matches!(
            retry,
            VoteResult::Counted {
                closed: Some(_),
                ..
            }
        ),
        "{retry:?}"
    );
    assert_eq!(
        f.kinds("r23"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    assert_eq!(f.tokens.calls().len(), 1);
    // While the request is open, a click the policy refuses is still a logged step.
    let (f, s) = opened("r24", DEPLOY).await;
    let stranger = s.vote(&ballot("r24", "mallory@example.com")).await.unwrap();
    assert!(
        matches!(stranger, VoteResult::Refused { .. }),
        "{stranger:?}"
    );
    assert_eq!(
        f.kinds("r24"),
        [EventKind::Notified, EventKind::VoteRefused]
    );
}

#[tokio::test]
async fn the_sweeper_closes_a_request_its_stored_votes_decide_when_the_click_did_not() {
    // Alice's click stores her deciding vote and ends before logging it; she never clicks again.
    let (f, s) = opened("r26", DEPLOY).await;
    vote_stored_not_logged(&f, &s, "r26", "alice@example.com").await;
    // Within the lease the click may still be closing it: the sweeper leaves it.
    let soon = s
        .sweep_at(10, s.now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(soon.waiting, 1, "{soon:?}");
    assert!(f.tokens.calls().is_empty());
    let later = s
        .sweep_at(10, s.now() + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(later.resumed, 1, "{later:?}");
    let calls = f.tokens.calls();
    assert!(
        matches!(calls.as_slice(), [Resumed::Success { .. }]),
        "{calls:?}"
    );
    assert_eq!(
        f.kinds("r26"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    let votes = vote_events(&f, "r26");
    assert_eq!(votes[0].0, "alice@example.com");
    assert!(
        votes[0].1[0].contains("logged when the request was decided"),
        "{votes:?}"
    );
    let item = f.pending.item("r26").unwrap();
    assert_eq!(item.state, ApprovalState::Approved);
    assert_eq!(item.decided_by.as_deref(), Some("alice@example.com"));
    assert_eq!(
        item.decided_at,
        Some(ballot("r26", "x").at),
        "decided as of her vote"
    );
    // Her late retry finds it decided by her vote and adds nothing.
    s.vote(&ballot("r26", "alice@example.com")).await.unwrap();
    s.sweep_at(10, s.now() + chrono::Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!(f.kinds("r26").len(), 3);
    assert_eq!(f.tokens.calls().len(), 1);
    regate_core::chain::verify_chain("r26", &f.log.of("r26")).unwrap();
}

#[tokio::test]
async fn a_counted_vote_whose_click_did_not_log_it_is_logged_before_the_decision() {
    // An IAM change needs an owner and security. Alice's (owner) vote is stored, not logged;
    // Ivan's (security) vote decides it: the decision counts both, so both must be in the log.
    let (f, s) = opened("r27", IAM).await;
    vote_stored_not_logged(&f, &s, "r27", "alice@example.com").await;
    let deciding = s.vote(&ballot("r27", "ivan@example.com")).await.unwrap();
    assert!(
        matches!(
            deciding,
            VoteResult::Counted {
                closed: Some(Closed {
                    state: ApprovalState::Approved,
                    resumed: true
                }),
                ..
            }
        ),
        "{deciding:?}"
    );
    assert_eq!(
        f.kinds("r27"),
        [
            EventKind::Notified,
            EventKind::Vote,
            EventKind::Vote,
            EventKind::Decided
        ]
    );
    let votes = vote_events(&f, "r27");
    assert_eq!(votes[0], ("ivan@example.com".to_string(), vec![]));
    assert_eq!(votes[1].0, "alice@example.com");
    assert!(
        votes[1].1[0].contains("logged when the request was decided"),
        "{votes:?}"
    );
    // The decided event counts exactly the voters the log records.
    let decided = f.log.of("r27").pop().unwrap();
    let counted: Vec<&str> = decided.data["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["voter"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["alice@example.com", "ivan@example.com"]);
    // Her click was still on its way (a burst): it finds her entry made and adds nothing.
    let hers = s.vote(&ballot("r27", "alice@example.com")).await.unwrap();
    assert!(
        matches!(hers, VoteResult::Counted { closed: None, .. }),
        "{hers:?}"
    );
    assert_eq!(f.kinds("r27").len(), 4, "{:?}", f.kinds("r27"));
    regate_core::chain::verify_chain("r27", &f.log.of("r27")).unwrap();
}

#[tokio::test]
async fn a_vote_that_lost_its_write_to_a_deciding_vote_is_checked_again_and_not_stored() {
    // An IAM change needs an owner and security. Alice (owner) has voted. Ivan (security)
    // reads the approval, but Bob's (security) vote is stored before Ivan's write: the votes
    // before Ivan's decide the request, so his is not stored, logged or counted.
    let (f, s) = opened("r28", IAM).await;
    s.vote(&ballot("r28", "alice@example.com")).await.unwrap();
    f.pending.vote_first(regate_core::Vote {
        voter: "bob@example.com".into(),
        vote: regate_core::Choice::Approve,
        reason: None,
        at: "2026-11-03T10:00:00Z".into(),
    });
    let ivan = s.vote(&ballot("r28", "ivan@example.com")).await.unwrap();
    assert!(
        matches!(ivan, VoteResult::AlreadyDecided { .. }),
        "{ivan:?}"
    );
    let stored = f.pending.item("r28").unwrap();
    let voters: Vec<&str> = stored.votes.iter().map(|v| v.voter.as_str()).collect();
    assert_eq!(voters, ["alice@example.com", "bob@example.com"]);
    assert_eq!(f.kinds("r28"), [EventKind::Notified, EventKind::Vote]);
    assert!(
        f.tokens.calls().is_empty(),
        "Bob's click closes it, not Ivan's"
    );
}

#[tokio::test]
async fn a_refresh_that_rendered_an_older_state_shows_the_stored_one_after_it() {
    // A click renders the approval as pending; before its update lands, another vote closes
    // and resumes it. The slow click's update must not be the last word on the message.
    let (f, s) = opened("r25", DEPLOY).await;
    let stale = f.pending.item("r25").unwrap();
    s.vote(&ballot("r25", "alice@example.com")).await.unwrap();
    let before = f.chat.updates.lock().unwrap().len();
    s.refresh(&stale, &stale.evaluation).await;
    let updates = f.chat.updates.lock().unwrap().clone();
    let states: Vec<ApprovalState> = updates[before..].iter().map(|u| u.1).collect();
    assert_eq!(
        states,
        [ApprovalState::Pending, ApprovalState::Approved],
        "the stale view, then the stored one"
    );
    // Up to date already: one update, no second.
    let current = f.pending.item("r25").unwrap();
    s.refresh(&current, &current.evaluation).await;
    assert_eq!(f.chat.updates.lock().unwrap().len(), updates.len() + 1);
}

#[tokio::test]
async fn expiry_does_not_need_the_policy() {
    let f = Fakes::default();
    let r = request("r17").build();
    open(&f.approvals(), &r, "token-1").await;
    let broken = regate_core::PolicyBundle::from_files(
        vec![regate_core::policy::PolicyFile {
            path: "approvals.rego".into(),
            source: "package approvals\n\ndecision := input.nothing.here\nvote := input.nothing\n"
                .into(),
        }],
        None,
    )
    .unwrap();
    let s = f.approvals_with(regate_core::PolicyEngine::compile(&broken).unwrap());
    let expired = s
        .expire("r17", &execution_of("r17"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
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
        .notify(
            &r,
            &evaluation,
            &TaskToken::new("token-2"),
            &execution_of("r7"),
        )
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
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("r9"))
        .await
        .unwrap_err();
    assert_eq!(error.name().as_str(), "Chat.NoTarget");
    assert!(error.to_string().contains("teams"), "{error}");
}

#[tokio::test]
async fn expiry_closes_a_pending_request_logs_it_and_shows_it() {
    let (f, s) = opened("r8", DEPLOY).await;
    let expired = s.expire("r8", &execution_of("r8")).await.unwrap().unwrap();
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

#[tokio::test]
async fn a_notifier_that_posted_but_died_before_recording_it_is_not_posted_twice() {
    let (f, s) = opened("r18", DEPLOY).await;
    // The first attempt posted and recorded its intent, then died before recording the message.
    f.pending.edit("r18", |item| item.messages.clear());
    let r = request("r18").build();
    let retried = s
        .notify(
            &r,
            &first_evaluation(&r, s.now()),
            &TaskToken::new("token-2"),
            &execution_of("r18"),
        )
        .await
        .unwrap();
    assert_eq!(
        f.chat.posts.lock().unwrap().len(),
        1,
        "no second live message"
    );
    assert_eq!(
        retried.approval.messages.len(),
        1,
        "the first message is adopted"
    );
    assert!(retried
        .approval
        .posting
        .contains(&"slack:C0PAYMENTS".to_string()));
}

#[tokio::test]
async fn a_click_from_where_the_request_was_not_posted_does_not_count() {
    let (f, s) = opened("r21", DEPLOY).await;
    f.chat.knows("U0ALICE", "alice@example.com");
    let mut elsewhere = regate_testkit::slack_voter("U0ALICE");
    elsewhere.conversation = Some("C0ELSEWHERE".into());
    let result = s
        .click(&elsewhere, "r21", regate_core::Choice::Approve)
        .await
        .unwrap();
    assert!(
        matches!(result, VoteResult::Refused { ref reason, .. } if reason.contains("not posted where you clicked")),
        "{result:?}"
    );
    assert!(f.tokens.calls().is_empty());
    // From the channel it was posted to (C0PAYMENTS), the same click counts.
    let here = regate_testkit::slack_voter("U0ALICE");
    let result = s
        .click(&here, "r21", regate_core::Choice::Approve)
        .await
        .unwrap();
    assert!(matches!(result, VoteResult::Counted { .. }), "{result:?}");
}

#[tokio::test]
async fn a_person_who_cannot_be_reached_is_an_error_on_the_request_and_the_others_are_asked() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    fakes
        .chat
        .strangers
        .lock()
        .unwrap()
        .push("alice@example.com".into());
    let asking = request("dm-1").with(
        "details",
        serde_json::json!({"ask": ["alice@example.com", "bob@example.com"]}),
    );
    let r = asking.build();
    let evaluation = first_evaluation(&r, approvals.now());
    let keys: Vec<String> = evaluation.decision.notify.iter().map(|t| t.key()).collect();
    assert!(
        keys.contains(&"slack-user:alice@example.com".to_string()),
        "{keys:?}"
    );
    let notified = approvals
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("dm-1"))
        .await
        .unwrap();
    // The channel message went out; bob's Teams message is not this fake's platform.
    assert_eq!(notified.approval.messages.len(), 1);
    let errors: Vec<_> = fakes
        .log
        .of("dm-1")
        .into_iter()
        .filter(|e| e.kind == EventKind::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].data["unreachable"], "alice@example.com");
    assert!(
        errors[0].reasons[0].contains("cannot be asked directly on slack"),
        "{errors:?}"
    );
    // A retried step tries again and logs nothing new.
    approvals
        .notify(&r, &evaluation, &TaskToken::new("t"), &execution_of("dm-1"))
        .await
        .unwrap();
    let kinds = fakes.kinds("dm-1");
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::Error).count(), 1);
}
