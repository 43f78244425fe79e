//! The approval message in Block Kit, for every state of a request, and the reason modal.
//! Text that comes from a request is escaped for mrkdwn so it can neither ping anyone nor
//! become a link, and every text is cut to Slack's documented limits.

use std::collections::BTreeMap;

use regate_core::{ApprovalState, ApprovalView, OutcomeNotice, Reminder};
use serde_json::{json, Value};

use super::interaction::{APPROVE_ACTION, REASON_BLOCK, REASON_VIEW, REJECT_ACTION};

/// Slack's limits (Block Kit reference).
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_BUTTON_VALUE: usize = 2000;
/// The `text` fallback shown in notifications.
pub const MAX_FALLBACK_TEXT: usize = 3000;

/// mrkdwn escaping: Slack's three control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub use crate::text::truncate;
use crate::text::{outcome_text, reminder_text};
use crate::view::{vote_line, Ending, MessageView, Named};

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}})
}

fn field(label: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", escape(value)), MAX_FIELD_TEXT)})
}

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max), "emoji": true})
}

/// A person as Slack should show them: a mention when their Slack id is known.
fn person(identity: &str, mentions: &BTreeMap<String, String>) -> String {
    match mentions.get(&regate_core::rules::normalize(identity)) {
        Some(id) => format!("<@{id}>"),
        None => escape(identity),
    }
}

/// A reminder's text for the approval message's thread, naming (with `mentions`) the first
/// approvers who have not voted.
pub fn reminder_message(reminder: &Reminder<'_>, mentions: &BTreeMap<String, String>) -> String {
    let Named { named, more } = Named::first(&reminder.waiting_on);
    let who: Vec<String> = named.iter().map(|a| person(a, mentions)).collect();
    reminder_text(&who, more, reminder.left)
}

/// `(fallback text, blocks)` for the approval message in its current state. `mentions` maps
/// e-mail addresses to Slack user ids.
pub fn approval_message(
    view: ApprovalView<'_>,
    mentions: &BTreeMap<String, String>,
) -> (String, Value) {
    let message = MessageView::of(view);
    let title = format!("{}: {}", message.state_word, message.summary);
    let mut blocks = vec![json!({"type": "header", "text": plain(&title, MAX_HEADER_TEXT)})];
    let mut fields: Vec<Value> = message
        .facts
        .iter()
        .map(|(label, value)| field(label, value))
        .collect();
    fields.truncate(MAX_FIELDS);
    blocks.push(json!({"type": "section", "fields": fields}));
    if !message.why.is_empty() {
        let reasons = bullets(message.why.iter().map(|r| escape(r)));
        blocks.push(section(&format!("*Why*\n{reasons}")));
    }
    if !message.requirements.is_empty() {
        let mut text = format!("*Approvals*\n{}", bullets(message.progress_lines(escape)));
        if let Some(Named { named, more }) = message.can_approve {
            let mut who: Vec<String> = named.iter().map(|a| person(a, mentions)).collect();
            if more > 0 {
                who.push(format!("and {more} more"));
            }
            text.push_str(&format!("\nCan approve: {}", who.join(", ")));
        }
        blocks.push(section(&text));
    }
    if !message.votes.is_empty() {
        let lines = message
            .votes
            .iter()
            .map(|v| vote_line(v, &person(&v.voter, mentions), escape));
        blocks.push(section(&format!("*Votes*\n{}", bullets(lines))));
    }
    if !message.links.is_empty() {
        let links = message.links.iter().map(|l| {
            let url = l
                .url
                .replace('|', "%7C")
                .replace('>', "%3E")
                .replace('<', "%3C");
            format!("<{url}|{}>", escape(&l.title).replace('|', "¦"))
        });
        blocks.push(section(&format!("*Links*\n{}", bullets(links))));
    }
    if let Some(ending) = &message.ending {
        blocks.push(section(&ending_line(ending)));
    }
    let footer = format!(
        "Request `{}` · policy `{}`",
        escape(message.request_id),
        message.policy
    );
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&footer, MAX_SECTION_TEXT)}]}));
    if let Some(buttons) = &message.buttons {
        blocks.push(buttons_block(buttons.request_id));
    }
    blocks.truncate(MAX_BLOCKS);
    // Slack reads the fallback `text` as mrkdwn too, so it is escaped like everything else.
    let request = &view.approval.request;
    let fallback = truncate(
        &format!(
            "{}: {} ({} in {})",
            message.state_word,
            escape(message.summary),
            escape(&request.action),
            escape(&request.environment)
        ),
        MAX_FALLBACK_TEXT,
    );
    (fallback, Value::Array(blocks))
}

