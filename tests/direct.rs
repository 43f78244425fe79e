//! Direct messages end to end on the local stack: people the requester asks by name
//! (`details.ask`) get the approval in a direct message, on Slack (`users.lookupByEmail`, then
//! `conversations.open`) or on Teams (the member looked up by UPN, then `CreateConversation`),
//! and a vote from that direct message counts like any other. The requester hears how it ended
//! in a direct message too, once.

use regate_chat::slack::interaction::{click_payload, form_body};
use regate_chat::teams::card::APPROVE_VERB;
use regate_core::{Event, EventKind};
use regate_tests::stack::{pipeline_token, LocalStack, WAIT};
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
    assert_eq!(regate_tests::messages_posted(&events), 3);
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

#[tokio::test]
async fn the_verified_actor_behind_a_bot_hears_the_approval_once_on_slack() {
    let stack = LocalStack::connect().await;
    // The pipeline's bot asks for a checkout deploy; its token proves alice-gh (alice) ran it.
    let token = pipeline_token("alice-gh").await;
    let (id, execution) = stack
        .begin("told-slack", |r| {
            r.change("deploy", "production", "service", "checkout")
                .with(
                    "requester",
                    json!({"id": "github-actions", "kind": "service"}),
                )
                .with("identity_token", json!(token))
        })
        .await;
    stack.message_for(&id).await;
    stack.click_ok("carol@example.com", "approve", &id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["carol@example.com"]);
    let events = stack.once_requester_told(&id).await;
    let told = regate_tests::requester_told(&events).unwrap();
    assert_eq!(
        (
            &told.data["status"],
            &told.data["user"],
            &told.data["platform"]
        ),
        (&json!("sent"), &json!("alice@example.com"), &json!("slack")),
        "{told:?}"
    );
    assert_eq!(told.data["outcome"], "approved");
    // Told after the workflow took the outcome.
    let decided = events.iter().position(|e| e.kind == EventKind::Decided);
    let told_at = events.iter().position(|e| e.data.get("to").is_some());
    assert!(decided < told_at, "{events:?}");
    // In alice's direct message: the outcome, who decided, why, and a link to the workflow.
    let alice = stack.slack_user("alice@example.com").await;
    assert!(!stack
        .calls_about("conversations.open", &alice)
        .await
        .is_empty());
    let outcome = |calls: &[serde_json::Value]| {
        calls
            .iter()
            .filter(|c| c["body"]["metadata"]["event_type"] == "regate_outcome")
            .cloned()
            .collect::<Vec<_>>()
    };
    let posted = outcome(&stack.calls_about("chat.postMessage", &id).await);
    assert_eq!(posted.len(), 1, "{posted:?}");
    let text = posted[0]["body"].to_string();
    for part in [
        "Your request was approved by",
        "The workflow goes on with the change.",
        "approved by carol@example.com",
        "states/home?region=",
        "Open the workflow",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert!(!text.contains("\"actions\""), "no buttons: {text}");
    // A later sweep tells nobody again.
    stack.sweep_request_now(&id).await;
    let again = outcome(&stack.calls_about("chat.postMessage", &id).await);
    assert_eq!(again.len(), 1);
    let events = stack.events(&id).await;
    assert_eq!(
        events.iter().filter(|e| e.data.get("to").is_some()).count(),
        1
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_requester_who_prefers_teams_hears_the_rejection_in_a_teams_chat() {
    let stack = LocalStack::connect().await;
    // bob asks (his own pipeline) and prefers Teams (policies/data.json: people).
    let (id, execution) = stack
        .begin("told-teams", |r| {
            r.change("deploy", "production", "service", "checkout")
                .requester("bob@example.com")
        })
        .await;
    stack.teams_card(&id).await;
    let (answer, _) = stack
        .teams_click(
            "carol@example.com",
            regate_chat::teams::card::REJECT_VERB,
            &id,
            Some("not before the audit"),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("ApprovalRejected");
    let events = stack.once_requester_told(&id).await;
    let told = regate_tests::requester_told(&events).unwrap();
    assert_eq!(
        (
            &told.data["status"],
            &told.data["user"],
            &told.data["platform"]
        ),
        (&json!("sent"), &json!("bob@example.com"), &json!("teams")),
        "{told:?}"
    );
    let bob = stack.teams_member("bob@example.com").await;
    let created: Vec<_> = stack
        .teams_calls("teams.create")
        .await
        .into_iter()
        .filter(|c| {
            let body = c["body"].to_string();
            body.contains("Your request was rejected") && body.contains(&id)
        })
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let request = &created[0]["body"]["request"];
    assert_eq!(request["members"][0]["id"], bob.as_str());
    let card = request["activity"]["attachments"][0]["content"].to_string();
    for part in [
        "rejected by carol@example.com",
        "not before the audit",
        "Action.OpenUrl",
    ] {
        assert!(card.contains(part), "{part:?} in {card}");
    }
    assert!(!card.contains("Action.Execute"), "no buttons: {card}");
}

#[tokio::test]
async fn a_slack_outage_on_the_requesters_message_leaves_it_owed_for_a_later_sweep() {
    use regate_core::ports::PendingStore;
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("told-outage", |r| {
            r.change("deploy", "production", "service", "checkout")
        })
        .await;
    stack.message_for(&id).await;
    stack.click_ok("carol@example.com", "approve", &id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["carol@example.com"]);
    let store = regate_aws::pending::DynamoPendingStore::new(
        aws_sdk_dynamodb::Client::new(&regate_tests::local_config().await),
        regate_tests::pending_table(),
    );
    // The click resumed the workflow and sent nothing more: the message is the sweeper's.
    let item = store.get(&id).await.unwrap().unwrap();
    assert!(
        item.resumed && item.owes_tell() && item.tell_claims == 0,
        "{item:?}"
    );
    assert!(item.due_at.is_some(), "in the sweeper's index");
    // Slack fails every new message about this request: the sweep's attempt fails and the
    // duty stays owed, due again when its claim lapses.
    let fault = json!({"method": "chat.postMessage", "match": id, "status": 500, "times": 50});
    regate_tests::control_chat("_fail", &fault).await;
    stack.sweep_request_now(&id).await;
    let item = store.get(&id).await.unwrap().unwrap();
    assert!(item.owes_tell() && item.tell_claims == 1, "{item:?}");
    assert_eq!(
        item.due_at, item.tell_until,
        "due again when the claim lapses"
    );
    assert!(regate_tests::requester_told(&stack.events(&id).await).is_none());
}
