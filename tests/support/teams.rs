//! Teams on the local stack: the cards the notifier posted to the Teams stand-in, and card
//! clicks sent to the real callback as the Bot Framework sends them, with a JWT signed by a key
//! the test generated and published through the stand-in's JWKS.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regate_testkit::{bot_claims, TeamsKey};
use serde_json::{json, Value};

use crate::local_env;
use crate::stack::{Answer, LocalStack, WAIT};

/// The key this test process signs Teams tokens with, published once.
fn key() -> &'static TeamsKey {
    static KEY: OnceLock<TeamsKey> = OnceLock::new();
    KEY.get_or_init(|| TeamsKey::generate(&format!("test-{}", std::process::id()), &["msteams"]))
}

/// The settings of the local Teams bot (infra/local/local.env).
pub struct TeamsBot {
    pub app_id: String,
    pub tenant_id: String,
    pub service_url: String,
}

pub fn bot() -> TeamsBot {
    let env = local_env();
    TeamsBot {
        app_id: env["TEAMS_APP_ID"].clone(),
        tenant_id: env["TEAMS_TENANT_ID"].clone(),
        service_url: env["TEAMS_SERVICE_URL"].clone(),
    }
}

/// A card as the stand-in holds it now.
#[derive(Debug, Clone)]
pub struct PostedCard {
    pub conversation: String,
    pub activity_id: String,
    pub card: Value,
}

impl LocalStack {
    /// Publishes `key` in the stand-in's JWKS (keys already there stay).
    pub async fn publish_teams_key(&self, key: &TeamsKey) {
        crate::control_chat("_keys", &json!({"keys": [key.jwk]})).await;
    }

    /// The stand-in's Teams state: members, posted activities, key fetches.
    pub async fn teams_state(&self) -> Value {
        self.get_json(&format!("{}/_teams", self.chat_url)).await
    }

    /// The Teams id of the member with this e-mail address (or this special id).
    pub async fn teams_member(&self, email_or_id: &str) -> String {
        let state = self.teams_state().await;
        state["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == email_or_id || m["id"] == email_or_id)
            .map(|m| m["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no Teams member {email_or_id}"))
    }

    /// The approval card posted for `request_id`, as it is now (waits for it to be posted).
    pub async fn teams_card(&self, request_id: &str) -> PostedCard {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let state = self.teams_state().await;
            let found = state["activities"].as_array().unwrap().iter().find(|a| {
                a["activity"]["attachments"][0]["content"]
                    .to_string()
                    .contains(&format!("\"request_id\":\"{request_id}\""))
                    || a["activity"]
                        .to_string()
                        .contains(&format!("Request {request_id} "))
            });
            if let Some(found) = found {
                return PostedCard {
                    conversation: found["conversation"].as_str().unwrap().to_string(),
                    activity_id: found["id"].as_str().unwrap().to_string(),
                    card: found["activity"]["attachments"][0]["content"].clone(),
                };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no Teams card for {request_id} within {WAIT:?}");
    }

    /// The invoke Teams sends when `member` clicks `verb` on the request's card.
    pub async fn teams_invoke(
        &self,
        member: &str,
        verb: &str,
        request_id: &str,
        reason: Option<&str>,
    ) -> Value {
        let card = self.teams_card(request_id).await;
        let bot = bot();
        let mut data = json!({"request_id": request_id});
        if let Some(reason) = reason {
            data["reason"] = reason.into();
        }
        json!({
            "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
            "id": format!("f:{}", crate::unique("invoke")),
            "serviceUrl": bot.service_url,
            "from": {"id": member, "name": member},
            "recipient": {"id": format!("28:{}", bot.app_id)},
            "conversation": {"id": format!("{};messageid={}", card.conversation, card.activity_id),
                             "conversationType": "channel", "tenantId": bot.tenant_id},
            "channelData": {"tenant": {"id": bot.tenant_id}},
            "replyToId": card.activity_id,
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}
        })
    }

    /// POSTs an activity to the callback with `authorization` as its header.
    pub async fn post_teams(
        &self,
        activity: &Value,
        authorization: Option<String>,
    ) -> (Answer, Value) {
        let mut request = self.http.post(&self.teams_endpoint).json(activity);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let value = serde_json::from_str(&body).unwrap_or(Value::Null);
        (Answer { status, body }, value)
    }

    /// A bearer token the Bot Framework would send for the local bot, signed by `key`, with
    /// `change` applied to its claims.
    pub fn teams_token_with(&self, key: &TeamsKey, change: impl FnOnce(&mut Value)) -> String {
        let bot = bot();
        let mut claims = bot_claims(&bot.app_id, &bot.service_url);
        change(&mut claims);
        format!("Bearer {}", key.sign(&claims))
    }

    /// A card click by the Teams member with this e-mail address (or id), signed properly; the
    /// callback's answer and its JSON.
    pub async fn teams_click(
        &self,
        who: &str,
        verb: &str,
        request_id: &str,
        reason: Option<&str>,
    ) -> (Answer, Value) {
        let member = self.teams_member(who).await;
        let activity = self.teams_invoke(&member, verb, request_id, reason).await;
        let token = self.teams_bearer().await;
        self.post_teams(&activity, Some(token)).await
    }

    /// A valid `Authorization` header for the local bot, from this process's published key.
    pub async fn teams_bearer(&self) -> String {
        self.publish_teams_key(key()).await;
        self.teams_token_with(key(), |_| {})
    }

    /// Calls of a Teams stand-in method (`teams.send`, `teams.update`, ...) about a conversation.
    pub async fn teams_calls(&self, method: &str) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["method"] == method)
            .collect()
    }
}

/// Asserts that a Teams call was refused for a reason mentioning each of `mentions`.
pub fn assert_refused(error: &regate_core::ports::ChatError, mentions: &[&str]) {
    assert!(
        matches!(error, regate_core::ports::ChatError::Refused(m) if mentions.iter().all(|x| m.contains(x))),
        "{error}"
    );
}
