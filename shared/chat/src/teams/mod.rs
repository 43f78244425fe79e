//! Microsoft Teams: an Adaptive Card posted and updated by regate's bot through the Bot
//! Connector, clicks that arrive as `adaptiveCard/action` invokes with a Bot Framework JWT, and
//! voters identified through the connector's member lookup.

pub mod activity;
pub mod auth;
pub mod card;
pub mod connector;

use std::sync::Arc;

use regate_core::approvals::VoteResult;
use regate_core::decision::NotifyTarget;
use regate_core::ports::{ChatError, ChatPlatform};
use regate_core::{
    ApprovalView, Identified, MessageRef, OutcomeNotice, PendingApproval, Platform, Reminder, Voter,
};
use serde_json::{json, Value};

pub use activity::{Activity, ActivityError, CardClick, Envelope};
pub use auth::{AuthError, BotAuthenticator};
pub use connector::{BotCredentials, Connector, Member};

/// Where proactive messages go when no activity has told regate otherwise (Bot Connector
/// reference: the global endpoint).
pub const DEFAULT_SERVICE_URL: &str = "https://smba.trafficmanager.net/teams/";

/// The message activity that carries a card.
pub fn card_activity(card: Value) -> Value {
    json!({"type": "message", "attachments": [{"contentType": activity::CARD_CONTENT_TYPE, "content": card}]})
}

/// The answer to a card click, as Teams shows it to the clicker only: the card as it is now
/// after a counted vote, the card under a line saying why when the vote did not count or a
/// reason is needed, or just that line when there is no approval to show. Other people see
/// the change when regate updates the card.
pub fn click_answer(result: &VoteResult) -> Value {
    let card = match result {
        VoteResult::Counted {
            approval,
            evaluation,
            ..
        } => card::approval_card(ApprovalView {
            approval,
            evaluation,
        }),
        VoteResult::ReasonRequired { approval } => card::answer_card(
            "This request needs a reason to reject it: write it in the box, then click Reject.",
            as_stored(approval),
        ),
        VoteResult::Refused { approval, .. } | VoteResult::AlreadyDecided { approval } => {
            card::answer_card(
                &result.explanation().unwrap_or_default(),
                as_stored(approval),
            )
        }
        VoteResult::Unknown | VoteResult::Unidentified | VoteResult::PolicyUnavailable => {
            card::notice_card(&result.explanation().unwrap_or_default())
        }
    };
    activity::card_response(card)
}

/// Where a Teams card was posted: `(service URL, conversation, activity id)`; `None` for a
/// Slack message.
fn posted_card(message: &MessageRef) -> Option<(&str, &str, &str)> {
    match message {
        MessageRef::Teams {
            conversation,
            activity_id,
            service_url,
            ..
        } => Some((service_url, conversation, activity_id)),
        MessageRef::Slack { .. } => None,
    }
}

/// An approval as it stands, with the evaluation it was last stored with.
fn as_stored(approval: &PendingApproval) -> ApprovalView<'_> {
    ApprovalView {
        approval,
        evaluation: &approval.evaluation,
    }
}

/// Teams as a [`ChatPlatform`]: posts to `service_url` (an allow-listed connector host).
pub struct TeamsChat {
    pub connector: Arc<Connector>,
    pub service_url: String,
}

impl TeamsChat {
    /// The voter as a click describes them.
    pub fn voter(click: &CardClick) -> Voter {
        Voter {
            platform: Platform::Teams,
            user_id: click.user_id.clone(),
            conversation: Some(click.conversation.clone()),
            trigger: None,
            tenant: click.tenant_id.clone(),
            endpoint: Some(click.service_url.clone()),
            message: click.reply_to_id.clone(),
        }
    }
}

impl TeamsChat {
    /// The Teams account of `user` (an e-mail address or UPN), looked up as a member of the
    /// request's Teams conversations, those of `view` and those its cards were posted to (the
    /// connector takes a UPN as the member id); refused when none of them has the person.
    async fn find_member(&self, user: &str, view: ApprovalView<'_>) -> Result<Member, ChatError> {
        let asked = view
            .evaluation
            .decision
            .notify
            .iter()
            .filter_map(|t| match t {
                NotifyTarget::Teams { conversation } => Some(conversation),
                _ => None,
            });
        let posted = view.approval.messages.iter().filter_map(|m| match m {
            MessageRef::Teams {
                conversation,
                user: None,
                ..
            } => Some(conversation),
            _ => None,
        });
        let mut conversations: Vec<&String> = asked.chain(posted).collect();
        conversations.dedup();
        for conversation in conversations {
            if let Some(member) = self
                .connector
                .member(&self.service_url, conversation, user)
                .await?
            {
                return Ok(member);
            }
        }
        Err(ChatError::Refused(format!(
            "no member of the request's Teams conversations is {user}"
        )))
    }
}

