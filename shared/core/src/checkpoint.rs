//! Signed checkpoints of the decision log, after CloudTrail's digest files: every so often the
//! heads `(request_id, seq, hash)` of the chains that changed are gathered into an RFC 6962
//! Merkle tree, and a small statement (its root, its number, when it was cut, and the digest of
//! the previous statement) is signed with a key the log's writers can use but not export
//! (ECDSA P-256 with SHA-256, as AWS KMS signs with `ECC_NIST_P256`/`ECDSA_SHA_256`). A deleted
//! request, a truncated chain or a chain rewritten with fresh hashes then no longer matches a
//! signed head.
//!
//! Pure: building and checking checkpoints; signing and storing them is the caller's part.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::audit::{Finding, FindingKind};
use crate::canonical::{sha256_hex, to_canonical_json, CanonicalError};
use crate::event::Event;
use crate::ports::{CheckpointPorts, StoreError};

pub const CHECKPOINT_VERSION: u32 = 1;
/// Where checkpoints go in their bucket: `checkpoints/<number, 10 digits>.json`.
pub const CHECKPOINT_PREFIX: &str = "checkpoints/";

/// The head of one request's chain when a checkpoint was cut.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Head {
    pub request_id: String,
    pub seq: u64,
    pub hash: String,
}

/// What is signed: small (KMS signs at most 4 KB of RAW message), and it fixes the heads through
/// the Merkle root and every earlier checkpoint through `previous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub version: u32,
    /// 1, 2, 3, ... with no gaps: a missing number is a missing checkpoint.
    pub number: u64,
    /// Events at or before this time (RFC 3339) whose chains changed since the previous
    /// checkpoint are in this one.
    pub until: String,
    /// sha256 of the previous checkpoint's canonical statement; `None` for number 1.
    pub previous: Option<String>,
    pub heads: u64,
    /// The RFC 6962 Merkle tree hash of the heads (sorted by request id), hex.
    pub root: String,
}

/// A checkpoint as stored: its statement, the heads it covers, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub statement: Statement,
    pub heads: Vec<Head>,
    /// Which key signed it (a KMS key ARN), for people; verification uses the pinned key.
    pub key_id: String,
    /// ASN.1 DER ECDSA signature of [`Statement::signed_bytes`], base64.
    pub signature: String,
}

impl Statement {
    /// Cuts the statement for `heads` (any order), following `previous`.
    pub fn new(
        previous: Option<&Statement>,
        until: String,
        heads: &mut [Head],
    ) -> Result<Self, CanonicalError> {
        heads.sort();
        Ok(Self {
            version: CHECKPOINT_VERSION,
            number: previous.map_or(1, |p| p.number + 1),
            until,
            previous: previous.map(Statement::digest).transpose()?,
            heads: heads.len() as u64,
            root: hex::encode(merkle_root(heads)?),
        })
    }

    /// The bytes that are signed: the statement's RFC 8785 canonical JSON.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        to_canonical_json(self).map(String::into_bytes)
    }

    /// What the next checkpoint names as `previous`.
    pub fn digest(&self) -> Result<String, CanonicalError> {
        to_canonical_json(self).map(sha256_hex)
    }
}

/// The RFC 6962 (section 2.1) Merkle tree hash: a leaf is `SHA-256(0x00 || leaf)`, a node
/// `SHA-256(0x01 || left || right)`, split at the largest power of two below the size; the empty
/// tree is `SHA-256("")`. A leaf is a head's canonical JSON.
pub fn merkle_root(heads: &[Head]) -> Result<[u8; 32], CanonicalError> {
    let leaves = heads
        .iter()
        .map(|h| to_canonical_json(h).map(|text| leaf_hash(text.as_bytes())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tree_hash(&leaves))
}

fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

fn tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            // The largest power of two below n.
            let split = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut hasher = Sha256::new();
            hasher.update([1u8]);
            hasher.update(tree_hash(&leaves[..split]));
            hasher.update(tree_hash(&leaves[split..]));
            hasher.finalize().into()
        }
    }
}