/// `(fallback text, blocks)` of the direct message that tells the requester how their request
/// ended: that, a link to the workflow, then the message as the approvers see it now.
pub fn outcome_message(
    notice: OutcomeNotice<'_>,
    mentions: &BTreeMap<String, String>,
) -> (String, Value) {
    let approval = notice.approval;
    let by = approval.decided_by.as_deref().map(|b| person(b, mentions));
    let intro = outcome_text(approval.state, by.as_deref());
    let (_, approval_blocks) = approval_message(notice.view(), mentions);
    let mut blocks = vec![section(&intro)];
    if let Some(url) = approval.workflow_url() {
        blocks.push(section(&format!("<{url}|Open the workflow>")));
    }
    blocks.extend(approval_blocks.as_array().into_iter().flatten().cloned());
    blocks.truncate(MAX_BLOCKS);
    let fallback = format!("{intro} ({})", escape(&approval.request.summary));
    (truncate(&fallback, MAX_FALLBACK_TEXT), Value::Array(blocks))
}

/// Lines as a bulleted list.
fn bullets(lines: impl IntoIterator<Item = String>) -> String {
    let lines: Vec<String> = lines.into_iter().map(|line| format!("• {line}")).collect();
    lines.join("\n")
}

fn buttons_block(request_id: &str) -> Value {
    let value = truncate(request_id, MAX_BUTTON_VALUE);
    json!({"type": "actions", "block_id": "decision", "elements": [
        {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "text": plain("Approve", MAX_BUTTON_TEXT), "value": value},
        {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "text": plain("Reject", MAX_BUTTON_TEXT), "value": value,
         "confirm": {"title": plain("Reject this change?", 100), "text": {"type": "plain_text", "text": "The workflow stops and the change does not go ahead."},
                     "confirm": plain("Reject", 30), "deny": plain("Cancel", 30), "style": "danger"}}
    ]})
}

fn ending_line(ending: &Ending<'_>) -> String {
    let (by, when) = ending.by_and_when(escape);
    match ending.state {
        ApprovalState::Rejected => {
            let reason = ending.reason.map(|r| format!("\n> {}", escape(r)));
            format!(
                ":no_entry: *Rejected*{by}{when}{}",
                reason.unwrap_or_default()
            )
        }
        ApprovalState::Expired => {
            format!(":hourglass: *Expired*{when}: no decision within the time allowed")
        }
        ApprovalState::Approved | ApprovalState::Pending => {
            format!(":white_check_mark: *Approved*{by}{when}")
        }
    }
}

/// The modal that asks for a rejection reason; the request id rides in `private_metadata`.
pub fn reason_modal(request_id: &str, summary: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": REASON_VIEW,
        "private_metadata": request_id,
        "title": plain("Reject change", 24),
        "submit": plain("Reject", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*{}*", escape(summary)), MAX_SECTION_TEXT)}},
            {"type": "input", "block_id": REASON_BLOCK, "label": plain("Why are you rejecting it?", 2000),
             "element": {"type": "plain_text_input", "action_id": REASON_BLOCK, "multiline": true, "max_length": 1000}}
        ]
    })
}

