# The default regate approval policy (Rego v1).
#
# Input:  {"request": <request>, "votes": [{"voter", "vote", "reason", "at"}], "now": "<RFC3339>"}
#         plus "voter" when data.approvals.vote is asked.
# Output: data.approvals.decision and data.approvals.vote (see the README's policy contract).
#
# regate also enforces its hard rules in Rust whatever this file says: the requester and the
# initiator never vote, one vote per person, and a person counts once across groups.
package approvals

request := input.request

production_environments := {"production", "prod"}

is_production if request.environment in production_environments

# ---------------------------------------------------------------- who is who

excluded_voters contains lower(request.requester.id)

excluded_voters contains lower(request.initiator.id)

members(group) := {lower(m) | some m in data.groups[group]}

eligible(group) := {m | some m in members(group); not m in excluded_voters}

known_service := data.services[request.resource.name]

owners_group := known_service.owners if known_service.owners else := "sre"

# ---------------------------------------------------------------- change freezes

now_ns := time.parse_rfc3339_ns(input.now)

active_freezes contains window.reason if {
	is_production
	some window in data.freeze
	time.parse_rfc3339_ns(window.from) <= now_ns
	now_ns < time.parse_rfc3339_ns(window.to)
}

in_freeze if count(active_freezes) > 0

break_glass if request.details.break_glass == true

# ---------------------------------------------------------------- changes that are never allowed

deny_reasons contains "destructive production change: deleting a production database is not allowed" if {
	is_production
	request.action == "delete"
	request.resource.type == "database"
}

deny_reasons contains sprintf("production change freeze in effect (%s); set details.break_glass to request an exception", [reason]) if {
	in_freeze
	not break_glass
	some reason in active_freezes
}

# ---------------------------------------------------------------- what a change needs

route := {
	"requirements": [{"group": owners_group, "min": 1}],
	"reason": sprintf("production deploy of %s needs 1 approval from %s", [request.resource.name, owners_group]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	is_production
	request.action == "deploy"
	known_service
} else := {
	"requirements": [{"group": "sre", "min": 2}],
	"reason": sprintf("production deploy of %s, a service with no registered owners, needs 2 approvals from sre", [request.resource.name]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	is_production
	request.action == "deploy"
} else := {
	"requirements": [{"group": owners_group, "min": 1}, {"group": "security", "min": 1}],
	"reason": sprintf("production IAM change needs 1 approval from %s and 1 from security, by two different people", [owners_group]),
	"timeout_seconds": 14400,
	"reject_reason_required": true,
} if {
	is_production
	request.action == "iam_change"
} else := {
	"requirements": [{"group": "sre", "min": 2}],
	"reason": sprintf("production %s needs 2 approvals from sre", [request.action]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	is_production
} else := {
	"requirements": [{"group": owners_group, "min": 1}],
	"reason": sprintf("deleting %s in %s needs 1 approval from %s", [request.resource.name, request.environment, owners_group]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	request.action == "delete"
} else := {
	"requirements": [],
	"reason": sprintf("%s change in %s needs no approval", [request.action, request.environment]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
}

break_glass_requirements := [{"group": "sre", "min": 2}] if {
	in_freeze
	break_glass
} else := []

break_glass_reasons := [sprintf("break glass during a change freeze (%s) needs 2 additional approvals from sre", [concat(", ", active_freezes)])] if {
	in_freeze
	break_glass
} else := []

wanted := array.concat(route.requirements, break_glass_requirements)

# Requirements on the same group add up: "2 more from sre" on top of "2 from sre" is 4 people.
wanted_by_group[group] := total if {
	some r in wanted
	group := r.group
	total := sum([x.min | some x in wanted; x.group == group])
}

# ---------------------------------------------------------------- votes

eligible_for_any contains person if {
	some group, _ in wanted_by_group
	some person in eligible(group)
}

approvals contains lower(v.voter) if {
	some v in input.votes
	v.vote == "approve"
	lower(v.voter) in eligible_for_any
}

rejections contains v if {
	some v in input.votes
	v.vote == "reject"
	lower(v.voter) in eligible_for_any
}

requirements := [{"group": group, "min": min, "have": count(approvals & eligible(group))} |
	some group, min in wanted_by_group
]

# Each group has enough approvals, and there are enough distinct people for all of them
# (exact for two groups by Hall's theorem; regate's Rust check is exact for any number).
all_met if {
	every r in requirements {
		r.have >= r.min
	}
	count(approvals) >= sum([r.min | some r in requirements])
}

rejection_reasons contains sprintf("rejected by %s: %s", [v.voter, object.get(v, "reason", "no reason given")]) if {
	some v in rejections
}

# ---------------------------------------------------------------- the decision

outcome := "deny" if {
	count(deny_reasons) > 0
} else := "allow" if {
	count(wanted) == 0
} else := "deny" if {
	count(rejections) > 0
} else := "allow" if {
	all_met
} else := "approval_required"

reasons := sort(deny_reasons) if {
	count(deny_reasons) > 0
} else := sort(rejection_reasons) if {
	count(rejections) > 0
	count(wanted) > 0
} else := array.concat(array.concat([route.reason], break_glass_reasons), [sprintf("approved by %s", [concat(", ", sort(approvals))])]) if {
	count(wanted) > 0
	all_met
} else := array.concat([route.reason], break_glass_reasons)

slack_channel := known_service.slack_channel if known_service.slack_channel else := data.defaults.slack_channel

teams_conversation := known_service.teams_conversation if known_service.teams_conversation else := data.defaults.teams_conversation

notify_targets contains {"platform": "slack", "channel": slack_channel} if slack_channel

notify_targets contains {"platform": "teams", "conversation": teams_conversation} if teams_conversation

denied_by_rule if count(deny_reasons) > 0

decision := {
	"outcome": outcome,
	"reasons": reasons,
	"requirements": [r | some r in requirements; not denied_by_rule],
	"approvers": [a | some a in sort(eligible_for_any); not denied_by_rule],
	"notify": [t | some t in notify_targets; outcome == "approval_required"],
	"timeout_seconds": route.timeout_seconds,
	"reject_reason_required": route.reject_reason_required,
}

# ---------------------------------------------------------------- may this person vote?

voter := lower(input.voter)

voter_groups contains group if {
	some group, _ in wanted_by_group
	voter in eligible(group)
}

vote := {"allowed": false, "reason": "the requester of a change cannot vote on it"} if {
	voter == lower(request.requester.id)
} else := {"allowed": false, "reason": "the initiator of a change cannot vote on it"} if {
	voter == lower(request.initiator.id)
} else := {"allowed": false, "reason": "this request is not waiting for approval"} if {
	outcome != "approval_required"
} else := {"allowed": false, "reason": "you have already voted on this request"} if {
	some v in input.votes
	lower(v.voter) == voter
} else := {"allowed": true, "reason": sprintf("%s votes as a member of %s", [voter, concat(", ", voter_groups)])} if {
	count(voter_groups) > 0
} else := {"allowed": false, "reason": sprintf("%s is not in a group whose approval this request needs (%s)", [voter, concat(", ", sort([g | some g, _ in wanted_by_group]))])}
