//! The sweeper over in-memory fakes: owed resumes carried out once, approvals of gone
//! workflows expired, waiting ones left alone, a run bounded by its batch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regate_core::approvals::{SweepReport, VoteResult};
use regate_core::ports::Clock;
use regate_core::ports::{ChatError, ExecutionStatus, TaskTokenError};
use regate_core::{ApprovalState, EventKind};
use regate_testkit::{ballot, execution_of, open, request, Fakes, MemoryApprovals, Resumed};

use crate::handler::{handle, Input, Settings};

const SETTINGS: Settings = Settings {
    batch: 100,
    time: std::time::Duration::MAX,
    accepts_now: true,
};

#[tokio::test]
async fn a_resume_that_failed_is_carried_out_by_the_sweeper_once() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    open(&approvals, &request("sw-1").build(), "token-1").await;
    open(&approvals, &request("sw-2").build(), "token-2").await;
    fakes
        .tokens
        .fault
        .set(TaskTokenError::Unavailable("connection reset".into()));
    approvals
        .vote(&ballot("sw-1", "alice@example.com"))
        .await
        .unwrap();
    assert!(fakes.pending.item("sw-1").unwrap().owes_resume());
    fakes.tokens.fault.clear();

    let report = handle(&approvals, Input::default(), SETTINGS)
        .await
        .unwrap();
    // sw-1 is due at once (no path holds its resume); sw-2 not before its first duty.
    assert_eq!((report.due, report.checked, report.resumed), (1, 1, 1));
    let calls = fakes.tokens.calls();
    assert!(matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-1"));
    let again = handle(&approvals, Input::default(), SETTINGS)
        .await
        .unwrap();
    assert_eq!(
        (again.due, again.checked),
        (0, 0),
        "sw-1 owes nothing now, and sw-2 is not due"
    );
    assert_eq!(fakes.tokens.calls().len(), 1);
    let decided = fakes
        .kinds("sw-1")
        .iter()
        .filter(|k| **k == EventKind::Decided)
        .count();
    assert_eq!(decided, 1);
}

#[tokio::test]
async fn an_open_approval_whose_workflow_is_gone_is_expired_and_shown() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    open(&approvals, &request("sw-3").build(), "token-3").await;
    let gone = ExecutionStatus::Failed(Some("States.Runtime".into()));
    fakes
        .tokens
        .executions
        .lock()
        .unwrap()
        .insert(execution_of("sw-3"), gone);
    // The sweeper learns it when the approval is next due (its first duty), not before.
    let early = handle(&approvals, Input::default(), SETTINGS)
        .await
        .unwrap();
    assert_eq!(early.checked, 0, "{early:?}");
    let due = fakes.pending.item("sw-3").unwrap().due_at.unwrap();
    let at_due = Input {
        now: Some(regate_core::time::format_rfc3339_ms(due)),
        ..Input::default()
    };
    let report = handle(&approvals, at_due, SETTINGS).await.unwrap();
    assert_eq!(report.expired, 1);
    let item = fakes.pending.item("sw-3").unwrap();
    assert_eq!((item.state, item.resumed), (ApprovalState::Expired, true));
    assert_eq!(
        fakes.kinds("sw-3"),
        [EventKind::Notified, EventKind::Expired, EventKind::Notified]
    );
    let updates = fakes.chat.updates.lock().unwrap().clone();
    assert_eq!(
        updates.last().unwrap().1,
        ApprovalState::Expired,
        "no live buttons left"
    );
}

#[tokio::test]
async fn a_run_looks_at_its_batch_at_most() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    for id in ["sw-4", "sw-5", "sw-6"] {
        open(&approvals, &request(id).build(), "t").await;
    }
    let day_later = fakes.clock.now() + chrono::Duration::days(1);
    let report = handle(
        &approvals,
        Input {
            limit: Some(50),
            now: Some(regate_core::time::format_rfc3339_ms(day_later)),
            ..Input::default()
        },
        Settings {
            batch: 2,
            ..SETTINGS
        },
    )
    .await
    .unwrap();
    assert_eq!((report.due, report.checked), (2, 2), "{report:?}");
}

