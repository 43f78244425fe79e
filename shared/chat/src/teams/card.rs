//! The approval card for Microsoft Teams: an Adaptive Card 1.5 that says what the Slack message
//! says, with Approve and Reject as `Action.Execute` (Teams routes a verb, never a task token).
//! Text from a request is escaped for the card's Markdown subset, approvers are mentioned by
//! their address (Teams resolves a UPN mention), and the card stays under Teams' 28 KB.

use regate_core::{ApprovalState, ApprovalView, OutcomeNotice, Reminder};
use serde_json::{json, Value};

use crate::text::{outcome_text, reminder_text, truncate};
use crate::view::{vote_line, Buttons, Ending, MessageView, Named};

/// `Action.Execute` verbs; the request id rides in the action's `data`.
pub const APPROVE_VERB: &str = "regate.approve";
pub const REJECT_VERB: &str = "regate.reject";
/// The id of the reason input, merged into the action's `data` by Teams.
pub const REASON_INPUT: &str = "reason";
/// A card's limit in Teams (incoming-webhook and bot cards alike).
pub const MAX_CARD_BYTES: usize = 28 * 1024;
/// The longest reason a voter can type.
pub const MAX_REASON_CHARS: usize = 1000;
/// The longest text any one element shows; a request's own fields are far shorter.
const MAX_TEXT_CHARS: usize = 2000;

/// Escapes text for the Markdown subset of Adaptive Cards (CommonMark backslash escapes), so a
/// request's text can neither format the card nor become a link or a list.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for (index, c) in text.chars().enumerate() {
        let at_line_start = index == 0;
        match c {
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '`' | '~' | '<' | '>' | '#' | '|' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '-' | '+' if at_line_start => {
                escaped.push('\\');
                escaped.push(c);
            }
            // Lines are the card's to make: a request's text stays on one.
            '\r' | '\n' => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

fn text_block(text: &str) -> Value {
    json!({"type": "TextBlock", "text": truncate(text, MAX_TEXT_CHARS), "wrap": true})
}

fn fact(title: &str, value: &str) -> Value {
    json!({"title": title, "value": truncate(&escape(value), MAX_TEXT_CHARS)})
}

/// A mention of an approver by address: the `<at>` text and its entity.
fn mention(identity: &str) -> (String, Value) {
    let text = format!("<at>{}</at>", escape(identity));
    let entity =
        json!({"type": "mention", "text": text, "mentioned": {"id": identity, "name": identity}});
    (text, entity)
}

/// The approval card in its current state. While pending it has Approve and Reject, and a
/// reason input (required by Reject only, when the policy wants a reason); once closed it has
/// no buttons and says how it ended (or that the workflow is still being told).
pub fn approval_card(view: ApprovalView<'_>) -> Value {
    let message = MessageView::of(view);
    let mut entities = Vec::new();
    let title = format!("{}: {}", message.state_word, escape(message.summary));
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
        "text": truncate(&title, MAX_TEXT_CHARS),
    })];
    let facts: Vec<Value> = message
        .facts
        .iter()
        .map(|(title, value)| fact(title, value))
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    if !message.why.is_empty() {
        let reasons = bullets(message.why.iter().map(|r| escape(r)));
        body.push(text_block(&format!("**Why**\n{reasons}")));
    }
    if !message.requirements.is_empty() {
        let mut text = format!("**Approvals**\n{}", bullets(message.progress_lines(escape)));
        if let Some(Named { named, more }) = message.can_approve {
            let mut who = Vec::new();
            for approver in named {
                let (text, entity) = mention(approver);
                who.push(text);
                entities.push(entity);
            }
            if more > 0 {
                who.push(format!("and {more} more"));
            }
            text.push_str(&format!("\n\nCan approve: {}", who.join(", ")));
        }
        body.push(text_block(&text));
    }
    if !message.votes.is_empty() {
        let lines = message
            .votes
            .iter()
            .map(|v| vote_line(v, &escape(&v.voter), escape));
        body.push(text_block(&format!("**Votes**\n{}", bullets(lines))));
    }
    if !message.links.is_empty() {
        let links = message.links.iter().map(|l| {
            let url = l
                .url
                .replace('(', "%28")
                .replace(')', "%29")
                .replace(' ', "%20");
            format!("[{}]({url})", escape(&l.title))
        });
        body.push(text_block(&format!("**Links**\n{}", bullets(links))));
    }
    if let Some(ending) = &message.ending {
        body.push(json!({"type": "TextBlock", "wrap": true, "weight": "Bolder", "text": truncate(&ending_line(ending), MAX_TEXT_CHARS)}));
    }
    let footer = format!(
        "Request {} · policy {}",
        escape(message.request_id),
        escape(&message.policy)
    );
    body.push(
        json!({"type": "TextBlock", "wrap": true, "isSubtle": true, "size": "Small",
        "text": truncate(&footer, MAX_TEXT_CHARS)}),
    );
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
        "msteams": {"width": "Full", "entities": entities},
    });
    if let Some(Buttons {
        request_id,
        reason_required,
    }) = message.buttons
    {
        let label = if reason_required {
            "Reason (needed to reject)"
        } else {
            "Reason (optional)"
        };
        if let Some(body) = card["body"].as_array_mut() {
            body.push(
                json!({"type": "Input.Text", "id": REASON_INPUT, "label": label,
                "isMultiline": true, "maxLength": MAX_REASON_CHARS, "isRequired": reason_required,
                "errorMessage": "Give a reason for the rejection."}),
            );
        }
        let data = json!({"request_id": request_id});
        card["actions"] = json!([
            {"type": "Action.Execute", "title": "Approve", "verb": APPROVE_VERB, "style": "positive",
             "data": data, "associatedInputs": "none"},
            {"type": "Action.Execute", "title": "Reject", "verb": REJECT_VERB, "style": "destructive",
             "data": data, "associatedInputs": "auto"},
        ]);
    }
    fit(card, view)
}

