//! The Bot Connector client against the Teams stand-in: the bot's token (refused for a wrong
//! secret or the multi-tenant endpoint, cached, renewed once on a 401), posting and updating a
//! card, member lookups, and faults: 429 with and without Retry-After, 412/502/504 retried,
//! 403 `MessageWritesBlocked` and 413 typed, hosts that may not receive the token.

use std::time::{Duration, Instant};

use regate_chat::teams::connector::BotCredentials;
use regate_chat::teams::{card_activity, Connector};
use regate_core::ports::ChatError;
use regate_tests::teams::{assert_refused, bot};
use regate_tests::{chat_calls, chat_url, control_chat, fail_chat, local_env, unique};
use secrecy::SecretString;
use serde_json::{json, Value};

fn connector_with(tenant: &str, secret: &str, budget: Duration) -> Connector {
    let env = local_env();
    Connector::new(
        reqwest::Client::new(),
        BotCredentials {
            app_id: env["TEAMS_APP_ID"].clone(),
            tenant_id: tenant.to_string(),
            secret: SecretString::from(secret.to_string()),
        },
        &env["TEAMS_LOGIN_URL"],
        vec!["127.0.0.1".into()],
        budget,
    )
}

fn connector(budget: Duration) -> Connector {
    let env = local_env();
    connector_with(&env["TEAMS_TENANT_ID"], &env["TEAMS_CLIENT_SECRET"], budget)
}

fn conversation() -> String {
    format!("19:{}@thread.tacv2", unique("conv"))
}

fn card(text: &str) -> Value {
    card_activity(json!({"type": "AdaptiveCard", "version": "1.5",
        "body": [{"type": "TextBlock", "text": text}]}))
}

/// The stand-in's record of each call of `method` about `matching`: whether its token was
/// valid, and which token it was.
async fn calls(method: &str, matching: &str) -> Vec<(bool, String)> {
    chat_calls(method, matching)
        .await
        .iter()
        .map(|body| {
            let token = body["token"].as_str().unwrap_or("").to_string();
            (body["authorized"] == true, token)
        })
        .collect()
}

/// A connector with a 2 s budget, and the bot's service URL.
fn connector_and_service() -> (Connector, String) {
    (connector(Duration::from_secs(2)), bot().service_url)
}

#[tokio::test]
async fn a_card_is_posted_and_updated_with_one_token() {
    let c = connector(Duration::from_secs(5));
    let conversation = conversation();
    let service = bot().service_url;
    let id = c
        .send(&service, &conversation, &card("first"))
        .await
        .unwrap();
    assert_eq!(id.len(), 13, "{id}");
    c.update(&service, &conversation, &id, &card("second"))
        .await
        .unwrap();
    let sent = [
        calls("teams.send", &conversation).await,
        calls("teams.update", &conversation).await,
    ]
    .concat();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|(valid, token)| *valid && *token == sent[0].1),
        "one cached token for both calls: {sent:?}"
    );
    let missing = c
        .update(&service, &conversation, "1234567890123", &card("x"))
        .await
        .unwrap_err();
    assert_refused(&missing, &["404"]);
}

