//! The Slack Web API client and the Slack [`ChatPlatform`]. Every call has a total time budget:
//! a 429 waits as long as `Retry-After` asks if the budget allows, 5xx and network errors are
//! retried with backoff, and `ok: false` answers become typed errors. Users' e-mail addresses
//! and ids are cached in memory with a TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regate_core::decision::NotifyTarget;
use regate_core::ports::{ChatError, ChatPlatform};
use regate_core::{
    ApprovalView, Identified, MessageRef, OutcomeNotice, PendingApproval, Reminder, Voter,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::blocks::{approval_message, outcome_message, reason_modal, reminder_message};
use super::SlackWorkspace;
use crate::retry::{retry_after, Retries};
use crate::view::MAX_NAMED_APPROVERS;

pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";
const USER_CACHE_TTL: Duration = Duration::from_secs(600);
/// All the user lookups for one message's mentions share this much time.
const MENTION_BUDGET: Duration = Duration::from_millis(800);
const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Slack app's secrets, as stored in Secrets Manager: `{"signing_secret", "bot_token"}`.
pub struct SlackSecrets {
    pub signing_secret: SecretString,
    pub bot_token: SecretString,
}

impl std::fmt::Debug for SlackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackSecrets { <redacted> }")
    }
}

impl SlackSecrets {
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|_| "the Slack secret is not a JSON object".to_string())?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_string()))
                .ok_or_else(|| format!("the Slack secret has no {name}"))
        };
        Ok(Self {
            signing_secret: field("signing_secret")?,
            bot_token: field("bot_token")?,
        })
    }
}

/// Slack's documented `ok: false` error codes that people need told apart, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackFailure {
    ChannelNotFound,
    NotInChannel,
    InvalidAuth,
    TokenRevoked,
    MissingScope,
    RateLimited,
    UserNotFound,
    ExpiredTriggerId,
    MessageNotFound,
    Other(String),
}

impl SlackFailure {
    pub fn from_code(code: &str) -> Self {
        match code {
            "channel_not_found" => Self::ChannelNotFound,
            "not_in_channel" => Self::NotInChannel,
            "invalid_auth" | "not_authed" | "account_inactive" => Self::InvalidAuth,
            "token_revoked" | "token_expired" => Self::TokenRevoked,
            "missing_scope" => Self::MissingScope,
            "ratelimited" | "rate_limited" => Self::RateLimited,
            "user_not_found" | "users_not_found" => Self::UserNotFound,
            "expired_trigger_id" | "invalid_trigger_id" => Self::ExpiredTriggerId,
            "message_not_found" => Self::MessageNotFound,
            other => Self::Other(other.to_string()),
        }
    }

    /// What an operator should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::ChannelNotFound => "the channel id in the policy's notify list does not exist or the app cannot see it",
            Self::NotInChannel => "invite the regate app to the channel",
            Self::InvalidAuth | Self::TokenRevoked => "the bot token in the Slack secret is wrong or revoked",
            Self::MissingScope => "add the missing scope to the Slack app (see infra/slack/manifest.yml) and reinstall it",
            Self::RateLimited => "Slack is rate limiting this app",
            Self::UserNotFound => "Slack does not know this user",
            Self::ExpiredTriggerId => "the click is older than Slack's 3 seconds for opening a modal",
            Self::MessageNotFound => "the message was deleted",
            Self::Other(_) => "see Slack's documentation of this error",
        }
    }

    fn into_chat_error(self, method: &str, code: &str) -> ChatError {
        match self {
            Self::RateLimited => ChatError::RateLimited(format!("{method}: {code}")),
            other => ChatError::Refused(format!("{method}: {code} ({})", other.hint())),
        }
    }
}

enum Payload {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

/// Users by lookup key (`users.info`'s user id, `users.lookupByEmail`'s address): the answer's
/// `user` object, or `None` when Slack knows no such user.
type Cache = Mutex<HashMap<String, (Option<Value>, Instant)>>;

/// What regate needs to know of a Slack account before it counts a vote from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlackUser {
    pub email: Option<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub deleted: bool,
    pub is_bot: bool,
    /// A multi-channel (`is_restricted`) or single-channel (`is_ultra_restricted`) guest.
    pub is_guest: bool,
}

