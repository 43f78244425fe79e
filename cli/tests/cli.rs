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
    let result: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    assert_eq!(out.status.code(), Some(exit_code_of(&result)), "{result}");
    result
}

/// The exit code `policy eval` gives `result` (the exit-code table of `regate --help`): allow
/// 0, deny 1, approval required 4 (pending); a voter allowed 0, refused 1.
fn exit_code_of(result: &Value) -> i32 {
    match (result["outcome"].as_str(), result["allowed"].as_bool()) {
        (Some("allow"), _) | (None, Some(true)) => 0,
        (Some("deny"), _) | (None, Some(false)) => 1,
        (Some("approval_required"), _) => 4,
        other => panic!("not a decision or a vote check: {other:?} in {result}"),
    }
}

/// Checks that a failure is one clear line and never a panic, with exit code 2 whatever the
/// command (1 means denied, or a finding).
fn assert_clean_failure(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
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
        let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(
            out.status.code(),
            Some(exit_code_of(&result)),
            "{file}: {}",
            stderr(&out)
        );
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
    assert_eq!(out.status.code(), Some(0), "allowed: {}", stderr(&out));
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
    assert_eq!(out.status.code(), Some(1), "denied");
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
    assert_eq!(out.status.code(), Some(1), "a failed test is a finding");
    // JSON and JUnit say the same, and parse.
    let json_out = regate(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(json_out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&json_out)).unwrap();
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let failing = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["passed"] == false)
        .unwrap();
    assert_eq!(failing["name"], "data.approvals_test.test_fails");
    let junit = regate(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--format",
        "junit",
    ]);
    let xml = stdout(&junit);
    let document = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = document
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2, "{xml}");
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|f| f.has_tag_name("failure")))
        .collect();
    assert_eq!(failed.len(), 1, "{xml}");
    assert_eq!(failed[0].attribute("name"), Some("test_fails"));
    assert_eq!(
        failed[0].attribute("classname"),
        Some("data.approvals_test")
    );
    assert_eq!(document.root_element().attribute("failures"), Some("1"));
    assert!(stdout(&out).contains("FAIL data.approvals_test.test_fails"));
    assert!(stdout(&out).ends_with("1 passed, 1 failed\n"));
}

