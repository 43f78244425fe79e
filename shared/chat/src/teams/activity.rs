//! Inbound Bot Framework activities: the `adaptiveCard/action` invoke a card click sends, and
//! the answers Teams expects to it (`statusCode`, `type`, `value`, exactly as documented).

use regate_core::Choice;
use serde::Deserialize;
use serde_json::{json, Value};

use super::card::{APPROVE_VERB, MAX_REASON_CHARS, REASON_INPUT, REJECT_VERB};

/// The invoke a click on an `Action.Execute` sends.
pub const CARD_ACTION_INVOKE: &str = "adaptiveCard/action";
/// The largest activity the callback reads (as for Slack); a larger one is refused with 413
/// before anything of it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The channel id of Microsoft Teams; other channels are refused.
pub const TEAMS_CHANNEL: &str = "msteams";
/// The content type of an Adaptive Card in an invoke answer or an attachment.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// A click on the approval card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardClick {
    pub choice: Choice,
    pub request_id: String,
    /// What the voter typed in the reason input, if anything.
    pub reason: Option<String>,
    /// Teams' id of the clicker (`29:…`), for the member lookup.
    pub user_id: String,
    /// The clicker's Entra object id, when Teams sent it.
    pub aad_object_id: Option<String>,
    /// The conversation, without the `;messageid=…` a channel thread adds.
    pub conversation: String,
    pub tenant_id: Option<String>,
    pub service_url: String,
    /// The activity id of the card clicked.
    pub reply_to_id: Option<String>,
}

/// What an inbound activity asks of regate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Click(CardClick),
    /// An invoke regate does not handle (answered 501).
    UnknownInvoke(String),
    /// Any other activity (a message, a member added, ...): answered 200 with nothing.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Teams activity: {0}")]
pub struct ActivityError(pub String);

/// The fields of an activity that the JWT check needs before anything else is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub channel_id: String,
    pub service_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    channel_id: String,
    service_url: String,
    #[serde(default)]
    from: Option<Account>,
    #[serde(default)]
    conversation: Option<Conversation>,
    #[serde(default)]
    channel_data: Option<Value>,
    #[serde(default)]
    reply_to_id: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    id: String,
    #[serde(default)]
    aad_object_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    id: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

fn raw(body: &[u8]) -> Result<Raw, ActivityError> {
    serde_json::from_slice(body).map_err(|e| ActivityError(format!("not an activity: {e}")))
}

/// The channel and service URL an activity claims, for checking against its token.
pub fn envelope(body: &[u8]) -> Result<Envelope, ActivityError> {
    let raw = raw(body)?;
    Ok(Envelope {
        channel_id: raw.channel_id,
        service_url: raw.service_url,
    })
}

/// Parses an activity whose token has been checked.
pub fn parse(body: &[u8]) -> Result<Activity, ActivityError> {
    let raw = raw(body)?;
    if raw.kind != "invoke" {
        return Ok(Activity::Ignored(raw.kind));
    }
    let name = raw.name.unwrap_or_default();
    if name != CARD_ACTION_INVOKE {
        return Ok(Activity::UnknownInvoke(name));
    }
    let missing = |what: &str| ActivityError(format!("the invoke has no {what}"));
    let action = raw
        .value
        .as_ref()
        .and_then(|v| v.get("action"))
        .ok_or_else(|| missing("value.action"))?;
    let choice = match action.get("verb").and_then(Value::as_str) {
        Some(APPROVE_VERB) => Choice::Approve,
        Some(REJECT_VERB) => Choice::Reject,
        other => return Err(ActivityError(format!("unknown verb {other:?}"))),
    };
    let data = action.get("data").ok_or_else(|| missing("action data"))?;
    let request_id = data
        .get("request_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| missing("request_id"))?
        .to_string();
    // The card's `maxLength` binds only the Teams client: the server cuts the reason too.
    let reason = data
        .get(REASON_INPUT)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON_CHARS).collect());
    let from = raw.from.ok_or_else(|| missing("from"))?;
    let conversation = raw.conversation.ok_or_else(|| missing("conversation"))?;
    let tenant_from_data = raw
        .channel_data
        .as_ref()
        .and_then(|d| d.pointer("/tenant/id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Activity::Click(CardClick {
        choice,
        request_id,
        reason,
        user_id: from.id,
        aad_object_id: from.aad_object_id,
        // A channel thread's conversation id names its root message; the card clicked is
        // `replyToId`, or that root when Teams leaves `replyToId` out.
        reply_to_id: raw.reply_to_id.or_else(|| {
            let (_, root) = conversation.id.split_once(";messageid=")?;
            Some(root.to_string())
        }),
        conversation: conversation
            .id
            .split(";messageid=")
            .next()
            .unwrap_or_default()
            .to_string(),
        tenant_id: conversation.tenant_id.or(tenant_from_data),
        service_url: raw.service_url,
    }))
}

