//! Microsoft Teams end to end on the local stack: cards posted and updated by the real
//! notifier and callback through the Teams stand-in (token endpoint, Bot Connector), and card
//! clicks sent to the real callback as the Bot Framework sends them, with JWTs signed by keys
//! the tests generate and publish in the stand-in's JWKS.

use regate_core::EventKind;
use regate_testkit::TeamsKey;
use regate_tests::count;
use regate_tests::stack::LocalStack;
use serde_json::json;

use regate_chat::teams::card::{APPROVE_VERB, REJECT_VERB};

#[tokio::test]
async fn a_production_deploy_is_approved_by_a_signed_teams_click_and_both_messages_show_it() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("teams-deploy", |r| r).await;
    let posted = stack.teams_card(&id).await;
    assert_eq!(posted.conversation, "19:payments-approvals@thread.tacv2");
    let text = posted.card.to_string();
    assert!(text.contains("payments-owners: 0 of 1"), "{text}");
    assert_eq!(posted.card["actions"][0]["verb"], APPROVE_VERB);
    let clicked = std::time::Instant::now();
    let (answer, body) = stack
        .teams_click("alice@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(clicked.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["type"], "application/vnd.microsoft.card.adaptive");
    assert!(
        body["value"]
            .to_string()
            .contains("Approved by alice@example.com"),
        "{body}"
    );
    assert_eq!(
        stack.approvers_of(&execution).await,
        json!(["alice@example.com"])
    );
    // Everyone else sees the outcome: the card was updated in place, without buttons, and the
    // Slack message too.
    let now = stack.teams_card(&id).await;
    assert_eq!(now.activity_id, posted.activity_id);
    assert!(now.card.get("actions").is_none(), "{}", now.card);
    assert!(now
        .card
        .to_string()
        .contains("Approved by alice@example.com"));
    let slack = stack.calls_about("chat.update", &id).await;
    assert!(slack.last().unwrap()["body"]
        .to_string()
        .contains("*Approved* by alice@example.com"));
    let events = stack.once_posted(&id, 2).await;
    assert_eq!(
        regate_tests::messages_posted(&events),
        2,
        "one message a platform"
    );
    let vote = events.iter().find(|e| e.kind == EventKind::Vote).unwrap();
    assert_eq!(vote.platform.as_deref(), Some("teams"));
    assert_eq!(count(&events, EventKind::Decided), 1);
    regate_core::chain::verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_rejection_needs_a_reason_from_the_card_and_fails_the_workflow() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("teams-iam", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    let posted = stack.teams_card(&id).await;
    let input = posted.card["body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "Input.Text")
        .cloned()
        .unwrap();
    assert_eq!(input["isRequired"], true, "{input}");
    let (answer, body) = stack
        .teams_click("ivan@example.com", REJECT_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        body["value"].to_string().contains("needs a reason"),
        "{body}"
    );
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    let (answer, _) = stack
        .teams_click(
            "ivan@example.com",
            REJECT_VERB,
            &id,
            Some("no break-glass ticket"),
        )
        .await;
    assert_eq!(answer.status, 200);
    stack
        .wait_finished(&execution)
        .await
        .assert_failed("ApprovalRejected");
    let now = stack.teams_card(&id).await;
    assert!(now.card.to_string().contains("no break-glass ticket"));
}

#[tokio::test]
async fn a_resent_invoke_counts_once() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("teams-twice", |r| {
            r.change("deploy", "production", "service", "checkout")
        })
        .await;
    for _ in 0..2 {
        let (answer, body) = stack
            .teams_click("carol@example.com", APPROVE_VERB, &id, None)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(body["statusCode"], 200);
    }
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 1);
    assert_eq!(count(&events, EventKind::Decided), 1);
}

#[tokio::test]
async fn a_member_known_by_a_upn_that_differs_from_their_mail_is_matched_by_either() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("teams-upn", |r| {
            r.change("deploy", "production", "service", "checkout")
        })
        .await;
    // 29:UPNDIFFERS mails as carol.owner@mail.example.com; the policy lists carol@example.com.
    let (answer, _) = stack
        .teams_click("29:UPNDIFFERS", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        stack.approvers_of(&execution).await,
        json!(["carol@example.com"])
    );
}

