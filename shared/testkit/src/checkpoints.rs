//! Checkpoint ports in memory: a signing key, the kept checkpoints and the last statement.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use regate_core::checkpoint::{Checkpoint, Statement};
use regate_core::event::Event;
use regate_core::ports::{CheckpointPorts, StoreError};

use crate::MemoryLog;

/// Checkpoints over a [`MemoryLog`], signed with a P-256 key generated for the test (as KMS
/// signs with `ECC_NIST_P256`), kept in memory.
pub struct MemoryCheckpoints {
    log: MemoryLog,
    key: aws_lc_rs::signature::EcdsaKeyPair,
    pub kept: Mutex<Vec<Checkpoint>>,
    last: Mutex<Option<Statement>>,
    claims: Mutex<BTreeMap<u64, DateTime<Utc>>>,
    /// When set, signing fails as KMS does when it is unreachable.
    pub signing_fails: std::sync::atomic::AtomicBool,
}

impl MemoryCheckpoints {
    pub fn new(log: MemoryLog) -> Self {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        Self {
            log,
            key,
            kept: Mutex::default(),
            last: Mutex::default(),
            claims: Mutex::default(),
            signing_fails: Default::default(),
        }
    }

    /// The signing key's public half, as KMS `GetPublicKey` gives it (SubjectPublicKeyInfo DER).
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        self.key.public_key().as_der().unwrap().as_ref().to_vec()
    }
}

impl CheckpointPorts for MemoryCheckpoints {
    async fn last(&self) -> Result<Option<Statement>, StoreError> {
        Ok(self.last.lock().unwrap().clone())
    }

    async fn claim(
        &self,
        number: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(&number).is_some_and(|held| *held >= now) {
            return Ok(false);
        }
        claims.insert(number, until);
        Ok(true)
    }

    async fn events_between(
        &self,
        since: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let all = self.log.events.lock().unwrap();
        Ok(all
            .values()
            .flatten()
            .filter(|e| {
                let at = e.at_time().unwrap();
                since.is_none_or(|since| at > since) && at <= until
            })
            .cloned()
            .collect())
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        if self.signing_fails.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("KMS is not answering".into()));
        }
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ok(self.key.sign(&rng, message).unwrap().as_ref().to_vec())
    }

    fn key_id(&self) -> &str {
        "test-key"
    }

    async fn keep(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.kept.lock().unwrap().push(checkpoint.clone());
        Ok(())
    }

    async fn advance(
        &self,
        previous: Option<u64>,
        statement: &Statement,
    ) -> Result<(), StoreError> {
        let mut last = self.last.lock().unwrap();
        if last.as_ref().map(|l| l.number) == previous {
            *last = Some(statement.clone());
        }
        Ok(())
    }
}