impl SlackUser {
    fn from_json(user: &Value) -> Self {
        let flag = |name: &str| user.get(name).and_then(Value::as_bool).unwrap_or(false);
        Self {
            email: user
                .pointer("/profile/email")
                .and_then(Value::as_str)
                .map(regate_core::rules::normalize),
            team_id: user
                .get("team_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            enterprise_id: user
                .pointer("/enterprise_user/enterprise_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            deleted: flag("deleted"),
            is_bot: flag("is_bot") || user.get("id").and_then(Value::as_str) == Some("USLACKBOT"),
            is_guest: flag("is_restricted") || flag("is_ultra_restricted"),
        }
    }
}

pub struct SlackApi {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
    budget: Duration,
    users_by_id: Cache,
    users_by_email: Cache,
}

impl SlackApi {
    /// `budget` bounds each call, retries and waits included.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        token: SecretString,
        budget: Duration,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            budget,
            users_by_id: Mutex::default(),
            users_by_email: Mutex::default(),
        }
    }

    #[tracing::instrument(level = "debug", name = "round_trip", skip_all, fields(rpc.service = "Slack", rpc.method = method))]
    async fn call(&self, method: &str, payload: Payload) -> Result<Value, ChatError> {
        let mut retries = Retries::start(self.budget);
        loop {
            let builder = self
                .http
                .post(format!("{}/{method}", self.base_url))
                .bearer_auth(self.token.expose_secret())
                .timeout(retries.attempt_timeout(MAX_ATTEMPT_TIMEOUT));
            let builder = match &payload {
                Payload::Json(body) => builder.json(body),
                Payload::Form(fields) => builder
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(
                        form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
                            .finish(),
                    ),
            };
            let (retry_after, error) = match builder.send().await {
                Err(error) => (
                    None,
                    ChatError::Unavailable(format!("{method}: {}", without_url(error))),
                ),
                Ok(response) if response.status().as_u16() == 429 => {
                    // Slack always says how long; one second when it does not.
                    let wait = retry_after(response.headers()).unwrap_or(Duration::from_secs(1));
                    let seconds = wait.as_secs();
                    (
                        Some(wait),
                        ChatError::RateLimited(format!("{method}: Retry-After {seconds} s")),
                    )
                }
                Ok(response) if response.status().is_server_error() => (
                    None,
                    ChatError::Unavailable(format!(
                        "{method}: HTTP {}",
                        response.status().as_u16()
                    )),
                ),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.map_err(|_| {
                        ChatError::Unavailable(format!(
                            "{method}: HTTP {status} with a body that is not JSON"
                        ))
                    })?;
                    match body.get("ok").and_then(Value::as_bool) {
                        Some(true) => return Ok(body),
                        _ => {
                            let code = body
                                .get("error")
                                .and_then(Value::as_str)
                                .unwrap_or("unknown_error")
                                .to_string();
                            match SlackFailure::from_code(&code) {
                                SlackFailure::RateLimited => (
                                    Some(Duration::from_secs(1)),
                                    ChatError::RateLimited(format!("{method}: {code}")),
                                ),
                                failure => return Err(failure.into_chat_error(method, &code)),
                            }
                        }
                    }
                }
            };
            retries.wait(retry_after, error, method).await?;
        }
    }

    /// Posts a message; returns the channel id and the message `ts`.
    /// Posts a message with `metadata` (Slack's message metadata: `event_type` and
    /// `event_payload`); returns the channel id and the message `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
        metadata: &Value,
    ) -> Result<(String, String), ChatError> {
        let body = self.call("chat.postMessage", Payload::Json(json!({"channel": channel, "text": text, "blocks": blocks, "unfurl_links": false, "metadata": metadata}))).await?;
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
        match (field("channel"), field("ts")) {
            (Some(channel), Some(ts)) => Ok((channel, ts)),
            _ => Err(ChatError::Unavailable(
                "chat.postMessage: the answer has no channel or ts".into(),
            )),
        }
    }

    /// The direct message channel with user `user_id` (`conversations.open`, scope `im:write`;
    /// it answers the same channel each time).
    pub async fn open_direct_message(&self, user_id: &str) -> Result<String, ChatError> {
        let body = self
            .call(
                "conversations.open",
                Payload::Json(json!({"users": user_id})),
            )
            .await?;
        body.pointer("/channel/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ChatError::Unavailable("conversations.open: the answer has no channel id".into())
            })
    }

    /// A plain-text reply in the thread of message `ts`.
    pub async fn reply(&self, channel: &str, ts: &str, text: &str) -> Result<(), ChatError> {
        let body =
            json!({"channel": channel, "thread_ts": ts, "text": text, "unfurl_links": false});
        self.call("chat.postMessage", Payload::Json(body))
            .await
            .map(|_| ())
    }

    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), ChatError> {
        self.call(
            "chat.update",
            Payload::Json(json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks})),
        )
        .await
        .map(|_| ())
    }

    /// The `ts` of the newest of the channel's recent messages whose metadata is of
    /// `event_type` with `key` = `value` (`conversations.history`, scopes `channels:history`
    /// and `groups:history`).
    pub async fn find_message(
        &self,
        channel: &str,
        event_type: &str,
        (key, value): (&str, &str),
    ) -> Result<Option<String>, ChatError> {
        let body = self
            .call(
                "conversations.history",
                Payload::Form(vec![
                    ("channel", channel.to_string()),
                    ("limit", "100".into()),
                    ("include_all_metadata", "true".into()),
                ]),
            )
            .await?;
        let messages = body.get("messages").and_then(Value::as_array);
        Ok(messages.into_iter().flatten().find_map(|message| {
            let metadata = message.get("metadata")?;
            let ours = metadata.get("event_type").and_then(Value::as_str) == Some(event_type)
                && metadata
                    .pointer(&format!("/event_payload/{key}"))
                    .and_then(Value::as_str)
                    == Some(value);
            ours.then(|| {
                message
                    .get("ts")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .flatten()
        }))
    }

    /// A message only `user` sees in `channel`.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ChatError> {
        self.call(
            "chat.postEphemeral",
            Payload::Json(json!({"channel": channel, "user": user, "text": text})),
        )
        .await
        .map(|_| ())
    }

    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), ChatError> {
        self.call(
            "views.open",
            Payload::Json(json!({"trigger_id": trigger_id, "view": view})),
        )
        .await
        .map(|_| ())
    }

    /// A Slack user's account (`users.info`, scopes `users:read` and `users:read.email`).
    pub async fn user(&self, user_id: &str) -> Result<Option<SlackUser>, ChatError> {
        let key = ("user", user_id.to_string());
        let user = self
            .cached_lookup(&self.users_by_id, "users.info", key)
            .await?;
        Ok(user.as_ref().map(SlackUser::from_json))
    }

    /// The Slack user id of an e-mail address (`users.lookupByEmail`).
    pub async fn user_id(&self, email: &str) -> Result<Option<String>, ChatError> {
        let key = ("email", regate_core::rules::normalize(email));
        let user = self
            .cached_lookup(&self.users_by_email, "users.lookupByEmail", key)
            .await?;
        Ok(user.and_then(|u| u.get("id").and_then(Value::as_str).map(str::to_string)))
    }

    /// A users.* answer's `user`, cached with a TTL; "not found" is an answer too.
    async fn cached_lookup(
        &self,
        cache: &Cache,
        method: &str,
        (name, key): (&'static str, String),
    ) -> Result<Option<Value>, ChatError> {
        if let Some(hit) = cached(cache, &key) {
            return Ok(hit);
        }
        let found = match self
            .call(method, Payload::Form(vec![(name, key.clone())]))
            .await
        {
            Ok(body) => body.get("user").cloned(),
            Err(ChatError::Refused(text))
                if text.contains("user_not_found") || text.contains("users_not_found") =>
            {
                None
            }
            Err(other) => return Err(other),
        };
        remember(cache, &key, found.clone());
        Ok(found)
    }
}