#[tokio::test]
async fn anonymous_and_guest_users_are_refused_with_a_card_that_says_why() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("teams-guest", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    for (who, why) in [
        ("29:ANONYMOUS", "anonymous users cannot vote"),
        ("29:GUEST", "guest accounts cannot vote"),
    ] {
        let (answer, body) = stack.teams_click(who, APPROVE_VERB, &id, None).await;
        assert_eq!(answer.status, 200);
        assert!(body["value"].to_string().contains(why), "{who}: {body}");
    }
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 0);
    assert_eq!(count(&events, EventKind::VoteRefused), 2);
    for approver in ["judy@example.com", "alice@example.com"] {
        let (answer, _) = stack.teams_click(approver, APPROVE_VERB, &id, None).await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_status_and_records_nothing() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("teams-jwt", |r| r).await;
    let good = TeamsKey::generate(&regate_tests::unique("good"), &["msteams"]);
    let webchat = TeamsKey::generate(&regate_tests::unique("webchat"), &["webchat"]);
    stack.publish_teams_key(&good).await;
    stack.publish_teams_key(&webchat).await;
    let alice = stack.teams_member("alice@example.com").await;
    let invoke = stack.teams_invoke(&alice, APPROVE_VERB, &id, None).await;
    let now = chrono::Utc::now().timestamp();
    let token = |change: &dyn Fn(&mut serde_json::Value)| {
        stack.teams_token_with(&good, |claims| change(claims))
    };
    let hs256 = {
        let claims = regate_testkit::bot_claims("x", "y");
        let key = jsonwebtoken::EncodingKey::from_secret(b"shared");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(good.kid.clone());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        )
    };
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("not a bearer token", Some("Basic YWxpY2U6cHc=".into()), 401),
        (
            "another audience",
            Some(token(&|c| c["aud"] = "someone-else".into())),
            401,
        ),
        (
            "another issuer",
            Some(token(&|c| c["iss"] = "https://sts.example".into())),
            401,
        ),
        (
            "expired past the skew",
            Some(token(&|c| c["exp"] = (now - 301).into())),
            401,
        ),
        (
            "not valid yet",
            Some(token(&|c| c["nbf"] = (now + 600).into())),
            401,
        ),
        (
            "another service URL",
            Some(token(&|c| c["serviceurl"] = "http://127.0.0.1:1/".into())),
            401,
        ),
        (
            "no service URL",
            Some(token(&|c| {
                c.as_object_mut().unwrap().remove("serviceurl");
            })),
            401,
        ),
        ("HS256", Some(hs256), 401),
        (
            "a key endorsed for webchat only",
            Some(stack.teams_token_with(&webchat, |_| {})),
            403,
        ),
    ];
    for (case, authorization, status) in cases {
        let (answer, _) = stack.post_teams(&invoke, authorization).await;
        assert_eq!(answer.status, status, "{case}: {answer:?}");
    }
    // A token from another channel, properly signed, is refused too.
    let mut webchat_activity = invoke.clone();
    webchat_activity["channelId"] = "webchat".into();
    let (answer, _) = stack
        .post_teams(
            &webchat_activity,
            Some(stack.teams_token_with(&good, |_| {})),
        )
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    // A key nobody published yet is unknown; once the Bot Framework rotates it in, it works.
    let rotated = TeamsKey::generate(&regate_tests::unique("rotated"), &["msteams"]);
    let (answer, _) = stack
        .post_teams(&invoke, Some(stack.teams_token_with(&rotated, |_| {})))
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Vote), 0, "nothing recorded");
    assert_eq!(
        count(&events, EventKind::VoteRefused),
        0,
        "nothing recorded"
    );
    stack.publish_teams_key(&rotated).await;
    let (answer, body) = stack
        .post_teams(&invoke, Some(stack.teams_token_with(&rotated, |_| {})))
        .await;
    assert_eq!(answer.status, 200, "{answer:?} {body}");
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
}

