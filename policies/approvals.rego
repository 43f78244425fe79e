# The default regate approval policy (Rego v1, package approvals).
#
# Input:  {"request": <request>, "votes": [{"voter", "vote", "reason", "at"}], "now": "<RFC3339>",
#          "opened_at": "<RFC3339>"} plus "voter" when data.approvals.vote is asked, and
#          "identity" when the request carried an identity token. opened_at is when the
#          approval opened (the first evaluation sees opened_at == now).
# Output: data.approvals.decision and data.approvals.vote (see the README's policy contract).
#
# regate enforces its hard rules in Rust whatever this file says: the requester and the
# initiator never vote, one vote per person, and a person counts once across groups.
#
# The policy is written as a few rules with local variables rather than many small rules:
# every rule call costs the evaluator about as much as a dozen local expressions, and the
# decision is evaluated again after every vote. Identities in data.groups are lower case
# (regate lower-cases them when it loads the bundle).
package approvals

# ---------------------------------------------------------------- facts about the request

facts := {
	"production": input.request.environment in {"production", "prod"},
	"owners": object.get(data.services, [input.request.resource.name, "owners"], "sre"),
	# The requester, the initiator, and whoever the identity token proves asked (data.people).
	"excluded": {lower(input.request.requester.id), lower(object.get(input.request, ["initiator", "id"], ""))} | actor_people,
	"freezes": [window.reason |
		input.request.environment in {"production", "prod"}
		now := time.parse_rfc3339_ns(input.now)
		some window in data.freeze
		time.parse_rfc3339_ns(window.from) <= now
		now < time.parse_rfc3339_ns(window.to)
	],
	"break_glass": object.get(input.request, ["details", "break_glass"], false) == true,
	# Seconds the approval has been open (0 at the first evaluation).
	"waited": (time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(object.get(input, "opened_at", input.now))) / 1000000000,
}

# ---------------------------------------------------------------- who asked, proven
# input.identity is what regate proved from the request's identity token (an OIDC token from a
# trusted CI issuer): {issuer, subject, key_id, claims}, or {error} when the token failed a
# check. Without a token there is no input.identity.

# data.people, data.issuers and data.pipelines are optional.
default people := {}

people := data.people

default issuers := {}

issuers := data.issuers

default pipelines := []

pipelines := data.pipelines

# Who ran the pipeline: GitHub's `actor`, GitLab's `user_login`.
actor := object.get(input.identity.claims, "actor", object.get(input.identity.claims, "user_login", ""))

# Which data.people field holds a person's account with the token's issuer.
account_field := object.get(issuers, [input.identity.issuer, "account"], "github")

# The people (lower-case addresses) whose account is the actor.
actor_people := {lower(person) |
	actor != ""
	some person, entry in people
	lower(object.get(entry, account_field, "")) == lower(actor)
}

# The pipeline that ran: the repository (GitHub) or project path (GitLab), and the ref.
pipeline := {
	"repository": object.get(input.identity.claims, "repository", object.get(input.identity.claims, "project_path", "")),
	"ref": object.get(input.identity.claims, "ref", ""),
}

# ---------------------------------------------------------------- changes that are never allowed

denials contains concat("", ["the request's identity token was refused: ", input.identity.error]) if {
	input.identity.error
}

# A production change must prove who asked: the request carries a verified identity token.
denials contains "a production change must prove who asked for it: send request.identity_token, an OIDC token from a trusted CI issuer (see \"Proving who asked\" in regate's README)" if {
	facts.production
	not input.identity
}

# The requester is whoever the token proves ran the pipeline: a request that names another person
# is refused, so no one can ask in another's name. A service requester (the pipeline's bot) is
# fine: the actor is the person behind it, and may not vote (facts.excluded, vote).
denials contains concat("", ["the request names ", input.request.requester.id, " as its requester, but its identity token proves that ", actor, " ran it"]) if {
	actor != ""
	input.request.requester.kind == "human"
	lower(input.request.requester.id) != lower(actor)
	not lower(input.request.requester.id) in actor_people
}

