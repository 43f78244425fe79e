//! Signing keys an issuer publishes (OpenID discovery, then a JWKS), cached with the rules
//! both the Bot Framework check and the identity-token check follow: keys are fetched again
//! when they grow old; an unknown `kid` fetches them again at most once per interval, so forged
//! tokens cannot make regate hammer the issuer; a fetch is bounded in time and runs without
//! holding the cache, so a slow issuer stalls nothing whose key is known; and when a refresh
//! fails, the keys in hand are served for a grace period past their age.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How old keys may grow, how often an unknown `kid` may fetch them again, how long a fetch
/// may take, and how long keys are served past their age when a refresh fails.
#[derive(Debug, Clone, Copy)]
pub struct KeyTimes {
    pub max_age: Duration,
    pub unknown_key_refetch: Duration,
    pub fetch_timeout: Duration,
    pub grace: Duration,
}

impl KeyTimes {
    /// How long keys serve after they were fetched when they cannot be refreshed.
    fn usable_for(&self) -> Duration {
        self.max_age.saturating_add(self.grace)
    }
}

/// A key set that can say whether it has a `kid`.
pub trait KeyIds: Default {
    fn has(&self, kid: &str) -> bool;
}

impl KeyIds for regate_core::identity::IssuerKeys {
    fn has(&self, kid: &str) -> bool {
        regate_core::identity::IssuerKeys::has(self, kid)
    }
}

struct CacheState<T> {
    keys: Arc<T>,
    /// When `keys` were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last started for a reason other than age (an unknown `kid`), or after
    /// a failed refresh: at most one such fetch per `unknown_key_refetch`.
    fetched_for_unknown: Option<Instant>,
    /// When the last fetch failed: with no usable keys, the next fetch waits as long, so an
    /// outage does not make every caller wait on a fetch of its own.
    failed: Option<Instant>,
}

/// One issuer's keys, cached (see the module's rules).
pub struct KeyCache<T> {
    /// Who publishes them, for the logs.
    issuer: String,
    pub times: KeyTimes,
    state: Mutex<CacheState<T>>,
}

impl<T: KeyIds> KeyCache<T> {
    pub fn new(issuer: &str, times: KeyTimes) -> Self {
        Self {
            issuer: issuer.to_string(),
            times,
            state: Mutex::new(CacheState {
                keys: Arc::new(T::default()),
                fetched: None,
                fetched_for_unknown: None,
                failed: None,
            }),
        }
    }

    /// Whether the last fetch failed (the keys in hand, if any, are older).
    pub fn last_fetch_failed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match (state.failed, state.fetched) {
            (Some(failed), Some(fetched)) => failed > fetched,
            (failed, _) => failed.is_some(),
        }
    }

    /// The keys to check `kid` with: those in hand, fetched again (by `fetch`) when they are
    /// old, or when they lack `kid` and the last such fetch is long enough ago. `Err` says why
    /// no keys can be had (the issuer is unreachable and nothing usable is in hand).
    pub async fn keys_with<F>(&self, kid: &str, fetch: F) -> Result<Arc<T>, String>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let times = self.times;
        let (keys, fetched) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = state.fetched.is_none_or(|at| at.elapsed() >= times.max_age);
            let may_refetch = state
                .fetched_for_unknown
                .is_none_or(|at| at.elapsed() >= times.unknown_key_refetch);
            let usable = state
                .fetched
                .is_some_and(|at| at.elapsed() < times.usable_for());
            let failed_lately = state
                .failed
                .is_some_and(|at| at.elapsed() < times.unknown_key_refetch);
            if !usable && failed_lately {
                return Err("the last fetch of the keys failed moments ago".into());
            }
            let refetch = if stale && usable {
                may_refetch
            } else {
                stale || (!state.keys.has(kid) && may_refetch)
            };
            if !refetch {
                return Ok(state.keys.clone());
            }
            if !stale || usable {
                state.fetched_for_unknown = Some(Instant::now());
            }
            (state.keys.clone(), state.fetched)
        };
        let fetched_now = tokio::time::timeout(times.fetch_timeout, fetch)
            .await
            .unwrap_or_else(|_| Err("the key fetch timed out".into()));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match fetched_now {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                state.keys = fresh.clone();
                state.fetched = Some(Instant::now());
                state.failed = None;
                Ok(fresh)
            }
            Err(error) => {
                state.failed = Some(Instant::now());
                if fetched.is_some_and(|at| at.elapsed() < times.usable_for()) {
                    tracing::warn!(issuer = %self.issuer, error = %error, "could not refresh the signing keys; using those in hand");
                    return Ok(keys);
                }
                Err(error)
            }
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The JWKS document `discovery_url` (an OpenID discovery document) points to.
#[tracing::instrument(level = "debug", name = "round_trip", skip_all, fields(rpc.service = %issuer, rpc.method = "keys"))]
pub async fn fetch_jwks(
    http: &reqwest::Client,
    issuer: &str,
    discovery_url: &str,
) -> Result<Vec<u8>, String> {
    let get = async |url: &str| http.get(url).send().await?.error_for_status();
    let unavailable = |e: reqwest::Error| e.without_url().to_string();
    let discovery: Discovery = get(discovery_url)
        .await
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    let document = get(&discovery.jwks_uri)
        .await
        .map_err(unavailable)?
        .bytes()
        .await
        .map_err(unavailable)?;
    Ok(document.to_vec())
}