/// The answer to a modal submission that must not close: an error shown under the reason.
pub fn reason_error(message: &str) -> Value {
    json!({"response_action": "errors", "errors": {REASON_BLOCK: truncate(message, 150)}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use regate_core::{Choice, Evaluation, PendingApproval, PreparedRequest, Vote};
    use regate_testkit::{approval_about as approval, counted_vote};

    /// The message for `a` shown with `e`, no one mentioned.
    fn message(a: &PendingApproval, e: &Evaluation) -> (String, Value) {
        let view = ApprovalView {
            approval: a,
            evaluation: e,
        };
        approval_message(view, &BTreeMap::new())
    }

    fn calm() -> chrono::DateTime<Utc> {
        regate_core::time::parse_rfc3339(regate_testkit::CALM_DAY).unwrap()
    }

    fn all_text(blocks: &Value) -> String {
        blocks.to_string()
    }

    #[test]
    fn a_pending_message_has_the_facts_progress_and_both_buttons() {
        let (a, e) = approval("Deploy payments v1.4.2");
        let (fallback, blocks) = message(&a, &e);
        assert!(fallback.starts_with("Approval needed: Deploy payments v1.4.2"));
        let text = all_text(&blocks);
        assert!(text.contains("payments-owners: 0 of 1"), "{text}");
        assert!(text.contains("dev@example.com") && text.contains("ci-bot"));
        let actions = blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        assert_eq!(actions["elements"][0]["style"], "primary");
        assert_eq!(actions["elements"][0]["value"], "chg-9");
        assert_eq!(actions["elements"][1]["style"], "danger");
        assert!(actions["elements"][1]["confirm"].is_object());
    }

    #[test]
    fn a_large_group_names_ten_approvers_and_counts_the_rest() {
        let (approval, mut evaluation) = approval("Deploy");
        evaluation.decision.approvers = (1..=50).map(|i| format!("c{i}@example.com")).collect();
        let (_, blocks) = message(&approval, &evaluation);
        let text = all_text(&blocks);
        assert!(text.contains("c10@example.com, and 40 more"), "{text}");
        assert!(!text.contains("c11@example.com"));
    }

    #[test]
    fn request_text_cannot_ping_or_link() {
        let (a, e) = approval("<!channel> deploy <https://evil|click> & more");
        let (_, blocks) = message(&a, &e);
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(
            header, "Approval needed: <!channel> deploy <https://evil|click> & more",
            "plain_text is never parsed as mrkdwn"
        );
        let fallback = message(&a, &e).0;
        assert!(
            fallback.contains("&lt;!channel&gt; deploy &lt;https://evil|click&gt; &amp; more"),
            "{fallback}"
        );
        assert_eq!(
            escape("<!channel> <https://evil|click> &"),
            "&lt;!channel&gt; &lt;https://evil|click&gt; &amp;"
        );
    }

    #[test]
    fn a_decided_message_has_no_buttons_and_says_who_decided_and_why() {
        let (mut a, e) = approval("Deploy");
        a.state = ApprovalState::Rejected;
        a.decided_by = Some("alice@example.com".into());
        a.decided_at = Some(Utc::now());
        a.votes.push(counted_vote(
            "alice@example.com",
            Choice::Reject,
            Some("not <today>"),
            "2026-11-21T10:00:00.000Z",
        ));
        let (fallback, blocks) = message(&a, &e);
        assert!(fallback.starts_with("Rejected:"));
        assert!(!blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"));
        let text = all_text(&blocks);
        assert!(text.contains("*Rejected* by alice@example.com"), "{text}");
        assert!(text.contains("not &lt;today&gt;"));
    }

    fn vote(voter: &str, choice: Choice, reason: Option<&str>) -> Vote {
        counted_vote(voter, choice, reason, "2026-11-21T10:05:00.000Z")
    }

    #[test]
    fn after_a_vote_the_message_shows_who_voted_when_and_the_new_progress() {
        let (mut a, _) = approval("Deploy");
        a.request.action = "iam_change".into();
        a.votes
            .push(vote("alice@example.com", Choice::Approve, None));
        let evaluation = regate_testkit::default_policy()
            .evaluate(
                &PreparedRequest::new(a.request.clone()).unwrap(),
                &a.votes,
                regate_core::EvaluationTime::opening(calm()),
            )
            .unwrap();
        let mentions = BTreeMap::from([("alice@example.com".to_string(), "U0ALICE".to_string())]);
        let (_, blocks) = approval_message(
            ApprovalView {
                approval: &a,
                evaluation: &evaluation,
            },
            &mentions,
        );
        let text = all_text(&blocks);
        assert!(
            text.contains("<@U0ALICE> approved at 2026-11-21 10:05 UTC"),
            "{text}"
        );
        assert!(
            text.contains("payments-owners: 1 of 1") && text.contains("security: 0 of 1"),
            "{text}"
        );
        assert!(
            blocks
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["type"] == "actions"),
            "still open: buttons stay"
        );
    }

    #[test]
    fn an_approved_message_says_who_and_when_without_buttons() {
        let (mut a, e) = approval("Deploy");
        a.state = ApprovalState::Approved;
        a.decided_by = Some("bob@example.com".into());
        a.decided_at = regate_core::time::parse_rfc3339("2026-11-21T10:06:00Z");
        a.votes.push(vote("bob@example.com", Choice::Approve, None));
        let (fallback, blocks) = message(&a, &e);
        assert!(fallback.starts_with("Approved:"));
        let text = all_text(&blocks);
        assert!(
            text.contains("*Approved* by bob@example.com at 2026-11-21 10:06 UTC"),
            "{text}"
        );
        assert!(!blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"));
        assert!(
            !text.contains("Can approve"),
            "no call to act on a closed request"
        );
    }

    #[test]
    fn the_requesters_message_says_how_it_ended_links_the_workflow_and_has_no_buttons() {
        let (mut a, _) = approval("Deploy <!channel>");
        a.state = ApprovalState::Approved;
        a.decided_by = Some("bob@example.com".into());
        a.resumed = true;
        a.execution_id = "arn:aws:states:us-east-1:1:execution:regate:chg-9".into();
        let mentions = BTreeMap::from([("bob@example.com".to_string(), "U0BOB".to_string())]);
        let (fallback, blocks) = outcome_message(OutcomeNotice { approval: &a }, &mentions);
        assert_eq!(
            fallback,
            "Your request was approved by <@U0BOB>. The workflow goes on with the change. (Deploy &lt;!channel&gt;)"
        );
        let blocks = blocks.as_array().unwrap();
        assert!(blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Your request was approved by <@U0BOB>."));
        assert_eq!(
            blocks[1]["text"]["text"],
            "<https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/arn:aws:states:us-east-1:1:execution:regate:chg-9|Open the workflow>"
        );
        assert!(!blocks.iter().any(|b| b["type"] == "actions"));
        assert!(all_text(&Value::Array(blocks.clone())).contains("*Approved* by bob@example.com"));
    }

    #[test]
    fn an_expired_message_says_it_expired_without_buttons() {
        let (mut a, e) = approval("Deploy");
        a.state = ApprovalState::Expired;
        a.decided_at = Some(Utc::now());
        let (fallback, blocks) = message(&a, &e);
        assert!(fallback.starts_with("Expired:"));
        assert!(all_text(&blocks).contains("*Expired*"));
        assert!(!blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"));
    }

    #[test]
    fn every_field_and_section_stays_within_its_limit_with_oversized_input() {
        let (mut a, mut e) = approval("s");
        a.request.action = "a".repeat(4000);
        a.request.resource.name = "n".repeat(4000);
        a.request.links = (0..20)
            .map(|i| regate_core::request::Link {
                title: format!("{i}{}", "t".repeat(400)),
                url: format!("https://x.example/{i}|<>"),
            })
            .collect();
        e.decision.reasons = (0..200)
            .map(|i| format!("reason {i} {}", "r".repeat(100)))
            .collect();
        for i in 0..30 {
            a.votes.push(vote(
                &format!("voter{i}@example.com"),
                Choice::Approve,
                Some(&"why ".repeat(100)),
            ));
        }
        let (_, blocks) = message(&a, &e);
        let blocks = blocks.as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        for block in blocks {
            if let Some(text) = block.pointer("/text/text").and_then(Value::as_str) {
                assert!(
                    text.chars().count() <= MAX_SECTION_TEXT,
                    "{} chars",
                    text.chars().count()
                );
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                let text = field["text"].as_str().unwrap();
                assert!(text.chars().count() <= MAX_FIELD_TEXT);
                assert!(text.ends_with('…') || text.chars().count() < MAX_FIELD_TEXT);
            }
        }
        let links = all_text(&Value::Array(blocks.clone()));
        assert!(
            links.contains("https://x.example/0%7C%3C%3E"),
            "a URL cannot break out of its link"
        );
        let value = buttons_block(&"i".repeat(3000));
        assert_eq!(
            value["elements"][0]["value"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            MAX_BUTTON_VALUE
        );
    }

    #[test]
    fn the_reason_modal_carries_the_request_and_asks_for_text() {
        let modal = reason_modal("chg-7", "<!here> drop it");
        assert_eq!(modal["private_metadata"], "chg-7");
        assert_eq!(modal["callback_id"], REASON_VIEW);
        assert_eq!(modal["blocks"][1]["block_id"], REASON_BLOCK);
        assert!(modal["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!here&gt;"));
        assert_eq!(reason_error("x")["response_action"], "errors");
    }

    #[test]
    fn oversized_text_is_cut_to_slacks_limits() {
        let (a, e) = approval(&"x".repeat(5000));
        let (fallback, blocks) = message(&a, &e);
        assert_eq!(
            blocks[0]["text"]["text"].as_str().unwrap().chars().count(),
            MAX_HEADER_TEXT
        );
        assert!(blocks[0]["text"]["text"].as_str().unwrap().ends_with('…'));
        assert!(fallback.chars().count() <= MAX_FALLBACK_TEXT);
        assert!(blocks.as_array().unwrap().len() <= MAX_BLOCKS);
        assert_eq!(
            truncate(&"y".repeat(3001), MAX_SECTION_TEXT)
                .chars()
                .count(),
            MAX_SECTION_TEXT
        );
    }
}
