//! A chat platform that records what was posted, updated, reminded and told, with faults on
//! demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use regate_core::decision::NotifyTarget;
use regate_core::pending::{
    ApprovalState, ApprovalView, Identified, MessageRef, OutcomeNotice, PendingApproval, Reminder,
    Voter,
};
use regate_core::ports::{ChatError, ChatPlatform};

use crate::Fault;

/// A reminder as [`RecordingChat`] records it: the message it was posted under, and who it
/// named.
pub type Reminded = (MessageRef, Vec<String>);

/// A chat platform that records every call. It serves Slack targets; `people` maps platform
/// user ids to identities; `fault` makes posts and updates fail.
#[derive(Clone, Default)]
pub struct RecordingChat {
    pub posts: Arc<Mutex<Vec<(NotifyTarget, ApprovalState)>>>,
    /// Every message posted, by target key and request id, as `find_posted` finds them.
    pub posted: Arc<Mutex<BTreeMap<(String, String), MessageRef>>>,
    pub updates: Arc<Mutex<Vec<(MessageRef, ApprovalState)>>>,
    pub told: Arc<Mutex<Vec<(String, String)>>>,
    pub reminders: Arc<Mutex<Vec<Reminded>>>,
    /// Each outcome told to a requester: `(person target, request id, state)`.
    pub outcomes: Arc<Mutex<Vec<(NotifyTarget, String, ApprovalState)>>>,
    /// E-mail addresses no account has: a direct message to one is refused.
    pub strangers: Arc<Mutex<Vec<String>>>,
    pub asked_reason: Arc<Mutex<Vec<(String, String)>>>,
    pub people: Arc<Mutex<BTreeMap<String, Identified>>>,
    pub fault: Fault<ChatError>,
}

impl RecordingChat {
    /// Knows `user_id` as `identity`.
    pub fn knows(&self, user_id: &str, identity: &str) {
        let person = Identified::Person(vec![identity.into()]);
        self.people.lock().unwrap().insert(user_id.into(), person);
    }

    /// Knows `user_id` as an account that may not vote, for `reason`.
    pub fn refuses(&self, user_id: &str, identity: &str, reason: &str) {
        let account = Identified::Ineligible {
            identity: Some(identity.into()),
            reason: reason.into(),
        };
        self.people.lock().unwrap().insert(user_id.into(), account);
    }

    /// What each voter was told privately: `(user id, text)`.
    pub fn told(&self) -> Vec<(String, String)> {
        self.told.lock().unwrap().clone()
    }
}

impl ChatPlatform for RecordingChat {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        self.fault.check()?;
        let (channel, user) = match target {
            NotifyTarget::Slack { channel } => (channel.clone(), None),
            NotifyTarget::SlackUser { user } if self.strangers.lock().unwrap().contains(user) => {
                return Err(ChatError::Refused(format!(
                    "no Slack user has the address {user}"
                )))
            }
            NotifyTarget::SlackUser { user } => (format!("D-{user}"), Some(user.clone())),
            NotifyTarget::Teams { .. } | NotifyTarget::TeamsUser { .. } => return Ok(None),
        };
        let mut posts = self.posts.lock().unwrap();
        posts.push((target.clone(), view.approval.state));
        let message = MessageRef::Slack {
            channel,
            ts: format!("1700000000.{:06}", posts.len()),
            user,
        };
        let key = (target.key(), view.approval.request_id.clone());
        self.posted.lock().unwrap().insert(key, message.clone());
        Ok(Some(message))
    }

    async fn find_posted(
        &self,
        target: &NotifyTarget,
        request_id: &str,
    ) -> Result<Option<MessageRef>, ChatError> {
        self.fault.check()?;
        let key = (target.key(), request_id.to_string());
        Ok(self.posted.lock().unwrap().get(&key).cloned())
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        self.fault.check()?;
        self.updates
            .lock()
            .unwrap()
            .push((message.clone(), view.approval.state));
        Ok(())
    }

    async fn remind(&self, message: &MessageRef, reminder: &Reminder<'_>) -> Result<(), ChatError> {
        self.fault.check()?;
        self.reminders
            .lock()
            .unwrap()
            .push((message.clone(), reminder.waiting_on.clone()));
        Ok(())
    }

    async fn tell_outcome(
        &self,
        to: &NotifyTarget,
        notice: OutcomeNotice<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        self.fault.check()?;
        let NotifyTarget::SlackUser { user } = to else {
            return Ok(None);
        };
        if self.strangers.lock().unwrap().contains(user) {
            return Err(ChatError::Refused(format!(
                "no Slack user has the address {user}"
            )));
        }
        let approval = notice.approval;
        let mut outcomes = self.outcomes.lock().unwrap();
        outcomes.push((to.clone(), approval.request_id.clone(), approval.state));
        Ok(Some(MessageRef::Slack {
            channel: format!("D-{user}"),
            ts: format!("1800000000.{:06}", outcomes.len()),
            user: Some(user.clone()),
        }))
    }

    async fn identify(&self, voter: &Voter) -> Result<Identified, ChatError> {
        let people = self.people.lock().unwrap();
        Ok(people
            .get(&voter.user_id)
            .cloned()
            .unwrap_or(Identified::Unknown))
    }

    async fn tell(&self, voter: &Voter, text: &str) -> Result<(), ChatError> {
        self.told
            .lock()
            .unwrap()
            .push((voter.user_id.clone(), text.into()));
        Ok(())
    }

    async fn ask_reason(&self, voter: &Voter, approval: &PendingApproval) -> Result<(), ChatError> {
        self.asked_reason
            .lock()
            .unwrap()
            .push((voter.user_id.clone(), approval.request_id.clone()));
        Ok(())
    }
}
