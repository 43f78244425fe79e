//! The hard rules that hold whatever a policy says (defence in depth): the requester and the
//! initiator never vote, a person votes once, and a person counts once even when they belong
//! to several required groups.

use std::collections::{BTreeMap, BTreeSet};

use crate::decision::{Decision, Outcome, Requirement};
use crate::request::Request;
use crate::vote::{Choice, Vote, VoteCheck};

/// Group name to the normalised identities of its members (`data.groups`).
pub type Groups = BTreeMap<String, BTreeSet<String>>;

/// Seats per requirement beyond this are treated as unfillable, so a hostile policy cannot make
/// the matching below expensive.
const MAX_SEATS: u32 = 64;

/// Identities compare without ASCII case or surrounding space: `Dev@Example.com` is
/// `dev@example.com`. Only ASCII letters fold, as e-mail domains do: Unicode lowercasing would
/// make distinct addresses (`ǅ`, `K` the Kelvin sign) the same person.
pub fn normalize(identity: &str) -> String {
    identity.trim().to_ascii_lowercase()
}

pub const REFUSED_SELF_APPROVAL: &str =
    "the requester and the initiator of a change cannot vote on it";
pub const REFUSED_NO_IDENTITY: &str = "the voter has no identity";
pub const REFUSED_ALREADY_VOTED: &str = "you have already voted on this request";

/// Why a voter may not vote, before the policy is asked; `None` when the hard rules allow it.
pub fn refuse_voter(request: &Request, votes: &[Vote], voter: &str) -> Option<VoteCheck> {
    let voter = normalize(voter);
    if voter.is_empty() {
        return Some(VoteCheck::refused(REFUSED_NO_IDENTITY));
    }
    if request.excluded_voters().any(|id| normalize(id) == voter) {
        return Some(VoteCheck::refused(REFUSED_SELF_APPROVAL));
    }
    if votes.iter().any(|v| normalize(&v.voter) == voter) {
        return Some(VoteCheck::refused(REFUSED_ALREADY_VOTED));
    }
    None
}

/// The votes the policy may see: the first vote of each person who is neither requester nor
/// initiator, in the order they were cast.
pub fn countable_votes(request: &Request, votes: &[Vote]) -> Vec<Vote> {
    let excluded: BTreeSet<String> = request.excluded_voters().map(normalize).collect();
    let mut seen = BTreeSet::new();
    votes
        .iter()
        .filter(|v| {
            let who = normalize(&v.voter);
            !excluded.contains(&who) && seen.insert(who)
        })
        .cloned()
        .collect()
}

/// Applies the hard rules to what the policy returned. `votes` must already be countable.
pub fn enforce(
    mut decision: Decision,
    request: &Request,
    votes: &[Vote],
    groups: &Groups,
) -> Decision {
    let excluded: BTreeSet<String> = request.excluded_voters().map(normalize).collect();
    decision
        .approvers
        .retain(|a| !excluded.contains(&normalize(a)));
    if decision.outcome != Outcome::Allow || decision.requirements.is_empty() {
        return decision;
    }
    let approvals: Vec<String> = votes
        .iter()
        .filter(|v| v.vote == Choice::Approve)
        .map(|v| normalize(&v.voter))
        .collect();
    // Met when the requirements, or every requirement of one alternative, can be filled.
    let shortfall = |requirements: &[Requirement]| {
        let needed: u32 = requirements.iter().map(|r| r.min).sum();
        let seated = seat_distinct_approvers(requirements, &approvals, &decision.approvers, groups);
        (seated < needed).then_some((needed, seated))
    };
    let Some((needed, seated)) = shortfall(&decision.requirements) else {
        return decision;
    };
    if decision
        .alternatives
        .iter()
        .any(|alternative| shortfall(&alternative.requirements).is_none())
    {
        return decision;
    }
    decision.outcome = Outcome::ApprovalRequired;
    decision.reasons.push(format!(
        "hard rule: the requirements need {needed} distinct approvers and {seated} can be counted"
    ));
    decision
}

/// The largest number of requirement seats that distinct approvers can fill, each person taking
/// at most one seat in a group they belong to (bipartite matching, Kuhn's algorithm).
fn seat_distinct_approvers(
    requirements: &[Requirement],
    approvals: &[String],
    policy_approvers: &[String],
    groups: &Groups,
) -> u32 {
    let fallback: BTreeSet<String> = policy_approvers.iter().map(|a| normalize(a)).collect();
    let seats: Vec<&BTreeSet<String>> = requirements
        .iter()
        .flat_map(|r| {
            let members = groups.get(&r.group).unwrap_or(&fallback);
            std::iter::repeat_n(members, r.min.min(MAX_SEATS) as usize)
        })
        .collect();
    let mut seat_holder: Vec<Option<usize>> = vec![None; seats.len()];
    let mut filled = 0;
    for person in 0..approvals.len() {
        let mut visited = vec![false; seats.len()];
        if try_seat(person, approvals, &seats, &mut seat_holder, &mut visited) {
            filled += 1;
        }
    }
    filled
}

