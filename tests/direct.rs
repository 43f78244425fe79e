//! Direct messages end to end on the local stack: people the requester asks by name
//! (`details.ask`) get the approval in a direct message, on Slack (`users.lookupByEmail`, then
//! `conversations.open`) or on Teams (the member looked up by UPN, then `CreateConversation`),
//! and a vote from that direct message counts like any other.

use regate_chat::slack::interaction::{click_payload, form_body};
use regate_chat::teams::card::APPROVE_VERB;
use regate_core::{Event, EventKind};
use regate_tests::stack::{LocalStack, WAIT};
use serde_json::json;

/// The request's events once `messages` approval messages have been logged.
async fn once_notified(stack: &LocalStack, id: &str, messages: usize) -> Vec<Event> {
    let started = std::time::Instant::now();
    while started.elapsed() < WAIT {
        let events = stack.events(id).await;
        if regate_tests::count(&events, EventKind::Notified) >= messages {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{id} did not post {messages} messages within {WAIT:?}");
}

/// The `notified` event of the direct message to `person`.
fn direct_message<'a>(events: &'a [Event], person: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.kind == EventKind::Notified && e.data.get("user") == Some(&json!(person)))
        .unwrap_or_else(|| panic!("no direct message to {person}: {events:?}"))
}

fn asking(
    people: &[&str],
) -> impl FnOnce(regate_testkit::RequestBuilder) -> regate_testkit::RequestBuilder {
    let people = json!(people);
    move |r| r.with("details", json!({"ask": people}))
}

#[tokio::test]
async fn a_person_asked_by_name_approves_from_their_slack_direct_message() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin(
            "dm-slack",
            asking(&["alice@example.com", "mallory@example.com"]),
        )
        .await;
    // Two channels and alice; mallory may not approve, so she is not asked.
    let events = once_notified(&stack, &id, 3).await;
    let dm = direct_message(&events, "alice@example.com");
    let channel = dm.data["channel"].as_str().unwrap();
    let ts = dm.data["ts"].as_str().unwrap();
    assert!(channel.starts_with('D'), "{dm:?}");
    let alice = stack.slack_user("alice@example.com").await;
    let opened = stack.calls_about("conversations.open", &alice).await;
    assert!(!opened.is_empty());
    let posted = stack.calls_about("chat.postMessage", &id).await;
    assert!(posted.iter().any(|c| c["body"]["channel"] == channel));

    let payload = click_payload(&alice, "approve", &id, channel, ts);
    let answer = stack
        .post_signed(&form_body(&payload), chrono::Utc::now().timestamp(), None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["alice@example.com"]);
    // The direct message shows the outcome too.
    let updated = stack.calls_about("chat.update", ts).await;
    assert!(updated.last().unwrap()["body"]
        .to_string()
        .contains("*Approved*"));
    let events = stack.events(&id).await;
    assert_eq!(regate_tests::count(&events, EventKind::Notified), 3);
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_person_asked_by_name_approves_from_their_teams_direct_message() {
    let stack = LocalStack::connect().await;
    // bob prefers Teams (policies/data.json: people).
    let (id, execution) = stack.begin("dm-teams", asking(&["bob@example.com"])).await;
    let events = once_notified(&stack, &id, 3).await;
    let dm = direct_message(&events, "bob@example.com");
    assert_eq!(dm.platform.as_deref(), Some("teams"));
    let conversation = dm.data["conversation"].as_str().unwrap();
    let activity_id = dm.data["activity_id"].as_str().unwrap();
    let bob = stack.teams_member("bob@example.com").await;
    let created = stack.teams_calls("teams.create").await;
    assert!(
        created
            .iter()
            .any(|c| c["body"]["request"]["members"][0]["id"] == bob.as_str()),
        "{created:?}"
    );

    let mut invoke = stack.teams_invoke(&bob, APPROVE_VERB, &id, None).await;
    invoke["conversation"]["id"] = json!(conversation);
    invoke["conversation"]["conversationType"] = json!("personal");
    invoke["replyToId"] = json!(activity_id);
    let (answer, _) = stack
        .post_teams(&invoke, Some(stack.teams_bearer().await))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["bob@example.com"]);
    let vote = stack
        .events(&id)
        .await
        .into_iter()
        .find(|e| e.kind == EventKind::Vote)
        .unwrap();
    assert_eq!(vote.platform.as_deref(), Some("teams"));
}
