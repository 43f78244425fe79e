//! Votes: who may vote, double clicks, reasons, votes that lost a race, clicks from elsewhere.

use super::*;

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
async fn an_unknown_request_is_reported_as_such() {
    let s = Fakes::default().approvals();
    let result = s.vote(&ballot("nope", "alice@example.com")).await.unwrap();
    assert_eq!(result, VoteResult::Unknown);
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
async fn a_click_with_no_policy_loaded_is_answered_privately_and_records_nothing() {
    let (f, _) = opened("r22", DEPLOY).await;
    f.chat.knows("U0ALICE", "alice@example.com");
    let without = f.approvals_with_live(std::sync::Arc::new(regate_core::LivePolicy::unavailable(
        "the bundle's signature is refused",
    )));
    let before = f.log.of("r22").len();
    let result = without
        .click(
            &regate_testkit::slack_voter("U0ALICE"),
            "r22",
            regate_core::Choice::Approve,
        )
        .await
        .unwrap();
    assert_eq!(result, VoteResult::PolicyUnavailable);
    let told = f.chat.told();
    assert!(
        told.iter()
            .any(|(_, text)| text.contains("cannot check votes right now")),
        "{told:?}"
    );
    assert_eq!(f.log.of("r22").len(), before, "nothing was logged");
    assert!(f.pending.item("r22").unwrap().votes.is_empty());
    assert!(f.tokens.calls().is_empty());
}

/// A policy whose `vote` rule checks only who may vote, not whether the votes already decide:
/// one approval or one rejection from an owner decides.
fn membership_only_policy() -> regate_core::PolicyEngine {
    policy_of(MEMBERSHIP_ONLY)
}

/// The engine of a one-file policy bundle.
fn policy_of(source: &str) -> regate_core::PolicyEngine {
    let file = regate_core::policy::PolicyFile {
        path: "approvals.rego".into(),
        source: source.into(),
    };
    let bundle = regate_core::PolicyBundle::from_files(vec![file], None).unwrap();
    regate_core::PolicyEngine::compile(&bundle).unwrap()
}

const MEMBERSHIP_ONLY: &str = r#"package approvals

owners := {"alice@example.com", "bob@example.com"}
approves := {v.voter | some v in input.votes; v.vote == "approve"}
rejects := {v.voter | some v in input.votes; v.vote == "reject"}

outcome := "deny" if count(rejects) > 0
else := "allow" if count(approves) > 0
else := "approval_required"

decision := {
    "outcome": outcome,
    "reasons": ["an owner decides"],
    "requirements": [{"group": "owners", "min": 1, "have": count(approves)}],
    "approvers": ["alice@example.com", "bob@example.com"],
    "notify": [{"platform": "slack", "channel": "C0OWNERS"}],
    "timeout_seconds": 3600,
}

vote := {"allowed": input.voter in owners, "reason": "not an owner"}
"#;

#[tokio::test]
async fn already_decided_does_not_depend_on_the_policys_vote_rule() {
    // Alice's approval is stored (its log entry failed, so nothing closed it yet): it decides
    // the request. Bob's rejection arrives before the close; the policy's vote rule alone would
    // let him vote, and the close would then turn the approval into a rejection.
    let fakes = Fakes::default();
    let s = fakes.approvals_with(membership_only_policy());
    let request = request("r40")
        .change("deploy", "production", "service", "payments")
        .build();
    open(&s, &request, "token-1").await;
    vote_stored_not_logged(&fakes, &s, "r40", "alice@example.com").await;
    let rejection = rejecting(ballot("r40", "bob@example.com"), Some("not today"));
    let bob = s.vote(&rejection).await.unwrap();
    assert!(matches!(bob, VoteResult::AlreadyDecided { .. }), "{bob:?}");
    assert_eq!(
        fakes.pending.item("r40").unwrap().votes.len(),
        1,
        "bob's vote is not stored"
    );
    // Alice's retry closes it as approved, with her vote.
    s.vote(&ballot("r40", "alice@example.com")).await.unwrap();
    let closed = fakes.pending.item("r40").unwrap();
    assert_eq!(closed.state, ApprovalState::Approved);
    assert_eq!(fakes.tokens.calls().len(), 1);
}

#[tokio::test]
async fn a_refused_click_is_logged_once_per_voter_and_choice_however_often_it_comes() {
    let (f, s) = opened("r41", DEPLOY).await;
    for _ in 0..5 {
        let click = s.vote(&ballot("r41", "mallory@example.com")).await.unwrap();
        assert!(matches!(click, VoteResult::Refused { .. }), "{click:?}");
        f.clock.advance(chrono::Duration::milliseconds(7));
    }
    let rejection = rejecting(ballot("r41", "mallory@example.com"), Some("no"));
    let other = s.vote(&rejection).await.unwrap();
    assert!(matches!(other, VoteResult::Refused { .. }), "{other:?}");
    assert_eq!(
        f.kinds("r41"),
        [
            EventKind::Notified,
            EventKind::VoteRefused,
            EventKind::VoteRefused
        ],
        "one refusal for the approvals, one for the rejection"
    );
}

#[tokio::test]
async fn a_teams_click_counts_only_from_a_teams_card_of_the_request() {
    // The fakes post on Slack only: this request has no Teams card anywhere.
    let (f, s) = opened("r42", DEPLOY).await;
    f.chat.knows("29:alice", "alice@example.com");
    let voter = regate_core::Voter {
        platform: regate_core::Platform::Teams,
        user_id: "29:alice".into(),
        conversation: Some("19:payments-approvals@thread.tacv2".into()),
        trigger: None,
        tenant: None,
        endpoint: None,
        message: Some("1700000000000".into()),
    };
    let result = s
        .click(&voter, "r42", regate_core::Choice::Approve)
        .await
        .unwrap();
    assert!(
        matches!(result, VoteResult::Refused { ref reason, .. } if reason.contains("not posted where you clicked")),
        "{result:?}"
    );
    assert!(f.pending.item("r42").unwrap().votes.is_empty());
    assert!(f.tokens.calls().is_empty());
}

#[tokio::test]
async fn a_click_on_a_request_that_time_decided_after_its_last_vote_closes_it() {
    // One owner's approval is enough once the request has waited a minute; the policy declares
    // no re-evaluation, so no sweep would evaluate it again.
    let waited = MEMBERSHIP_ONLY.replace(
        r#"else := "allow" if count(approves) > 0"#,
        r#"else := "allow" if {
    count(approves) > 0
    time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(input.opened_at) >= 60000000000
}"#,
    );
    let fakes = Fakes::default();
    let s = fakes.approvals_with(policy_of(&waited));
    let request = request("r46")
        .change("deploy", "production", "service", "payments")
        .build();
    open(&s, &request, "token-1").await;
    let alice = s.vote(&ballot("r46", "alice@example.com")).await.unwrap();
    assert!(
        matches!(alice, VoteResult::Counted { closed: None, .. }),
        "{alice:?}"
    );
    // Two minutes later, Bob clicks: the stored vote and the time decide it, and his click
    // closes it (as time's decision, not his) instead of leaving it open.
    fakes.clock.advance(chrono::Duration::minutes(2));
    let mut late = ballot("r46", "bob@example.com");
    late.at = s.now();
    let bob = s.vote(&late).await.unwrap();
    assert!(matches!(bob, VoteResult::AlreadyDecided { .. }), "{bob:?}");
    let closed = fakes.pending.item("r46").unwrap();
    assert_eq!(closed.state, ApprovalState::Approved);
    assert_eq!(closed.decided_by, None);
    assert_eq!(closed.votes.len(), 1, "bob's vote is not stored");
    assert_eq!(fakes.tokens.calls().len(), 1);
}
