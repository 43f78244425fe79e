//! The decision log in memory: append-only hash chains with idempotency keys, as DynamoDB
//! keeps them, with faults on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use regate_core::chain::next_event;
use regate_core::event::{Event, EventDraft};
use regate_core::ports::{DecisionLog, StoreError};

use crate::Fault;

/// The decision log in memory.
#[derive(Clone, Default)]
pub struct MemoryLog {
    pub(crate) events: Arc<Mutex<BTreeMap<String, Vec<Event>>>>,
    /// `(request id, idempotency key)` to the seq of the event appended under it.
    keys: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    pub fault: Fault<StoreError>,
    /// When set, `fault` applies to appends of this kind only.
    fault_kind: Arc<Mutex<Option<regate_core::EventKind>>>,
}

impl MemoryLog {
    /// Appends of `kind` fail with `error` until `fault` is cleared.
    pub fn fail_kind(&self, kind: regate_core::EventKind, error: StoreError) {
        *self.fault_kind.lock().unwrap() = Some(kind);
        self.fault.set(error);
    }

    pub fn of(&self, request_id: &str) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .get(request_id)
            .cloned()
            .unwrap_or_default()
    }
}

impl DecisionLog for MemoryLog {
    async fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        let only = *self.fault_kind.lock().unwrap();
        if only.is_none() || only == draft.kind {
            self.fault.check()?;
        }
        let mut all = self.events.lock().unwrap();
        let chain = all.entry(request_id.to_string()).or_default();
        let mut keys = self.keys.lock().unwrap();
        let key = draft.once.clone().map(|k| (request_id.to_string(), k));
        if key.as_ref().is_some_and(|k| keys.contains_key(k)) {
            return Ok(None);
        }
        let event = next_event(request_id, chain.last(), draft, at).unwrap();
        if let Some(key) = key {
            keys.insert(key, event.seq);
        }
        chain.push(event.clone());
        Ok(Some(event))
    }

    async fn events(&self, request_id: &str) -> Result<Vec<Event>, StoreError> {
        if self.fault_kind.lock().unwrap().is_none() {
            self.fault.check()?;
        }
        Ok(self.of(request_id))
    }
}
