//! Teams test keys and Bot Framework claims: tokens signed as the Bot Framework signs them.

/// A Bot Framework signing key a test generates: it signs inbound Teams tokens, and its public
/// half (a JWKS entry with `endorsements`) is served by the local stand-in.
pub struct TeamsKey {
    pub kid: String,
    encoding: jsonwebtoken::EncodingKey,
    /// The JWKS entry: kid, kty, n, e and the channels it is endorsed for.
    pub jwk: serde_json::Value,
}

impl TeamsKey {
    /// A fresh 2048-bit RSA key endorsed for `endorsements` (`["msteams"]` for a Teams key).
    pub fn generate(kid: &str, endorsements: &[&str]) -> Self {
        use aws_lc_rs::encoding::AsDer;
        use base64::Engine;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let public =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        let mut jwk = serde_json::to_value(public).unwrap();
        jwk["kid"] = kid.into();
        jwk["endorsements"] = serde_json::json!(endorsements);
        Self {
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    /// A token with these claims, signed RS256 under this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
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
