//! The Bot Connector REST API: a bot token by OAuth client credentials from the tenant's
//! endpoint (cached until shortly before it expires, dropped and fetched again once on a 401),
//! posting and updating activities, and looking up a conversation member. Every call has a
//! time budget: 429, 412, 502 and 504 are retried with backoff (or as long as `Retry-After`
//! asks), 403 `MessageWritesBlocked` and 413 become refusals with hints. Bearer tokens go only
//! to allow-listed service hosts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regate_core::ports::ChatError;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::retry::{retry_after, Retries};

/// Where single-tenant bots get their tokens.
pub const LOGIN_BASE: &str = "https://login.microsoftonline.com";
/// The scope of a Bot Connector token.
pub const BOT_SCOPE: &str = "https://api.botframework.com/.default";
/// The Bot Connector's service hosts: commercial, GCC, GCC High and DoD.
pub const SERVICE_HOSTS: [&str; 4] = [
    "smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
];
/// A token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// The longest one attempt may take.
const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Member lookups are cached this long.
const MEMBER_TTL: Duration = Duration::from_secs(15 * 60);
/// An activity's limit, counted in UTF-16 code units as Teams counts it.
pub const MAX_ACTIVITY_UTF16: usize = 100 * 1024;

/// The bot regate runs as: its Entra app (single tenant) and secret.
pub struct BotCredentials {
    pub app_id: String,
    pub tenant_id: String,
    pub secret: SecretString,
}

impl BotCredentials {
    /// The Teams secret: `{"app_id": ..., "tenant_id": ..., "client_secret": ...}`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|_| "the Teams secret is not a JSON object".to_string())?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("the Teams secret has no {name}"))
        };
        Ok(Self {
            app_id: field("app_id")?,
            tenant_id: field("tenant_id")?,
            secret: SecretString::from(field("client_secret")?),
        })
    }
}

