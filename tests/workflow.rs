//! End to end on the local stack: the real state machine (moto), the real functions (cargo
//! lambda watch), the Slack stand-in, and clicks signed as Slack signs them.

use regate_core::EventKind;
use regate_tests::stack::LocalStack;
use regate_tests::{control_chat, count};
use serde_json::json;

fn kinds(events: &[regate_core::Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn a_staging_deploy_is_allowed_without_asking_anyone() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("e2e-staging", |r| {
            r.change("deploy", "staging", "service", "payments")
        })
        .await;
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    let output = done.output.unwrap();
    assert_eq!(output["outcome"], "allow");
    assert_eq!(output["request_id"], id.as_str());
    assert!(output["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(output["input_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        kinds(&stack.events(&id).await),
        [EventKind::Requested, EventKind::Evaluated]
    );
    assert!(stack.calls_about("chat.postMessage", &id).await.is_empty());
}

#[tokio::test]
async fn a_production_database_delete_is_denied() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("e2e-drop", |r| {
            r.change("delete", "production", "database", "orders-db")
        })
        .await;
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("PolicyDenied");
    let events = stack.events(&id).await;
    assert!(events[1].reasons[0].contains("destructive production change"));
}

#[tokio::test]
async fn a_production_deploy_is_approved_by_an_owners_signed_click() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("e2e-deploy", |r| r).await;
    let (channel, _, message) = stack.message_for(&id).await;
    assert_eq!(channel, "C0PAYMENTS");
    assert!(message["blocks"]
        .to_string()
        .contains("payments-owners: 0 of 1"));
    let (channel, ts, _) = stack.message_for(&id).await;
    let alice = stack.slack_user("alice@example.com").await;
    let payload =
        regate_chat::slack::interaction::click_payload(&alice, "approve", &id, &channel, &ts);
    let body = regate_chat::slack::interaction::form_body(&payload);
    let clicked = std::time::Instant::now();
    let answer = stack
        .post_signed(&body, chrono::Utc::now().timestamp(), None)
        .await;
    let answered = clicked.elapsed();
    assert_eq!(answer.status, 200);
    assert!(
        answered < std::time::Duration::from_secs(3),
        "Slack wants an answer within 3 s; this took {answered:?}"
    );
    let done = stack.wait_finished(&execution).await;
    assert_eq!(done.status, "SUCCEEDED");
    let output = done.output.unwrap();
    assert_eq!(output["request_id"], id.as_str());
    assert_eq!(output["outcome"], "allow");
    assert_eq!(output["approvers"], json!(["alice@example.com"]));
    assert!(output["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let updates = stack.calls_about("chat.update", &id).await;
    assert!(
        updates.last().unwrap()["body"]
            .to_string()
            .contains("*Approved* by alice@example.com"),
        "{updates:?}"
    );
    // The request notifies Slack and Teams; the vote may come before the Teams card is logged.
    let events = stack.once_posted(&id, 2).await;
    assert_eq!(regate_tests::messages_posted(&events), 2);
    let steps: Vec<EventKind> = kinds(&events)
        .into_iter()
        .filter(|k| *k != EventKind::Notified)
        .collect();
    assert_eq!(
        steps,
        [
            EventKind::Requested,
            EventKind::Evaluated,
            EventKind::Vote,
            EventKind::Decided
        ]
    );
    regate_core::chain::verify_chain(&id, &events).unwrap();
    // The stack works in its own calendar (REGATE_LOCAL_DATE), not today's: the same deploy on
    // a day inside the default policy's year-end freeze is denied (see regate-policies' tests),
    // yet here it was asked and approved whatever the real date is.
    let local = regate_tests::local_date();
    let at = events[0].at_time().unwrap();
    assert!(
        at >= local && at < local + chrono::Duration::days(1),
        "the functions logged {at}, not a time on the stack's own day {local}"
    );
    assert!(
        !serde_json::to_string(&events).unwrap().contains("xoxb-"),
        "no bot token in the log"
    );
}

#[tokio::test]
async fn an_iam_change_approved_once_then_rejected_with_a_reason_fails_approval_rejected() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("e2e-iam", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    assert_eq!(
        stack.status(&execution).await.status,
        "RUNNING",
        "one approval of two"
    );
    // Reject needs a reason here: the click opens Slack's modal instead of voting.
    stack.click_ok("ivan@example.com", "reject", &id).await;
    let modal = stack.calls_about("views.open", &id).await;
    assert_eq!(modal.len(), 1, "the reason modal was opened");
    assert_eq!(modal[0]["body"]["view"]["private_metadata"], id.as_str());
    let empty = stack.submit_reason("ivan@example.com", &id, "   ").await;
    assert!(
        empty.body.contains("\"response_action\":\"errors\""),
        "{}",
        empty.body
    );
    let answer = stack
        .submit_reason("ivan@example.com", &id, "grants s3:* on every bucket")
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("ApprovalRejected");
    let events = stack.events(&id).await;
    let rejection = events
        .iter()
        .find(|e| e.kind == EventKind::Vote && e.data["vote"] == "reject")
        .unwrap();
    assert_eq!(rejection.data["reason"], "grants s3:* on every bucket");
    // The decision, then the requester told it.
    let events = stack.once_requester_told(&id).await;
    let last: Vec<EventKind> = kinds(&events[events.len() - 2..]);
    assert_eq!(last, [EventKind::Decided, EventKind::Notified]);
}

#[tokio::test]
async fn a_request_nobody_answers_expires_and_its_message_says_so() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("e2e-timeout", |r| {
            r.with("details", json!({"timeout_seconds": 3}))
        })
        .await;
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("ApprovalExpired");
    let updates = stack.calls_about("chat.update", &id).await;
    assert!(
        updates.last().unwrap()["body"]
            .to_string()
            .contains("*Expired*"),
        "{updates:?}"
    );
    let events = stack.once_requester_told(&id).await;
    let last: Vec<EventKind> = kinds(&events[events.len() - 2..]);
    assert_eq!(last, [EventKind::Expired, EventKind::Notified]);
    let late = stack.click("alice@example.com", "approve", &id).await;
    assert_eq!(late.status, 200);
}

#[tokio::test]
async fn the_requester_clicking_approve_is_refused_and_nothing_resumes() {
    let stack = LocalStack::connect().await;
    // The requester is an owner, so only the hard rule stops them.
    let (id, execution) = stack
        .begin("e2e-self", |r| r.requester("bob@example.com"))
        .await;
    stack.message_for(&id).await;
    let bob = stack.slack_user("bob@example.com").await;
    stack.click_ok("bob@example.com", "approve", &id).await;
    let ephemeral = stack
        .calls()
        .await
        .into_iter()
        .filter(|c| c["method"] == "chat.postEphemeral" && c["body"]["user"] == bob.as_str())
        .collect::<Vec<_>>();
    assert!(
        ephemeral
            .iter()
            .any(|c| c["body"]["text"].as_str().unwrap().contains("cannot vote")),
        "{ephemeral:?}"
    );
    let events = stack.events(&id).await;
    let refused = events
        .iter()
        .find(|e| e.kind == EventKind::VoteRefused)
        .unwrap();
    assert_eq!(refused.actor.as_deref(), Some("bob@example.com"));
    assert!(!events.iter().any(|e| e.kind == EventKind::Vote));
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
}

#[tokio::test]
async fn forged_and_stale_requests_get_401_and_record_nothing() {
    let stack = LocalStack::connect().await;
    let (id, _) = stack.begin("e2e-forged", |r| r).await;
    let (channel, ts, _) = stack.message_for(&id).await;
    let alice = stack.slack_user("alice@example.com").await;
    let body = regate_chat::slack::interaction::form_body(
        &regate_chat::slack::interaction::click_payload(&alice, "approve", &id, &channel, &ts),
    );
    let now = chrono::Utc::now().timestamp();
    let forged = stack
        .post_signed(
            &body,
            now,
            Some("v0=0000000000000000000000000000000000000000000000000000000000000000".into()),
        )
        .await;
    assert_eq!(forged.status, 401);
    let stale = stack.post_signed(&body, now - 301, None).await;
    assert_eq!(stale.status, 401);
    let unsigned = stack
        .http
        .post(&stack.interactivity_url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let events = stack.events(&id).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Vote | EventKind::VoteRefused)),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_double_click_counts_once_a_changed_vote_is_refused_and_a_late_one_is_already_decided() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("e2e-double", |r| {
            r.change("deploy", "production", "service", "ledger")
        })
        .await;
    stack.click_ok("erin@example.com", "approve", &id).await;
    stack.click_ok("erin@example.com", "approve", &id).await;
    // A changed mind is a second vote: refused.
    stack.click_ok("erin@example.com", "reject", &id).await;
    assert_eq!(
        stack.status(&execution).await.status,
        "RUNNING",
        "one person is one approval of two"
    );
    stack.click_ok("frank@example.com", "approve", &id).await;
    assert_eq!(
        stack.approvers_of(&execution).await,
        json!(["erin@example.com", "frank@example.com"])
    );
    stack.click_ok("grace@example.com", "reject", &id).await;
    let grace = stack.slack_user("grace@example.com").await;
    let told = stack.calls().await.into_iter().any(|c| {
        c["method"] == "chat.postEphemeral"
            && c["body"]["user"] == grace.as_str()
            && c["body"]["text"]
                .as_str()
                .unwrap()
                .contains("already decided")
    });
    assert!(told);
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 2);
    assert_eq!(count(&events, EventKind::Decided), 1);
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::VoteRefused)
        .map(|e| e.reasons[0].clone())
        .collect();
    assert!(
        refusals.len() == 1 && refusals[0].contains("already voted"),
        "the changed vote is refused in the log; the late click only privately: {refusals:?}"
    );
    // The decision, then the requester told it.
    let events = stack.once_requester_told(&id).await;
    let last: Vec<EventKind> = kinds(&events[events.len() - 2..]);
    assert_eq!(last, [EventKind::Decided, EventKind::Notified]);
}

