//! The policy input `{"identity"?, "now", "opened_at", "request", "voter"?, "votes"}`, built once per
//! request where it can be, in both forms an evaluation needs: canonical text (for the input
//! digest) and a regorus value (for the VM).

use chrono::{DateTime, Utc};

use crate::canonical::canonical_text;
use crate::request::Request;
use crate::vote::Vote;

use super::PolicyError;

/// A validated request turned once into what every evaluation of it needs: its canonical JSON
/// (for the input digest) and its regorus value (for the VM). A request is evaluated several
/// times in its life (first, then after each vote), and this work does not change between them.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    request: Request,
    canonical: String,
    value: regorus::Value,
    /// `input.identity`, when the request carried an identity token: its canonical text and
    /// value (the request's own omit it).
    identity_input: Option<(String, regorus::Value)>,
}

impl PreparedRequest {
    pub fn new(request: Request) -> Result<Self, PolicyError> {
        let fail = |e: String| PolicyError::Eval {
            rule: "input.request".into(),
            message: e,
        };
        let mut json = serde_json::to_value(&request).map_err(|e| fail(e.to_string()))?;
        let identity = match json.as_object_mut().and_then(|o| o.remove("identity")) {
            Some(identity) => {
                let canonical = canonical_text(&identity).map_err(|e| fail(e.to_string()))?;
                Some((canonical, regorus::Value::from(identity)))
            }
            None => None,
        };
        let canonical = canonical_text(&json).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            request,
            canonical,
            value: regorus::Value::from(json),
            identity_input: identity,
        })
    }

    pub fn request(&self) -> &Request {
        &self.request
    }
}

impl std::ops::Deref for PreparedRequest {
    type Target = Request;
    fn deref(&self) -> &Request {
        &self.request
    }
}

/// When an evaluation happens: `now`, and `opened_at`, when the approval opened (the pending
/// approval's creation). A first evaluation, which decides whether to open one, happens at its
/// opening. Decisions logged before regate gave the policy `opened_at` have none: their input
/// is rebuilt without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluationTime {
    pub now: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
}

impl EvaluationTime {
    /// The first evaluation of a request: the approval, if one is needed, opens now.
    pub fn opening(now: DateTime<Utc>) -> Self {
        Self {
            now,
            opened_at: Some(now),
        }
    }

    /// An evaluation of an approval that opened at `opened_at`.
    pub fn since(opened_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            now,
            opened_at: Some(opened_at),
        }
    }
}

/// The policy input `{"identity"?, "now", "opened_at", "request", "voter"?, "votes"}`: its
/// canonical text (keys in that order, which is RFC 8785's) and the same document as a regorus
/// value.
pub(super) fn policy_input(
    request: &PreparedRequest,
    votes: &[Vote],
    time: EvaluationTime,
    voter: Option<&str>,
) -> Result<(String, regorus::Value), String> {
    let now = crate::time::format_rfc3339_ms(time.now);
    let opened_at = time.opened_at.map(crate::time::format_rfc3339_ms);
    let votes_json = serde_json::to_value(votes).map_err(|e| e.to_string())?;
    let votes_text = canonical_text(&votes_json).map_err(|e| e.to_string())?;
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    let mut canonical = String::with_capacity(request.canonical.len() + votes_text.len() + 64);
    canonical.push('{');
    if let Some((identity, _)) = &request.identity_input {
        canonical.push_str("\"identity\":");
        canonical.push_str(identity);
        canonical.push(',');
    }
    canonical.push_str("\"now\":");
    canonical.push_str(&quoted(&now));
    if let Some(opened_at) = &opened_at {
        canonical.push_str(",\"opened_at\":");
        canonical.push_str(&quoted(opened_at));
    }
    canonical.push_str(",\"request\":");
    canonical.push_str(&request.canonical);
    if let Some(voter) = voter {
        canonical.push_str(",\"voter\":");
        canonical.push_str(&quoted(voter));
    }
    canonical.push_str(",\"votes\":");
    canonical.push_str(&votes_text);
    canonical.push('}');

    let mut value = std::collections::BTreeMap::new();
    if let Some((_, identity)) = &request.identity_input {
        value.insert(regorus::Value::from("identity"), identity.clone());
    }
    value.insert(regorus::Value::from("now"), regorus::Value::from(now));
    if let Some(opened_at) = opened_at {
        value.insert(
            regorus::Value::from("opened_at"),
            regorus::Value::from(opened_at),
        );
    }
    value.insert(regorus::Value::from("request"), request.value.clone());
    value.insert(
        regorus::Value::from("votes"),
        regorus::Value::from(votes_json),
    );
    if let Some(voter) = voter {
        value.insert(regorus::Value::from("voter"), regorus::Value::from(voter));
    }
    Ok((canonical, regorus::Value::from(value)))
}
