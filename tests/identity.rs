//! Requesters proven, end to end: identity tokens signed with keys the tests make, published by
//! the local OIDC issuer stand-in, checked by the real evaluator inside the real state machine.

use regate_core::EventKind;
use regate_testkit::{github_claims, JwtKey};
use regate_tests::stack::LocalStack;
use regate_tests::{control_chat, functions_log, local_env, unique};
use serde_json::{json, Value};

/// The tests that publish keys or take the issuer down run one at a time: an outage is the
/// stand-in's, not one test's.
static ISSUER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn issuer() -> String {
    local_env()["REGATE_TRUSTED_ISSUERS"].clone()
}

/// A fresh key, published by the issuer stand-in.
async fn published_key(prefix: &str) -> JwtKey {
    let key = JwtKey::ec(&unique(prefix));
    control_chat("oidc/_keys", &json!({"keys": [key.jwk]})).await;
    key
}

/// A GitHub-shaped token for `actor` from acme/payments on main, as the issuer would sign it.
fn token(key: &JwtKey, actor: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = github_claims(
        &issuer(),
        "regate",
        actor,
        "acme/payments",
        "refs/heads/main",
    );
    change(&mut claims);
    key.sign(&claims)
}

async fn issuer_down(down: bool) {
    control_chat("oidc/_outage", &json!({"down": down})).await;
}

/// Everything the token could have leaked into: the request's events, every chat call, and
/// the functions' log.
async fn assert_nowhere(stack: &LocalStack, id: &str, secret: &str) {
    let events = serde_json::to_string(&stack.events(id).await).unwrap();
    assert!(!events.contains(secret), "the decision log holds the token");
    let calls = serde_json::to_string(&stack.calls().await).unwrap();
    assert!(!calls.contains(secret), "a chat message holds the token");
    assert!(
        !functions_log().contains(secret),
        "the functions' log holds the token"
    );
    // The signature alone is secret enough to look for (a real one: 64 bytes and more).
    let signature = secret.rsplit('.').next().unwrap();
    if signature.len() >= 64 {
        assert!(!events.contains(signature) && !functions_log().contains(signature));
    }
}

#[tokio::test]
async fn a_github_token_from_acme_payments_on_main_is_verified_and_its_actor_is_the_requester() {
    let _one = ISSUER.lock().await;
    let stack = LocalStack::connect().await;
    let key = published_key("id-ok").await;
    let jwt = token(&key, "dev", |_| {});
    let (id, execution) = stack
        .begin("id-ok", |r| r.with("identity_token", json!(jwt)))
        .await;
    let (channel, _, _) = stack.message_for(&id).await;
    assert_eq!(channel, "C0PAYMENTS");
    let events = stack.events(&id).await;
    let requested = events
        .iter()
        .find(|e| e.kind == EventKind::Requested)
        .unwrap();
    let identity = &requested.data["request"]["identity"];
    assert_eq!(identity["issuer"], issuer().as_str());
    assert_eq!(identity["key_id"], key.kid.as_str());
    assert_eq!(
        identity["subject"],
        "repo:acme/payments:ref:refs/heads/main"
    );
    assert_eq!(identity["claims"]["actor"], "dev");
    assert_eq!(identity["claims"]["repository"], "acme/payments");
    assert_eq!(requested.actor.as_deref(), Some("dev@example.com"));
    assert_nowhere(&stack, &id, &jwt).await;

    stack.click_ok("alice@example.com", "approve", &id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["alice@example.com"]);
}