#[tokio::test]
async fn unknown_actions_and_malformed_payloads_get_400() {
    let stack = LocalStack::connect().await;
    let now = chrono::Utc::now().timestamp();
    let unknown = regate_chat::slack::interaction::form_body(
        &regate_chat::slack::interaction::click_payload("U1", "launch_missiles", "x", "C1", "1.1"),
    );
    let answer = stack.post_signed(&unknown, now, None).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("unknown action"), "{}", answer.body);
    assert_eq!(
        stack
            .post_signed("payload=%7Bbroken", now, None)
            .await
            .status,
        400
    );
    assert_eq!(stack.post_signed("", now, None).await.status, 400);
}

#[tokio::test]
async fn a_message_update_that_keeps_failing_never_loses_the_recorded_decision() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("e2e-slack-down", |r| r).await;
    stack.message_for(&id).await;
    let fault = json!({"method": "chat.update", "match": id, "status": 500, "times": 1000});
    control_chat("_fail", &fault).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    let done = stack.wait_finished(&execution).await;
    assert_eq!(
        done.status, "SUCCEEDED",
        "the decision stands although Slack is down"
    );
    // The notifier may still be posting the Teams copy when the click lands, so its
    // `notified` event can sit between the vote and the decision.
    let kinds: Vec<_> = kinds(&stack.events(&id).await)
        .into_iter()
        .filter(|kind| *kind != EventKind::Notified)
        .collect();
    assert!(
        kinds.ends_with(&[EventKind::Vote, EventKind::Decided]),
        "{kinds:?}"
    );
    let attempts = stack.calls_about("chat.update", &id).await.len();
    assert!(
        attempts >= 2,
        "the update was retried ({attempts} attempts)"
    );
}

