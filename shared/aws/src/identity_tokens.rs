//! Checks the OIDC identity tokens CI systems issue (GitHub Actions, GitLab) against the trusted
//! issuers' published keys ([`regate_core::identity::check`] says what is checked). Each
//! issuer's keys are found through its OpenID discovery document and cached as the Bot
//! Framework's are ([`regate_chat::jwks`]).

use std::collections::HashMap;
use std::time::Duration;

use regate_chat::jwks::{fetch_jwks, KeyCache, KeyTimes};
use regate_core::identity::{
    check, screen, IdentityTokens, IssuerKeys, IssuerUnavailable, ProvenIdentity, VerifiedIdentity,
};

use crate::config::{ConfigError, Vars};

/// The audience a token must be for, unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "regate";

const KEY_TIMES: KeyTimes = KeyTimes {
    max_age: Duration::from_secs(60 * 60),
    unknown_key_refetch: Duration::from_secs(60),
    fetch_timeout: Duration::from_secs(3),
    grace: Duration::from_secs(24 * 60 * 60),
};

/// Which issuers are trusted, and the audience their tokens must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// `REGATE_TRUSTED_ISSUERS`, comma-separated; empty, every token is refused.
    pub issuers: Vec<String>,
    /// `REGATE_IDENTITY_AUDIENCE` (`regate`).
    pub audience: String,
    /// How often at most an unknown `kid` fetches an issuer's keys again
    /// (`REGATE_IDENTITY_KEY_REFETCH_SECONDS`, 60; 0 on a local stack, whose tests make keys).
    pub key_refetch: Duration,
}

impl IdentitySettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let name = "REGATE_TRUSTED_ISSUERS";
        let mut issuers = Vec::new();
        for issuer in vars.optional(name).unwrap_or_default().split(',') {
            let issuer = issuer.trim().trim_end_matches('/');
            if issuer.is_empty() {
                continue;
            }
            // Only a local stack's stand-in is reached without TLS.
            let local =
                issuer.starts_with("http://127.0.0.1:") || issuer.starts_with("http://localhost:");
            if !issuer.starts_with("https://") && !local {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    problem: format!("issuer {issuer:?} is not an https:// URL"),
                });
            }
            issuers.push(issuer.to_string());
        }
        Ok(Self {
            issuers,
            audience: vars.or_default("REGATE_IDENTITY_AUDIENCE", DEFAULT_AUDIENCE),
            key_refetch: Duration::from_secs(vars.whole_number(
                "REGATE_IDENTITY_KEY_REFETCH_SECONDS",
                KEY_TIMES.unknown_key_refetch.as_secs(),
            )?),
        })
    }
}

/// Checks identity tokens against the trusted issuers' published keys.
pub struct OidcVerifier {
    audience: String,
    http: reqwest::Client,
    /// The trusted issuers, each with its cached keys.
    issuers: HashMap<String, KeyCache<IssuerKeys>>,
}

impl OidcVerifier {
    pub fn new(settings: &IdentitySettings, http: reqwest::Client) -> Self {
        let issuers = settings
            .issuers
            .iter()
            .map(|issuer| {
                let times = KeyTimes {
                    unknown_key_refetch: settings.key_refetch,
                    ..KEY_TIMES
                };
                (issuer.clone(), KeyCache::new(issuer, times))
            })
            .collect();
        Self {
            audience: settings.audience.clone(),
            http,
            issuers,
        }
    }

    async fn fetch(&self, issuer: &str) -> Result<IssuerKeys, String> {
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let document = fetch_jwks(&self.http, issuer, &discovery).await?;
        let keys = IssuerKeys::from_jwks(&document)?;
        tracing::info!(issuer = %issuer, keys = keys.len(), "fetched an identity token issuer's keys");
        Ok(keys)
    }

    async fn verify(
        &self,
        token: &str,
    ) -> Result<Result<VerifiedIdentity, String>, IssuerUnavailable> {
        let screened = match screen(token, |issuer| self.issuers.contains_key(issuer)) {
            Ok(screened) => screened,
            Err(why) => return Ok(Err(why)),
        };
        let Some(cache) = self.issuers.get(&screened.issuer) else {
            return Ok(Err("the identity token's issuer is not trusted".into()));
        };
        let unavailable = |why: String| IssuerUnavailable(format!("{}: {why}", screened.issuer));
        let keys = cache
            .keys_with(&screened.kid, self.fetch(&screened.issuer))
            .await
            .map_err(unavailable)?;
        // A key the issuer may have published since the keys in hand, which cannot be fetched
        // now: the issuer is out, the token not refused.
        if !keys.has(&screened.kid) && cache.last_fetch_failed() {
            return Err(unavailable(format!(
                "its keys cannot be fetched to find kid {:?}",
                screened.kid
            )));
        }
        let now = chrono::Utc::now().timestamp();
        Ok(check(token, &screened, &self.audience, &keys, now))
    }
}

impl IdentityTokens for OidcVerifier {
    async fn check(&self, token: &str) -> Result<ProvenIdentity, IssuerUnavailable> {
        Ok(match self.verify(token).await? {
            Ok(verified) => ProvenIdentity::Verified(verified),
            Err(why) => {
                tracing::warn!(error = %why, "an identity token was refused");
                ProvenIdentity::refused(why)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn trusted_issuers_are_https_or_local_and_the_audience_defaults_to_regate() {
        let read = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let lookup = |name: &str| map.get(name).cloned();
            IdentitySettings::from_vars(&Vars::new(&lookup))
        };
        let settings = read(&[(
            "REGATE_TRUSTED_ISSUERS",
            "https://token.actions.githubusercontent.com/, https://gitlab.com,,http://127.0.0.1:5010/oidc",
        )])
        .unwrap();
        assert_eq!(
            settings.issuers,
            [
                "https://token.actions.githubusercontent.com",
                "https://gitlab.com",
                "http://127.0.0.1:5010/oidc"
            ]
        );
        assert_eq!(settings.audience, "regate");
        assert_eq!(settings.key_refetch, Duration::from_secs(60));
        assert_eq!(read(&[]).unwrap().issuers, Vec::<String>::new());
        let refused = read(&[("REGATE_TRUSTED_ISSUERS", "http://gitlab.example.com")]).unwrap_err();
        assert!(
            refused.to_string().contains("REGATE_TRUSTED_ISSUERS"),
            "{refused}"
        );
        let custom = read(&[("REGATE_IDENTITY_AUDIENCE", "sts.example")]).unwrap();
        assert_eq!(custom.audience, "sts.example");
    }
}
