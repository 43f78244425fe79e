//! Verifies that an inbound activity was sent by the Bot Framework for regate's bot, exactly
//! as the Bot Connector authentication document says: a bearer JWT signed RS256 by a key from
//! the Bot Framework's OpenID metadata, issued by `https://api.botframework.com` for our app
//! id, within 5 minutes of skew, signed by a key endorsed for the activity's channel (which
//! must be `msteams`), and carrying a `serviceurl` claim equal to the activity's `serviceUrl`.
//! Keys are cached for a day; an unknown `kid` re-fetches them, at most once per interval. A
//! fetch is bounded in time and runs without holding the cache, so a slow metadata endpoint
//! stalls no click whose key is known; when a refresh fails, the keys in hand are served for up
//! to a day past their age.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::activity::{Envelope, TEAMS_CHANNEL};
use crate::jwks::{fetch_jwks, KeyCache, KeyIds, KeyTimes};

/// The issuer of tokens the Bot Framework sends to bots.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Where the Bot Framework publishes its signing keys.
pub const BOT_FRAMEWORK_METADATA: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// Allowed clock skew, as the Bot Framework SDKs allow.
pub const CLOCK_SKEW_SECONDS: u64 = 300;
/// Keys are fetched again after this long, even when every `kid` is known.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// At most one fetch for an unknown `kid` this often, so forged tokens cannot make regate
/// hammer the metadata endpoint.
pub const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(60);
/// How long one fetch of the keys (the metadata, then the key set) may take.
pub const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// When a refresh fails, keys in hand are still served this long past [`KEYS_MAX_AGE`].
pub const KEYS_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why an inbound activity is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that is not valid for regate: HTTP 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A valid token, but for another channel or from a key not endorsed for it: HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The signing keys could not be fetched: HTTP 503 (the Bot Framework retries).
    #[error("cannot fetch the Bot Framework signing keys: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// A JWKS entry as the Bot Framework publishes it: an RSA key plus its `endorsements`.
#[derive(Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

struct SigningKey {
    key: DecodingKey,
    endorsements: Vec<String>,
}

/// The Bot Framework's signing keys by `kid`, with the channels each is endorsed for.
#[derive(Default)]
pub struct SigningKeys(HashMap<String, SigningKey>);

