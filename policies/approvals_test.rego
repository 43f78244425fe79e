# Tests for the default policy, in OPA's convention (`opa test policies/` runs them too).
package approvals_test

import data.approvals

calm := "2026-06-01T12:00:00Z"

frozen := "2026-12-24T12:00:00Z"

request(action, environment, kind, name) := {
	"id": "t-1",
	"action": action,
	"environment": environment,
	"resource": {"type": kind, "name": name},
	"requester": {"id": "dev@example.com", "kind": "human"},
	"initiator": {"id": "ci-bot", "kind": "service"},
	"summary": "test change",
	"details": {},
	"links": [],
}

break_glass(r) := object.union(r, {"details": {"break_glass": true}})

# Requests come from a pipeline its requester ran: a verified identity whose actor is the
# requester (see the identity tests below for every other case).
decide(r, votes, now) := d if {
	d := approvals.decision with input as {"request": r, "votes": votes, "now": now, "identity": ran_by(r)}
}

may_vote(r, votes, person) := v if {
	v := approvals.vote with input as {"request": r, "votes": votes, "now": calm, "voter": person, "identity": ran_by(r)}
}

ran_by(r) := proven(r.requester.id, "acme/payments", "refs/heads/main")

approve(person) := {"voter": person, "vote": "approve", "at": calm}

reject(person, reason) := {"voter": person, "vote": "reject", "reason": reason, "at": calm}

payments_deploy := request("deploy", "production", "service", "payments")

unknown_deploy := request("deploy", "production", "service", "ledger")

iam := request("iam_change", "production", "iam_role", "payments")

db_delete := request("delete", "production", "database", "orders-db")

# ---- row: not production, any action but delete -> allow

test_staging_deploy_is_allowed if {
	d := decide(request("deploy", "staging", "service", "payments"), [], calm)
	d.outcome == "allow"
	d.requirements == []
	d.notify == []
}

test_dev_iam_change_is_allowed if {
	decide(request("iam_change", "dev", "iam_role", "payments"), [], calm).outcome == "allow"
}

test_staging_delete_is_not_automatically_allowed if {
	d := decide(request("delete", "staging", "database", "orders-db"), [], calm)
	d.outcome == "approval_required"
}

test_prod_alias_counts_as_production if {
	decide(request("deploy", "prod", "service", "payments"), [], calm).outcome == "approval_required"
}

# ---- row: delete of a database in production -> deny

test_production_database_delete_is_denied if {
	d := decide(db_delete, [], calm)
	d.outcome == "deny"
	contains(d.reasons[0], "destructive production change")
	d.requirements == []
}

test_production_database_delete_stays_denied_with_approvals if {
	decide(db_delete, [approve("erin@example.com"), approve("frank@example.com")], calm).outcome == "deny"
}

test_production_delete_of_a_service_is_not_the_database_rule if {
	d := decide(request("delete", "production", "service", "payments"), [], calm)
	d.outcome == "approval_required"
}

# ---- row: production deploy of a known service -> 1 owner

test_known_service_deploy_needs_one_owner if {
	d := decide(payments_deploy, [], calm)
	d.outcome == "approval_required"
	d.requirements == [{"group": "payments-owners", "min": 1, "have": 0}]
	d.timeout_seconds == 3600
	d.reject_reason_required == false
	d.approvers == ["alice@example.com", "bob@example.com"]
}

test_known_service_deploy_notifies_its_channels if {
	d := decide(payments_deploy, [], calm)
	{"platform": "slack", "channel": "C0PAYMENTS"} in d.notify
	{"platform": "teams", "conversation": "19:payments-approvals@thread.tacv2"} in d.notify
}

test_known_service_deploy_is_allowed_by_one_owner if {
	d := decide(payments_deploy, [approve("alice@example.com")], calm)
	d.outcome == "allow"
	d.requirements[0].have == 1
	d.notify == []
}

test_known_service_deploy_is_not_allowed_by_another_team if {
	decide(payments_deploy, [approve("carol@example.com")], calm).outcome == "approval_required"
}

# ---- row: production deploy of an unknown service -> 2 from sre

test_unknown_service_deploy_needs_two_sre if {
	d := decide(unknown_deploy, [], calm)
	d.outcome == "approval_required"
	d.requirements == [{"group": "sre", "min": 2, "have": 0}]
	{"platform": "slack", "channel": "C0CHANGES"} in d.notify
}