/// The answer to an invoke: an Adaptive Card that replaces the card in the clicker's client.
pub fn card_response(card: Value) -> Value {
    json!({"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card})
}

/// The answer to an invoke that failed: Teams shows `message`.
pub fn error_response(status: u16, code: &str, message: &str) -> Value {
    json!({"statusCode": status, "type": "application/vnd.microsoft.error",
        "value": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn invoke(verb: &str, data: Value) -> Value {
        json!({
            "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
            "serviceUrl": "https://smba.trafficmanager.net/amer/tenant-1/",
            "from": {"id": "29:erin", "aadObjectId": "aad-erin", "name": "Erin"},
            "recipient": {"id": "28:app"},
            "conversation": {"id": "19:payments@thread.tacv2;messageid=1700000000000", "conversationType": "channel", "tenantId": "tenant-1"},
            "channelData": {"tenant": {"id": "tenant-1"}},
            "replyToId": "1700000000000",
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}
        })
    }

    #[test]
    fn a_click_gives_the_vote_the_clicker_and_where_it_happened() {
        let body = invoke(
            REJECT_VERB,
            json!({"request_id": "chg-1", "reason": "  too risky "}),
        );
        let Activity::Click(click) = parse(body.to_string().as_bytes()).unwrap() else {
            panic!("not a click")
        };
        assert_eq!(click.choice, Choice::Reject);
        assert_eq!(click.request_id, "chg-1");
        assert_eq!(click.reason.as_deref(), Some("too risky"));
        assert_eq!(click.user_id, "29:erin");
        assert_eq!(click.aad_object_id.as_deref(), Some("aad-erin"));
        assert_eq!(click.conversation, "19:payments@thread.tacv2");
        assert_eq!(click.tenant_id.as_deref(), Some("tenant-1"));
        assert_eq!(click.reply_to_id.as_deref(), Some("1700000000000"));
    }

    #[test]
    fn a_reason_longer_than_the_card_allows_is_cut_on_the_server() {
        let long = "é".repeat(MAX_REASON_CHARS * 3);
        let body = invoke(REJECT_VERB, json!({"request_id": "chg-1", "reason": long}));
        let Activity::Click(click) = parse(body.to_string().as_bytes()).unwrap() else {
            panic!("not a click")
        };
        let reason = click.reason.unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn other_activities_are_ignored_and_other_invokes_are_unknown() {
        let message =
            json!({"type": "message", "channelId": "msteams", "serviceUrl": "https://x/"});
        assert_eq!(
            parse(message.to_string().as_bytes()).unwrap(),
            Activity::Ignored("message".into())
        );
        let mut other = invoke(APPROVE_VERB, json!({"request_id": "c"}));
        other["name"] = "composeExtension/query".into();
        assert_eq!(
            parse(other.to_string().as_bytes()).unwrap(),
            Activity::UnknownInvoke("composeExtension/query".into())
        );
    }

    #[test]
    fn malformed_invokes_say_what_is_wrong() {
        for (body, expected) in [
            (json!({"type": "invoke"}).to_string(), "not an activity"),
            (
                invoke("launch", json!({"request_id": "c"})).to_string(),
                "unknown verb",
            ),
            (invoke(APPROVE_VERB, json!({})).to_string(), "request_id"),
            ("{".to_string(), "not an activity"),
        ] {
            let error = parse(body.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn answers_use_status_code_type_and_value() {
        let answer = card_response(json!({"type": "AdaptiveCard"}));
        assert_eq!(answer["statusCode"], 200);
        assert_eq!(answer["type"], CARD_CONTENT_TYPE);
        let error = error_response(400, "BadRequest", "no");
        assert_eq!(error["type"], "application/vnd.microsoft.error");
        assert_eq!(error["value"]["message"], "no");
    }
}
