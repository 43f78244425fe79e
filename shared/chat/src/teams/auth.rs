//! Verifies that an inbound activity was sent by the Bot Framework for regate's bot, exactly
//! as the Bot Connector authentication document says: a bearer JWT signed RS256 by a key from
//! the Bot Framework's OpenID metadata, issued by `https://api.botframework.com` for our app
//! id, within 5 minutes of skew, signed by a key endorsed for the activity's channel (which
//! must be `msteams`), and carrying a `serviceurl` claim equal to the activity's `serviceUrl`.
//! Keys are cached for a day; an unknown `kid` re-fetches them, at most once per interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::activity::{Envelope, TEAMS_CHANNEL};

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
struct Metadata {
    jwks_uri: String,
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

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, SigningKey>,
    fetched: Option<Instant>,
    fetched_for_unknown: Option<Instant>,
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
    unknown_key_refetch: Duration,
    keys: tokio::sync::Mutex<KeySet>,
}

impl BotAuthenticator {
    /// Checks tokens for bot `app_id` against the keys published at `metadata_url`.
    pub fn new(app_id: &str, metadata_url: &str, http: reqwest::Client) -> Self {
        Self {
            app_id: app_id.to_string(),
            metadata_url: metadata_url.to_string(),
            http,
            unknown_key_refetch: UNKNOWN_KEY_REFETCH,
            keys: tokio::sync::Mutex::default(),
        }
    }

    /// How often an unknown `kid` may make it fetch the keys again.
    pub fn with_unknown_key_refetch(mut self, every: Duration) -> Self {
        self.unknown_key_refetch = every;
        self
    }

    /// Verifies the `Authorization` header of an activity whose body claims `envelope`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        envelope: &Envelope,
    ) -> Result<(), AuthError> {
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
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[BOT_FRAMEWORK_ISSUER]);
        validation.set_audience(&[&self.app_id]);
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        let endorsements = {
            let keys = self.keys_with(&kid).await?;
            let key = keys.keys.get(&kid).ok_or_else(|| {
                unauthorized("the token's signing key is not a Bot Framework key")
            })?;
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
            key.endorsements.clone()
        };
        if envelope.channel_id != TEAMS_CHANNEL {
            return Err(AuthError::Forbidden(format!(
                "activities from channel {:?} are not accepted; only {TEAMS_CHANNEL}",
                envelope.channel_id
            )));
        }
        if !endorsements.iter().any(|e| e == &envelope.channel_id) {
            return Err(AuthError::Forbidden(format!(
                "the signing key is not endorsed for {}",
                envelope.channel_id
            )));
        }
        Ok(())
    }

    /// The key set, fetched again when it is a day old, or when it lacks `kid` and the last
    /// fetch for an unknown key is long enough ago.
    async fn keys_with(&self, kid: &str) -> Result<tokio::sync::MutexGuard<'_, KeySet>, AuthError> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|at| at.elapsed() >= KEYS_MAX_AGE);
        let may_refetch = keys
            .fetched_for_unknown
            .is_none_or(|at| at.elapsed() >= self.unknown_key_refetch);
        if stale || (!keys.keys.contains_key(kid) && may_refetch) {
            if !stale {
                keys.fetched_for_unknown = Some(Instant::now());
            }
            keys.keys = self.fetch().await?;
            keys.fetched = Some(Instant::now());
        }
        Ok(keys)
    }

    async fn fetch(&self) -> Result<HashMap<String, SigningKey>, AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::Unavailable(e.without_url().to_string());
        let metadata: Metadata = self
            .http
            .get(&self.metadata_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let jwks: Jwks = self
            .http
            .get(&metadata.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
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
        tracing::info!(keys = keys.len(), "fetched the Bot Framework signing keys");
        Ok(keys)
    }
}
