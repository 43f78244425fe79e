//! Test support, written once: in-memory fakes of the `regate-core` ports (with the same
//! contracts as the real adapters: conditional writes, one vote per person, append-only chains,
//! and faults on demand), a fixed clock, request and ballot builders, an in-memory `Approvals`,
//! the default policy, and Slack requests signed as Slack signs them. One file a fake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod chat;
mod checkpoints;
mod clock;
mod fault;
mod fixtures;
mod identity;
mod log;
mod metrics;
mod pending;
mod slack;
mod teams;
mod tokens;

pub use approvals::{first_evaluation, open, Fakes, MemoryApprovals, MemoryPorts};
pub use chat::{RecordingChat, Reminded};
pub use checkpoints::MemoryCheckpoints;
pub use clock::{FixedClock, CALM_DAY, FROZEN_DAY};
pub use fault::Fault;
pub use fixtures::{
    approval_about, ballot, counted_vote, default_policy, execution_of, open_backlog,
    pending_approval, rejecting, request, slack_voter, RequestBuilder,
};
pub use identity::{ran_by, TestIssuer, TEST_ISSUER};
pub use log::MemoryLog;
pub use metrics::RecordingMetrics;
pub use pending::{MemoryPending, Reads};
pub use slack::{
    signed_slack_click, signed_slack_reason, SignedRequest, SLACK_APP_ID, SLACK_SIGNING_SECRET,
    SLACK_TEAM_ID,
};
pub use teams::{bot_claims, github_claims, JwtKey, TeamsKey};
pub use tokens::{RecordingTokens, Resumed};
