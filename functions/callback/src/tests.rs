//! The callback's router, driven as API Gateway drives it (`oneshot` with real signed bodies),
//! over in-memory fakes of the stores, Step Functions and the chat platform.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use regate_chat::slack::SlackWorkspace;
use regate_core::ports::{Clock, StoreError};
use regate_core::{Choice, EventKind};
use regate_testkit::{
    open, request, signed_slack_click, signed_slack_reason, Fakes, MemoryPorts, Resumed,
    SignedRequest, SLACK_APP_ID, SLACK_SIGNING_SECRET, SLACK_TEAM_ID,
};
use secrecy::SecretString;
use tower::ServiceExt;

use crate::handler::{router, App, FAULT};

const ALICE: &str = "U0ALICE";
const IVAN: &str = "U0IVAN";
const DEV: &str = "U0DEV";

/// Fakes that know three Slack users, and a pending approval `id` opened on them.
async fn opened(id: &str, kind: (&str, &str)) -> Fakes {
    let fakes = Fakes::default();
    fakes.chat.knows(ALICE, "alice@example.com");
    fakes.chat.knows(IVAN, "ivan@example.com");
    fakes.chat.knows(DEV, "dev@example.com");
    let request = request(id)
        .change(kind.0, "production", kind.1, "payments")
        .build();
    open(&fakes.approvals(), &request, "token-1").await;
    fakes
}

const DEPLOY: (&str, &str) = ("deploy", "service");
const IAM: (&str, &str) = ("iam_change", "role");

/// The callback over `fakes`, for the Slack fixtures' app and workspace, with Teams when
/// `teams_auth` is given.
fn app(
    fakes: &Fakes,
    teams_auth: Option<regate_chat::teams::BotAuthenticator>,
) -> Arc<App<MemoryPorts>> {
    Arc::new(App {
        approvals: fakes.approvals(),
        signing_secret: SecretString::from(SLACK_SIGNING_SECRET),
        workspace: SlackWorkspace {
            app_id: SLACK_APP_ID.into(),
            team_id: SLACK_TEAM_ID.into(),
            enterprise_id: None,
        },
        clock: fakes.clock.clone(),
        teams_auth,
    })
}

/// Posts `signed` to the router; the status and the body as text.
async fn post(fakes: &Fakes, signed: &SignedRequest) -> (StatusCode, String) {
    let app = app(fakes, None);
    let request = Request::post("/slack/interactions")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &signed.timestamp)
        .header("x-slack-signature", &signed.signature)
        .body(Body::from(signed.body.clone()))
        .unwrap();
    let response = router(app).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn now(fakes: &Fakes) -> chrono::DateTime<chrono::Utc> {
    fakes.clock.now()
}