test_unknown_service_deploy_one_sre_is_not_enough if {
	d := decide(unknown_deploy, [approve("erin@example.com")], calm)
	d.outcome == "approval_required"
	d.requirements[0].have == 1
}

test_unknown_service_deploy_two_sre_allow if {
	decide(unknown_deploy, [approve("erin@example.com"), approve("frank@example.com")], calm).outcome == "allow"
}

# ---- row: production iam_change -> owner AND security, two people

test_iam_change_needs_owner_and_security if {
	d := decide(iam, [], calm)
	d.outcome == "approval_required"
	{"group": "payments-owners", "min": 1, "have": 0} in d.requirements
	{"group": "security", "min": 1, "have": 0} in d.requirements
	d.timeout_seconds == 14400
	d.reject_reason_required == true
}

test_iam_change_owner_alone_is_not_enough if {
	decide(iam, [approve("alice@example.com")], calm).outcome == "approval_required"
}

test_iam_change_one_person_in_both_groups_is_not_enough if {
	# bob@example.com is in payments-owners and in security.
	decide(iam, [approve("bob@example.com")], calm).outcome == "approval_required"
}

test_iam_change_owner_and_security_allow if {
	decide(iam, [approve("alice@example.com"), approve("ivan@example.com")], calm).outcome == "allow"
}

test_iam_change_person_in_both_groups_plus_another_allow if {
	decide(iam, [approve("bob@example.com"), approve("judy@example.com")], calm).outcome == "allow"
}

# ---- row: production change during a freeze -> deny, unless break glass

test_freeze_denies_production_changes if {
	d := decide(payments_deploy, [], frozen)
	d.outcome == "deny"
	contains(d.reasons[0], "Year-end change freeze")
}

test_freeze_does_not_apply_outside_its_window if {
	decide(payments_deploy, [], "2027-01-04T00:00:00Z").outcome == "approval_required"
}

test_freeze_does_not_apply_to_staging if {
	decide(request("deploy", "staging", "service", "payments"), [], frozen).outcome == "allow"
}

test_break_glass_in_freeze_needs_two_more_sre if {
	d := decide(break_glass(payments_deploy), [], frozen)
	d.outcome == "approval_required"
	{"group": "payments-owners", "min": 1, "have": 0} in d.requirements
	{"group": "sre", "min": 2, "have": 0} in d.requirements
}

test_break_glass_in_freeze_owner_alone_is_not_enough if {
	decide(break_glass(payments_deploy), [approve("alice@example.com")], frozen).outcome == "approval_required"
}

test_break_glass_in_freeze_owner_and_two_sre_allow if {
	votes := [approve("alice@example.com"), approve("erin@example.com"), approve("frank@example.com")]
	decide(break_glass(payments_deploy), votes, frozen).outcome == "allow"
}

test_break_glass_adds_to_an_existing_sre_requirement if {
	d := decide(break_glass(unknown_deploy), [approve("erin@example.com"), approve("frank@example.com")], frozen)
	d.requirements == [{"group": "sre", "min": 4, "have": 2}]
	d.outcome == "approval_required"
}

test_break_glass_outside_a_freeze_changes_nothing if {
	d := decide(break_glass(payments_deploy), [], calm)
	d.requirements == [{"group": "payments-owners", "min": 1, "have": 0}]
}

test_freeze_with_a_window_given_in_the_test if {
	window := [{"from": "2026-06-01T00:00:00Z", "to": "2026-06-02T00:00:00Z", "reason": "Launch day"}]
	d := decide(payments_deploy, [], calm) with data.freeze as window
	d.outcome == "deny"
	contains(d.reasons[0], "Launch day")
}

# ---- row: a reject from an eligible voter -> deny

test_reject_from_an_owner_denies if {
	d := decide(payments_deploy, [reject("alice@example.com", "not during the sale")], calm)
	d.outcome == "deny"
	d.reasons == ["rejected by alice@example.com: not during the sale"]
}

test_reject_from_security_denies_iam_change_even_after_an_owner_approved if {
	votes := [approve("alice@example.com"), reject("ivan@example.com", "too broad")]
	decide(iam, votes, calm).outcome == "deny"
}

test_reject_from_an_outsider_changes_nothing if {
	decide(payments_deploy, [reject("mallory@example.com", "no")], calm).outcome == "approval_required"
}

# ---- row: votes by the requester, the initiator or outsiders do not count

