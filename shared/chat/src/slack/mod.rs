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

/// The Slack app regate runs as and the workspace it serves: a request signed by the app but
/// sent to another app id or clicked in another workspace does not vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackWorkspace {
    pub app_id: String,
    pub team_id: String,
    /// The Enterprise Grid organisation, when the app is installed org-wide.
    pub enterprise_id: Option<String>,
}

impl SlackWorkspace {
    /// Why a click from `origin` is not ours, if it is not.
    fn refuses(&self, origin: &interaction::Origin) -> Option<String> {
        if origin.app_id.as_deref() != Some(self.app_id.as_str()) {
            return Some(format!(
                "sent to app {:?}, not {}",
                origin.app_id, self.app_id
            ));
        }
        let our_org = self.enterprise_id.is_some() && origin.enterprise_id == self.enterprise_id;
        if origin.team_id.as_deref() != Some(self.team_id.as_str()) && !our_org {
            return Some(format!(
                "clicked in workspace {:?}, not {}",
                origin.team_id, self.team_id
            ));
        }
        None
    }
}

/// Why an inbound Slack request is not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inbound {
    /// Not signed by Slack with our secret, or too old or new: HTTP 401.
    #[error(transparent)]
    Unauthorized(#[from] SignatureError),
    /// Signed, but not an interaction regate understands: HTTP 400.
    #[error(transparent)]
    Malformed(#[from] InteractionError),
    /// Signed and well formed, but for another app or workspace: HTTP 403.
    #[error("this interaction is not for this regate app: {0}")]
    Foreign(String),
}

/// Verifies an interaction request's signature over its raw body at `now`, parses it, and
/// checks that it comes from our app and workspace.
pub fn receive(
    signing_secret: &SecretString,
    workspace: &SlackWorkspace,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Interaction, Inbound> {
    verify_at(signing_secret, timestamp, signature, body, now)?;
    let (interaction, origin) = interaction::parse_with_origin(body)?;
    match workspace.refuses(&origin) {
        Some(reason) => Err(Inbound::Foreign(reason)),
        None => Ok(interaction),
    }
}
