//! The Slack Web API client against the local Slack stand-in, made to fail on request:
//! Retry-After honoured within the time budget, 5xx retried, `ok: false` codes typed.

use std::time::{Duration, Instant};

use regate_chat::slack::SlackApi;
use regate_core::ports::ChatError;
use regate_tests::{chat_calls, chat_url, fail_chat as fail, local_env, unique};
use secrecy::SecretString;
use serde_json::{json, Value};

fn api(budget: Duration) -> SlackApi {
    api_with_token(&local_env()["SLACK_BOT_TOKEN"], budget)
}

fn api_with_token(token: &str, budget: Duration) -> SlackApi {
    SlackApi::new(
        reqwest::Client::new(),
        &local_env()["SLACK_API_URL"],
        SecretString::from(token.to_string()),
        budget,
    )
}

async fn calls_of(method: &str, matching: &str) -> usize {
    chat_calls(method, matching).await.len()
}

fn fresh_channel() -> String {
    format!("C{}", unique("T").replace('-', "").to_uppercase())
}

/// What posting "hello" to a fresh channel gave, within `budget`, when the stand-in answers
/// chat.postMessage there with `fault`: the channel, the time it took, and the result.
async fn post_through(
    fault: Value,
    budget: Duration,
) -> (String, Duration, Result<(String, String), ChatError>) {
    let channel = fresh_channel();
    fail("chat.postMessage", &channel, fault).await;
    let started = Instant::now();
    let result = api(budget)
        .post_message(&channel, "hello", &json!([]), &json!({}))
        .await;
    (channel, started.elapsed(), result)
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_then_succeeds() {
    let (channel, elapsed, result) = post_through(
        json!({"status": 429, "retry_after": 1, "times": 1}),
        Duration::from_secs(5),
    )
    .await;
    let (posted, ts) = result.unwrap();
    assert_eq!(posted, channel);
    assert!(!ts.is_empty());
    assert!(
        elapsed >= Duration::from_secs(1),
        "it waited as Slack asked"
    );
    assert_eq!(calls_of("chat.postMessage", &channel).await, 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_gives_up_at_once_as_rate_limited() {
    let (_, elapsed, result) = post_through(
        json!({"status": 429, "retry_after": 30, "times": 1}),
        Duration::from_secs(2),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, ChatError::RateLimited(_)), "{error:?}");
    assert!(elapsed < Duration::from_secs(2));
}

#[tokio::test]
async fn a_huge_retry_after_is_clamped_and_gives_up_without_a_panic() {
    let channel = fresh_channel();
    let huge = u64::MAX.to_string();
    fail(
        "chat.postMessage",
        &channel,
        json!({"status": 429, "retry_after": huge, "times": 1}),
    )
    .await;
    let error = api(Duration::from_secs(2))
        .post_message(&channel, "hello", &json!([]), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ChatError::RateLimited(ref m) if m.contains("3600")),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_within_the_budget() {
    let (channel, _, result) =
        post_through(json!({"status": 503, "times": 2}), Duration::from_secs(5)).await;
    let _ = result.unwrap();
    assert_eq!(calls_of("chat.postMessage", &channel).await, 3);

    let (down, _, result) = post_through(
        json!({"status": 500, "times": 100}),
        Duration::from_millis(900),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, ChatError::Unavailable(_)), "{error:?}");
    let attempts = calls_of("chat.postMessage", &down).await;
    assert!(
        (2..10).contains(&attempts),
        "bounded retries, {attempts} attempts"
    );
}

#[tokio::test]
async fn slack_error_codes_become_typed_errors_with_a_hint() {
    let error = api(Duration::from_secs(2))
        .post_message("nonsense", "hello", &json!([]), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ChatError::Refused(text) if text.contains("channel_not_found")),
        "{error:?}"
    );
    let (channel, _, result) =
        post_through(json!({"error": "not_in_channel"}), Duration::from_secs(2)).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, ChatError::Refused(text) if text.contains("invite the regate app")),
        "{error:?}"
    );
    let error = api_with_token("xoxb-wrong", Duration::from_secs(2))
        .post_message(&channel, "hello", &json!([]), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ChatError::Refused(text) if text.contains("invalid_auth")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_slack_is_unavailable_within_the_budget() {
    let dead = SlackApi::new(
        reqwest::Client::new(),
        "http://127.0.0.1:9/api",
        SecretString::from("x".to_string()),
        Duration::from_millis(800),
    );
    let started = Instant::now();
    let error = dead
        .post_message("C1", "hello", &json!([]), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn user_lookups_are_cached() {
    let api = api(Duration::from_secs(2));
    let users: Vec<Value> = reqwest::get(format!("{}/_users", chat_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eve = users
        .iter()
        .find(|u| u["email"] == "eve@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = calls_of("users.info", &eve).await;
    let email = |user: Option<regate_chat::slack::api::SlackUser>| user.unwrap().email;
    assert_eq!(
        email(api.user(&eve).await.unwrap()).as_deref(),
        Some("eve@example.com")
    );
    assert_eq!(
        email(api.user(&eve).await.unwrap()).as_deref(),
        Some("eve@example.com")
    );
    assert_eq!(calls_of("users.info", &eve).await, before + 1);
    assert_eq!(
        api.user_id("EVE@example.com").await.unwrap().as_deref(),
        Some(eve.as_str())
    );
    assert_eq!(api.user("U0NOBODY").await.unwrap(), None);
    assert_eq!(api.user_id("nobody@example.com").await.unwrap(), None);
}

#[tokio::test]
async fn a_direct_message_channel_is_opened_for_a_known_user_and_refused_for_an_unknown_one() {
    let slack = api(Duration::from_secs(2));
    let erin = slack.user_id("erin@example.com").await.unwrap().unwrap();
    let channel = slack.open_direct_message(&erin).await.unwrap();
    assert!(channel.starts_with('D'), "{channel}");
    assert_eq!(
        slack.open_direct_message(&erin).await.unwrap(),
        channel,
        "the same each time"
    );
    assert_eq!(slack.user_id("nobody@example.com").await.unwrap(), None);
    let refused = slack.open_direct_message("U0NOBODY").await.unwrap_err();
    assert!(
        matches!(&refused, ChatError::Refused(why) if why.contains("user_not_found")),
        "{refused:?}"
    );
}
