//! The metrics port as CloudWatch Embedded Metric Format: each measurement is one JSON line on
//! standard output, which CloudWatch Logs turns into a metric in namespace `regate`, with no API
//! call and nothing added to an invocation's latency. Every line carries the function's name as
//! a dimension, besides the measurement's own (all from small fixed sets), and each metric is
//! also published with no dimension at all: the total that one alarm watches.

use std::io::Write;

use regate_core::metrics::{Measurement, Metrics};
use serde_json::{json, Map, Value};

/// The namespace of every regate metric.
pub const NAMESPACE: &str = "regate";

/// Writes measurements as EMF lines, for one function.
#[derive(Debug, Clone)]
pub struct EmfMetrics {
    function: &'static str,
}

impl EmfMetrics {
    /// Metrics of `function` (`evaluator`, `notifier`, `callback`, `sweeper`).
    pub fn new(function: &'static str) -> Self {
        Self { function }
    }

    /// The EMF line of `measurement` at `timestamp_ms` (milliseconds since the epoch).
    pub fn line(&self, measurement: &Measurement, timestamp_ms: u64) -> Value {
        let mut names = vec!["function"];
        names.extend(measurement.dimensions.iter().map(|(name, _)| *name));
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [names, []],
                    "Metrics": [{"Name": measurement.name, "Unit": measurement.unit.as_str()}],
                }],
            }),
        );
        line.insert("function".into(), self.function.into());
        for (name, value) in &measurement.dimensions {
            line.insert((*name).into(), (*value).into());
        }
        line.insert(measurement.name.into(), json!(measurement.value));
        Value::Object(line)
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, measurement: Measurement) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let line = self.line(&measurement, now);
        // One write of one whole line; a closed stdout loses the metric, never the invocation.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regate_core::metrics::Refusal;
    use regate_core::Platform;

    #[test]
    fn a_measurement_is_one_emf_line_with_the_function_and_its_dimensions() {
        let metrics = EmfMetrics::new("callback");
        let line = metrics.line(
            &Measurement::vote_refused(Platform::Slack, Refusal::Policy),
            1_700_000_000_000,
        );
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000_u64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "regate");
        assert_eq!(
            directive["Dimensions"],
            json!([["function", "platform", "reason"], []])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "VotesRefused", "Unit": "Count"}])
        );
        assert_eq!(line["function"], "callback");
        assert_eq!(line["platform"], "slack");
        assert_eq!(line["reason"], "policy");
        assert_eq!(line["VotesRefused"], 1.0);
        assert!(!line.to_string().contains('\n'), "one line");
    }
}