test_requester_approval_does_not_count if {
	# Even when the requester is an owner.
	r := object.union(payments_deploy, {"requester": {"id": "alice@example.com", "kind": "human"}})
	decide(r, [approve("alice@example.com")], calm).outcome == "approval_required"
	not "alice@example.com" in decide(r, [], calm).approvers
}

test_requester_may_not_vote if {
	v := may_vote(payments_deploy, [], "dev@example.com")
	v.allowed == false
	contains(v.reason, "requester")
}

test_initiator_may_not_vote if {
	v := may_vote(payments_deploy, [], "CI-BOT")
	v.allowed == false
	contains(v.reason, "initiator")
}

test_outsider_may_not_vote if {
	v := may_vote(payments_deploy, [], "mallory@example.com")
	v.allowed == false
	contains(v.reason, "payments-owners")
}

test_owner_may_vote if {
	v := may_vote(payments_deploy, [], "Alice@Example.com")
	v.allowed == true
}

test_second_vote_is_refused if {
	v := may_vote(unknown_deploy, [approve("erin@example.com")], "erin@example.com")
	v.allowed == false
	contains(v.reason, "already voted")
}

test_vote_on_a_decided_request_is_refused if {
	v := may_vote(staging_request, [], "erin@example.com")
	v.allowed == false
}

staging_request := request("deploy", "staging", "service", "payments")

# ---- the approval window

test_a_caller_may_shorten_the_approval_window if {
	r := object.union(payments_deploy, {"details": {"timeout_seconds": 30}})
	decide(r, [], calm).timeout_seconds == 30
}

test_a_caller_may_not_lengthen_the_approval_window if {
	r := object.union(payments_deploy, {"details": {"timeout_seconds": 999999}})
	decide(r, [], calm).timeout_seconds == 3600
}

test_a_nonsense_window_is_ignored if {
	r := object.union(payments_deploy, {"details": {"timeout_seconds": "soon"}})
	decide(r, [], calm).timeout_seconds == 3600
	r0 := object.union(payments_deploy, {"details": {"timeout_seconds": 0}})
	decide(r0, [], calm).timeout_seconds == 3600
}

# ---- time: reminders, escalation, the change's window

# The decision opened_at the given time and evaluated at calm.
waited(r, votes, opened_at) := d if {
	d := approvals.decision with input as {"request": r, "votes": votes, "now": calm, "opened_at": opened_at, "identity": ran_by(r)}
}

may_vote_after(r, votes, person, opened_at) := v if {
	v := approvals.vote with input as {"request": r, "votes": votes, "now": calm, "opened_at": opened_at, "voter": person, "identity": ran_by(r)}
}

half_an_hour_ago := "2026-06-01T11:29:59Z"

a_minute_ago := "2026-06-01T11:59:00Z"

test_an_open_request_is_reminded_15_minutes_in_and_10_minutes_before_its_end if {
	decide(payments_deploy, [], calm).remind_after_seconds == [900, 3000]
	decide(iam, [], calm).remind_after_seconds == [900, 13800]
	short := object.union(payments_deploy, {"details": {"timeout_seconds": 1200}})
	decide(short, [], calm).remind_after_seconds == [600, 900]
	tiny := object.union(payments_deploy, {"details": {"timeout_seconds": 300}})
	decide(tiny, [], calm).remind_after_seconds == []
}

test_a_decided_request_has_no_reminders_or_reevaluations if {
	d := decide(payments_deploy, [approve("alice@example.com")], calm)
	d.outcome == "allow"
	d.remind_after_seconds == []
	d.reevaluate_after_seconds == []
}

test_a_prod_deploy_is_evaluated_again_at_30_minutes if {
	decide(payments_deploy, [], calm).reevaluate_after_seconds == [1800]
	decide(unknown_deploy, [], calm).reevaluate_after_seconds == []
}

test_before_30_minutes_sre_is_neither_asked_nor_counted if {
	d := waited(payments_deploy, [approve("erin@example.com")], a_minute_ago)
	d.outcome == "approval_required"
	d.alternatives == []
	not "erin@example.com" in d.approvers
	count(d.notify) == 2
	may_vote_after(payments_deploy, [], "erin@example.com", a_minute_ago).allowed == false
}

