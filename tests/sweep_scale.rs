//! The sweeper at scale on the local stack: more approvals due than one sweep's batch, read
//! from the `by_due` index oldest first, each reminded once. Its own test binary, so that no
//! other test's sweep runs beside it (a sweep takes whatever is due, whoever opened it); its
//! tests run one at a time and forget what they stored, so later sweeps do not meet it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Timelike, Utc};
use regate_aws::DynamoPendingStore;
use regate_core::pending::{
    ApprovalState, Closing, Conditional, DueApproval, MessageRef, PendingApproval,
};
use regate_core::ports::PendingStore;
use regate_core::{EventKind, TaskToken};
use regate_tests::stack::LocalStack;
use regate_tests::{count, local_config, pending_table, stack_now, unique};

/// One test at a time: each sweeps what is due, and the other's approvals would be in it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn store() -> DynamoPendingStore {
    DynamoPendingStore::new(
        aws_sdk_dynamodb::Client::new(&local_config().await),
        pending_table(),
    )
}

/// A production deploy of the default policy (reminders at 15 and 50 minutes, a re-evaluation
/// at 30, an hour's timeout), opened at `opened` by workflow `execution`, shown in `message`.
fn open_approval(
    id: &str,
    execution: &str,
    opened: DateTime<Utc>,
    message: Option<&MessageRef>,
) -> PendingApproval {
    let request = regate_testkit::request(id)
        .change("deploy", "production", "service", "payments")
        .build();
    let evaluation = regate_testkit::first_evaluation(&request, opened);
    let token = TaskToken::new(format!("token-{id}"));
    let mut approval = PendingApproval::opened(&request, &evaluation, &token, execution, opened);
    approval.messages.extend(message.cloned());
    approval
}

/// Closes each approval as expired and resumed, its requester told, so no later sweep looks at
/// it.
async fn forget(store: &DynamoPendingStore, ids: &[String]) {
    for id in ids {
        let Some(item) = store.get(id).await.unwrap() else {
            continue;
        };
        if item.state == ApprovalState::Pending {
            let now = Utc::now();
            let closing = Closing {
                state: ApprovalState::Expired,
                evaluation: item.evaluation.clone(),
                decided_by: None,
                decided_at: now,
                closed_by: "test cleanup".into(),
                resumed: true,
                resume_until: now,
            };
            store.transition(id, item.version, &closing).await.unwrap();
        } else if !item.resumed {
            let state = ApprovalState::Expired;
            let now = Utc::now();
            store
                .settle(id, &item.task_token, state, now)
                .await
                .unwrap();
        }
        let item = store.get(id).await.unwrap().unwrap();
        if item.owes_tell() {
            let now = Utc::now();
            store
                .claim_tell(id, item.tell_claims, now, now)
                .await
                .unwrap();
            store.told(id, item.tell_claims + 1).await.unwrap();
        }
    }
}

#[tokio::test]
async fn each_of_150_due_approvals_is_reminded_once_within_three_sweeps_of_100() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let stack = LocalStack::connect().await;
    // One real workflow waits on its approval; the 150 approvals belong to it, so the sweeper
    // finds their workflow running, and they remind in its message's thread.
    let (anchor, execution) = stack.begin("scale-anchor", |r| r).await;
    let (channel, ts, _) = stack.message_for(&anchor).await;
    let message = MessageRef::Slack {
        channel,
        ts,
        user: None,
    };
    // Opened 20 minutes ago: the first reminder (at 15) is due, nothing else yet. The sweeper
    // reads SWEEP_BATCH (100, the default) a run.
    let opened = stack_now() - Duration::minutes(20);
    let opened = opened
        .with_nanosecond(opened.timestamp_subsec_millis() * 1_000_000)
        .unwrap();
    let store = store().await;
    let ids: Vec<String> = (0..150).map(|_| unique("scale")).collect();
    for id in &ids {
        let approval = open_approval(id, &execution, opened, Some(&message));
        assert!(matches!(
            store.create(&approval).await.unwrap(),
            Conditional::Done(_)
        ));
    }
    let mut reports = Vec::new();
    for _ in 0..3 {
        let report = stack.sweep().await;
        assert!(report.get("errorType").is_none(), "{report}");
        reports.push(report);
    }
    // The first sweep finds more due than its batch and reads the batch; the rest follow.
    assert_eq!(reports[0]["due"], 100, "{reports:?}");
    let sent: u64 = reports
        .iter()
        .map(|r| r["reminded"].as_u64().unwrap())
        .sum();
    assert!(sent >= 150, "{reports:?}");
    let mut reminded = 0;
    for id in &ids {
        let events = stack.events(id).await;
        assert_eq!(count(&events, EventKind::Reminded), 1, "{id}: {reports:?}");
        reminded += 1;
    }
    assert_eq!(reminded, 150);
    println!("three sweeps: {reports:?}");
    // Each is next due at its re-evaluation, ten minutes on: a fourth sweep reminds none again.
    let fourth = stack.sweep().await;
    for id in &ids {
        let item = store.get(id).await.unwrap().unwrap();
        assert_eq!(item.reminded_through, 900, "{id}");
        assert_eq!(item.due_at, Some(opened + Duration::minutes(30)), "{id}");
        assert_eq!(
            count(&stack.events(id).await, EventKind::Reminded),
            1,
            "{id}: {fourth}"
        );
    }
    forget(&store, &ids).await;
    stack
        .click_ok("alice@example.com", "approve", &anchor)
        .await;
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
}