/// The P-256 public key checkpoints are verified with, from its X.509 SubjectPublicKeyInfo DER
/// (what KMS `GetPublicKey` returns).
pub struct PublicKey {
    point: Vec<u8>,
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1), before the
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl PublicKey {
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(Self {
                point: point.to_vec(),
            }),
            _ => Err(
                "not a P-256 public key in SubjectPublicKeyInfo DER (KMS GetPublicKey's form)"
                    .into(),
            ),
        }
    }

    /// The key from PEM text (`-----BEGIN PUBLIC KEY-----`) or from its DER bytes.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, String> {
        Self::from_spki_der(&crate::policy::der_from_pem(bytes)?)
    }

    /// sha256 of the DER, to compare with what was pinned.
    pub fn fingerprint(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        sha256_hex(der)
    }

    fn verifies(&self, message: &[u8], signature_der: &[u8]) -> bool {
        use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature_der)
            .is_ok()
    }

    /// Whether `signature` (`r || s`, as a JWT carries it) signs `message`.
    pub(crate) fn verifies_fixed(&self, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// The newest event of each request among `events`, as heads.
pub fn latest_heads(events: &[Event]) -> Vec<Head> {
    let mut newest: HashMap<&str, &Event> = HashMap::new();
    for event in events {
        let head = newest.entry(&event.request_id).or_insert(event);
        if event.seq > head.seq {
            *head = event;
        }
    }
    let mut heads: Vec<Head> = newest
        .into_values()
        .map(|e| Head {
            request_id: e.request_id.clone(),
            seq: e.seq,
            hash: e.hash.clone(),
        })
        .collect();
    heads.sort();
    heads
}

/// How often checkpoints are cut, and how long an event is given to reach the table before the
/// checkpoint that covers its time is cut (an append is stamped before it is written).
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub every: chrono::Duration,
    pub settle: chrono::Duration,
}

/// How far back the first checkpoint looks: a log older than checkpoints (a deployment that
/// turns them on later) is anchored from then on.
pub const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(2);

/// How long a run may take to cut one checkpoint before another run may take over.
pub const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(120);

/// Cuts the next checkpoint when one is due: the heads of the chains that changed since the
/// last one, signed, kept, then recorded as the last. Empty checkpoints are cut too, so a gap
/// in time is visible. Returns the new statement, or `None` when none was due (or another run
/// is cutting it).
pub async fn cut<P: CheckpointPorts>(
    ports: &P,
    now: DateTime<Utc>,
    cadence: Cadence,
) -> Result<Option<Statement>, CheckpointError> {
    let last = ports.last().await?;
    let until = now - cadence.settle;
    let since = match &last {
        Some(last) => Some(crate::time::parse_rfc3339(&last.until).ok_or_else(|| {
            CheckpointError::Corrupt(format!("last checkpoint's until {:?}", last.until))
        })?),
        None => None,
    };
    if since.is_some_and(|since| since + cadence.every > until) {
        return Ok(None);
    }
    let number = last.as_ref().map_or(1, |l| l.number + 1);
    if !ports.claim(number, now, now + CLAIM_LEASE).await? {
        return Ok(None);
    }
    let mut heads = latest_heads(&ports.events_between(since, until).await?);
    let statement = Statement::new(
        last.as_ref(),
        crate::time::format_rfc3339_ms(until),
        &mut heads,
    )?;
    let signature = ports.sign(&statement.signed_bytes()?).await?;
    let checkpoint = Checkpoint {
        statement,
        heads,
        key_id: ports.key_id().to_string(),
        signature: base64::engine::general_purpose::STANDARD.encode(signature),
    };
    ports.keep(&checkpoint).await?;
    ports
        .advance(last.map(|l| l.number), &checkpoint.statement)
        .await?;
    Ok(Some(checkpoint.statement))
}

/// Why a checkpoint could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("corrupt checkpoint record: {0}")]
    Corrupt(String),
}

