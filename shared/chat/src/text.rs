//! Text helpers both platforms' messages use: cutting to a limit, short times and hashes, time
//! left in words, and a reminder's text (each platform escapes and formats them its own way).

/// Cuts `text` to at most `max` characters, ending with an ellipsis when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time as `2026-06-01 12:00 UTC`; anything else as it is (escaped by `escape`).
pub fn short_time(at: &str, escape: impl Fn(&str) -> String) -> String {
    regate_core::time::parse_rfc3339(at).map_or_else(
        || escape(at),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A policy revision cut to its algorithm and first hex digits.
pub fn short_hash(revision: &str) -> String {
    revision.chars().take(19).collect()
}

/// A time left in words: `1 h 5 min`, `25 min`, `less than a minute`.
pub fn time_left(left: chrono::Duration) -> String {
    let minutes = left.num_minutes();
    match (minutes / 60, minutes % 60) {
        _ if minutes < 1 => "less than a minute".into(),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// A reminder's text around the people it names (`who`, as the platform mentions them, and
/// how many more it only counts).
pub fn reminder_text(who: &[String], more: usize, left: chrono::Duration) -> String {
    let names = match (who.join(", "), more) {
        (named, 0) => named,
        (named, more) if named.is_empty() => format!("{more} people"),
        (named, more) => format!("{named} and {more} more"),
    };
    let waiting = if names.is_empty() {
        "Reminder: this request still needs approval".to_string()
    } else {
        format!("Reminder: this request still needs approval from {names}")
    };
    format!(
        "{waiting}. It expires in {}; until then, vote with the buttons above.",
        time_left(left)
    )
}

/// The first line of the direct message that tells a requester how their request ended; `by`
/// is the decider as the platform shows them (escaped), none when time or the policy decided.
pub fn outcome_text(state: regate_core::ApprovalState, by: Option<&str>) -> String {
    use regate_core::ApprovalState;
    let by = by.map_or_else(|| " by the policy".to_string(), |who| format!(" by {who}"));
    let stops = "The workflow stops; the change does not go ahead.";
    match state {
        ApprovalState::Approved => {
            format!("Your request was approved{by}. The workflow goes on with the change.")
        }
        ApprovalState::Rejected => format!("Your request was rejected{by}. {stops}"),
        ApprovalState::Expired => {
            format!("Your request expired: no decision within the time allowed. {stops}")
        }
        ApprovalState::Pending => "Your request is still waiting for approval.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_says_how_it_ended_who_decided_and_what_the_workflow_does() {
        use regate_core::ApprovalState;
        assert_eq!(
            outcome_text(ApprovalState::Approved, Some("bob@example.com")),
            "Your request was approved by bob@example.com. The workflow goes on with the change."
        );
        assert!(outcome_text(ApprovalState::Rejected, None)
            .starts_with("Your request was rejected by the policy. The workflow stops"));
        assert!(outcome_text(ApprovalState::Expired, Some("x")).starts_with("Your request expired"));
    }

    #[test]
    fn a_reminder_says_who_is_awaited_and_how_long_is_left_in_words() {
        let minutes = chrono::Duration::minutes;
        assert_eq!(
            time_left(chrono::Duration::seconds(30)),
            "less than a minute"
        );
        assert_eq!(time_left(minutes(-5)), "less than a minute");
        assert_eq!(time_left(minutes(25)), "25 min");
        assert_eq!(time_left(minutes(120)), "2 h");
        assert_eq!(time_left(minutes(224)), "3 h 44 min");
        let who = ["<@U1>".to_string(), "<@U2>".to_string()];
        assert_eq!(
            reminder_text(&who, 3, minutes(43)),
            "Reminder: this request still needs approval from <@U1>, <@U2> and 3 more. \
             It expires in 43 min; until then, vote with the buttons above."
        );
        assert!(reminder_text(&[], 0, minutes(5))
            .starts_with("Reminder: this request still needs approval. "));
    }
}