#[tokio::test]
async fn a_reject_without_a_reason_requirement_records_at_once() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("e2e-reject", |r| r).await;
    stack.click_ok("bob@example.com", "reject", &id).await;
    let done = stack.wait_finished(&execution).await;
    done.assert_failed("ApprovalRejected");
    assert!(
        stack.calls_about("views.open", &id).await.is_empty(),
        "no modal when no reason is required"
    );
    let updates = stack.calls_about("chat.update", &id).await;
    let last = updates.last().unwrap()["body"].to_string();
    assert!(
        last.contains("*Rejected*") && !last.contains("\"actions\""),
        "the buttons are gone: {last}"
    );
}

#[tokio::test]
async fn a_second_execution_reusing_a_live_request_id_fails_and_cannot_hijack_the_approval() {
    let stack = LocalStack::connect().await;
    let (id, first) = stack.begin("e2e-reuse", |r| r).await;
    stack.message_for(&id).await;
    // Same id, another execution, a riskier change that needs security.
    let hijack = regate_testkit::request(&id)
        .change("iam_change", "production", "iam_role", "payments")
        .json();
    let second = stack.start_named(&hijack, &format!("{id}-again")).await;
    stack
        .wait_finished(&second)
        .await
        .assert_failed("RequestIdInUse");
    assert_eq!(stack.status(&first).await.status, "RUNNING");
    stack.click_ok("alice@example.com", "approve", &id).await;
    let done = stack.wait_finished(&first).await;
    assert_eq!(
        done.status, "SUCCEEDED",
        "the approval resumed its own execution"
    );
    let posted = stack
        .calls_about("chat.postMessage", &format!("\"value\":\"{id}\""))
        .await;
    assert_eq!(
        posted.len(),
        1,
        "nothing was posted for the second execution"
    );
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    assert_eq!(events[0].data["execution"], first.as_str());
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn deactivated_bot_guest_and_stranger_accounts_are_refused_privately_and_logged() {
    let stack = LocalStack::connect().await;
    // Production deploys of ledger need sre approvals; each account has an sre member's address.
    let (id, execution) = stack
        .begin("e2e-accounts", |r| {
            r.change("deploy", "production", "service", "ledger")
        })
        .await;
    let accounts = [
        ("U0DEACTIVATED", "deactivated"),
        ("U0BOT", "bots cannot vote"),
        ("U0GUEST", "guest accounts cannot vote"),
        ("U0SINGLEGUEST", "guest accounts cannot vote"),
        ("U0STRANGER", "another Slack organisation"),
    ];
    for (user, _) in accounts {
        assert_eq!(stack.click_as(user, "approve", &id).await.status, 200);
    }
    let calls = stack.calls().await;
    let events = stack.events(&id).await;
    for (user, reason) in accounts {
        let told = calls.iter().any(|c| {
            c["method"] == "chat.postEphemeral"
                && c["body"]["user"] == user
                && c["body"]["text"].as_str().unwrap().contains(reason)
        });
        assert!(told, "{user} was not told {reason:?}");
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::VoteRefused && e.reasons[0].contains(reason)),
            "no vote_refused for {user}"
        );
    }
    assert!(!events.iter().any(|e| e.kind == EventKind::Vote));
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    // The same people with their own accounts do count.
    stack.click_ok("erin@example.com", "approve", &id).await;
    stack.click_ok("frank@example.com", "approve", &id).await;
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
}

