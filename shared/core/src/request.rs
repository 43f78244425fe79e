//! The approval request: the state machine input and the evaluator input. Untrusted JSON is
//! validated field by field into a typed [`Request`], so every later step can rely on it and
//! a caller learns exactly which field was wrong.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Requests larger than this are refused before they are parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Request ids end up in DynamoDB keys and Slack button values, so they are kept short and plain.
pub const MAX_ID_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 4096;
const MAX_LINKS: usize = 20;

/// Why a request was refused. Crosses the Step Functions boundary as `InvalidRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("request is not valid JSON: {0}")]
    NotJson(String),
    #[error("field `{field}` {problem}")]
    Field { field: String, problem: String },
}

impl RequestError {
    fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::Field {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// The offending field, when the problem is with one field.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Human,
    Service,
}

/// A stable identity: an e-mail address for a person, a name for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub kind: IdentityKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub url: String,
}

/// A validated approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub action: String,
    pub environment: String,
    pub resource: Resource,
    pub requester: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<Identity>,
    pub summary: String,
    #[serde(default)]
    pub details: Map<String, Value>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl Request {
    /// Parses and validates raw JSON. `default_id` (the execution name) is used when the
    /// request carries no `id`.
    pub fn from_json_bytes(bytes: &[u8], default_id: Option<&str>) -> Result<Self, RequestError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge {
                size: bytes.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| RequestError::NotJson(e.to_string()))?;
        Self::validate(&value, default_id)
    }

    /// Validates an already parsed value (a Lambda event), applying the same size limit.
    pub fn from_value(value: &Value, default_id: Option<&str>) -> Result<Self, RequestError> {
        let size = serde_json::to_vec(value)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge {
                size,
                limit: MAX_REQUEST_BYTES,
            });
        }
        Self::validate(value, default_id)
    }

    fn validate(value: &Value, default_id: Option<&str>) -> Result<Self, RequestError> {
        let root = value
            .as_object()
            .ok_or_else(|| RequestError::field("(root)", "must be a JSON object"))?;
        let id = match root.get("id") {
            None | Some(Value::Null) => default_id
                .map(str::to_string)
                .ok_or_else(|| RequestError::field("id", "is missing and no default was given"))?,
            Some(_) => text(root, "id", "id")?,
        };
        check_id(&id)?;
        let resource = object(root, "resource", "resource")?;
        let links = match root.get("links") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => parse_links(items)?,
            Some(_) => return Err(RequestError::field("links", "must be an array")),
        };
        let details = match root.get("details") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(RequestError::field("details", "must be an object")),
        };
        let initiator = match root.get("initiator") {
            None | Some(Value::Null) => None,
            Some(_) => Some(identity(root, "initiator")?),
        };
        Ok(Self {
            id,
            action: text(root, "action", "action")?,
            environment: text(root, "environment", "environment")?,
            resource: Resource {
                kind: text(resource, "type", "resource.type")?,
                name: text(resource, "name", "resource.name")?,
            },
            requester: identity(root, "requester")?,
            initiator,
            summary: text(root, "summary", "summary")?,
            details,
            links,
        })
    }

    /// The identities that may never vote on this request (the requester and the initiator).
    pub fn excluded_voters(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.requester.id.as_str())
            .chain(self.initiator.as_ref().map(|i| i.id.as_str()))
    }
}