/// A network error without its URL, which only makes the message longer.
fn without_url(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    error.without_url().to_string()
}

fn cached(cache: &Cache, key: &str) -> Option<Option<Value>> {
    let cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .get(key)
        .filter(|(_, at)| at.elapsed() < USER_CACHE_TTL)
        .map(|(value, _)| value.clone())
}

fn remember(cache: &Cache, key: &str, value: Option<Value>) {
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.insert(key.to_string(), (value, Instant::now()));
}

/// The metadata `event_type` of approval messages, by which a retry finds one it posted.
pub const APPROVAL_EVENT_TYPE: &str = "regate_approval";
/// The metadata event type of the direct message that tells a requester the outcome.
pub const OUTCOME_EVENT_TYPE: &str = "regate_outcome";

/// Slack as regate's chat platform, for one app in one workspace.
pub struct SlackChat {
    pub api: Arc<SlackApi>,
    pub workspace: SlackWorkspace,
}

impl SlackChat {
    /// Slack ids of the eligible approvers, for mentions; people Slack does not know are left
    /// as e-mail addresses.
    /// Only the approvers the message names are looked up, and only within a time budget:
    /// a large group or a slow Slack must not hold up a post or the answer to a click.
    async fn mentions(&self, view: ApprovalView<'_>) -> BTreeMap<String, String> {
        let people = view
            .evaluation
            .decision
            .approvers
            .iter()
            .take(MAX_NAMED_APPROVERS)
            .chain(view.approval.votes.iter().map(|v| &v.voter));
        self.user_ids(&view.approval.request_id, people).await
    }

