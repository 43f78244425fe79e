//! The per-request hash chain: `hash = sha256(prev_hash || JCS(event without hash))`.
//! Pure functions to extend a chain and to verify one, naming the first broken link.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::canonical::{sha256_hex, to_canonical_json, CanonicalError};
use crate::event::{Event, EventDraft, EventKind};

/// `prev_hash` of the first event of every request.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash an event must carry, computed from everything but its `hash` field.
pub fn compute_hash(event: &Event) -> Result<String, CanonicalError> {
    let mut value = serde_json::to_value(event).map_err(|e| CanonicalError::from_serde(&e))?;
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    let canonical = to_canonical_json(&value)?;
    let mut preimage = String::with_capacity(event.prev_hash.len() + canonical.len());
    preimage.push_str(&event.prev_hash);
    preimage.push_str(&canonical);
    Ok(sha256_hex(preimage))
}

/// The next event of `request_id`'s chain after `prev` (or the first one when `prev` is None).
pub fn next_event(
    request_id: &str,
    prev: Option<&Event>,
    draft: EventDraft,
    at: DateTime<Utc>,
) -> Result<Event, CanonicalError> {
    let mut event = Event {
        request_id: request_id.to_string(),
        seq: prev.map_or(1, |p| p.seq + 1),
        kind: draft.kind.unwrap_or(EventKind::Error),
        at: crate::time::format_rfc3339_ms(at),
        actor: draft.actor,
        platform: draft.platform,
        outcome: draft.outcome,
        reasons: draft.reasons,
        policy_revision: draft.policy_revision,
        input_digest: draft.input_digest,
        data: draft.data,
        prev_hash: prev.map_or_else(|| GENESIS_HASH.to_string(), |p| p.hash.clone()),
        hash: String::new(),
    };
    event.hash = compute_hash(&event)?;
    Ok(event)
}

/// The first place where a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at seq {seq}: {problem}")]
pub struct BrokenLink {
    pub seq: u64,
    pub problem: String,
}

/// Checks a request's events in order: contiguous sequence numbers from 1, each `prev_hash`
/// equal to the previous `hash`, and each `hash` recomputed from the event's content.
pub fn verify_chain(request_id: &str, events: &[Event]) -> Result<(), BrokenLink> {
    let mut prev_hash = GENESIS_HASH;
    for (expected_seq, event) in (1u64..).zip(events) {
        let broken = |problem: String| BrokenLink {
            seq: event.seq,
            problem,
        };
        if event.request_id != request_id {
            return Err(broken(format!("belongs to request {:?}", event.request_id)));
        }
        if event.seq != expected_seq {
            return Err(broken(format!("expected seq {expected_seq}")));
        }
        if event.prev_hash != prev_hash {
            return Err(broken(
                "prev_hash does not match the previous event's hash".into(),
            ));
        }
        let recomputed = compute_hash(event).map_err(|e| broken(e.to_string()))?;
        if recomputed != event.hash {
            return Err(broken(
                "content does not match its hash (the event was altered)".into(),
            ));
        }
        prev_hash = &event.hash;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Outcome;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, second).unwrap()
    }

    fn chain_of(n: u32) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        for i in 0..n {
            let draft = EventDraft::new(EventKind::Vote)
                .actor(format!("p{i}@example.com"))
                .data("i", i);
            events.push(next_event("chg-1", events.last(), draft, at(i)).unwrap());
        }
        events
    }

    #[test]
    fn a_fresh_chain_verifies() {
        let events = chain_of(4);
        assert_eq!(events[0].prev_hash, GENESIS_HASH);
        assert_eq!(events[3].seq, 4);
        assert_eq!(events[2].prev_hash, events[1].hash);
        assert_eq!(events[0].at, "2026-11-21T10:00:00.000Z");
        verify_chain("chg-1", &events).unwrap();
        verify_chain("chg-1", &[]).unwrap();
    }

    #[test]
    fn hashes_depend_on_content_not_on_field_order() {
        let e = &chain_of(1)[0];
        let reordered: Event = serde_json::from_str(
            &serde_json::to_string(&serde_json::to_value(e).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(compute_hash(&reordered).unwrap(), e.hash);
    }

    #[test]
    fn an_edited_event_is_reported_as_the_first_broken_link() {
        let mut events = chain_of(4);
        events[2].outcome = Some(Outcome::Allow);
        let err = verify_chain("chg-1", &events).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.problem.contains("altered"));
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut events = chain_of(4);
        events[1].actor = Some("mallory@example.com".into());
        events[1].hash = compute_hash(&events[1]).unwrap();
        let err = verify_chain("chg-1", &events).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.problem.contains("prev_hash"));
    }

    #[test]
    fn a_missing_event_or_foreign_event_is_reported() {
        let mut events = chain_of(4);
        events.remove(1);
        assert_eq!(
            verify_chain("chg-1", &events).unwrap_err().problem,
            "expected seq 2"
        );
        assert!(verify_chain("chg-2", &chain_of(1))
            .unwrap_err()
            .problem
            .contains("chg-1"));
    }
}
