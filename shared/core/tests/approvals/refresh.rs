//! Messages show the approval as it is now, and a failed update loses nothing.

use super::*;

#[tokio::test]
async fn a_refresh_that_rendered_an_older_state_shows_the_stored_one_after_it() {
    // A click renders the approval as pending; before its update lands, another vote closes
    // and resumes it. The slow click's update must not be the last word on the message.
    let (f, s) = opened("r25", DEPLOY).await;
    let stale = f.pending.item("r25").unwrap();
    s.vote(&ballot("r25", "alice@example.com")).await.unwrap();
    let before = f.chat.updates.lock().unwrap().len();
    s.refresh(&stale, &stale.evaluation).await;
    let updates = f.chat.updates.lock().unwrap().clone();
    let states: Vec<ApprovalState> = updates[before..].iter().map(|u| u.1).collect();
    assert_eq!(
        states,
        [ApprovalState::Pending, ApprovalState::Approved],
        "the stale view, then the stored one"
    );
    // Up to date already: one update, no second.
    let current = f.pending.item("r25").unwrap();
    s.refresh(&current, &current.evaluation).await;
    assert_eq!(f.chat.updates.lock().unwrap().len(), updates.len() + 1);
}

#[tokio::test]
async fn a_message_update_that_fails_never_loses_the_recorded_decision() {
    let (f, s) = opened("r10", DEPLOY).await;
    f.chat
        .fault
        .set(regate_core::ports::ChatError::Unavailable("down".into()));
    let result = s.vote(&ballot("r10", "alice@example.com")).await.unwrap();
    assert!(matches!(
        result,
        VoteResult::Counted {
            closed: Some(_),
            ..
        }
    ));
    assert_eq!(f.tokens.calls().len(), 1);
}
