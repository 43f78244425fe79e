//! `POST /slack/interactions`: verify and parse the click, find out who clicked, hand the
//! ballot to the core, and map its result to Slack's answer: 401 for a bad signature or
//! timestamp, 400 for a malformed body, 200 with a private explanation (an ephemeral message,
//! or the modal's error) for votes that do not count, 500 only for real faults.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use regate_chat::slack::blocks::reason_error;
use regate_chat::slack::{receive, Inbound, Interaction, SlackWorkspace};
use regate_core::approvals::Approvals;
use regate_core::ports::{ChatPlatform, Clock, DecisionLog, PendingStore, TaskTokens};
use regate_core::Choice;
use secrecy::SecretString;

pub const FAULT: &str = "regate could not record this; please try again";

pub struct App<L, P, T, C, K> {
    pub approvals: Approvals<L, P, T, C, K>,
    pub signing_secret: SecretString,
    /// The app and workspace whose clicks count.
    pub workspace: SlackWorkspace,
    /// The real time, for checking signature timestamps.
    pub clock: K,
}

type Shared<L, P, T, C, K> = Arc<App<L, P, T, C, K>>;

pub fn router<L, P, T, C, K>(app: Shared<L, P, T, C, K>) -> Router
where
    L: DecisionLog + 'static,
    P: PendingStore + 'static,
    T: TaskTokens + 'static,
    C: ChatPlatform + 'static,
    K: Clock + 'static,
{
    Router::new()
        .route(
            "/slack/interactions",
            post(slack_interactions::<L, P, T, C, K>),
        )
        .with_state(app)
}

async fn slack_interactions<L, P, T, C, K>(
    State(app): State<Shared<L, P, T, C, K>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    C: ChatPlatform,
    K: Clock,
{
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
            let text = "invalid Slack signature or timestamp";
            return (StatusCode::UNAUTHORIZED, text).into_response();
        }
        Err(Inbound::Malformed(error)) => {
            tracing::warn!(error = %error, "malformed Slack interaction");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
        Err(Inbound::Foreign(error)) => {
            tracing::warn!(error = %error, "a Slack interaction for another app or workspace");
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