/// Lines as a Markdown list.
fn bullets(lines: impl IntoIterator<Item = String>) -> String {
    let lines: Vec<String> = lines.into_iter().map(|line| format!("- {line}")).collect();
    lines.join("\n")
}

/// A card whose facts would exceed Teams' limit (a huge policy reason list, say) drops its
/// long sections, keeping the summary, the outcome, the request id and the buttons.
fn fit(card: Value, view: ApprovalView<'_>) -> Value {
    if card.to_string().len() <= MAX_CARD_BYTES {
        return card;
    }
    let mut card = card;
    if let Some(body) = card["body"].as_array_mut() {
        body.retain(|element| {
            let text = element["text"].as_str().unwrap_or_default();
            !(text.starts_with("**Why**")
                || text.starts_with("**Votes**")
                || text.starts_with("**Links**"))
        });
        body.insert(
            2,
            text_block("The details are too long for a Teams card; see the decision log."),
        );
    }
    if card.to_string().len() <= MAX_CARD_BYTES {
        return card;
    }
    card["msteams"]["entities"] = json!([]);
    if let Some(body) = card["body"].as_array_mut() {
        body.retain(|element| element["type"] != "FactSet");
        for element in body.iter_mut() {
            if let Some(text) = element["text"].as_str() {
                element["text"] = Value::String(truncate(text, 300));
            }
        }
    }
    tracing::warn!(request_id = %view.approval.request_id, "the Teams card was cut to fit 28 KB");
    card
}

/// A card that answers one clicker: `text` (why their vote did not count, or what to do) above
/// the approval card as it is now.
pub fn answer_card(text: &str, view: ApprovalView<'_>) -> Value {
    let mut card = approval_card(view);
    if let Some(body) = card["body"].as_array_mut() {
        body.insert(
            0,
            json!({"type": "TextBlock", "wrap": true, "color": "Attention", "weight": "Bolder",
                "text": truncate(&escape(text), MAX_TEXT_CHARS)}),
        );
    }
    card
}

/// The card of the direct message that tells the requester how their request ended: that above
/// the card as the approvers see it now, and a button that opens the workflow.
pub fn outcome_card(notice: OutcomeNotice<'_>) -> Value {
    let approval = notice.approval;
    let by = approval.decided_by.as_deref().map(escape);
    let intro = outcome_text(approval.state, by.as_deref());
    let mut card = approval_card(notice.view());
    if let Some(body) = card["body"].as_array_mut() {
        body.insert(
            0,
            json!({"type": "TextBlock", "wrap": true, "weight": "Bolder", "text": intro}),
        );
    }
    if let Some(url) = approval.workflow_url() {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open the workflow", "url": url}]);
    }
    card
}

/// A reminder for the card's thread, mentioning the first approvers who have not voted (Teams
/// resolves a mention by a user's UPN in Adaptive Cards).
pub fn reminder_card(reminder: &Reminder<'_>) -> Value {
    let Named { named, more } = Named::first(&reminder.waiting_on);
    let (who, entities): (Vec<String>, Vec<Value>) = named.iter().map(|a| mention(a)).unzip();
    let mut card = notice_card("");
    card["body"] = json!([text_block(&reminder_text(&who, more, reminder.left))]);
    card["msteams"] = json!({"entities": entities});
    card
}

/// A card with only a message, for a click that has no approval to show.
pub fn notice_card(text: &str) -> Value {
    json!({"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5", "body": [text_block(&escape(text))]})
}