/// What the checkpoints vouch for: each request's signed heads, by seq, and the span of time
/// they cover.
#[derive(Debug)]
pub struct Anchors {
    pub heads: HashMap<String, BTreeMap<u64, String>>,
    pub checkpoints: usize,
    /// The last checkpoint that held: its number and its `until`. Every event at or before
    /// its `until` (less the settle time) must be under a signed head.
    pub last: Option<(u64, DateTime<Utc>)>,
    /// Where checkpoint 1 began to look ([`FIRST_LOOKBACK`] before its `until`): older events
    /// predate the checkpoints and nothing signed can vouch for them. `None` when checkpoint 1
    /// did not hold.
    pub covers_from: Option<DateTime<Utc>>,
    /// How often checkpoints were cut, and the settle time they left.
    pub cadence: Cadence,
    /// The auditor knows the log is older than its checkpoints (they were turned on later):
    /// requests whose every event predates checkpoint 1's look-back are counted, not findings.
    pub accept_older_log: bool,
}

/// How many checkpoint periods the last checkpoint may lag the export before the series is
/// stale: checkpoints stopped, or someone stopped them.
pub const STALE_AFTER_PERIODS: i32 = 3;

impl Anchors {
    fn new(cadence: Cadence) -> Self {
        Self {
            heads: HashMap::new(),
            checkpoints: 0,
            last: None,
            covers_from: None,
            cadence,
            accept_older_log: false,
        }
    }

    /// Events at or before this time must be under a signed head.
    pub fn must_cover_through(&self) -> Option<DateTime<Utc>> {
        self.last.map(|(_, until)| until - self.cadence.settle)
    }

    /// A `stale_checkpoints` finding when the last checkpoint (or, with none, the oldest event
    /// `oldest`) is more than [`STALE_AFTER_PERIODS`] periods older than the export `as_of`.
    pub fn staleness(
        &self,
        as_of: DateTime<Utc>,
        oldest: Option<DateTime<Utc>>,
    ) -> Option<Finding> {
        let allowed = self.cadence.every * STALE_AFTER_PERIODS;
        let (name, detail) = match self.last {
            Some((number, until)) if until + allowed < as_of => (
                format!("checkpoint {number}"),
                format!(
                    "the last checkpoint covers until {}, more than {STALE_AFTER_PERIODS} \
                     periods of {} min before the export ({}): checkpoints stopped",
                    crate::time::format_rfc3339_ms(until),
                    self.cadence.every.num_minutes(),
                    crate::time::format_rfc3339_ms(as_of)
                ),
            ),
            None => {
                let oldest = oldest.filter(|oldest| *oldest + allowed < as_of)?;
                (
                    "checkpoints".to_string(),
                    format!(
                        "no checkpoint holds, yet the log has events since {}",
                        crate::time::format_rfc3339_ms(oldest)
                    ),
                )
            }
            Some(_) => return None,
        };
        Some(Finding::new(
            name,
            None,
            FindingKind::StaleCheckpoints,
            detail,
        ))
    }
}

