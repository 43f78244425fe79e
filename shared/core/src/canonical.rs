//! RFC 8785 (JCS) canonical JSON and the sha256 digests built on it, so that the same
//! logical value always hashes the same way whatever key order or spacing produced it.

use serde::Serialize;
use serde_json::Value;

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

/// Lower-case hex sha256 of `bytes`. aws-lc's SHA-256 (assembly on x86_64 and arm64, with
/// the CPU's SHA instructions where it has them) rather than the `sha2` crate's: a cold start
/// hashes a policy bundle's files twice over (its digest, its signature, its revision), and
/// under callgrind, which hides the SHA instructions, `sha2`'s portable code took about 5 M
/// of 17 M init instructions (BENCHMARKS.md).
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        bytes.as_ref(),
    ))
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

    /// JSON values of every shape: nested arrays and objects, unicode (astral, private-use,
    /// surrogate-pair) keys and strings, control characters and escapes, and numbers where
    /// formatting is subtle (negative zero, exponents, integers past 2^53, tiny and huge floats).
    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let text = prop_oneof![
            any::<String>(),
            "[\\u{0}-\\u{1f}\"\\\\/\\u{7f}\\u{2028}\\u{e000}\\u{1f600}a-c]{0,8}",
        ];
        let number = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            prop_oneof![
                Just(-0.0),
                Just(1e21),
                Just(1e-7),
                Just(5e-324),
                Just(1.7976931348623157e308),
                Just(333333333.3333333),
                Just(9007199254740993.0),
            ]
            .prop_map(Value::from),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Every hash in the decision log depends on this form: any difference from the
        /// reference implementation fails here.
        #[test]
        fn the_hand_written_form_matches_the_reference_on_generated_values(value in any_json()) {
            proptest::prop_assert_eq!(
                to_canonical_json(&value).unwrap(),
                serde_json_canonicalizer::to_string(&value).unwrap()
            );
        }
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