fn check_id(id: &str) -> Result<(), RequestError> {
    if id.chars().count() > MAX_ID_CHARS {
        return Err(RequestError::field(
            "id",
            format!("is longer than {MAX_ID_CHARS} characters"),
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(RequestError::field(
            "id",
            "may only hold letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(())
}

fn object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, RequestError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(RequestError::field(path, "is missing")),
        Some(Value::Object(inner)) => Ok(inner),
        Some(_) => Err(RequestError::field(path, "must be an object")),
    }
}

fn text(map: &Map<String, Value>, key: &str, path: &str) -> Result<String, RequestError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(RequestError::field(path, "is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(RequestError::field(path, "must not be empty"))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT_CHARS => Err(RequestError::field(
            path,
            format!("is longer than {MAX_TEXT_CHARS} characters"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RequestError::field(path, "must be a string")),
    }
}

fn identity(root: &Map<String, Value>, key: &str) -> Result<Identity, RequestError> {
    let map = object(root, key, key)?;
    let kind_path = format!("{key}.kind");
    let kind = match text(map, "kind", &kind_path)?.as_str() {
        "human" => IdentityKind::Human,
        "service" => IdentityKind::Service,
        other => {
            return Err(RequestError::field(
                &kind_path,
                format!("must be \"human\" or \"service\", not {other:?}"),
            ))
        }
    };
    Ok(Identity {
        id: text(map, "id", &format!("{key}.id"))?,
        kind,
    })
}

fn parse_links(items: &[Value]) -> Result<Vec<Link>, RequestError> {
    if items.len() > MAX_LINKS {
        return Err(RequestError::field(
            "links",
            format!("has more than {MAX_LINKS} entries"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let map = item
                .as_object()
                .ok_or_else(|| RequestError::field(&format!("links[{i}]"), "must be an object"))?;
            let url = text(map, "url", &format!("links[{i}].url"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(RequestError::field(
                    &format!("links[{i}].url"),
                    "must be an http(s) URL",
                ));
            }
            Ok(Link {
                title: text(map, "title", &format!("links[{i}].title"))?,
                url,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({"id": "chg-2041", "action": "deploy", "environment": "production",
            "resource": {"type": "service", "name": "payments"},
            "requester": {"id": "dev@example.com", "kind": "human"},
            "initiator": {"id": "ci-bot", "kind": "service"},
            "summary": "Deploy payments v1.4.2", "details": {},
            "links": [{"title": "Pipeline", "url": "https://ci.example.com/1"}]})
    }

    fn error_field(value: Value) -> String {
        Request::from_value(&value, None)
            .unwrap_err()
            .field_name()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_complete_request_is_accepted() {
        let r = Request::from_value(&valid(), None).unwrap();
        assert_eq!(r.id, "chg-2041");
        assert_eq!(r.resource.name, "payments");
        assert_eq!(r.initiator.unwrap().kind, IdentityKind::Service);
        assert_eq!(r.links.len(), 1);
    }

    #[test]
    fn a_missing_id_takes_the_default_and_otherwise_is_named() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(
            Request::from_value(&v, Some("exec-1")).unwrap().id,
            "exec-1"
        );
        assert_eq!(error_field(v), "id");
    }

    #[test]
    fn each_missing_or_mistyped_field_is_named() {
        let mut v = valid();
        v["resource"].as_object_mut().unwrap().remove("name");
        assert_eq!(error_field(v), "resource.name");

        let mut v = valid();
        v["requester"]["kind"] = json!("robot");
        assert_eq!(error_field(v), "requester.kind");

        let mut v = valid();
        v["environment"] = json!(3);
        assert_eq!(error_field(v), "environment");

        let mut v = valid();
        v["summary"] = json!("  ");
        assert_eq!(error_field(v), "summary");

        let mut v = valid();
        v["details"] = json!([1]);
        assert_eq!(error_field(v), "details");

        let mut v = valid();
        v["links"][0]["url"] = json!("javascript:alert(1)");
        assert_eq!(error_field(v), "links[0].url");

        let mut v = valid();
        v["id"] = json!("REQ#1 with spaces");
        assert_eq!(error_field(v), "id");
    }

    #[test]
    fn the_initiator_is_optional() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("initiator");
        let r = Request::from_value(&v, None).unwrap();
        assert_eq!(r.excluded_voters().collect::<Vec<_>>(), ["dev@example.com"]);
    }

    #[test]
    fn requests_over_64_kib_are_refused_before_parsing() {
        let mut v = valid();
        v["details"] = json!({"blob": "x".repeat(MAX_REQUEST_BYTES)});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            Request::from_json_bytes(&bytes, None),
            Err(RequestError::TooLarge { .. })
        ));
        assert!(matches!(
            Request::from_value(&v, None),
            Err(RequestError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_json_and_non_objects_are_clear_errors() {
        assert!(matches!(
            Request::from_json_bytes(b"{", None),
            Err(RequestError::NotJson(_))
        ));
        assert_eq!(error_field(json!([1, 2])), "(root)");
    }
}
