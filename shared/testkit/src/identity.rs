//! Proven requesters for tests: the identity a pipeline's token proves, and an in-memory issuer
//! that signs tokens and checks them with regate's own checks (`regate_core::identity`).

use regate_core::identity::{
    check, screen, IdentityTokens, IssuerKeys, IssuerUnavailable, ProvenIdentity, VerifiedIdentity,
};

use regate_core::ports::Clock;

use crate::{github_claims, JwtKey};

/// The issuer tokens of the tests say they come from: GitHub Actions'.
pub const TEST_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The identity a token from a pipeline that `actor` ran proves: acme/payments on main, issued
/// at the fixed clock's time, so that the same request built twice is the same request.
pub fn ran_by(actor: &str) -> ProvenIdentity {
    let mut claims = github_claims(
        TEST_ISSUER,
        "regate",
        actor,
        "acme/payments",
        "refs/heads/main",
    );
    let issued = crate::FixedClock::default().now().timestamp();
    claims["iat"] = issued.into();
    claims["nbf"] = (issued - 5).into();
    claims["exp"] = (issued + 300).into();
    ProvenIdentity::Verified(VerifiedIdentity {
        issuer: TEST_ISSUER.into(),
        subject: "repo:acme/payments:ref:refs/heads/main".into(),
        key_id: "testkit".into(),
        claims: claims.as_object().cloned().unwrap_or_default(),
    })
}

/// An issuer in memory: it signs tokens with a key it made, and checks tokens as the evaluator
/// does, against that key alone.
#[derive(Clone)]
pub struct TestIssuer {
    key: JwtKey,
    keys: IssuerKeys,
}

impl Default for TestIssuer {
    fn default() -> Self {
        let key = JwtKey::ec("testkit");
        let jwks = serde_json::json!({"keys": [key.jwk]});
        let keys = IssuerKeys::from_jwks(jwks.to_string().as_bytes()).unwrap();
        Self { key, keys }
    }
}

impl TestIssuer {
    /// A token for a pipeline `actor` ran, from acme/payments on main.
    pub fn token_for(&self, actor: &str) -> String {
        self.key.sign(&github_claims(
            TEST_ISSUER,
            "regate",
            actor,
            "acme/payments",
            "refs/heads/main",
        ))
    }
}

impl IdentityTokens for TestIssuer {
    async fn check(&self, token: &str) -> Result<ProvenIdentity, IssuerUnavailable> {
        let now = chrono::Utc::now().timestamp();
        let checked = screen(token, |issuer| issuer == TEST_ISSUER)
            .and_then(|screened| check(token, &screened, "regate", &self.keys, now));
        Ok(match checked {
            Ok(verified) => ProvenIdentity::Verified(verified),
            Err(why) => ProvenIdentity::refused(why),
        })
    }
}