/// Checks every checkpoint (its signature, its root, its place in the chain of checkpoints) and
/// gathers the heads of those that hold. Findings name the checkpoint as `checkpoint <n>`.
/// `cadence` is how the deployment cut them (`CHECKPOINT_MINUTES`, `CHECKPOINT_SETTLE_SECONDS`).
pub fn check_checkpoints(
    mut checkpoints: Vec<Checkpoint>,
    key: &PublicKey,
    cadence: Cadence,
) -> (Anchors, Vec<Finding>) {
    checkpoints.sort_by_key(|c| c.statement.number);
    let mut anchors = Anchors::new(cadence);
    let mut findings = Vec::new();
    let mut previous: Option<&Statement> = None;
    for checkpoint in &checkpoints {
        let statement = &checkpoint.statement;
        let name = format!("checkpoint {}", statement.number);
        let mut fail = |kind, detail: String| {
            findings.push(Finding::new(name.clone(), None, kind, detail));
        };
        let signed = statement.signed_bytes().unwrap_or_default();
        let signature = base64_decode(&checkpoint.signature);
        if !signature.is_some_and(|s| key.verifies(&signed, &s)) {
            fail(
                FindingKind::BadSignature,
                format!(
                    "its signature does not verify with key {}",
                    key.fingerprint()
                ),
            );
            continue;
        }
        let expected_number = previous.map_or(1, |p| p.number + 1);
        if statement.number != expected_number {
            fail(
                FindingKind::CheckpointMissing,
                format!(
                    "checkpoints {expected_number} to {} are missing",
                    statement.number - 1
                ),
            );
        } else if statement.previous != previous.and_then(|p| p.digest().ok()) {
            fail(
                FindingKind::CheckpointChain,
                "it does not name the previous checkpoint's digest".into(),
            );
        }
        let mut heads = checkpoint.heads.clone();
        heads.sort();
        let root = merkle_root(&heads).map(hex::encode).unwrap_or_default();
        if root != statement.root || heads.len() as u64 != statement.heads {
            fail(
                FindingKind::CheckpointAltered,
                "its heads do not hash to its signed root".into(),
            );
            previous = Some(statement);
            continue;
        }
        for head in heads {
            anchors
                .heads
                .entry(head.request_id)
                .or_default()
                .insert(head.seq, head.hash);
        }
        anchors.checkpoints += 1;
        match crate::time::parse_rfc3339(&statement.until) {
            Some(until) => {
                if statement.number == 1 {
                    anchors.covers_from = Some(until - FIRST_LOOKBACK);
                }
                anchors.last = Some((statement.number, until));
            }
            None => fail(
                FindingKind::CheckpointAltered,
                format!("its until {:?} is not a time", statement.until),
            ),
        }
        previous = Some(statement);
    }
    (anchors, findings)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: &str, seq: u64) -> Head {
        Head {
            request_id: id.into(),
            seq,
            hash: sha256_hex(format!("{id}{seq}")),
        }
    }

    /// The Certificate Transparency project's RFC 6962 vectors (transparency-dev/merkle,
    /// `testonly/constants.go`): the roots of the trees of the first 0 to 8 of these leaves.
    #[test]
    fn the_tree_hash_gives_the_published_rfc_6962_roots() {
        let leaves = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashed: Vec<[u8; 32]> = leaves
            .iter()
            .map(|leaf| leaf_hash(&hex::decode(leaf).unwrap()))
            .collect();
        for (size, root) in roots.iter().enumerate() {
            assert_eq!(
                hex::encode(tree_hash(&hashed[..size])),
                *root,
                "size {size}"
            );
        }
    }

    #[test]
    fn the_merkle_root_follows_rfc_6962() {
        // The empty tree hashes the empty string; one leaf is its leaf hash.
        assert_eq!(
            hex::encode(merkle_root(&[]).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let a = head("a", 1);
        let leaf = leaf_hash(to_canonical_json(&a).unwrap().as_bytes());
        assert_eq!(merkle_root(std::slice::from_ref(&a)).unwrap(), leaf);
        // Three leaves split 2 + 1.
        let heads = [head("a", 1), head("b", 2), head("c", 3)];
        let leaves: Vec<[u8; 32]> = heads
            .iter()
            .map(|h| leaf_hash(to_canonical_json(h).unwrap().as_bytes()))
            .collect();
        let node = |l: [u8; 32], r: [u8; 32]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l);
            h.update(r);
            h.finalize().into()
        };
        assert_eq!(
            merkle_root(&heads).unwrap(),
            node(node(leaves[0], leaves[1]), leaves[2])
        );
        // Any change to a head changes the root.
        let mut changed = heads.clone();
        changed[1].seq = 3;
        assert_ne!(merkle_root(&changed).unwrap(), merkle_root(&heads).unwrap());
    }

    #[test]
    fn a_statement_follows_its_previous_one() {
        let mut heads = vec![head("b", 2), head("a", 1)];
        let first = Statement::new(None, "2026-06-01T12:05:00.000Z".into(), &mut heads).unwrap();
        assert_eq!(heads[0].request_id, "a");
        assert_eq!(
            (first.number, first.heads, first.previous.clone()),
            (1, 2, None)
        );
        let second =
            Statement::new(Some(&first), "2026-06-01T12:10:00.000Z".into(), &mut []).unwrap();
        assert_eq!(second.number, 2);
        assert_eq!(second.previous, Some(first.digest().unwrap()));
    }

    #[test]
    fn a_key_that_is_not_p256_spki_is_refused() {
        assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
    }
}