impl TeamsChat {
    /// Posts `activity` in a new one-to-one conversation with `user`, found as a member of the
    /// conversations of `view` (Bot Connector `CreateConversation`).
    async fn direct_message(
        &self,
        user: &str,
        view: ApprovalView<'_>,
        activity: &Value,
    ) -> Result<MessageRef, ChatError> {
        let member = self.find_member(user, view).await?;
        let service_url = self.service_url.clone();
        let (conversation, activity_id) = self
            .connector
            .create_conversation(&service_url, &member.id, activity)
            .await?;
        Ok(MessageRef::Teams {
            conversation,
            activity_id,
            service_url,
            user: Some(user.to_string()),
        })
    }
}

impl ChatPlatform for TeamsChat {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let activity = card_activity(card::approval_card(view));
        let service_url = self.service_url.clone();
        match target {
            NotifyTarget::Teams { conversation } => {
                let activity_id = self
                    .connector
                    .send(&service_url, conversation, &activity)
                    .await?;
                Ok(Some(MessageRef::Teams {
                    conversation: conversation.clone(),
                    activity_id,
                    service_url,
                    user: None,
                }))
            }
            NotifyTarget::TeamsUser { user } => {
                self.direct_message(user, view, &activity).await.map(Some)
            }
            NotifyTarget::Slack { .. } | NotifyTarget::SlackUser { .. } => Ok(None),
        }
    }

    /// The connector cannot list a bot's earlier posts, so an attempt that posted but did not
    /// live to record it cannot be found: the retry posts again (Teams shows two cards; the
    /// older one is never updated).
    async fn find_posted(
        &self,
        _target: &NotifyTarget,
        _request_id: &str,
    ) -> Result<Option<MessageRef>, ChatError> {
        Ok(None)
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        let Some((service_url, conversation, activity_id)) = posted_card(message) else {
            return Ok(());
        };
        let activity = card_activity(card::approval_card(view));
        self.connector
            .update(service_url, conversation, activity_id, &activity)
            .await
    }

    /// A reply to the card's activity (Bot Connector `ReplyToActivity`), so it shows in the
    /// card's thread.
    async fn remind(&self, message: &MessageRef, reminder: &Reminder<'_>) -> Result<(), ChatError> {
        let Some((service_url, conversation, activity_id)) = posted_card(message) else {
            return Ok(());
        };
        let activity = card_activity(card::reminder_card(reminder));
        self.connector
            .reply(service_url, conversation, activity_id, &activity)
            .await
    }

    /// A new one-to-one conversation with the requester (Bot Connector `CreateConversation`).
    async fn tell_outcome(
        &self,
        to: &NotifyTarget,
        notice: OutcomeNotice<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let NotifyTarget::TeamsUser { user } = to else {
            return Ok(None);
        };
        let activity = card_activity(card::outcome_card(notice));
        self.direct_message(user, notice.view(), &activity)
            .await
            .map(Some)
    }

    /// Anonymous and guest users and people from another tenant never vote. A person is
    /// known by their e-mail address and their UPN (which may differ); the policy's approvers
    /// are matched against both.
    async fn identify(&self, voter: &Voter) -> Result<Identified, ChatError> {
        let ineligible = |identity: Option<String>, reason: &str| Identified::Ineligible {
            identity,
            reason: reason.to_string(),
        };
        if voter.tenant.as_deref() != Some(self.connector.tenant_id()) {
            return Ok(ineligible(
                None,
                "accounts from another organisation cannot vote",
            ));
        }
        let (Some(conversation), Some(service_url)) = (&voter.conversation, &voter.endpoint) else {
            return Ok(Identified::Unknown);
        };
        let Some(member) = self
            .connector
            .member(service_url, conversation, &voter.user_id)
            .await?
        else {
            return Ok(Identified::Unknown);
        };
        let addresses: Vec<String> = [&member.email, &member.user_principal_name]
            .into_iter()
            .flatten()
            .filter(|a| a.contains('@'))
            .cloned()
            .collect();
        let first = addresses.first().cloned();
        let role = member.user_role.as_deref().unwrap_or("user");
        Ok(match (role, first) {
            ("anonymous", _) => ineligible(None, "anonymous users cannot vote"),
            ("guest", first) => ineligible(first, "guest accounts cannot vote"),
            _ if member
                .tenant_id
                .as_deref()
                .is_some_and(|t| t != self.connector.tenant_id()) =>
            {
                ineligible(None, "accounts from another organisation cannot vote")
            }
            (_, Some(_)) => Identified::Person(addresses),
            (_, None) => Identified::Unknown,
        })
    }

    /// The invoke's answer tells the clicker (see the callback); nothing to send here.
    async fn tell(&self, _voter: &Voter, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }

    /// The card has the reason input; the invoke's answer asks for it.
    async fn ask_reason(
        &self,
        _voter: &Voter,
        _approval: &PendingApproval,
    ) -> Result<(), ChatError> {
        Ok(())
    }
}