    /// Slack ids of `people` (e-mail addresses) that Slack knows, looked up within a time budget.
    async fn user_ids<'a>(
        &self,
        request_id: &str,
        people: impl Iterator<Item = &'a String>,
    ) -> BTreeMap<String, String> {
        let mut mentions = BTreeMap::new();
        let lookups = async {
            for email in people {
                if let Ok(Some(id)) = self.api.user_id(email).await {
                    mentions.insert(regate_core::rules::normalize(email), id);
                }
            }
        };
        if tokio::time::timeout(MENTION_BUDGET, lookups).await.is_err() {
            tracing::warn!(
                request_id,
                "user lookups for mentions ran out of time; the rest are shown as addresses"
            );
        }
        mentions
    }
}

impl SlackChat {
    /// Where a Slack target's message goes, and the person it is for: a channel as it is, or a
    /// person's direct message (`users.lookupByEmail`, then `conversations.open`). A person
    /// Slack does not know by that address is refused. `None` for a Teams target.
    async fn place(
        &self,
        target: &NotifyTarget,
    ) -> Result<Option<(String, Option<String>)>, ChatError> {
        match target {
            NotifyTarget::Slack { channel } => Ok(Some((channel.clone(), None))),
            NotifyTarget::SlackUser { user } => {
                let id = self.api.user_id(user).await?.ok_or_else(|| {
                    ChatError::Refused(format!(
                        "users.lookupByEmail: no Slack user has the address {user}"
                    ))
                })?;
                let channel = self.api.open_direct_message(&id).await?;
                Ok(Some((channel, Some(user.clone()))))
            }
            NotifyTarget::Teams { .. } | NotifyTarget::TeamsUser { .. } => Ok(None),
        }
    }
}

impl SlackChat {
    /// Posts `(text, blocks)` to `target` (a channel, or a person's direct message), with
    /// metadata of `event_type` naming the approval's request; `None` for a Teams target.
    async fn post_to(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
        event_type: &str,
        (text, blocks): (&str, &Value),
    ) -> Result<Option<MessageRef>, ChatError> {
        let Some((channel, user)) = self.place(target).await? else {
            return Ok(None);
        };
        let metadata = json!({"event_type": event_type,
            "event_payload": {"request_id": view.approval.request_id}});
        let (channel, ts) = self
            .api
            .post_message(&channel, text, blocks, &metadata)
            .await?;
        Ok(Some(MessageRef::Slack { channel, ts, user }))
    }
}