# data.pipelines, when set, lists where production changes may come from:
# [{"repository": "acme/payments", "ref": "refs/heads/main"}] (no ref: any ref).
denials contains concat("", ["production changes come only from the pipelines in data.pipelines, not from ", pipeline.repository, " at ", pipeline.ref]) if {
	facts.production
	input.identity.issuer
	count(pipelines) > 0
	count([p | some p in pipelines; p.repository == pipeline.repository; object.get(p, "ref", pipeline.ref) == pipeline.ref]) == 0
}

denials contains "destructive production change: deleting a production database is not allowed" if {
	facts.production
	input.request.action == "delete"
	input.request.resource.type == "database"
}

denials contains concat("", ["production change freeze in effect (", reason, "); set details.break_glass to request an exception"]) if {
	not facts.break_glass
	some reason in facts.freezes
}

# A change may say when it stops being worth making (details.not_after, RFC 3339: the end of a
# maintenance window, say). Still unapproved then, it is denied; the sweeper evaluates the
# request again at that moment (see reevaluate_after_seconds), so the workflow resumes then.
denials contains concat("", ["the change's window closed at ", input.request.details.not_after, " (details.not_after) before it was approved"]) if {
	time.parse_rfc3339_ns(input.now) >= time.parse_rfc3339_ns(input.request.details.not_after)
}

# ---------------------------------------------------------------- what a change needs
# requirements: group -> how many distinct approvers from it.

