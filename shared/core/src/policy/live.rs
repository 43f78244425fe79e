//! The policy a process evaluates with now. A function compiles a bundle once per revision and,
//! when a newer revision is published, swaps the compiled engine whole: an evaluation holds the
//! engine it started with, so it sees one revision from start to end.

use std::sync::{Arc, RwLock};

use super::{PolicyEngine, PolicyError};

/// The engine in use, or why there is none yet (a function whose first load failed: it fails
/// closed, evaluating nothing, until a load succeeds).
#[derive(Debug)]
pub struct LivePolicy {
    engine: RwLock<Result<Arc<PolicyEngine>, String>>,
}

impl LivePolicy {
    pub fn new(engine: PolicyEngine) -> Self {
        Self::from_arc(Arc::new(engine))
    }

    pub fn from_arc(engine: Arc<PolicyEngine>) -> Self {
        Self {
            engine: RwLock::new(Ok(engine)),
        }
    }

    /// No policy yet, for `why`: every evaluation fails with [`PolicyError::Unavailable`].
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self {
            engine: RwLock::new(Err(why.into())),
        }
    }

    /// The engine to evaluate with now.
    pub fn current(&self) -> Result<Arc<PolicyEngine>, PolicyError> {
        // A poisoned lock still holds a whole value: a swap is one write.
        let engine = self
            .engine
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        engine.clone().map_err(PolicyError::Unavailable)
    }

    /// Says why there is still no engine (a failed load); an engine in use stays.
    pub fn still_unavailable(&self, why: impl Into<String>) {
        let mut current = self
            .engine
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.is_err() {
            *current = Err(why.into());
        }
    }

    /// Makes `engine` the one every later evaluation uses.
    pub fn replace(&self, engine: Arc<PolicyEngine>) {
        let mut current = self
            .engine
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Ok(engine);
    }
}
