//! Policy bundles through the policy bucket on the local stack's S3 and KMS (moto): `regate
//! policy build|sign|push|status|rollback` as a policy repository's CI runs them, and the
//! functions' loader (`FunctionPolicy`) picking up what was pushed, refusing what must be
//! refused and keeping the last good revision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use regate_aws::config::{AwsSettings, Vars};
use regate_aws::policy_bucket::{
    bundle_key, FunctionPolicy, PolicyBucket, PolicySettings, Refresh, VerificationKey, POINTER_KEY,
};
use regate_core::canonical::sha256_hex;
use regate_core::evaluator::Evaluator;
use regate_core::policy::OpaBundle;
use regate_testkit::{request, FixedClock, MemoryLog, RecordingMetrics};
use regate_tests::export::local_s3;
use regate_tests::policy::{copy_policies, edit_data, erin_joins_payments_owners as erin_joins};
use regate_tests::stack::LocalStack;
use regate_tests::{local_config, run_local, unique};
use serde_json::{json, Value};

fn regate(args: &[&str]) -> Output {
    run_local(env!("CARGO_BIN_EXE_regate"), args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A bucket and an ES256 key of their own, for one test.
struct Place {
    bucket: String,
    key: String,
    dir: tempfile::TempDir,
}

impl Place {
    async fn new(prefix: &str) -> Self {
        let config = local_config().await;
        let bucket = unique(prefix).to_lowercase().replace('_', "-");
        let s3 = local_s3(&config);
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let kms = aws_sdk_kms::Client::new(&config);
        let key = kms
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .send()
            .await
            .unwrap();
        let key = key.key_metadata().unwrap().key_id().to_string();
        Self {
            bucket,
            key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The policy folder with `change` applied to it, built, signed with the place's KMS key
    /// and pushed; returns its revision.
    fn push(&self, name: &str, change: impl FnOnce(&Path)) -> String {
        let file = self.built(name, change);
        let file = file.to_str().unwrap();
        succeeded(
            &regate(&["policy", "sign", file, "--kms-key-id", &self.key]),
            "sign",
        );
        let pushed = regate(&[
            "policy",
            "push",
            file,
            "--bucket",
            &self.bucket,
            "--public-key",
            &self.key,
        ]);
        succeeded(&pushed, "push");
        OpaBundle::read(&std::fs::read(file).unwrap())
            .unwrap()
            .bundle
            .revision
    }

    /// The policy folder with `change` applied to it, built into a bundle file.
    fn built(&self, name: &str, change: impl FnOnce(&Path)) -> PathBuf {
        let folder = self.dir.path().join(name);
        copy_policies(&folder);
        change(&folder);
        let file = self.dir.path().join(format!("{name}.tar.gz"));
        let out = regate(&[
            "policy",
            "build",
            folder.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ]);
        succeeded(&out, "build");
        file
    }

    /// A function's policy as a function loads it at cold start; `through_proxy` sends its
    /// calls through the local stack's fault proxy, as the functions' are. It checks the
    /// pointer at every refresh.
    async fn load(&self, through_proxy: bool) -> FunctionPolicy {
        self.load_refreshing_every(Duration::ZERO, through_proxy)
            .await
    }

    async fn load_refreshing_every(
        &self,
        refresh: Duration,
        through_proxy: bool,
    ) -> FunctionPolicy {
        let settings = PolicySettings {
            bucket: Some(PolicyBucket {
                name: self.bucket.clone(),
                verification: VerificationKey::Kms(self.key.clone()),
            }),
            refresh,
            cache_dir: self.dir.path().join("cache"),
        };
        let mut env = regate_tests::local_env();
        if through_proxy {
            env.insert("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:5006".into());
        }
        let lookup = |name: &str| env.get(name).cloned();
        let aws = AwsSettings::from_vars(&Vars::new(&lookup)).unwrap();
        FunctionPolicy::load(
            &settings,
            &aws,
            &reqwest::Client::new(),
            regate_policies::bundle,
            "test",
        )
        .await
        .unwrap()
    }

    /// Uploads `bytes` as a bundle, around the CLI, and points `current.json` at it as
    /// `revision`.
    async fn upload_around_the_cli(&self, bytes: Vec<u8>, revision: &str) {
        upload_around_the_cli(&self.bucket, bytes, revision).await;
    }
}

/// Uploads `bytes` as a bundle to `bucket`, around the CLI, and points `current.json` at it as
/// `revision`: what someone who can write the bucket but not sign could do.
async fn upload_around_the_cli(bucket: &str, bytes: Vec<u8>, revision: &str) {
    let s3 = local_s3(&local_config().await);
    let key = bundle_key(revision);
    let pointer = json!({
        "revision": revision, "sha256": sha256_hex(&bytes), "key": key,
        "pushed_at": "2026-06-01T12:00:00.000Z", "pushed_by": "someone-around-the-cli",
    });
    for (key, body) in [
        (key.clone(), bytes),
        (POINTER_KEY.to_string(), pointer.to_string().into_bytes()),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
}

/// A bundle file of the folder's files as they are, without compiling them (what `regate
/// policy build` refuses to make of Rego that does not compile, or `tar czf` makes of anything).
fn tar_of_folder(folder: &Path) -> Vec<u8> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The tests that change the stack's own policy bucket run one at a time.
static STACK_POLICY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn revision_of(policy: &FunctionPolicy) -> String {
    policy.live.current().unwrap().revision().to_string()
}

#[tokio::test]
async fn a_pushed_bundle_is_used_at_the_next_refresh_and_rollback_points_back() {
    let _stack = LocalStack::connect().await;
    let place = Place::new("policy-push").await;
    let first = place.push("first", |_| {});
    let policy = place.load(false).await;
    assert_eq!(revision_of(&policy), first);
    let status = regate(&["policy", "status", "--bucket", &place.bucket]);
    succeeded(&status, "status");
    assert!(stdout(&status).contains(&first), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("pushed by: arn:aws:"),
        "{}",
        stdout(&status)
    );

    let second = place.push("second", erin_joins);
    assert_ne!(second, first);
    assert_eq!(
        policy.refresh_if_due().await,
        Refresh::Loaded(second.clone())
    );
    // The new revision decides: erin is now among the payments approvers.
    let engine = policy.live.current().unwrap();
    let prepared = regate_core::PreparedRequest::new(request("erin-1").build()).unwrap();
    let time = regate_core::EvaluationTime::opening(chrono::Utc::now());
    let evaluation = engine.evaluate(&prepared, &[], time).unwrap();
    assert_eq!(evaluation.policy_revision, second);
    assert!(
        evaluation
            .decision
            .approvers
            .iter()
            .any(|a| a == "erin@example.com"),
        "{:?}",
        evaluation.decision.approvers
    );
    assert_eq!(policy.refresh_if_due().await, Refresh::Unchanged);

    let back = regate(&[
        "policy",
        "rollback",
        &first,
        "--bucket",
        &place.bucket,
        "--public-key",
        &place.key,
    ]);
    succeeded(&back, "rollback");
    assert_eq!(
        policy.refresh_if_due().await,
        Refresh::Loaded(first.clone())
    );
    let never = regate(&[
        "policy",
        "rollback",
        "sha256:0000",
        "--bucket",
        &place.bucket,
    ]);
    assert!(!never.status.success());
    assert!(
        stderr(&never).contains("was not pushed"),
        "{}",
        stderr(&never)
    );
}

#[tokio::test]
async fn each_bad_bundle_keeps_the_last_good_revision_and_says_why() {
    let _stack = LocalStack::connect().await;
    let place = Place::new("policy-bad").await;
    let good = place.push("good", |_| {});
    let policy = place.load(false).await;
    assert_eq!(revision_of(&policy), good);

    let unsigned_file = place.built("unsigned", erin_joins);
    let unsigned = std::fs::read(&unsigned_file).unwrap();
    let unsigned_bundle = OpaBundle::read(&unsigned).unwrap();
    let revision = unsigned_bundle.bundle.revision.clone();

    let other_key = {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        pair.to_pkcs8v1().unwrap().as_ref().to_vec()
    };
    let wrongly_signed = unsigned_bundle
        .clone()
        .sign_with_private_key(&other_key, None)
        .unwrap()
        .to_bytes()
        .unwrap();

    // Rego that does not compile, signed with the right key (so only compiling refuses it).
    let broken_folder = place.dir.path().join("broken");
    copy_policies(&broken_folder);
    std::fs::write(
        broken_folder.join("broken.rego"),
        "package approvals\n\nthis is not rego {\n",
    )
    .unwrap();
    let broken = regate_policies::load_dir(&broken_folder).unwrap();
    let broken_revision = broken.revision.clone();
    let broken_file = place.dir.path().join("broken.tar.gz");
    std::fs::write(&broken_file, tar_of_folder(&broken_folder)).unwrap();
    succeeded(
        &regate(&[
            "policy",
            "sign",
            broken_file.to_str().unwrap(),
            "--kms-key-id",
            &place.key,
        ]),
        "sign the broken bundle",
    );
    let push = |file: &Path, key: Option<&str>| {
        let mut args = vec![
            "policy",
            "push",
            file.to_str().unwrap(),
            "--bucket",
            &place.bucket,
        ];
        args.extend(key.map(|key| ["--public-key", key]).into_iter().flatten());
        regate(&args)
    };
    // push refuses what does not compile, what is not signed, and anything when it has no
    // key to verify with: the functions would refuse each.
    for (file, key, why) in [
        (&broken_file, Some(place.key.as_str()), "does not compile"),
        (&unsigned_file, Some(place.key.as_str()), "not signed"),
        (&unsigned_file, None, "no key to verify"),
    ] {
        let refused = push(file, key);
        assert!(!refused.status.success(), "push {file:?} with {key:?}");
        assert!(
            stderr(&refused).contains(why),
            "{why}: {}",
            stderr(&refused)
        );
    }
    let broken_signed = std::fs::read(&broken_file).unwrap();

    let cases: Vec<(&str, Vec<u8>, String, &str)> = vec![
        ("unsigned", unsigned.clone(), revision.clone(), "not signed"),
        (
            "wrongly signed",
            wrongly_signed,
            revision.clone(),
            "does not verify",
        ),
        (
            "a corrupt tar",
            b"\x1f\x8b this is not a bundle".to_vec(),
            revision.clone(),
            "cannot be read",
        ),
        (
            "Rego that does not compile",
            broken_signed,
            broken_revision,
            "does not compile",
        ),
    ];
    for (what, bytes, revision, why) in cases {
        place.upload_around_the_cli(bytes, &revision).await;
        match policy.refresh_if_due().await {
            Refresh::Failed { message, .. } => assert!(message.contains(why), "{what}: {message}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(revision_of(&policy), good, "{what}");
    }
    // A pointer whose digest is not the bundle's, and a missing pointer.
    let s3 = local_s3(&local_config().await);
    let pointer = json!({"revision": revision, "sha256": "00".repeat(32), "key": bundle_key(&revision),
        "pushed_at": "", "pushed_by": ""});
    s3.put_object()
        .bucket(&place.bucket)
        .key(POINTER_KEY)
        .body(ByteStream::from(pointer.to_string().into_bytes()))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        policy.refresh_if_due().await,
        Refresh::Failed {
            stage: "digest",
            ..
        }
    ));
    s3.delete_object()
        .bucket(&place.bucket)
        .key(POINTER_KEY)
        .send()
        .await
        .unwrap();
    assert!(matches!(
        policy.refresh_if_due().await,
        Refresh::Failed {
            stage: "pointer",
            ..
        }
    ));
    assert_eq!(revision_of(&policy), good);
}

#[tokio::test]
async fn s3_failing_keeps_the_last_good_revision() {
    let stack = LocalStack::connect().await;
    let place = Place::new("policy-s3-down").await;
    let good = place.push("good", |_| {});
    let policy = place.load(true).await;
    assert_eq!(revision_of(&policy), good);
    place.push("next", erin_joins);
    // Every attempt of the SDK's retries fails.
    stack.inject("S3.GET", "error", 20, &[&place.bucket]).await;
    match policy.refresh_if_due().await {
        Refresh::Failed { stage, .. } => assert_eq!(stage, "pointer"),
        other => panic!("{other:?}"),
    }
    assert_eq!(revision_of(&policy), good);
    stack.heal(&place.bucket).await;
    assert!(matches!(policy.refresh_if_due().await, Refresh::Loaded(_)));
}

#[tokio::test]
async fn a_cold_start_with_no_loadable_bundle_fails_closed_and_tries_again_every_5_s() {
    let _stack = LocalStack::connect().await;
    let place = Place::new("policy-cold").await;
    // What someone who can write the bucket but not sign could point the functions to.
    let unsigned = std::fs::read(place.built("unsigned", erin_joins)).unwrap();
    let revision = OpaBundle::read(&unsigned).unwrap().bundle.revision;
    place.upload_around_the_cli(unsigned, &revision).await;
    let hour = Duration::from_secs(3600);
    let policy = place.load_refreshing_every(hour, false).await;
    let refused = policy.live.current().unwrap_err().to_string();
    assert!(refused.contains("no policy is loaded"), "{refused}");
    assert!(refused.contains("not signed"), "{refused}");
    // The evaluator fails the task with the named error the state machine retries.
    let evaluator = Evaluator::new(
        MemoryLog::default(),
        FixedClock::default(),
        RecordingMetrics::default(),
        Arc::clone(&policy.live),
    );
    let error = evaluator
        .evaluate(&request("cold-1").json(), None, "arn:cold")
        .await
        .unwrap_err();
    assert_eq!(error.name().as_str(), "PolicyUnavailable");

    // With nothing loaded the pointer is read again after 5 s (not after the hour), and not
    // sooner: a flood of requests is not a flood of reads.
    assert_eq!(policy.refresh_if_due().await, Refresh::NotDue);
    let pushed = place.push("first", |_| {});
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(
        policy.refresh_if_due().await,
        Refresh::Loaded(pushed.clone())
    );
    // Once loaded, the next read waits for the refresh interval.
    place.push("next", |folder| {
        edit_data(folder, |data| data["next"] = Value::from(1))
    });
    assert_eq!(policy.refresh_if_due().await, Refresh::NotDue);
    assert_eq!(revision_of(&policy), pushed);
}

#[tokio::test]
async fn a_bucket_with_nothing_pushed_yet_fails_closed_until_the_first_push() {
    let _stack = LocalStack::connect().await;
    let place = Place::new("policy-new").await;
    let policy = place.load(false).await;
    // Never the built-in bundle in place of the bucket's: no pointer, no policy.
    let refused = policy.live.current().unwrap_err().to_string();
    assert!(refused.contains("there is no current.json"), "{refused}");
    assert!(refused.contains("regate policy push"), "{refused}");

    let pushed = place.push("first", erin_joins);
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(
        policy.refresh_if_due().await,
        Refresh::Loaded(pushed.clone())
    );
    // A pointer deleted after it was read is a failure too: the pushed revision stays.
    local_s3(&local_config().await)
        .delete_object()
        .bucket(&place.bucket)
        .key(POINTER_KEY)
        .send()
        .await
        .unwrap();
    match policy.refresh_if_due().await {
        Refresh::Failed { stage, message } => {
            assert_eq!(stage, "pointer");
            assert!(message.contains("there is no current.json"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(revision_of(&policy), pushed);
}

/// `regate` with its AWS calls sent through the local stack's fault proxy.
fn regate_through_proxy(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_regate"))
        .args(args)
        .envs(regate_tests::local_env())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:5006")
        .output()
        .unwrap()
}

#[test]
fn two_pushes_at_once_never_lose_one_silently() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stack, place) = runtime.block_on(async {
        let stack = LocalStack::connect().await;
        (stack, Place::new("policy-race").await)
    });
    place.push("base", |_| {});
    let files: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let file = place.built(name, |folder| {
                edit_data(folder, |data| data["race"] = Value::from(*name));
            });
            let signed = regate(&[
                "policy",
                "sign",
                file.to_str().unwrap(),
                "--kms-key-id",
                &place.key,
            ]);
            succeeded(&signed, "sign");
            file
        })
        .collect();
    let pointer_path = format!("{}/{POINTER_KEY}", place.bucket);
    for trial in 0..3 {
        // Both pushes read the pointer before either writes it: each write of the pointer is
        // held back (the second longer), so both were read from the same version.
        runtime.block_on(async {
            for delay in [1_500, 2_500] {
                stack.delay("S3.PUT", delay, 1, &[&pointer_path]).await;
            }
        });
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .iter()
                .map(|file| {
                    let barrier = Arc::clone(&barrier);
                    let (bucket, key) = (place.bucket.clone(), place.key.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        regate_through_proxy(&[
                            "policy",
                            "push",
                            file.to_str().unwrap(),
                            "--bucket",
                            &bucket,
                            "--public-key",
                            &key,
                        ])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        runtime.block_on(stack.heal(&place.bucket));
        let errors: Vec<String> = outcomes.iter().map(stderr).collect();
        let won: Vec<&Output> = outcomes.iter().filter(|o| o.status.success()).collect();
        let told = errors
            .iter()
            .filter(|e| e.contains("another push changed"))
            .count();
        assert_eq!((won.len(), told), (1, 1), "trial {trial}: {errors:?}");
        // The pointer names the winner's bundle, whole.
        let status = stdout(&regate(&["policy", "status", "--bucket", &place.bucket]));
        let winner = stdout(won[0]);
        let revision = status
            .lines()
            .find_map(|l| l.strip_prefix("revision:"))
            .unwrap()
            .trim()
            .to_string();
        assert!(winner.contains(&revision), "{winner} / {status}");
    }
}

/// The stack's own policy bucket and key (`infra/local/local.env`).
fn stack_bucket_and_key() -> (String, String) {
    let env = regate_tests::local_env();
    (
        env["REGATE_POLICY_BUCKET"].clone(),
        env["REGATE_POLICY_KEY_ID"].clone(),
    )
}

fn current_revision(bucket: &str) -> String {
    let status = regate(&["policy", "status", "--bucket", bucket]);
    succeeded(&status, "status");
    stdout(&status)
        .lines()
        .find_map(|l| l.strip_prefix("revision:"))
        .unwrap()
        .trim()
        .to_string()
}

/// The revision the evaluator decided a request under, once it has (within 20 s).
async fn evaluated_under(stack: &LocalStack, id: &str) -> String {
    for _ in 0..100 {
        let events = stack.events(id).await;
        let evaluated = events
            .into_iter()
            .find(|e| e.kind == regate_core::EventKind::Evaluated);
        if let Some(evaluated) = evaluated {
            return evaluated.policy_revision.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{id} was not evaluated within 20 s")
}

#[tokio::test]
async fn the_running_functions_follow_a_push_and_a_rollback_with_no_restart() {
    let _one_at_a_time = STACK_POLICY.lock().await;
    let stack = LocalStack::connect().await;
    let (bucket, key) = stack_bucket_and_key();
    let before = current_revision(&bucket);
    // A new service whose only owner is erin: only this test's requests are decided differently,
    // whatever else runs on the stack meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("warehouse");
    copy_policies(&folder);
    edit_data(&folder, |data| {
        data["groups"]["warehouse-owners"] = json!(["erin@example.com"]);
        data["services"]["warehouse"] =
            json!({"owners": "warehouse-owners", "slack_channel": "C0WAREHOUSE"});
    });
    let file = dir.path().join("warehouse.tar.gz");
    let (folder, file) = (folder.to_str().unwrap(), file.to_str().unwrap());
    succeeded(
        &regate(&["policy", "build", folder, "--out", file]),
        "build",
    );
    succeeded(
        &regate(&["policy", "sign", file, "--kms-key-id", &key]),
        "sign",
    );
    succeeded(
        &regate(&[
            "policy",
            "push",
            file,
            "--bucket",
            &bucket,
            "--public-key",
            &key,
        ]),
        "push",
    );
    let pushed = current_revision(&bucket);
    assert_ne!(pushed, before);
    // The functions check current.json at most every second on the local stack.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let warehouse = |r: regate_testkit::RequestBuilder| {
        r.change("deploy", "production", "service", "warehouse")
    };
    let (id, execution) = stack.begin("policy-warehouse", warehouse).await;
    assert_eq!(evaluated_under(&stack, &id).await, pushed);
    let (channel, _, message) = stack.message_for(&id).await;
    assert_eq!(channel, "C0WAREHOUSE");
    let erin = stack.slack_user("erin@example.com").await;
    assert!(message.to_string().contains(&erin), "{message}");
    // The callback checks erin's vote under the new revision too.
    stack.click_ok("erin@example.com", "approve", &id).await;
    stack
        .wait_finished(&execution)
        .await
        .assert_approved_by(&["erin@example.com"]);

    let back = regate(&[
        "policy",
        "rollback",
        &before,
        "--bucket",
        &bucket,
        "--public-key",
        &key,
    ]);
    succeeded(&back, "rollback");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (id, _) = stack.begin("policy-warehouse-back", warehouse).await;
    assert_eq!(evaluated_under(&stack, &id).await, before);
    let (channel, _, _) = stack.message_for(&id).await;
    assert_ne!(
        channel, "C0WAREHOUSE",
        "the old revision knows no warehouse service"
    );
}

#[test]
fn build_refuses_a_policy_that_does_not_compile_or_fails_its_tests_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle.tar.gz");
    let out = out.to_str().unwrap();

    let failing = dir.path().join("failing");
    copy_policies(&failing);
    let tests = failing.join("approvals_test.rego");
    let mut text = std::fs::read_to_string(&tests).unwrap();
    text.push_str("\ntest_that_fails if {\n\t1 == 2\n}\n");
    std::fs::write(&tests, text).unwrap();
    let refused = regate(&["policy", "build", failing.to_str().unwrap(), "--out", out]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("test_that_fails"),
        "{}",
        stderr(&refused)
    );

    let broken = dir.path().join("broken");
    copy_policies(&broken);
    std::fs::write(
        broken.join("broken.rego"),
        "package approvals\n\nthis is not rego {\n",
    )
    .unwrap();
    let refused = regate(&["policy", "build", broken.to_str().unwrap(), "--out", out]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("broken.rego"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !Path::new(out).exists(),
        "nothing is written for a refused bundle"
    );
}

/// What the local functions wrote to their log since `offset` bytes.
fn functions_log_since(offset: u64) -> String {
    let path = regate_tests::repo_root().join(".local/logs/functions.log");
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

fn functions_log_len() -> u64 {
    let path = regate_tests::repo_root().join(".local/logs/functions.log");
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_running_functions_keep_the_last_good_revision_through_bad_bundles_and_s3_down() {
    let _one_at_a_time = STACK_POLICY.lock().await;
    let stack = LocalStack::connect().await;
    let (bucket, _) = stack_bucket_and_key();
    let good = current_revision(&bucket);
    let s3 = local_s3(&local_config().await);
    // Every revision validly pushed so far: each of the 16 running evaluators keeps the last
    // good one it loaded, which is `good` unless it has not been asked since an earlier push.
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("bundles/")
        .send()
        .await
        .unwrap();
    let pushed_before: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter_map(|k| k.strip_prefix("bundles/")?.strip_suffix(".tar.gz"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    assert!(pushed_before.contains(&good), "{pushed_before:?}");
    let pointer = s3
        .get_object()
        .bucket(&bucket)
        .key(POINTER_KEY)
        .send()
        .await
        .unwrap();
    let pointer = pointer.body.collect().await.unwrap().into_bytes().to_vec();

    // Bundles of a change (a new service), as someone who can write the bucket but not sign
    // could put them there: unsigned, signed with another key, not a bundle at all.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("change");
    copy_policies(&folder);
    edit_data(&folder, |data| {
        data["services"]["warehouse"] = json!({"owners": "sre", "slack_channel": "C0WAREHOUSE"});
    });
    let change = regate_policies::load_dir(&folder).unwrap();
    let unsigned = OpaBundle::build(&change).unwrap();
    let other_key = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let other_key = other_key.to_pkcs8v1().unwrap();
    let wrongly_signed = unsigned
        .clone()
        .sign_with_private_key(other_key.as_ref(), None)
        .unwrap();
    let cases = [
        ("unsigned", unsigned.to_bytes().unwrap(), "signature"),
        (
            "signed with another key",
            wrongly_signed.to_bytes().unwrap(),
            "signature",
        ),
        ("not a bundle", b"\x1f\x8b not a bundle".to_vec(), "bundle"),
    ];
    let staging =
        |r: regate_testkit::RequestBuilder| r.change("deploy", "staging", "service", "payments");
    for (what, bytes, stage) in cases {
        let offset = functions_log_len();
        upload_around_the_cli(&bucket, bytes, &change.revision).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (id, _) = stack.begin("policy-bad", staging).await;
        let evaluated = evaluated_under(&stack, &id).await;
        assert_ne!(
            evaluated, change.revision,
            "{what}: the bad bundle never decides"
        );
        assert!(
            pushed_before.contains(&evaluated),
            "{what}: decided under {evaluated}, not a revision pushed before ({pushed_before:?})"
        );
        let log = functions_log_since(offset);
        assert!(
            log.lines()
                .any(|l| l.contains("the policy bundle was not loaded") && l.contains(stage)),
            "{what}: the evaluator logged why ({stage}):\n{log}"
        );
    }
    // S3 failing: every read of the bucket through the fault proxy fails.
    stack.inject("S3.GET", "error", 1_000, &[&bucket]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (id, _) = stack.begin("policy-s3-down", staging).await;
    let evaluated = evaluated_under(&stack, &id).await;
    assert!(
        pushed_before.contains(&evaluated),
        "S3 down: decided under {evaluated}"
    );
    assert!(stack.fired(&bucket).await > 0, "the evaluator did try S3");
    stack.heal(&bucket).await;

    // Put the pointer back as it was.
    s3.put_object()
        .bucket(&bucket)
        .key(POINTER_KEY)
        .body(ByteStream::from(pointer))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

/// A re-run pipeline pushes the same files again, signed again (an ES256 signature differs each
/// time): the stored copy is kept and pointed to. A stored copy that is not a good bundle of
/// that revision is never pointed to.
#[tokio::test]
async fn the_same_revision_pushed_again_keeps_its_stored_copy_and_a_bad_copy_is_refused() {
    let _stack = LocalStack::connect().await;
    let place = Place::new("policy-again").await;
    let first = place.push("first", erin_joins);
    let kept = stored_bundle(&place.bucket, &first).await;
    // Built and signed again: the same revision, other bytes.
    let again = place.push("again", erin_joins);
    assert_eq!(again, first);
    assert_eq!(
        stored_bundle(&place.bucket, &first).await,
        kept,
        "the stored copy stays"
    );
    assert_eq!(current_revision(&place.bucket), first);

    // An unsigned copy of the same revision put there around the CLI is not pointed to.
    let unsigned = std::fs::read(place.built("unsigned", erin_joins)).unwrap();
    local_s3(&local_config().await)
        .put_object()
        .bucket(&place.bucket)
        .key(bundle_key(&first))
        .body(ByteStream::from(unsigned))
        .send()
        .await
        .unwrap();
    let file = place.built("third", erin_joins);
    let file = file.to_str().unwrap();
    succeeded(
        &regate(&["policy", "sign", file, "--kms-key-id", &place.key]),
        "sign",
    );
    let refused = regate(&[
        "policy",
        "push",
        file,
        "--bucket",
        &place.bucket,
        "--public-key",
        &place.key,
    ]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("pushed before"),
        "{}",
        stderr(&refused)
    );
}

/// Two pipelines push the same files at once, each signed on its own (so other bytes): the
/// bundle is written once (If-None-Match), whichever wins; the other keeps the stored copy, or
/// loses the pointer's race and says so. Never a bundle the key does not vouch for.
#[test]
fn two_pushes_of_one_revision_at_once_store_one_copy_that_verifies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let place = runtime.block_on(async {
        LocalStack::connect().await;
        Place::new("policy-twin").await
    });
    for trial in 0..3 {
        let files: Vec<PathBuf> = ["a", "b"]
            .iter()
            .map(|name| {
                let file = place.built(&format!("{trial}-{name}"), |folder| {
                    edit_data(folder, |data| data["twin"] = Value::from(trial));
                });
                let signed = regate(&[
                    "policy",
                    "sign",
                    file.to_str().unwrap(),
                    "--kms-key-id",
                    &place.key,
                ]);
                succeeded(&signed, "sign");
                file
            })
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .iter()
                .map(|file| {
                    let barrier = Arc::clone(&barrier);
                    let place = &place;
                    scope.spawn(move || {
                        barrier.wait();
                        regate(&[
                            "policy",
                            "push",
                            file.to_str().unwrap(),
                            "--bucket",
                            &place.bucket,
                            "--public-key",
                            &place.key,
                        ])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let errors: Vec<String> = outcomes.iter().map(stderr).collect();
        let won = outcomes.iter().filter(|o| o.status.success()).count();
        let lost_the_pointer = errors.iter().filter(|e| e.contains("another push")).count();
        assert!(
            won >= 1 && won + lost_the_pointer == 2,
            "trial {trial}: {errors:?}"
        );
        let revision = current_revision(&place.bucket);
        let built = OpaBundle::read(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(revision, built.bundle.revision, "trial {trial}");
        // The stored copy is one of the two, and a function loads it.
        let stored = runtime.block_on(stored_bundle(&place.bucket, &revision));
        let copies: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        assert!(copies.contains(&stored), "trial {trial}");
        let policy = runtime.block_on(place.load(false));
        assert_eq!(revision_of(&policy), revision, "trial {trial}");
    }
}

/// The bundle file the bucket holds for `revision`.
async fn stored_bundle(bucket: &str, revision: &str) -> Vec<u8> {
    let object = local_s3(&local_config().await)
        .get_object()
        .bucket(bucket)
        .key(bundle_key(revision))
        .send()
        .await
        .unwrap();
    object.body.collect().await.unwrap().into_bytes().to_vec()
}
