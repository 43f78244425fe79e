//! The local chat inbox (`http://127.0.0.1:5010/`, infra/local/inbox.py and inbox.html) in a
//! real browser: headless Chromium opens the page after a request is posted, clicks as someone,
//! and the workflow goes on as it would after a click in Slack or Teams.

use regate_tests::open_in_chromium;
use regate_tests::stack::LocalStack;
use serde_json::Value;

/// The page, for the stand-in's address.
fn inbox_url(stack: &LocalStack) -> String {
    format!("{}/", stack.chat_url)
}

/// A script the page runs (awaited by page_check.py): wait for the `action` button of
/// `request_id` on `platform`, choose `who` in "click as", click it, wait for the callback's
/// answer (and, when `private_text` is not empty, for the private answer to say it: Slack's
/// comes through the response URL, after the click is answered), and give back what the page
/// then says, privately and on the message.
fn click_as(
    platform: &str,
    request_id: &str,
    who: &str,
    action: &str,
    private_text: &str,
) -> String {
    format!(
        r#"(async () => {{
  const wait = async (test, what) => {{
    for (let i = 0; i < 150; i++) {{ const v = test(); if (v) return v; await new Promise((r) => setTimeout(r, 200)); }}
    throw new Error("timed out waiting for " + what);
  }};
  const button = () => document.querySelector('button[data-platform="{platform}"][data-action="{action}"][data-request="{request_id}"]');
  await wait(button, "the button");
  const select = document.getElementById("as");
  select.value = "{who}";
  select.dispatchEvent(new Event("change"));
  document.getElementById("status").textContent = "";
  button().click();
  const status = await wait(() => document.getElementById("status").textContent.startsWith("answered") && document.getElementById("status").textContent, "the answer");
  const said = () => document.getElementById("private").innerText.includes("{private_text}");
  for (let i = 0; "{private_text}" && i < 75 && !said(); i++) await new Promise((r) => setTimeout(r, 200));
  return {{ status, private: document.getElementById("private").innerText, who: select.value }};
}})()"#
    )
}

fn run(stack: &LocalStack, script: &str, name: &str) -> Value {
    let shot = regate_tests::repo_root().join(format!(".local/run/inbox-{name}.png"));
    let page = open_in_chromium(&inbox_url(stack), &shot, &[("click", script)]);
    assert_eq!(page["console_errors"], serde_json::json!([]), "{page}");
    page["values"]["click"].clone()
}

#[tokio::test]
async fn a_click_as_the_requester_is_refused_privately_and_an_owners_approves_on_slack() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("inbox-slack", |r| r).await;
    stack.message_for(&id).await;
    let refused = run(
        &stack,
        &click_as(
            "slack",
            &id,
            "dev@example.com",
            "approve",
            "cannot vote on it",
        ),
        "refused",
    );
    assert_eq!(refused["status"], "answered HTTP 200", "{refused}");
    let private = refused["private"].as_str().unwrap_or_default();
    assert!(
        private.contains("Only dev@example.com sees this"),
        "{refused}"
    );
    assert!(private.contains("cannot vote on it"), "{refused}");
    let approved = run(
        &stack,
        &click_as("slack", &id, "alice@example.com", "approve", ""),
        "approved",
    );
    assert_eq!(approved["status"], "answered HTTP 200", "{approved}");
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["alice@example.com"]);
}

#[tokio::test]
async fn an_owner_approves_from_the_teams_card() {
    let stack = LocalStack::connect().await;
    let (id, execution) = stack.begin("inbox-teams", |r| r).await;
    stack.teams_card(&id).await;
    let approved = run(
        &stack,
        &click_as("teams", &id, "alice@example.com", "approve", "Approved"),
        "teams",
    );
    assert_eq!(approved["status"], "answered HTTP 200", "{approved}");
    let private = approved["private"].as_str().unwrap_or_default();
    assert!(private.contains("Teams (only you)"), "{approved}");
    assert!(private.contains("Approved"), "{approved}");
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["alice@example.com"]);
}

