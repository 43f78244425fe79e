//! A fault to inject into a fake: the next calls fail with it until it is cleared.

use std::sync::{Arc, Mutex};

/// A fault to inject: the next calls fail with this error until it is cleared.
#[derive(Clone)]
pub struct Fault<E>(Arc<Mutex<Option<E>>>);

impl<E> Default for Fault<E> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<E: Clone> Fault<E> {
    pub fn set(&self, error: E) {
        *self.0.lock().unwrap() = Some(error);
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }

    pub(crate) fn check(&self) -> Result<(), E> {
        match self.0.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
