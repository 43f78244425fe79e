//! Slack interaction payloads: the form field `payload=<url-encoded JSON>` that Slack POSTs to
//! the interactivity URL, turned into what regate acts on. Anything else is a clear error.

use regate_core::{Choice, Platform, Voter};

/// Where an interaction comes from: the app it was sent to and the workspace (and Enterprise
/// Grid organisation) it was clicked in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub app_id: Option<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
}
use serde_json::Value;

/// Largest body regate reads from Slack; interaction payloads are a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const APPROVE_ACTION: &str = "approve";
pub const REJECT_ACTION: &str = "reject";
/// `callback_id` of the modal that asks for a rejection reason.
pub const REASON_VIEW: &str = "reject_reason";
/// `block_id` and `action_id` of the reason input in that modal.
pub const REASON_BLOCK: &str = "reason";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// An Approve or Reject button click on an approval message.
    Vote {
        voter: Voter,
        choice: Choice,
        request_id: String,
    },
    /// The reason modal was submitted.
    ReasonSubmitted {
        voter: Voter,
        request_id: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InteractionError {
    #[error("malformed interaction: {0}")]
    Malformed(String),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("unsupported interaction type {0:?}")]
    UnsupportedType(String),
}

fn malformed(what: &str) -> InteractionError {
    InteractionError::Malformed(what.to_string())
}

/// Parses a form-encoded interaction body.
pub fn parse(body: &[u8]) -> Result<Interaction, InteractionError> {
    parse_with_origin(body).map(|(interaction, _)| interaction)
}

/// Parses a form-encoded interaction body, with where it comes from.
pub fn parse_with_origin(body: &[u8]) -> Result<(Interaction, Origin), InteractionError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(InteractionError::Malformed(format!(
            "body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let payload = form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| malformed("no payload field"))?;
    let payload: Value = serde_json::from_str(&payload)
        .map_err(|e| InteractionError::Malformed(format!("payload is not JSON: {e}")))?;
    let text = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let user_id = text("/user/id").ok_or_else(|| malformed("no user.id"))?;
    let origin = Origin {
        app_id: text("/api_app_id"),
        team_id: text("/team/id").or_else(|| text("/user/team_id")),
        enterprise_id: text("/enterprise/id"),
    };
    let tenant = origin.team_id.clone();
    let interaction = match text("/type").as_deref() {
        Some("block_actions") => {
            let action = payload
                .pointer("/actions/0")
                .ok_or_else(|| malformed("no actions"))?;
            let action_id = action
                .get("action_id")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("no action_id"))?;
            let choice = match action_id {
                APPROVE_ACTION => Choice::Approve,
                REJECT_ACTION => Choice::Reject,
                other => {
                    return Err(InteractionError::UnknownAction(
                        other.chars().take(255).collect(),
                    ))
                }
            };
            let request_id = action
                .get("value")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| malformed("the button carries no request id"))?;
            Interaction::Vote {
                voter: Voter {
                    platform: Platform::Slack,
                    user_id,
                    conversation: text("/channel/id").or_else(|| text("/container/channel_id")),
                    trigger: text("/trigger_id"),
                    tenant,
                    endpoint: None,
                    message: None,
                },
                choice,
                request_id: request_id.to_string(),
            }
        }
        Some("view_submission") => {
            let callback = text("/view/callback_id").unwrap_or_default();
            if callback != REASON_VIEW {
                return Err(InteractionError::UnknownAction(callback));
            }
            let request_id = text("/view/private_metadata")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| malformed("the modal carries no request id"))?;
            let pointer = format!("/view/state/values/{REASON_BLOCK}/{REASON_BLOCK}/value");
            let reason = payload
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            Interaction::ReasonSubmitted {
                voter: Voter {
                    platform: Platform::Slack,
                    user_id,
                    conversation: None,
                    trigger: None,
                    tenant,
                    endpoint: None,
                    message: None,
                },
                request_id,
                reason,
            }
        }
        Some(other) => return Err(InteractionError::UnsupportedType(other.to_string())),
        None => return Err(malformed("no type")),
    };
    Ok((interaction, origin))
}

