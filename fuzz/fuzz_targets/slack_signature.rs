//! Any timestamp, signature and body: verification answers and never panics, a forged
//! signature never verifies, and Slack's own signing of the body always does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regate_chat::slack::signature::{sign, verify_at};
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("fuzz-signing-secret".to_string());
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let timestamp = parts.next().map(String::from_utf8_lossy).unwrap_or_default();
    let signature = parts.next().map(String::from_utf8_lossy).unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let forged = verify_at(&secret, Some(&timestamp), Some(&signature), body, now);
    if forged.is_ok() {
        assert_eq!(signature, sign(&secret, &timestamp, body), "only the real signature verifies");
    }
    let genuine = sign(&secret, "1700000000", body);
    assert!(verify_at(&secret, Some("1700000000"), Some(&genuine), body, now).is_ok());
});