test_after_30_minutes_one_sre_approval_is_also_enough_and_sre_is_asked if {
	d := waited(payments_deploy, [], half_an_hour_ago)
	d.outcome == "approval_required"
	d.alternatives == [{"requirements": [{"group": "sre", "min": 1, "have": 0}]}]
	"erin@example.com" in d.approvers
	{"platform": "slack", "channel": "C0SRE"} in d.notify
	{"platform": "teams", "conversation": "19:sre-approvals@thread.tacv2"} in d.notify
	contains(concat(" ", d.reasons), "1 approval from sre is also enough")
	may_vote_after(payments_deploy, [], "erin@example.com", half_an_hour_ago).allowed == true
	approved := waited(payments_deploy, [approve("erin@example.com")], half_an_hour_ago)
	approved.outcome == "allow"
	approved.alternatives == [{"requirements": [{"group": "sre", "min": 1, "have": 1}]}]
}

test_the_owners_still_approve_after_the_escalation if {
	waited(payments_deploy, [approve("bob@example.com")], half_an_hour_ago).outcome == "allow"
}

window_until(at) := object.union(payments_deploy, {"details": {"not_after": at}})

test_the_end_of_the_changes_window_is_a_reevaluation_point if {
	d := decide(window_until("2026-06-01T12:10:00Z"), [], calm)
	d.outcome == "approval_required"
	d.reevaluate_after_seconds == [600, 1800]
	# A window that ends after the timeout changes nothing within it.
	decide(window_until("2026-06-02T12:00:00Z"), [], calm).reevaluate_after_seconds == [1800]
}

test_a_request_still_open_when_its_window_closes_is_denied if {
	d := waited(window_until("2026-06-01T11:50:00Z"), [], half_an_hour_ago)
	d.outcome == "deny"
	contains(d.reasons[0], "window closed at 2026-06-01T11:50:00Z")
	object.get(d, "remind_after_seconds", []) == []
}

# ---- people asked by name

asking(people) := object.union(payments_deploy, {"details": {"ask": people}})

test_people_asked_by_name_who_may_approve_get_a_direct_message if {
	d := decide(asking(["Alice@example.com", "bob@example.com", "mallory@example.com"]), [], calm)
	{"platform": "slack", "user": "alice@example.com"} in d.notify
	# bob prefers Teams (data.people).
	{"platform": "teams", "user": "bob@example.com"} in d.notify
	# mallory may not approve this change: no message for her.
	count([t | some t in d.notify; t.user == "mallory@example.com"]) == 0
	count(d.notify) == 4
}

test_a_malformed_ask_is_ignored if {
	count(decide(asking("alice@example.com"), [], calm).notify) == 2
	count(decide(asking([42]), [], calm).notify) == 2
}

# ---- who asked, proven (input.identity)

github := "https://token.actions.githubusercontent.com"

proven(actor, repository, ref) := {
	"issuer": github,
	"subject": concat("", ["repo:", repository, ":ref:", ref]),
	"key_id": "k1",
	"claims": {"iss": github, "actor": actor, "repository": repository, "ref": ref},
}

decide_as(r, identity, votes) := d if {
	d := approvals.decision with input as {"request": r, "votes": votes, "now": calm, "identity": identity}
}

may_vote_as(r, identity, person) := v if {
	v := approvals.vote with input as {"request": r, "votes": [], "now": calm, "voter": person, "identity": identity}
}

test_a_verified_actor_who_is_the_requester_asks_as_usual if {
	d := decide_as(payments_deploy, proven("dev", "acme/payments", "refs/heads/main"), [])
	d.outcome == "approval_required"
	d.approvers == ["alice@example.com", "bob@example.com"]
}

test_a_refused_token_is_denied_with_its_reason if {
	d := decide_as(payments_deploy, {"error": "the identity token has expired (exp)"}, [])
	d.outcome == "deny"
	d.reasons == ["the request's identity token was refused: the identity token has expired (exp)"]
}

test_a_claimed_requester_other_than_the_verified_actor_is_denied_naming_both if {
	d := decide_as(payments_deploy, proven("mallory", "acme/payments", "refs/heads/main"), [])
	d.outcome == "deny"
	d.reasons == ["the request names dev@example.com as its requester, but its identity token proves that mallory ran it"]
}

test_a_requester_named_by_address_or_a_service_requester_goes_with_the_actor if {
	by_address := object.union(payments_deploy, {"requester": {"id": "Alice@Example.com", "kind": "human"}})
	decide_as(by_address, proven("alice-gh", "acme/payments", "refs/heads/main"), []).outcome == "approval_required"
	by_bot := object.union(payments_deploy, {"requester": {"id": "github-actions", "kind": "service"}})
	decide_as(by_bot, proven("alice-gh", "acme/payments", "refs/heads/main"), []).outcome == "approval_required"
}

