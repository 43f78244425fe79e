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
