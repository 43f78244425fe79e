//! Pending approvals on DynamoDB: one item per request, keyed by `request_id`, holding the task
//! token, the request, the last evaluation, the posted messages, the votes (a map keyed by
//! voter, so a second vote by the same person fails its condition) and the state with a version
//! for conditional updates. TTL on `expires_at` lets DynamoDB forget closed items. While the
//! workflow has not been resumed, an item carries `due_at` (when the sweeper next needs it) and
//! a small `due_shard`: the sparse index `by_due` holds exactly those items, sorted by `due_at`
//! within each shard, so a sweep reads what is due now, oldest first, and nothing else.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use regate_core::decision::Evaluation;
use regate_core::pending::{
    ApprovalState, Closing, Conditional, DueApproval, MessageRef, PendingApproval, TaskToken,
};
use regate_core::ports::{PendingStore, StoreError};
use regate_core::rules::normalize;
use regate_core::time::{format_rfc3339_ms, parse_rfc3339};
use regate_core::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{classify, is_condition_failure, store_error};

/// The sparse index of unresumed approvals by when they are due, and its keys.
pub const DUE_INDEX: &str = "by_due";
const DUE_AT: &str = "due_at";
const DUE_SHARD: &str = "due_shard";
/// How many partitions the due index spreads over: a sweep queries each, and each takes its
/// own share of the writes (one index partition takes about 1,000 writes a second).
pub const DUE_SHARDS: u8 = 4;

/// The due index partition of a request: a stable hash of its id (FNV-1a), the same on every
/// write and every build.
fn due_shard(request_id: &str) -> u8 {
    let hash = request_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    u8::try_from(hash % u64::from(DUE_SHARDS)).unwrap_or(0)
}

fn time_attr(at: DateTime<Utc>) -> AttributeValue {
    // Fixed-width RFC 3339 UTC text: it sorts and compares as the times do.
    AttributeValue::S(format_rfc3339_ms(at))
}

pub struct DynamoPendingStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoPendingStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(request_id: &str) -> (String, AttributeValue) {
        (
            "request_id".to_string(),
            AttributeValue::S(request_id.to_string()),
        )
    }

    /// Runs a conditional update; a failed condition reads the item as it is now.
    async fn conditional_update(
        &self,
        request_id: &str,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<Conditional, StoreError> {
        let (key, value) = Self::key(request_id);
        // Every write of `due_at` writes the shard too, so an item stored before the due index
        // existed joins it at its next write.
        let writes_due = update
            .get_update_expression()
            .as_deref()
            .is_some_and(|expression| expression.contains(":shard"));
        let update = match writes_due {
            true => update.expression_attribute_values(
                ":shard",
                AttributeValue::N(due_shard(request_id).to_string()),
            ),
            false => update,
        };
        match update
            .table_name(&self.table)
            .key(key, value)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
        {
            Ok(output) => {
                let item = output
                    .attributes()
                    .ok_or_else(|| StoreError::Corrupt("update returned no item".into()))?;
                Ok(Conditional::Done(Box::new(from_item(item)?)))
            }
            Err(error) => {
                let failure = classify(&error);
                if is_condition_failure(&failure) {
                    Ok(Conditional::Lost(self.get(request_id).await?.map(Box::new)))
                } else {
                    Err(store_error(failure))
                }
            }
        }
    }
}

