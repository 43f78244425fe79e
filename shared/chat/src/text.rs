//! Text helpers both platforms' messages use: cutting to a limit, short times and hashes, and
//! how a closed approval ended, in words (each platform escapes and formats them its own way).

use regate_core::{ApprovalState, Choice, PendingApproval, Requirement, Vote};

/// Cuts `text` to at most `max` characters, ending with an ellipsis when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time as `2026-06-01 12:00 UTC`; anything else as it is (escaped by `escape`).
pub fn short_time(at: &str, escape: impl Fn(&str) -> String) -> String {
    regate_core::time::parse_rfc3339(at).map_or_else(
        || escape(at),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A policy revision cut to its algorithm and first hex digits.
pub fn short_hash(revision: &str) -> String {
    revision.chars().take(19).collect()
}

/// How a closed approval ended: ` by <who>`, ` at <when>`, and the rejecting vote's reason,
/// each empty when unknown; who and the reason are escaped by `escape`.
pub struct Ending {
    pub by: String,
    pub when: String,
    pub reason: Option<String>,
}

pub fn ending(approval: &PendingApproval, escape: impl Fn(&str) -> String) -> Ending {
    let reason = (approval.state == ApprovalState::Rejected)
        .then(|| {
            approval
                .votes
                .iter()
                .rev()
                .find(|v| v.vote == Choice::Reject)
                .and_then(|v| v.reason.as_deref())
                .map(&escape)
        })
        .flatten();
    Ending {
        by: approval
            .decided_by
            .as_deref()
            .map(|b| format!(" by {}", escape(b)))
            .unwrap_or_default(),
        when: approval
            .decided_at
            .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default(),
        reason,
    }
}

/// One requirement's progress: `payments-owners: 0 of 1`.
pub fn progress(requirement: &Requirement, escape: impl Fn(&str) -> String) -> String {
    let Requirement { group, min, have } = requirement;
    format!("{}: {} of {min}", escape(group), have.min(min))
}

/// One counted vote, by `who` (as the platform shows the voter): `… approved at <time>: <reason>`.
pub fn vote_line(vote: &Vote, who: &str, escape: impl Fn(&str) -> String) -> String {
    let verb = match vote.vote {
        Choice::Approve => "approved",
        Choice::Reject => "rejected",
    };
    let reason = vote
        .reason
        .as_deref()
        .map(|r| format!(": {}", escape(r)))
        .unwrap_or_default();
    format!("{who} {verb} at {}{reason}", short_time(&vote.at, &escape))
}

/// The approvers a message names (at most `max`), and how many more it only counts.
pub fn named_approvers(approvers: &[String], max: usize) -> (&[String], usize) {
    let named = &approvers[..approvers.len().min(max)];
    (named, approvers.len() - named.len())
}
