//! Chat platforms for regate: approval messages, verification of inbound clicks, and API
//! clients for Slack and Microsoft Teams, and [`Chats`], which serves both through one port.

pub mod jwks;
mod retry;
pub mod slack;
pub mod teams;
pub mod text;
pub mod view;

use regate_core::decision::NotifyTarget;
use regate_core::ports::{ChatError, ChatPlatform};
use regate_core::{
    ApprovalView, Identified, MessageRef, OutcomeNotice, PendingApproval, Platform, Reminder, Voter,
};

pub use slack::SlackChat;
pub use teams::TeamsChat;

/// Every configured chat platform behind the one port: each call goes to the platform of its
/// target, message or voter; a platform that is not configured posts nothing and updates
/// nothing (the notifier reports such targets as skipped).
#[derive(Default)]
pub struct Chats {
    pub slack: Option<SlackChat>,
    pub teams: Option<TeamsChat>,
}

fn not_configured(platform: Platform) -> ChatError {
    ChatError::Refused(format!("{} is not configured", platform.as_str()))
}

impl ChatPlatform for Chats {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        match (target.is_slack(), &self.slack, &self.teams) {
            (true, Some(slack), _) => slack.post(target, view).await,
            (false, _, Some(teams)) => teams.post(target, view).await,
            _ => Ok(None),
        }
    }

    async fn find_posted(
        &self,
        target: &NotifyTarget,
        request_id: &str,
    ) -> Result<Option<MessageRef>, ChatError> {
        match (target.is_slack(), &self.slack, &self.teams) {
            (true, Some(slack), _) => slack.find_posted(target, request_id).await,
            (false, _, Some(teams)) => teams.find_posted(target, request_id).await,
            _ => Ok(None),
        }
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        match (message.platform(), &self.slack, &self.teams) {
            (Platform::Slack, Some(slack), _) => slack.update(message, view).await,
            (Platform::Teams, _, Some(teams)) => teams.update(message, view).await,
            (platform, ..) => Err(not_configured(platform)),
        }
    }

    async fn remind(&self, message: &MessageRef, reminder: &Reminder<'_>) -> Result<(), ChatError> {
        match (message.platform(), &self.slack, &self.teams) {
            (Platform::Slack, Some(slack), _) => slack.remind(message, reminder).await,
            (Platform::Teams, _, Some(teams)) => teams.remind(message, reminder).await,
            (platform, ..) => Err(not_configured(platform)),
        }
    }

    async fn tell_outcome(
        &self,
        to: &NotifyTarget,
        notice: OutcomeNotice<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        match (to.is_slack(), &self.slack, &self.teams) {
            (true, Some(slack), _) => slack.tell_outcome(to, notice).await,
            (false, _, Some(teams)) => teams.tell_outcome(to, notice).await,
            _ => Ok(None),
        }
    }

    async fn identify(&self, voter: &Voter) -> Result<Identified, ChatError> {
        match (voter.platform, &self.slack, &self.teams) {
            (Platform::Slack, Some(slack), _) => slack.identify(voter).await,
            (Platform::Teams, _, Some(teams)) => teams.identify(voter).await,
            (platform, ..) => Err(not_configured(platform)),
        }
    }

    async fn tell(&self, voter: &Voter, text: &str) -> Result<(), ChatError> {
        match (voter.platform, &self.slack, &self.teams) {
            (Platform::Slack, Some(slack), _) => slack.tell(voter, text).await,
            (Platform::Teams, _, Some(teams)) => teams.tell(voter, text).await,
            (platform, ..) => Err(not_configured(platform)),
        }
    }

    async fn ask_reason(&self, voter: &Voter, approval: &PendingApproval) -> Result<(), ChatError> {
        match (voter.platform, &self.slack, &self.teams) {
            (Platform::Slack, Some(slack), _) => slack.ask_reason(voter, approval).await,
            (Platform::Teams, _, Some(teams)) => teams.ask_reason(voter, approval).await,
            (platform, ..) => Err(not_configured(platform)),
        }
    }
}
