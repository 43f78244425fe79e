//! A clock tests set, and the days they fix it to.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use regate_core::ports::Clock;

/// A clock that says what it is told.
#[derive(Clone)]
pub struct FixedClock(pub Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    pub fn at(rfc3339: &str) -> Self {
        Self(Arc::new(Mutex::new(
            regate_core::time::parse_rfc3339(rfc3339).unwrap(),
        )))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Default for FixedClock {
    /// A day no freeze window of the default policy covers.
    fn default() -> Self {
        Self::at(CALM_DAY)
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A time outside every freeze window of the default policy.
pub const CALM_DAY: &str = "2026-06-01T12:00:00Z";
/// A time inside the default policy's year-end freeze window.
pub const FROZEN_DAY: &str = "2026-12-24T12:00:00Z";
