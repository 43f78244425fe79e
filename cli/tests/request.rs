//! `regate request start|status` against the local stack: the real state machine, functions
//! and Slack stand-in; votes cast by signed clicks while the command waits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use regate_tests::stack::LocalStack;
use regate_tests::{local_env, unique};
use serde_json::{json, Value};

/// `regate request ...` with the local stack's settings and its state machine, started in the
/// background so that a test can vote while it waits.
fn spawn(stack: &LocalStack, args: &[&str]) -> Child {
    request_command(stack, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `regate request ARGS` as [`spawn`] runs it, not started yet.
fn request_command(stack: &LocalStack, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_regate"));
    command
        .arg("request")
        .args(args)
        .envs(in_a_job())
        .env("REGATE_STATE_MACHINE_ARN", &stack.state_machine_arn);
    command
}

/// The local stack's settings, as a GitHub Actions job that dev (dev@example.com in
/// `data.people`) ran from acme/payments on main sees them: the issuer stand-in stands in for
/// GitHub's token request URL.
fn in_a_job() -> std::collections::HashMap<String, String> {
    let mut env = local_env();
    let job = format!(
        "{}/token?actor=dev&repository=acme/payments&ref=refs/heads/main",
        env["REGATE_TRUSTED_ISSUERS"]
    );
    env.insert("ACTIONS_ID_TOKEN_REQUEST_URL".into(), job);
    env
}

/// The command's output, killing it if it runs past a minute.
fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("regate request still running after a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A request file for `id`, shaped from the testkit's production deploy of payments.
fn request_file(dir: &tempfile::TempDir, id: &str, details: Value) -> String {
    let request = regate_testkit::request(id).with("details", details).json();
    let path = dir.path().join(format!("{id}.json"));
    std::fs::write(&path, request.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

async fn start_and_vote(vote: Option<&str>, details: Value) -> (String, Output) {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let id = unique("cli-request");
    let input = request_file(&dir, &id, details);
    let child = spawn(
        &stack,
        &["start", "--input", &input, "--wait", "--timeout", "50s"],
    );
    if let Some(vote) = vote {
        stack.click_ok("alice@example.com", vote, &id).await;
    }
    let output = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    (id, output)
}

#[tokio::test]
async fn start_wait_exits_0_on_approval_and_shows_where_it_asked_and_who_voted() {
    let (id, output) = start_and_vote(Some("approve"), json!({})).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    for line in [
        format!("request {id}"),
        "evaluated approval_required".to_string(),
        "asked slack channel C0PAYMENTS".to_string(),
        "vote alice@example.com approve (slack)".to_string(),
        "outcome approved".to_string(),
    ] {
        assert!(shown.contains(&line), "{line:?} in {shown}");
    }

    let stack = LocalStack::connect().await;
    stack.once_requester_told(&id).await;
    let status = finish(spawn(&stack, &["status", &id]));
    let shown = text(&status);
    assert_eq!(status.status.code(), Some(0), "{shown}");
    assert!(shown.contains("state approved"), "{shown}");
    assert!(shown.contains("vote alice@example.com approve"), "{shown}");
    assert!(shown.contains("link Pipeline: https://"), "{shown}");
    assert!(
        shown.contains("told the requester dev@example.com on slack: sent"),
        "{shown}"
    );
    // The same as JSON, which parses.
    let json_status = finish(spawn(&stack, &["status", &id, "--format", "json"]));
    assert_eq!(json_status.status.code(), Some(0), "{}", text(&json_status));
    let document: Value = serde_json::from_slice(&json_status.stdout).unwrap();
    assert_eq!(
        (document["request_id"].as_str(), document["state"].as_str()),
        (Some(id.as_str()), Some("approved"))
    );
    assert_eq!(document["change"]["environment"], "production");
    assert!(document["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "vote alice@example.com approve (slack)"));
    // A closed pipe ends it quietly.
    for args in [
        vec!["status", id.as_str()],
        vec!["status", id.as_str(), "--format", "json"],
    ] {
        regate_tests::assert_quiet_on_a_closed_pipe(request_command(&stack, &args), 0);
    }
}

#[tokio::test]
async fn a_request_still_waiting_exits_4_from_status_and_from_a_wait_that_times_out() {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let id = unique("cli-pending");
    let input = request_file(&dir, &id, json!({}));
    let started = finish(spawn(
        &stack,
        &[
            "start",
            "--input",
            &input,
            "--wait",
            "--timeout",
            "2s",
            "--format",
            "json",
        ],
    ));
    assert_eq!(started.status.code(), Some(4), "{}", text(&started));
    // Progress went to stderr; stdout is one JSON document.
    let document: Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(document["request_id"], id.as_str());
    assert_eq!(document["outcome"], "waiting for approval");
    assert!(document["execution"].as_str().unwrap().contains(&id));
    assert!(String::from_utf8_lossy(&started.stderr).contains("asked slack channel C0PAYMENTS"));
    let status = finish(spawn(&stack, &["status", &id]));
    assert_eq!(status.status.code(), Some(4), "{}", text(&status));
    assert!(text(&status).contains("state waiting for approval"));
    stack.click_ok("alice@example.com", "approve", &id).await;
}

#[tokio::test]
async fn start_wait_exits_1_on_rejection() {
    let (_, output) = start_and_vote(Some("reject"), json!({})).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("outcome rejected"), "{shown}");
}

#[tokio::test]
async fn start_wait_exits_3_when_nobody_decides_in_time() {
    let (_, output) = start_and_vote(None, json!({"timeout_seconds": 3})).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert!(shown.contains("outcome expired"), "{shown}");
}

#[tokio::test]
async fn the_stack_outputs_name_the_state_machine_and_the_table() {
    let stack = LocalStack::connect().await;
    let config = regate_tests::local_config().await;
    let name = unique("regate-outputs");
    let template = json!({
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "StateMachineArn": {"Value": stack.state_machine_arn},
            "DecisionLogTableName": {"Value": regate_tests::decision_log_table()},
        },
    });
    aws_sdk_cloudformation::Client::new(&config)
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = unique("cli-request-stack");
    let input = request_file(&dir, &id, json!({}));
    let mut child = Command::new(env!("CARGO_BIN_EXE_regate"));
    child
        .args(["request", "start", "--input", &input, "--stack", &name])
        .envs(in_a_job())
        .env_remove("REGATE_DECISION_LOG_TABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = finish(child.spawn().unwrap());
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains(&format!("request {id}")), "{shown}");
    assert!(shown.contains("asked slack channel C0PAYMENTS"), "{shown}");

    let missing = finish(spawn(
        &stack,
        &["start", "--input", &input, "--stack", "no-such-stack"],
    ));
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("no-such-stack"),
        "{}",
        text(&missing)
    );
}

#[tokio::test]
async fn bad_input_and_a_second_start_are_clear_errors_with_exit_2() {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"action": "deploy"}).to_string()).unwrap();
    let output = finish(spawn(&stack, &["start", "--input", bad.to_str().unwrap()]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("invalid request"),
        "{}",
        text(&output)
    );

    // Started again while it waits (a retried CI step), the same request is the same approval:
    // Step Functions' StartExecution is idempotent for the same name and input.
    let id = unique("cli-request-twice");
    // Long enough that both starts land while it waits, even on a loaded machine.
    let input = request_file(&dir, &id, json!({"timeout_seconds": 10}));
    let first = finish(spawn(&stack, &["start", "--input", &input]));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let again = finish(spawn(&stack, &["start", "--input", &input, "--wait"]));
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    let execution = |output: &Output| {
        text(output)
            .lines()
            .find(|l| l.starts_with("execution "))
            .map(str::to_string)
    };
    assert_eq!(execution(&first), execution(&again));
    // Once it has ended, starting it again is an error, never a second approval.
    let ended = finish(spawn(&stack, &["start", "--input", &input]));
    assert_eq!(ended.status.code(), Some(2), "{}", text(&ended));
    assert!(
        text(&ended).contains("was started before"),
        "{}",
        text(&ended)
    );

    let unknown = finish(spawn(&stack, &["status", "no-such-request"]));
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no request no-such-request"),
        "{}",
        text(&unknown)
    );
}

/// `regate request start` as a GitHub Actions job runs it: the job's identity token is asked
/// for at ACTIONS_ID_TOKEN_REQUEST_URL (here the issuer stand-in's, whose query stands for the
/// job) and sent with the request, and the evaluator proves the requester from it.
#[tokio::test]
async fn start_in_github_actions_sends_the_jobs_identity_token_and_a_file_token_elsewhere() {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let env = in_a_job();
    let issuer = env["REGATE_TRUSTED_ISSUERS"].clone();
    let in_actions = |bearer: &str, input: &str| {
        Command::new(env!("CARGO_BIN_EXE_regate"))
            .args(["request", "start", "--input", input])
            .envs(in_a_job())
            .env("REGATE_STATE_MACHINE_ARN", &stack.state_machine_arn)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", bearer)
            .output()
            .unwrap()
    };
    let proven_actor = |id: String| {
        let stack = &stack;
        async move {
            let events = stack.events(&id).await;
            let requested = events
                .iter()
                .find(|e| e.kind == regate_core::EventKind::Requested)
                .unwrap();
            requested.data["request"]["identity"].clone()
        }
    };

    let id = unique("cli-actions");
    let input = request_file(&dir, &id, json!({}));
    let started = in_actions(&env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], &input);
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    let identity = proven_actor(id).await;
    assert_eq!(identity["issuer"], issuer.as_str());
    assert_eq!(identity["claims"]["actor"], "dev");
    assert_eq!(identity["claims"]["aud"], "regate");
    assert!(
        !text(&started).contains("eyJ"),
        "the token is never printed"
    );

    // A job without `id-token: write` is refused by GitHub: a clear error, nothing started.
    let id = unique("cli-actions-refused");
    let input = request_file(&dir, &id, json!({}));
    let refused = in_actions("not-the-job's-token", &input);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("id-token: write"),
        "{}",
        text(&refused)
    );
    assert!(stack.events(&id).await.is_empty());

    // Elsewhere (GitLab's id_tokens), the token comes from a file.
    let token = regate_tests::stack::pipeline_token("alice-gh").await;
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let id = unique("cli-token-file");
    let request = regate_testkit::request(&id)
        .requester("alice@example.com")
        .json();
    let input = dir.path().join(format!("{id}.json"));
    std::fs::write(&input, request.to_string()).unwrap();
    let started = finish(spawn(
        &stack,
        &[
            "start",
            "--input",
            input.to_str().unwrap(),
            "--identity-token",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    assert_eq!(proven_actor(id).await["claims"]["actor"], "alice-gh");
}

/// The GitHub Action's step (scripts/action-run.sh, what action.yml runs) with the CLI built
/// here, against the local stack: it waits for the vote and hands the workflow its outputs.
#[tokio::test]
async fn the_github_actions_step_waits_for_the_vote_and_sets_its_outputs() {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let id = unique("action");
    let input = request_file(&dir, &id, json!({}));
    let outputs = dir.path().join("github_output");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let child = Command::new("bash")
        .arg(root.join("scripts/action-run.sh"))
        .envs(in_a_job())
        .env("REGATE", env!("CARGO_BIN_EXE_regate"))
        .env("INPUT", &input)
        .env("STATE_MACHINE", &stack.state_machine_arn)
        .env("TIMEOUT", "50s")
        .env("GITHUB_OUTPUT", &outputs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    stack.click_ok("alice@example.com", "reject", &id).await;
    let output = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "rejected: {}", text(&output));
    let written = std::fs::read_to_string(&outputs).unwrap();
    assert_eq!(written, format!("request-id={id}\noutcome=rejected\n"));
    // Neither stack nor state machine: a clear error, exit 2, and no outputs.
    let missing = Command::new("bash")
        .arg(root.join("scripts/action-run.sh"))
        .env("INPUT", &input)
        .env_remove("STACK")
        .env_remove("STATE_MACHINE")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("needs stack or state-machine"));
}

#[tokio::test]
async fn start_ends_quietly_when_its_reader_goes_away_and_keeps_its_exit_code() {
    let stack = LocalStack::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let id = unique("cli-start-pipe");
    let input = request_file(&dir, &id, json!({}));
    // Without --wait: started, 0; the approval stays open for the click below.
    regate_tests::assert_quiet_on_a_closed_pipe(
        request_command(&stack, &["start", "--input", &input]),
        0,
    );
    stack.click_ok("alice@example.com", "reject", &id).await;
    // Once the workflow has ended: rejected, 1, with or without a reader.
    let mut code = None;
    for _ in 0..50 {
        code = finish(spawn(&stack, &["status", &id])).status.code();
        if code != Some(4) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(code, Some(1));
    regate_tests::assert_quiet_on_a_closed_pipe(request_command(&stack, &["status", &id]), 1);
}
