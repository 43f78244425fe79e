//! JSON values to DynamoDB attribute values and back, for the decision log's `data` map.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

pub fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attr).collect()),
        Value::Object(map) => AttributeValue::M(map_to_attrs(map)),
    }
}

pub fn map_to_attrs(map: &Map<String, Value>) -> HashMap<String, AttributeValue> {
    map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()
}

/// `None` for attribute types JSON cannot hold (binary, sets), which regate never writes.
pub fn from_attr(attr: &AttributeValue) -> Option<Value> {
    Some(match attr {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => Value::Number(parse_number(text)?),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(items) => {
            Value::Array(items.iter().map(from_attr).collect::<Option<_>>()?)
        }
        AttributeValue::M(map) => Value::Object(attrs_to_map(map)?),
        _ => return None,
    })
}

pub fn attrs_to_map(map: &HashMap<String, AttributeValue>) -> Option<Map<String, Value>> {
    map.iter()
        .map(|(k, v)| Some((k.clone(), from_attr(v)?)))
        .collect()
}

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_a_round_trip_through_attribute_values() {
        let value =
            json!({"a": [1, -2, 1.5, "x", null, true], "b": {"c": 18446744073709551615_u64}});
        assert_eq!(from_attr(&to_attr(&value)).unwrap(), value);
    }

    #[test]
    fn binary_attributes_are_not_json() {
        let blob = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![1]));
        assert!(from_attr(&blob).is_none());
    }
}