/// A sweep as of `minutes` after the fakes' clock.
async fn sweep_after(approvals: &MemoryApprovals, fakes: &Fakes, minutes: i64) -> SweepReport {
    let now = fakes.clock.now() + chrono::Duration::minutes(minutes);
    let input = Input {
        now: Some(regate_core::time::format_rfc3339_ms(now)),
        ..Input::default()
    };
    handle(approvals, input, SETTINGS).await.unwrap()
}

#[tokio::test]
async fn a_reminder_goes_out_once_naming_only_those_who_have_not_voted() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let iam = request("rm-1").change("iam_change", "production", "iam_role", "payments");
    open(&approvals, &iam.build(), "token-1").await;
    approvals
        .vote(&ballot("rm-1", "alice@example.com"))
        .await
        .unwrap();

    assert_eq!(
        sweep_after(&approvals, &fakes, 10).await.reminded,
        0,
        "not due yet"
    );
    // Two sweepers at once, then a third: one reminder.
    let (a, b) = tokio::join!(
        sweep_after(&approvals, &fakes, 16),
        sweep_after(&approvals, &fakes, 16)
    );
    assert_eq!(a.reminded + b.reminded, 1);
    assert_eq!(sweep_after(&approvals, &fakes, 17).await.reminded, 0);

    let reminders = fakes.chat.reminders.lock().unwrap().clone();
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    let (message, waiting_on) = &reminders[0];
    assert_eq!(message, &fakes.pending.item("rm-1").unwrap().messages[0]);
    assert!(!waiting_on.contains(&"alice@example.com".to_string()));
    assert!(waiting_on.contains(&"bob@example.com".to_string()));
    assert!(waiting_on.contains(&"ivan@example.com".to_string()));
    let reminded: Vec<_> = fakes
        .log
        .of("rm-1")
        .into_iter()
        .filter(|e| e.kind == EventKind::Reminded)
        .collect();
    assert_eq!(reminded.len(), 1);
    assert_eq!(reminded[0].data["remind_after"], 900);
    // 4 h timeout, 16 min in.
    assert_eq!(reminded[0].data["left_seconds"], 4 * 3600 - 16 * 60);
}

#[tokio::test]
async fn a_reminder_that_no_message_could_take_is_sent_by_a_sweep_after_the_back_off() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    open(&approvals, &request("rm-2").build(), "token-1").await;
    fakes
        .chat
        .fault
        .set(ChatError::Unavailable("slack is down".into()));
    let failed = sweep_after(&approvals, &fakes, 16).await;
    assert_eq!((failed.reminded, failed.failed.len()), (0, 1));
    fakes.chat.fault.clear();
    // Given back, due again two minutes on (RETRY_FAILED_SWEEP_AFTER), not at every sweep.
    assert_eq!(sweep_after(&approvals, &fakes, 17).await.due, 0);
    assert_eq!(sweep_after(&approvals, &fakes, 18).await.reminded, 1);
    assert_eq!(fakes.chat.reminders.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn escalation_asks_sre_once_and_an_sre_vote_then_approves() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    open(&approvals, &request("es-1").build(), "token-1").await;
    let refused = approvals
        .vote(&ballot("es-1", "erin@example.com"))
        .await
        .unwrap();
    assert!(matches!(refused, VoteResult::Refused { .. }), "{refused:?}");

    let first = sweep_after(&approvals, &fakes, 31).await;
    assert_eq!(first.reevaluated, 1);
    assert_eq!(sweep_after(&approvals, &fakes, 32).await.reevaluated, 0);
    assert_eq!(sweep_after(&approvals, &fakes, 40).await.reevaluated, 0);
    let posts: Vec<String> = fakes
        .chat
        .posts
        .lock()
        .unwrap()
        .iter()
        .map(|(target, _)| target.key())
        .collect();
    assert_eq!(posts, ["slack:C0PAYMENTS", "slack:C0SRE"], "sre asked once");
    let item = fakes.pending.item("es-1").unwrap();
    assert_eq!(item.evaluation.decision.alternatives.len(), 1);
    assert_eq!(item.messages.len(), 2);
    let evaluated: Vec<_> = fakes
        .log
        .of("es-1")
        .into_iter()
        .filter(|e| e.kind == EventKind::Evaluated)
        .collect();
    assert_eq!(evaluated.len(), 1, "one re-evaluation");
    assert_eq!(evaluated[0].data["reevaluate_after"], 1800);
    assert_eq!(
        evaluated[0].input_digest,
        Some(item.evaluation.input_digest)
    );

    // The clicking function's clock is behind the sweeper's: the escalation still holds.
    let mut erin = ballot("es-1", "erin@example.com");
    erin.choice = regate_core::Choice::Approve;
    let counted = approvals.vote(&erin).await.unwrap();
    let VoteResult::Counted { closed, .. } = counted else {
        panic!("{counted:?}")
    };
    assert_eq!(closed.unwrap().state, ApprovalState::Approved);
    assert!(matches!(
        &fakes.tokens.calls()[..],
        [Resumed::Success { .. }]
    ));
}