fn try_seat(
    person: usize,
    approvals: &[String],
    seats: &[&BTreeSet<String>],
    seat_holder: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    let Some(identity) = approvals.get(person) else {
        return false;
    };
    for seat in 0..seats.len() {
        if visited[seat] || !seats[seat].contains(identity) {
            continue;
        }
        visited[seat] = true;
        let free = match seat_holder[seat] {
            None => true,
            Some(other) => try_seat(other, approvals, seats, seat_holder, visited),
        };
        if free {
            seat_holder[seat] = Some(person);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Identity, IdentityKind, Resource};

    fn request() -> Request {
        Request {
            id: "r1".into(),
            action: "iam_change".into(),
            environment: "production".into(),
            resource: Resource {
                kind: "service".into(),
                name: "payments".into(),
            },
            requester: Identity {
                id: "Dev@Example.com".into(),
                kind: IdentityKind::Human,
            },
            initiator: Some(Identity {
                id: "ci-bot".into(),
                kind: IdentityKind::Service,
            }),
            summary: "s".into(),
            details: Default::default(),
            links: vec![],
            identity: None,
        }
    }

    fn vote(voter: &str, choice: Choice) -> Vote {
        Vote {
            voter: voter.into(),
            vote: choice,
            reason: None,
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn groups() -> Groups {
        let mut g = Groups::new();
        g.insert(
            "owners".into(),
            ["alice@example.com", "both@example.com"]
                .map(String::from)
                .into(),
        );
        g.insert(
            "security".into(),
            ["sam@example.com", "both@example.com"]
                .map(String::from)
                .into(),
        );
        g
    }

    fn allow(requirements: Vec<Requirement>) -> Decision {
        Decision {
            outcome: Outcome::Allow,
            alternatives: vec![],
            reasons: vec![],
            requirements,
            approvers: vec!["dev@example.com".into(), "alice@example.com".into()],
            notify: vec![],
            timeout_seconds: 60,
            reject_reason_required: false,
            remind_after_seconds: vec![],
            reevaluate_after_seconds: vec![],
            tell_requester: None,
        }
    }

    fn req(group: &str, min: u32) -> Requirement {
        Requirement {
            group: group.into(),
            min,
            have: min,
        }
    }

    #[test]
    fn identities_fold_ascii_case_only() {
        assert_eq!(normalize(" Dev@Example.COM "), "dev@example.com");
        // The Kelvin sign lowercases to "k" in Unicode: it must not pass for kim@.
        assert_ne!(
            normalize("\u{212A}im@example.com"),
            normalize("kim@example.com")
        );
        assert_ne!(
            normalize("ÄLICE@example.com"),
            normalize("älice@example.com")
        );
    }

    #[test]
    fn the_requester_and_initiator_votes_never_reach_the_policy() {
        let votes = [
            vote("dev@EXAMPLE.com ", Choice::Reject),
            vote("ci-bot", Choice::Approve),
        ];
        assert!(countable_votes(&request(), &votes).is_empty());
        assert_eq!(
            refuse_voter(&request(), &[], "DEV@example.com")
                .unwrap()
                .reason,
            REFUSED_SELF_APPROVAL
        );
    }

    #[test]
    fn only_the_first_vote_of_a_person_counts() {
        let votes = [
            vote("alice@example.com", Choice::Approve),
            vote("Alice@example.com", Choice::Reject),
            vote("sam@example.com", Choice::Approve),
        ];
        let counted = countable_votes(&request(), &votes);
        assert_eq!(counted.len(), 2);
        assert_eq!(counted[0].vote, Choice::Approve);
        assert_eq!(
            refuse_voter(&request(), &votes, "alice@example.com")
                .unwrap()
                .reason,
            REFUSED_ALREADY_VOTED
        );
        assert!(refuse_voter(&request(), &votes, "bob@example.com").is_none());
        assert_eq!(
            refuse_voter(&request(), &votes, "  ").unwrap().reason,
            REFUSED_NO_IDENTITY
        );
    }

    #[test]
    fn one_person_in_two_groups_cannot_fill_both_requirements() {
        let votes = [vote("both@example.com", Choice::Approve)];
        let d = enforce(
            allow(vec![req("owners", 1), req("security", 1)]),
            &request(),
            &votes,
            &groups(),
        );
        assert_eq!(d.outcome, Outcome::ApprovalRequired);
        assert!(d.reasons.last().unwrap().contains("2 distinct approvers"));
    }

    #[test]
    fn two_distinct_people_fill_two_requirements_even_when_one_is_in_both_groups() {
        let votes = [
            vote("both@example.com", Choice::Approve),
            vote("alice@example.com", Choice::Approve),
        ];
        let d = enforce(
            allow(vec![req("owners", 1), req("security", 1)]),
            &request(),
            &votes,
            &groups(),
        );
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn an_alternative_met_in_full_allows_and_a_half_met_one_does_not() {
        let mut decision = allow(vec![req("owners", 1)]);
        decision.alternatives = vec![crate::decision::Alternative {
            requirements: vec![req("security", 2)],
        }];
        let one = [vote("sam@example.com", Choice::Approve)];
        let d = enforce(decision.clone(), &request(), &one, &groups());
        assert_eq!(d.outcome, Outcome::ApprovalRequired, "1 of 2 from security");
        let two = [
            vote("sam@example.com", Choice::Approve),
            vote("both@example.com", Choice::Approve),
        ];
        let d = enforce(decision, &request(), &two, &groups());
        assert_eq!(d.outcome, Outcome::Allow, "the alternative is met in full");
    }

    #[test]
    fn an_allow_without_requirements_stands_and_the_requester_is_never_an_approver() {
        let d = enforce(allow(vec![]), &request(), &[], &groups());
        assert_eq!(d.outcome, Outcome::Allow);
        assert_eq!(d.approvers, ["alice@example.com"]);
    }

    #[test]
    fn a_group_missing_from_data_falls_back_to_the_policy_approvers() {
        let votes = [vote("alice@example.com", Choice::Approve)];
        let d = enforce(
            allow(vec![req("computed", 1)]),
            &request(),
            &votes,
            &groups(),
        );
        assert_eq!(d.outcome, Outcome::Allow);
        let d = enforce(
            allow(vec![req("computed", 2)]),
            &request(),
            &votes,
            &groups(),
        );
        assert_eq!(d.outcome, Outcome::ApprovalRequired);
    }
}
