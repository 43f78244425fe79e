//! Shared helpers for the tests against the local stack: its settings (from
//! `infra/local/local.env`, the same file the stack reads), SDK clients pointed at it, and
//! unique names so tests never see each other's data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod checkpoint;
pub mod export;
pub mod policy;
pub mod stack;
pub mod teams;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `infra/local/local.env` as a map.
pub fn local_env() -> HashMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("infra/local/local.env")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Runs a binary of this workspace (`env!("CARGO_BIN_EXE_...")`) with `args` and the local
/// stack's settings.
pub fn run_local(binary: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary)
        .args(args)
        .envs(local_env())
        .output()
        .unwrap()
}

/// Runs `command` with its standard output a pipe whose reader is already gone (what `| head
/// -1` leaves once head has read its line) and asserts that it ended quietly, no panic and no
/// "Broken pipe", with the exit code its result has (`code`, as with a reader).
pub fn assert_quiet_on_a_closed_pipe(mut command: std::process::Command, code: i32) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let what = format!("{command:?}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("backtrace"),
        "{what}: {err}"
    );
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
}

/// The SDK configuration for the local stack. Fails loudly when the stack is not running:
/// these tests are never skipped.
pub async fn local_config() -> aws_config::SdkConfig {
    let env = local_env();
    let endpoint = env["AWS_ENDPOINT_URL"].clone();
    let address = endpoint.trim_start_matches("http://").to_string();
    let reachable = address
        .parse()
        .map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        .unwrap_or(false);
    assert!(
        reachable,
        "the local AWS stack is not answering at {endpoint}: start it with `infra/local/stack up` \
         (the README's test command, `bash tests/run.sh`, does this itself)"
    );
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(env["AWS_REGION"].clone()))
        .credentials_provider(Credentials::new(
            env["AWS_ACCESS_KEY_ID"].clone(),
            env["AWS_SECRET_ACCESS_KEY"].clone(),
            None,
            None,
            "local.env",
        ))
        .load()
        .await
}

/// When the stack's own calendar starts (`REGATE_LOCAL_DATE`): its functions' clocks read this
/// time when the stack started, and run on from there.
pub fn local_date() -> chrono::DateTime<chrono::Utc> {
    regate_core::time::parse_rfc3339(&local_env()["REGATE_LOCAL_DATE"]).unwrap()
}

/// The time on the stack's clock now: the real time moved by the offset the stack fixed when
/// it started (`.local/run/clock-offset`).
pub fn stack_now() -> chrono::DateTime<chrono::Utc> {
    let offset = std::fs::read_to_string(repo_root().join(".local/run/clock-offset"))
        .expect("the stack is up")
        .trim()
        .parse::<i64>()
        .unwrap();
    chrono::Utc::now() + chrono::Duration::seconds(offset)
}

pub fn decision_log_table() -> String {
    local_env()["REGATE_DECISION_LOG_TABLE"].clone()
}

pub fn pending_table() -> String {
    local_env()["REGATE_PENDING_TABLE"].clone()
}

/// A name no other test, process or earlier run has used, short enough to read in a trace.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        chrono::Utc::now().format("%y%m%d%H%M%S%3f"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// How many of `events` are of `kind`.
pub fn count(events: &[regate_core::Event], kind: regate_core::EventKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// The `notified` event that told the requester the outcome, if there is one yet.
pub fn requester_told(events: &[regate_core::Event]) -> Option<&regate_core::Event> {
    let to = regate_core::approvals::TO_REQUESTER;
    events.iter().find(|e| {
        e.kind == regate_core::EventKind::Notified && e.data.get("to").is_some_and(|t| t == to)
    })
}

/// How many approval messages were posted (the `notified` events but the requester's).
pub fn messages_posted(events: &[regate_core::Event]) -> usize {
    let told = usize::from(requester_told(events).is_some());
    count(events, regate_core::EventKind::Notified) - told
}

/// What the local stack's functions have logged so far (`.local/logs/functions.log`).
pub fn functions_log() -> String {
    let path = repo_root().join(".local/logs/functions.log");
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The chat stand-in's address (Slack's Web API is under `/api`).
pub fn chat_url() -> String {
    local_env()["SLACK_API_URL"]
        .trim_end_matches("/api")
        .to_string()
}

/// The bodies of the calls the chat stand-in recorded of `method` that mention `matching`.
pub async fn chat_calls(method: &str, matching: &str) -> Vec<serde_json::Value> {
    let calls: Vec<serde_json::Value> = reqwest::get(format!("{}/_calls", chat_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    calls
        .into_iter()
        .filter(|c| c["method"] == method && c["body"].to_string().contains(matching))
        .map(|c| c["body"].clone())
        .collect()
}

/// Makes the chat stand-in fail the next calls of `method` (a Slack method, or `teams.send`,
/// `teams.update`, `teams.member`, `teams.token`) whose body contains `matching`, as `fault`
/// says (`status`, `retry_after`, `times`, or a Slack `error`).
pub async fn fail_chat(method: &str, matching: &str, fault: serde_json::Value) {
    let mut body = fault;
    body["method"] = serde_json::json!(method);
    body["match"] = serde_json::json!(matching);
    control_chat("_fail", &body).await;
}

/// POSTs `body` to one of the chat stand-in's control paths (`_fail`, `_keys`, `_revoke`) and
/// returns its JSON answer.
pub async fn control_chat(path: &str, body: &serde_json::Value) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(format!("{}/{path}", chat_url()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.unwrap()
}

/// `tests/browser/page_check.py` on `url` in headless Chromium: the console's errors and each
/// expression's value (an expression that gives a promise is awaited), and a screenshot.
pub fn open_in_chromium(
    url: &str,
    screenshot: &std::path::Path,
    evals: &[(&str, &str)],
) -> serde_json::Value {
    let root = repo_root();
    let mut command = std::process::Command::new(root.join(".local/venv/bin/python"));
    command
        .arg(root.join("tests/browser/page_check.py"))
        .arg(url)
        .arg("--screenshot")
        .arg(screenshot);
    for (name, expression) in evals {
        command.arg("--eval").arg(format!("{name}={expression}"));
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "page_check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