#[tokio::test]
async fn a_wrong_secret_or_the_multi_tenant_endpoint_is_refused_with_a_hint() {
    let tenant = local_env()["TEAMS_TENANT_ID"].clone();
    let service = bot().service_url;
    let wrong = connector_with(&tenant, "not-the-secret", Duration::from_secs(2));
    let error = wrong
        .send(&service, &conversation(), &card("x"))
        .await
        .unwrap_err();
    assert_refused(&error, &["invalid_client", "secret"]);
    let secret = local_env()["TEAMS_CLIENT_SECRET"].clone();
    let legacy = connector_with("botframework.com", &secret, Duration::from_secs(2));
    let error = legacy
        .send(&service, &conversation(), &card("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Refused(_)), "{error}");
    assert!(!error.to_string().contains(&secret), "no secret in errors");
}

#[tokio::test]
async fn a_revoked_token_is_dropped_and_fetched_again_once() {
    let c = connector(Duration::from_secs(5));
    let conversation = conversation();
    let service = bot().service_url;
    c.send(&service, &conversation, &card("before"))
        .await
        .unwrap();
    let first = calls("teams.send", &conversation).await[0].1.clone();
    let revoked = control_chat("_revoke", &json!({"token": first})).await;
    assert_eq!(revoked["revoked"], 1);
    c.send(&service, &conversation, &card("after"))
        .await
        .unwrap();
    let sent = calls("teams.send", &conversation).await;
    let valid: Vec<bool> = sent.iter().map(|(valid, _)| *valid).collect();
    assert_eq!(
        valid,
        [true, false, true],
        "the 401, then one retry with a new token"
    );
    assert_eq!(sent[0].1, sent[1].1);
    assert_ne!(sent[1].1, sent[2].1);
}

#[tokio::test]
async fn throttling_and_gateway_errors_are_retried_within_the_budget() {
    let c = connector(Duration::from_secs(6));
    let service = bot().service_url;
    for fault in [
        json!({"status": 429, "retry_after": 1, "times": 1}),
        json!({"status": 429, "times": 2}),
        json!({"status": 412, "times": 1}),
        json!({"status": 502, "times": 2}),
        json!({"status": 504, "times": 1}),
    ] {
        let conversation = conversation();
        fail_chat("teams.send", &conversation, fault.clone()).await;
        let started = Instant::now();
        c.send(&service, &conversation, &card("x"))
            .await
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        if fault.get("retry_after").is_some() {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "Retry-After honoured"
            );
        }
    }
    // Throttled past the budget: a rate-limit error, in time.
    let conversation = conversation();
    fail_chat(
        "teams.send",
        &conversation,
        json!({"status": 429, "retry_after": 30}),
    )
    .await;
    let started = Instant::now();
    let error = c
        .send(&service, &conversation, &card("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::RateLimited(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_blocked_bot_and_an_oversized_message_are_refused_with_hints() {
    let (c, service) = connector_and_service();
    let blocked = conversation();
    fail_chat("teams.send", &blocked, json!({"status": 403})).await;
    let error = c.send(&service, &blocked, &card("x")).await.unwrap_err();
    assert_refused(&error, &["MessageWritesBlocked", "add the regate app"]);
    let big = conversation();
    fail_chat("teams.send", &big, json!({"status": 413})).await;
    let error = c.send(&service, &big, &card("x")).await.unwrap_err();
    assert_refused(&error, &["too big"]);
    // Over Teams' limit, nothing is sent at all.
    let error = c
        .send(&service, &conversation(), &card(&"x".repeat(120 * 1024)))
        .await
        .unwrap_err();
    assert_refused(&error, &["UTF-16"]);
}

#[tokio::test]
async fn the_token_goes_only_to_allowed_hosts() {
    let c = connector(Duration::from_secs(2));
    let conversation = conversation();
    let error = c
        .send(
            "https://attacker.example/amer/t/",
            &conversation,
            &card("x"),
        )
        .await
        .unwrap_err();
    assert_refused(&error, &["not an allowed"]);
    assert!(calls("teams.send", &conversation).await.is_empty());
}

#[tokio::test]
async fn members_are_looked_up_with_their_mail_upn_and_role() {
    let (c, service) = connector_and_service();
    let conversation = conversation();
    let member = c
        .member(&service, &conversation, "29:UPNDIFFERS")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        member.email.as_deref(),
        Some("carol.owner@mail.example.com")
    );
    assert_eq!(
        member.user_principal_name.as_deref(),
        Some("carol@example.com")
    );
    let anonymous = c
        .member(&service, &conversation, "29:ANONYMOUS")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anonymous.user_role.as_deref(), Some("anonymous"));
    assert_eq!(anonymous.email, None);
    assert_eq!(
        c.member(&service, &conversation, "29:NOBODY")
            .await
            .unwrap(),
        None
    );
    let lookups = calls("teams.member", &conversation).await.len();
    c.member(&service, &conversation, "29:UPNDIFFERS")
        .await
        .unwrap();
    assert_eq!(
        calls("teams.member", &conversation).await.len(),
        lookups,
        "cached"
    );
}

#[tokio::test]
async fn signing_keys_are_cached_and_an_unknown_key_fetches_them_at_most_once_a_minute() {
    use regate_chat::teams::activity::Envelope;
    use regate_chat::teams::BotAuthenticator;
    use regate_testkit::TeamsKey;
    let env = local_env();
    let auth = BotAuthenticator::new(
        &env["TEAMS_APP_ID"],
        &env["TEAMS_METADATA_URL"],
        reqwest::Client::new(),
    );
    let key = TeamsKey::generate(&unique("cached"), &["msteams"]);
    let publish = |key: &TeamsKey| {
        let body = json!({"keys": [key.jwk]});
        async move { control_chat("_keys", &body).await }
    };
    let fetches = || async {
        let state: Value = reqwest::get(format!("{}/_teams", chat_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state["key_fetches"].as_u64().unwrap()
    };
    publish(&key).await;
    let bot = bot();
    let envelope = Envelope {
        channel_id: "msteams".into(),
        service_url: bot.service_url.clone(),
    };
    let bearer = |key: &TeamsKey| {
        format!(
            "Bearer {}",
            key.sign(&regate_testkit::bot_claims(&bot.app_id, &bot.service_url))
        )
    };
    // Other tests fetch keys too, so each step counts this authenticator's fetches as at most
    // what it should have caused, and at least that when it must fetch.
    let before = fetches().await;
    auth.verify(Some(&bearer(&key)), &envelope).await.unwrap();
    auth.verify(Some(&bearer(&key)), &envelope).await.unwrap();
    let first = fetches().await;
    assert!(first > before, "the first check fetches the keys");
    // An unknown key fetches once; a second unknown key within the minute does not.
    let rotated = TeamsKey::generate(&unique("rotated"), &["msteams"]);
    publish(&rotated).await;
    auth.verify(Some(&bearer(&rotated)), &envelope)
        .await
        .unwrap();
    let another = TeamsKey::generate(&unique("another"), &["msteams"]);
    publish(&another).await;
    let refused = auth.verify(Some(&bearer(&another)), &envelope).await;
    assert!(
        matches!(refused, Err(regate_chat::teams::AuthError::Unauthorized(_))),
        "{refused:?}"
    );
    auth.verify(Some(&bearer(&key)), &envelope).await.unwrap();
}

#[tokio::test]
async fn a_direct_conversation_is_started_with_a_member_found_by_upn_and_refused_for_a_stranger() {
    let (c, service) = connector_and_service();
    let channel = conversation();
    let found = c.member(&service, &channel, "dan@example.com").await;
    let member = found
        .unwrap()
        .expect("the connector takes a UPN as the member id");
    let text = unique("direct");
    let (direct, activity_id) = c
        .create_conversation(&service, &member.id, &card(&text))
        .await
        .unwrap();
    assert!(direct.starts_with("a:"), "{direct}");
    assert!(!activity_id.is_empty());
    let created = chat_calls("teams.create", &text).await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["request"]["isGroup"], false);
    assert_eq!(created[0]["request"]["members"], json!([{"id": member.id}]));
    // The same person again: the same conversation.
    let (again, _) = c
        .create_conversation(&service, &member.id, &card("again"))
        .await
        .unwrap();
    assert_eq!(again, direct);

    assert_eq!(
        c.member(&service, &channel, "nobody@example.com")
            .await
            .unwrap(),
        None
    );
    let refused = c
        .create_conversation(&service, "29:NOBODY", &card("nobody"))
        .await
        .unwrap_err();
    assert!(matches!(refused, ChatError::Refused(_)), "{refused:?}");
}
