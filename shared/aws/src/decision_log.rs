//! The decision log on DynamoDB: `pk = REQ#<id>`, `sk = EV#<seq>`, appended with
//! `attribute_not_exists(sk)` so the log is append-only and a concurrent writer loses cleanly
//! (and retries on top of the new head). An append with an idempotency key writes, in the same
//! transaction, a marker `sk = KEY#<key>` holding the event's seq: a second append with that key
//! (an SDK retry of a committed write, a retried step) finds the marker and returns the event
//! that is already there. GSIs `by_actor` and `by_day` answer auditors'
//! questions; `by_day` spreads each day over several shards so no partition runs hot.
//!
//! The policy travels with the log: before the first event that names this process's policy
//! revision, the bundle is stored once under `pk = POLICY#<revision>` (see [`KeptPolicy`]), so
//! an export of the table holds every policy that decided anything in it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Days, NaiveDate, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use regate_core::chain::next_event;
pub use regate_core::event::keys::{
    key_marker, partition_key, policy_key, sort_key, POLICY_SORT_KEY,
};
use regate_core::event::{Event, EventDraft, EventKind};
use regate_core::ports::{DecisionLog, StoreError};
use regate_core::time::format_rfc3339_ms;
use regate_core::Outcome;
use regate_core::PolicyBundle;

use crate::error::{classify, store_error};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

/// Shards per day in the `by_day` index. A request always lands in the same shard.
pub const DEFAULT_DAY_SHARDS: u32 = 8;
/// Appends retried on a lost race before giving up with `Conflict`; enough for dozens of
/// simultaneous writers on one request.
pub const DEFAULT_APPEND_ATTEMPTS: u32 = 100;
/// Time-range queries touch `days * shards` partitions, so they are bounded.
pub const MAX_QUERY_DAYS: u64 = 400;

pub struct DynamoDecisionLog {
    client: Client,
    table: String,
    day_shards: u32,
    append_attempts: u32,
    policies: Arc<KeptPolicies>,
}

/// A DynamoDB item holds at most 400 KB: an archived bundle above this is stored gzipped.
const PLAIN_BUNDLE_LIMIT: usize = 300 * 1024;
/// The most a gzipped bundle may take, leaving room for the item's keys.
const GZIP_BUNDLE_LIMIT: usize = 390 * 1024;

/// The bundle this process evaluates with, as the table keeps it, and whether it is kept yet.
pub struct KeptPolicy {
    revision: String,
    attribute: (&'static str, AttributeValue),
    kept: AtomicBool,
}

impl KeptPolicy {
    /// The bundle's item attribute: its archive as JSON text (`bundle`), or gzipped (`bundle_gzip`)
    /// when large. A bundle too large even gzipped is refused, at cold start.
    pub fn new(bundle: &PolicyBundle) -> Result<Self, StoreError> {
        let text = serde_json::to_string(&bundle.archive())
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        let attribute = if text.len() <= PLAIN_BUNDLE_LIMIT {
            ("bundle", AttributeValue::S(text))
        } else {
            let gzipped = gzip(text.as_bytes()).map_err(|e| StoreError::Refused(e.to_string()))?;
            if gzipped.len() > GZIP_BUNDLE_LIMIT {
                return Err(StoreError::Refused(format!(
                    "the policy bundle is {} bytes gzipped; the decision log can keep at most {GZIP_BUNDLE_LIMIT}",
                    gzipped.len()
                )));
            }
            ("bundle_gzip", AttributeValue::B(Blob::new(gzipped)))
        };
        Ok(Self {
            revision: bundle.revision.clone(),
            attribute,
            kept: AtomicBool::new(false),
        })
    }
}

/// The bundles this process has evaluated with lately, each kept in the table before the first
/// event that names its revision. A function that loads a new revision adds it here.
#[derive(Default)]
pub struct KeptPolicies {
    recent: std::sync::Mutex<Vec<Arc<KeptPolicy>>>,
}

/// Revisions remembered: a process swaps revisions at most once a refresh interval, so a few
/// cover any evaluation still running under an older one.
const RECENT_POLICIES: usize = 8;

impl KeptPolicies {
    /// Remembers `bundle`, to keep before its first use; refused when too large to keep.
    pub fn add(&self, bundle: &PolicyBundle) -> Result<(), StoreError> {
        let kept = Arc::new(KeptPolicy::new(bundle)?);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.iter().any(|k| k.revision == kept.revision) {
            return Ok(());
        }
        if recent.len() >= RECENT_POLICIES {
            recent.remove(0);
        }
        recent.push(kept);
        Ok(())
    }

