//! Who asked, proven: a request may carry a CI system's OIDC identity token
//! (`request.identity_token`). The evaluator takes the token out of the request before anything
//! else sees it, has it checked ([`IdentityTokens`]), and gives the policy what the check found
//! as `input.identity`. The token itself goes nowhere: only the issuer, the key id, the subject
//! and the claims are kept, with the request.

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request field that carries the token.
pub const TOKEN_FIELD: &str = "identity_token";
/// A token longer than this is refused unread (GitHub's are about 1 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the check of a request's identity token found: `input.identity` in the policy input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProvenIdentity {
    Verified(VerifiedIdentity),
    /// The token failed a check: the policy decides, and sees why.
    Refused {
        error: String,
    },
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedIdentity {
    /// `iss`, one of the trusted issuers.
    pub issuer: String,
    /// `sub`, for GitHub `repo:acme/payments:ref:refs/heads/main` and the like.
    pub subject: String,
    /// The `kid` of the issuer's key that signed it.
    pub key_id: String,
    /// Every claim of the token's payload, as signed.
    pub claims: Map<String, Value>,
}

impl ProvenIdentity {
    pub fn refused(error: impl Into<String>) -> Self {
        Self::Refused {
            error: error.into(),
        }
    }
}

/// The issuer could not be asked for its keys: the evaluation is retried, never decided
/// without them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the identity token's issuer cannot be reached: {0}")]
pub struct IssuerUnavailable(pub String);

/// Checks identity tokens. A token that fails a check is an answer ([`ProvenIdentity::Refused`]),
/// not an error; only an issuer that cannot be reached is.
pub trait IdentityTokens: Send + Sync {
    fn check(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<ProvenIdentity, IssuerUnavailable>> + Send;
}

/// No issuer is trusted: every token is refused, saying so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrustedIssuers;

impl IdentityTokens for NoTrustedIssuers {
    async fn check(&self, _token: &str) -> Result<ProvenIdentity, IssuerUnavailable> {
        Ok(ProvenIdentity::refused(
            "no identity token issuer is trusted here (TrustedIssuers is empty)",
        ))
    }
}

/// Splits the token off a raw request: the request without it, and the token if one was
/// given. A token that is not a string, or is too long, is refused here.
pub fn take_token(raw: &Value) -> (Value, Option<Result<String, ProvenIdentity>>) {
    let Some(object) = raw.as_object() else {
        return (raw.clone(), None);
    };
    if !object.contains_key(TOKEN_FIELD) {
        return (raw.clone(), None);
    }
    let mut rest = object.clone();
    let token = match rest.remove(TOKEN_FIELD) {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if token.len() > MAX_TOKEN_BYTES => {
            Some(Err(ProvenIdentity::refused(format!(
                "the identity token is {} bytes; the limit is {MAX_TOKEN_BYTES}",
                token.len()
            ))))
        }
        Some(Value::String(token)) => Some(Ok(token)),
        Some(_) => Some(Err(ProvenIdentity::refused(
            "request.identity_token must be a string (a JWT)",
        ))),
    };
    (Value::Object(rest), token)
}

/// Allowed clock skew for `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// One issuer's keys by `kid`, each with the one algorithm it signs with.
#[derive(Default, Clone)]
pub struct IssuerKeys(HashMap<String, (Algorithm, DecodingKey)>);

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: Option<String>,
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl IssuerKeys {
    /// Reads a JWKS document: RSA keys (RS256) and P-256 keys (ES256) with a `kid`; others are
    /// skipped.
    pub fn from_jwks(document: &[u8]) -> Result<Self, String> {
        let jwks: Jwks =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let key = match (
                jwk.kty.as_str(),
                jwk.crv.as_deref(),
                &jwk.n,
                &jwk.e,
                &jwk.x,
                &jwk.y,
            ) {
                ("RSA", _, Some(n), Some(e), _, _) => DecodingKey::from_rsa_components(n, e)
                    .ok()
                    .map(|k| (Algorithm::RS256, k)),
                ("EC", Some("P-256"), _, _, Some(x), Some(y)) => {
                    DecodingKey::from_ec_components(x, y)
                        .ok()
                        .map(|k| (Algorithm::ES256, k))
                }
                _ => None,
            };
            if let (Some(kid), Some(key)) = (jwk.kid, key) {
                keys.insert(kid, key);
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

    pub fn has(&self, kid: &str) -> bool {
        self.0.contains_key(kid)
    }
}

/// A token's header and issuer, once they passed the checks that need no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    pub algorithm: Algorithm,
    pub kid: String,
    /// A trusted issuer, without a trailing slash.
    pub issuer: String,
}

fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| format!("the identity token's {what} is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("the identity token's {what} is not a JSON object")),
    }
}

/// The checks a token must pass before any key is fetched: a signed JWT, `alg` RS256 or ES256,
/// a `kid`, and an issuer that `trusted` names.
pub fn screen(token: &str, trusted: impl Fn(&str) -> bool) -> Result<Screened, String> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the identity token is not a signed JWT (three dot-separated parts)".into());
    };
    let header = json_part(header, "header")?;
    let payload = json_part(payload, "payload")?;
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let algorithm = match text(&header, "alg").as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => {
            return Err(format!(
                "the identity token is signed with alg {other:?}; only RS256 and ES256 are accepted"
            ))
        }
    };
    let kid = text(&header, "kid");
    if kid.is_empty() {
        return Err("the identity token names no signing key (kid)".into());
    }
    let claimed = text(&payload, "iss");
    let issuer = claimed.trim_end_matches('/');
    if !trusted(issuer) {
        return Err(format!(
            "the identity token's issuer {claimed:?} is not trusted (TrustedIssuers)"
        ));
    }
    Ok(Screened {
        algorithm,
        kid,
        issuer: issuer.to_string(),
    })
}