fn ending_line(ending: &Ending<'_>) -> String {
    let (by, when) = ending.by_and_when(escape);
    let waiting = if ending.telling_workflow {
        " (the workflow is being told)"
    } else {
        ""
    };
    match ending.state {
        ApprovalState::Rejected => {
            let reason = ending.reason.map(|r| format!(": {}", escape(r)));
            format!(
                "⛔ Rejected{by}{when}{waiting}{}",
                reason.unwrap_or_default()
            )
        }
        ApprovalState::Expired => format!("⌛ Expired{when}: no decision within the time allowed"),
        ApprovalState::Approved | ApprovalState::Pending => {
            format!("✅ Approved{by}{when}{waiting}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regate_core::Choice;
    use regate_core::PendingApproval;
    use regate_testkit::{approval_about as approval, counted_vote};

    fn view<'a>(a: &'a PendingApproval, e: &'a regate_core::Evaluation) -> ApprovalView<'a> {
        ApprovalView {
            approval: a,
            evaluation: e,
        }
    }

    #[test]
    fn a_pending_card_has_the_facts_the_request_id_and_both_actions() {
        let (a, e) = approval("Deploy payments v1.4.2");
        let card = approval_card(view(&a, &e));
        assert_eq!(card["version"], "1.5");
        let text = card.to_string();
        for expected in ["Approval needed", "Deploy payments v1.4.2", "Request chg-9"] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
        let actions = card["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[0]["type"], "Action.Execute");
        assert_eq!(actions[0]["verb"], APPROVE_VERB);
        assert_eq!(actions[1]["verb"], REJECT_VERB);
        assert_eq!(actions[1]["data"]["request_id"], "chg-9");
        assert!(!text.contains("\"t\""), "never the task token");
    }

    #[test]
    fn a_required_reason_is_required_by_reject_only() {
        let (a, mut e) = approval("x");
        e.decision.reject_reason_required = true;
        let card = approval_card(view(&a, &e));
        let input = card["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "Input.Text")
            .unwrap();
        assert_eq!(input["isRequired"], true);
        assert_eq!(card["actions"][0]["associatedInputs"], "none");
        assert_eq!(card["actions"][1]["associatedInputs"], "auto");
    }

    #[test]
    fn request_text_cannot_format_the_card_or_link() {
        let (a, e) = approval("**urgent** [click](https://evil.example) <at>everyone</at>");
        let card = approval_card(view(&a, &e));
        let title = card["body"][0]["text"].as_str().unwrap();
        assert!(title.contains(r"\*\*urgent\*\*"), "{title}");
        assert!(
            title.contains(r"\[click\]\(https://evil.example\)"),
            "{title}"
        );
        assert!(title.contains(r"\<at\>everyone\</at\>"), "{title}");
        assert_eq!(escape("- item\nnext"), r"\- item next");
    }

    #[test]
    fn a_closed_card_has_no_actions_and_says_how_it_ended() {
        let (mut a, e) = approval("x");
        a.state = ApprovalState::Rejected;
        a.decided_by = Some("erin@example.com".into());
        a.resumed = true;
        a.votes.push(counted_vote(
            "erin@example.com",
            Choice::Reject,
            Some("not during the freeze"),
            "2026-06-01T12:00:00.000Z",
        ));
        let card = approval_card(view(&a, &e));
        assert!(card.get("actions").is_none());
        let text = card.to_string();
        assert!(text.contains("Rejected by erin@example.com"), "{text}");
        assert!(text.contains("not during the freeze"), "{text}");
        assert!(!text.contains("Input.Text"));
        a.resumed = false;
        let owed = approval_card(view(&a, &e)).to_string();
        assert!(owed.contains("the workflow is being told"), "{owed}");
    }

    #[test]
    fn the_requesters_card_says_how_it_ended_and_opens_the_workflow_with_no_vote_buttons() {
        let (mut a, _) = approval("Deploy <b>payments</b>");
        a.state = ApprovalState::Rejected;
        a.decided_by = Some("erin_x@example.com".into());
        a.resumed = true;
        a.execution_id = "arn:aws:states:eu-west-1:123456789012:execution:regate:chg-9".into();
        let card = outcome_card(OutcomeNotice { approval: &a });
        assert_eq!(
            card["body"][0]["text"],
            r"Your request was rejected by erin\_x@example.com. The workflow stops; the change does not go ahead."
        );
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(
            card["actions"][0]["url"],
            "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:123456789012:execution:regate:chg-9"
        );
        let text = card.to_string();
        assert!(!text.contains("Action.Execute") && !text.contains("Input.Text"));
        assert!(text.contains(r"Deploy \\<b\\>payments\\</b\\>"), "{text}");
        // No ARN, no link.
        a.execution_id = "local-execution".into();
        assert!(outcome_card(OutcomeNotice { approval: &a })
            .get("actions")
            .is_none());
    }

    #[test]
    fn a_huge_request_still_fits_in_28_kb_with_its_summary_and_actions() {
        let (a, mut e) = approval("Deploy everything");
        e.decision.reasons = (0..400)
            .map(|i| format!("reason {i} {}", "x".repeat(200)))
            .collect();
        let card = approval_card(view(&a, &e));
        assert!(card.to_string().len() <= MAX_CARD_BYTES);
        assert!(card.to_string().contains("Deploy everything"));
        assert_eq!(card["actions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn approvers_are_mentioned_ten_at_a_time() {
        let (a, mut e) = approval("x");
        e.decision.approvers = (0..14).map(|i| format!("p{i}@example.com")).collect();
        let card = approval_card(view(&a, &e));
        assert_eq!(card["msteams"]["entities"].as_array().unwrap().len(), 10);
        assert!(card.to_string().contains("and 4 more"));
    }
}