    fn get(&self, revision: &str) -> Option<Arc<KeptPolicy>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().find(|k| k.revision == revision).cloned()
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// An auditor's question: events by actor and/or time range, optionally of one kind or outcome.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub kind: Option<EventKind>,
    pub outcome: Option<Outcome>,
    /// DynamoDB page size; small values exercise pagination.
    pub page_size: Option<i32>,
}

impl DynamoDecisionLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            day_shards: DEFAULT_DAY_SHARDS,
            append_attempts: DEFAULT_APPEND_ATTEMPTS,
            policies: Arc::default(),
        }
    }

    /// Keeps each of `policies` in the table before the first event that names its revision.
    pub fn keeping(mut self, policies: Arc<KeptPolicies>) -> Self {
        self.policies = policies;
        self
    }

    /// Stores the bundle of `revision` once, if this process evaluated with it and it is not
    /// stored yet. A bundle already there (another function kept it) counts as kept: the
    /// revision is a digest of the files, so the stored one is the same.
    async fn keep_policy(&self, revision: Option<&str>) -> Result<(), StoreError> {
        let Some(policy) = revision.and_then(|r| self.policies.get(r)) else {
            return Ok(());
        };
        if policy.kept.load(Ordering::Acquire) {
            return Ok(());
        }
        let (name, value) = &policy.attribute;
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(policy_key(&policy.revision)))
            .item("sk", AttributeValue::S(POLICY_SORT_KEY.into()))
            .item("revision", AttributeValue::S(policy.revision.clone()))
            .item(*name, value.clone())
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) => {}
            Err(error) => return Err(store_error(classify(&error))),
        }
        policy.kept.store(true, Ordering::Release);
        Ok(())
    }

    pub fn with_append_attempts(mut self, attempts: u32) -> Self {
        self.append_attempts = attempts.max(1);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// `YYYY-MM-DD#n`: the day of the event and the request's shard.
    fn day_shard(&self, request_id: &str, day: NaiveDate) -> String {
        format!("{day}#{}", shard_of(request_id, self.day_shards))
    }

    /// Writes exactly this event if its sequence number is free. An event that already exists
    /// is never overwritten: the write fails with `Conflict` and the log is unchanged.
    pub async fn put_event(&self, event: &Event) -> Result<(), StoreError> {
        self.write(event, None).await.map_err(|lost| {
            lost.into_store_error(&format!(
                "request {} already has an event with seq {}",
                event.request_id, event.seq
            ))
        })
    }

    /// Writes `event` if its seq is free, and with a `key`, in the same transaction, the marker
    /// of that idempotency key if the key is new. A lost condition comes back with the event
    /// that holds the seq (DynamoDB returns it: `ReturnValuesOnConditionCheckFailure`), so a
    /// writer that lost a race builds on it without reading the head again.
    async fn write(&self, event: &Event, key: Option<&str>) -> Result<(), WriteLost> {
        let item = self.item(event)?;
        let Some(key) = key else {
            let written = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(sk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match written {
                Ok(_) => Ok(()),
                Err(error) => match error.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        Err(WriteLost::Seq(holder(failed.item())))
                    }
                    _ => Err(WriteLost::Store(store_error(classify(&error)))),
                },
            };
        };
        let put = |item: HashMap<String, AttributeValue>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(sk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(|e| StoreError::Refused(e.to_string()))
        };
        let marker = HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(partition_key(&event.request_id)),
            ),
            ("sk".to_string(), AttributeValue::S(key_marker(key))),
            ("seq".to_string(), AttributeValue::N(event.seq.to_string())),
        ]);
        let written = self
            .client
            .transact_write_items()
            .transact_items(put(item)?)
            .transact_items(put(marker)?)
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                // Reasons come in the order of the items: the event, then the key's marker.
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let failed = |reason: Option<&CancellationReason>| {
                        reason.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
                    };
                    let reasons = cancelled.cancellation_reasons();
                    if failed(reasons.get(1)) {
                        Err(WriteLost::Key)
                    } else if failed(reasons.first()) {
                        Err(WriteLost::Seq(holder(reasons[0].item())))
                    } else {
                        // Cancelled for another reason (a conflicting transaction): try again.
                        Err(WriteLost::Seq(None))
                    }
                }
                _ => Err(WriteLost::Store(store_error(classify(&error)))),
            },
        }
    }

    /// A strongly consistent query over one request's events (not its key markers).
    fn request_query(&self, request_id: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :events)")
            .expression_attribute_values(":pk", AttributeValue::S(partition_key(request_id)))
            .expression_attribute_values(":events", AttributeValue::S("EV#".into()))
            .consistent_read(true)
    }

    async fn head(&self, request_id: &str) -> Result<Option<Event>, StoreError> {
        let output = self
            .request_query(request_id)
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| store_error(classify(&e)))?;
        output.items().first().map(event_from_item).transpose()
    }

    fn item(&self, event: &Event) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let day = event
            .at_time()
            .ok_or_else(|| {
                StoreError::Corrupt(format!("event time {:?} is not RFC 3339", event.at))
            })?
            .date_naive();
        let mut item = HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(partition_key(&event.request_id)),
            ),
            ("sk".to_string(), AttributeValue::S(sort_key(event.seq))),
            (
                "day_shard".to_string(),
                AttributeValue::S(self.day_shard(&event.request_id, day)),
            ),
        ]);
        let json = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.extend(to_item(json).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        Ok(item)
    }

    /// Events matching `query`, oldest first.
    pub async fn query(&self, query: &LogQuery) -> Result<Vec<Event>, StoreError> {
        let until = query.until.unwrap_or_else(Utc::now);
        let since = query
            .since
            .unwrap_or_else(|| until - chrono::Duration::days(7));
        if since > until {
            return Err(StoreError::Refused("--since is after --until".into()));
        }
        let range = (
            AttributeValue::S(format_rfc3339_ms(since)),
            AttributeValue::S(format_rfc3339_ms(until)),
        );
        let mut events = match &query.actor {
            Some(actor) => {
                self.query_index(
                    "by_actor",
                    "actor",
                    AttributeValue::S(actor.clone()),
                    &range,
                    query.page_size,
                )
                .await?
            }
            None => {
                let days = (until.date_naive() - since.date_naive())
                    .num_days()
                    .unsigned_abs()
                    + 1;
                if days > MAX_QUERY_DAYS {
                    return Err(StoreError::Refused(format!(
                        "a time range without --actor may span at most {MAX_QUERY_DAYS} days, not {days}"
                    )));
                }
                let mut all = Vec::new();
                for offset in 0..days {
                    let Some(day) = since.date_naive().checked_add_days(Days::new(offset)) else {
                        break;
                    };
                    for shard in 0..self.day_shards {
                        let key = AttributeValue::S(format!("{day}#{shard}"));
                        all.extend(
                            self.query_index("by_day", "day_shard", key, &range, query.page_size)
                                .await?,
                        );
                    }
                }
                all
            }
        };
        events.retain(|e| {
            query.kind.is_none_or(|k| e.kind == k)
                && query.outcome.is_none_or(|o| e.outcome == Some(o))
        });
        events.sort_by(|a, b| (&a.at, &a.request_id, a.seq).cmp(&(&b.at, &b.request_id, b.seq)));
        Ok(events)
    }

    /// Every page of one GSI partition between two times.
    async fn query_index(
        &self,
        index: &str,
        key_name: &str,
        key: AttributeValue,
        (since, until): &(AttributeValue, AttributeValue),
        page_size: Option<i32>,
    ) -> Result<Vec<Event>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#k = :k AND #at BETWEEN :since AND :until")
            .expression_attribute_names("#k", key_name)
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":k", key)
            .expression_attribute_values(":since", since.clone())
            .expression_attribute_values(":until", until.clone())
            .set_limit(page_size);
        // A time range passes over an item it cannot read (logging it), so that one bad item
        // written by someone else cannot stop every later checkpoint; `regate audit verify`
        // reports it from an export.
        all_pages(query, Unreadable::PassOver).await
    }
}

