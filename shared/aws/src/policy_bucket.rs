//! Policy bundles published to S3, loaded by the running functions without a redeploy.
//!
//! The bucket holds each bundle as `bundles/<revision>.tar.gz` (OPA's format, see
//! `regate_core::policy::OpaBundle`) and a pointer, `current.json`, naming the one in use.
//! A function reads the pointer at cold start, then at most every refresh interval with a
//! conditional GET (`If-None-Match`); a new revision is downloaded (or read from the `/tmp`
//! cache), checked (digest, signature, revision) and compiled, then swapped in whole. Any
//! failure keeps the last good revision, logs an ERROR line and counts `PolicyLoadFailed`; a
//! function that has never loaded one evaluates nothing (`PolicyUnavailable`), a bucket with no
//! pointer yet (a new stack, before its first push) included: a bucket never falls back to the
//! bundle built into the function.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regate_core::checkpoint::PublicKey;
use regate_core::metrics::{Measurement, Metrics};
use regate_core::policy::OpaBundle;
use regate_core::{LivePolicy, PolicyBundle, PolicyEngine};
use serde::{Deserialize, Serialize};

use crate::config::{AwsSettings, ConfigError, Vars};
use crate::decision_log::KeptPolicies;
use crate::signed_http::{S3Get, SignedHttp};
use crate::EmfMetrics;

/// The pointer's key in the policy bucket.
pub const POINTER_KEY: &str = "current.json";
/// Where bundles go in the policy bucket, by revision.
pub const BUNDLES_PREFIX: &str = "bundles/";
const MAX_POINTER_BYTES: u64 = 64 * 1024;
/// How often a function with no policy loaded tries again, at most.
const RETRY_WHILE_UNLOADED: Duration = Duration::from_secs(5);
/// How long a refresh may hold up an invocation when a policy is loaded (a click is answered
/// within Slack's 3 s), and at cold start, with none: past it, the load counts as failed.
const REFRESH_BUDGET: Duration = Duration::from_secs(2);
const FIRST_LOAD_BUDGET: Duration = Duration::from_secs(5);
/// A bundle file read from the bucket: no larger than it may be unpacked.
const MAX_BUNDLE_BYTES: u64 = regate_core::policy::MAX_UNPACKED_BYTES;

/// `current.json`: the bundle in use, and who made it so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub revision: String,
    /// sha256 (hex) of the bundle file's bytes.
    pub sha256: String,
    /// The bundle's key in the bucket.
    pub key: String,
    pub pushed_at: String,
    pub pushed_by: String,
}

/// The bundle key of `revision`: `bundles/<hex digest>.tar.gz` (the `sha256:` prefix dropped).
pub fn bundle_key(revision: &str) -> String {
    let digest = revision.strip_prefix("sha256:").unwrap_or(revision);
    format!("{BUNDLES_PREFIX}{digest}.tar.gz")
}

/// Where a function's policy comes from.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The policy bucket; without one, the bundle embedded in the binary is used.
    pub bucket: Option<PolicyBucket>,
    pub refresh: Duration,
    pub cache_dir: PathBuf,
}

/// A policy bucket, and the key its bundles must be signed with: without a key, anyone who
/// can write the bucket would set the policy.
#[derive(Debug, Clone)]
pub struct PolicyBucket {
    pub name: String,
    pub verification: VerificationKey,
}

/// The key bundles must be signed with.
#[derive(Debug, Clone)]
pub enum VerificationKey {
    /// A P-256 public key, PEM text.
    Pem(String),
    /// A KMS key (id, ARN or alias) whose public key is fetched once.
    Kms(String),
}

