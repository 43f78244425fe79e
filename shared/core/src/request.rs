//! The approval request: the state machine input and the evaluator input. Untrusted JSON is
//! validated field by field into a typed [`Request`], so every later step can rely on it and
//! a caller learns exactly which field was wrong.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::identity::ProvenIdentity;

/// Requests larger than this are refused before they are parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Request ids end up in DynamoDB keys and Slack button values, so they are kept short and plain.
pub const MAX_ID_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 4096;
const MAX_LINKS: usize = 20;
/// How deep `details` may nest. The request is stored inside a decision-log event
/// (`data.request.details`), and DynamoDB holds at most 32 levels in an item.
pub const MAX_DETAILS_DEPTH: usize = 24;
/// DynamoDB's number range: magnitudes from 1E-130 to below 1E+126.
const DYNAMODB_MAX_NUMBER: f64 = 1e126;
const DYNAMODB_MIN_NUMBER: f64 = 1e-130;

/// One field of a request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

/// Why a request was refused. Crosses the Step Functions boundary as `InvalidRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("request is not valid JSON: {0}")]
    NotJson(String),
    /// Every invalid field, in the order of the contract, so a caller fixes them all at once.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldProblem>),
}

impl RequestError {
    fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::Fields(vec![FieldProblem {
            field: field.to_string(),
            problem: problem.into(),
        }])
    }

    /// The first offending field, when the problem is with fields.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::Fields(problems) => problems.first().map(|p| p.field.as_str()),
            _ => None,
        }
    }
}

