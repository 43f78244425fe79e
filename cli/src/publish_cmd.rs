//! `regate policy build|sign|push|status|rollback`: a policy bundle from a folder to the
//! policy bucket the running functions load it from (see `regate_aws::policy_bucket`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use clap::Args;
use regate_aws::describe_sdk;
use regate_aws::policy_bucket::{bundle_key, Pointer, POINTER_KEY};
use regate_core::canonical::sha256_hex;
use regate_core::checkpoint::PublicKey;
use regate_core::policy::{fixed_signature_from_der, OpaBundle};
use regate_core::{PolicyBundle, PolicyEngine};
use regate_policies::{load_dir, run_tests};

#[derive(Args)]
pub struct BuildArgs {
    /// The policy folder (`.rego` files, tests and `data.json`).
    #[arg(default_value = "policies")]
    dir: PathBuf,
    /// The bundle file to write (a gzipped tar in OPA's format).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct SignArgs {
    /// The bundle file; it is rewritten with `.signatures.json`.
    file: PathBuf,
    /// Sign with this KMS key (ECC_NIST_P256): id, ARN or alias.
    #[arg(
        long,
        conflicts_with = "private_key",
        required_unless_present = "private_key"
    )]
    kms_key_id: Option<String>,
    /// Sign with this P-256 private key (PEM).
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// The `keyid` the signature names (OPA's `--signing-key` id for verifiers).
    #[arg(long)]
    key_id: Option<String>,
}

/// Where the policy bucket is.
#[derive(Args)]
pub struct BucketArgs {
    /// A deployed regate stack: its PolicyBucketName (and PolicySigningKeyArn) outputs.
    #[arg(long, conflicts_with = "bucket", required_unless_present = "bucket")]
    stack: Option<String>,
    /// The policy bucket.
    #[arg(long)]
    bucket: Option<String>,
}

