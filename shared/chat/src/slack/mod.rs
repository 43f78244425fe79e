//! Slack: Block Kit approval messages, request signing, interaction payloads and the Web API.

pub mod api;
pub mod blocks;
pub mod interaction;
pub mod signature;

pub use api::{SlackApi, SlackChat, SlackFailure, SlackSecrets};
pub use interaction::{Interaction, InteractionError};
pub use signature::{verify_at, SignatureError};
