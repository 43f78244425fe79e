//! Signed checkpoints on AWS: events from the decision log's `by_day` index, signatures from a
//! KMS key (`ECC_NIST_P256`, `ECDSA_SHA_256`, `RAW`), checkpoints kept in an S3 bucket with
//! Object Lock as `checkpoints/<number, 10 digits>.json`, and the record of the last one (and
//! the claims on the next) in the decision-log table under `pk = CHECKPOINT`.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use chrono::{DateTime, Utc};
use regate_core::checkpoint::{Checkpoint, Statement, CHECKPOINT_PREFIX, FIRST_LOOKBACK};
use regate_core::event::keys::CHECKPOINT_PARTITION;
use regate_core::event::Event;
use regate_core::ports::{CheckpointPorts, StoreError};
use regate_core::time::format_rfc3339_ms;

use crate::decision_log::{DynamoDecisionLog, LogQuery};
use crate::error::{classify, store_error};

/// The sort key of the record of the last checkpoint.
const LAST: &str = "LAST";

pub struct AwsCheckpoints {
    log: DynamoDecisionLog,
    dynamodb: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    key_id: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl AwsCheckpoints {
    pub fn new(
        sdk: &aws_types::SdkConfig,
        log: DynamoDecisionLog,
        key_id: String,
        bucket: String,
    ) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            s3: crate::s3_client(sdk),
            log,
            key_id,
            bucket,
        }
    }

    fn table(&self) -> &str {
        self.log.table()
    }

    /// Puts `fields` under `pk = CHECKPOINT`, `sk = sort_key` if `condition` holds (with
    /// `values`); false when it does not.
    async fn put_if(
        &self,
        sort_key: String,
        fields: Vec<(&str, AttributeValue)>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(self.table())
            .item("pk", AttributeValue::S(CHECKPOINT_PARTITION.into()))
            .item("sk", AttributeValue::S(sort_key))
            .condition_expression(condition);
        for (name, value) in fields {
            put = put.item(name, value);
        }
        for (name, value) in values {
            put = put.expression_attribute_values(name, value);
        }
        // `#until`, `#number`: attribute names DynamoDB reserves as words.
        for word in condition.split(|c: char| !(c == '#' || c.is_alphanumeric())) {
            if let Some(name) = word.strip_prefix('#') {
                put = put.expression_attribute_names(word, name);
            }
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(store_error(classify(&error))),
        }
    }
}

impl CheckpointPorts for AwsCheckpoints {
    async fn last(&self) -> Result<Option<Statement>, StoreError> {
        let answer = self
            .dynamodb
            .get_item()
            .table_name(self.table())
            .key("pk", AttributeValue::S(CHECKPOINT_PARTITION.into()))
            .key("sk", AttributeValue::S(LAST.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(classify(&e)))?;
        match answer.item().and_then(|item| item.get("statement")) {
            Some(AttributeValue::S(text)) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("the last checkpoint's record: {e}"))),
            Some(_) => Err(StoreError::Corrupt(
                "the last checkpoint's record is not text".into(),
            )),
            None => Ok(None),
        }
    }

    async fn claim(
        &self,
        number: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.put_if(
            format!("CLAIM#{number:010}"),
            vec![("until", AttributeValue::S(format_rfc3339_ms(until)))],
            "attribute_not_exists(pk) OR #until < :now",
            vec![(":now", AttributeValue::S(format_rfc3339_ms(now)))],
        )
        .await
    }

    async fn events_between(
        &self,
        since: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let query = LogQuery {
            since: Some(since.unwrap_or(until - FIRST_LOOKBACK)),
            until: Some(until),
            ..LogQuery::default()
        };
        let mut events = self.log.query(&query).await?;
        if let Some(since) = since {
            let since = format_rfc3339_ms(since);
            events.retain(|e| e.at > since);
        }
        Ok(events)
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        let signed = self
            .kms
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| store_error(classify(&e)))?;
        signed
            .signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or_else(|| StoreError::Corrupt("KMS answered without a signature".into()))
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn keep(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(checkpoint)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(format!(
                "{CHECKPOINT_PREFIX}{:010}.json",
                checkpoint.statement.number
            ))
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| store_error(classify(&e)))?;
        Ok(())
    }

    async fn advance(
        &self,
        previous: Option<u64>,
        statement: &Statement,
    ) -> Result<(), StoreError> {
        let text =
            serde_json::to_string(statement).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let fields = vec![
            ("number", AttributeValue::N(statement.number.to_string())),
            ("statement", AttributeValue::S(text)),
        ];
        // Another run that recorded this number (or a later one) first leaves nothing to do.
        let _ = match previous {
            None => {
                self.put_if(LAST.into(), fields, "attribute_not_exists(pk)", vec![])
                    .await?
            }
            Some(previous) => {
                self.put_if(
                    LAST.into(),
                    fields,
                    "#number = :previous",
                    vec![(":previous", AttributeValue::N(previous.to_string()))],
                )
                .await?
            }
        };
        Ok(())
    }
}
