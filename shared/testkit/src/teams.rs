//! Signing keys tests generate, and the tokens they sign: Bot Framework tokens for Teams, and
//! the OIDC identity tokens CI systems issue.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// A signing key a test generates: it signs tokens, and its public half (a JWKS entry) is
/// served by the local stand-in (the Bot Framework's keys, or an OIDC issuer's).
#[derive(Clone)]
pub struct JwtKey {
    pub kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// The JWKS entry: kid, kty and the public key (n and e, or crv, x and y).
    pub jwk: serde_json::Value,
}

/// A Bot Framework key, for Teams tokens.
pub type TeamsKey = JwtKey;

fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

impl JwtKey {
    /// A fresh 2048-bit RSA key endorsed for `endorsements` (`["msteams"]` for a Teams key).
    pub fn generate(kid: &str, endorsements: &[&str]) -> Self {
        let mut key = Self::rsa(kid);
        key.jwk["endorsements"] = serde_json::json!(endorsements);
        key
    }

    /// A fresh 2048-bit RSA key (RS256).
    pub fn rsa(kid: &str) -> Self {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let encoding = EncodingKey::from_rsa_pem(pem(der.as_ref()).as_bytes()).unwrap();
        Self::with(kid, Algorithm::RS256, encoding)
    }

    /// A fresh P-256 key (ES256).
    pub fn ec(kid: &str) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let encoding = EncodingKey::from_ec_pem(pem(pkcs8.as_ref()).as_bytes()).unwrap();
        Self::with(kid, Algorithm::ES256, encoding)
    }

    fn with(kid: &str, algorithm: Algorithm, encoding: EncodingKey) -> Self {
        let public = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        let mut jwk = serde_json::to_value(public).unwrap();
        jwk["kid"] = kid.into();
        Self {
            kid: kid.to_string(),
            algorithm,
            encoding,
            jwk,
        }
    }

    /// A token with these claims, signed under this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The claims the Bot Framework puts in a token for bot `app_id`, valid from a minute ago for
/// an hour, for activities from `service_url`.
pub fn bot_claims(app_id: &str, service_url: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({"iss": "https://api.botframework.com", "aud": app_id,
        "serviceurl": service_url, "nbf": now - 60, "exp": now + 3600})
}

/// The claims GitHub Actions puts in a job's identity token for `audience`: run by `actor`
/// from `repository` at `git_ref`, issued by `issuer` now and valid for five minutes.
pub fn github_claims(
    issuer: &str,
    audience: &str,
    actor: &str,
    repository: &str,
    git_ref: &str,
) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({"iss": issuer, "aud": audience,
        "sub": format!("repo:{repository}:ref:{git_ref}"), "actor": actor,
        "repository": repository, "repository_owner": repository.split('/').next(),
        "ref": git_ref, "ref_type": "branch", "workflow": "deploy", "event_name": "push",
        "job_workflow_ref": format!("{repository}/.github/workflows/deploy.yml@{git_ref}"),
        "iat": now, "nbf": now - 5, "exp": now + 300})
}
