//! Slack requests as Slack sends them: form-encoded interaction payloads, signed with a known
//! signing secret at a given time, for tests of the callback's real verification path.

use chrono::{DateTime, Utc};
use regate_chat::slack::interaction::{click_payload, form_body, reason_payload};
use regate_chat::slack::signature::sign;
use secrecy::SecretString;

/// The signing secret the fixtures sign with (not a real one).
pub const SLACK_SIGNING_SECRET: &str = "testkit-signing-secret-0123456789";
/// The Slack app and workspace the fixtures' clicks come from (`click_payload`'s).
pub const SLACK_APP_ID: &str = "A0REGATE";
pub const SLACK_TEAM_ID: &str = "T0REGATE";

/// A signed request: its body and the two headers Slack sends with it.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub body: String,
    pub timestamp: String,
    pub signature: String,
}

impl SignedRequest {
    fn new(body: String, at: DateTime<Utc>) -> Self {
        let timestamp = at.timestamp().to_string();
        let signature = sign(
            &SecretString::from(SLACK_SIGNING_SECRET),
            &timestamp,
            body.as_bytes(),
        );
        Self {
            body,
            timestamp,
            signature,
        }
    }
}

/// A click on `action` (`approve`, `reject`, or anything else) by Slack user `user_id`.
pub fn signed_slack_click(
    user_id: &str,
    action: &str,
    request_id: &str,
    at: DateTime<Utc>,
) -> SignedRequest {
    let payload = click_payload(
        user_id,
        action,
        request_id,
        "C0PAYMENTS",
        "1700000000.000001",
    );
    SignedRequest::new(form_body(&payload), at)
}

/// The reason modal submitted by `user_id`.
pub fn signed_slack_reason(
    user_id: &str,
    request_id: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> SignedRequest {
    SignedRequest::new(form_body(&reason_payload(user_id, request_id, reason)), at)
}