impl PendingStore for DynamoPendingStore {
    async fn create(&self, approval: &PendingApproval) -> Result<Conditional, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(approval)?))
            .condition_expression("attribute_not_exists(request_id)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(Conditional::Done(Box::new(approval.clone()))),
            Err(error) => {
                let failure = classify(&error);
                if is_condition_failure(&failure) {
                    Ok(Conditional::Lost(
                        self.get(&approval.request_id).await?.map(Box::new),
                    ))
                } else {
                    Err(store_error(failure))
                }
            }
        }
    }

    async fn get(&self, request_id: &str) -> Result<Option<PendingApproval>, StoreError> {
        let (key, value) = Self::key(request_id);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(key, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(classify(&e)))?;
        output.item().map(from_item).transpose()
    }

    async fn add_messages(
        &self,
        request_id: &str,
        messages: &[MessageRef],
    ) -> Result<Conditional, StoreError> {
        let refs = messages
            .iter()
            .map(json_attr)
            .collect::<Result<Vec<_>, _>>()?;
        let update = self
            .client
            .update_item()
            .update_expression("SET messages = list_append(messages, :m), version = version + :one")
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":m", AttributeValue::L(refs))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn mark_posting(
        &self,
        request_id: &str,
        target_key: &str,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression(
                "SET posting = list_append(if_not_exists(posting, :none), :key), version = version + :one",
            )
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":key",
                AttributeValue::L(vec![AttributeValue::S(target_key.to_string())]),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn record_vote(
        &self,
        request_id: &str,
        vote: &Vote,
        version: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression("SET votes.#voter = :vote, due_at = :due, due_shard = :shard, version = version + :one")
            .condition_expression(
                "#state = :pending AND version = :version AND attribute_not_exists(votes.#voter)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#voter", normalize(&vote.voter))
            .expression_attribute_values(":vote", json_attr(vote)?)
            .expression_attribute_values(":due", time_attr(due))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression("SET task_token = :token, version = version + :one")
            .condition_expression("resumed = :false")
            .expression_attribute_values(":token", AttributeValue::S(token.expose().to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueApproval>, StoreError> {
        // Each shard's oldest due entries (no more than `limit` of them), merged oldest first.
        // The index holds keys only: the sweep reads each item itself, consistently, when it
        // comes to it.
        let page = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let mut due = Vec::new();
        for shard in 0..DUE_SHARDS {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_values(":shard", AttributeValue::N(shard.to_string()))
                .expression_attribute_values(":now", time_attr(now))
                .limit(page)
                .send()
                .await
                .map_err(|e| store_error(classify(&e)))?;
            for key in output.items() {
                let entry = match (key.get("request_id"), key.get(DUE_AT)) {
                    (Some(AttributeValue::S(request_id)), Some(AttributeValue::S(due_at))) => {
                        parse_rfc3339(due_at).map(|due_at| DueApproval {
                            request_id: request_id.clone(),
                            due_at,
                        })
                    }
                    _ => None,
                };
                // One unreadable entry must not stop the sweep of every other approval.
                match entry {
                    Some(entry) => due.push(entry),
                    None => {
                        tracing::error!(entry = ?key, "a {DUE_INDEX} entry is not a request id and a time; skipped")
                    }
                }
            }
        }
        due.sort_by(|a, b| (a.due_at, &a.request_id).cmp(&(b.due_at, &b.request_id)));
        due.truncate(limit);
        Ok(due)
    }

    async fn advance_reminders(
        &self,
        request_id: &str,
        expected_version: u64,
        through: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression(
                "SET reminded_through = :through, due_at = :due, due_shard = :shard, version = version + :one",
            )
            .condition_expression("#state = :pending AND version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":through", AttributeValue::N(through.to_string()))
            .expression_attribute_values(":due", time_attr(due))
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn reschedule(
        &self,
        request_id: &str,
        expected_version: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        // Only `due_at` changes, and no other write's condition reads it: the version stays.
        let update = self
            .client
            .update_item()
            .update_expression("SET due_at = :due, due_shard = :shard")
            .condition_expression("resumed = :false AND version = :expected")
            .expression_attribute_values(":due", time_attr(due))
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn reevaluate(
        &self,
        request_id: &str,
        expected_version: u64,
        evaluation: &Evaluation,
        through: u64,
        at: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression(
                "SET evaluation = :evaluation, reevaluated_through = :through, \
                 evaluated_at = :at, due_at = :due, due_shard = :shard, version = version + :one",
            )
            .condition_expression("#state = :pending AND version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":evaluation", json_attr(evaluation)?)
            .expression_attribute_values(":through", AttributeValue::N(through.to_string()))
            .expression_attribute_values(":at", time_attr(at))
            .expression_attribute_values(":due", time_attr(due))
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn claim_resume(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        // Times are stored as fixed-width RFC 3339 UTC text, so they compare as strings.
        let update = self
            .client
            .update_item()
            .update_expression("SET resume_claims = :next, resume_until = :until, due_at = :until, due_shard = :shard")
            .condition_expression(
                "resumed = :false AND #state <> :pending \
                 AND (attribute_not_exists(resume_claims) OR resume_claims = :seen) \
                 AND (attribute_not_exists(resume_until) OR resume_until <= :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":next", AttributeValue::N((claims_seen + 1).to_string()))
            .expression_attribute_values(":seen", AttributeValue::N(claims_seen.to_string()))
            .expression_attribute_values(":until", AttributeValue::S(format_rfc3339_ms(until)))
            .expression_attribute_values(":now", AttributeValue::S(format_rfc3339_ms(now)))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalState::Pending.as_str().into()),
            );
        self.conditional_update(request_id, update).await
    }

    async fn release_resume(
        &self,
        request_id: &str,
        claim: u64,
        now: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression("SET resume_until = :now, due_at = :now, due_shard = :shard")
            .condition_expression("resumed = :false AND resume_claims = :claim")
            .expression_attribute_values(":claim", AttributeValue::N(claim.to_string()))
            .expression_attribute_values(":now", AttributeValue::S(format_rfc3339_ms(now)))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn settle(
        &self,
        request_id: &str,
        token: &TaskToken,
        state: ApprovalState,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression(
                "SET resumed = :true, #state = :to, requester_told = :false, due_at = :due, due_shard = :shard, version = version + :one",
            )
            .condition_expression("resumed = :false AND task_token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", AttributeValue::S(token.expose().to_string()))
            .expression_attribute_values(":to", AttributeValue::S(state.as_str().into()))
            .expression_attribute_values(":due", time_attr(due))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn claim_tell(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression(
                "SET tell_claims = :next, tell_until = :until, due_at = :until, due_shard = :shard",
            )
            .condition_expression(
                "resumed = :true AND requester_told = :false \
                 AND (attribute_not_exists(tell_claims) OR tell_claims = :seen) \
                 AND (attribute_not_exists(tell_until) OR tell_until <= :now)",
            )
            .expression_attribute_values(":next", AttributeValue::N((claims_seen + 1).to_string()))
            .expression_attribute_values(":seen", AttributeValue::N(claims_seen.to_string()))
            .expression_attribute_values(":until", AttributeValue::S(format_rfc3339_ms(until)))
            .expression_attribute_values(":now", AttributeValue::S(format_rfc3339_ms(now)))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn told(&self, request_id: &str, claim: u64) -> Result<Conditional, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression("SET requester_told = :true REMOVE due_at, tell_until")
            .condition_expression(
                "resumed = :true AND requester_told = :false AND tell_claims = :claim",
            )
            .expression_attribute_values(":claim", AttributeValue::N(claim.to_string()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.conditional_update(request_id, update).await
    }

    async fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> Result<Conditional, StoreError> {
        let decided_by = match &closing.decided_by {
            Some(by) => AttributeValue::S(by.clone()),
            None => AttributeValue::Null(true),
        };
        let update = self
            .client
            .update_item()
            .update_expression(
                // A closed approval is due when its resume claim lapses: to resume it, or (one
                // closed resumed) to tell its requester.
                "SET #state = :to, evaluation = :evaluation, decided_by = :by, decided_at = :at, closed_by = :closer, resumed = :resumed, requester_told = :false, resume_claims = if_not_exists(resume_claims, :zero) + :one, resume_until = :until, due_at = :until, due_shard = :shard, version = version + :one",
            )
            .condition_expression("#state = :pending AND version = :expected")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", AttributeValue::S(closing.state.as_str().into()))
            .expression_attribute_values(":evaluation", json_attr(&closing.evaluation)?)
            .expression_attribute_values(":by", decided_by)
            .expression_attribute_values(":at", AttributeValue::S(format_rfc3339_ms(closing.decided_at)))
            .expression_attribute_values(":closer", AttributeValue::S(closing.closed_by.clone()))
            .expression_attribute_values(":resumed", AttributeValue::Bool(closing.resumed))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":until", AttributeValue::S(format_rfc3339_ms(closing.resume_until)))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":pending", AttributeValue::S(ApprovalState::Pending.as_str().into()));
        self.conditional_update(request_id, update).await
    }
}

fn json_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_item(approval: &PendingApproval) -> Result<Item, StoreError> {
    let votes = approval
        .votes
        .iter()
        .map(|v| Ok((normalize(&v.voter), json_attr(v)?)))
        .collect::<Result<HashMap<_, _>, StoreError>>()?;
    let messages = approval
        .messages
        .iter()
        .map(json_attr)
        .collect::<Result<Vec<_>, _>>()?;
    let mut item = HashMap::from([
        (
            "request_id".to_string(),
            AttributeValue::S(approval.request_id.clone()),
        ),
        (
            "execution_id".to_string(),
            AttributeValue::S(approval.execution_id.clone()),
        ),
        (
            "resumed".to_string(),
            AttributeValue::Bool(approval.resumed),
        ),
        (
            "resume_claims".to_string(),
            AttributeValue::N(approval.resume_claims.to_string()),
        ),
        (
            "requester_told".to_string(),
            AttributeValue::Bool(approval.requester_told),
        ),
        (
            "task_token".to_string(),
            AttributeValue::S(approval.task_token.expose().to_string()),
        ),
        ("request".to_string(), json_attr(&approval.request)?),
        ("evaluation".to_string(), json_attr(&approval.evaluation)?),
        ("messages".to_string(), AttributeValue::L(messages)),
        (
            "posting".to_string(),
            AttributeValue::L(
                approval
                    .posting
                    .iter()
                    .map(|key| AttributeValue::S(key.clone()))
                    .collect(),
            ),
        ),
        ("votes".to_string(), AttributeValue::M(votes)),
        (
            "state".to_string(),
            AttributeValue::S(approval.state.as_str().into()),
        ),
        (
            "version".to_string(),
            AttributeValue::N(approval.version.to_string()),
        ),
        (
            "reminded_through".to_string(),
            AttributeValue::N(approval.reminded_through.to_string()),
        ),
        (
            "reevaluated_through".to_string(),
            AttributeValue::N(approval.reevaluated_through.to_string()),
        ),
        (
            "created_at".to_string(),
            AttributeValue::S(format_rfc3339_ms(approval.created_at)),
        ),
        (
            "expires_at".to_string(),
            AttributeValue::N(approval.expires_at.timestamp().to_string()),
        ),
    ]);
    item.insert(
        DUE_SHARD.into(),
        AttributeValue::N(due_shard(&approval.request_id).to_string()),
    );
    if let Some(due) = approval.due_at.filter(|_| approval.owes_anything()) {
        item.insert(DUE_AT.into(), time_attr(due));
    }
    if let Some(at) = approval.evaluated_at {
        item.insert(
            "evaluated_at".into(),
            AttributeValue::S(format_rfc3339_ms(at)),
        );
    }
    if let Some(until) = approval.resume_until {
        item.insert(
            "resume_until".into(),
            AttributeValue::S(format_rfc3339_ms(until)),
        );
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<PendingApproval, StoreError> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.as_str()),
        _ => Err(StoreError::Corrupt(format!(
            "pending item has no text attribute {name}"
        ))),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n
            .parse::<i64>()
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}"))),
        _ => Err(StoreError::Corrupt(format!(
            "pending item has no number attribute {name}"
        ))),
    };
    let mut votes: Vec<Vote> = match item.get("votes") {
        Some(AttributeValue::M(map)) => map
            .values()
            .map(parse_json_attr)
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    votes.sort_by(|a, b| (&a.at, &a.voter).cmp(&(&b.at, &b.voter)));
    let messages = match item.get("messages") {
        Some(AttributeValue::L(list)) => {
            list.iter().map(parse_json_attr).collect::<Result<_, _>>()?
        }
        _ => Vec::new(),
    };
    let state = text("state")?;
    let created_at = text("created_at")?;
    let optional_text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let optional_time = |name: &str| {
        optional_text(name)
            .map(|at| {
                parse_rfc3339(&at).ok_or_else(|| StoreError::Corrupt(format!("{name} {at:?}")))
            })
            .transpose()
    };
    // A count written after the item was created: 0 until then.
    let count = |name: &str| match item.get(name) {
        Some(_) => {
            u64::try_from(number(name)?).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
        }
        None => Ok(0),
    };
    Ok(PendingApproval {
        request_id: text("request_id")?.to_string(),
        execution_id: optional_text("execution_id").unwrap_or_default(),
        closed_by: optional_text("closed_by"),
        resumed: matches!(item.get("resumed"), Some(AttributeValue::Bool(true))),
        resume_claims: count("resume_claims")?,
        reminded_through: count("reminded_through")?,
        reevaluated_through: count("reevaluated_through")?,
        evaluated_at: optional_time("evaluated_at")?,
        resume_until: optional_time("resume_until")?,
        // An item resumed before requesters were told has no such attribute: it owes nothing.
        requester_told: match item.get("requester_told") {
            Some(AttributeValue::Bool(told)) => *told,
            _ => matches!(item.get("resumed"), Some(AttributeValue::Bool(true))),
        },
        tell_claims: count("tell_claims")?,
        tell_until: optional_time("tell_until")?,
        due_at: optional_time(DUE_AT)?,
        task_token: TaskToken::new(text("task_token")?),
        request: parse_json(text("request")?)?,
        evaluation: parse_json(text("evaluation")?)?,
        messages,
        posting: match item.get("posting") {
            Some(AttributeValue::L(keys)) => keys
                .iter()
                .filter_map(|key| key.as_s().ok().cloned())
                .collect(),
            _ => Vec::new(),
        },
        votes,
        state: ApprovalState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?,
        version: u64::try_from(number("version")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: parse_rfc3339(created_at)
            .ok_or_else(|| StoreError::Corrupt(format!("created_at {created_at:?}")))?,
        expires_at: chrono::DateTime::from_timestamp(number("expires_at")?, 0)
            .ok_or_else(|| StoreError::Corrupt("expires_at out of range".into()))?,
        decided_by: optional_text("decided_by"),
        decided_at: optional_time("decided_at")?,
    })
}

fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_json_attr<T: DeserializeOwned>(attr: &AttributeValue) -> Result<T, StoreError> {
    match attr {
        AttributeValue::S(text) => parse_json(text),
        _ => Err(StoreError::Corrupt("expected a JSON text attribute".into())),
    }
}
