//! The sweeper's closes on stored votes, and expiry.

use super::*;

#[tokio::test]
async fn the_sweeper_closes_a_request_its_stored_votes_decide_when_the_click_did_not() {
    // Alice's click stores her deciding vote and ends before logging it; she never clicks again.
    let (f, s) = opened("r26", DEPLOY).await;
    vote_stored_not_logged(&f, &s, "r26", "alice@example.com").await;
    // Within the lease the click may still be closing it: it is not due until the vote
    // settles, and the sweeper does not even read it.
    let soon = s
        .sweep_at(
            SweepBudget::items(10),
            s.now() + chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!((soon.due, soon.checked), (0, 0), "{soon:?}");
    assert!(f.tokens.calls().is_empty());
    let later = s
        .sweep_at(
            SweepBudget::items(10),
            s.now() + chrono::Duration::minutes(2),
        )
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
        [
            EventKind::Notified,
            EventKind::Vote,
            EventKind::Decided,
            EventKind::Notified
        ]
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
    s.sweep_at(
        SweepBudget::items(10),
        s.now() + chrono::Duration::minutes(3),
    )
    .await
    .unwrap();
    assert_eq!(f.kinds("r26").len(), 4);
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
    // The Expire step sends nothing more: the sweeper tells the requester.
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
    s.sweep(SweepBudget::items(10)).await.unwrap();
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
    s.sweep(SweepBudget::items(10)).await.unwrap();
    s.sweep(SweepBudget::items(10)).await.unwrap();
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
    let grace = regate_core::pending::SWEEP_GRACE;
    assert_eq!(a.due_at, Some(at(15)), "opened due at the first reminder");
    assert_eq!(a.next_due(at(0)), Some(at(15)));
    // A duty that has passed and is not taken care of keeps it due.
    assert_eq!(a.next_due(at(20)), Some(at(15)), "the first reminder, late");
    a.reminded_through = 900;
    assert_eq!(a.next_due(at(15)), Some(at(30)), "then the re-evaluation");
    a.reevaluated_through = 1800;
    assert_eq!(a.next_due(at(30)), Some(at(50)), "then the second reminder");
    a.reminded_through = 3000;
    assert_eq!(
        a.next_due(at(50)),
        Some(at(60) + grace),
        "then the deadline, with the grace"
    );
    // Looked at after that and still running: every grace period again.
    assert_eq!(a.next_due(at(70)), Some(at(70) + grace));
    // A vote stored at 40 minutes is settled 90 s later, unless something is due sooner; once
    // that has passed (a sweep looked at the stored votes), it is due at its other duties.
    a.votes.push(regate_testkit::counted_vote(
        "alice@example.com",
        regate_core::Choice::Approve,
        None,
        &regate_core::time::format_rfc3339_ms(at(40)),
    ));
    let settled = at(40) + regate_core::pending::RESUME_LEASE;
    assert_eq!(a.next_due(at(40)), Some(settled));
    assert_eq!(a.next_due(settled), Some(at(60) + grace));
    assert_eq!(
        a.due_after(at(40), |a| a.reminded_through = 0),
        at(15),
        "a reminder given back is due at once (late)"
    );
    // Closed: due when the resuming path's claim lapses (at once when none holds it); once
    // resumed, never.
    a.state = ApprovalState::Approved;
    a.decided_at = Some(at(41));
    a.resume_until = Some(at(42));
    assert_eq!(a.next_due(at(41)), Some(at(42)));
    a.resume_until = None;
    assert_eq!(a.next_due(at(43)), Some(at(43)));
    // Resumed, it owes its requester the outcome until they are told.
    a.resumed = true;
    assert_eq!(a.next_due(at(43)), Some(at(43)));
    a.tell_until = Some(at(45));
    assert_eq!(a.next_due(at(43)), Some(at(45)));
    a.requester_told = true;
    assert_eq!(a.next_due(at(43)), None);
}

#[tokio::test]
async fn a_sweep_reads_what_is_due_not_what_is_open() {
    // 10,000 open approvals: 9,800 opened a minute ago (their first reminder is 14 minutes
    // off) and 200 opened 20 minutes ago (their first reminder is 5 minutes late).
    let f = Fakes::default();
    let now = f.clock.now();
    let minutes = chrono::Duration::minutes;
    f.pending.insert_all(regate_testkit::open_backlog(
        "fresh",
        9_800,
        now - minutes(1),
    ));
    f.pending
        .insert_all(regate_testkit::open_backlog("late", 200, now - minutes(20)));
    let s = f.approvals();
    let report = s.sweep(SweepBudget::items(1_000)).await.unwrap();
    let reads = f.pending.reads();
    assert_eq!(
        (report.due, report.checked, report.reminded),
        (200, 200, 200),
        "{report:?}"
    );
    assert!(
        reads.items <= 210 && reads.due_entries <= 210,
        "a sweep of 200 due among 10,000 open read {reads:?}"
    );
    // Each is due again only at its next duty (the re-evaluation at 30 minutes): the next
    // sweep reads nothing, and nothing is reminded twice.
    let again = s.sweep(SweepBudget::items(1_000)).await.unwrap();
    assert_eq!(again.due, 0, "{again:?}");
    assert_eq!(f.pending.reads(), reads);
    assert_eq!(
        f.pending.item("late-00000").unwrap().due_at,
        Some(now - minutes(20) + minutes(30))
    );
}

/// Fakes holding `count` open approvals opened 20 minutes before their clock's now (their
/// first reminder 5 minutes late), their workflow, and that now.
fn late_backlog(count: usize) -> (Fakes, MemoryApprovals, chrono::DateTime<chrono::Utc>) {
    let f = Fakes::default();
    let now = f.clock.now();
    let opened = now - chrono::Duration::minutes(20);
    f.pending
        .insert_all(regate_testkit::open_backlog("late", count, opened));
    let s = f.approvals();
    (f, s, now)
}

#[tokio::test]
async fn a_sweep_out_of_time_leaves_the_rest_first_in_line_for_the_next() {
    let (f, s, _) = late_backlog(3);
    // No time at all: each sweep still looks at one, the oldest due.
    let no_time = SweepBudget {
        items: 10,
        time: std::time::Duration::ZERO,
    };
    for n in 0..3 {
        let report = s.sweep(no_time).await.unwrap();
        assert_eq!(
            (report.due, report.checked, report.deferred, report.reminded),
            (3 - n, 1, 2 - n, 1),
            "{report:?}"
        );
        let oldest = format!("late-{n:05}");
        assert_eq!(f.kinds(&oldest), [EventKind::Reminded], "{oldest} next");
    }
    assert_eq!(s.sweep(no_time).await.unwrap().due, 0);
    assert_eq!(
        f.chat.reminders.lock().unwrap().len(),
        0,
        "no message to remind in"
    );
}

#[tokio::test]
async fn an_approval_looked_at_with_nothing_to_do_is_due_again_at_its_next_duty() {
    // Alice's approve is stored but does not decide an IAM change (it needs security too).
    let (f, s) = opened("r49", IAM).await;
    s.vote(&ballot("r49", "alice@example.com")).await.unwrap();
    let voted = f.pending.item("r49").unwrap();
    let settles = voted.created_at + regate_core::pending::RESUME_LEASE;
    assert_eq!(voted.due_at, Some(settles), "due when her vote settles");
    // The sweep then finds the stored votes do not decide it, and moves it on.
    let report = s.sweep_at(SweepBudget::items(10), settles).await.unwrap();
    assert_eq!((report.checked, report.waiting), (1, 1), "{report:?}");
    let moved = f.pending.item("r49").unwrap();
    assert_eq!(moved.due_at, moved.next_due(settles));
    assert!(moved.due_at.unwrap() > settles, "{moved:?}");
    let reads = f.pending.reads();
    let again = s.sweep_at(SweepBudget::items(10), settles).await.unwrap();
    assert_eq!(again.due, 0);
    assert_eq!(f.pending.reads(), reads);
}

#[tokio::test]
async fn an_approval_whose_sweep_failed_is_looked_at_again_after_a_back_off() {
    let (f, s, now) = late_backlog(1);
    f.tokens
        .fault
        .set(TaskTokenError::Unavailable("connection reset".into()));
    let failed = s.sweep(SweepBudget::items(10)).await.unwrap();
    assert_eq!(failed.failed, ["late-00000"]);
    f.tokens.fault.clear();
    let item = f.pending.item("late-00000").unwrap();
    assert_eq!(
        item.due_at,
        Some(now + regate_core::approvals::RETRY_FAILED_SWEEP_AFTER)
    );
    f.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(s.sweep(SweepBudget::items(10)).await.unwrap().due, 0);
    f.clock.advance(chrono::Duration::minutes(1));
    let retried = s.sweep(SweepBudget::items(10)).await.unwrap();
    assert_eq!((retried.checked, retried.reminded), (1, 1), "{retried:?}");
}

#[test]
fn a_re_evaluation_target_without_a_message_keeps_an_approval_due_until_it_has_one() {
    let mut a = regate_testkit::pending_approval(&request("r50").build(), "token-1");
    let opened = a.created_at;
    let at = |minutes: i64| opened + chrono::Duration::minutes(minutes);
    assert!(!a.evaluation.decision.notify.is_empty());
    assert_eq!(
        a.next_due(at(0)),
        Some(at(15)),
        "the notifier posts the first messages"
    );
    // A sweep stored a re-evaluation at 10 minutes and died before posting its message.
    a.evaluated_at = Some(at(10));
    let lease = regate_core::pending::RESUME_LEASE;
    assert_eq!(a.next_due(at(10)), Some(at(10) + lease));
    // Looked at after that, the post failed again: retried two minutes on.
    let retry = regate_core::approvals::RETRY_FAILED_SWEEP_AFTER;
    assert_eq!(a.next_due(at(12)), Some(at(12) + retry));
}