test_the_verified_actor_cannot_approve_under_their_chat_address if {
	# The pipeline's bot asks; the token proves alice-gh (alice@example.com) ran it.
	r := object.union(payments_deploy, {"requester": {"id": "github-actions", "kind": "service"}})
	identity := proven("alice-gh", "acme/payments", "refs/heads/main")
	d := decide_as(r, identity, [])
	# alice is a payments owner, but she asked: bob may approve, she may not.
	"bob@example.com" in d.approvers
	not "alice@example.com" in d.approvers
	v := may_vote_as(r, identity, "alice@example.com")
	v.allowed == false
	v.reason == "the requester of a change cannot vote on it: its identity token proves that alice-gh (you) asked for it"
	may_vote_as(r, identity, "bob@example.com").allowed == true
	# Her approval does not count either.
	decide_as(r, identity, [approve("alice@example.com")]).outcome == "approval_required"
}

test_a_gitlab_actor_is_found_by_the_issuers_account_field if {
	gitlab := {"issuer": "https://gitlab.com", "subject": "project_path:acme/payments:ref_type:branch:ref:main", "key_id": "g1",
		"claims": {"user_login": "alice", "project_path": "acme/payments", "ref": "main"}}
	r := object.union(payments_deploy, {"requester": {"id": "alice@example.com", "kind": "human"}})
	d := decide_as(r, gitlab, [])
	not "alice@example.com" in d.approvers
	"bob@example.com" in d.approvers
}

test_production_changes_may_be_limited_to_listed_pipelines if {
	pipelines := [{"repository": "acme/payments", "ref": "refs/heads/main"}, {"repository": "acme/infra"}]
	main := proven("dev", "acme/payments", "refs/heads/main")
	branch := proven("dev", "acme/payments", "refs/heads/feature")
	infra := proven("dev", "acme/infra", "refs/tags/v1")
	decide_as(payments_deploy, main, []).outcome == "approval_required" with data.pipelines as pipelines
	decide_as(payments_deploy, infra, []).outcome == "approval_required" with data.pipelines as pipelines
	d := decide_as(payments_deploy, branch, []) with data.pipelines as pipelines
	d.outcome == "deny"
	d.reasons == ["production changes come only from the pipelines in data.pipelines, not from acme/payments at refs/heads/feature"]
	# Outside production the list does not apply.
	staging := request("deploy", "staging", "service", "payments")
	decide_as(staging, branch, []).outcome == "allow" with data.pipelines as pipelines
}

test_a_production_change_without_an_identity_token_is_denied if {
	d := approvals.decision with input as {"request": payments_deploy, "votes": [], "now": calm}
	d.outcome == "deny"
	d.reasons == ["a production change must prove who asked for it: send request.identity_token, an OIDC token from a trusted CI issuer (see \"Proving who asked\" in regate's README)"]
	staging := request("deploy", "staging", "service", "payments")
	s := approvals.decision with input as {"request": staging, "votes": [], "now": calm}
	s.outcome == "allow"
}

test_the_requester_is_told_the_outcome_where_the_token_proves_they_are if {
	# The pipeline's bot asks; the token proves alice-gh ran it: alice hears, on Slack.
	r := object.union(payments_deploy, {"requester": {"id": "github-actions", "kind": "service"}})
	alice := decide_as(r, proven("alice-gh", "acme/payments", "refs/heads/main"), [])
	alice.tell_requester == {"platform": "slack", "user": "alice@example.com"}
	# bob prefers Teams; a decided request is told too.
	bob := decide_as(r, proven("bob-gh", "acme/payments", "refs/heads/main"), [approve("alice@example.com")]) with data.people as {"bob@example.com": {"github": "bob-gh", "direct_messages": "teams"}}
	bob.outcome == "allow"
	bob.tell_requester == {"platform": "teams", "user": "bob@example.com"}
	# A human requester nobody maps to is told at the address they gave; a service with no
	# known person behind it, nobody.
	decide(payments_deploy, [], calm).tell_requester == {"platform": "slack", "user": "dev@example.com"}
	unknown := decide_as(r, proven("stranger", "acme/payments", "refs/heads/main"), [])
	unknown.tell_requester == null
	# A denial tells too (time can deny an open request).
	refused := decide_as(payments_deploy, {"error": "expired"}, [])
	refused.outcome == "deny"
	refused.tell_requester.user == "dev@example.com"
}
