//! The DynamoDB decision log against the local stack: append-only writes, concurrent appends,
//! and the auditor's queries across GSI shards and pages.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use regate_aws::{DynamoDecisionLog, LogQuery};
use regate_core::chain::verify_chain;
use regate_core::event::{EventDraft, EventKind};
use regate_core::ports::{DecisionLog, StoreError};
use regate_core::Outcome;
use regate_tests::{decision_log_table, local_config, unique};

async fn log() -> DynamoDecisionLog {
    let config = local_config().await;
    DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&config), decision_log_table())
}

/// A day far from any other run's: queries by time then see only this test's events.
fn unique_day() -> NaiveDate {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    NaiveDate::from_ymd_opt(2300, 1, 1).unwrap() + chrono::Days::new((nanos % 200_000) as u64)
}

fn at(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, minute, 0).unwrap())
}

#[tokio::test]
async fn events_come_back_in_order_with_a_valid_chain() {
    let log = log().await;
    let id = unique("chain");
    let now = Utc::now();
    log.append(
        &id,
        EventDraft::new(EventKind::Requested).actor("dev@example.com"),
        now,
    )
    .await
    .unwrap();
    log.append(
        &id,
        EventDraft::new(EventKind::Evaluated).outcome(Outcome::ApprovalRequired),
        now,
    )
    .await
    .unwrap();
    log.append(
        &id,
        EventDraft::new(EventKind::Notified)
            .platform("slack")
            .data("channel", "C0PAYMENTS"),
        now,
    )
    .await
    .unwrap();
    let events = log.events(&id).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(events[2].data["channel"], "C0PAYMENTS");
    verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn a_rewrite_of_a_stored_event_is_refused_and_changes_nothing() {
    let log = log().await;
    let id = unique("rewrite");
    let original = log
        .append(
            &id,
            EventDraft::new(EventKind::Requested).actor("dev@example.com"),
            Utc::now(),
        )
        .await
        .unwrap()
        .expect("a draft without an idempotency key is always appended");
    let mut forged = original.clone();
    forged.actor = Some("mallory@example.com".into());
    forged.hash = regate_core::chain::compute_hash(&forged).unwrap();
    let error = log.put_event(&forged).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(log.events(&id).await.unwrap(), vec![original]);
}

#[tokio::test]
async fn twenty_concurrent_appends_get_contiguous_sequence_numbers_and_a_valid_chain() {
    let log = Arc::new(log().await);
    let id = unique("concurrent");
    let now = Utc::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (log, id) = (log.clone(), id.clone());
            tokio::spawn(async move {
                log.append(
                    &id,
                    EventDraft::new(EventKind::Vote).actor(format!("voter{i}@example.com")),
                    now,
                )
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let events = log.events(&id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u64>>()
    );
    let mut actors: Vec<_> = events.iter().map(|e| e.actor.clone().unwrap()).collect();
    actors.sort();
    actors.dedup();
    assert_eq!(actors.len(), 20, "every append is logged exactly once");
    verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn an_append_under_a_used_idempotency_key_appends_nothing_even_when_racing() {
    let log = Arc::new(log().await);
    let id = unique("once");
    let now = Utc::now();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (log, id) = (log.clone(), id.clone());
            // Ten writers: five race to log the same vote, five log votes of their own.
            let key = if i % 2 == 0 {
                "vote#alice".to_string()
            } else {
                format!("vote#{i}")
            };
            let draft = EventDraft::new(EventKind::Vote)
                .actor(key.clone())
                .once(key);
            tokio::spawn(async move { log.append(&id, draft, now).await })
        })
        .collect();
    let mut appended = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Some(event) => appended.push(event.actor.unwrap()),
            None => refused += 1,
        }
    }
    appended.sort();
    assert_eq!(
        appended.iter().filter(|a| *a == "vote#alice").count(),
        1,
        "one writer of alice's key appended her vote: {appended:?}"
    );
    assert_eq!(refused, 4, "the other four were told it was there");
    let events = log.events(&id).await.unwrap();
    assert_eq!(events.len(), 6, "alice's vote once, and five others");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<u64>>()
    );
    verify_chain(&id, &events).unwrap();
}

#[tokio::test]
async fn by_actor_returns_every_page_in_time_order() {
    let log = log().await;
    let actor = format!("{}@example.com", unique("auditee"));
    let day = unique_day();
    for (i, request) in ["a", "b", "c"].iter().enumerate() {
        let id = unique(request);
        for j in 0..3 {
            let draft = EventDraft::new(EventKind::Vote)
                .actor(&actor)
                .outcome(Outcome::Allow);
            log.append(&id, draft, at(day, 9 + j, i as u32))
                .await
                .unwrap();
        }
    }
    let query = LogQuery {
        actor: Some(actor.clone()),
        since: Some(at(day, 0, 0)),
        until: Some(at(day, 23, 0)),
        page_size: Some(2),
        ..LogQuery::default()
    };
    let events = log.query(&query).await.unwrap();
    assert_eq!(events.len(), 9);
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(events
        .iter()
        .all(|e| e.actor.as_deref() == Some(actor.as_str())));

    let narrow = LogQuery {
        until: Some(at(day, 9, 59)),
        ..query
    };
    assert_eq!(log.query(&narrow).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_time_range_spans_days_shards_and_pages_and_filters_by_kind_and_outcome() {
    let log = log().await;
    let day = unique_day();
    let next_day = day + chrono::Days::new(1);
    let mut ids = Vec::new();
    for i in 0..12u32 {
        let id = unique("range");
        let when = if i % 2 == 0 {
            at(day, 10, i)
        } else {
            at(next_day, 10, i)
        };
        let kind = if i % 3 == 0 {
            EventKind::Decided
        } else {
            EventKind::Requested
        };
        let mut draft = EventDraft::new(kind);
        if kind == EventKind::Decided {
            draft = draft.outcome(if i % 2 == 0 {
                Outcome::Allow
            } else {
                Outcome::Deny
            });
        }
        log.append(&id, draft, when).await.unwrap();
        ids.push(id);
    }
    let shards: std::collections::BTreeSet<u32> = ids
        .iter()
        .map(|id| {
            regate_aws::decision_log::shard_of(id, regate_aws::decision_log::DEFAULT_DAY_SHARDS)
        })
        .collect();
    assert!(shards.len() > 1, "the requests spread over several shards");

    let both_days = LogQuery {
        since: Some(at(day, 0, 0)),
        until: Some(at(next_day, 23, 0)),
        page_size: Some(2),
        ..LogQuery::default()
    };
    let events = log.query(&both_days).await.unwrap();
    assert_eq!(events.len(), 12);
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));

    let first_day = LogQuery {
        until: Some(at(day, 23, 59)),
        ..both_days.clone()
    };
    assert_eq!(log.query(&first_day).await.unwrap().len(), 6);

    let decided = LogQuery {
        kind: Some(EventKind::Decided),
        ..both_days.clone()
    };
    assert_eq!(log.query(&decided).await.unwrap().len(), 4);
    let denied = LogQuery {
        outcome: Some(Outcome::Deny),
        ..both_days
    };
    assert_eq!(log.query(&denied).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_unbounded_time_range_is_refused_with_a_clear_error() {
    let log = log().await;
    let query = LogQuery {
        since: Some(Utc::now() - Duration::days(5000)),
        ..LogQuery::default()
    };
    let error = log.query(&query).await.unwrap_err();
    assert!(error.to_string().contains("at most"), "{error}");
}