impl std::fmt::Debug for BotCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotCredentials")
            .field("app_id", &self.app_id)
            .field("tenant_id", &self.tenant_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A conversation member as the connector describes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: String,
    #[serde(default, alias = "aadObjectId")]
    pub object_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// `user`, `guest` or `anonymous`.
    #[serde(default)]
    pub user_role: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

struct CachedToken {
    token: SecretString,
    good_until: Instant,
}

type MemberCache = Mutex<HashMap<String, (Option<Member>, Instant)>>;

pub struct Connector {
    http: reqwest::Client,
    credentials: BotCredentials,
    login_base: String,
    allowed_hosts: Vec<String>,
    budget: Duration,
    token: Mutex<Option<CachedToken>>,
    members: MemberCache,
}

enum Attempt {
    Done(Value),
    /// Worth retrying, after `Retry-After` when the connector gave one.
    Retry(Option<Duration>, ChatError),
}

impl Connector {
    /// A connector that logs in at `login_base` and sends tokens only to `allowed_hosts`;
    /// `budget` bounds each call, retries and waits included.
    pub fn new(
        http: reqwest::Client,
        credentials: BotCredentials,
        login_base: &str,
        allowed_hosts: Vec<String>,
        budget: Duration,
    ) -> Self {
        Self {
            http,
            credentials,
            login_base: login_base.trim_end_matches('/').to_string(),
            allowed_hosts,
            budget,
            token: Mutex::default(),
            members: Mutex::default(),
        }
    }

    pub fn app_id(&self) -> &str {
        &self.credentials.app_id
    }

    pub fn tenant_id(&self) -> &str {
        &self.credentials.tenant_id
    }

    /// Posts `activity` to a conversation; returns the new activity's id.
    pub async fn send(
        &self,
        service_url: &str,
        conversation: &str,
        activity: &Value,
    ) -> Result<String, ChatError> {
        let path = format!("v3/conversations/{}/activities", encode(conversation));
        let answer = self
            .call(Method::POST, service_url, &path, Some(activity))
            .await?;
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ChatError::Unavailable("connector: the answer to a post has no id".into())
            })
    }

    /// Starts a one-to-one conversation of the bot with the member `member_id` and posts
    /// `activity` in it (`CreateConversation`); returns the conversation's and the activity's ids.
    pub async fn create_conversation(
        &self,
        service_url: &str,
        member_id: &str,
        activity: &Value,
    ) -> Result<(String, String), ChatError> {
        let tenant = self.tenant_id();
        let body = json!({
            "isGroup": false,
            "bot": {"id": format!("28:{}", self.app_id())},
            "members": [{"id": member_id}],
            "tenantId": tenant,
            "channelData": {"tenant": {"id": tenant}},
            "activity": activity,
        });
        let answer = self
            .call(Method::POST, service_url, "v3/conversations", Some(&body))
            .await?;
        let field = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_string);
        let conversation = field("id").ok_or_else(|| {
            ChatError::Unavailable("connector: the new conversation has no id".into())
        })?;
        let activity_id = match field("activityId") {
            Some(id) => id,
            None => self.send(service_url, &conversation, activity).await?,
        };
        Ok((conversation, activity_id))
    }

    /// Posts `activity` as a reply to activity `activity_id` (`ReplyToActivity`).
    pub async fn reply(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), ChatError> {
        let mut reply = activity.clone();
        reply["replyToId"] = Value::String(activity_id.to_string());
        let path = activity_path(conversation, activity_id);
        self.call(Method::POST, service_url, &path, Some(&reply))
            .await
            .map(drop)
    }

    /// Replaces a posted activity.
    pub async fn update(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), ChatError> {
        let path = activity_path(conversation, activity_id);
        self.call(Method::PUT, service_url, &path, Some(activity))
            .await
            .map(|_| ())
    }

    /// A member of a conversation, cached; `None` when the connector does not know them.
    pub async fn member(
        &self,
        service_url: &str,
        conversation: &str,
        user_id: &str,
    ) -> Result<Option<Member>, ChatError> {
        let key = format!("{conversation}\n{user_id}");
        if let Some((member, at)) = self.members.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if at.elapsed() < MEMBER_TTL {
                return Ok(member);
            }
        }
        let path = format!(
            "v3/conversations/{}/members/{}",
            encode(conversation),
            encode(user_id)
        );
        let member = match self.call(Method::GET, service_url, &path, None).await {
            Ok(answer) => Some(serde_json::from_value(answer).map_err(|e| {
                ChatError::Unavailable(format!("connector: a member answer is not a member: {e}"))
            })?),
            Err(ChatError::Refused(why)) if why.contains("HTTP 404") => None,
            Err(other) => return Err(other),
        };
        if let Ok(mut members) = self.members.lock() {
            members.insert(key, (member.clone(), Instant::now()));
        }
        Ok(member)
    }

    /// The base URL checked against the allow-list: an https URL on an allowed host (or a
    /// loopback http URL, when loopback is allowed: the local stack).
    fn checked_base(&self, service_url: &str) -> Result<Url, ChatError> {
        let refused =
            |why: String| ChatError::Refused(format!("serviceUrl {service_url:?}: {why}"));
        let mut url = Url::parse(service_url).map_err(|e| refused(e.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&host))
        {
            return Err(refused(format!(
                "host {host} is not an allowed Bot Connector host; bot tokens are sent only to {}",
                self.allowed_hosts.join(", ")
            )));
        }
        let loopback = host == "127.0.0.1" || host == "localhost";
        if url.scheme() != "https" && !loopback {
            return Err(refused("only https is allowed".into()));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }

    #[tracing::instrument(level = "debug", name = "round_trip", skip_all, fields(rpc.service = "Teams", rpc.method = path))]
    async fn call(
        &self,
        method: Method,
        service_url: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ChatError> {
        let url = self
            .checked_base(service_url)?
            .join(path)
            .map_err(|e| ChatError::Refused(format!("connector path {path}: {e}")))?;
        if let Some(body) = body {
            let units = body.to_string().encode_utf16().count();
            if units > MAX_ACTIVITY_UTF16 {
                return Err(ChatError::Refused(format!(
                    "the activity is {units} UTF-16 units; Teams accepts at most {MAX_ACTIVITY_UTF16}"
                )));
            }
        }
        let what = format!("connector {method} {path}");
        let mut retries = Retries::start(self.budget);
        let mut renewed_token = false;
        loop {
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .timeout(retries.attempt_timeout(MAX_ATTEMPT_TIMEOUT));
            if let Some(body) = body {
                request = request.json(body);
            }
            let attempt = match request.send().await {
                Err(error) => Attempt::Retry(
                    None,
                    ChatError::Unavailable(format!("{what}: {}", error.without_url())),
                ),
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !renewed_token {
                        // The token was revoked or rotated early: fetch a new one, once.
                        self.forget_token();
                        renewed_token = true;
                        continue;
                    }
                    let retry_after = retry_after(response.headers());
                    let operation = response
                        .headers()
                        .get("x-correlating-operationid")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text = response.text().await.unwrap_or_default();
                    classify(status, &text, retry_after, &what, operation)?
                }
            };
            match attempt {
                Attempt::Done(value) => return Ok(value),
                Attempt::Retry(retry_after, error) => {
                    retries.wait(retry_after, error, &what).await?
                }
            }
        }
    }

    /// A bot token from the cache, or a new one from the tenant's token endpoint.
    async fn token(&self) -> Result<SecretString, ChatError> {
        if let Some(cached) = self.token.lock().ok().and_then(|t| {
            t.as_ref()
                .filter(|c| Instant::now() < c.good_until)
                .map(|c| c.token.clone())
        }) {
            return Ok(cached);
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_base,
            encode(&self.credentials.tenant_id)
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.app_id.as_str()),
            ("client_secret", self.credentials.secret.expose_secret()),
            ("scope", BOT_SCOPE),
        ];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(MAX_ATTEMPT_TIMEOUT)
            .send()
            .await
            .map_err(|e| ChatError::Unavailable(format!("bot token: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(if status.is_server_error() {
                ChatError::Unavailable(format!("bot token: {code}"))
            } else {
                ChatError::Refused(format!(
                    "bot token: {code} (check the Teams secret's app id, tenant id and client secret; a single-tenant bot logs in at its own tenant)"
                ))
            });
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| ChatError::Unavailable(format!("bot token: {}", e.without_url())))?;
        let lifetime = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_MARGIN);
        let token = SecretString::from(answer.access_token);
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some(CachedToken {
                token: token.clone(),
                good_until: Instant::now() + lifetime,
            });
        }
        Ok(token)
    }

    fn forget_token(&self) {
        if let Ok(mut cached) = self.token.lock() {
            *cached = None;
        }
    }
}

