//! Policy bundles published to S3, loaded by the running functions without a redeploy.
//!
//! The bucket holds each bundle as `bundles/<revision>.tar.gz` (OPA's format, see
//! `regate_core::policy::OpaBundle`) and a pointer, `current.json`, naming the one in use.
//! A function reads the pointer at cold start, then at most every refresh interval with a
//! conditional GET (`If-None-Match`); a new revision is downloaded (or read from the `/tmp`
//! cache), checked (digest, signature, revision) and compiled, then swapped in whole. Any
//! failure keeps the last good revision, logs an ERROR line and counts `PolicyLoadFailed`; a
//! function that has never loaded one evaluates nothing (`PolicyUnavailable`).

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
use crate::signed_http::SignedHttp;
use crate::EmfMetrics;

/// The pointer's key in the policy bucket.
pub const POINTER_KEY: &str = "current.json";
/// Where bundles go in the policy bucket, by revision.
pub const BUNDLES_PREFIX: &str = "bundles/";
const MAX_POINTER_BYTES: u64 = 64 * 1024;
/// How often a function with no policy loaded tries again, at most.
const RETRY_WHILE_UNLOADED: Duration = Duration::from_secs(5);
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
    pub bucket: Option<String>,
    pub refresh: Duration,
    pub verification: Option<VerificationKey>,
    pub cache_dir: PathBuf,
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
        Ok(Self {
            bucket: vars.optional("REGATE_POLICY_BUCKET"),
            refresh: Duration::from_secs(refresh),
            verification,
            cache_dir: PathBuf::from(
                vars.or_default("REGATE_POLICY_CACHE_DIR", "/tmp/regate-policy"),
            ),
        })
    }
}

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
    /// loaded leaves the function without a policy (every evaluation fails closed) until a
    /// later refresh loads one.
    pub async fn load(
        settings: &PolicySettings,
        aws: &AwsSettings,
        http: &reqwest::Client,
        embedded: impl FnOnce() -> Result<PolicyBundle, regate_core::PolicyError>,
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
            bucket: bucket.clone(),
            verification: settings.verification.clone(),
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
        let checked = loader.check(&mut state, self).await;
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
    verification: Option<VerificationKey>,
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
    /// The revision loaded, if any.
    revision: Option<String>,
    key: Option<Arc<PublicKey>>,
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
        let Some((pointer, etag)) = self.pointer(state.etag.as_deref()).await? else {
            return Ok(());
        };
        if state.revision.as_deref() == Some(pointer.revision.as_str()) {
            state.etag = Some(etag);
            return Ok(());
        }
        let key = match (&self.verification, &state.key) {
            (None, _) => None,
            (Some(_), Some(key)) => Some(Arc::clone(key)),
            (Some(source), None) => {
                let key = Arc::new(self.public_key(source).await?);
                state.key = Some(Arc::clone(&key));
                Some(key)
            }
        };
        let bytes = self.bundle_bytes(&pointer).await?;
        let read = OpaBundle::read(&bytes).map_err(|e| failure("bundle")(e.to_string()))?;
        if let Some(key) = &key {
            read.verify_signature(key)
                .map_err(|e| failure("signature")(e.to_string()))?;
        }
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

    /// The pointer and its ETag, or `None` when it has not changed since `etag`.
    async fn pointer(&self, etag: Option<&str>) -> Result<Option<(Pointer, String)>, Failure> {
        let object = self
            .aws
            .s3_get(&self.bucket, POINTER_KEY, etag, MAX_POINTER_BYTES)
            .await
            .map_err(failure("pointer"))?;
        let Some(object) = object else {
            return Ok(None);
        };
        let pointer = serde_json::from_slice(&object.body).map_err(|e| {
            failure("pointer")(format!("{POINTER_KEY} is not a valid pointer: {e}"))
        })?;
        Ok(Some((pointer, object.etag.unwrap_or_default())))
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
        let bytes = self
            .aws
            .s3_get(&self.bucket, &pointer.key, None, MAX_BUNDLE_BYTES)
            .await
            .map_err(failure("bundle"))?
            .map(|object| object.body)
            .unwrap_or_default();
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

    async fn public_key(&self, source: &VerificationKey) -> Result<PublicKey, Failure> {
        let der = match source {
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
