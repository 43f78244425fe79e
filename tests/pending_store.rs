//! Pending approvals on DynamoDB against the local stack: idempotent create, one vote per
//! person, and state changes that exactly one of many racing writers wins.

use std::sync::Arc;

use chrono::Utc;
use regate_aws::DynamoPendingStore;
use regate_core::pending::{ApprovalState, Closing, Conditional, MessageRef, PendingApproval};
use regate_core::ports::PendingStore;
use regate_core::{Choice, TaskToken, Vote};
use regate_testkit::request;
use regate_tests::{local_config, pending_table, unique};

async fn store() -> DynamoPendingStore {
    DynamoPendingStore::new(
        aws_sdk_dynamodb::Client::new(&local_config().await),
        pending_table(),
    )
}

/// A fresh pending approval with a task token of Step Functions' maximum length.
fn approval(id: &str) -> PendingApproval {
    regate_testkit::pending_approval(&request(id).build(), &"x".repeat(2048))
}

fn vote(voter: &str, choice: Choice) -> Vote {
    Vote {
        voter: voter.into(),
        vote: choice,
        reason: None,
        at: regate_core::time::format_rfc3339_ms(Utc::now()),
    }
}

/// When an approval with a vote cast now is next due: when the vote settles.
fn settles() -> chrono::DateTime<Utc> {
    Utc::now() + regate_core::pending::RESUME_LEASE
}

fn closing(state: ApprovalState) -> Closing {
    let evaluation = approval("x").evaluation;
    Closing {
        state,
        evaluation,
        decided_by: Some("alice@example.com".into()),
        decided_at: Utc::now(),
        closed_by: "vote:alice@example.com".into(),
        resumed: false,
        resume_until: Utc::now() + chrono::Duration::seconds(90),
    }
}

fn done(result: Conditional) -> PendingApproval {
    match result {
        Conditional::Done(item) => *item,
        Conditional::Lost(item) => panic!("expected the write to happen, it lost: {item:?}"),
    }
}