#[derive(Args)]
pub struct PushArgs {
    /// The signed bundle file.
    file: PathBuf,
    #[command(flatten)]
    place: BucketArgs,
    /// The key the functions verify with: a PEM public key file, or a KMS key. Defaults to
    /// the stack's PolicySigningKeyArn output. A bundle is pushed only once it verifies.
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The revision to point back to (`sha256:...`), pushed before.
    revision: String,
    #[command(flatten)]
    place: BucketArgs,
    /// As for `push`.
    #[arg(long)]
    public_key: Option<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn build(args: &BuildArgs) -> Result<ExitCode> {
    let bundle = load_dir(&args.dir)?;
    check(&bundle)?;
    let bytes = OpaBundle::build(&bundle)?.to_bytes()?;
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    outln!(
        "wrote {} ({} bytes, revision {}, {} policy files, {} test files)",
        args.out.display(),
        bytes.len(),
        bundle.revision,
        bundle.policies.len(),
        bundle.tests.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// It compiles and every `test_*` rule passes, or the error names what does not.
fn check(bundle: &PolicyBundle) -> Result<()> {
    PolicyEngine::compile(bundle).context("the bundle does not compile")?;
    let failed: Vec<String> = run_tests(bundle)?
        .into_iter()
        .filter(|outcome| !outcome.passed)
        .map(|outcome| match outcome.message {
            Some(message) => format!("{}: {message}", outcome.name),
            None => outcome.name,
        })
        .collect();
    if !failed.is_empty() {
        bail!("policy tests failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

fn read_bundle(path: &Path) -> Result<(Vec<u8>, OpaBundle)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bundle = OpaBundle::read(&bytes).with_context(|| format!("{}", path.display()))?;
    Ok((bytes, bundle))
}

pub fn sign(args: &SignArgs) -> Result<ExitCode> {
    let (_, bundle) = read_bundle(&args.file)?;
    // The functions run the program in place of the files: sign only one the files vouch for.
    bundle.check_program()?;
    let key_id = args.key_id.as_deref();
    let signed = match (&args.private_key, &args.kms_key_id) {
        (Some(path), _) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            bundle.sign_with_private_key(&pem, key_id)?
        }
        (None, Some(kms_key)) => {
            let input = bundle.signing_input(key_id)?;
            let der = runtime()?.block_on(kms_sign(kms_key, input.as_bytes()))?;
            bundle.with_signature(&input, &fixed_signature_from_der(&der)?)
        }
        (None, None) => bail!("pass --kms-key-id or --private-key"),
    };
    std::fs::write(&args.file, signed.to_bytes()?)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    outln!(
        "signed {} (revision {})",
        args.file.display(),
        signed.bundle.revision
    );
    Ok(ExitCode::SUCCESS)
}

/// The longest message KMS signs as it is.
const KMS_RAW_LIMIT: usize = 4096;

async fn kms_sign(key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
    let kms = aws_sdk_kms::Client::new(&crate::load_aws_config().await);
    // KMS signs at most 4,096 bytes of a raw message, and a JWT listing many files is longer:
    // then send its SHA-256 (what ES256 signs) as a digest.
    let (message, kind) = if message.len() <= KMS_RAW_LIMIT {
        (message.to_vec(), MessageType::Raw)
    } else {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        (digest.as_ref().to_vec(), MessageType::Digest)
    };
    let signed = kms
        .sign()
        .key_id(key_id)
        .message(Blob::new(message))
        .message_type(kind)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("signing with KMS key {key_id}: {}", describe_sdk(&e)))?;
    Ok(signed
        .signature()
        .map(|s| s.as_ref().to_vec())
        .unwrap_or_default())
}

/// The bucket and the verification key, from the arguments or the stack's outputs.
async fn place(
    config: &aws_config::SdkConfig,
    place: &BucketArgs,
    public_key: Option<&str>,
) -> Result<(String, Option<String>)> {
    match (&place.bucket, &place.stack) {
        (Some(bucket), _) => Ok((bucket.clone(), public_key.map(str::to_string))),
        (None, Some(stack)) => {
            let outputs = crate::request_cmd::stack_outputs(config, stack).await?;
            let output = |key: &str| {
                outputs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let bucket = output("PolicyBucketName")
                .with_context(|| format!("stack {stack} has no PolicyBucketName output"))?;
            let key = public_key
                .map(str::to_string)
                .or_else(|| output("PolicySigningKeyArn").filter(|v| !v.is_empty()));
            Ok((bucket, key))
        }
        (None, None) => bail!("pass --stack or --bucket"),
    }
}

/// The verification key: a PEM (or DER) file, else a KMS key's public key.
async fn verification_key(config: &aws_config::SdkConfig, key: &str) -> Result<PublicKey> {
    if Path::new(key).is_file() {
        let bytes = std::fs::read(key)?;
        return PublicKey::from_pem_or_der(&bytes).map_err(anyhow::Error::msg);
    }
    let answer = aws_sdk_kms::Client::new(config)
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("the public key of KMS key {key}: {}", describe_sdk(&e)))?;
    let der = answer
        .public_key()
        .map(|k| k.as_ref().to_vec())
        .unwrap_or_default();
    PublicKey::from_spki_der(&der).map_err(anyhow::Error::msg)
}

/// Checks a bundle as the functions will: it compiles, its tests pass, its program is what
/// its files compile to, and its signature verifies with `key` (required: the functions
/// refuse what they cannot verify).
async fn checked(
    config: &aws_config::SdkConfig,
    bundle: &OpaBundle,
    key: Option<&str>,
) -> Result<()> {
    check(&bundle.bundle)?;
    bundle.check_program()?;
    let Some(key) = key else {
        bail!(
            "no key to verify the bundle's signature with: pass --public-key (a PEM file or a \
             KMS key), or --stack of a stack with a PolicySigningKeyArn output"
        );
    };
    bundle.verify_signature(&verification_key(config, key).await?)?;
    Ok(())
}

pub fn push(args: &PushArgs) -> Result<ExitCode> {
    let (bytes, bundle) = read_bundle(&args.file)?;
    runtime()?.block_on(async {
        let config = crate::load_aws_config().await;
        let (bucket, key) = place(&config, &args.place, args.public_key.as_deref()).await?;
        checked(&config, &bundle, key.as_deref()).await?;
        let s3 = regate_aws::s3_client(&config);
        let revision = &bundle.bundle.revision;
        let object = bundle_key(revision);
        // Put if absent: a revision already pushed keeps its bytes (compared below), and two
        // pushes of one revision, signed apart, cannot overwrite each other.
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(&object)
            .body(ByteStream::from(bytes.clone()))
            .content_type("application/gzip")
            .if_none_match("*")
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(error) if http_status(&error) == Some(412) => {}
            Err(error) if http_status(&error) == Some(409) => bail!(
                "another push is writing s3://{bucket}/{object} at this moment; nothing was \
                 overwritten. Push again"
            ),
            Err(error) => bail!("s3://{bucket}/{object}: {}", describe_sdk(&error)),
        }
        let stored = download(&s3, &bucket, &object).await?;
        if sha256_hex(&stored) != sha256_hex(&bytes) {
            // The same files pushed again (a re-run pipeline), signed at another time: ES256
            // signatures differ each time. The stored copy stays, and is pointed to, when it
            // passes the same checks; anything else there is refused.
            let same = OpaBundle::read(&stored)
                .ok()
                .filter(|kept| kept.bundle.revision == *revision);
            let Some(kept) = same else {
                bail!(
                    "s3://{bucket}/{object} already holds another file for revision {revision} \
                     that is not a bundle of it; it was not replaced"
                );
            };
            checked(&config, &kept, key.as_deref())
                .await
                .with_context(|| format!("s3://{bucket}/{object}, pushed before"))?;
            eprintln!(
                "note: revision {revision} was pushed before (signed at another time); its \
                 stored copy is kept"
            );
        }
        let pointer = point_to(&config, &s3, &bucket, revision, &stored, &object).await?;
        outln!(
            "pushed revision {} to s3://{bucket}/{object}; {POINTER_KEY} points to it \
             (the functions load it within their refresh interval)",
            pointer.revision
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn rollback(args: &RollbackArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let config = crate::load_aws_config().await;
        let (bucket, key) = place(&config, &args.place, args.public_key.as_deref()).await?;
        let s3 = regate_aws::s3_client(&config);
        let object = bundle_key(&args.revision);
        let bytes = download(&s3, &bucket, &object)
            .await
            .with_context(|| format!("revision {} was not pushed", args.revision))?;
        let bundle = OpaBundle::read(&bytes)?;
        if bundle.bundle.revision != args.revision {
            bail!(
                "s3://{bucket}/{object} holds revision {}, not {}",
                bundle.bundle.revision,
                args.revision
            );
        }
        checked(&config, &bundle, key.as_deref()).await?;
        let pointer = point_to(&config, &s3, &bucket, &args.revision, &bytes, &object).await?;
        outln!("{POINTER_KEY} points back to revision {}", pointer.revision);
        Ok(ExitCode::SUCCESS)
    })
}

pub fn status(place_args: &BucketArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let config = crate::load_aws_config().await;
        let (bucket, _) = place(&config, place_args, None).await?;
        let s3 = regate_aws::s3_client(&config);
        let Some((pointer, _)) = read_pointer(&s3, &bucket).await? else {
            outln!(
                "no bundle pushed to s3://{bucket} yet: until `regate policy push`, the \
                 functions that load from it have no policy and fail closed"
            );
            return Ok(ExitCode::FAILURE);
        };
        outln!("revision:  {}", pointer.revision);
        outln!("bundle:    s3://{bucket}/{}", pointer.key);
        outln!("sha256:    {}", pointer.sha256);
        outln!("pushed at: {}", pointer.pushed_at);
        outln!("pushed by: {}", pointer.pushed_by);
        Ok(ExitCode::SUCCESS)
    })
}

async fn download(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("s3://{bucket}/{key}: {}", describe_sdk(&e)))?;
    Ok(object.body.collect().await?.into_bytes().to_vec())
}

fn http_status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// The pointer and its ETag, or `None` when there is none yet.
async fn read_pointer(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Option<(Pointer, String)>> {
    match s3.get_object().bucket(bucket).key(POINTER_KEY).send().await {
        Ok(object) => {
            let etag = object.e_tag().unwrap_or_default().to_string();
            let body = object.body.collect().await?.into_bytes();
            let pointer = serde_json::from_slice(&body)
                .with_context(|| format!("s3://{bucket}/{POINTER_KEY} is not a valid pointer"))?;
            Ok(Some((pointer, etag)))
        }
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
        Err(error) => bail!("s3://{bucket}/{POINTER_KEY}: {}", describe_sdk(&error)),
    }
}

/// Points `current.json` at `object`, on the condition that it is still what was read: two
/// pushes at once cannot both win, and the loser is told so.
async fn point_to(
    config: &aws_config::SdkConfig,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    revision: &str,
    bytes: &[u8],
    object: &str,
) -> Result<Pointer> {
    let read = read_pointer(s3, bucket).await?;
    let pushed_by = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "who is pushing (STS GetCallerIdentity): {}",
                describe_sdk(&e)
            )
        })?
        .arn()
        .unwrap_or("unknown")
        .to_string();
    let pointer = Pointer {
        revision: revision.to_string(),
        sha256: sha256_hex(bytes),
        key: object.to_string(),
        pushed_at: regate_core::time::format_rfc3339_ms(chrono::Utc::now()),
        pushed_by,
    };
    let body = serde_json::to_vec_pretty(&pointer)?;
    let put = s3
        .put_object()
        .bucket(bucket)
        .key(POINTER_KEY)
        .body(ByteStream::from(body))
        .content_type("application/json");
    let put = match &read {
        Some((_, etag)) => put.if_match(etag),
        None => put.if_none_match("*"),
    };
    match put.send().await {
        Ok(_) => Ok(pointer),
        // 412: it changed since it was read; 409: another conditional write of it is under way.
        Err(error) if matches!(http_status(&error), Some(409 | 412)) => bail!(
            "another push changed s3://{bucket}/{POINTER_KEY} while this one ran; nothing was \
             overwritten. Check `regate policy status` and push again"
        ),
        Err(error) => bail!("s3://{bucket}/{POINTER_KEY}: {}", describe_sdk(&error)),
    }
}
