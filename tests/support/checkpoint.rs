//! Checkpoints signed by a KMS key on the local stack (moto's KMS signs `ECC_NIST_P256` with
//! `ECDSA_SHA_256` over a RAW message, as AWS does), for the audit tests.

use std::path::Path;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use base64::Engine;
use regate_core::checkpoint::{Checkpoint, Head, Statement};
use regate_core::Event;

/// A fresh signing key in the local stack's KMS.
pub struct KmsSigner {
    pub kms: aws_sdk_kms::Client,
    pub key_id: String,
}

impl KmsSigner {
    pub async fn create(config: &aws_config::SdkConfig) -> Self {
        let kms = aws_sdk_kms::Client::new(config);
        let key = kms
            .create_key()
            .key_spec(KeySpec::EccNistP256)
            .key_usage(KeyUsageType::SignVerify)
            .description("regate checkpoints (test)")
            .send()
            .await
            .unwrap();
        let key_id = key.key_metadata().unwrap().arn().unwrap().to_string();
        Self { kms, key_id }
    }

    /// The checkpoint after `previous` of `heads`, cut at `until` and signed.
    pub async fn checkpoint(
        &self,
        previous: Option<&Checkpoint>,
        until: &str,
        mut heads: Vec<Head>,
    ) -> Checkpoint {
        let statement = Statement::new(
            previous.map(|p| &p.statement),
            until.to_string(),
            &mut heads,
        )
        .unwrap();
        let signed = self
            .kms
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(statement.signed_bytes().unwrap()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .unwrap();
        Checkpoint {
            statement,
            heads,
            key_id: self.key_id.clone(),
            signature: base64::engine::general_purpose::STANDARD
                .encode(signed.signature().unwrap().as_ref()),
        }
    }
}

/// The head of each request's chain among `events` (its last event).
pub fn heads_of(events: &[Event]) -> Vec<Head> {
    let mut heads: std::collections::BTreeMap<&str, &Event> = Default::default();
    for event in events {
        let head = heads.entry(&event.request_id).or_insert(event);
        if event.seq > head.seq {
            *head = event;
        }
    }
    heads
        .values()
        .map(|e| Head {
            request_id: e.request_id.clone(),
            seq: e.seq,
            hash: e.hash.clone(),
        })
        .collect()
}

/// Writes checkpoints as the bucket holds them: `checkpoints/<number, 10 digits>.json`.
pub fn write_checkpoints(dir: &Path, checkpoints: &[Checkpoint]) {
    let folder = dir.join("checkpoints");
    std::fs::create_dir_all(&folder).unwrap();
    for checkpoint in checkpoints {
        let name = format!("{:010}.json", checkpoint.statement.number);
        std::fs::write(
            folder.join(name),
            serde_json::to_string_pretty(checkpoint).unwrap(),
        )
        .unwrap();
    }
}
