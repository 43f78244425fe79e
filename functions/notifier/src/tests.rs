//! The notifier's handler over in-memory fakes: posting once across retries, outages with
//! retryable names, expiry shown on the messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::handler::{handle, Input};
use regate_core::ports::Clock;
use regate_core::ports::{ChatError, PendingStore};
use regate_core::TaskToken;
use regate_core::{ApprovalState, EventKind};
use regate_testkit::{execution_of, first_evaluation, request, Fakes};

fn notify_input(fakes: &Fakes, id: &str, token: &str) -> Input {
    let request = request(id).build();
    Input::Notify {
        task_token: TaskToken::new(token),
        decision: Box::new(first_evaluation(&request, fakes.clock.now())),
        execution_id: execution_of(id),
        request,
    }
}

#[tokio::test]
async fn the_message_is_posted_once_even_when_the_step_is_retried() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    handle(&approvals, notify_input(&fakes, "n1", "t1"))
        .await
        .unwrap();
    handle(&approvals, notify_input(&fakes, "n1", "t2"))
        .await
        .unwrap();
    assert_eq!(
        fakes.chat.posts.lock().unwrap().len(),
        1,
        "the teams target is skipped, the slack one posted once"
    );
    let stored = fakes.pending.get("n1").await.unwrap().unwrap();
    assert_eq!(
        stored.task_token.expose(),
        "t2",
        "the retried step's token replaces the dead one"
    );
    assert_eq!(stored.messages.len(), 1);
    assert_eq!(fakes.kinds("n1"), [EventKind::Notified]);
    let logged = &fakes.log.of("n1")[0];
    assert!(
        !serde_json::to_string(logged).unwrap().contains("t1"),
        "no task token in the log"
    );
}

#[tokio::test]
async fn a_slack_outage_fails_with_a_retryable_name_and_posts_later() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    fakes
        .chat
        .fault
        .set(ChatError::RateLimited("Retry-After 30 s".into()));
    let error = handle(&approvals, notify_input(&fakes, "n2", "t1"))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "Chat.RateLimited");
    fakes.chat.fault.clear();
    handle(&approvals, notify_input(&fakes, "n2", "t2"))
        .await
        .unwrap();
    assert_eq!(fakes.chat.posts.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn expire_closes_the_request_and_updates_its_messages() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    handle(&approvals, notify_input(&fakes, "n3", "t1"))
        .await
        .unwrap();
    let request = request("n3").build();
    let expire = Input::Expire {
        request,
        execution_id: execution_of("n3"),
    };
    let out = handle(&approvals, expire).await.unwrap();
    assert_eq!(out["state"], "expired");
    let updates = fakes.chat.updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1, ApprovalState::Expired);
    assert_eq!(fakes.log.of("n3").last().unwrap().kind, EventKind::Expired);
}
