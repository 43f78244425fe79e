//! The sweeper over in-memory fakes: owed resumes carried out once, approvals of gone
//! workflows expired, waiting ones left alone, a run bounded by its batch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regate_core::checkpoint::{check_checkpoints, Cadence, PublicKey};
use regate_core::ports::Clock;
use regate_core::ports::{ExecutionStatus, TaskTokenError};
use regate_core::{ApprovalState, EventKind};
use regate_testkit::{ballot, execution_of, open, request, Fakes, MemoryCheckpoints, Resumed};

use crate::handler::{handle, Checkpoints, Input};

const NO_CHECKPOINTS: Option<Checkpoints<'static, MemoryCheckpoints>> = None;

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

    let report = handle(&approvals, NO_CHECKPOINTS, Input::default(), 100)
        .await
        .unwrap()
        .sweep;
    assert_eq!((report.checked, report.resumed, report.waiting), (2, 1, 1));
    let calls = fakes.tokens.calls();
    assert!(matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-1"));
    let again = handle(&approvals, NO_CHECKPOINTS, Input::default(), 100)
        .await
        .unwrap()
        .sweep;
    assert_eq!(
        (again.checked, again.resumed),
        (1, 0),
        "sw-1 owes nothing now"
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
    let report = handle(&approvals, NO_CHECKPOINTS, Input::default(), 100)
        .await
        .unwrap()
        .sweep;
    assert_eq!(report.expired, 1);
    let item = fakes.pending.item("sw-3").unwrap();
    assert_eq!((item.state, item.resumed), (ApprovalState::Expired, true));
    assert_eq!(
        fakes.kinds("sw-3"),
        [EventKind::Notified, EventKind::Expired]
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
    let report = handle(&approvals, NO_CHECKPOINTS, Input { limit: Some(50) }, 2)
        .await
        .unwrap()
        .sweep;
    assert_eq!(report.checked, 2);
}

#[tokio::test]
async fn checkpoints_are_cut_when_due_signed_chained_and_empty_ones_too() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let ports = MemoryCheckpoints::new(fakes.log.clone());
    let cadence = Cadence {
        every: chrono::Duration::minutes(5),
        settle: chrono::Duration::seconds(30),
    };
    let run = |now| {
        Some(Checkpoints {
            ports: &ports,
            cadence,
            now,
        })
    };
    open(&approvals, &request("cp-1").build(), "token-1").await;
    approvals
        .vote(&ballot("cp-1", "alice@example.com"))
        .await
        .unwrap();
    let start = fakes.clock.now() + chrono::Duration::minutes(1);

    let first = handle(&approvals, run(start), Input::default(), 100)
        .await
        .unwrap();
    assert_eq!(first.checkpoint, Some(1));
    // Not due again until five minutes later; then one with nothing new is cut all the same.
    let early = handle(
        &approvals,
        run(start + chrono::Duration::minutes(2)),
        Input::default(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(early.checkpoint, None);
    let later = handle(
        &approvals,
        run(start + chrono::Duration::minutes(6)),
        Input::default(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(later.checkpoint, Some(2));

    let kept = ports.kept.lock().unwrap().clone();
    assert_eq!(kept[0].heads.len(), 1);
    assert_eq!(kept[0].heads[0].request_id, "cp-1");
    assert_eq!(kept[0].heads[0].seq, fakes.log.of("cp-1").len() as u64);
    assert!(kept[1].heads.is_empty());
    let key = PublicKey::from_spki_der(&ports.public_key_der()).unwrap();
    let (anchors, findings) = check_checkpoints(kept, &key);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(anchors.checkpoints, 2);
}