/// A form body as Slack sends it, for tests and the demo.
pub fn form_body(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// A `block_actions` payload for a button click, shaped like Slack's.
pub fn click_payload(
    user_id: &str,
    action_id: &str,
    request_id: &str,
    channel: &str,
    message_ts: &str,
) -> Value {
    serde_json::json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id, "team_id": "T0REGATE"},
        "api_app_id": "A0REGATE",
        "team": {"id": "T0REGATE", "domain": "regate"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": format!("{message_ts}.trigger"),
        "channel": {"id": channel, "name": "approvals"},
        "response_url": "https://hooks.slack.com/actions/T0REGATE/1/abc",
        "actions": [{"action_id": action_id, "block_id": "decision", "type": "button", "value": request_id,
                     "action_ts": message_ts}]
    })
}

/// A `view_submission` payload for the reason modal, shaped like Slack's.
pub fn reason_payload(user_id: &str, request_id: &str, reason: &str) -> Value {
    serde_json::json!({
        "type": "view_submission",
        "api_app_id": "A0REGATE",
        "team": {"id": "T0REGATE", "domain": "regate"},
        "user": {"id": user_id, "username": user_id, "team_id": "T0REGATE"},
        "view": {"id": "V0REGATE", "callback_id": REASON_VIEW, "private_metadata": request_id,
                 "state": {"values": {REASON_BLOCK: {REASON_BLOCK: {"type": "plain_text_input", "value": reason}}}}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_click_is_a_vote_on_the_request_in_its_value() {
        let body = form_body(&click_payload("U1", "approve", "chg-1", "C1", "1.2"));
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(
            parsed,
            Interaction::Vote {
                voter: Voter {
                    platform: Platform::Slack,
                    user_id: "U1".into(),
                    conversation: Some("C1".into()),
                    trigger: Some("1.2.trigger".into()),
                    tenant: Some("T0REGATE".into()),
                    endpoint: None,
                    message: None,
                },
                choice: Choice::Approve,
                request_id: "chg-1".into(),
            }
        );
    }

    #[test]
    fn a_submitted_modal_carries_its_request_and_trimmed_reason() {
        let body = form_body(&reason_payload("U1", "chg-1", "  too broad \n"));
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            Interaction::ReasonSubmitted {
                voter: Voter {
                    platform: Platform::Slack,
                    user_id: "U1".into(),
                    conversation: None,
                    trigger: None,
                    tenant: Some("T0REGATE".into()),
                    endpoint: None,
                    message: None,
                },
                request_id: "chg-1".into(),
                reason: "too broad".into()
            }
        );
    }

    #[test]
    fn bad_payloads_are_named_errors() {
        assert!(matches!(
            parse(b"nothing=here"),
            Err(InteractionError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"payload=%7Bnot-json"),
            Err(InteractionError::Malformed(_))
        ));
        assert!(matches!(
            parse(form_body(&serde_json::json!({"type": "block_actions"})).as_bytes()),
            Err(InteractionError::Malformed(_))
        ));
        let unknown = form_body(&click_payload(
            "U1",
            "delete_everything",
            "chg-1",
            "C1",
            "1.2",
        ));
        assert_eq!(
            parse(unknown.as_bytes()),
            Err(InteractionError::UnknownAction("delete_everything".into()))
        );
        let shortcut = form_body(&serde_json::json!({"type": "shortcut", "user": {"id": "U1"}}));
        assert_eq!(
            parse(shortcut.as_bytes()),
            Err(InteractionError::UnsupportedType("shortcut".into()))
        );
        let mut no_value = click_payload("U1", "approve", "", "C1", "1.2");
        no_value["actions"][0]["value"] = serde_json::json!("");
        assert!(matches!(
            parse(form_body(&no_value).as_bytes()),
            Err(InteractionError::Malformed(_))
        ));
        assert!(matches!(
            parse(&vec![b'a'; MAX_BODY_BYTES + 1]),
            Err(InteractionError::Malformed(_))
        ));
    }
}
