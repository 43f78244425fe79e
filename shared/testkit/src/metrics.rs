//! Metrics that record every measurement, for tests to read.

use std::sync::{Arc, Mutex};

use regate_core::metrics::{Measurement, Metrics};

#[derive(Clone, Default)]
pub struct RecordingMetrics(Arc<Mutex<Vec<Measurement>>>);

impl RecordingMetrics {
    /// Every measurement so far, in order.
    pub fn all(&self) -> Vec<Measurement> {
        self.0.lock().unwrap().clone()
    }

    /// The sum of the values of metric `name` whose dimensions include every one of `with`.
    pub fn total(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.all()
            .iter()
            .filter(|m| m.name == name && with.iter().all(|d| m.dimensions.contains(d)))
            .map(|m| m.value)
            .sum()
    }
}

impl Metrics for RecordingMetrics {
    fn record(&self, measurement: Measurement) {
        self.0.lock().unwrap().push(measurement);
    }
}