/// What an answer means: done, worth retrying after a delay, or a typed error.
fn classify(
    status: StatusCode,
    text: &str,
    retry_after: Option<Duration>,
    what: &str,
    operation: Option<String>,
) -> Result<Attempt, ChatError> {
    if status.is_success() {
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).map_err(|_| {
                ChatError::Unavailable(format!(
                    "{what}: HTTP {} with a body that is not JSON",
                    status.as_u16()
                ))
            })?
        };
        return Ok(Attempt::Done(value));
    }
    let error = serde_json::from_str::<Value>(text).ok();
    let code = error
        .as_ref()
        .and_then(|e| e.pointer("/error/code"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let operation = operation
        .map(|id| format!(" (operation {id})"))
        .unwrap_or_default();
    let described = format!("{what}: HTTP {} {code}{operation}", status.as_u16());
    match status.as_u16() {
        429 => Ok(Attempt::Retry(
            retry_after,
            ChatError::RateLimited(described),
        )),
        412 | 502 | 504 => Ok(Attempt::Retry(
            retry_after,
            ChatError::Unavailable(described),
        )),
        403 if code == "MessageWritesBlocked" => Err(ChatError::Refused(format!(
            "{described}: the bot is blocked or was removed from this conversation; add the regate app to the team again"
        ))),
        413 => Err(ChatError::Refused(format!(
            "{described}: the message is too big for Teams"
        ))),
        code if code >= 500 => Err(ChatError::Unavailable(described)),
        _ => Err(ChatError::Refused(described)),
    }
}

/// A path segment: conversation ids hold `:`, `@` and `;`.
/// The connector path of one activity of a conversation.
fn activity_path(conversation: &str, activity_id: &str) -> String {
    format!(
        "v3/conversations/{}/activities/{}",
        encode(conversation),
        encode(activity_id)
    )
}

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(hosts: &[&str]) -> Connector {
        Connector::new(
            reqwest::Client::new(),
            BotCredentials {
                app_id: "app".into(),
                tenant_id: "tenant".into(),
                secret: SecretString::from("s3cret"),
            },
            LOGIN_BASE,
            hosts.iter().map(|h| h.to_string()).collect(),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn tokens_go_only_to_allowed_https_hosts() {
        let c = connector(&SERVICE_HOSTS);
        assert!(c
            .checked_base("https://smba.trafficmanager.net/amer/tenant/")
            .is_ok());
        for bad in [
            "https://evil.example/amer/",
            "http://smba.trafficmanager.net/amer/",
            "https://smba.trafficmanager.net.evil.example/",
            "not a url",
        ] {
            assert!(c.checked_base(bad).is_err(), "{bad} was allowed");
        }
        let local = connector(&["127.0.0.1"]);
        let base = local.checked_base("http://127.0.0.1:5010/amer/t").unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:5010/amer/t/");
    }

    #[test]
    fn statuses_map_to_retries_and_typed_errors() {
        let retried = |status: u16, after: Option<Duration>| match classify(
            StatusCode::from_u16(status).unwrap(),
            "",
            after,
            "x",
            None,
        ) {
            Ok(Attempt::Retry(delay, _)) => Some(delay),
            _ => None,
        };
        assert_eq!(
            retried(429, Some(Duration::from_secs(2))),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(retried(429, None), Some(None), "no Retry-After: backoff");
        for status in [412, 502, 504] {
            assert_eq!(retried(status, None), Some(None), "{status}");
        }
        let blocked = classify(
            StatusCode::FORBIDDEN,
            r#"{"error":{"code":"MessageWritesBlocked","message":"blocked"}}"#,
            None,
            "x",
            Some("op-1".into()),
        );
        assert!(
            matches!(blocked, Err(ChatError::Refused(ref m)) if m.contains("add the regate app") && m.contains("op-1")),
            "{}",
            blocked.err().map(|e| e.to_string()).unwrap_or_default()
        );
        let big = classify(StatusCode::PAYLOAD_TOO_LARGE, "", None, "x", None);
        assert!(matches!(big, Err(ChatError::Refused(ref m)) if m.contains("too big")));
        let down = classify(StatusCode::SERVICE_UNAVAILABLE, "", None, "x", None);
        assert!(matches!(down, Err(ChatError::Unavailable(_))));
    }

    #[test]
    fn conversation_ids_are_one_path_segment() {
        assert_eq!(
            encode("19:abc@thread.tacv2;messageid=1"),
            "19%3Aabc%40thread.tacv2%3Bmessageid%3D1"
        );
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let c = connector(&SERVICE_HOSTS);
        assert!(!format!("{:?}", c.credentials).contains("s3cret"));
    }
}
