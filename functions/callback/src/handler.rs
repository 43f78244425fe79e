//! `POST /slack/interactions`: verify the signature over the raw body, parse the click, resolve
//! the clicking user to an e-mail identity, and hand the vote to the domain. 401 for a bad
//! signature or timestamp, 400 for a malformed body, 200 with an explanation (ephemeral
//! message or modal error) for votes that do not count, 500 only for real faults.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use regate_chat::slack::blocks::{reason_error, reason_modal};
use regate_chat::slack::interaction::{parse, Interaction};
use regate_chat::slack::{verify_at, SlackApi, SlackChat};
use regate_core::approvals::{Approvals, VoteResult};
use regate_core::ports::{
    ApprovalState, ApprovalView, ChatPlatform, Clock, DecisionLog, PendingStore, TaskTokens,
};
use regate_core::Choice;
use secrecy::SecretString;

pub struct App<L, P, T, K> {
    pub approvals: Approvals<L, P, T>,
    pub chat: SlackChat,
    pub slack: Arc<SlackApi>,
    pub signing_secret: SecretString,
    pub clock: K,
}

pub fn router<L, P, T, K>(app: Arc<App<L, P, T, K>>) -> Router
where
    L: DecisionLog + 'static,
    P: PendingStore + 'static,
    T: TaskTokens + 'static,
    K: Clock + 'static,
{
    Router::new()
        .route(
            "/slack/interactions",
            post(slack_interactions::<L, P, T, K>),
        )
        .with_state(app)
}

const FAULT: &str = "regate could not record this; please try again";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn slack_interactions<L, P, T, K>(
    State(app): State<Arc<App<L, P, T, K>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response
where
    L: DecisionLog,
    P: PendingStore,
    T: TaskTokens,
    K: Clock,
{
    let now = app.clock.now();
    if let Err(error) = verify_at(
        &app.signing_secret,
        header(&headers, "x-slack-request-timestamp"),
        header(&headers, "x-slack-signature"),
        &body,
        now,
    ) {
        tracing::warn!(error = %error, "refused a Slack request");
        return (
            StatusCode::UNAUTHORIZED,
            "invalid Slack signature or timestamp",
        )
            .into_response();
    }
    let interaction = match parse(&body) {
        Ok(interaction) => interaction,
        Err(error) => {
            tracing::warn!(error = %error, "malformed Slack interaction");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    match interaction {
        Interaction::Vote {
            user_id,
            choice,
            request_id,
            trigger_id,
            channel_id,
        } => {
            app.vote(
                &user_id,
                choice,
                &request_id,
                trigger_id.as_deref(),
                channel_id.as_deref(),
            )
            .await
        }
        Interaction::ReasonSubmitted {
            user_id,
            request_id,
            reason,
        } => app.reason(&user_id, &request_id, &reason).await,
    }
}

/// What the voter is told when a vote does not count.
fn explanation(result: &VoteResult) -> Option<String> {
    match result {
        VoteResult::Counted { .. } => None,
        VoteResult::Refused { reason, .. } => Some(format!("Your vote was not counted: {reason}.")),
        VoteResult::AlreadyDecided { approval } => Some(match approval.state {
            ApprovalState::Expired => {
                "This request has expired; votes no longer count.".to_string()
            }
            state => format!(
                "This request is already decided ({}); your vote was not counted.",
                state.as_str()
            ),
        }),
        VoteResult::Unknown => {
            Some("regate knows no open request with this id; it may have expired.".into())
        }
    }
}

impl<L: DecisionLog, P: PendingStore, T: TaskTokens, K: Clock> App<L, P, T, K> {
    /// The voter's e-mail address, or the response that says why there is none.
    async fn identity(&self, user_id: &str, channel_id: Option<&str>) -> Result<String, Response> {
        match self.slack.user_email(user_id).await {
            Ok(Some(email)) => Ok(email),
            Ok(None) => {
                self.tell(channel_id, user_id, "regate cannot see the e-mail address of your Slack account, so it cannot count your vote.").await;
                Err(StatusCode::OK.into_response())
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot resolve a Slack user");
                Err((StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response())
            }
        }
    }

    async fn vote(
        &self,
        user_id: &str,
        choice: Choice,
        request_id: &str,
        trigger_id: Option<&str>,
        channel_id: Option<&str>,
    ) -> Response {
        let email = match self.identity(user_id, channel_id).await {
            Ok(email) => email,
            Err(response) => return response,
        };
        if choice == Choice::Reject {
            match self.approvals.pending.get(request_id).await {
                Ok(Some(approval))
                    if approval.state == ApprovalState::Pending
                        && approval.evaluation.decision.reject_reason_required =>
                {
                    let Some(trigger_id) = trigger_id else {
                        self.tell(channel_id, user_id, "This request needs a reason to reject it; Slack sent no way to ask for one.").await;
                        return StatusCode::OK.into_response();
                    };
                    return match self
                        .slack
                        .open_view(
                            trigger_id,
                            &reason_modal(request_id, &approval.request.summary),
                        )
                        .await
                    {
                        Ok(()) => StatusCode::OK.into_response(),
                        Err(error) => {
                            tracing::error!(request_id, error = %error, "cannot open the reason modal");
                            (StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response()
                        }
                    };
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(request_id, error = %error, "cannot read the pending approval");
                    return (StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response();
                }
            }
        }
        match self
            .approvals
            .cast_vote(request_id, &email, choice, None, "slack", self.clock.now())
            .await
        {
            Ok(result) => {
                if let Some(text) = explanation(&result) {
                    self.tell(channel_id, user_id, &text).await;
                }
                self.show(&result).await;
                StatusCode::OK.into_response()
            }
            Err(error) => {
                tracing::error!(request_id, error = %error, "vote failed");
                (StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response()
            }
        }
    }

    async fn reason(&self, user_id: &str, request_id: &str, reason: &str) -> Response {
        if reason.is_empty() {
            return Json(reason_error("Give a reason for the rejection.")).into_response();
        }
        let email = match self.identity(user_id, None).await {
            Ok(email) => email,
            Err(response) => return response,
        };
        match self
            .approvals
            .cast_vote(
                request_id,
                &email,
                Choice::Reject,
                Some(reason.to_string()),
                "slack",
                self.clock.now(),
            )
            .await
        {
            Ok(result) => {
                self.show(&result).await;
                match explanation(&result) {
                    Some(text) => Json(reason_error(&text)).into_response(),
                    None => StatusCode::OK.into_response(),
                }
            }
            Err(error) => {
                tracing::error!(request_id, error = %error, "rejection failed");
                (StatusCode::INTERNAL_SERVER_ERROR, FAULT).into_response()
            }
        }
    }

    /// Updates the approval's messages after a counted vote. The vote is already recorded, so a
    /// failure here is logged and never loses it.
    async fn show(&self, result: &VoteResult) {
        let VoteResult::Counted {
            approval,
            evaluation,
            ..
        } = result
        else {
            return;
        };
        let view = ApprovalView {
            approval,
            evaluation,
        };
        for message in &approval.messages {
            if let Err(error) = self.chat.update(message, view).await {
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not update an approval message");
            }
        }
    }

    /// An ephemeral message to the voter; best effort.
    async fn tell(&self, channel_id: Option<&str>, user_id: &str, text: &str) {
        let Some(channel) = channel_id else { return };
        if let Err(error) = self.slack.post_ephemeral(channel, user_id, text).await {
            tracing::warn!(error = %error, "could not tell the voter why");
        }
    }
}