impl PolicySettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let verification = match (
            vars.optional("REGATE_POLICY_PUBLIC_KEY"),
            vars.optional("REGATE_POLICY_KEY_ID"),
        ) {
            (Some(pem), _) => {
                PublicKey::from_pem_or_der(pem.as_bytes()).map_err(|problem| {
                    ConfigError::Invalid {
                        name: "REGATE_POLICY_PUBLIC_KEY".into(),
                        problem,
                    }
                })?;
                Some(VerificationKey::Pem(pem))
            }
            (None, Some(key_id)) => Some(VerificationKey::Kms(key_id)),
            (None, None) => None,
        };
        let refresh = vars.whole_number("REGATE_POLICY_REFRESH_SECONDS", 60)?;
        let bucket = match (vars.optional("REGATE_POLICY_BUCKET"), verification) {
            (None, _) => None,
            (Some(name), Some(verification)) => Some(PolicyBucket { name, verification }),
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    name: "REGATE_POLICY_BUCKET".into(),
                    problem: "a policy bucket needs REGATE_POLICY_KEY_ID or \
                              REGATE_POLICY_PUBLIC_KEY: without a key, anyone who can write \
                              the bucket sets the policy"
                        .into(),
                })
            }
        };
        Ok(Self {
            bucket,
            refresh: Duration::from_secs(refresh),
            cache_dir: PathBuf::from(
                vars.or_default("REGATE_POLICY_CACHE_DIR", "/tmp/regate-policy"),
            ),
        })
    }
}

/// The bundle built into a function.
pub type EmbeddedBundle = fn() -> Result<PolicyBundle, regate_core::PolicyError>;

