//! The sweeper's closes on stored votes, and expiry.

use super::*;

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
async fn a_decision_its_workflow_has_not_taken_shows_as_sweeper_lag() {
    let (f, s) = opened("r47", DEPLOY).await;
    f.tokens
        .fault
        .set(TaskTokenError::Throttled("slow down".into()));
    s.vote(&ballot("r47", "alice@example.com")).await.unwrap();
    f.clock.advance(chrono::Duration::minutes(6));
    s.sweep(10).await.unwrap();
    let lags: Vec<f64> = f
        .metrics
        .all()
        .iter()
        .filter(|m| m.name == "SweepLagSeconds")
        .map(|m| m.value)
        .collect();
    assert_eq!(lags, [360.0], "the decision has waited 6 minutes");
    // Once the workflow takes it, there is no lag.
    f.tokens.fault.clear();
    s.sweep(10).await.unwrap();
    s.sweep(10).await.unwrap();
    let last = f
        .metrics
        .all()
        .iter()
        .rev()
        .find(|m| m.name == "SweepLagSeconds")
        .map(|m| m.value);
    assert_eq!(last, Some(0.0));
}

#[test]
fn an_approval_is_next_due_at_its_earliest_duty_and_never_once_resumed() {
    // The default policy's production deploy: reminders at 15 and 50 minutes, a re-evaluation
    // at 30, a timeout of an hour.
    let request = request("r48")
        .change("deploy", "production", "service", "payments")
        .build();
    let mut a = regate_testkit::pending_approval(&request, "token-1");
    let opened = a.created_at;
    let at = |minutes: i64| opened + chrono::Duration::minutes(minutes);
    assert_eq!(a.next_due(), Some(at(15)), "the first reminder");
    a.reminded_through = 900;
    assert_eq!(a.next_due(), Some(at(30)), "then the re-evaluation");
    a.reevaluated_through = 1800;
    assert_eq!(a.next_due(), Some(at(50)), "then the second reminder");
    a.reminded_through = 3000;
    assert_eq!(
        a.next_due(),
        Some(at(60) + regate_core::pending::SWEEP_GRACE),
        "then the deadline, with the grace"
    );
    // A vote stored at 40 minutes is settled 90 s later, unless something is due sooner.
    a.votes.push(regate_testkit::counted_vote(
        "alice@example.com",
        regate_core::Choice::Approve,
        None,
        &regate_core::time::format_rfc3339_ms(at(40)),
    ));
    assert_eq!(
        a.next_due(),
        Some(at(40) + regate_core::pending::RESUME_LEASE)
    );
    // Closed: due when the resuming path's claim lapses; once resumed, never.
    a.state = ApprovalState::Approved;
    a.decided_at = Some(at(41));
    a.resume_until = Some(at(42));
    assert_eq!(a.next_due(), Some(at(42)));
    a.resume_until = None;
    assert_eq!(a.next_due(), Some(at(41)));
    a.resumed = true;
    assert_eq!(a.next_due(), None);
}
