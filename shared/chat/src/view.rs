//! One view of an approval message, built once from the approval and its evaluation: what the
//! message says in every state (title, facts, why, progress per requirement, who can approve,
//! votes, links, how it ended, footer, buttons). Slack's blocks and Teams' card only render it,
//! each with its own escaping, mentions and layout, so the two cannot drift apart in content.

use regate_core::request::Link;
use regate_core::{ApprovalState, ApprovalView, Choice, Requirement, Vote};

use crate::text::{short_hash, short_time};

/// Approvers a message or reminder names (and mentions); a long list ends "and N more", so a
/// group of hundreds neither floods the message nor costs a user lookup each.
pub const MAX_NAMED_APPROVERS: usize = 10;

/// What an approval message says. Text comes as the request and the policy wrote it: a renderer
/// escapes it for its platform.
pub struct MessageView<'a> {
    pub state: ApprovalState,
    /// The title's first words: `Approval needed`, `Approved`, `Rejected` or `Expired`.
    pub state_word: &'static str,
    /// What changes, in the requester's words.
    pub summary: &'a str,
    /// The change's facts, labelled: action, resource, environment, requester, initiator.
    pub facts: Vec<(&'static str, String)>,
    /// Why the policy asks for approval (or decided as it did).
    pub why: &'a [String],
    /// Each requirement's progress, then each alternative that would meet the decision instead.
    pub requirements: &'a [Requirement],
    pub alternatives: Vec<&'a [Requirement]>,
    /// While open (and the policy names requirements): the first approvers, and how many more.
    pub can_approve: Option<Named<'a>>,
    pub votes: &'a [Vote],
    pub links: &'a [Link],
    /// How a closed request ended; `None` while open.
    pub ending: Option<Ending<'a>>,
    /// The footer: the request id and the policy revision, cut short.
    pub request_id: &'a str,
    pub policy: String,
    /// While open: Approve and Reject, and whether a rejection needs a reason.
    pub buttons: Option<Buttons<'a>>,
}

/// The first people of a list a message names, and how many more it only counts.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub named: &'a [String],
    pub more: usize,
}

impl<'a> Named<'a> {
    pub fn first(people: &'a [String]) -> Self {
        let named = &people[..people.len().min(MAX_NAMED_APPROVERS)];
        Self {
            named,
            more: people.len() - named.len(),
        }
    }
}

/// How a closed request ended.
pub struct Ending<'a> {
    /// Approved, rejected or expired.
    pub state: ApprovalState,
    /// Who decided, when a vote did.
    pub by: Option<&'a str>,
    /// When, as `2026-06-01 12:00 UTC`.
    pub at: Option<String>,
    /// The rejecting vote's reason, when rejected with one.
    pub reason: Option<&'a str>,
    /// Decided, but the workflow has not taken the outcome yet.
    pub telling_workflow: bool,
}

impl Ending<'_> {
    /// ` by <who>` and ` at <when>`, each empty when unknown; who is escaped by `escape`.
    pub fn by_and_when(&self, escape: impl Fn(&str) -> String) -> (String, String) {
        let by = self.by.map(|b| format!(" by {}", escape(b)));
        let at = self.at.as_ref().map(|t| format!(" at {t}"));
        (by.unwrap_or_default(), at.unwrap_or_default())
    }
}

/// The buttons of an open request.
pub struct Buttons<'a> {
    /// What a click carries back (never the task token).
    pub request_id: &'a str,
    pub reason_required: bool,
}