/// The policy a function evaluates with, and what keeps it current.
pub struct FunctionPolicy {
    pub live: Arc<LivePolicy>,
    pub kept: Arc<KeptPolicies>,
    loader: Option<Loader>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyInitError {
    #[error(transparent)]
    Policy(#[from] regate_core::PolicyError),
    #[error("cannot keep the policy bundle in the decision log: {0}")]
    TooLarge(regate_core::ports::StoreError),
}

impl FunctionPolicy {
    /// At cold start: the embedded bundle when no bucket is configured (an error in it fails
    /// the cold start), else the bucket's current bundle. A bucket whose bundle cannot be
    /// loaded (nothing pushed yet included) leaves the function without a policy (every
    /// evaluation fails closed) until a later refresh loads one.
    pub async fn load(
        settings: &PolicySettings,
        aws: &AwsSettings,
        http: &reqwest::Client,
        embedded: EmbeddedBundle,
        function: &'static str,
    ) -> Result<Self, PolicyInitError> {
        let kept = Arc::new(KeptPolicies::default());
        let Some(bucket) = &settings.bucket else {
            let bundle = embedded()?;
            let engine = PolicyEngine::compile(&bundle)?;
            kept.add(&bundle).map_err(PolicyInitError::TooLarge)?;
            tracing::info!(policy_revision = %bundle.revision, "embedded policy bundle loaded");
            return Ok(Self {
                live: Arc::new(LivePolicy::new(engine)),
                kept,
                loader: None,
            });
        };
        let live = Arc::new(LivePolicy::unavailable(
            "the policy bucket was not read yet",
        ));
        let loader = Loader {
            aws: SignedHttp::new(aws, http.clone()),
            bucket: bucket.name.clone(),
            verification: bucket.verification.clone(),
            refresh: settings.refresh,
            cache_dir: settings.cache_dir.clone(),
            metrics: EmfMetrics::new(function),
            state: tokio::sync::Mutex::new(LoaderState::default()),
        };
        let policy = Self {
            live,
            kept,
            loader: Some(loader),
        };
        let _ = policy.refresh().await;
        Ok(policy)
    }

    /// Before an invocation: checks the pointer if the refresh interval has passed since the
    /// last check (every 5 s at most while no policy is loaded: sooner back, but never a
    /// call to S3 for every request an anonymous caller sends), and swaps to a new revision that passes
    /// every check. A failure keeps what is loaded (it is logged and counted here; callers
    /// need not look at the answer).
    pub async fn refresh_if_due(&self) -> Refresh {
        let Some(loader) = &self.loader else {
            return Refresh::NotDue;
        };
        let due = {
            let state = loader.state.lock().await;
            match (&state.revision, state.checked_at) {
                (_, None) => true,
                (Some(_), Some(at)) => at.elapsed() >= loader.refresh,
                (None, Some(at)) => at.elapsed() >= loader.refresh.min(RETRY_WHILE_UNLOADED),
            }
        };
        if due {
            self.refresh().await
        } else {
            Refresh::NotDue
        }
    }

    async fn refresh(&self) -> Refresh {
        let Some(loader) = &self.loader else {
            return Refresh::NotDue;
        };
        let mut state = loader.state.lock().await;
        state.checked_at = Some(Instant::now());
        let before = state.revision.clone();
        let budget = if before.is_some() {
            REFRESH_BUDGET
        } else {
            FIRST_LOAD_BUDGET
        };
        // A timeout drops the check at an await: it changes the state only after its last one.
        let checked = tokio::time::timeout(budget, loader.check(&mut state, self))
            .await
            .unwrap_or_else(|_| {
                Err(failure("timeout")(format!(
                    "S3 or KMS did not answer within {} s",
                    budget.as_secs()
                )))
            });
        match checked {
            Ok(()) if state.revision != before => {
                Refresh::Loaded(state.revision.clone().unwrap_or_default())
            }
            Ok(()) => Refresh::Unchanged,
            Err(failure) => {
                let keeping = state.revision.as_deref().unwrap_or("none: failing closed");
                tracing::error!(
                    bucket = %loader.bucket,
                    stage = failure.stage,
                    error = %failure.message,
                    keeping,
                    "the policy bundle was not loaded"
                );
                loader
                    .metrics
                    .record(Measurement::policy_load_failed(failure.stage));
                self.live.still_unavailable(format!(
                    "loading s3://{}/{POINTER_KEY} failed ({}): {}",
                    loader.bucket, failure.stage, failure.message
                ));
                Refresh::Failed {
                    stage: failure.stage,
                    message: failure.message,
                }
            }
        }
    }
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Not checked: the interval has not passed, or no bucket is configured.
    NotDue,
    /// The pointer names the revision already loaded.
    Unchanged,
    /// This revision was loaded and is now the one in use.
    Loaded(String),
    /// Nothing changed: the stage that failed, and why.
    Failed {
        stage: &'static str,
        message: String,
    },
}

struct Loader {
    aws: SignedHttp,
    bucket: String,
    verification: VerificationKey,
    refresh: Duration,
    cache_dir: PathBuf,
    metrics: EmfMetrics,
    state: tokio::sync::Mutex<LoaderState>,
}

#[derive(Default)]
struct LoaderState {
    /// The pointer's ETag when it was last read whole.
    etag: Option<String>,
    checked_at: Option<Instant>,
    /// The revision in use, if any.
    revision: Option<String>,
    key: Option<Arc<PublicKey>>,
}

/// What reading the pointer found.
enum PointerRead {
    /// The pointer and its ETag.
    Current(Pointer, String),
    /// It has not changed since the ETag last read.
    NotModified,
}

/// Why a load failed: the stage (a metric dimension) and what happened.
struct Failure {
    stage: &'static str,
    message: String,
}

fn failure(stage: &'static str) -> impl FnOnce(String) -> Failure {
    move |message| Failure { stage, message }
}

impl Loader {
    async fn check(&self, state: &mut LoaderState, policy: &FunctionPolicy) -> Result<(), Failure> {
        let (pointer, etag) = match self.pointer(state.etag.as_deref()).await? {
            PointerRead::NotModified => return Ok(()),
            PointerRead::Current(pointer, etag) => (pointer, etag),
        };
        if state.revision.as_deref() == Some(pointer.revision.as_str()) {
            state.etag = Some(etag);
            return Ok(());
        }
        let key = match &state.key {
            Some(key) => Arc::clone(key),
            None => {
                let key = Arc::new(self.public_key().await?);
                state.key = Some(Arc::clone(&key));
                key
            }
        };
        let bytes = self.bundle_bytes(&pointer).await?;
        let read = OpaBundle::read(&bytes).map_err(|e| failure("bundle")(e.to_string()))?;
        read.verify_signature(&key)
            .map_err(|e| failure("signature")(e.to_string()))?;
        if read.bundle.revision != pointer.revision {
            return Err(failure("revision")(format!(
                "the pointer names {} but the bundle's files hash to {}",
                pointer.revision, read.bundle.revision
            )));
        }
        let engine = read
            .engine()
            .map_err(|e| failure("compile")(e.to_string()))?;
        let bundle = read.bundle;
        policy
            .kept
            .add(&bundle)
            .map_err(|e| failure("bundle")(e.to_string()))?;
        policy.live.replace(Arc::new(engine));
        tracing::info!(
            policy_revision = %pointer.revision,
            previous = state.revision.as_deref().unwrap_or("none"),
            pushed_by = %pointer.pushed_by,
            pushed_at = %pointer.pushed_at,
            "policy bundle loaded"
        );
        state.revision = Some(pointer.revision);
        state.etag = Some(etag);
        Ok(())
    }

    async fn pointer(&self, etag: Option<&str>) -> Result<PointerRead, Failure> {
        let object = match self
            .aws
            .s3_get(&self.bucket, POINTER_KEY, etag, MAX_POINTER_BYTES)
            .await
            .map_err(failure("pointer"))?
        {
            S3Get::Object(object) => object,
            S3Get::NotModified => return Ok(PointerRead::NotModified),
            // The bucket never fails over to the built-in bundle: whoever can delete the
            // pointer must not be able to choose an unsigned policy.
            S3Get::NoSuchKey => {
                return Err(failure("pointer")(format!(
                    "there is no {POINTER_KEY}: nothing was pushed yet, or it was deleted; \
                     `regate policy push` or `regate policy rollback` writes it"
                )))
            }
        };
        let pointer = serde_json::from_slice(&object.body).map_err(|e| {
            failure("pointer")(format!("{POINTER_KEY} is not a valid pointer: {e}"))
        })?;
        Ok(PointerRead::Current(
            pointer,
            object.etag.unwrap_or_default(),
        ))
    }

    /// The bundle's bytes, from the `/tmp` cache when a copy with the pointer's digest is
    /// there, else from the bucket (and cached).
    async fn bundle_bytes(&self, pointer: &Pointer) -> Result<Vec<u8>, Failure> {
        let digest = pointer.sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(failure("pointer")(format!(
                "{POINTER_KEY}'s sha256 is not a hex SHA-256: {:?}",
                pointer.sha256
            )));
        }
        let cached = self.cache_dir.join(format!("{digest}.tar.gz"));
        if let Ok(bytes) = std::fs::read(&cached) {
            if regate_core::canonical::sha256_hex(&bytes) == digest {
                return Ok(bytes);
            }
        }
        let bytes = match self
            .aws
            .s3_get(&self.bucket, &pointer.key, None, MAX_BUNDLE_BYTES)
            .await
            .map_err(failure("bundle"))?
        {
            S3Get::Object(object) => object.body,
            S3Get::NotModified | S3Get::NoSuchKey => {
                return Err(failure("bundle")(format!(
                    "s3://{}/{} does not exist",
                    self.bucket, pointer.key
                )))
            }
        };
        let actual = regate_core::canonical::sha256_hex(&bytes);
        if actual != digest {
            return Err(failure("digest")(format!(
                "s3://{}/{} has sha256 {actual}; the pointer says {digest}",
                self.bucket, pointer.key
            )));
        }
        // The cache only saves a download: failing to write it is not a failure.
        let written = std::fs::create_dir_all(&self.cache_dir).and_then(|()| {
            let partial = self.cache_dir.join(format!("{digest}.partial"));
            std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, &cached))
        });
        if let Err(error) = written {
            tracing::warn!(error = %error, "cannot cache the policy bundle in /tmp");
        }
        Ok(bytes)
    }

    async fn public_key(&self) -> Result<PublicKey, Failure> {
        let der = match &self.verification {
            VerificationKey::Pem(pem) => pem.as_bytes().to_vec(),
            VerificationKey::Kms(key_id) => self
                .aws
                .kms_public_key(key_id)
                .await
                .map_err(failure("key"))?,
        };
        PublicKey::from_pem_or_der(&der).map_err(failure("key"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bucket_without_a_key_is_refused_at_cold_start() {
        let bucket_only = |name: &str| (name == "REGATE_POLICY_BUCKET").then(|| "b".to_string());
        let refused = PolicySettings::from_vars(&Vars::new(&bucket_only)).unwrap_err();
        assert!(
            refused.to_string().contains("REGATE_POLICY_KEY_ID"),
            "{refused}"
        );
        let with_key = |name: &str| match name {
            "REGATE_POLICY_BUCKET" => Some("b".to_string()),
            "REGATE_POLICY_KEY_ID" => Some("alias/regate-policy".to_string()),
            _ => None,
        };
        let settings = PolicySettings::from_vars(&Vars::new(&with_key)).unwrap();
        assert!(matches!(
            settings.bucket,
            Some(PolicyBucket {
                verification: VerificationKey::Kms(_),
                ..
            })
        ));
        let neither = |_: &str| None;
        assert!(PolicySettings::from_vars(&Vars::new(&neither))
            .unwrap()
            .bucket
            .is_none());
    }
}