#[tokio::test]
async fn two_executions_starting_at_once_with_one_request_id_give_it_to_one_only() {
    let stack = LocalStack::connect().await;
    for trial in 0..3 {
        let id = regate_tests::unique("e2e-twins");
        let request = regate_testkit::request(&id).json();
        let (name_a, name_b) = (format!("{id}-a"), format!("{id}-b"));
        let (a, b) = tokio::join!(
            stack.start_named(&request, &name_a),
            stack.start_named(&request, &name_b)
        );
        // The one that lost fails at once; the other waits for its approval.
        let (failed, waiting) = first_to_end(&stack, &a, &b).await;
        stack.status(&failed).await.assert_failed("RequestIdInUse");
        stack.message_for(&id).await;
        assert_eq!(
            stack.status(&waiting).await.status,
            "RUNNING",
            "trial {trial}"
        );
        let events = stack.events(&id).await;
        assert_eq!(count(&events, EventKind::Requested), 1, "trial {trial}");
        assert_eq!(count(&events, EventKind::Evaluated), 1, "trial {trial}");
        regate_core::chain::verify_chain(&id, &events).unwrap();
        let holder = &events[0].data["execution"];
        assert_eq!(
            holder,
            &json!(waiting),
            "trial {trial}: the chain is the waiting one's"
        );
        stack.click_ok("alice@example.com", "approve", &id).await;
        assert_eq!(stack.wait_finished(&waiting).await.status, "SUCCEEDED");
    }
}

/// Of executions `a` and `b`, the first that ends, and the other one (within 60 s).
async fn first_to_end(stack: &LocalStack, a: &str, b: &str) -> (String, String) {
    for _ in 0..300 {
        if stack.status(a).await.status != "RUNNING" {
            return (a.to_string(), b.to_string());
        }
        if stack.status(b).await.status != "RUNNING" {
            return (b.to_string(), a.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("neither {a} nor {b} ended");
}