#[tokio::test]
async fn a_created_approval_reads_back_whole_with_its_2048_character_token() {
    let store = store().await;
    let id = unique("create");
    let created = approval(&id);
    done(store.create(&created).await.unwrap());
    let read = store.get(&id).await.unwrap().unwrap();
    assert_eq!(read.task_token.expose().len(), 2048);
    assert_eq!(read.request, created.request);
    assert_eq!(read.evaluation, created.evaluation);
    assert_eq!(read.state, ApprovalState::Pending);
    assert_eq!(read.expires_at.timestamp(), created.expires_at.timestamp());
    assert!(store.get(&unique("missing")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_second_create_for_the_same_request_writes_nothing_and_returns_the_first() {
    let store = store().await;
    let id = unique("idempotent");
    done(store.create(&approval(&id)).await.unwrap());
    let slack = MessageRef::Slack {
        channel: "C0PAYMENTS".into(),
        ts: "1700000000.000100".into(),
        user: None,
    };
    done(
        store
            .add_messages(&id, std::slice::from_ref(&slack))
            .await
            .unwrap(),
    );
    let mut retry = approval(&id);
    retry.task_token = TaskToken::new("a-newer-token");
    match store.create(&retry).await.unwrap() {
        Conditional::Lost(Some(existing)) => {
            assert_eq!(existing.task_token.expose().len(), 2048);
            assert_eq!(existing.messages, vec![slack]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_person_votes_once_only_while_pending_and_on_the_version_checked() {
    let store = store().await;
    let id = unique("votes");
    done(store.create(&approval(&id)).await.unwrap());
    let first = done(
        store
            .record_vote(
                &id,
                &vote("alice@example.com", Choice::Approve),
                1,
                settles(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(first.votes.len(), 1);
    assert_eq!(first.version, 2);
    match store
        .record_vote(
            &id,
            &vote("Alice@Example.com", Choice::Reject),
            2,
            settles(),
        )
        .await
        .unwrap()
    {
        Conditional::Lost(Some(now)) => assert_eq!(now.votes, first.votes),
        other => panic!("{other:?}"),
    }
    // Bob's vote was checked against the approval before Alice's vote: it is not stored, and
    // he gets the approval with her vote to check again.
    match store
        .record_vote(&id, &vote("bob@example.com", Choice::Approve), 1, settles())
        .await
        .unwrap()
    {
        Conditional::Lost(Some(now)) => {
            assert_eq!(now.version, 2);
            assert_eq!(now.votes, first.votes);
        }
        other => panic!("{other:?}"),
    }
    let second = done(
        store
            .record_vote(&id, &vote("bob@example.com", Choice::Approve), 2, settles())
            .await
            .unwrap(),
    );
    assert_eq!(second.votes.len(), 2);
    let closed = done(
        store
            .transition(&id, second.version, &closing(ApprovalState::Approved))
            .await
            .unwrap(),
    );
    match store
        .record_vote(
            &id,
            &vote("carol@example.com", Choice::Approve),
            closed.version,
            settles(),
        )
        .await
        .unwrap()
    {
        Conditional::Lost(Some(now)) => {
            assert_eq!(now.state, ApprovalState::Approved);
            assert_eq!(now.votes.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn of_twenty_racing_state_changes_exactly_one_wins_and_the_others_learn_it() {
    let store = Arc::new(store().await);
    let id = unique("race");
    done(store.create(&approval(&id)).await.unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            let to = if i % 2 == 0 {
                ApprovalState::Approved
            } else {
                ApprovalState::Rejected
            };
            tokio::spawn(async move { (to, store.transition(&id, 1, &closing(to)).await.unwrap()) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = 0;
    for task in tasks {
        match task.await.unwrap() {
            (to, Conditional::Done(item)) => {
                assert_eq!(item.state, to);
                winners.push(to);
            }
            (_, Conditional::Lost(Some(item))) => {
                assert_ne!(item.state, ApprovalState::Pending);
                losers += 1;
            }
            (_, Conditional::Lost(None)) => panic!("the item vanished"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(losers, 19);
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, winners[0]);
    assert_eq!(stored.version, 2);
    assert_eq!(stored.decided_by.as_deref(), Some("alice@example.com"));
    assert!(stored.decided_at.is_some());
}

#[tokio::test]
async fn a_new_task_token_replaces_the_old_one_until_the_workflow_is_resumed() {
    let store = store().await;
    let id = unique("token");
    let created = approval(&id);
    done(store.create(&created).await.unwrap());
    assert_eq!(
        created.execution_id,
        store.get(&id).await.unwrap().unwrap().execution_id
    );
    let replaced = done(
        store
            .replace_token(&id, &TaskToken::new("retried-token"))
            .await
            .unwrap(),
    );
    assert_eq!(replaced.task_token.expose(), "retried-token");
    let closed = done(
        store
            .transition(&id, replaced.version, &closing(ApprovalState::Rejected))
            .await
            .unwrap(),
    );
    assert_eq!(closed.closed_by.as_deref(), Some("vote:alice@example.com"));
    assert!(closed.owes_resume());
    // Closed but not resumed: a retried step's token still replaces the dead one.
    let retried = TaskToken::new("second-retry");
    done(store.replace_token(&id, &retried).await.unwrap());
    assert!(
        matches!(
            store
                .settle(
                    &id,
                    &TaskToken::new("retried-token"),
                    ApprovalState::Rejected,
                    Utc::now(),
                )
                .await
                .unwrap(),
            Conditional::Lost(Some(_))
        ),
        "only the current token settles it"
    );
    let settled = done(
        store
            .settle(&id, &retried, ApprovalState::Rejected, Utc::now())
            .await
            .unwrap(),
    );
    assert!(settled.resumed && !settled.owes_resume());
    for late in [
        store
            .replace_token(&id, &TaskToken::new("late"))
            .await
            .unwrap(),
        store
            .settle(&id, &retried, ApprovalState::Expired, Utc::now())
            .await
            .unwrap(),
    ] {
        assert!(matches!(late, Conditional::Lost(Some(_))), "{late:?}");
    }
}

#[tokio::test]
async fn a_state_change_on_a_stale_version_loses() {
    let store = store().await;
    let id = unique("stale");
    done(store.create(&approval(&id)).await.unwrap());
    done(
        store
            .record_vote(
                &id,
                &vote("alice@example.com", Choice::Approve),
                1,
                settles(),
            )
            .await
            .unwrap(),
    );
    match store
        .transition(&id, 1, &closing(ApprovalState::Approved))
        .await
        .unwrap()
    {
        Conditional::Lost(Some(now)) => {
            assert_eq!((now.state, now.version), (ApprovalState::Pending, 2))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .transition(&unique("nothing"), 1, &closing(ApprovalState::Expired))
            .await
            .unwrap(),
        Conditional::Lost(None)
    ));
}

#[tokio::test]
async fn the_closing_write_holds_the_resume_claim_and_of_twenty_later_claims_one_wins() {
    let store = Arc::new(store().await);
    let id = unique("claim");
    done(store.create(&approval(&id)).await.unwrap());
    let closed = done(
        store
            .transition(&id, 1, &closing(ApprovalState::Approved))
            .await
            .unwrap(),
    );
    assert_eq!(closed.resume_claims, 1, "the closing attempt holds claim 1");
    let now = Utc::now();
    let lease = chrono::Duration::seconds(90);
    // While the closer's claim is live, nobody else may take it.
    let early = store.claim_resume(&id, 1, now, now + lease).await.unwrap();
    assert!(matches!(early, Conditional::Lost(Some(ref item)) if item.resume_claims == 1));
    // Released (its resume did not settle): twenty paths race for it and one wins.
    done(store.release_resume(&id, 1, now).await.unwrap());
    let later = now + chrono::Duration::milliseconds(1);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.claim_resume(&id, 1, later, later + lease).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if let Conditional::Done(item) = task.await.unwrap().unwrap() {
            assert_eq!(item.resume_claims, 2);
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one path holds the duty to resume");
    // A lapsed claim can be taken over; a claim on a resumed approval cannot.
    let lapsed = later + lease;
    done(
        store
            .claim_resume(&id, 2, lapsed, lapsed + lease)
            .await
            .unwrap(),
    );
    done(
        store
            .settle(&id, &closed.task_token, ApprovalState::Approved, lapsed)
            .await
            .unwrap(),
    );
    let after = lapsed + lease + lease;
    let settled = store
        .claim_resume(&id, 3, after, after + lease)
        .await
        .unwrap();
    assert!(matches!(settled, Conditional::Lost(Some(ref item)) if item.resumed));
}

#[tokio::test]
async fn of_two_paths_claiming_to_tell_the_requester_one_wins_and_told_ends_every_duty() {
    let store = Arc::new(store().await);
    for trial in 0..5 {
        let id = unique("tell-race");
        done(store.create(&approval(&id)).await.unwrap());
        let closed = done(
            store
                .transition(&id, 1, &closing(ApprovalState::Approved))
                .await
                .unwrap(),
        );
        // Times are stored to the millisecond.
        let now =
            regate_core::time::parse_rfc3339(&regate_core::time::format_rfc3339_ms(Utc::now()))
                .unwrap();
        // Not resumed yet: nobody may tell the requester.
        let early = store.claim_tell(&id, 0, now, now).await.unwrap();
        assert!(matches!(early, Conditional::Lost(Some(_))), "trial {trial}");
        let settled = done(
            store
                .settle(&id, &closed.task_token, ApprovalState::Approved, now)
                .await
                .unwrap(),
        );
        assert!(
            settled.owes_tell() && settled.due_at == Some(now),
            "due to tell at once"
        );
        let listed = store.due(now, 1000).await.unwrap();
        assert!(
            listed.iter().any(|d| d.request_id == id),
            "the sweeper finds it"
        );
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let lease = now + chrono::Duration::minutes(2);
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.claim_tell(&id, 0, now, lease).await
                })
            })
            .collect();
        let mut won = Vec::new();
        for racer in racers {
            if let Conditional::Done(item) = racer.await.unwrap().unwrap() {
                won.push(item);
            }
        }
        assert_eq!(
            won.len(),
            1,
            "trial {trial}: exactly one path tells the requester"
        );
        assert_eq!((won[0].tell_claims, won[0].due_at), (1, Some(lease)));
        // A live claim holds off the next path; a lapsed one does not.
        let held = store.claim_tell(&id, 1, now, lease).await.unwrap();
        assert!(matches!(held, Conditional::Lost(Some(_))));
        done(
            store
                .claim_tell(&id, 1, lease, lease + lease.signed_duration_since(now))
                .await
                .unwrap(),
        );
        // Only the latest claim records the telling; then the approval is never due again.
        assert!(matches!(
            store.told(&id, 1).await.unwrap(),
            Conditional::Lost(Some(_))
        ));
        let told = done(store.told(&id, 2).await.unwrap());
        assert!(told.requester_told && !told.owes_anything() && told.due_at.is_none());
        let listed = store
            .due(lease + lease.signed_duration_since(now), 1000)
            .await
            .unwrap();
        assert!(
            !listed.iter().any(|d| d.request_id == id),
            "told: never due"
        );
        let again = store
            .claim_tell(&id, 2, lease + lease.signed_duration_since(now), lease)
            .await
            .unwrap();
        assert!(matches!(again, Conditional::Lost(Some(_))));
    }
}

#[tokio::test]
async fn a_vote_racing_the_sweepers_reschedule_keeps_its_settle_time() {
    // The sweeper moves an approval it looked at to its next duty while a click stores a
    // vote, both on version 1: whichever lands first, the item ends with the vote and due
    // when the vote settles (the reschedule never hides a vote from the sweeper).
    let store = Arc::new(store().await);
    for trial in 0..10 {
        let id = unique("reschedule-race");
        done(store.create(&approval(&id)).await.unwrap());
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let settle = settles();
        let later = settle + chrono::Duration::hours(1);
        let sweeper = {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.reschedule(&id, 1, later).await.unwrap()
            })
        };
        let click = {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let vote = vote("alice@example.com", Choice::Approve);
                store.record_vote(&id, &vote, 1, settle).await.unwrap()
            })
        };
        sweeper.await.unwrap();
        done(click.await.unwrap());
        let item = store.get(&id).await.unwrap().unwrap();
        assert_eq!(item.votes.len(), 1, "trial {trial}");
        assert_eq!(
            regate_core::time::format_rfc3339_ms(item.due_at.unwrap()),
            regate_core::time::format_rfc3339_ms(settle),
            "trial {trial}"
        );
    }
}

#[tokio::test]
async fn of_two_sweepers_and_a_click_racing_on_one_version_exactly_one_writes() {
    // Two sweepers claim the same reminder while a click stores a vote, all on version 1:
    // exactly one write lands, and the item is due as that writer said.
    let store = Arc::new(store().await);
    for trial in 0..10 {
        let id = unique("remind-race");
        done(store.create(&approval(&id)).await.unwrap());
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let settle = settles();
        let next_reminder = settle + chrono::Duration::hours(1);
        let mut writers = Vec::new();
        for sweeper in 0..2 {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            writers.push(tokio::spawn(async move {
                barrier.wait().await;
                let written = store.advance_reminders(&id, 1, 900, next_reminder).await;
                (format!("sweeper {sweeper}"), written.unwrap())
            }));
        }
        {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            writers.push(tokio::spawn(async move {
                barrier.wait().await;
                let vote = vote("alice@example.com", Choice::Approve);
                let written = store.record_vote(&id, &vote, 1, settle).await;
                ("click".to_string(), written.unwrap())
            }));
        }
        let mut landed = Vec::new();
        for writer in writers {
            if let (who, Conditional::Done(item)) = writer.await.unwrap() {
                landed.push((who, item));
            }
        }
        assert_eq!(landed.len(), 1, "trial {trial}: {landed:?}");
        let (who, item) = &landed[0];
        let expected = if who == "click" {
            settle
        } else {
            next_reminder
        };
        let stored = store.get(&id).await.unwrap().unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(
            regate_core::time::format_rfc3339_ms(stored.due_at.unwrap()),
            regate_core::time::format_rfc3339_ms(expected),
            "trial {trial}: {who} {item:?}"
        );
    }
}