/// Collects the problems of every field instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn check<T>(&mut self, result: Result<T, RequestError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(RequestError::Fields(problems)) => {
                self.0.extend(problems);
                None
            }
            Err(other) => {
                self.0.push(FieldProblem {
                    field: "(root)".into(),
                    problem: other.to_string(),
                });
                None
            }
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
    /// What the evaluator proved from the request's identity token (`input.identity`); never
    /// from the caller's JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ProvenIdentity>,
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

    /// The request of a whole policy input (`{"request", "identity"?, "votes", ...}`, as
    /// `policies/examples/` holds them): the request validated, with the identity the evaluator
    /// would have proved from its token. For tools that try a policy (`regate policy eval`,
    /// the benchmarks), never for a workflow's input, whose identity only a token proves.
    pub fn from_policy_input(
        input: &Value,
        default_id: Option<&str>,
    ) -> Result<Self, RequestError> {
        let mut request = Self::from_value(&input["request"], default_id)?;
        request.identity = match input.get("identity") {
            None | Some(Value::Null) => None,
            Some(identity) => Some(serde_json::from_value(identity.clone()).map_err(|_| {
                RequestError::field(
                    "identity",
                    "is neither {issuer, subject, key_id, claims} nor {error}",
                )
            })?),
        };
        Ok(request)
    }

    fn validate(value: &Value, default_id: Option<&str>) -> Result<Self, RequestError> {
        let root = value
            .as_object()
            .ok_or_else(|| RequestError::field("(root)", "must be a JSON object"))?;
        let mut problems = Problems::default();
        let id = match root.get("id") {
            None | Some(Value::Null) => default_id
                .map(str::to_string)
                .ok_or_else(|| RequestError::field("id", "is missing and no default was given")),
            Some(_) => text(root, "id", "id"),
        }
        .and_then(|id| check_id(&id).map(|()| id));
        let id = problems.check(id);
        let action = problems.check(text(root, "action", "action"));
        let environment = problems.check(text(root, "environment", "environment"));
        let resource = problems.check(object(root, "resource", "resource").and_then(|r| {
            let kind = text(r, "type", "resource.type");
            let name = text(r, "name", "resource.name");
            match (kind, name) {
                (Ok(kind), Ok(name)) => Ok(Resource { kind, name }),
                (Err(a), Err(b)) => Err(RequestError::Fields(
                    [a, b].into_iter().flat_map(into_problems).collect(),
                )),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }));
        let requester = problems.check(identity(root, "requester"));
        let initiator = problems.check(match root.get("initiator") {
            None | Some(Value::Null) => Ok(None),
            Some(_) => identity(root, "initiator").map(Some),
        });
        let summary = problems.check(text(root, "summary", "summary"));
        let details = problems.check(match root.get("details") {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => {
                storable(&Value::Object(map.clone()), "details", 1).map(|()| map.clone())
            }
            Some(_) => Err(RequestError::field("details", "must be an object")),
        });
        let links = problems.check(match root.get("links") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => parse_links(items),
            Some(_) => Err(RequestError::field("links", "must be an array")),
        });
        if root.contains_key("identity") {
            problems.0.push(FieldProblem {
                field: "identity".into(),
                problem: "is proven by regate from `identity_token`; a request cannot set it"
                    .into(),
            });
        }
        if !problems.0.is_empty() {
            return Err(RequestError::Fields(problems.0));
        }
        // A field that failed its check recorded a problem above, so each is here.
        let unchecked = || RequestError::field("(root)", "a field was not checked");
        Ok(Self {
            id: id.ok_or_else(unchecked)?,
            action: action.ok_or_else(unchecked)?,
            environment: environment.ok_or_else(unchecked)?,
            resource: resource.ok_or_else(unchecked)?,
            requester: requester.ok_or_else(unchecked)?,
            initiator: initiator.ok_or_else(unchecked)?,
            summary: summary.ok_or_else(unchecked)?,
            details: details.ok_or_else(unchecked)?,
            links: links.ok_or_else(unchecked)?,
            identity: None,
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

fn into_problems(error: RequestError) -> Vec<FieldProblem> {
    match error {
        RequestError::Fields(problems) => problems,
        other => vec![FieldProblem {
            field: "(root)".into(),
            problem: other.to_string(),
        }],
    }
}

fn identity(root: &Map<String, Value>, key: &str) -> Result<Identity, RequestError> {
    let map = object(root, key, key)?;
    let kind_path = format!("{key}.kind");
    let id_path = format!("{key}.id");
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
    let id = text(map, "id", &id_path)?;
    // People are their e-mail addresses: the rule that the requester never votes compares
    // voters' addresses with this one, so anything else would silently disable it.
    if kind == IdentityKind::Human && !is_email(&id) {
        return Err(RequestError::field(
            &id_path,
            "must be the person's e-mail address (kind is \"human\")",
        ));
    }
    Ok(Identity { id, kind })
}

/// `local@domain.tld`, ASCII-printable without spaces: enough to be an address, not a full
/// RFC 5322 parser.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && text.chars().all(|c| c.is_ascii_graphic())
}

/// Whether `value` fits in DynamoDB at `path`, `depth` levels down: not nested too deep, and
/// every number within DynamoDB's range.
fn storable(value: &Value, path: &str, depth: usize) -> Result<(), RequestError> {
    match value {
        Value::Object(_) | Value::Array(_) if depth > MAX_DETAILS_DEPTH => {
            Err(RequestError::field(
                path,
                format!(
                    "nests deeper than {MAX_DETAILS_DEPTH} levels, more than DynamoDB can store"
                ),
            ))
        }
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, inner)| storable(inner, &format!("{path}.{key}"), depth + 1)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, inner)| storable(inner, &format!("{path}[{i}]"), depth + 1)),
        Value::Number(number) => {
            let magnitude = number.as_f64().map_or(0.0, f64::abs);
            if magnitude >= DYNAMODB_MAX_NUMBER
                || (magnitude > 0.0 && magnitude < DYNAMODB_MIN_NUMBER)
            {
                Err(RequestError::field(
                    path,
                    format!(
                        "is {number}, outside the numbers DynamoDB can store (1E-130 to 1E+126)"
                    ),
                ))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
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
    fn every_invalid_field_is_reported_in_one_error() {
        let mut v = valid();
        v["action"] = json!(7);
        v["resource"] = json!({});
        v["links"] = json!([{"title": "x", "url": "ftp://nope"}]);
        let error = Request::from_value(&v, None).unwrap_err();
        let RequestError::Fields(problems) = &error else {
            panic!("{error:?}")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["action", "resource.type", "resource.name", "links[0].url"]
        );
        assert!(error
            .to_string()
            .contains("field `action` must be a string; field `resource.type`"));
    }

    #[test]
    fn a_person_is_an_email_address_and_a_service_is_any_name() {
        let mut v = valid();
        v["requester"] = json!({"id": "dev", "kind": "human"});
        assert_eq!(error_field(v.clone()), "requester.id");
        v["requester"] = json!({"id": "deploy-bot", "kind": "service"});
        assert!(Request::from_value(&v, None).is_ok());
        v["initiator"] = json!({"id": "Dev Person <dev@example.com>", "kind": "human"});
        assert_eq!(error_field(v), "initiator.id");
    }

    #[test]
    fn details_dynamodb_cannot_store_are_refused_naming_the_field() {
        let mut deep = json!("leaf");
        for _ in 0..=MAX_DETAILS_DEPTH {
            deep = json!({"n": deep});
        }
        let mut v = valid();
        v["details"] = deep;
        let error = Request::from_value(&v, None).unwrap_err().to_string();
        assert!(
            error.contains("details.n.n") && error.contains("deeper"),
            "{error}"
        );
        let mut v = valid();
        v["details"] = json!({"ok": [1, 2.5, -3], "size": {"bytes": 1e200}});
        assert_eq!(error_field(v), "details.size.bytes");
        let mut v = valid();
        v["details"] = json!({"tiny": 1e-200});
        assert_eq!(error_field(v), "details.tiny");
        let mut fine = valid();
        fine["details"] = json!({"a": {"b": [{"c": 12345678901234_i64}]}, "zero": 0.0});
        assert!(Request::from_value(&fine, None).is_ok());
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