#[tokio::test]
async fn every_bad_token_is_denied_with_its_reason_and_nothing_else_is_written() {
    let _one = ISSUER.lock().await;
    let stack = LocalStack::connect().await;
    let key = published_key("id-bad").await;
    let forger = JwtKey::ec(&key.kid);
    let unpublished = JwtKey::ec(&unique("id-unpublished"));
    let part = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = github_claims(
        &issuer(),
        "regate",
        "dev",
        "acme/payments",
        "refs/heads/main",
    );
    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(&str, String, &str)> = vec![
        ("forged", forger.sign(&claims), "signature does not verify"),
        ("unknown-key", unpublished.sign(&claims), "does not publish"),
        (
            "wrong-aud",
            token(&key, "dev", |c| c["aud"] = json!("sts.amazonaws.com")),
            "another audience",
        ),
        (
            "expired",
            token(&key, "dev", |c| c["exp"] = json!(now - 120)),
            "expired",
        ),
        (
            "untrusted",
            token(&key, "dev", |c| {
                c["iss"] = json!("https://token.actions.example")
            }),
            "is not trusted",
        ),
        (
            "none",
            format!(
                "{}.{}.",
                part(json!({"alg": "none", "kid": key.kid})),
                part(claims.clone())
            ),
            "alg \"none\"",
        ),
        (
            "hs256",
            format!(
                "{}.{}.c2ln",
                part(json!({"alg": "HS256", "kid": key.kid})),
                part(claims.clone())
            ),
            "alg \"HS256\"",
        ),
        (
            "another-actor",
            token(&key, "mallory", |_| {}),
            "proves that mallory ran it",
        ),
    ];
    let mut cases: Vec<(&str, Value, &str)> = cases
        .into_iter()
        .map(|(name, jwt, why)| (name, json!(jwt), why))
        .collect();
    cases.push(("missing", Value::Null, "must prove who asked"));
    let mut started = Vec::new();
    for (name, jwt, why) in cases {
        let (id, execution) = stack
            .begin(&format!("id-{name}"), |r| {
                r.with("identity_token", jwt.clone())
            })
            .await;
        started.push((
            id,
            execution,
            jwt.as_str().unwrap_or("no token").to_string(),
            why,
        ));
    }
    for (id, execution, jwt, why) in started {
        stack
            .wait_finished(&execution)
            .await
            .assert_failed("PolicyDenied");
        let events = stack.events(&id).await;
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Requested, EventKind::Evaluated], "{id}");
        assert!(
            events[1].reasons[0].contains(why),
            "{id}: {:?} should say {why}",
            events[1].reasons
        );
        assert!(
            stack.calls_about("chat.postMessage", &id).await.is_empty(),
            "{id}"
        );
        assert_nowhere(&stack, &id, &jwt).await;
    }
}

#[tokio::test]
async fn an_issuer_that_is_out_is_retried_then_fails_closed_with_identity_unavailable() {
    let _one = ISSUER.lock().await;
    let stack = LocalStack::connect().await;
    // A key the evaluator has not seen: it must fetch the issuer's keys to check it.
    let key = JwtKey::ec(&unique("id-out"));
    let asked = |fetches: &Value| fetches["discovery"].as_u64().unwrap();
    let before = asked(
        &reqwest::get(format!("{}/_fetches", issuer()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    issuer_down(true).await;
    let (id, execution) = stack
        .begin("id-out", |r| {
            r.with("identity_token", json!(token(&key, "dev", |_| {})))
        })
        .await;
    let done = stack.wait_finished(&execution).await;
    issuer_down(false).await;
    done.assert_failed("IdentityUnavailable");
    let after = asked(
        &reqwest::get(format!("{}/_fetches", issuer()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert!(
        after - before >= 4,
        "the first try and 3 retries each ask the issuer: {}",
        after - before
    );
    // Nothing was decided, so nothing was logged.
    assert!(stack.events(&id).await.is_empty());

    // Back up, the same key (now published) is checked.
    control_chat("oidc/_keys", &json!({"keys": [key.jwk]})).await;
    let (id, _) = stack
        .begin("id-back", |r| {
            r.with("identity_token", json!(token(&key, "dev", |_| {})))
        })
        .await;
    stack.message_for(&id).await;
}

#[tokio::test]
async fn the_verified_actor_cannot_approve_under_their_chat_address() {
    let _one = ISSUER.lock().await;
    let stack = LocalStack::connect().await;
    let key = published_key("id-self").await;
    // The pipeline's bot asks; the token proves that alice-gh ran it: alice@example.com
    // (data.people), a payments owner.
    let (id, execution) = stack
        .begin("id-self", |r| {
            r.with(
                "requester",
                json!({"id": "github-actions", "kind": "service"}),
            )
            .with("identity_token", json!(token(&key, "alice-gh", |_| {})))
        })
        .await;
    stack.message_for(&id).await;
    stack.click_ok("alice@example.com", "approve", &id).await;
    let alice = stack.slack_user("alice@example.com").await;
    let told = stack.calls().await.into_iter().any(|c| {
        c["method"] == "chat.postEphemeral"
            && c["body"]["user"] == alice.as_str()
            && c["body"]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("its identity token proves that alice-gh (you) asked for it")
    });
    assert!(told, "alice is told privately why her vote does not count");
    assert_eq!(stack.status(&execution).await.status, "RUNNING");
    let events = stack.events(&id).await;
    assert!(events.iter().any(|e| e.kind == EventKind::VoteRefused));
    assert!(!events.iter().any(|e| e.kind == EventKind::Vote));

    stack.click_ok("bob@example.com", "approve", &id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["bob@example.com"]);
}
