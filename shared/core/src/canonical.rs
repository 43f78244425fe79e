//! RFC 8785 (JCS) canonical JSON and the sha256 digests built on it, so that the same
//! logical value always hashes the same way whatever key order or spacing produced it.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Errors while canonicalising a value; only non-finite numbers can cause one in practice.
#[derive(Debug, thiserror::Error)]
#[error("value cannot be written as canonical JSON: {0}")]
pub struct CanonicalError(String);

impl CanonicalError {
    pub(crate) fn from_serde(error: &serde_json::Error) -> Self {
        Self(error.to_string())
    }
}

/// The RFC 8785 canonical form of `value`.
pub fn to_canonical_json<T: Serialize>(value: &T) -> Result<String, CanonicalError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| CanonicalError::from_serde(&e))
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// `sha256:<hex>` of the canonical form; the format used for `input_digest`.
pub fn digest_of<T: Serialize>(value: &T) -> Result<String, CanonicalError> {
    Ok(format!("sha256:{}", sha256_hex(to_canonical_json(value)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        let v: serde_json::Value = serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"] }"#).unwrap();
        assert_eq!(to_canonical_json(&v).unwrap(), r#"{"a":[true,null,"x"],"b":1}"#);
    }

    #[test]
    fn numbers_follow_ecmascript_formatting() {
        // RFC 8785 section 3.2.2.3 examples.
        let v = json!([1e30, 4.5, 0.002, 1e-7, 333333333.3333333]);
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            "[1e+30,4.5,0.002,1e-7,333333333.3333333]"
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // RFC 8785 section 3.2.3: "\u{20ac}" (euro) sorts before "\u{1f600}" in UTF-16 order
        // even though its UTF-8 bytes sort after.
        let v = json!({"\u{1f600}": 1, "\u{20ac}": 2, "a": 3});
        assert_eq!(to_canonical_json(&v).unwrap(), "{\"a\":3,\"\u{20ac}\":2,\"\u{1f600}\":1}");
    }

    #[test]
    fn the_same_value_written_differently_has_the_same_digest() {
        let a: serde_json::Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":1}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "y": {"a":1, "b":2}, "x": 1 }"#).unwrap();
        assert_eq!(digest_of(&a).unwrap(), digest_of(&b).unwrap());
        assert!(digest_of(&a).unwrap().starts_with("sha256:"));
        assert_ne!(digest_of(&a).unwrap(), digest_of(&json!({"x": 2})).unwrap());
    }
}
