//! Ports: the narrow traits through which the domain reaches the outside world. Adapters live
//! in `regate-aws` and `regate-chat`; in-memory fakes live in `regate-testkit`.

use chrono::{DateTime, Utc};

/// The current time. Handlers take it as a port so tests can fix it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