impl<'a> MessageView<'a> {
    pub fn of(view: ApprovalView<'a>) -> Self {
        let approval = view.approval;
        let request = &approval.request;
        let decision = &view.evaluation.decision;
        let open = approval.state == ApprovalState::Pending;
        let mut facts = vec![
            ("Action", request.action.clone()),
            (
                "Resource",
                format!("{} {}", request.resource.kind, request.resource.name),
            ),
            ("Environment", request.environment.clone()),
            ("Requester", request.requester.id.clone()),
        ];
        if let Some(initiator) = &request.initiator {
            facts.push(("Initiator", initiator.id.clone()));
        }
        let named_approvers =
            open && !decision.requirements.is_empty() && !decision.approvers.is_empty();
        let ending = (!open).then(|| Ending {
            state: approval.state,
            by: approval.decided_by.as_deref(),
            at: approval
                .decided_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
            reason: (approval.state == ApprovalState::Rejected)
                .then(|| {
                    let rejection = approval
                        .votes
                        .iter()
                        .rev()
                        .find(|v| v.vote == Choice::Reject);
                    rejection.and_then(|v| v.reason.as_deref())
                })
                .flatten(),
            telling_workflow: approval.owes_resume(),
        });
        Self {
            state: approval.state,
            state_word: match approval.state {
                ApprovalState::Pending => "Approval needed",
                ApprovalState::Approved => "Approved",
                ApprovalState::Rejected => "Rejected",
                ApprovalState::Expired => "Expired",
            },
            summary: &request.summary,
            facts,
            why: &decision.reasons,
            requirements: &decision.requirements,
            alternatives: decision
                .alternatives
                .iter()
                .map(|a| a.requirements.as_slice())
                .collect(),
            can_approve: named_approvers.then(|| Named::first(&decision.approvers)),
            votes: &approval.votes,
            links: &request.links,
            ending,
            request_id: &request.id,
            policy: short_hash(&view.evaluation.policy_revision),
            buttons: open.then_some(Buttons {
                request_id: &request.id,
                reason_required: decision.reject_reason_required,
            }),
        }
    }

    /// The progress lines (without bullets): `payments-owners: 0 of 1`, then each alternative as
    /// `or instead: sre: 0 of 1`; group names escaped by `escape`.
    pub fn progress_lines(&self, escape: impl Fn(&str) -> String) -> Vec<String> {
        let progress = |r: &Requirement| {
            let Requirement { group, min, have } = r;
            format!("{}: {} of {min}", escape(group), have.min(min))
        };
        let mut lines: Vec<String> = self.requirements.iter().map(progress).collect();
        for alternative in &self.alternatives {
            let parts: Vec<String> = alternative.iter().map(progress).collect();
            lines.push(format!("or instead: {}", parts.join(" and ")));
        }
        lines
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use regate_core::PendingApproval;

    fn approval() -> PendingApproval {
        regate_testkit::pending_approval(&regate_testkit::request("chg-3").build(), "t")
    }

    fn view_of(approval: &PendingApproval) -> MessageView<'_> {
        MessageView::of(ApprovalView {
            approval,
            evaluation: &approval.evaluation,
        })
    }

    #[test]
    fn an_open_request_has_buttons_and_approvers_and_no_ending() {
        let a = approval();
        let view = view_of(&a);
        assert_eq!(view.state_word, "Approval needed");
        assert_eq!(view.facts[0], ("Action", "deploy".to_string()));
        assert_eq!(view.buttons.as_ref().map(|b| b.request_id), Some("chg-3"));
        assert!(view.can_approve.is_some());
        assert!(view.ending.is_none());
        assert_eq!(
            view.progress_lines(str::to_string),
            ["payments-owners: 0 of 1"]
        );
    }

    #[test]
    fn a_rejected_request_ends_with_the_rejecting_votes_reason_and_no_buttons() {
        let mut a = approval();
        a.state = ApprovalState::Rejected;
        a.decided_by = Some("alice@example.com".into());
        a.votes.push(Vote {
            voter: "alice@example.com".into(),
            vote: Choice::Reject,
            reason: Some("not today".into()),
            at: "2026-11-21T10:00:00.000Z".into(),
        });
        let view = view_of(&a);
        let ending = view.ending.as_ref().unwrap();
        assert_eq!(ending.reason, Some("not today"));
        assert_eq!(
            ending.by_and_when(str::to_uppercase).0,
            " by ALICE@EXAMPLE.COM"
        );
        assert!(view.buttons.is_none() && view.can_approve.is_none());
    }

    #[test]
    fn a_long_list_names_ten_and_counts_the_rest() {
        let people: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
        let named = Named::first(&people);
        assert_eq!((named.named.len(), named.more), (10, 15));
        assert_eq!(Named::first(&people[..3]).more, 0);
    }
}