/// The start of a second-long window of due times, in 1997 or so, that no earlier run of
/// this test on the same stack reaches: each run's starts two seconds further in the past for
/// each second of wall time since, so asking for what is due by the window's end lists this
/// run's approvals and no other test's (theirs are due around now).
fn window_of_this_run() -> DateTime<Utc> {
    let since = Utc::now().timestamp() - 1_700_000_000;
    let start: DateTime<Utc> = "2001-01-01T00:00:00Z".parse().unwrap();
    start - Duration::seconds(2 * since)
}

#[tokio::test]
async fn the_due_index_lists_what_is_due_oldest_first_across_shards_and_nothing_else() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let store = store().await;
    let start = window_of_this_run();
    let end = start + Duration::seconds(1);
    let execution = "arn:aws:states:us-east-1:123456789012:execution:none:none";
    // 150 approvals due a millisecond apart (more than one sweep's batch of 100), created in
    // an order unlike their due order, and 10 due after the window.
    let mut due_in_order = Vec::new();
    for n in (0..150).rev() {
        let id = unique("due");
        let mut approval = open_approval(&id, execution, Utc::now(), None);
        approval.due_at = Some(start + Duration::milliseconds(n));
        store.create(&approval).await.unwrap();
        due_in_order.insert(0, id);
    }
    let mut later = Vec::new();
    for _ in 0..10 {
        let id = unique("later");
        let mut approval = open_approval(&id, execution, Utc::now(), None);
        approval.due_at = Some(end + Duration::hours(1));
        store.create(&approval).await.unwrap();
        later.push(id);
    }
    let ids =
        |due: Vec<DueApproval>| -> Vec<String> { due.into_iter().map(|d| d.request_id).collect() };
    assert_eq!(ids(store.due(end, 100).await.unwrap()), due_in_order[..100]);
    let all = store.due(end, 1_000).await.unwrap();
    assert_eq!(all[0].due_at, start);
    assert_eq!(ids(all), due_in_order);
    // Moved to a later duty, closed with its resume claimed, or closed already resumed: each
    // leaves the window's list (a closed one comes back when its claim lapses; a resumed one is
    // due at once, out of this window, for the sweeper to tell its requester).
    let (first, second, third) = (&due_in_order[0], &due_in_order[1], &due_in_order[2]);
    let moved = store.reschedule(first, 1, end + Duration::hours(1)).await;
    assert!(matches!(moved.unwrap(), Conditional::Done(_)));
    let now = Utc::now();
    let closing = |state, resumed, resume_until| Closing {
        state,
        evaluation: store_evaluation(),
        decided_by: None,
        decided_at: now,
        closed_by: "test".into(),
        resumed,
        resume_until,
    };
    let claimed = closing(ApprovalState::Approved, false, end + Duration::minutes(1));
    let closed = store.transition(second, 1, &claimed).await.unwrap();
    assert!(matches!(closed, Conditional::Done(_)));
    let expired = closing(ApprovalState::Expired, true, now);
    let expired = store.transition(third, 1, &expired).await.unwrap();
    assert!(
        matches!(expired, Conditional::Done(ref item) if item.owes_tell()
        && item.due_at.map(|at| at.timestamp_millis()) == Some(now.timestamp_millis()))
    );
    assert_eq!(ids(store.due(end, 1_000).await.unwrap()), due_in_order[3..]);
    let lapsed = end + Duration::minutes(1);
    let back = ids(store.due(lapsed, 1_000).await.unwrap());
    assert!(back.contains(second) && !back.contains(first) && !back.contains(third));
    forget(&store, &due_in_order).await;
    forget(&store, &later).await;
    assert!(store.due(lapsed, 1_000).await.unwrap().is_empty());
}

/// An evaluation to close with (its content does not matter to the index).
fn store_evaluation() -> regate_core::Evaluation {
    open_approval("x", "x", Utc::now(), None).evaluation
}
