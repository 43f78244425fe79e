//! Time-aware approvals end to end on the local stack: the real sweeper, invoked directly on one
//! request and told the time in its input (`SWEEP_ACCEPTS_NOW` in local.env), posts reminders
//! in the messages' threads on Slack and Teams, escalates by evaluating the request again, and
//! closes a request on time alone; the real callback then counts the votes the escalation
//! allows. No test waits for the minutes it skips.

use chrono::Duration;
use regate_chat::teams::card::APPROVE_VERB;
use regate_core::EventKind;
use regate_tests::stack::LocalStack;
use regate_tests::{count, stack_now};
use serde_json::{json, Value};

const SEND_TASK_FAILURE: &str = "AWSStepFunctions.SendTaskFailure";

/// The Teams connector calls of `name` (`teams.reply`, `teams.send`) about `conversation`.
async fn teams_calls_in(stack: &LocalStack, name: &str, conversation: &str) -> Vec<Value> {
    stack
        .teams_calls(name)
        .await
        .into_iter()
        .filter(|c| c["body"]["conversation"] == conversation)
        .collect()
}

#[tokio::test]
async fn a_reminder_is_posted_once_in_each_thread_naming_only_who_has_not_voted() {
    let stack = LocalStack::connect().await;
    // Needs payments-owners and security: alice's approval leaves it open.
    let (id, _execution) = stack
        .begin("remind", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    let (channel, ts, _) = stack.message_for(&id).await;
    let card = stack.teams_card(&id).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    let opened = stack.opened_by(&id).await;

    let early = stack
        .sweep_request(&id, opened + Duration::minutes(10))
        .await;
    assert_eq!(early["reminded"], 0, "{early}");
    let at = opened + Duration::minutes(16);
    let (a, b) = tokio::join!(stack.sweep_request(&id, at), stack.sweep_request(&id, at));
    assert_eq!(
        a["reminded"].as_u64().unwrap() + b["reminded"].as_u64().unwrap(),
        1
    );
    let again = stack.sweep_request(&id, at + Duration::minutes(1)).await;
    assert_eq!(again["reminded"], 0, "{again}");

    // Slack: one reply in the message's thread, mentioning those who have not voted.
    let replies: Vec<Value> = stack
        .calls_about("chat.postMessage", &ts)
        .await
        .into_iter()
        .filter(|c| {
            c["body"]["thread_ts"] == ts.as_str() && c["body"]["channel"] == channel.as_str()
        })
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    let text = replies[0]["body"]["text"].as_str().unwrap();
    let bob = stack.slack_user("bob@example.com").await;
    let alice = stack.slack_user("alice@example.com").await;
    assert!(text.contains(&format!("<@{bob}>")), "{text}");
    assert!(!text.contains(&alice), "alice voted: {text}");
    assert!(text.contains("It expires in 3 h 4"), "{text}");

    // Teams: one reply to the card's activity, with its mentions.
    let replies = teams_calls_in(&stack, "teams.reply", &card.conversation).await;
    let replies: Vec<&Value> = replies
        .iter()
        .filter(|c| {
            c["body"]["path"]
                .as_str()
                .unwrap()
                .ends_with(&card.activity_id)
        })
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    let activity = &replies[0]["body"]["activity"];
    assert_eq!(activity["replyToId"], card.activity_id.as_str());
    let reminder = &activity["attachments"][0]["content"];
    let mentioned: Vec<&str> = reminder["msteams"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mentioned"]["id"].as_str().unwrap())
        .collect();
    assert!(mentioned.contains(&"bob@example.com"), "{mentioned:?}");
    assert!(!mentioned.contains(&"alice@example.com"), "{mentioned:?}");

    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Reminded), 1);
    let reminded = events
        .iter()
        .find(|e| e.kind == EventKind::Reminded)
        .unwrap();
    assert_eq!(reminded.data["remind_after"], 900);
    assert_eq!(reminded.data["places"].as_array().unwrap().len(), 2);
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn escalation_asks_sre_once_and_an_sre_vote_in_teams_then_approves() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("escalate", |r| r).await;
    stack.message_for(&id).await;
    stack.teams_card(&id).await;
    let opened = stack.opened_by(&id).await;

    let at = opened + Duration::minutes(31);
    let first = stack.sweep_request(&id, at).await;
    assert_eq!(first["reevaluated"], 1, "{first}");
    let second = stack.sweep_request(&id, at + Duration::minutes(5)).await;
    assert_eq!(second["reevaluated"], 0, "{second}");

    // sre's own channels got the message, once each.
    let sre_slack: Vec<Value> = stack
        .calls_about("chat.postMessage", &id)
        .await
        .into_iter()
        .filter(|c| c["body"]["channel"] == "C0SRE")
        .collect();
    assert_eq!(sre_slack.len(), 1, "{sre_slack:?}");
    assert!(sre_slack[0]["body"]["blocks"]
        .to_string()
        .contains("or instead: sre: 0 of 1"));
    let sre_teams = teams_calls_in(&stack, "teams.send", "19:sre-approvals@thread.tacv2").await;
    let sre_teams: Vec<&Value> = sre_teams
        .iter()
        .filter(|c| c["body"]["activity"].to_string().contains(&id))
        .collect();
    assert_eq!(sre_teams.len(), 1, "{sre_teams:?}");
    // The first messages show the new way to approve.
    let updated = stack.calls_about("chat.update", &id).await;
    assert!(updated.iter().any(|u| u["body"]["blocks"]
        .to_string()
        .contains("or instead: sre: 0 of 1")));

    let (answer, _) = stack
        .teams_click("erin@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["erin@example.com"]);

    let events = stack.events(&id).await;
    let evaluated: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Evaluated)
        .collect();
    assert_eq!(
        evaluated.len(),
        2,
        "the first evaluation and one re-evaluation"
    );
    assert_eq!(evaluated[1].data["reevaluate_after"], 1800);
    assert!(evaluated[1].input_digest.is_some());
    assert_eq!(
        regate_tests::messages_posted(&events),
        4,
        "2 first, 2 for sre"
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_request_still_open_when_its_window_closes_is_denied_and_resumed_once() {
    let stack = LocalStack::connect().await;
    let not_after = regate_core::time::format_rfc3339_ms(stack_now() + Duration::minutes(10));
    stack.watch(SEND_TASK_FAILURE, &[&not_after]).await;
    let (id, execution) = stack
        .begin("window", |r| {
            r.with("details", json!({"not_after": not_after}))
        })
        .await;
    let opened = stack.opened_by(&id).await;

    let waiting = stack
        .sweep_request(&id, opened + Duration::minutes(5))
        .await;
    assert_eq!(waiting["waiting"], 1, "{waiting}");
    let closes = regate_core::time::parse_rfc3339(&not_after).unwrap() + Duration::minutes(1);
    let (a, b) = tokio::join!(
        stack.sweep_request(&id, closes),
        stack.sweep_request(&id, closes)
    );
    assert_eq!(a["failed"], json!([]), "{a}");
    assert_eq!(b["failed"], json!([]), "{b}");
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("ApprovalRejected");
    stack
        .sweep_request(&id, closes + Duration::minutes(1))
        .await;
    assert_eq!(stack.accepted(SEND_TASK_FAILURE, &not_after).await, 1);

    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let decided = kinds.iter().position(|k| *k == EventKind::Decided).unwrap();
    assert_eq!(kinds[decided - 1], EventKind::Evaluated, "{kinds:?}");
    let closing = &events[decided - 1];
    assert!(closing.reasons[0].contains("window closed"), "{closing:?}");
    assert!(events[decided].actor.is_none(), "time decided, not a voter");
    let updated = stack.calls_about("chat.update", &id).await;
    assert!(updated.last().unwrap()["body"]
        .to_string()
        .contains("Rejected"));
    regate_core::chain::verify_chain(&id, &events).unwrap();
}
