//! What the approval workflow counts for its operators, as a port: each [`Measurement`] names
//! its metric once, here, with dimensions from small fixed sets (a function, an outcome, a
//! platform, a reason) and never a request id or a person, so the metrics' cost stays bounded
//! whatever the traffic. `regate-aws` writes them as CloudWatch Embedded Metric Format lines.

use crate::pending::{ApprovalState, Platform};
use crate::ports::ChatError;

/// The unit of a measurement, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Seconds => "Seconds",
        }
    }
}

/// One value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub name: &'static str,
    pub unit: Unit,
    pub value: f64,
    /// Dimension names and values, each value from a small fixed set.
    pub dimensions: Vec<(&'static str, &'static str)>,
}

/// Why a vote did not count, as a metric dimension (the voter is told the policy's own words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The policy's `vote` rule or a hard rule (the requester, one vote a person).
    Policy,
    /// The click came from somewhere the request was not posted.
    Elsewhere,
    /// An account that never votes (a guest, a bot, another organisation).
    Account,
    /// An account whose identity regate cannot see.
    Unidentified,
    /// The request was already decided, or expired.
    AlreadyDecided,
    /// No open request has that id.
    UnknownRequest,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Elsewhere => "elsewhere",
            Self::Account => "account",
            Self::Unidentified => "unidentified",
            Self::AlreadyDecided => "already_decided",
            Self::UnknownRequest => "unknown_request",
        }
    }
}

/// How one attempt to hand a decision to its workflow went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeResult {
    /// The workflow took the outcome.
    Resumed,
    /// The workflow no longer waited (timed out, or another path resumed it).
    Closed,
    /// Throttled or unavailable: it stays owed and is tried again.
    Retry,
}

impl Measurement {
    fn count(name: &'static str, dimensions: Vec<(&'static str, &'static str)>) -> Self {
        Self {
            name,
            unit: Unit::Count,
            value: 1.0,
            dimensions,
        }
    }

    /// A decision, once a request: a first evaluation's final outcome (`allow`, `deny`) or how
    /// an approval closed (`approved`, `rejected`, `expired`).
    pub fn decision(outcome: &'static str) -> Self {
        Self::count("Decisions", vec![("outcome", outcome)])
    }

    /// How an approval closed, as [`Self::decision`]'s outcome.
    pub fn closed(state: ApprovalState) -> Self {
        Self::decision(state.as_str())
    }

    pub fn vote_counted(platform: Platform) -> Self {
        Self::count("VotesCounted", vec![("platform", platform.as_str())])
    }

    pub fn vote_refused(platform: Platform, reason: Refusal) -> Self {
        Self::count(
            "VotesRefused",
            vec![("platform", platform.as_str()), ("reason", reason.as_str())],
        )
    }

    pub fn resume_attempt(result: ResumeResult) -> Self {
        let result = match result {
            ResumeResult::Resumed => "resumed",
            ResumeResult::Closed => "closed",
            ResumeResult::Retry => "retry",
        };
        Self::count("ResumeAttempts", vec![("result", result)])
    }

    /// Seconds from a decision to its workflow taking it.
    pub fn decision_to_resume(seconds: f64) -> Self {
        Self {
            name: "DecisionToResumeSeconds",
            unit: Unit::Seconds,
            value: seconds,
            dimensions: Vec::new(),
        }
    }

    /// A Slack or Teams call that failed after its retries, by how.
    pub fn chat_error(platform: Platform, error: &ChatError) -> Self {
        let reason = match error {
            ChatError::RateLimited(_) => "rate_limited",
            ChatError::Unavailable(_) => "unavailable",
            ChatError::Refused(_) => "refused",
        };
        Self::count(
            "ChatApiErrors",
            vec![("platform", platform.as_str()), ("reason", reason)],
        )
    }

    /// A sweep's counts: what it looked at, reminded, evaluated again and expired.
    pub fn sweep(name: &'static str, value: usize) -> Self {
        Self {
            name,
            unit: Unit::Count,
            value: value as f64,
            dimensions: Vec::new(),
        }
    }

    /// Seconds the oldest decision a sweep found still owed to its workflow has waited.
    pub fn sweep_lag(seconds: f64) -> Self {
        Self {
            name: "SweepLagSeconds",
            unit: Unit::Seconds,
            value: seconds,
            dimensions: Vec::new(),
        }
    }

    /// Seconds since the cut-off of the latest signed checkpoint.
    pub fn checkpoint_age(seconds: f64) -> Self {
        Self {
            name: "CheckpointAgeSeconds",
            unit: Unit::Seconds,
            value: seconds,
            dimensions: Vec::new(),
        }
    }

    /// A policy bundle that was not loaded, by the stage that failed: `pointer`, `bundle`,
    /// `digest`, `key`, `signature`, `revision` or `compile`.
    pub fn policy_load_failed(stage: &'static str) -> Self {
        Self::count("PolicyLoadFailed", vec![("stage", stage)])
    }

    /// A click refused before it was read: `status` 401 or 403.
    pub fn click_refused(platform: Platform, status: &'static str) -> Self {
        Self::count(
            "ClicksRefused",
            vec![("platform", platform.as_str()), ("status", status)],
        )
    }
}

/// Where measurements go.
pub trait Metrics: Send + Sync {
    fn record(&self, measurement: Measurement);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dimension_comes_from_a_fixed_set() {
        let refused = Measurement::vote_refused(Platform::Teams, Refusal::AlreadyDecided);
        assert_eq!(refused.name, "VotesRefused");
        assert_eq!(
            refused.dimensions,
            [("platform", "teams"), ("reason", "already_decided")]
        );
        let error = Measurement::chat_error(Platform::Slack, &ChatError::RateLimited("429".into()));
        assert_eq!(
            error.dimensions,
            [("platform", "slack"), ("reason", "rate_limited")]
        );
        assert_eq!(
            Measurement::closed(ApprovalState::Expired).dimensions,
            [("outcome", "expired")]
        );
        assert_eq!(Measurement::decision_to_resume(1.5).unit, Unit::Seconds);
    }
}
