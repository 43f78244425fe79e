//! Slack: Block Kit approval messages, request signing, interaction payloads and the Web API.

pub mod api;
pub mod blocks;
pub mod interaction;
pub mod signature;

pub use api::{SlackApi, SlackChat, SlackFailure, SlackSecrets};
pub use interaction::{Interaction, InteractionError};
pub use signature::{verify_at, SignatureError};

use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// Why an inbound Slack request is not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inbound {
    /// Not signed by Slack with our secret, or too old or new: HTTP 401.
    #[error(transparent)]
    Unauthorized(#[from] SignatureError),
    /// Signed, but not an interaction regate understands: HTTP 400.
    #[error(transparent)]
    Malformed(#[from] InteractionError),
}

/// Verifies an interaction request's signature over its raw body at `now`, then parses it.
pub fn receive(
    signing_secret: &SecretString,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Interaction, Inbound> {
    verify_at(signing_secret, timestamp, signature, body, now)?;
    Ok(interaction::parse(body)?)
}