/// Why `jsonwebtoken` refused a token, for the policy and the requester.
fn refusal(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => "the identity token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the identity token is for another audience (aud)".into(),
        ErrorKind::InvalidIssuer => "the identity token's issuer (iss) is not trusted".into(),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("the identity token has no {claim} claim")
        }
        other => format!("the identity token is invalid: {other:?}"),
    }
}

/// Checks a screened token against its issuer's `keys` at `now` (Unix seconds): the
/// signature, `iss`, `aud`, `sub`, and `exp`, `nbf` and `iat` with 60 s of skew.
pub fn check(
    token: &str,
    screened: &Screened,
    audience: &str,
    keys: &IssuerKeys,
    now: i64,
) -> Result<VerifiedIdentity, String> {
    let (issuer, kid) = (&screened.issuer, &screened.kid);
    let Some((key_algorithm, key)) = keys.0.get(kid) else {
        return Err(format!(
            "the identity token is signed by a key {issuer} does not publish (kid {kid:?})"
        ));
    };
    if *key_algorithm != screened.algorithm {
        return Err(format!(
            "the identity token says alg {:?} but key {kid:?} signs {key_algorithm:?}",
            screened.algorithm
        ));
    }
    let mut validation = Validation::new(screened.algorithm);
    validation.set_issuer(&[issuer.clone(), format!("{issuer}/")]);
    validation.set_audience(&[audience]);
    // Times are checked below, against `now`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<Map<String, Value>>(token.trim(), key, &validation)
        .map_err(|e| refusal(&e))?
        .claims;
    let time = |claim: &str| claims.get(claim).and_then(Value::as_i64);
    let expires = time("exp").ok_or("the identity token's exp is not a number")?;
    if now > expires.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err("the identity token has expired (exp)".into());
    }
    if time("nbf").is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECONDS)) {
        return Err("the identity token is not valid yet (nbf)".into());
    }
    let issued = time("iat").ok_or("the identity token has no iat claim")?;
    if issued > now.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err("the identity token was issued in the future (iat)".into());
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(VerifiedIdentity {
        issuer: issuer.clone(),
        subject,
        key_id: kid.clone(),
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_token_is_taken_out_of_the_request_whatever_it_holds() {
        let (rest, token) = take_token(&json!({"id": "r1", "identity_token": "a.b.c"}));
        assert_eq!(rest, json!({"id": "r1"}));
        assert_eq!(token, Some(Ok("a.b.c".to_string())));

        let (rest, token) = take_token(&json!({"id": "r1", "identity_token": 7}));
        assert_eq!(rest, json!({"id": "r1"}));
        assert!(matches!(token, Some(Err(ProvenIdentity::Refused { .. }))));

        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        let (rest, token) = take_token(&json!({"identity_token": long}));
        assert_eq!(rest, json!({}));
        match token {
            Some(Err(ProvenIdentity::Refused { error })) => assert!(error.contains("limit")),
            other => panic!("{other:?}"),
        }

        let (rest, token) = take_token(&json!({"id": "r1", "identity_token": null}));
        assert_eq!(rest, json!({"id": "r1"}));
        assert_eq!(token, None);
        assert_eq!(take_token(&json!({"id": "r1"})).1, None);
    }

    #[test]
    fn a_proven_identity_reads_back_as_what_it_was() {
        let verified = ProvenIdentity::Verified(VerifiedIdentity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "repo:acme/payments:ref:refs/heads/main".into(),
            key_id: "k1".into(),
            claims: json!({"actor": "alice"}).as_object().unwrap().clone(),
        });
        let refused = ProvenIdentity::refused("expired");
        for identity in [verified, refused] {
            let json = serde_json::to_value(&identity).unwrap();
            assert_eq!(
                serde_json::from_value::<ProvenIdentity>(json).unwrap(),
                identity
            );
        }
    }

    mod tokens {
        #![allow(clippy::unwrap_used, clippy::panic)]

        use super::super::*;
        use regate_testkit::{github_claims, JwtKey};
        use serde_json::json;

        const ISSUER: &str = "https://token.actions.githubusercontent.com";

        fn keys(of: &[&JwtKey]) -> IssuerKeys {
            let jwks = json!({"keys": of.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
            IssuerKeys::from_jwks(jwks.to_string().as_bytes()).unwrap()
        }

        fn claims() -> Value {
            github_claims(
                ISSUER,
                "regate",
                "alice-gh",
                "acme/payments",
                "refs/heads/main",
            )
        }

        fn now() -> i64 {
            chrono::Utc::now().timestamp()
        }

        fn verify(token: &str, known: &IssuerKeys) -> Result<VerifiedIdentity, String> {
            let screened = screen(token, |issuer| issuer == ISSUER)?;
            check(token, &screened, "regate", known, now())
        }

        fn unsigned(header: Value, claims: &Value, signature: &str) -> String {
            let part =
                |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.{signature}", part(&header), part(claims))
        }

        #[test]
        fn a_github_token_signed_rs256_or_es256_by_a_published_key_is_verified_with_its_claims() {
            let rsa = JwtKey::rsa("r1");
            let ec = JwtKey::ec("e1");
            let known = keys(&[&rsa, &ec]);
            for key in [&rsa, &ec] {
                let verified = verify(&key.sign(&claims()), &known).unwrap();
                assert_eq!(verified.issuer, ISSUER);
                assert_eq!(verified.subject, "repo:acme/payments:ref:refs/heads/main");
                assert_eq!(verified.key_id, key.kid);
                assert_eq!(verified.claims["actor"], "alice-gh");
                assert_eq!(verified.claims["repository"], "acme/payments");
            }
        }

        #[test]
        fn every_bad_token_is_refused_naming_why() {
            let key = JwtKey::ec("e1");
            let known = keys(&[&key]);
            let now = now();
            let with = |change: &dyn Fn(&mut Value)| {
                let mut c = claims();
                change(&mut c);
                key.sign(&c)
            };
            let forger = JwtKey::ec("e1");
            let stranger = JwtKey::ec("e9");
            let cases: Vec<(String, &str)> = vec![
                (forger.sign(&claims()), "signature does not verify"),
                (stranger.sign(&claims()), "does not publish (kid \"e9\")"),
                (
                    with(&|c| c["aud"] = json!("someone-else")),
                    "another audience",
                ),
                (with(&|c| c["exp"] = json!(now - 61)), "expired"),
                (with(&|c| c["exp"] = json!("tomorrow")), "exp"),
                (with(&|c| c["nbf"] = json!(now + 120)), "not valid yet"),
                (
                    with(&|c| c["iat"] = json!(now + 120)),
                    "issued in the future",
                ),
                (
                    with(&|c| c["iss"] = json!("https://evil.example")),
                    "is not trusted",
                ),
                (
                    with(&|c| {
                        c.as_object_mut().unwrap().remove("sub");
                    }),
                    "no sub claim",
                ),
                (
                    with(&|c| {
                        c.as_object_mut().unwrap().remove("iat");
                    }),
                    "no iat claim",
                ),
                (
                    unsigned(json!({"alg": "none", "kid": "e1"}), &claims(), ""),
                    "alg \"none\"",
                ),
                (
                    unsigned(json!({"alg": "HS256", "kid": "e1"}), &claims(), "c2ln"),
                    "alg \"HS256\"",
                ),
                (
                    unsigned(json!({"alg": "ES256"}), &claims(), "c2ln"),
                    "names no signing key",
                ),
                ("not-a-jwt".to_string(), "not a signed JWT"),
                ("a.b.c.d".to_string(), "not a signed JWT"),
                ("e30.e30.".to_string(), "alg \"\""),
                ("!!.e30.x".to_string(), "header is not base64url"),
                ("e30.WzFd.x".to_string(), "payload is not a JSON object"),
            ];
            for (token, why) in cases {
                match verify(&token, &known) {
                    Err(refused) => {
                        assert!(refused.contains(why), "{refused:?} should say {why:?}")
                    }
                    Ok(verified) => panic!("accepted: {verified:?}, expected {why:?}"),
                }
            }
            // Within 60 s of skew, a token just expired still passes.
            assert!(verify(&with(&|c| c["exp"] = json!(now - 30)), &known).is_ok());
            // A key published for ES256 does not verify a token that says RS256.
            let rsa = JwtKey::rsa("e1");
            let refused = verify(&rsa.sign(&claims()), &known).unwrap_err();
            assert!(refused.contains("signs ES256"), "{refused}");
        }

        #[test]
        fn a_jwks_keeps_rsa_and_p256_keys_with_a_kid_and_skips_the_rest() {
            let rsa = JwtKey::rsa("r1");
            let ec = JwtKey::ec("e1");
            let mut no_kid = rsa.jwk.clone();
            no_kid.as_object_mut().unwrap().remove("kid");
            let document = json!({"keys": [rsa.jwk, ec.jwk, no_kid,
                {"kid": "o1", "kty": "oct", "k": "c2VjcmV0"},
                {"kid": "p3", "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]});
            let known = IssuerKeys::from_jwks(document.to_string().as_bytes()).unwrap();
            assert_eq!(known.len(), 2);
            assert!(known.has("r1") && known.has("e1") && !known.has("o1"));
            assert!(IssuerKeys::from_jwks(b"[]").is_err());
        }

        proptest::proptest! {
            /// Whatever a caller sends as a token, the checks answer (never panic), and only a
            /// token the key signed passes.
            #[test]
            fn any_text_is_refused_without_a_panic(token in "\\PC{0,300}", dots in 0usize..4) {
                let known = IssuerKeys::default();
                let token = format!("{token}{}", ".".repeat(dots));
                proptest::prop_assert!(verify(&token, &known).is_err());
            }

            #[test]
            fn a_signed_token_with_any_change_to_its_payload_is_refused(
                at in 0usize..200, byte in proptest::prelude::any::<u8>()
            ) {
                use std::sync::OnceLock;
                static KEY: OnceLock<JwtKey> = OnceLock::new();
                let key = KEY.get_or_init(|| JwtKey::ec("e1"));
                let known = keys(&[key]);
                let token = key.sign(&claims());
                let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
                let mut payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&parts[1])
                    .unwrap();
                let at = at % payload.len();
                proptest::prop_assume!(payload[at] != byte);
                payload[at] = byte;
                parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&payload);
                proptest::prop_assert!(verify(&parts.join("."), &known).is_err());
            }
        }
    }
}