#[tokio::test]
async fn a_request_still_open_when_its_window_closes_is_denied_and_resumed_once() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let ends = fakes.clock.now() + chrono::Duration::minutes(10);
    let windowed = request("tw-1").with(
        "details",
        serde_json::json!({"not_after": regate_core::time::format_rfc3339_ms(ends)}),
    );
    open(&approvals, &windowed.build(), "token-1").await;

    let early = sweep_after(&approvals, &fakes, 9).await;
    assert_eq!(
        early.due, 0,
        "nothing due before the window closes: {early:?}"
    );
    let (a, b) = tokio::join!(
        sweep_after(&approvals, &fakes, 11),
        sweep_after(&approvals, &fakes, 11)
    );
    assert_eq!(a.waiting + b.waiting, 0, "{a:?} {b:?}");
    sweep_after(&approvals, &fakes, 12).await;

    let calls = fakes.tokens.calls();
    assert!(
        matches!(&calls[..], [Resumed::Failure { error, cause, .. }] if error == "ApprovalRejected" && cause.contains("window closed")),
        "{calls:?}"
    );
    let item = fakes.pending.item("tw-1").unwrap();
    assert_eq!(
        (item.state, item.decided_by),
        (ApprovalState::Rejected, None)
    );
    let kinds = fakes.kinds("tw-1");
    // Decided by time, and the requester told so.
    let tail = &kinds[kinds.len() - 3..];
    assert_eq!(
        tail,
        [
            EventKind::Evaluated,
            EventKind::Decided,
            EventKind::Notified
        ],
        "{kinds:?}"
    );
    let told = fakes.chat.outcomes.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].2, ApprovalState::Rejected);
}

#[tokio::test]
async fn only_a_sweeper_configured_for_it_takes_the_time_from_its_input() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let later = Input {
        now: Some("2026-06-01T13:00:00Z".into()),
        ..Input::default()
    };
    let locked = Settings {
        accepts_now: false,
        ..SETTINGS
    };
    let refused = handle(&approvals, later, locked).await.unwrap_err();
    assert!(
        refused.error_message.contains("SWEEP_ACCEPTS_NOW"),
        "{refused:?}"
    );
    for bad in ["yesterday", "2026-06-01T11:00:00Z"] {
        let input = Input {
            now: Some(bad.into()),
            ..Input::default()
        };
        let refused = handle(&approvals, input, SETTINGS).await.unwrap_err();
        assert_eq!(refused.error_type, "InvalidInput", "{bad}");
    }
}

#[test]
fn a_scheduled_event_sweeps_everything_and_a_mistyped_input_is_refused() {
    let scheduled = serde_json::json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "time": "2026-06-01T12:00:00Z", "detail": {}});
    let input = Input::from_payload(scheduled).unwrap();
    assert_eq!(
        (input.limit, input.request_id, input.now),
        (None, None, None)
    );
    assert!(Input::from_payload(serde_json::Value::Null).is_ok());
    let refused = Input::from_payload(serde_json::json!({"limit": "ten"})).unwrap_err();
    assert_eq!(refused.error_type, "InvalidInput");
    assert!(
        refused.error_message.contains("invalid type"),
        "{refused:?}"
    );
}

#[test]
fn a_run_starts_sweeps_until_twenty_seconds_before_its_deadline_or_for_half_a_short_one() {
    use std::time::Duration;
    let time = |left| SETTINGS.with_time_left(left).time;
    assert_eq!(time(Some(Duration::from_secs(50))), Duration::from_secs(30));
    assert_eq!(time(Some(Duration::from_secs(10))), Duration::from_secs(5));
    assert_eq!(
        time(None),
        crate::handler::TIME_WITHOUT_DEADLINE,
        "no deadline ahead (cargo lambda watch)"
    );
}
