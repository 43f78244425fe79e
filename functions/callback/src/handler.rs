//! `POST /slack/interactions`: verify and parse the click, find out who clicked, hand the
//! ballot to the core, and map its result to Slack's answer: 401 for a bad signature or
//! timestamp, 400 for a malformed body, 200 with a private explanation (an ephemeral message,
//! or the modal's error) for votes that do not count, 500 only for real faults.
//!
//! `POST /teams/messages`: verify the Bot Framework token, parse the activity and hand a card
//! click to the same core path; the answer is the invoke response Teams documents (the card
//! for the clicker). 401 for a missing or bad token, 403 for another channel or an unendorsed
//! key, 400 for a malformed activity, 200 with nothing for activities regate ignores, 501 for
//! other invokes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use regate_chat::slack::blocks::reason_error;
use regate_chat::slack::{receive, Inbound, Interaction, SlackWorkspace};
use regate_chat::teams::activity::{self, error_response};
use regate_chat::teams::auth;
use regate_chat::teams::{click_answer, Activity, AuthError, BotAuthenticator, TeamsChat};
use regate_core::approvals::Approvals;
use regate_core::metrics::Measurement;
use regate_core::ports::{Clock, Ports};
use regate_core::{Choice, Platform};
use secrecy::SecretString;

pub const FAULT: &str = "regate could not record this; please try again";

pub struct App<P: Ports> {
    pub approvals: Approvals<P>,
    pub signing_secret: SecretString,
    /// The app and workspace whose clicks count.
    pub workspace: SlackWorkspace,
    /// The real time, for checking signature timestamps.
    pub clock: P::Clock,
    /// Checks inbound Teams tokens; `None` when Teams is not configured.
    pub teams_auth: Option<BotAuthenticator>,
}

type Shared<P> = Arc<App<P>>;

pub fn router<P: Ports>(app: Shared<P>) -> Router {
    Router::new()
        .route("/slack/interactions", post(slack_interactions::<P>))
        .route("/teams/messages", post(teams_messages::<P>))
        .with_state(app)
}

async fn slack_interactions<P: Ports>(
    State(app): State<Shared<P>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header("x-slack-request-timestamp");
    let signature = header("x-slack-signature");
    let interaction = receive(
        &app.signing_secret,
        &app.workspace,
        timestamp,
        signature,
        &body,
        app.clock.now(),
    );
    let answer = match interaction {
        Err(Inbound::Unauthorized(error)) => {
            tracing::warn!(error = %error, "refused a Slack request");
            app.approvals
                .record(Measurement::click_refused(Platform::Slack, "401"));
            let text = "invalid Slack signature or timestamp";
            return (StatusCode::UNAUTHORIZED, text).into_response();
        }
        Err(Inbound::Malformed(error)) => {
            tracing::warn!(error = %error, "malformed Slack interaction");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
        Err(Inbound::Foreign(error)) => {
            tracing::warn!(error = %error, "a Slack interaction for another app or workspace");
            app.approvals
                .record(Measurement::click_refused(Platform::Slack, "403"));
            return (StatusCode::FORBIDDEN, error).into_response();
        }
        Ok(Interaction::Vote {
            voter,
            choice,
            request_id,
        }) => (app.approvals.click(&voter, &request_id, choice).await)
            .map(|_| StatusCode::OK.into_response()),
        // A vote that does not count keeps the modal open, showing why.
        Ok(Interaction::ReasonSubmitted {
            voter,
            request_id,
            reason,
        }) => (app.approvals)
            .vote_as(&voter, &request_id, Choice::Reject, Some(reason))
            .await
            .map(|result| match result.explanation() {
                Some(text) => Json(reason_error(&text)).into_response(),
                None => StatusCode::OK.into_response(),
            }),
    };
    answer.unwrap_or_else(|error| {
        tracing::error!(error = %error, "vote failed");
        (StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response()
    })
}

async fn teams_messages<P: Ports>(
    State(app): State<Shared<P>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(auth) = &app.teams_auth else {
        return (StatusCode::NOT_FOUND, "Teams is not configured").into_response();
    };
    if body.len() > activity::MAX_BODY_BYTES {
        tracing::warn!(bytes = body.len(), "refused an oversized Teams activity");
        let limit = format!("an activity is at most {} bytes", activity::MAX_BODY_BYTES);
        return (StatusCode::PAYLOAD_TOO_LARGE, limit).into_response();
    }
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Err(error) = auth::screen(authorization) {
        tracing::warn!(error = %error, "refused a Teams request");
        app.approvals
            .record(Measurement::click_refused(Platform::Teams, "401"));
        return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    }
    let envelope = match activity::envelope(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(error = %error, "malformed Teams activity");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    if let Err(error) = auth.verify(authorization, &envelope).await {
        tracing::warn!(error = %error, "refused a Teams request");
        let (status, refused) = match error {
            AuthError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, Some("401")),
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, Some("403")),
            // The keys could not be fetched: not the clicker's fault, and not a refusal.
            AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        if let Some(refused) = refused {
            let refused = Measurement::click_refused(Platform::Teams, refused);
            app.approvals.record(refused);
        }
        return (status, error.to_string()).into_response();
    }
    let click = match activity::parse(&body) {
        Ok(Activity::Click(click)) => click,
        Ok(Activity::Ignored(kind)) => {
            tracing::debug!(kind, "ignored a Teams activity");
            return StatusCode::OK.into_response();
        }
        Ok(Activity::UnknownInvoke(name)) => {
            tracing::warn!(name, "an invoke regate does not handle");
            return StatusCode::NOT_IMPLEMENTED.into_response();
        }
        Err(error) => {
            tracing::warn!(error = %error, "malformed Teams activity");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    let voter = TeamsChat::voter(&click);
    let result = (app.approvals)
        .vote_as(
            &voter,
            &click.request_id,
            click.choice,
            click.reason.clone(),
        )
        .await;
    match result {
        Ok(result) => Json(click_answer(&result)).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "vote failed");
            Json(error_response(500, "InternalServerError", FAULT)).into_response()
        }
    }
}
