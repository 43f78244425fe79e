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
    Command::new(env!("CARGO_BIN_EXE_regate"))
        .arg("request")
        .args(args)
        .envs(local_env())
        .env("REGATE_STATE_MACHINE_ARN", &stack.state_machine_arn)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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
    let status = finish(spawn(&stack, &["status", &id]));
    let shown = text(&status);
    assert_eq!(status.status.code(), Some(0), "{shown}");
    assert!(shown.contains("state approved"), "{shown}");
    assert!(shown.contains("vote alice@example.com approve"), "{shown}");
    assert!(shown.contains("link Pipeline: https://"), "{shown}");
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
        .envs(local_env())
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
    let input = request_file(&dir, &id, json!({"timeout_seconds": 3}));
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
