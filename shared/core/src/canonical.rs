//! RFC 8785 (JCS) canonical JSON and the sha256 digests built on it, so that the same
//! logical value always hashes the same way whatever key order or spacing produced it.

use serde::Serialize;
use serde_json::Value;
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
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::from_serde(&e))?;
    canonical_text(&value)
}

/// The RFC 8785 canonical form of an already built JSON value.
///
/// Written by hand because it is on the hot path of every decision: strings use serde_json's
/// escaping (the same as RFC 8785's), integers up to 2^53 print as they are, and only other
/// numbers go through the ECMAScript formatting of `serde_json_canonicalizer`.
pub fn canonical_text(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Largest integer that ECMAScript numbers represent exactly, so prints unchanged.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn write_canonical(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) if u <= MAX_SAFE_INTEGER => out.push_str(&u.to_string()),
            (_, Some(i)) if i.unsigned_abs() <= MAX_SAFE_INTEGER => out.push_str(&i.to_string()),
            _ => out.push_str(
                &serde_json_canonicalizer::to_string(n)
                    .map_err(|e| CanonicalError::from_serde(&e))?,
            ),
        },
        Value::String(s) => write_string(s, out)?,
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // serde_json's map may keep insertion order (its `preserve_order` feature, which
            // any crate in a build can switch on), so keys are always sorted here: by UTF-16
            // code units, as RFC 8785 says, which for ASCII keys is byte order.
            if entries.iter().all(|(k, _)| k.is_ascii()) {
                entries.sort_by_key(|(a, _)| *a);
            } else {
                entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out)?;
                out.push(':');
                write_canonical(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut String) -> Result<(), CanonicalError> {
    out.push_str(&serde_json::to_string(text).map_err(|e| CanonicalError::from_serde(&e))?);
    Ok(())
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"] }"#).unwrap();
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
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
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            "{\"a\":3,\"\u{20ac}\":2,\"\u{1f600}\":1}"
        );
    }

    #[test]
    fn strings_are_escaped_as_rfc_8785_says() {
        // RFC 8785 section 3.2.2.2: short escapes, lower-case \u00XX, nothing else escaped.
        let v = json!(["\u{8}\t\n\u{c}\r\"\\", "\u{1}\u{1f}", "/\u{7f}é€"]);
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            "[\"\\b\\t\\n\\f\\r\\\"\\\\\",\"\\u0001\\u001f\",\"/\u{7f}é€\"]"
        );
    }

    #[test]
    fn the_hand_written_form_matches_the_reference_implementation() {
        let v = json!({"z": [1, -2, 9007199254740993_u64, 1.5, -0.0, 1e21], "\u{e000}": 1, "\u{1f600}": {"b": null, "a": false}});
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            serde_json_canonicalizer::to_string(&v).unwrap()
        );
    }

    #[test]
    fn the_same_value_written_differently_has_the_same_canonical_form_and_digest() {
        let a: serde_json::Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":1}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "y": {"a":1, "b":2}, "x": 1 }"#).unwrap();
        let digest = |v| sha256_hex(to_canonical_json(v).unwrap());
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"x": 2})));
    }
}
