#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;

use regate_core::checkpoint::{check_checkpoints, Cadence, PublicKey};
use regate_core::ports::Clock;
use regate_testkit::{ballot, open, request, Fakes, MemoryCheckpoints, RecordingMetrics};

use crate::config::Config;
use crate::handler::handle;

const CADENCE: Cadence = Cadence {
    every: chrono::Duration::minutes(5),
    settle: chrono::Duration::seconds(30),
};

#[tokio::test]
async fn checkpoints_are_cut_when_due_signed_chained_and_empty_ones_too() {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let ports = MemoryCheckpoints::new(fakes.log.clone());
    let metrics = RecordingMetrics::default();
    open(&approvals, &request("cp-1").build(), "token-1").await;
    approvals
        .vote(&ballot("cp-1", "alice@example.com"))
        .await
        .unwrap();
    let start = fakes.clock.now() + chrono::Duration::minutes(1);
    let at = |minutes| start + chrono::Duration::minutes(minutes);

    let first = handle(&ports, &metrics, CADENCE, at(0)).await.unwrap();
    assert_eq!(first.checkpoint, Some(1));
    // Not due again until five minutes later; then one with nothing new is cut all the same.
    let early = handle(&ports, &metrics, CADENCE, at(2)).await.unwrap();
    assert_eq!(early.checkpoint, None);
    let later = handle(&ports, &metrics, CADENCE, at(6)).await.unwrap();
    assert_eq!(later.checkpoint, Some(2));

    let kept = ports.kept.lock().unwrap().clone();
    assert_eq!(kept[0].heads.len(), 1);
    assert_eq!(kept[0].heads[0].request_id, "cp-1");
    assert_eq!(kept[0].heads[0].seq, fakes.log.of("cp-1").len() as u64);
    assert!(kept[1].heads.is_empty());
    let key = PublicKey::from_spki_der(&ports.public_key_der()).unwrap();
    let (anchors, findings) = check_checkpoints(kept, &key, CADENCE);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(anchors.checkpoints, 2);
    // Each run after the first measured the latest checkpoint's age: 2 min less the settle
    // time, then 6 min less it.
    let ages: Vec<f64> = metrics
        .all()
        .iter()
        .filter(|m| m.name == "CheckpointAgeSeconds")
        .map(|m| m.value)
        .collect();
    assert_eq!(ages, [150.0, 390.0]);
}

#[tokio::test]
async fn a_cut_that_cannot_sign_fails_the_run_by_name_and_the_next_run_cuts_it() {
    let fakes = Fakes::default();
    let ports = MemoryCheckpoints::new(fakes.log.clone());
    let metrics = RecordingMetrics::default();
    let now = fakes.clock.now();
    ports.signing_fails.store(true, Ordering::SeqCst);
    let failed = handle(&ports, &metrics, CADENCE, now).await.unwrap_err();
    assert_eq!(failed.error_type, "CheckpointFailed");
    assert!(
        failed.error_message.contains("KMS"),
        "{}",
        failed.error_message
    );
    assert!(ports.kept.lock().unwrap().is_empty());

    // The claim of the failed run lapses; a run after it cuts checkpoint 1.
    ports.signing_fails.store(false, Ordering::SeqCst);
    let later = now + regate_core::checkpoint::CLAIM_LEASE + chrono::Duration::seconds(1);
    let next = handle(&ports, &metrics, CADENCE, later).await.unwrap();
    assert_eq!(next.checkpoint, Some(1));
}

#[test]
fn a_missing_bucket_or_key_is_a_clear_error_at_cold_start() {
    let base = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("REGATE_DECISION_LOG_TABLE", "log"),
        ("CHECKPOINT_BUCKET", "bucket"),
        ("CHECKPOINT_KEY_ID", "alias/key"),
    ];
    let config = |without: &str, extra: &[(&str, &str)]| {
        let vars: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(name, _)| *name != without)
            .chain(extra.iter().copied())
            .collect();
        let lookup = move |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        Config::from_vars(&regate_aws::config::Vars::new(&lookup))
    };
    let ok = config("", &[]).unwrap();
    assert_eq!(ok.cadence.every, chrono::Duration::minutes(5));
    for missing in [
        "CHECKPOINT_BUCKET",
        "CHECKPOINT_KEY_ID",
        "REGATE_DECISION_LOG_TABLE",
    ] {
        let error = config(missing, &[]).err().unwrap().to_string();
        assert!(error.contains(missing), "{error}");
    }
    let error = config("", &[("CHECKPOINT_MINUTES", "often")])
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("CHECKPOINT_MINUTES"), "{error}");
}
