//! Slack request signing: `v0=` + hex HMAC-SHA256(signing secret, `v0:{timestamp}:{raw body}`),
//! compared in constant time, with timestamps more than five minutes from now refused so a
//! captured request cannot be replayed.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Slack's documented replay window.
pub const MAX_SKEW_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    BadTimestamp,
    #[error("request timestamp is {0} s away from now; at most {MAX_SKEW_SECONDS} s is accepted")]
    Stale(i64),
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a Slack request's signature as of `now`.
pub fn verify_at(
    secret: &SecretString,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader("X-Slack-Request-Timestamp"))?;
    let signature = signature.ok_or(SignatureError::MissingHeader("X-Slack-Signature"))?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.timestamp().saturating_sub(sent);
    if skew.abs() > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale(skew));
    }
    let expected = signature
        .strip_prefix("v0=")
        .ok_or(SignatureError::Mismatch)?;
    let expected = hex::decode(expected).map_err(|_| SignatureError::Mismatch)?;
    mac(secret, timestamp, body)
        .ok_or(SignatureError::Mismatch)?
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Slack-Signature` value for a body, as Slack computes it (tests and the demo sign
/// their clicks with it).
pub fn sign(secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    mac(secret, timestamp, body)
        .map(|mac| format!("v0={}", hex::encode(mac.finalize().into_bytes())))
        .unwrap_or_default()
}

/// HMAC takes keys of any length, so this is `None` only in theory.
fn mac(secret: &SecretString, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own example from "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn slacks_documented_example_verifies_at_its_own_time() {
        assert_eq!(sign(&secret(), TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        verify_at(
            &secret(),
            Some(TIMESTAMP),
            Some(SIGNATURE),
            BODY.as_bytes(),
            at(1_531_420_618 + 100),
        )
        .unwrap();
    }

    #[test]
    fn the_example_is_stale_five_minutes_later_and_early_ones_too() {
        let result = verify_at(
            &secret(),
            Some(TIMESTAMP),
            Some(SIGNATURE),
            BODY.as_bytes(),
            at(1_531_420_618 + 301),
        );
        assert_eq!(result, Err(SignatureError::Stale(301)));
        let result = verify_at(
            &secret(),
            Some(TIMESTAMP),
            Some(SIGNATURE),
            BODY.as_bytes(),
            at(1_531_420_618 - 301),
        );
        assert_eq!(result, Err(SignatureError::Stale(-301)));
    }

    #[test]
    fn any_change_to_body_secret_or_signature_is_a_mismatch() {
        let now = at(1_531_420_618);
        let tampered = BODY.replace("roadrunner", "wile_e");
        assert_eq!(
            verify_at(
                &secret(),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                tampered.as_bytes(),
                now
            ),
            Err(SignatureError::Mismatch)
        );
        let other = SecretString::from("another-secret");
        assert_eq!(
            verify_at(
                &other,
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "a2114d57",
            "v0=zz",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "",
        ] {
            assert_eq!(
                verify_at(&secret(), Some(TIMESTAMP), Some(bad), BODY.as_bytes(), now),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        let now = at(1_531_420_618);
        assert_eq!(
            verify_at(&secret(), None, Some(SIGNATURE), b"", now),
            Err(SignatureError::MissingHeader("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            verify_at(&secret(), Some(TIMESTAMP), None, b"", now),
            Err(SignatureError::MissingHeader("X-Slack-Signature"))
        );
        assert_eq!(
            verify_at(&secret(), Some("yesterday"), Some(SIGNATURE), b"", now),
            Err(SignatureError::BadTimestamp)
        );
    }
}