#[tokio::test]
async fn a_teams_reject_without_the_reason_it_needs_is_answered_with_the_card_to_give_it() {
    let stack = LocalStack::connect().await;
    // A production IAM change needs a reason to reject it: Teams answers a bare Reject with the
    // card, for the clicker, asking for one; the reason typed there rejects the same card.
    let (id, execution) = stack
        .begin("inbox-teams-reason", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    stack.teams_card(&id).await;
    let script = format!(
        r##"(async () => {{
  const wait = async (test, what) => {{
    for (let i = 0; i < 150; i++) {{ const v = test(); if (v) return v; await new Promise((r) => setTimeout(r, 200)); }}
    throw new Error("timed out waiting for " + what);
  }};
  const status = document.getElementById("status");
  const select = document.getElementById("as");
  const reject = (within) => document.querySelector(within + ' button[data-platform="teams"][data-action="reject"][data-request="{id}"]');
  await wait(() => reject("main"), "the card");
  select.value = "alice@example.com";
  select.dispatchEvent(new Event("change"));
  reject("main").click();
  await wait(() => status.textContent.startsWith("answered"), "the answer asking for a reason");
  const asked = document.getElementById("private").innerText;
  const answered = await wait(() => reject("#private"), "the answered card");
  answered.closest(".private-item").querySelector('textarea[data-input="reason"]').value = "grants s3:* on every bucket";
  status.textContent = "";
  answered.click();
  await wait(() => status.textContent.startsWith("answered"), "the rejection");
  return {{ asked }};
}})()"##
    );
    let clicked = run(&stack, &script, "teams-reason");
    assert!(
        clicked["asked"]
            .as_str()
            .unwrap_or_default()
            .contains("Teams (only you)"),
        "{clicked}"
    );
    stack
        .wait_finished(&execution)
        .await
        .assert_failed("ApprovalRejected");
    let events = stack.events(&id).await;
    let rejection = events
        .iter()
        .find(|e| e.kind == regate_core::EventKind::Vote && e.data["vote"] == "reject")
        .expect("the rejection is in the log");
    assert_eq!(rejection.data["reason"], "grants s3:* on every bucket");
    assert_eq!(rejection.platform.as_deref(), Some("teams"));
}

#[tokio::test]
async fn a_rejection_the_policy_wants_a_reason_for_asks_the_clicker_and_fails_the_workflow() {
    let stack = LocalStack::connect().await;
    // A production IAM change needs a reason to reject it (Slack opens a dialog for it).
    let (id, execution) = stack
        .begin("inbox-reason", |r| {
            r.change("iam_change", "production", "iam_role", "payments")
        })
        .await;
    stack.message_for(&id).await;
    let asked = run(
        &stack,
        &click_as(
            "slack",
            &id,
            "ivan@example.com",
            "reject",
            "why are you rejecting it?",
        ),
        "asked",
    );
    assert!(
        asked["private"]
            .as_str()
            .unwrap_or_default()
            .contains("why are you rejecting it?"),
        "{asked}"
    );
    let script = format!(
        r#"(async () => {{
  const select = document.getElementById("as");
  for (let i = 0; i < 50 && !select.options.length; i++) await new Promise((r) => setTimeout(r, 100));
  select.value = "ivan@example.com";
  select.dispatchEvent(new Event("change"));
  const box = document.getElementById("reason-{id}");
  box.value = "grants s3:* on every bucket";
  document.querySelector('button[data-reason-for="{id}"]').click();
  for (let i = 0; i < 150 && !document.getElementById("status").textContent.startsWith("answered"); i++)
    await new Promise((r) => setTimeout(r, 200));
  return document.getElementById("status").textContent;
}})()"#
    );
    let shot = regate_tests::repo_root().join(".local/run/inbox-reason.png");
    let page = open_in_chromium(
        &format!("{}?as=ivan@example.com", inbox_url(&stack)),
        &shot,
        &[
            (
                "loaded",
                "new Promise((r) => setTimeout(() => r(true), 1500))",
            ),
            ("submitted", &script),
        ],
    );
    assert_eq!(page["console_errors"], serde_json::json!([]), "{page}");
    assert_eq!(page["values"]["submitted"], "answered HTTP 200", "{page}");
    stack
        .wait_finished(&execution)
        .await
        .assert_failed("ApprovalRejected");
    let events = stack.events(&id).await;
    let rejection = events
        .iter()
        .find(|e| e.kind == regate_core::EventKind::Vote && e.data["vote"] == "reject")
        .expect("the rejection is in the log");
    assert_eq!(rejection.data["reason"], "grants s3:* on every bucket");
}
