//! Drives the real `regate` binary: the example inputs, inputs written from the policy table
//! alone, and every kind of bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn regate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regate"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `regate policy eval` of `input` (a request, or a whole policy input), as a request its
/// requester proved with an identity token: the identity is added unless the input has one.
fn eval_json(input: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.json");
    let mut input = match input.get("request") {
        Some(_) => input.clone(),
        None => json!({"request": input}),
    };
    if input.get("identity").is_none() {
        let requester = input["request"]["requester"]["id"]
            .as_str()
            .unwrap_or_default();
        input["identity"] = serde_json::to_value(regate_testkit::ran_by(requester)).unwrap();
    }
    std::fs::write(&path, input.to_string()).unwrap();
    let out = eval(&path, extra);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Checks that a failure is one clear line and never a panic.
fn assert_clean_failure(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = stderr(out);
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn every_example_gives_the_outcome_of_its_table_row() {
    let dir = repo_root().join("policies/examples");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    assert!(expected.len() >= 9);
    for (file, outcome) in expected {
        let path = dir.join(file);
        let out = eval(&path, &[]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
        if outcome == "vote_refused" {
            assert_eq!(result["allowed"], json!(false), "{file}");
        } else {
            assert_eq!(result["outcome"], *outcome, "{file}");
            assert!(result["policy_revision"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"));
            assert!(result["input_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"));
        }
    }
}

/// A request written from the policy's table alone: no initiator, no links.
fn request(action: &str, environment: &str, kind: &str, name: &str) -> Value {
    regate_testkit::request("new-1")
        .change(action, environment, kind, name)
        .requester("someone@example.com")
        .without("initiator")
        .without("links")
        .json()
}

#[test]
fn inputs_written_from_the_table_alone_get_the_table_outcomes() {
    let at = ["--now", "2026-03-03T09:00:00Z"];
    let qa = eval_json(&request("restart", "qa", "service", "checkout"), &at);
    assert_eq!(qa["outcome"], "allow");

    let drop = eval_json(&request("delete", "prod", "database", "users"), &at);
    assert_eq!(drop["outcome"], "deny");

    let checkout = eval_json(&request("deploy", "production", "service", "checkout"), &at);
    assert_eq!(checkout["outcome"], "approval_required");
    assert_eq!(
        checkout["requirements"],
        json!([{"group": "checkout-owners", "min": 1, "have": 0}])
    );
    assert_eq!(
        checkout["notify"][0],
        json!({"platform": "slack", "channel": "C0CHECKOUT"})
    );

    let unknown = eval_json(&request("deploy", "prod", "service", "search"), &at);
    assert_eq!(
        unknown["requirements"],
        json!([{"group": "sre", "min": 2, "have": 0}])
    );

    let iam = eval_json(
        &request("iam_change", "production", "iam_role", "checkout"),
        &at,
    );
    assert_eq!(iam["timeout_seconds"], 14400);
    assert_eq!(iam["reject_reason_required"], true);

    let frozen = eval_json(
        &request("deploy", "production", "service", "checkout"),
        &["--now", "2026-12-30T00:00:00Z"],
    );
    assert_eq!(frozen["outcome"], "deny");
    let mut glass = request("deploy", "production", "service", "checkout");
    glass["details"] = json!({"break_glass": true});
    let glass = eval_json(&glass, &["--now", "2026-12-30T00:00:00Z"]);
    assert_eq!(glass["outcome"], "approval_required");
    assert!(glass["requirements"]
        .as_array()
        .unwrap()
        .contains(&json!({"group": "sre", "min": 2, "have": 0})));

    let owner_votes = eval_json(
        &json!({"request": request("deploy", "production", "service", "checkout"),
            "votes": [{"voter": "carol@example.com", "vote": "approve"}], "now": "2026-03-03T09:00:00Z"}),
        &[],
    );
    assert_eq!(owner_votes["outcome"], "allow");

    let outsider = eval_json(
        &request("deploy", "production", "service", "checkout"),
        &["--voter", "alice@example.com"],
    );
    assert_eq!(outsider["allowed"], false);
    let requester = eval_json(
        &request("deploy", "production", "service", "checkout"),
        &["--voter", "someone@example.com"],
    );
    assert_eq!(requester["allowed"], false);
}

/// `regate policy eval --input INPUT EXTRA...`.
fn eval(input: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["policy", "eval", "--input", input.to_str().unwrap()];
    args.extend_from_slice(extra);
    regate(&args)
}

/// `regate simulate` of one of the policy's example requests, with `votes`
/// (`who=approve`, `who=reject:why`) in order.
fn simulate(example: &str, votes: &[&str]) -> Output {
    let path = repo_root().join("policies/examples").join(example);
    let mut args = vec!["simulate", "--input", path.to_str().unwrap()];
    for vote in votes {
        args.extend(["--vote", vote]);
    }
    regate(&args)
}

#[test]
fn simulate_applies_votes_in_order_and_ends_with_the_final_outcome() {
    let out = simulate(
        "05-prod-iam-change.json",
        &[
            "dev@example.com=approve",
            "bob@example.com=approve",
            "judy@example.com=approve",
            "ivan@example.com=reject:too late",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("start: approval_required"), "{text}");
    assert!(lines[1].contains("refused"), "{text}");
    assert!(lines[2].contains("counted; approval_required"), "{text}");
    assert!(lines[3].contains("counted; allow"), "{text}");
    assert!(lines[4].contains("already decided"), "{text}");
    assert_eq!(lines.last().unwrap(), &"final outcome: allow");
}

#[test]
fn simulate_shows_a_rejection_as_deny() {
    let out = simulate(
        "03-prod-deploy-known-service.json",
        &["alice@example.com=reject:not today"],
    );
    assert!(stdout(&out).contains("rejected by alice@example.com: not today"));
    assert!(stdout(&out).ends_with("final outcome: deny\n"));
}

#[test]
fn policy_test_reports_every_test_and_the_totals() {
    let out = regate(&["policy", "test", "policies"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let last = stdout(&out).lines().last().unwrap().to_string();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 25, "{last}");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn a_failing_policy_test_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root().join("policies");
    std::fs::copy(
        root.join("approvals.rego"),
        dir.path().join("approvals.rego"),
    )
    .unwrap();
    std::fs::copy(root.join("data.json"), dir.path().join("data.json")).unwrap();
    std::fs::write(
        dir.path().join("broken_test.rego"),
        "package approvals_test\n\ntest_passes if { true }\ntest_fails if { 1 == 2 }\n",
    )
    .unwrap();
    let out = regate(&["policy", "test", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("FAIL data.approvals_test.test_fails"));
    assert!(stdout(&out).ends_with("1 passed, 1 failed\n"));
}

#[test]
fn a_request_without_an_id_is_named_after_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my change.json");
    let r = regate_testkit::request("unused").without("id").json();
    std::fs::write(&path, r.to_string()).unwrap();
    let out = eval(&path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = regate(&["simulate", "--input", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("start: "), "{}", stdout(&out));
}

#[test]
fn opened_at_is_part_of_the_input_and_defaults_to_now() {
    let mut input = json!({"request": request("deploy", "production", "service", "payments"),
                           "now": "2026-06-01T12:30:00Z"});
    let digest = |input: &Value, extra: &[&str]| {
        eval_json(input, extra)["input_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = digest(&input, &[]);
    assert_eq!(
        first,
        digest(&input, &["--opened-at", "2026-06-01T12:30:00Z"]),
        "a first evaluation opens at its own now"
    );
    let waited = digest(&input, &["--opened-at", "2026-06-01T12:00:00Z"]);
    assert_ne!(first, waited);
    input["opened_at"] = json!("2026-06-01T12:00:00Z");
    assert_eq!(digest(&input, &[]), waited, "the input's opened_at is read");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.json");
    std::fs::write(&path, input.to_string()).unwrap();
    assert_clean_failure(
        &eval(&path, &["--opened-at", "soon"]),
        "opened_at \"soon\" is not an RFC 3339 timestamp",
    );
}

#[test]
fn bad_inputs_are_one_clear_line_with_a_non_zero_exit() {
    assert_clean_failure(
        &regate(&["policy", "eval", "--input", "no/such/file.json"]),
        "cannot read no/such/file.json",
    );

    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{ not json").unwrap();
    assert_clean_failure(
        &regate(&["policy", "eval", "--input", bad_json.to_str().unwrap()]),
        "is not valid JSON",
    );

    let invalid = dir.path().join("invalid.json");
    let mut r = request("deploy", "production", "service", "x");
    r["resource"] = json!({"type": "service"});
    std::fs::write(&invalid, r.to_string()).unwrap();
    assert_clean_failure(
        &regate(&["policy", "eval", "--input", invalid.to_str().unwrap()]),
        "resource.name",
    );
    // Every invalid field is named in the one line, not only the first.
    r["summary"] = json!("");
    r["requester"] = json!({"id": "someone", "kind": "human"});
    std::fs::write(&invalid, r.to_string()).unwrap();
    let out = regate(&["simulate", "--input", invalid.to_str().unwrap()]);
    for field in ["resource.name", "requester.id", "summary"] {
        assert_clean_failure(&out, field);
    }

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("approvals.rego"),
        "package approvals\n\ndecision := {\n",
    )
    .unwrap();
    let good = repo_root().join("policies/examples/01-staging-deploy.json");
    assert_clean_failure(
        &eval(&good, &["--policies", broken.to_str().unwrap()]),
        "approvals.rego:",
    );

    assert_clean_failure(
        &regate(&[
            "simulate",
            "--input",
            good.to_str().unwrap(),
            "--vote",
            "alice@example.com=maybe",
        ]),
        "neither approve nor reject",
    );
    assert_clean_failure(&eval(&good, &["--now", "tomorrow"]), "RFC 3339");
}

/// The example policy in the README's "Time-aware approvals" section, as written there.
fn readme_time_policy() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Time-aware approvals")
        .nth(1)
        .expect("the README has the section");
    let block = section.split("```rego\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_readmes_time_aware_example_policy_reminds_escalates_asks_people_and_closes_on_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("approvals.rego"), readme_time_policy()).unwrap();
    let groups = json!({"groups": {"owners": ["alice@example.com"], "sre": ["erin@example.com"]}});
    std::fs::write(dir.path().join("data.json"), groups.to_string()).unwrap();
    let policies = dir.path().to_str().unwrap();
    let mut input = json!({"request": request("deploy", "production", "service", "payments"),
        "votes": [], "now": "2026-06-01T12:00:00Z"});
    let fresh = eval_json(&input, &["--policies", policies]);
    assert_eq!(fresh["outcome"], "approval_required");
    assert_eq!(fresh["remind_after_seconds"], json!([900, 3000]));
    assert_eq!(fresh["reevaluate_after_seconds"], json!([1800]));
    assert!(fresh.get("alternatives").is_none(), "{fresh}");
    assert!(fresh["notify"]
        .as_array()
        .unwrap()
        .contains(&json!({"platform": "teams", "user": "bob@example.com"})));

    let escalated = eval_json(
        &input,
        &[
            "--policies",
            policies,
            "--opened-at",
            "2026-06-01T11:29:00Z",
        ],
    );
    assert_eq!(
        escalated["alternatives"],
        json!([{"requirements": [{"group": "sre", "min": 1, "have": 0}]}])
    );
    assert!(escalated["notify"]
        .as_array()
        .unwrap()
        .contains(&json!({"platform": "slack", "channel": "C0SRE"})));

    input["request"]["details"] = json!({"not_after": "2026-06-01T11:59:00Z"});
    let closed = eval_json(&input, &["--policies", policies]);
    assert_eq!(closed["outcome"], "deny");
}