/// What a query does with an item that does not read as an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unreadable {
    Fail,
    PassOver,
}

/// Every page of a query, read as events (the SDK's paginator follows `LastEvaluatedKey`).
async fn all_pages(
    query: QueryFluentBuilder,
    unreadable: Unreadable,
) -> Result<Vec<Event>, StoreError> {
    let mut pages = query.into_paginator().send();
    let mut events = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| store_error(classify(&e)))?;
        for item in page.items() {
            match event_from_item(item) {
                Ok(event) => events.push(event),
                Err(error) if unreadable == Unreadable::PassOver => {
                    let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                    tracing::error!(
                        pk = key("pk").unwrap_or_default(),
                        sk = key("sk").unwrap_or_default(),
                        error = %error,
                        "an unreadable decision-log item was passed over"
                    );
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(events)
}

impl DecisionLog for DynamoDecisionLog {
    async fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        self.keep_policy(draft.policy_revision.as_deref()).await?;
        let key = draft.once.as_deref();
        let mut head = self.head(request_id).await?;
        // Whether `head` was read from the table (not taken from a lost write's answer).
        let mut head_was_read = true;
        for attempt in 0..self.append_attempts {
            let event = next_event(request_id, head.as_ref(), draft.clone(), at)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match self.write(&event, key).await {
                Ok(()) => return Ok(Some(event)),
                // The key has its event already: an SDK retry of a committed write, a retried
                // step, or a racing double.
                Err(WriteLost::Key) => return Ok(None),
                Err(WriteLost::Seq(holder)) => {
                    tracing::debug!(
                        request_id,
                        attempt,
                        "decision log append lost a race; retrying"
                    );
                    tokio::time::sleep(race_backoff(request_id, attempt)).await;
                    // The winner of a race over a fresh head is usually the head now; a writer
                    // that loses again is further behind and reads the head instead of walking
                    // the chain one event at a time.
                    (head, head_was_read) = match holder {
                        Some(event) if head_was_read => (Some(*event), false),
                        _ => (self.head(request_id).await?, true),
                    };
                }
                Err(WriteLost::Store(error)) => return Err(error),
            }
        }
        Err(StoreError::Conflict(format!(
            "could not append to request {request_id} after {} attempts",
            self.append_attempts
        )))
    }

    async fn events(&self, request_id: &str) -> Result<Vec<Event>, StoreError> {
        all_pages(self.request_query(request_id), Unreadable::Fail).await
    }
}

fn event_from_item(item: &HashMap<String, AttributeValue>) -> Result<Event, StoreError> {
    // serde_dynamo cannot read an attribute type this SDK does not know (it would panic).
    if !item.values().all(known_type) {
        return Err(StoreError::Corrupt(
            "an event holds a non-JSON attribute of an unknown type".into(),
        ));
    }
    let mut fields: serde_json::Map<String, serde_json::Value> = from_item(item.clone())
        .map_err(|e| StoreError::Corrupt(format!("an event holds a non-JSON attribute: {e}")))?;
    for key in ["pk", "sk", "day_shard"] {
        fields.remove(key);
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Whether `attr`, and every attribute inside it, is of a type this SDK knows.
fn known_type(attr: &AttributeValue) -> bool {
    match attr {
        AttributeValue::M(map) => map.values().all(known_type),
        AttributeValue::L(items) => items.iter().all(known_type),
        other => !other.is_unknown(),
    }
}

/// Why a conditional write of an event did not happen.
enum WriteLost {
    /// Its seq is taken, by this event when DynamoDB returned it.
    Seq(Option<Box<Event>>),
    /// Its idempotency key has an event already.
    Key,
    Store(StoreError),
}

impl WriteLost {
    fn into_store_error(self, conflict: &str) -> StoreError {
        match self {
            Self::Seq(_) | Self::Key => StoreError::Conflict(conflict.to_string()),
            Self::Store(error) => error,
        }
    }
}

impl From<StoreError> for WriteLost {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The event a failed condition returned, if it is one (an unreadable item is read again by
/// the caller from the head).
fn holder(item: Option<&HashMap<String, AttributeValue>>) -> Option<Box<Event>> {
    item.and_then(|item| event_from_item(item).ok().map(Box::new))
}

/// A short, growing wait with jitter derived from the request and the clock, so racing writers
/// spread out without a random number generator.
fn race_backoff(request_id: &str, attempt: u32) -> Duration {
    // Exponential backoff with full jitter: writers that keep colliding spread out, so a burst
    // of appends to one chain drains in about as many rounds as there are writers instead of
    // colliding again and again.
    let nanos = Utc::now().timestamp_subsec_nanos();
    let spread = 4_u64 << attempt.min(6);
    Duration::from_millis(1 + u64::from(fnv1a(request_id) ^ nanos) % spread)
}

/// The `by_day` shard of a request.
pub fn shard_of(request_id: &str, shards: u32) -> u32 {
    fnv1a(request_id) % shards.max(1)
}

/// FNV-1a: a stable hash (unlike std's, it never changes between Rust versions), so a request
/// keeps its shard forever.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn at() -> DateTime<Utc> {
        regate_core::time::parse_rfc3339("2026-11-21T10:00:00Z").unwrap()
    }

    /// Real error answers carry their code in the metadata, which is what regate classifies.
    fn meta(code: &str) -> aws_sdk_dynamodb::error::ErrorMetadata {
        aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .message("slow down")
            .build()
    }

    fn condition_failed() -> PutItemError {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .meta(meta("ConditionalCheckFailedException"))
                .build(),
        )
    }

    #[test]
    fn an_events_json_data_survives_a_round_trip_through_its_item() {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, []);
        let log = DynamoDecisionLog::new(client, "DecisionLog");
        let draft = EventDraft::new(EventKind::Evaluated)
            .data("list", serde_json::json!([1, -2, 1.5, "x", null, true, ""]))
            .data("nested", serde_json::json!({"c": u64::MAX, "d": {"e": []}}));
        let event = next_event("chg-1", None, draft, at()).unwrap();
        let item = log.item(&event).unwrap();
        assert_eq!(item["pk"], AttributeValue::S("REQ#chg-1".into()));
        assert_eq!(event_from_item(&item).unwrap(), event);
        assert!(regate_core::chain::verify_chain("chg-1", std::slice::from_ref(&event)).is_ok());
    }

    #[test]
    fn an_item_with_a_binary_attribute_is_not_an_event() {
        let mut item = HashMap::from([(
            "data".to_string(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![1])),
        )]);
        item.insert("pk".into(), AttributeValue::S("REQ#chg-1".into()));
        assert!(matches!(
            event_from_item(&item),
            Err(StoreError::Corrupt(message)) if message.contains("non-JSON")
        ));
    }

    /// Appends a first event to a log whose `PutItem` answers as `put` says, trying `attempts`
    /// times against lost races.
    async fn append_first(
        put: &aws_smithy_mocks::Rule,
        attempts: u32,
    ) -> Result<Option<Event>, StoreError> {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&empty_head(), put]);
        DynamoDecisionLog::new(client, "DecisionLog")
            .with_append_attempts(attempts)
            .append("chg-1", EventDraft::new(EventKind::Requested), at())
            .await
    }

    fn empty_head() -> aws_smithy_mocks::Rule {
        mock!(Client::query).then_output(|| QueryOutput::builder().build())
    }

    #[test]
    fn keys_sort_by_sequence_and_shards_are_stable() {
        assert_eq!(sort_key(7), "EV#0000000007");
        assert!(sort_key(10) > sort_key(9));
        assert_eq!(partition_key("chg-1"), "REQ#chg-1");
        assert_eq!(fnv1a("chg-2041"), fnv1a("chg-2041"));
        assert_eq!(fnv1a(""), 0x811c_9dc5);
    }

    #[tokio::test]
    async fn throttling_that_outlasts_the_sdk_retries_is_a_throttled_error() {
        let put = mock!(Client::put_item).then_error(|| {
            PutItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .meta(meta("ProvisionedThroughputExceededException"))
                    .build(),
            )
        });
        let error = append_first(&put, DEFAULT_APPEND_ATTEMPTS)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Throttled(ref m) if m.contains("slow down")),
            "{error:?}"
        );
        assert_eq!(
            regate_core::ErrorName::decision_log(&error).as_str(),
            "DecisionLog.Throttled"
        );
        assert!(regate_core::ErrorName::decision_log(&error).is_retryable());
    }

    #[tokio::test]
    async fn a_lost_race_is_retried_and_then_succeeds() {
        let put = mock!(Client::put_item)
            .sequence()
            .error(condition_failed)
            .times(2)
            .output(|| PutItemOutput::builder().build())
            .build();
        let event = append_first(&put, DEFAULT_APPEND_ATTEMPTS).await.unwrap();
        assert_eq!(event.map(|e| e.seq), Some(1));
        assert_eq!(put.num_calls(), 3);
    }

    #[tokio::test]
    async fn endless_lost_races_end_in_a_conflict_error() {
        let put = mock!(Client::put_item).then_error(condition_failed);
        let error = append_first(&put, 3).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)));
        assert_eq!(put.num_calls(), 3);
    }

    #[tokio::test]
    async fn server_errors_that_outlast_the_sdk_retries_are_unavailable() {
        let put = mock!(Client::put_item)
            .sequence()
            .http_status(500, None)
            .repeatedly()
            .build();
        let error = append_first(&put, DEFAULT_APPEND_ATTEMPTS)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Unavailable(_) | StoreError::Refused(_)),
            "{error:?}"
        );
    }
}