impl SigningKeys {
    /// Reads a JWKS document; RSA keys it cannot read are skipped (and logged).
    pub fn from_jwks(document: &[u8]) -> Result<Self, String> {
        let jwks: Jwks =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let (Some("RSA") | None, Some(n), Some(e)) = (jwk.kty.as_deref(), &jwk.n, &jwk.e)
            else {
                continue;
            };
            match DecodingKey::from_rsa_components(n, e) {
                Ok(key) => {
                    keys.insert(
                        jwk.kid,
                        SigningKey {
                            key,
                            endorsements: jwk.endorsements,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(kid = %jwk.kid, error = %error, "skipped an unreadable Bot Framework key")
                }
            }
        }
        Ok(Self(keys))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl KeyIds for SigningKeys {
    fn has(&self, kid: &str) -> bool {
        self.0.contains_key(kid)
    }
}

/// The `kid` an `Authorization` header's token names, after the checks that need no key:
/// a bearer token, signed RS256.
fn signing_key_id(authorization: Option<&str>) -> Result<(&str, String), AuthError> {
    let unauthorized = |why: &str| AuthError::Unauthorized(why.to_string());
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("no bearer token"))?;
    let header = decode_header(token).map_err(|e| unauthorized(&format!("token: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(unauthorized(&format!(
            "token signed with {:?}; only RS256 is accepted",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| unauthorized("the token names no signing key (kid)"))?;
    Ok((token, kid))
}

/// The checks an `Authorization` header must pass before anything else of the request is read:
/// a bearer token, signed RS256, naming its signing key. A request that fails them is refused
/// (401) before its body is parsed.
pub fn screen(authorization: Option<&str>) -> Result<(), AuthError> {
    signing_key_id(authorization).map(drop)
}

/// Checks a request's `Authorization` header against `keys` for bot `app_id`, for an activity
/// whose body claims `envelope`. Pure: the keys are fetched by [`BotAuthenticator`].
pub fn check(
    authorization: Option<&str>,
    envelope: &Envelope,
    app_id: &str,
    keys: &SigningKeys,
) -> Result<(), AuthError> {
    let unauthorized = |why: &str| AuthError::Unauthorized(why.to_string());
    let (token, kid) = signing_key_id(authorization)?;
    let key = keys
        .0
        .get(&kid)
        .ok_or_else(|| unauthorized("the token's signing key is not a Bot Framework key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[BOT_FRAMEWORK_ISSUER]);
    validation.set_audience(&[app_id]);
    validation.leeway = CLOCK_SKEW_SECONDS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
    let claims = decode::<Claims>(token, &key.key, &validation)
        .map_err(|e| unauthorized(&format!("token: {e}")))?
        .claims;
    let same_service = claims.serviceurl.as_deref().is_some_and(|claimed| {
        claimed
            .trim_end_matches('/')
            .eq_ignore_ascii_case(envelope.service_url.trim_end_matches('/'))
    });
    if !same_service {
        return Err(unauthorized(
            "the token's serviceurl claim does not match the activity's serviceUrl",
        ));
    }
    if envelope.channel_id != TEAMS_CHANNEL {
        return Err(AuthError::Forbidden(format!(
            "activities from channel {:?} are not accepted; only {TEAMS_CHANNEL}",
            envelope.channel_id
        )));
    }
    if !key.endorsements.iter().any(|e| e == &envelope.channel_id) {
        return Err(AuthError::Forbidden(format!(
            "the signing key is not endorsed for {}",
            envelope.channel_id
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    serviceurl: Option<String>,
}

pub struct BotAuthenticator {
    app_id: String,
    metadata_url: String,
    http: reqwest::Client,
    keys: KeyCache<SigningKeys>,
}

impl BotAuthenticator {
    /// Checks tokens for bot `app_id` against the keys published at `metadata_url`.
    pub fn new(app_id: &str, metadata_url: &str, http: reqwest::Client) -> Self {
        let times = KeyTimes {
            max_age: KEYS_MAX_AGE,
            unknown_key_refetch: UNKNOWN_KEY_REFETCH,
            fetch_timeout: KEY_FETCH_TIMEOUT,
            grace: KEYS_GRACE,
        };
        Self {
            app_id: app_id.to_string(),
            metadata_url: metadata_url.to_string(),
            http,
            keys: KeyCache::new(BOT_FRAMEWORK_ISSUER, times),
        }
    }

    /// How long one fetch may take, and how old keys may grow before a refresh (and, when
    /// that fails, how much older they are still served): for tests.
    pub fn with_key_times(
        mut self,
        fetch_timeout: Duration,
        max_age: Duration,
        grace: Duration,
    ) -> Self {
        self.keys.times.fetch_timeout = fetch_timeout;
        self.keys.times.max_age = max_age;
        self.keys.times.grace = grace;
        self
    }

    /// How often an unknown `kid` may make it fetch the keys again.
    pub fn with_unknown_key_refetch(mut self, every: Duration) -> Self {
        self.keys.times.unknown_key_refetch = every;
        self
    }

    /// Verifies the `Authorization` header of an activity whose body claims `envelope`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        envelope: &Envelope,
    ) -> Result<(), AuthError> {
        let (_, kid) = signing_key_id(authorization)?;
        let keys = self
            .keys
            .keys_with(&kid, self.fetch())
            .await
            .map_err(AuthError::Unavailable)?;
        check(authorization, envelope, &self.app_id, &keys)
    }

    async fn fetch(&self) -> Result<SigningKeys, String> {
        let document = fetch_jwks(&self.http, "Bot Framework", &self.metadata_url).await?;
        let keys = SigningKeys::from_jwks(&document)?;
        tracing::info!(keys = keys.len(), "fetched the Bot Framework signing keys");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regate_testkit::{bot_claims, TeamsKey};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::Instant;

    const APP: &str = "app-1";
    const SERVICE: &str = "https://smba.trafficmanager.net/amer/tenant-1/";

    fn keys(of: &[&TeamsKey]) -> SigningKeys {
        let jwks = json!({"keys": of.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        SigningKeys::from_jwks(jwks.to_string().as_bytes()).unwrap()
    }

    fn envelope(channel: &str) -> Envelope {
        Envelope {
            channel_id: channel.into(),
            service_url: SERVICE.into(),
        }
    }

    fn bearer(key: &TeamsKey, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = bot_claims(APP, SERVICE);
        change(&mut claims);
        format!("Bearer {}", key.sign(&claims))
    }

    #[test]
    fn a_bot_framework_token_for_us_passes_and_every_bad_one_is_named() {
        let teams = TeamsKey::generate("k1", &["msteams"]);
        let webchat = TeamsKey::generate("k2", &["webchat"]);
        let stranger = TeamsKey::generate("k3", &["msteams"]);
        let known = keys(&[&teams, &webchat]);
        let run = |authorization: Option<String>, channel: &str| {
            check(authorization.as_deref(), &envelope(channel), APP, &known)
        };
        assert_eq!(run(Some(bearer(&teams, |_| {})), "msteams"), Ok(()));
        // The service URL compares without a trailing slash and case.
        let loose = bearer(&teams, |c| {
            c["serviceurl"] = SERVICE.trim_end_matches('/').to_uppercase().into()
        });
        assert_eq!(run(Some(loose), "msteams"), Ok(()));
        let now = chrono::Utc::now().timestamp();
        let unauthorized: Vec<(&str, Option<String>)> = vec![
            ("none", None),
            ("not bearer", Some("Basic x".into())),
            ("garbage", Some("Bearer not.a.jwt".into())),
            (
                "audience",
                Some(bearer(&teams, |c| c["aud"] = "other".into())),
            ),
            (
                "issuer",
                Some(bearer(&teams, |c| c["iss"] = "https://sts.example".into())),
            ),
            (
                "expired",
                Some(bearer(&teams, |c| c["exp"] = (now - 400).into())),
            ),
            (
                "not yet",
                Some(bearer(&teams, |c| c["nbf"] = (now + 400).into())),
            ),
            (
                "service",
                Some(bearer(&teams, |c| c["serviceurl"] = "https://x/".into())),
            ),
            ("unknown key", Some(bearer(&stranger, |_| {}))),
        ];
        for (case, authorization) in unauthorized {
            assert!(
                matches!(
                    run(authorization, "msteams"),
                    Err(AuthError::Unauthorized(_))
                ),
                "{case}"
            );
        }
        // Within the 5-minute skew, an expired token still passes.
        let skewed = bearer(&teams, |c| c["exp"] = (now - 200).into());
        assert_eq!(run(Some(skewed), "msteams"), Ok(()));
        assert!(matches!(
            run(Some(bearer(&webchat, |_| {})), "msteams"),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            run(Some(bearer(&teams, |_| {})), "webchat"),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn a_jwks_with_odd_keys_keeps_the_readable_rsa_ones() {
        let good = TeamsKey::generate("good", &["msteams"]);
        let document = json!({"keys": [good.jwk, {"kid": "ec", "kty": "EC", "x": "a", "y": "b"},
            {"kid": "broken", "kty": "RSA", "n": "%%%", "e": "AQAB"}]});
        let keys = SigningKeys::from_jwks(document.to_string().as_bytes()).unwrap();
        assert!(keys.has("good"));
        assert!(!keys.has("ec"));
        assert!(SigningKeys::from_jwks(b"[]").is_err());
    }

    /// A local stand-in for the Bot Framework's metadata and key endpoints: it serves `jwks`,
    /// or, as `mode` says, answers 500 (1) or never answers (2). Returns the metadata URL.
    async fn key_server(jwks: Value, mode: Arc<std::sync::atomic::AtomicU8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metadata = json!({"jwks_uri": format!("{base}/keys")}).to_string();
        let jwks = jwks.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (metadata, jwks, mode) = (metadata.clone(), jwks.clone(), mode.clone());
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let read = socket.read(&mut request).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&request[..read]).to_string();
                    let (status, body) = match mode.load(std::sync::atomic::Ordering::SeqCst) {
                        2 => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        1 => ("500 Internal Server Error", String::new()),
                        _ if request.starts_with("GET /keys") => ("200 OK", jwks),
                        _ => ("200 OK", metadata),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("{base}/metadata")
    }

    #[tokio::test]
    async fn a_slow_key_endpoint_neither_stalls_known_keys_nor_outlasts_its_timeout() {
        let known = TeamsKey::generate("known", &["msteams"]);
        let jwks = json!({"keys": [known.jwk.clone()]});
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let url = key_server(jwks, mode.clone()).await;
        let auth = Arc::new(
            BotAuthenticator::new(APP, &url, reqwest::Client::new())
                .with_unknown_key_refetch(Duration::ZERO)
                .with_key_times(Duration::from_millis(500), KEYS_MAX_AGE, KEYS_GRACE),
        );
        let good = bearer(&known, |_| {});
        auth.verify(Some(&good), &envelope("msteams"))
            .await
            .unwrap();
        // The endpoint hangs now. An unknown key makes a fetch that ends at its timeout...
        mode.store(2, std::sync::atomic::Ordering::SeqCst);
        let stranger = bearer(&TeamsKey::generate("unknown", &["msteams"]), |_| {});
        let started = Instant::now();
        let slow = {
            let auth = auth.clone();
            tokio::spawn(async move { auth.verify(Some(&stranger), &envelope("msteams")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...while a click signed with a known key is checked at once (a wait on the fetch
        // would take the rest of its 500 ms).
        let known = Instant::now();
        auth.verify(Some(&good), &envelope("msteams"))
            .await
            .unwrap();
        assert!(
            known.elapsed() < Duration::from_millis(250),
            "a known key waited on the fetch: {:?}",
            known.elapsed()
        );
        let refused = slow.await.unwrap();
        assert!(
            matches!(refused, Err(AuthError::Unauthorized(_))),
            "{refused:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn keys_whose_refresh_fails_are_served_within_their_grace_and_not_after() {
        let known = TeamsKey::generate("known", &["msteams"]);
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let url = key_server(json!({"keys": [known.jwk.clone()]}), mode.clone()).await;
        let good = bearer(&known, |_| {});
        // Keys are stale at once; a failed refresh keeps them for a grace of an hour...
        let within = BotAuthenticator::new(APP, &url, reqwest::Client::new()).with_key_times(
            Duration::from_secs(1),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        within
            .verify(Some(&good), &envelope("msteams"))
            .await
            .unwrap();
        mode.store(1, std::sync::atomic::Ordering::SeqCst);
        within
            .verify(Some(&good), &envelope("msteams"))
            .await
            .unwrap();
        // ...and not without one.
        mode.store(0, std::sync::atomic::Ordering::SeqCst);
        let without = BotAuthenticator::new(APP, &url, reqwest::Client::new()).with_key_times(
            Duration::from_secs(1),
            Duration::ZERO,
            Duration::ZERO,
        );
        without
            .verify(Some(&good), &envelope("msteams"))
            .await
            .unwrap();
        mode.store(1, std::sync::atomic::Ordering::SeqCst);
        let refused = without.verify(Some(&good), &envelope("msteams")).await;
        assert!(
            matches!(refused, Err(AuthError::Unavailable(_))),
            "{refused:?}"
        );
        // Right after a failed fetch, with no usable keys, a click is answered at once (503),
        // not made to wait on a fetch of its own: the endpoint hangs now.
        mode.store(2, std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        let refused = without.verify(Some(&good), &envelope("msteams")).await;
        assert!(
            matches!(refused, Err(AuthError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}
