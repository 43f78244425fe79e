//! Decision log events. Each event is one step in a request's life; events are chained per
//! request by hash (see [`crate::chain`]) so that an auditor can prove none was altered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decision::{Evaluation, Outcome};
use crate::policy::EvaluationTime;
use crate::vote::Vote;

/// `data` keys of `evaluated` and `decided` events that, with the `requested` event's request,
/// rebuild the evaluation's exact input.
pub const INPUT_NOW: &str = "now";
pub const INPUT_OPENED_AT: &str = "opened_at";
pub const INPUT_VOTES: &str = "votes";
/// `data` keys of an `evaluated` event that asks for approval: how long the workflow waits, and
/// when (offsets from `opened_at`) approvers are reminded and the request evaluated again.
pub const TIMEOUT_SECONDS: &str = "timeout_seconds";
pub const REMIND_AFTER_SECONDS: &str = "remind_after_seconds";
pub const REEVALUATE_AFTER_SECONDS: &str = "reevaluate_after_seconds";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Requested,
    Evaluated,
    Notified,
    Vote,
    VoteRefused,
    Decided,
    Expired,
    Error,
    /// A reminder was posted to the approvers who had not voted.
    Reminded,
}

impl EventKind {
    pub const ALL: [Self; 9] = [
        Self::Requested,
        Self::Evaluated,
        Self::Notified,
        Self::Vote,
        Self::VoteRefused,
        Self::Decided,
        Self::Expired,
        Self::Error,
        Self::Reminded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Evaluated => "evaluated",
            Self::Notified => "notified",
            Self::Vote => "vote",
            Self::VoteRefused => "vote_refused",
            Self::Decided => "decided",
            Self::Expired => "expired",
            Self::Error => "error",
            Self::Reminded => "reminded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the decision log keeps things: one partition per request (its events and the markers
/// of its idempotency keys), one item per policy bundle that decided anything, and the
/// checkpoints' own record.
pub mod keys {
    /// Sequence numbers are zero-padded so that sort keys sort in sequence order.
    const SEQ_WIDTH: usize = 10;
    pub const EVENT_PREFIX: &str = "EV#";
    pub const KEY_PREFIX: &str = "KEY#";
    pub const REQUEST_PREFIX: &str = "REQ#";
    pub const POLICY_PREFIX: &str = "POLICY#";
    /// The sort key of a policy bundle's item.
    pub const POLICY_SORT_KEY: &str = "BUNDLE";
    /// The partition of the record of the last signed checkpoint and the claims on the next.
    pub const CHECKPOINT_PARTITION: &str = "CHECKPOINT";

    pub fn partition_key(request_id: &str) -> String {
        format!("{REQUEST_PREFIX}{request_id}")
    }

    pub fn sort_key(seq: u64) -> String {
        format!("{EVENT_PREFIX}{seq:0SEQ_WIDTH$}")
    }

    /// The sort key of the marker that an idempotency key was used.
    pub fn key_marker(key: &str) -> String {
        format!("{KEY_PREFIX}{key}")
    }

    pub fn policy_key(revision: &str) -> String {
        format!("{POLICY_PREFIX}{revision}")
    }
}

/// A stored, chained event. Field names are the DynamoDB attribute names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub request_id: String,
    pub seq: u64,
    pub kind: EventKind,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    pub fn at_time(&self) -> Option<DateTime<Utc>> {
        crate::time::parse_rfc3339(&self.at)
    }
}

/// An event before it is placed in the chain: everything but request id, sequence and hashes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventDraft {
    pub kind: Option<EventKind>,
    pub actor: Option<String>,
    pub platform: Option<String>,
    pub outcome: Option<Outcome>,
    pub reasons: Vec<String>,
    pub policy_revision: Option<String>,
    pub input_digest: Option<String>,
    pub data: Map<String, Value>,
    /// The idempotency key: a log appends at most one event per key and request, so a retried
    /// write (an SDK retry of a committed write, a retried step, a repeated click) does not
    /// record the same thing twice. Not part of the event or its hash.
    pub once: Option<String>,
}

impl EventDraft {
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind: Some(kind),
            ..Self::default()
        }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    pub fn reasons(mut self, reasons: Vec<String>) -> Self {
        self.reasons = reasons;
        self
    }

    /// Records which policy revision and input produced a decision.
    pub fn evaluation(mut self, evaluation: &Evaluation) -> Self {
        self.outcome = Some(evaluation.decision.outcome);
        self.reasons = evaluation.decision.reasons.clone();
        self.policy_revision = Some(evaluation.policy_revision.clone());
        self.input_digest = Some(evaluation.input_digest.clone());
        self
    }

    /// The `now` and `opened_at` the evaluation was given (`data.now`, `data.opened_at`), so
    /// its input can be rebuilt.
    pub fn evaluated_at(self, time: EvaluationTime) -> Self {
        let draft = self.data(INPUT_NOW, crate::time::format_rfc3339_ms(time.now));
        match time.opened_at {
            Some(opened_at) => {
                draft.data(INPUT_OPENED_AT, crate::time::format_rfc3339_ms(opened_at))
            }
            None => draft,
        }
    }

    /// What an open approval waits for (`data.timeout_seconds`, and the reminder and
    /// re-evaluation offsets when the policy gives them), so an auditor knows when it must
    /// have closed and what should have happened on the way.
    pub fn waiting(self, evaluation: &Evaluation) -> Self {
        let decision = &evaluation.decision;
        let mut draft = self.data(TIMEOUT_SECONDS, decision.timeout_seconds);
        for (key, offsets) in [
            (REMIND_AFTER_SECONDS, &decision.remind_after_seconds),
            (REEVALUATE_AFTER_SECONDS, &decision.reevaluate_after_seconds),
        ] {
            if !offsets.is_empty() {
                draft = draft.data(key, offsets.clone());
            }
        }
        draft
    }

    /// The votes the evaluation was given (`data.votes`), so its input can be rebuilt.
    pub fn votes(self, votes: &[Vote]) -> Self {
        self.data(
            INPUT_VOTES,
            serde_json::to_value(votes).unwrap_or(Value::Array(Vec::new())),
        )
    }

    pub fn data(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }

    /// Appends this at most once per `key` and request (see [`Self::once`]).
    pub fn once(mut self, key: impl Into<String>) -> Self {
        self.once = Some(key.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, Outcome};

    #[test]
    fn an_open_approval_records_its_timeout_and_only_the_offsets_the_policy_gave() {
        let evaluation = Evaluation {
            decision: Decision {
                outcome: Outcome::ApprovalRequired,
                reasons: vec![],
                requirements: vec![],
                alternatives: vec![],
                approvers: vec![],
                notify: vec![],
                timeout_seconds: 3600,
                reject_reason_required: false,
                remind_after_seconds: vec![900, 2700],
                reevaluate_after_seconds: vec![],
                tell_requester: None,
            },
            policy_revision: "sha256:r".into(),
            input_digest: "sha256:i".into(),
        };
        let draft = EventDraft::new(EventKind::Evaluated).waiting(&evaluation);
        assert_eq!(draft.data[TIMEOUT_SECONDS], 3600);
        assert_eq!(
            draft.data[REMIND_AFTER_SECONDS],
            serde_json::json!([900, 2700])
        );
        assert!(!draft.data.contains_key(REEVALUATE_AFTER_SECONDS));
    }
}
