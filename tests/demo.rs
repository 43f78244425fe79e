//! The end-to-end demo on the local stack (README command 1 runs it through
//! `infra/local/demo.sh`): five requests through the real state machine, with a readable trace
//! of each step. Exits non-zero unless every expectation held; writes the request ids to
//! `.local/run/demo-requests.txt` for the decision-log part of the demo, and exports the decision
//! log of those requests (through moto's ExportTableToPointInTime, with manifests added as AWS
//! writes them) to `.local/run/demo-export/` for the audit part.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::process::ExitCode;

use regate_testkit::RequestBuilder;
use regate_tests::export::{export_decision_log, of_requests, write_export};
use regate_tests::policy::{copy_policies, erin_joins_payments_owners};
use regate_tests::stack::{Finished, LocalStack};
use regate_tests::{local_config, local_env, repo_root, run_local, stack_now};

use regate_chat::teams::card::APPROVE_VERB;
use serde_json::{json, Value};

struct Demo {
    stack: LocalStack,
    failures: Vec<String>,
    ids: Vec<String>,
    /// The policy revision before scenario 7's change, to roll back to.
    before_policy_change: Option<String>,
}

impl Demo {
    /// Starts a request whose summary is `summary`, shaped by `shape`; prints and remembers it.
    async fn start(
        &mut self,
        prefix: &str,
        summary: &str,
        shape: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> (String, String) {
        let (id, execution) = self
            .stack
            .begin(prefix, |r| shape(r).with("summary", json!(summary)))
            .await;
        println!("  → StartExecution {id}: {summary:?}");
        self.ids.push(id.clone());
        (id, execution)
    }

    fn expect(&mut self, ok: bool, what: &str) {
        if ok {
            println!("    ✓ {what}");
        } else {
            println!("    ✗ {what}");
            self.failures.push(what.to_string());
        }
    }

    async fn decision_line(&self, id: &str) {
        let events = self.stack.events(id).await;
        if let Some(evaluated) = events
            .iter()
            .find(|e| e.kind == regate_core::EventKind::Evaluated)
        {
            println!(
                "  ← decision: {} — {}",
                evaluated.outcome.map_or("?", |o| o.as_str()),
                evaluated.reasons.join("; ")
            );
        }
    }

    async fn message_line(&self, id: &str) {
        let (channel, ts, body) = self.stack.message_for(id).await;
        let buttons: Vec<String> = body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| {
                b["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| format!("[{}]", e["text"]["text"].as_str().unwrap_or("?")))
            })
            .collect();
        println!(
            "  ← Slack chat.postMessage to {channel} (ts {ts}): \"{}\" {}",
            body["text"].as_str().unwrap_or(""),
            buttons.join(" ")
        );
        print_sections(&body);
    }

    /// The latest chat.update of a request's message, printed like the post.
    async fn update_lines(&self, id: &str) {
        if let Some(update) = self.stack.calls_about("chat.update", id).await.last() {
            println!(
                "  ← Slack chat.update: \"{}\"",
                update["body"]["text"].as_str().unwrap_or("")
            );
            print_sections(&update["body"]);
        }
    }

    async fn click(&self, email: &str, action: &str, id: &str) -> u16 {
        let answer = self.stack.click(email, action, id).await;
        println!(
            "  → {email} clicks {} (request signed with the Slack signing secret) → HTTP {}",
            capitalise(action),
            answer.status
        );
        answer.status
    }

    /// The direct message that told the requester the outcome, and its log entry.
    async fn told_line(&mut self, id: &str) {
        let events = self.stack.once_requester_told(id).await;
        let told = regate_tests::requester_told(&events).cloned();
        let dm = self.stack.calls_about("chat.postMessage", id).await;
        let dm = dm
            .iter()
            .find(|c| c["body"]["metadata"]["event_type"] == "regate_outcome");
        if let Some(dm) = dm {
            println!(
                "  ← Slack chat.postMessage to the requester's direct message {}: \"{}\"",
                dm["body"]["channel"].as_str().unwrap_or("?"),
                dm["body"]["text"].as_str().unwrap_or("")
            );
        }
        let sent =
            told.is_some_and(|t| t.data["status"] == "sent" && t.data["user"] == "dev@example.com");
        self.expect(
            sent && dm.is_some(),
            "the requester, dev@example.com, was told in a direct message once the workflow had it",
        );
    }

    fn finished(&self, done: &Finished) {
        let extra = match (&done.error, &done.output) {
            (Some(error), _) => format!(" with {error}"),
            (None, Some(output)) => format!(", output {}", compact(output)),
            _ => String::new(),
        };
        println!("  ← execution {}{extra}", done.status);
    }
}

/// The regate CLI (`infra/local/demo.sh` builds it) with the local stack's settings; prints
/// the command and its last line.
fn regate_cli(demo: &mut Demo, args: &[&str]) -> String {
    let binary = repo_root().join("target/debug/regate");
    let out = run_local(binary.to_str().unwrap(), args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = text.lines().last().unwrap_or_default().to_string();
    println!("  → regate {} {} → {last}", args[0], args[1]);
    demo.expect(
        out.status.success(),
        &format!(
            "regate {} {} succeeded {}",
            args[0],
            args[1],
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    );
    text
}

/// The revision `regate policy status` shows.
fn current_revision(demo: &mut Demo) -> Option<String> {
    let bucket = local_env()["REGATE_POLICY_BUCKET"].clone();
    let status = regate_cli(demo, &["policy", "status", "--bucket", &bucket]);
    status
        .lines()
        .find_map(|line| line.strip_prefix("revision:"))
        .map(|revision| revision.trim().to_string())
}

/// A policy author's change, published as their CI would: the policy folder with erin among
/// payments-owners (and its tests saying so), built, signed with the policy key and pushed.
/// Returns the new revision; the functions pick it up at their next refresh.
async fn policy_change(demo: &mut Demo) -> Option<String> {
    let env = local_env();
    let (bucket, key) = (&env["REGATE_POLICY_BUCKET"], &env["REGATE_POLICY_KEY_ID"]);
    demo.before_policy_change = current_revision(demo);
    let folder = repo_root().join(".local/run/demo-policy");
    let _ = std::fs::remove_dir_all(&folder);
    copy_policies(&folder);
    erin_joins_payments_owners(&folder);
    let file = repo_root().join(".local/run/demo-policy.tar.gz");
    let (folder, file) = (folder.to_str().unwrap(), file.to_str().unwrap());
    regate_cli(demo, &["policy", "build", folder, "--out", file]);
    regate_cli(demo, &["policy", "sign", file, "--kms-key-id", key]);
    regate_cli(
        demo,
        &[
            "policy",
            "push",
            file,
            "--bucket",
            bucket,
            "--public-key",
            key,
        ],
    );
    // The local functions check current.json at most every second (deployed: every minute).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    current_revision(demo)
}

/// Points the functions back to the revision before the change, and waits for them to see it.
async fn policy_rollback(demo: &mut Demo) {
    let env = local_env();
    let (bucket, key) = (&env["REGATE_POLICY_BUCKET"], &env["REGATE_POLICY_KEY_ID"]);
    let Some(before) = demo.before_policy_change.clone() else {
        return;
    };
    regate_cli(
        demo,
        &[
            "policy",
            "rollback",
            &before,
            "--bucket",
            bucket,
            "--public-key",
            key,
        ],
    );
    let now = current_revision(demo);
    demo.expect(
        now.as_deref() == Some(before.as_str()),
        "rolled back: current.json names the revision before the change",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
}

/// The message's text sections (facts, reasons, progress, votes, outcome), as Slack shows them.
fn print_sections(body: &Value) {
    for block in body["blocks"].as_array().into_iter().flatten() {
        let texts: Vec<&str> = match block["type"].as_str() {
            Some("section") => block["fields"]
                .as_array()
                .map(|fields| fields.iter().filter_map(|f| f["text"].as_str()).collect())
                .unwrap_or_else(|| {
                    block
                        .pointer("/text/text")
                        .and_then(Value::as_str)
                        .into_iter()
                        .collect()
                }),
            Some("context") => block["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["text"].as_str())
                .collect(),
            _ => Vec::new(),
        };
        let line = texts.join(" | ").replace('\n', " ");
        if !line.is_empty() {
            println!("       │ {line}");
        }
    }
}

/// A Teams card's text, as Teams shows it, and its buttons.
fn print_card(card: &Value) {
    for element in card["body"].as_array().into_iter().flatten() {
        let text = match element["type"].as_str() {
            Some("TextBlock") => element["text"].as_str().unwrap_or("").to_string(),
            Some("FactSet") => element["facts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["title"].as_str().unwrap_or(""),
                        f["value"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some("Input.Text") => format!("[{}: ____]", element["label"].as_str().unwrap_or("")),
            _ => continue,
        };
        for line in text.lines() {
            println!("       │ {line}");
        }
    }
    let buttons: Vec<String> = card["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("[{}]", a["title"].as_str().unwrap_or("?")))
        .collect();
    if !buttons.is_empty() {
        println!("       │ {}", buttons.join(" "));
    }
}

fn capitalise(action: &str) -> String {
    let mut chars = action.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn compact(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 240 {
        text.truncate(240);
        text.push('…');
    }
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut demo = Demo {
        stack: LocalStack::connect().await,
        failures: Vec::new(),
        ids: Vec::new(),
        before_policy_change: None,
    };

    println!("\n== 1. A staging deploy: allowed by policy, nobody is asked");
    let (id, execution) = demo
        .start("demo-staging", "Deploy payments v1.4.2 to staging", |r| {
            r.change("deploy", "staging", "service", "payments")
        })
        .await;
    let done = demo.stack.wait_finished(&execution).await;
    demo.decision_line(&id).await;
    demo.finished(&done);
    demo.expect(
        done.status == "SUCCEEDED",
        "the execution SUCCEEDED without an approval",
    );

    println!("\n== 2. A production database delete: denied by policy");
    let (id, execution) = demo
        .start("demo-drop", "Drop the orders database", |r| {
            r.change("delete", "production", "database", "orders-db")
        })
        .await;
    let done = demo.stack.wait_finished(&execution).await;
    demo.decision_line(&id).await;
    demo.finished(&done);
    demo.expect(
        done.status == "FAILED" && done.error.as_deref() == Some("PolicyDenied"),
        "the execution FAILED with PolicyDenied",
    );

    println!("\n== 3. A production deploy: posted to Slack, approved by an owner");
    let (id, execution) = demo
        .start("demo-deploy", "Deploy payments v1.4.2", |r| {
            r.change("deploy", "production", "service", "payments")
        })
        .await;
    demo.message_line(&id).await;
    demo.decision_line(&id).await;
    let status = demo.click("alice@example.com", "approve", &id).await;
    demo.expect(status == 200, "Slack got its answer (HTTP 200)");
    let done = demo.stack.wait_finished(&execution).await;
    demo.update_lines(&id).await;
    demo.finished(&done);
    let approvers = done.approvers();
    demo.expect(done.status == "SUCCEEDED", "the execution SUCCEEDED");
    demo.expect(
        approvers == json!(["alice@example.com"]),
        "the output names alice@example.com as the approver",
    );
    demo.told_line(&id).await;

    println!("\n== 4. A production IAM change: one approval, then a rejection with a reason");
    let (id, execution) = demo
        .start(
            "demo-iam",
            "Grant payments-deployer s3:PutObject on every bucket",
            |r| r.change("iam_change", "production", "iam_role", "payments"),
        )
        .await;
    demo.message_line(&id).await;
    demo.decision_line(&id).await;
    demo.click("alice@example.com", "approve", &id).await;
    demo.update_lines(&id).await;
    let still = demo.stack.status(&execution).await;
    demo.expect(
        still.status == "RUNNING",
        "after one approval the request still waits for security",
    );
    demo.click("ivan@example.com", "reject", &id).await;
    let opened = !demo.stack.calls_about("views.open", &id).await.is_empty();
    println!("  ← Slack views.open: a modal asks ivan@example.com for a reason");
    demo.expect(
        opened,
        "Reject opened the reason modal (this policy requires a reason)",
    );
    let reason = "grants s3:PutObject on every bucket; scope it to the payments bucket";
    let answer = demo
        .stack
        .submit_reason("ivan@example.com", &id, reason)
        .await;
    println!(
        "  → ivan@example.com submits the reason \"{reason}\" → HTTP {}",
        answer.status
    );
    let done = demo.stack.wait_finished(&execution).await;
    demo.update_lines(&id).await;
    demo.finished(&done);
    demo.expect(
        done.status == "FAILED" && done.error.as_deref() == Some("ApprovalRejected"),
        "the execution FAILED with ApprovalRejected",
    );

    println!("\n== 5. A production deploy: a Teams card, approved by a signed Teams click");
    let (id, execution) = demo
        .start("demo-teams", "Deploy checkout v2.0.0", |r| {
            r.change("deploy", "production", "service", "checkout")
        })
        .await;
    let posted = demo.stack.teams_card(&id).await;
    println!(
        "  ← Teams Bot Connector POST v3/conversations/{}/activities → activity {}",
        posted.conversation, posted.activity_id
    );
    print_card(&posted.card);
    demo.decision_line(&id).await;
    let (answer, body) = demo
        .stack
        .teams_click("carol@example.com", APPROVE_VERB, &id, None)
        .await;
    println!(
        "  → carol@example.com clicks Approve (an adaptiveCard/action invoke with a Bot Framework JWT) → HTTP {}, statusCode {}",
        answer.status, body["statusCode"]
    );
    demo.expect(
        answer.status == 200 && body["statusCode"] == 200,
        "Teams got the updated card as the invoke's answer",
    );
    let done = demo.stack.wait_finished(&execution).await;
    let updated = demo.stack.teams_card(&id).await;
    println!(
        "  ← Teams Bot Connector PUT v3/conversations/{}/activities/{}",
        updated.conversation, updated.activity_id
    );
    print_card(&updated.card);
    demo.finished(&done);
    demo.expect(done.status == "SUCCEEDED", "the execution SUCCEEDED");
    demo.expect(
        updated.card.get("actions").is_none()
            && updated
                .card
                .to_string()
                .contains("Approved by carol@example.com"),
        "the card was updated in place: approved, no buttons",
    );

    println!("\n== 6. A production deploy nobody answers: reminded, then escalated to sre");
    let (id, execution) = demo
        .start("demo-escalate", "Deploy payments v1.4.3", |r| {
            r.change("deploy", "production", "service", "payments")
        })
        .await;
    demo.message_line(&id).await;
    let opened = demo.stack.opened_by(&id).await;
    let (channel, ts, _) = demo.stack.message_for(&id).await;
    let at = opened + chrono::Duration::minutes(16);
    let report = demo.stack.sweep_request(&id, at).await;
    println!(
        "  → the sweeper, told it is 16 minutes later ({{\"now\": \"{}\"}}) → {}",
        regate_core::time::format_rfc3339_ms(at),
        compact(&report)
    );
    let replies = demo.stack.calls_about("chat.postMessage", &ts).await;
    let reminder = replies.iter().find(|c| {
        c["body"]["thread_ts"] == ts.as_str() && c["body"]["channel"] == channel.as_str()
    });
    if let Some(reminder) = reminder {
        println!(
            "  ← Slack chat.postMessage in the thread of {ts}: \"{}\"",
            reminder["body"]["text"].as_str().unwrap_or("")
        );
    }
    demo.expect(
        reminder.is_some() && report["reminded"] == 1,
        "one reminder in the message's thread, naming who has not voted",
    );
    let at = opened + chrono::Duration::minutes(31);
    let report = demo.stack.sweep_request(&id, at).await;
    println!(
        "  → the sweeper, told it is 31 minutes later → {}",
        compact(&report)
    );
    let sre = demo
        .stack
        .calls_about("chat.postMessage", &id)
        .await
        .into_iter()
        .find(|c| c["body"]["channel"] == "C0SRE");
    if let Some(sre) = &sre {
        println!("  ← Slack chat.postMessage to C0SRE:");
        print_sections(&sre["body"]);
    }
    demo.expect(
        sre.is_some() && report["reevaluated"] == 1,
        "evaluated again: 1 approval from sre is now also enough, and sre was asked",
    );
    demo.click("erin@example.com", "approve", &id).await;
    let done = demo.stack.wait_finished(&execution).await;
    demo.update_lines(&id).await;
    demo.finished(&done);
    let approvers = done.approvers();
    demo.expect(
        done.status == "SUCCEEDED" && approvers == json!(["erin@example.com"]),
        "erin@example.com (sre) approved it: the execution SUCCEEDED",
    );

    println!("\n== 7. A policy change without a redeploy: erin@example.com joins payments-owners");
    let revision = policy_change(&mut demo).await;
    let (id, execution) = demo
        .start("demo-policy", "Deploy payments v1.5.0", |r| {
            r.change("deploy", "production", "service", "payments")
        })
        .await;
    demo.message_line(&id).await;
    let (_, _, message) = demo.stack.message_for(&id).await;
    let erin = demo.stack.slack_user("erin@example.com").await;
    let listed = message.to_string().contains(&erin);
    let evaluated = demo
        .stack
        .events(&id)
        .await
        .into_iter()
        .find(|e| e.kind == regate_core::EventKind::Evaluated);
    let under = evaluated.and_then(|e| e.policy_revision);
    println!(
        "  ← evaluated under {}",
        under.as_deref().unwrap_or("no revision")
    );
    demo.expect(
        listed && under.as_deref() == revision.as_deref(),
        "the new revision decided it: the message names erin@example.com among those who can approve, and no function restarted",
    );
    demo.click("erin@example.com", "approve", &id).await;
    let done = demo.stack.wait_finished(&execution).await;
    demo.update_lines(&id).await;
    demo.finished(&done);
    demo.expect(
        done.status == "SUCCEEDED" && done.approvers() == json!(["erin@example.com"]),
        "erin@example.com (now an owner) approved it: the execution SUCCEEDED",
    );
    policy_rollback(&mut demo).await;

    let ids_file = repo_root().join(".local/run/demo-requests.txt");
    std::fs::write(&ids_file, demo.ids.join("\n") + "\n").unwrap();

    println!("\n== Exporting the decision log for an auditor (ExportTableToPointInTime)");
    let lines: Vec<Value> = export_decision_log(&local_config().await)
        .await
        .into_iter()
        .filter(|line| of_requests(line, &demo.ids))
        .collect();
    let folder = repo_root().join(".local/run/demo-export");
    let _ = std::fs::remove_dir_all(&folder);
    let now = regate_core::time::format_rfc3339_ms(stack_now());
    write_export(&folder, "demo-export", "FULL_EXPORT", &now, &lines);
    println!(
        "  → {} items of the demo's requests, with manifests, in {}",
        lines.len(),
        folder.display()
    );

    println!(
        "
== A signed checkpoint of the whole log (the checkpointer), and an export of all of it"
    );
    let cut = demo.stack.checkpoint().await;
    println!("  → the checkpointer → {}", compact(&cut));
    demo.expect(
        cut["checkpoint"].is_u64(),
        "a checkpoint was signed with the KMS key and kept in the Object Lock bucket",
    );
    let all = export_decision_log(&local_config().await).await;
    // A stack the tests have used holds their requests too, some made up on purpose: then the
    // audit's findings may name them, and only the demo's own requests must verify.
    let only_demo = all.iter().all(|line| of_requests(line, &demo.ids));
    let folder = repo_root().join(".local/run/demo-export-all");
    let _ = std::fs::remove_dir_all(&folder);
    let now = regate_core::time::format_rfc3339_ms(stack_now());
    write_export(&folder, "demo-export-all", "FULL_EXPORT", &now, &all);
    let strict = repo_root().join(".local/run/demo-audit-strict");
    std::fs::write(&strict, if only_demo { "yes\n" } else { "no\n" }).unwrap();
    println!(
        "  → {} items, with manifests, in {}",
        all.len(),
        folder.display()
    );
    if demo.failures.is_empty() {
        println!("\nall seven scenarios behaved as expected");
        ExitCode::SUCCESS
    } else {
        println!(
            "\n{} expectation(s) failed: {}",
            demo.failures.len(),
            demo.failures.join("; ")
        );
        ExitCode::FAILURE
    }
}