impl ChatPlatform for SlackChat {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let (text, blocks) = approval_message(view, &self.mentions(view).await);
        self.post_to(target, view, APPROVAL_EVENT_TYPE, (&text, &blocks))
            .await
    }

    /// A person Slack does not know has no message to find.
    async fn find_posted(
        &self,
        target: &NotifyTarget,
        request_id: &str,
    ) -> Result<Option<MessageRef>, ChatError> {
        let (channel, user) = match self.place(target).await {
            Ok(Some(place)) => place,
            Ok(None) | Err(ChatError::Refused(_)) => return Ok(None),
            Err(other) => return Err(other),
        };
        let found = self
            .api
            .find_message(&channel, APPROVAL_EVENT_TYPE, ("request_id", request_id))
            .await?;
        Ok(found.map(|ts| MessageRef::Slack { channel, ts, user }))
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        let MessageRef::Slack { channel, ts, .. } = message else {
            return Ok(());
        };
        let (text, blocks) = approval_message(view, &self.mentions(view).await);
        self.api.update(channel, ts, &text, &blocks).await
    }

    /// A reply in the message's thread (`chat.postMessage` with `thread_ts`).
    async fn remind(&self, message: &MessageRef, reminder: &Reminder<'_>) -> Result<(), ChatError> {
        let MessageRef::Slack { channel, ts, .. } = message else {
            return Ok(());
        };
        let named = reminder.waiting_on.iter().take(MAX_NAMED_APPROVERS);
        let mentions = self.user_ids(&reminder.approval.request_id, named).await;
        let text = reminder_message(reminder, &mentions);
        self.api.reply(channel, ts, &text).await
    }

    /// A direct message (`users.lookupByEmail`, `conversations.open`, `chat.postMessage`).
    async fn tell_outcome(
        &self,
        to: &NotifyTarget,
        notice: OutcomeNotice<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let mentions = self.mentions(notice.view()).await;
        let (text, blocks) = outcome_message(notice, &mentions);
        self.post_to(to, notice.view(), OUTCOME_EVENT_TYPE, (&text, &blocks))
            .await
    }

    /// Deactivated accounts, bots, guests and people from other organisations (Slack Connect)
    /// never vote, whatever their e-mail address says.
    async fn identify(&self, voter: &Voter) -> Result<Identified, ChatError> {
        let Some(user) = self.api.user(&voter.user_id).await? else {
            return Ok(Identified::Unknown);
        };
        let ineligible = |reason: &str| Identified::Ineligible {
            identity: user.email.clone(),
            reason: reason.to_string(),
        };
        let in_org = self.workspace.enterprise_id.is_some()
            && user.enterprise_id == self.workspace.enterprise_id;
        let ours = in_org || user.team_id.as_deref() == Some(self.workspace.team_id.as_str());
        Ok(if user.deleted {
            ineligible("this Slack account is deactivated")
        } else if user.is_bot {
            ineligible("bots cannot vote")
        } else if user.is_guest {
            ineligible("guest accounts cannot vote")
        } else if !ours {
            ineligible("accounts from another Slack organisation cannot vote")
        } else {
            match &user.email {
                Some(email) => Identified::Person(vec![email.clone()]),
                None => Identified::Unknown,
            }
        })
    }

    /// An ephemeral message where the voter clicked; nothing when Slack said not where.
    async fn tell(&self, voter: &Voter, text: &str) -> Result<(), ChatError> {
        let Some(channel) = &voter.conversation else {
            return Ok(());
        };
        self.api.post_ephemeral(channel, &voter.user_id, text).await
    }

    /// The reason modal, opened with the click's `trigger_id` (Slack allows 3 s for it).
    async fn ask_reason(&self, voter: &Voter, approval: &PendingApproval) -> Result<(), ChatError> {
        match &voter.trigger {
            Some(trigger) => {
                let modal = reason_modal(&approval.request_id, &approval.request.summary);
                self.api.open_view(trigger, &modal).await
            }
            None => {
                let text =
                    "This request needs a reason to reject it; Slack sent no way to ask for one.";
                self.tell(voter, text).await
            }
        }
    }
}