route := {
	"requirements": {facts.owners: 1},
	"reason": concat("", ["production deploy of ", input.request.resource.name, " needs 1 approval from ", facts.owners]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
	# Still pending after 30 minutes, it also accepts 1 approval from sre, and sre is asked.
	"escalation": {"after_seconds": 1800, "group": "sre", "min": 1},
} if {
	facts.production
	input.request.action == "deploy"
	data.services[input.request.resource.name]
} else := {
	"requirements": {"sre": 2},
	"reason": concat("", ["production deploy of ", input.request.resource.name, ", a service with no registered owners, needs 2 approvals from sre"]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	facts.production
	input.request.action == "deploy"
} else := {
	"requirements": {facts.owners: 1, "security": 1},
	"reason": concat("", ["production IAM change needs 1 approval from ", facts.owners, " and 1 from security, by two different people"]),
	"timeout_seconds": 14400,
	"reject_reason_required": true,
} if {
	facts.production
	input.request.action == "iam_change"
} else := {
	"requirements": {"sre": 2},
	"reason": concat("", ["production ", input.request.action, " needs 2 approvals from sre"]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	facts.production
} else := {
	"requirements": {facts.owners: 1},
	"reason": concat("", ["deleting ", input.request.resource.name, " in ", input.request.environment, " needs 1 approval from ", facts.owners]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
} if {
	input.request.action == "delete"
} else := {
	"requirements": {},
	"reason": concat("", [input.request.action, " change in ", input.request.environment, " needs no approval"]),
	"timeout_seconds": 3600,
	"reject_reason_required": false,
}

# Break glass during a freeze adds 2 approvers from sre; requirements on the same group add
# up ("2 more from sre" on top of "2 from sre" is 4 people).
wanted := {
	"requirements": object.union(route.requirements, {"sre": object.get(route.requirements, "sre", 0) + 2}),
	"reasons": [route.reason, concat("", ["break glass during a change freeze (", concat(", ", facts.freezes), ") needs 2 additional approvals from sre"])],
} if {
	facts.break_glass
	count(facts.freezes) > 0
} else := {"requirements": route.requirements, "reasons": [route.reason]}

# The route's escalation, once the approval has waited long enough: another way to approve.
escalation := route.escalation if {
	facts.waited >= route.escalation.after_seconds
}

alternatives := [{escalation.group: escalation.min}] if {
	escalation
} else := []

escalation_reasons := [concat("", ["pending for over ", format_int(escalation.after_seconds / 60, 10), " minutes: 1 approval from ", escalation.group, " is also enough"])] if {
	escalation.min == 1
} else := [concat("", ["pending for over ", format_int(escalation.after_seconds / 60, 10), " minutes: ", format_int(escalation.min, 10), " approvals from ", escalation.group, " are also enough"])] if {
	escalation
} else := []

# ---------------------------------------------------------------- votes

tally := {
	"eligible": eligible,
	"approvals": approvals,
	"rejections": rejections,
	"requirements": [progress(group, min, approvals) | some group, min in wanted.requirements],
	"alternatives": [{"requirements": [progress(group, min, approvals) | some group, min in alternative]} |
		some alternative in alternatives
	],
	# The requirements, or every requirement of one alternative, have enough approvals, and
	# there are enough distinct people for all of them (exact for two groups by Hall's theorem;
	# regate's Rust check is exact for any number).
	"met": count([needs | some needs in array.concat([wanted.requirements], alternatives); met(needs, approvals)]) > 0,
} if {
	eligible := {p | some group in wanted_groups; some p in data.groups[group]; not p in facts.excluded}
	approvals := {lower(v.voter) | some v in input.votes; v.vote == "approve"; lower(v.voter) in eligible}
	rejections := [v | some v in input.votes; v.vote == "reject"; lower(v.voter) in eligible]
}

# Every group whose approval counts: the requirements' and the alternatives'.
wanted_groups := {group | some group, _ in wanted.requirements} | {group | some alternative in alternatives; some group, _ in alternative}

progress(group, min, approvals) := {"group": group, "min": min, "have": count([p | some p in approvals; p in data.groups[group]])}

met(needs, approvals) if {
	count([group | some group, min in needs; count([p | some p in approvals; p in data.groups[group]]) < min]) == 0
	count(approvals) >= sum([min | some _, min in needs])
}

# ---------------------------------------------------------------- the decision

outcome := "deny" if {
	count(denials) > 0
} else := "allow" if {
	count(wanted.requirements) == 0
} else := "deny" if {
	count(tally.rejections) > 0
} else := "allow" if {
	tally.met
} else := "approval_required"

decision := {
	"outcome": outcome,
	"reasons": reasons,
	"requirements": tally.requirements,
	"alternatives": tally.alternatives,
	"approvers": sort(tally.eligible),
	"notify": notify,
	"timeout_seconds": timeout_seconds,
	"reject_reason_required": route.reject_reason_required,
	"remind_after_seconds": remind_after_seconds,
	"reevaluate_after_seconds": reevaluate_after_seconds,
	"tell_requester": tell_requester,
} if {
	count(denials) == 0
} else := {
	"outcome": "deny",
	"reasons": sort(denials),
	"requirements": [],
	"approvers": [],
	"notify": [],
	"timeout_seconds": route.timeout_seconds,
	"reject_reason_required": false,
	"tell_requester": tell_requester,
}

# Who hears how an approval ended, in a direct message once the workflow has the outcome: the
# person the identity token proves asked (data.people), else a human requester at the address
# they gave; null (nobody) for a service with no known person behind it.
default tell_requester := null

tell_requester := {"platform": object.get(people, [person, "direct_messages"], data.defaults.direct_messages), "user": person} if {
	person := requester_person
}

requester_person := p if {
	count(actor_people) == 1
	some p in actor_people
} else := lower(input.request.requester.id) if {
	input.request.requester.kind == "human"
	contains(input.request.requester.id, "@")
}

# A caller may shorten the approval window, never lengthen it: details.timeout_seconds.
timeout_seconds := min([route.timeout_seconds, floor(input.request.details.timeout_seconds)]) if {
	is_number(input.request.details.timeout_seconds)
	input.request.details.timeout_seconds >= 1
} else := route.timeout_seconds

reasons := sort([concat("", ["rejected by ", v.voter, ": ", object.get(v, "reason", "no reason given")]) | some v in tally.rejections]) if {
	count(tally.rejections) > 0
} else := array.concat(wanted.reasons, [concat("", ["approved by ", concat(", ", sort(tally.approvals))])]) if {
	outcome == "allow"
	count(wanted.requirements) > 0
} else := array.concat(wanted.reasons, escalation_reasons)

# ---------------------------------------------------------------- time
# Offsets in seconds from opened_at, each before the timeout. Reminders go out 15 minutes in
# and 10 minutes before the end, to the approvers who have not voted yet.
remind_after_seconds := sort({t | some t in [900, timeout_seconds - 600]; t >= 1; t < timeout_seconds}) if {
	outcome == "approval_required"
} else := []

# When the decision may change because time passes: the escalation, and the end of the
# change's window (details.not_after).
reevaluate_after_seconds := sort({t | some t in time_points; t >= 1; t < timeout_seconds}) if {
	outcome == "approval_required"
} else := []

time_points contains route.escalation.after_seconds

time_points contains ceil((time.parse_rfc3339_ns(input.request.details.not_after) - time.parse_rfc3339_ns(object.get(input, "opened_at", input.now))) / 1000000000)

# Where to ask: the service's own channels, else the defaults in data.defaults.
notify := array.concat([
	{"platform": "slack", "channel": object.get(data.services, [input.request.resource.name, "slack_channel"], data.defaults.slack_channel)},
	{"platform": "teams", "conversation": object.get(data.services, [input.request.resource.name, "teams_conversation"], data.defaults.teams_conversation)},
], array.concat(escalation_notify, direct_notify)) if {
	outcome == "approval_required"
} else := []

# People the requester asks by name (details.ask, a list of e-mail addresses) also get the
# message in a direct message, if they may approve it: on the platform data.people says they
# prefer, else data.defaults.direct_messages.
direct_notify := [{"platform": object.get(data.people, [person, "direct_messages"], data.defaults.direct_messages), "user": person} |
	some person in sort(asked)
]

asked := {lower(p) | some p in input.request.details.ask; is_string(p); lower(p) in tally.eligible} if {
	is_array(input.request.details.ask)
} else := set()

# An escalation also asks the escalation group where it gathers (data.channels).
escalation_notify := [
	{"platform": "slack", "channel": data.channels[escalation.group].slack_channel},
	{"platform": "teams", "conversation": data.channels[escalation.group].teams_conversation},
] if {
	escalation
} else := []

# ---------------------------------------------------------------- may this person vote?

vote := {"allowed": false, "reason": "the requester of a change cannot vote on it"} if {
	lower(input.voter) == lower(input.request.requester.id)
} else := {"allowed": false, "reason": concat("", ["the requester of a change cannot vote on it: its identity token proves that ", actor, " (you) asked for it"])} if {
	lower(input.voter) in actor_people
} else := {"allowed": false, "reason": "the initiator of a change cannot vote on it"} if {
	lower(input.voter) == lower(input.request.initiator.id)
} else := {"allowed": false, "reason": "this request is not waiting for approval"} if {
	outcome != "approval_required"
} else := {"allowed": false, "reason": "you have already voted on this request"} if {
	# A comprehension, not `some v in input.votes`: regorus' VM (0.14.1) makes the whole rule
	# undefined when `some` iterates an empty list in an else-chain branch.
	count([v | some v in input.votes; lower(v.voter) == lower(input.voter)]) > 0
} else := {"allowed": true, "reason": concat("", [lower(input.voter), " votes as a member of ", concat(", ", groups)])} if {
	groups := [group | some group in wanted_groups; lower(input.voter) in data.groups[group]]
	count(groups) > 0
} else := {"allowed": false, "reason": concat("", [lower(input.voter), " is not in a group whose approval this request needs (", concat(", ", sort(wanted_groups)), ")"])}