#[test]
fn a_request_without_an_id_is_named_after_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my change.json");
    let r = regate_testkit::request("unused").without("id").json();
    std::fs::write(&path, r.to_string()).unwrap();
    // No identity token: a production change is denied (exit 1), not an error (2).
    let out = eval(&path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = regate(&["simulate", "--input", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
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

/// The example policy in the guide's "Time-aware approvals" section, as written there.
fn guide_time_policy() -> String {
    let guide = std::fs::read_to_string(repo_root().join("docs/guide.md")).unwrap();
    let section = guide
        .split("## Time-aware approvals")
        .nth(1)
        .expect("the guide has the section");
    let block = section.split("```rego\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_guides_time_aware_example_policy_reminds_escalates_asks_people_and_closes_on_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("approvals.rego"), guide_time_policy()).unwrap();
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

/// `regate ARGS` ends quietly when its reader has gone, with the exit code it has when read
/// (see the support crate's helper).
fn assert_quiet_on_a_closed_pipe(args: &[&str]) {
    let code = regate(args).status.code().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_regate"));
    command.args(args).current_dir(repo_root());
    regate_tests::assert_quiet_on_a_closed_pipe(command, code);
}

#[test]
fn every_offline_command_ends_quietly_when_its_reader_goes_away() {
    let example = repo_root().join("policies/examples/05-prod-iam-change.json");
    let example = example.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar.gz");
    for args in [
        vec!["policy", "test", "policies"],
        vec!["policy", "test", "policies", "--format", "json"],
        vec!["policy", "test", "policies", "--format", "junit"],
        vec!["policy", "eval", "--input", example],
        vec!["policy", "eval", "--input", example, "--format", "text"],
        vec![
            "simulate",
            "--input",
            example,
            "--vote",
            "bob@example.com=approve",
        ],
        vec!["simulate", "--input", example, "--format", "json"],
        vec![
            "policy",
            "build",
            "policies",
            "--out",
            bundle.to_str().unwrap(),
        ],
        vec!["completions", "bash"],
        vec!["--help"],
    ] {
        assert_quiet_on_a_closed_pipe(&args);
    }
    // As a shell runs it.
    let piped = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} policy test policies | head -1",
                env!("CARGO_BIN_EXE_regate")
            ),
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert!(stdout(&piped).starts_with("PASS "), "{}", stdout(&piped));
    assert!(stderr(&piped).is_empty(), "{}", stderr(&piped));
}

#[test]
fn one_exit_code_table_in_help_and_the_readme() {
    let help = stdout(&regate(&["--help"]));
    let table_start = help
        .find("Exit codes")
        .expect("--help shows the exit codes");
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for line in help[table_start..]
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
    {
        let (code, meaning) = line.trim().split_once("  ").unwrap();
        assert!(
            readme.contains(&format!("| {code} | {} |", meaning.trim())),
            "the README's exit-code table lacks {line:?}"
        );
    }
    // Usage errors exit 2 too (clap's own code), and say so on stderr.
    let usage = regate(&["policy", "eval"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn machine_readable_outputs_parse() {
    let example = repo_root().join("policies/examples/05-prod-iam-change.json");
    let example = example.to_str().unwrap();
    let tests = regate(&["policy", "test", "policies", "--format", "json"]);
    assert_eq!(tests.status.code(), Some(0));
    let tests: Value = serde_json::from_str(&stdout(&tests)).unwrap();
    assert_eq!(tests["failed"], 0);
    assert_eq!(
        tests["tests"].as_array().unwrap().len() as u64,
        tests["passed"].as_u64().unwrap()
    );
    let junit = stdout(&regate(&[
        "policy", "test", "policies", "--format", "junit",
    ]));
    let document = roxmltree::Document::parse(&junit).unwrap();
    let passed = tests["passed"].to_string();
    assert_eq!(
        document.root_element().attribute("tests"),
        Some(passed.as_str())
    );

    let simulated = regate(&[
        "simulate",
        "--input",
        example,
        "--format",
        "json",
        "--vote",
        "dev@example.com=approve",
        "--vote",
        "bob@example.com=approve",
        "--vote",
        "judy@example.com=approve",
    ]);
    assert_eq!(simulated.status.code(), Some(0), "{}", stderr(&simulated));
    let simulated: Value = serde_json::from_str(&stdout(&simulated)).unwrap();
    assert_eq!(simulated["start"]["outcome"], "approval_required");
    let steps = simulated["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(
        (steps[0]["counted"].as_bool(), steps[1]["counted"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(
        steps[0]["refused"].as_str().unwrap().contains("requester"),
        "{}",
        steps[0]
    );
    assert_eq!(simulated["final"]["outcome"], "allow");

    let text = regate(&["policy", "eval", "--input", example, "--format", "text"]);
    assert_eq!(text.status.code(), Some(4), "approval required: pending");
    assert!(
        stdout(&text).starts_with("approval_required - "),
        "{}",
        stdout(&text)
    );
}

#[test]
fn completions_for_each_shell_and_no_colour_off_a_terminal() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef regate"),
        ("fish", "complete -c regate"),
    ] {
        let out = regate(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains(marker) && script.contains("simulate"),
            "{shell}: {script}"
        );
    }
    // Standard output here is a pipe, not a terminal: no colour, with or without NO_COLOR.
    for no_color in [None, Some("1")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regate"));
        command
            .args(["policy", "test", "policies"])
            .current_dir(repo_root());
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let out = command.output().unwrap();
        assert!(
            !stdout(&out).contains('\u{1b}'),
            "escape codes off a terminal"
        );
    }
    // On a terminal (util-linux `script` gives it one): colour, unless NO_COLOR says not.
    let on_a_terminal = |no_color: &str| {
        let line = format!("{} policy test policies", env!("CARGO_BIN_EXE_regate"));
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("NO_COLOR", no_color)
            .current_dir(repo_root())
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(
        on_a_terminal("").contains("\u{1b}[32mPASS\u{1b}[0m"),
        "green PASS on a terminal"
    );
    assert!(!on_a_terminal("1").contains('\u{1b}'), "NO_COLOR wins");
}

/// The GitHub Action's installer (scripts/install-regate.sh) against a release served from
/// here: it installs the archive whose sha256 SHA256SUMS lists, and refuses one that differs.
#[test]
fn the_action_installs_a_release_only_when_its_sha256_matches() {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-musl",
        "aarch64" => "aarch64-unknown-linux-musl",
        other => panic!("no release target for {other}"),
    };
    let releases = tempfile::tempdir().unwrap();
    let release = releases.path().join("v9.9.9");
    let name = format!("regate-9.9.9-{arch}");
    std::fs::create_dir_all(release.join(&name)).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_regate"),
        release.join(&name).join("regate"),
    )
    .unwrap();
    let archive = format!("{name}.tar.gz");
    let packed = Command::new("tar")
        .args(["-czf", &archive, &name])
        .current_dir(&release)
        .status()
        .unwrap();
    assert!(packed.success());
    let sums = |archive_bytes: &[u8]| {
        use std::fmt::Write;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, archive_bytes);
        let hex = digest.as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        format!("{hex}  {archive}\n")
    };
    let bytes = std::fs::read(release.join(&archive)).unwrap();
    std::fs::write(release.join("SHA256SUMS"), sums(&bytes)).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(releases.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let install = |into: &Path| {
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Command::new("bash")
            .arg(repo_root().join("scripts/install-regate.sh"))
            .args(["9.9.9", into.to_str().unwrap()])
            .env("REGATE_RELEASES", format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap()
    };
    let good = tempfile::tempdir().unwrap();
    let installed = install(good.path());
    let version = Command::new(good.path().join("bin/regate"))
        .arg("--version")
        .output();
    // A SHA256SUMS that does not match the archive: refused, nothing installed.
    std::fs::write(release.join("SHA256SUMS"), sums(b"something else")).unwrap();
    let bad = tempfile::tempdir().unwrap();
    let refused = install(bad.path());
    server.kill().ok();
    server.wait().ok();
    assert!(installed.status.success(), "{}", stderr(&installed));
    assert!(stdout(&installed).contains("sha256 verified"));
    assert!(stdout(&version.unwrap()).starts_with("regate "));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("does not match SHA256SUMS"),
        "{}",
        stderr(&refused)
    );
    assert!(!bad.path().join("bin/regate").exists());
}