#[tokio::test]
async fn other_activities_get_200_other_invokes_501_and_malformed_ones_400() {
    let stack = LocalStack::connect().await;
    let key = TeamsKey::generate(&regate_tests::unique("misc"), &["msteams"]);
    stack.publish_teams_key(&key).await;
    let bot = regate_tests::teams::bot();
    let token = || Some(stack.teams_token_with(&key, |_| {}));
    let message = json!({"type": "message", "channelId": "msteams", "serviceUrl": bot.service_url, "text": "hi"});
    let (answer, _) = stack.post_teams(&message, token()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let other = json!({"type": "invoke", "name": "composeExtension/query", "channelId": "msteams", "serviceUrl": bot.service_url});
    assert_eq!(stack.post_teams(&other, token()).await.0.status, 501);
    let broken = json!({"type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
        "serviceUrl": bot.service_url, "value": {"action": {"verb": "regate.launch"}}});
    assert_eq!(stack.post_teams(&broken, token()).await.0.status, 400);
    let not_an_activity = json!({"hello": "world"});
    assert_eq!(
        stack.post_teams(&not_an_activity, token()).await.0.status,
        400
    );
}

#[tokio::test]
async fn an_unanswered_request_expires_and_its_card_says_so_and_a_late_click_is_told() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack
        .begin("teams-timeout", |r| {
            r.with("details", json!({"timeout_seconds": 3}))
        })
        .await;
    stack.teams_card(&id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_failed("ApprovalExpired");
    let now = stack.teams_card(&id).await;
    assert!(now.card.to_string().contains("Expired"), "{}", now.card);
    assert!(now.card.get("actions").is_none());
    let (answer, body) = stack
        .teams_click("alice@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert!(body["value"].to_string().contains("expired"), "{body}");
}

#[tokio::test]
async fn a_vote_in_slack_and_one_in_teams_make_one_decision_shown_on_both() {
    let stack = LocalStack::connect().await;
    // A production restart needs two SRE approvals: one comes from Slack, one from Teams.
    let (id, execution) = stack
        .begin("teams-both", |r| {
            r.change("restart", "production", "service", "checkout")
        })
        .await;
    stack.teams_card(&id).await;
    stack.click_ok("erin@example.com", "approve", &id).await;
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    let halfway = stack.teams_card(&id).await;
    assert!(
        halfway.card.to_string().contains("sre: 1 of 2"),
        "the Teams card shows the Slack vote: {}",
        halfway.card
    );
    let (answer, _) = stack
        .teams_click("frank@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        stack.approvers_of(&execution).await,
        json!(["erin@example.com", "frank@example.com"])
    );
    let events = stack.events(&id).await;
    assert_eq!(count(&events, EventKind::Decided), 1);
    let platforms: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(|e| e.platform.clone().unwrap())
        .collect();
    assert_eq!(platforms, ["slack", "teams"]);
    assert!(stack
        .teams_card(&id)
        .await
        .card
        .to_string()
        .contains("Approved by frank@example.com"));
    let slack = stack.calls_about("chat.update", &id).await;
    assert!(slack.last().unwrap()["body"]
        .to_string()
        .contains("*Approved* by frank@example.com"));
}

#[tokio::test]
async fn a_throttled_and_failing_connector_is_survived() {
    let stack = LocalStack::connect().await;
    let id = regate_tests::unique("teams-faults");
    // The card's first post is throttled (with and without Retry-After) and then fails once
    // at the gateway; the notifier's connector retries within its budget and posts it.
    let conversation = "19:payments-approvals@thread.tacv2";
    for fault in [
        json!({"status": 429, "retry_after": 1, "times": 1}),
        json!({"status": 429, "times": 1}),
        json!({"status": 502, "times": 1}),
    ] {
        regate_tests::fail_chat("teams.send", &id, fault).await;
    }
    let execution = stack.start(&regate_testkit::request(&id).json()).await;
    let posted = stack.teams_card(&id).await;
    assert_eq!(posted.conversation, conversation);
    // The update after the vote meets a 504 and then goes through.
    regate_tests::fail_chat("teams.update", &id, json!({"status": 504, "times": 1})).await;
    let (answer, _) = stack
        .teams_click("bob@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let now = stack.teams_card(&id).await;
    assert!(now.card.to_string().contains("Approved by bob@example.com"));
    let sends = stack.teams_calls("teams.send").await;
    let ours = sends
        .iter()
        .filter(|c| c["body"]["activity"].to_string().contains(&id))
        .count();
    assert_eq!(ours, 4, "three failures, then one card");
}

#[tokio::test]
async fn no_teams_secret_or_bearer_token_reaches_the_logs() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("teams-secrets", |r| r).await;
    let (answer, _) = stack
        .teams_click("alice@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
    let env = regate_tests::local_env();
    let logs = std::fs::read_to_string(regate_tests::repo_root().join(".local/logs/functions.log"))
        .unwrap_or_default();
    assert!(logs.contains(&id), "the functions' log covers this run");
    let secret = &env["TEAMS_CLIENT_SECRET"];
    assert!(
        !logs.contains(secret.as_str()),
        "the client secret is logged"
    );
    assert!(!logs.contains("teams-token-"), "a bot token is logged");
    assert!(!logs.contains("eyJ"), "an inbound JWT is logged");
    let events = serde_json::to_string(&stack.events(&id).await).unwrap();
    for needle in [secret.as_str(), "teams-token-", "eyJ", "Bearer"] {
        assert!(!events.contains(needle), "{needle} in the decision log");
    }
}

#[tokio::test]
async fn a_click_from_another_conversation_or_tenant_does_not_count() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("teams-elsewhere", |r| r).await;
    let alice = stack.teams_member("alice@example.com").await;
    let invoke = stack.teams_invoke(&alice, APPROVE_VERB, &id, None).await;
    let mut forwarded = invoke.clone();
    forwarded["conversation"]["id"] = "19:somewhere-else@thread.tacv2".into();
    let (answer, body) = stack
        .post_teams(&forwarded, Some(stack.teams_bearer().await))
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        body["value"]
            .to_string()
            .contains("not posted where you clicked"),
        "{body}"
    );
    let mut foreign = invoke.clone();
    foreign["conversation"]["tenantId"] = "another-tenant".into();
    foreign["channelData"]["tenant"]["id"] = "another-tenant".into();
    let (answer, body) = stack
        .post_teams(&foreign, Some(stack.teams_bearer().await))
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        body["value"].to_string().contains("another organisation"),
        "{body}"
    );
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    assert_eq!(count(&stack.events(&id).await, EventKind::Vote), 0);
    let (answer, _) = stack
        .post_teams(&invoke, Some(stack.teams_bearer().await))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(stack.wait_finished(&execution).await.status, "SUCCEEDED");
}

#[tokio::test]
async fn a_click_on_a_card_regate_did_not_post_for_the_request_does_not_count() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("teams-copied", |r| r).await;
    let member = stack.teams_member("alice@example.com").await;
    // The same conversation, but another message: a copy of the card, or a card of another
    // request carrying this request's id.
    let mut copied = stack.teams_invoke(&member, APPROVE_VERB, &id, None).await;
    let conversation = copied["conversation"]["id"].as_str().unwrap().to_string();
    let (channel, _) = conversation.split_once(";messageid=").unwrap();
    copied["replyToId"] = json!("1699999999999");
    copied["conversation"]["id"] = json!(format!("{channel};messageid=1699999999999"));
    let (answer, body) = stack
        .post_teams(&copied, Some(stack.teams_bearer().await))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        body.to_string().contains("not posted where you clicked"),
        "{body}"
    );
    assert_eq!(count(&stack.events(&id).await, EventKind::Vote), 0);
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    // From the card itself, the same click counts.
    let (answer, _) = stack
        .teams_click("alice@example.com", APPROVE_VERB, &id, None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        stack.approvers_of(&execution).await,
        json!(["alice@example.com"])
    );
}