#[tokio::test]
async fn a_signed_owner_approval_resumes_the_workflow_once() {
    let fakes = opened("cb-1", DEPLOY).await;
    let (status, _) = post(
        &fakes,
        &signed_slack_click(ALICE, "approve", "cb-1", now(&fakes)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let calls = fakes.tokens.calls();
    assert!(
        matches!(&calls[..], [Resumed::Success { token, .. }] if token == "token-1"),
        "{calls:?}"
    );
    assert_eq!(
        fakes.kinds("cb-1"),
        [EventKind::Notified, EventKind::Vote, EventKind::Decided]
    );
    assert!(fakes.chat.told().is_empty());
    let updates = fakes.chat.updates.lock().unwrap().len();
    assert_eq!(updates, 1, "the message shows the decision");
}

#[tokio::test]
async fn the_requesters_click_is_refused_privately_and_logged() {
    let fakes = opened("cb-2", DEPLOY).await;
    let (status, _) = post(
        &fakes,
        &signed_slack_click(DEV, "approve", "cb-2", now(&fakes)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let told = fakes.chat.told();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, DEV);
    assert!(told[0].1.contains("not counted"), "{told:?}");
    assert_eq!(
        fakes.kinds("cb-2"),
        [EventKind::Notified, EventKind::VoteRefused]
    );
    assert!(fakes.tokens.calls().is_empty());
}

#[tokio::test]
async fn a_reject_that_needs_a_reason_opens_the_modal_and_its_submission_decides() {
    let fakes = opened("cb-3", IAM).await;
    let (status, _) = post(
        &fakes,
        &signed_slack_click(IVAN, "reject", "cb-3", now(&fakes)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let asked = fakes.chat.asked_reason.lock().unwrap().clone();
    assert_eq!(asked, [(IVAN.to_string(), "cb-3".to_string())]);
    assert_eq!(
        fakes.kinds("cb-3"),
        [EventKind::Notified],
        "nothing is recorded yet"
    );

    let (status, body) = post(
        &fakes,
        &signed_slack_reason(IVAN, "cb-3", "  ", now(&fakes)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("response_action") && body.contains("Give a reason"),
        "{body}"
    );

    let reason = signed_slack_reason(IVAN, "cb-3", "too broad", now(&fakes));
    let (status, body) = post(&fakes, &reason).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let item = fakes.pending.item("cb-3").unwrap();
    assert_eq!(item.votes[0].vote, Choice::Reject);
    assert_eq!(item.votes[0].reason.as_deref(), Some("too broad"));
    assert!(matches!(
        &fakes.tokens.calls()[..],
        [Resumed::Failure { .. }]
    ));
}

#[tokio::test]
async fn a_forged_or_stale_signature_is_401_and_records_nothing() {
    let fakes = opened("cb-4", DEPLOY).await;
    let mut forged = signed_slack_click(ALICE, "approve", "cb-4", now(&fakes));
    forged.signature = format!("v0={}", "0".repeat(64));
    assert_eq!(post(&fakes, &forged).await.0, StatusCode::UNAUTHORIZED);
    let stale_time = now(&fakes) - chrono::Duration::seconds(301);
    let stale = signed_slack_click(ALICE, "approve", "cb-4", stale_time);
    assert_eq!(post(&fakes, &stale).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fakes.kinds("cb-4"), [EventKind::Notified]);
    assert!(fakes.pending.item("cb-4").unwrap().votes.is_empty());
}

#[tokio::test]
async fn a_malformed_body_or_unknown_action_is_400() {
    let fakes = opened("cb-5", DEPLOY).await;
    let unknown = signed_slack_click(ALICE, "delete_everything", "cb-5", now(&fakes));
    let (status, body) = post(&fakes, &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("delete_everything"), "{body}");
    let mut garbage = unknown.clone();
    garbage.body = "payload=%7Bnot-json".into();
    garbage.signature = regate_chat::slack::signature::sign(
        &SecretString::from(SLACK_SIGNING_SECRET),
        &garbage.timestamp,
        garbage.body.as_bytes(),
    );
    assert_eq!(post(&fakes, &garbage).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(fakes.kinds("cb-5"), [EventKind::Notified]);
}

#[tokio::test]
async fn a_store_fault_is_a_500_with_the_generic_message() {
    let fakes = opened("cb-6", DEPLOY).await;
    fakes.pending.fault.set(StoreError::Unavailable(
        "connection reset by 10.0.0.7".into(),
    ));
    let (status, body) = post(
        &fakes,
        &signed_slack_click(ALICE, "approve", "cb-6", now(&fakes)),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, FAULT)
    );
    assert!(fakes.tokens.calls().is_empty());
}

#[tokio::test]
async fn a_user_without_an_email_is_told_why_and_nothing_is_recorded() {
    let fakes = opened("cb-7", DEPLOY).await;
    let (status, _) = post(
        &fakes,
        &signed_slack_click("U0NOBODY", "approve", "cb-7", now(&fakes)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(fakes.chat.told()[0].1.contains("e-mail address"));
    assert_eq!(fakes.kinds("cb-7"), [EventKind::Notified]);
}

#[tokio::test]
async fn a_click_from_another_workspace_or_app_is_403_and_records_nothing() {
    let fakes = opened("cb-8", DEPLOY).await;
    for (pointer, value) in [("/team/id", "T0ELSEWHERE"), ("/api_app_id", "A0OTHERAPP")] {
        let mut payload = regate_chat::slack::interaction::click_payload(
            ALICE,
            "approve",
            "cb-8",
            "C0PAYMENTS",
            "1.1",
        );
        *payload.pointer_mut(pointer).unwrap() = value.into();
        let body = regate_chat::slack::interaction::form_body(&payload);
        let mut foreign = signed_slack_click(ALICE, "approve", "cb-8", now(&fakes));
        foreign.signature = regate_chat::slack::signature::sign(
            &SecretString::from(SLACK_SIGNING_SECRET),
            &foreign.timestamp,
            body.as_bytes(),
        );
        foreign.body = body;
        let (status, text) = post(&fakes, &foreign).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{pointer}: {text}");
        assert!(text.contains(value), "{text}");
    }
    assert_eq!(fakes.kinds("cb-8"), [EventKind::Notified]);
}

#[tokio::test]
async fn an_account_that_may_not_vote_is_told_why_and_the_refusal_is_logged() {
    let fakes = opened("cb-9", DEPLOY).await;
    fakes
        .chat
        .refuses("U0GUEST", "alice@example.com", "guest accounts cannot vote");
    let click = signed_slack_click("U0GUEST", "approve", "cb-9", now(&fakes));
    let (status, _) = post(&fakes, &click).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fakes.chat.told()[0]
        .1
        .contains("guest accounts cannot vote"));
    let refused = fakes.log.of("cb-9").pop().unwrap();
    assert_eq!(refused.kind, EventKind::VoteRefused);
    assert_eq!(refused.actor.as_deref(), Some("alice@example.com"));
    assert!(fakes.pending.item("cb-9").unwrap().votes.is_empty());
    assert!(fakes.tokens.calls().is_empty());
}

/// Posts a Teams activity to the router, Teams configured (`auth`) or not.
async fn post_teams(
    fakes: &Fakes,
    auth: Option<regate_chat::teams::BotAuthenticator>,
    body: &str,
    authorization: Option<&str>,
) -> StatusCode {
    let app = app(fakes, auth);
    let mut request = Request::post("/teams/messages").header("content-type", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    router(app).oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn teams_activities_without_teams_or_a_token_or_a_shape_are_refused_before_anything() {
    let fakes = opened("cb-teams", DEPLOY).await;
    // The key endpoint is unreachable on purpose: none of these may need a key.
    let auth = || {
        Some(regate_chat::teams::BotAuthenticator::new(
            "app",
            "http://127.0.0.1:9/unreachable",
            reqwest::Client::new(),
        ))
    };
    let activity = serde_json::json!({"type": "invoke", "name": "adaptiveCard/action",
        "channelId": "msteams", "serviceUrl": "https://smba.trafficmanager.net/amer/t/",
        "value": {"action": {"verb": "regate.approve", "data": {"request_id": "cb-teams"}}}})
    .to_string();
    assert_eq!(
        post_teams(&fakes, None, &activity, Some("Bearer x")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_teams(&fakes, auth(), &activity, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_teams(&fakes, auth(), &activity, Some("Bearer not.a.jwt")).await,
        StatusCode::UNAUTHORIZED
    );
    // No token is refused before the body is read; an oversized body before anything.
    assert_eq!(
        post_teams(&fakes, auth(), "{not json", None).await,
        StatusCode::UNAUTHORIZED
    );
    let huge = format!("{{\"text\": \"{}\"}}", "x".repeat(64 * 1024));
    assert_eq!(
        post_teams(&fakes, auth(), &huge, None).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let key = regate_testkit::TeamsKey::generate("k", &["msteams"]);
    let token = format!(
        "Bearer {}",
        key.sign(&regate_testkit::bot_claims(
            "app",
            "https://smba.trafficmanager.net/amer/t/"
        ))
    );
    // A well-formed token on a body that is no activity: 400, and no key was needed.
    assert_eq!(
        post_teams(&fakes, auth(), "{not json", Some(&token)).await,
        StatusCode::BAD_REQUEST
    );
    // With a well-formed RS256 token, the keys must be fetched: unreachable is a 503, so the
    // Bot Framework retries, and nothing is recorded.
    assert_eq!(
        post_teams(&fakes, auth(), &activity, Some(&token)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(fakes.tokens.calls().is_empty());
    assert!(!fakes
        .log
        .of("cb-teams")
        .iter()
        .any(|e| e.kind == EventKind::Vote || e.kind == EventKind::VoteRefused));
}
