//! Offline audit of the decision log as an export holds it: every item is checked as it streams
//! by (its keys, its hash), only what the chains and the re-evaluations need is kept, and
//! [`LogAudit::finish`] then checks each request's chain and evaluates every recorded decision
//! again under the policy bundle that made it.
//!
//! Pure: reading export files, manifests and checkpoints is the caller's part.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::canonical::sha256_hex;
use crate::chain::{compute_hash, GENESIS_HASH};
use crate::checkpoint::Anchors;
use crate::decision::Outcome;
use crate::event::{
    keys, Event, EventKind, INPUT_NOW, INPUT_OPENED_AT, INPUT_VOTES, TIMEOUT_SECONDS,
};
use crate::policy::{ArchivedBundle, EvaluationTime, PolicyBundle, PolicyEngine, PreparedRequest};
use crate::request::Request;
use crate::vote::Vote;

/// How far past the export's time an event may be dated (clocks differ a little).
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// How long after its timeout a request may still be open: the workflow's own timeout, the
/// resume lease and the sweeper's period all fit well inside it.
pub const CLOSE_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// What an audit can find. Integrity findings mean the log is not what regate wrote;
/// re-evaluation findings mean the policy that made a decision now decides otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A data file holds another number of items than its manifest says.
    ItemCount,
    /// An item that cannot be read as what its keys say it is.
    Unreadable,
    /// An event whose `pk`/`sk` do not match its `request_id`/`seq`.
    KeyMismatch,
    /// An event whose content does not match its hash: it was edited.
    Altered,
    /// Two different events under the same request and seq (in overlapping exports).
    ConflictingCopies,
    /// A sequence number is missing: an event was deleted (or the chain does not start at 1).
    MissingEvent,
    /// An event's `prev_hash` is not the previous event's hash: events were reordered, or a
    /// part of the chain was rewritten.
    BrokenLink,
    /// A request past its timeout (and a grace period) with no `decided` or `expired` event.
    NoTerminalEvent,
    /// An incremental export shows an event item changed or deleted: the log is append-only.
    ChangedAfterWrite,
    /// No bundle for the revision that made a decision, in the export or `--policies`.
    PolicyMissing,
    /// A stored bundle whose files do not hash to its revision, or that does not compile.
    PolicyInvalid,
    /// The decision's input cannot be rebuilt from the chain, or its digest differs.
    InputMismatch,
    /// A checkpoint whose signature does not verify with the pinned key.
    BadSignature,
    /// A gap in the checkpoints' numbers.
    CheckpointMissing,
    /// A checkpoint that does not name its predecessor's digest.
    CheckpointChain,
    /// A checkpoint whose heads do not hash to its signed root.
    CheckpointAltered,
    /// A request a checkpoint vouches for is not in the export.
    DeletedRequest,
    /// A chain shorter than a checkpoint says it was.
    TruncatedChain,
    /// An event with another hash than a checkpoint signed: the chain was rewritten.
    RewrittenChain,
    /// An event dated within what the checkpoints cover, under no signed head: it was added
    /// after its time was signed (a made-up request, or a vote slipped in later).
    UnanchoredBeforeCheckpoint,
    /// The last checkpoint is more than three periods older than the export: checkpoints
    /// stopped, so nothing signed vouches for what came after.
    StaleCheckpoints,
    /// A checkpoint object with more than one version: it was put again after it was cut.
    RewrittenCheckpoint,
    /// Two different bundles under one policy revision (the export's and a `--policies` one).
    PolicyConflict,
    /// An event dated after the export was taken: a clock regate does not keep, or an event
    /// placed ahead so that a later checkpoint would sign it.
    DatedAfterExport,
    /// Evaluated again under its own policy, the decision comes out otherwise.
    OutcomeMismatch,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ItemCount => "item_count",
            Self::Unreadable => "unreadable",
            Self::KeyMismatch => "key_mismatch",
            Self::Altered => "altered",
            Self::ConflictingCopies => "conflicting_copies",
            Self::MissingEvent => "missing_event",
            Self::BrokenLink => "broken_link",
            Self::NoTerminalEvent => "no_terminal_event",
            Self::ChangedAfterWrite => "changed_after_write",
            Self::PolicyMissing => "policy_missing",
            Self::PolicyInvalid => "policy_invalid",
            Self::InputMismatch => "input_mismatch",
            Self::BadSignature => "bad_signature",
            Self::CheckpointMissing => "checkpoint_missing",
            Self::CheckpointChain => "checkpoint_chain",
            Self::CheckpointAltered => "checkpoint_altered",
            Self::DeletedRequest => "deleted_request",
            Self::TruncatedChain => "truncated_chain",
            Self::RewrittenChain => "rewritten_chain",
            Self::UnanchoredBeforeCheckpoint => "unanchored_before_checkpoint",
            Self::StaleCheckpoints => "stale_checkpoints",
            Self::RewrittenCheckpoint => "rewritten_checkpoint",
            Self::PolicyConflict => "policy_conflict",
            Self::DatedAfterExport => "dated_after_export",
            Self::OutcomeMismatch => "outcome_mismatch",
        }
    }

    /// False only for a re-evaluation that disagrees with the record.
    pub fn is_integrity(self) -> bool {
        !matches!(self, Self::OutcomeMismatch)
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing found wrong: where (request and seq, when it has them) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub kind: FindingKind,
    pub detail: String,
}

impl Finding {
    pub fn new(
        request_id: impl Into<String>,
        seq: Option<u64>,
        kind: FindingKind,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            seq,
            kind,
            detail: detail.into(),
        }
    }
}

/// A recorded decision and everything needed to evaluate it again.
#[derive(Debug, Clone)]
pub struct RecordedDecision {
    pub request_id: String,
    pub seq: u64,
    pub kind: EventKind,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    /// Shared by every decision of one revision.
    pub policy_revision: Arc<str>,
    pub input_digest: String,
    now: Option<DateTime<Utc>>,
    opened_at: Option<DateTime<Utc>>,
    votes: Result<Vec<Vote>, String>,
}

/// What the audit keeps of one event: its place in the chain, and its time (milliseconds since
/// the epoch; `None` when it has none that reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    seq: u64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    at: Option<i64>,
    kind: EventKind,
    outcome: Option<Outcome>,
}

/// What the audit keeps of one request while items stream by.
#[derive(Debug, Default)]
struct Trail {
    links: Vec<Link>,
    /// The `requested` event's request, as JSON text (a fraction of a parsed value's memory).
    request: Option<String>,
    decisions: Vec<RecordedDecision>,
    /// When the first evaluation asked for approval, when it was, and how long it waits.
    waits_from: Option<(DateTime<Utc>, u64)>,
    terminal: bool,
    /// `(seq, voter, choice)` of each `vote` event: a decision may count only recorded votes.
    votes: Vec<(u64, String, String)>,
    /// A finding was made on one of its events already: its decisions are not evaluated again.
    flagged: bool,
}

/// Counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditCounts {
    pub requests: usize,
    pub events: usize,
    pub decisions: usize,
    pub policies: usize,
    /// Checkpoints whose signature, root and place in the chain held.
    pub checkpoints: usize,
    /// Events newer than what the last checkpoint covers: nothing signed vouches for them yet.
    /// `None` when no checkpoints were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanchored_events: Option<usize>,
    /// Events older than the first checkpoint looked back: the log predates its checkpoints,
    /// and nothing signed can vouch for them. `None` when no checkpoints were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predating_checkpoints: Option<usize>,
}

/// A finished audit: counts, and findings in request and seq order.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub counts: AuditCounts,
    pub findings: Vec<Finding>,
    /// The oldest event's time: with no checkpoint at all, how long the log has gone unsigned.
    pub oldest_event: Option<DateTime<Utc>>,
    /// How long the requests that waited for approvers waited.
    pub waits: WaitTimes,
    /// The timelines of requests with a finding, and of the first requests by id (as many as
    /// [`AuditContext::timelines`] asks for).
    pub timelines: Vec<Timeline>,
}

/// One step of a request's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub seq: u64,
    pub kind: EventKind,
    pub at: Option<DateTime<Utc>>,
    /// The voter of a vote, and how they voted.
    pub who: Option<String>,
    pub outcome: Option<Outcome>,
}

/// A request's events in order, for people: requested, evaluated, notified, the votes, decided
/// or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub request_id: String,
    pub steps: Vec<Step>,
    /// A finding names this request.
    pub flagged: bool,
}

/// How long requests that waited for approvers waited, from the evaluation that asked for
/// approval to their decision or expiry, by bucket; and how many still wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WaitTimes {
    pub counts: [u64; WAIT_BUCKETS.len()],
    pub open: u64,
    /// Decided (allowed or denied) at their first evaluation, with no wait.
    pub at_once: u64,
}

/// The upper bounds of the [`WaitTimes`] buckets, in seconds, and their labels; the last takes
/// the rest.
pub const WAIT_BUCKETS: [(i64, &str); 7] = [
    (60, "under 1 min"),
    (5 * 60, "1-5 min"),
    (15 * 60, "5-15 min"),
    (60 * 60, "15-60 min"),
    (4 * 3600, "1-4 h"),
    (24 * 3600, "4-24 h"),
    (i64::MAX, "a day or more"),
];

impl WaitTimes {
    fn add(&mut self, other: &WaitTimes) {
        for (sum, add) in self.counts.iter_mut().zip(other.counts) {
            *sum += add;
        }
        self.open += other.open;
        self.at_once += other.at_once;
    }

    /// Counts a request by its sorted links.
    fn count(&mut self, links: &[Link]) {
        let asked = links.iter().find(|l| {
            l.kind == EventKind::Evaluated && l.outcome == Some(Outcome::ApprovalRequired)
        });
        let closed = links.iter().find(|l| {
            matches!(l.kind, EventKind::Decided | EventKind::Expired)
                || (l.kind == EventKind::Evaluated && l.outcome.is_some_and(Outcome::is_final))
        });
        match (asked, closed) {
            (None, Some(_)) => self.at_once += 1,
            (Some(_), None) => self.open += 1,
            (Some(asked), Some(closed)) => {
                // No time, or closed before it asked: nothing to chart.
                let Some(waited) = closed
                    .at
                    .zip(asked.at)
                    .map(|(c, a)| (c - a) / 1000)
                    .filter(|w| *w >= 0)
                else {
                    return;
                };
                let bucket = WAIT_BUCKETS
                    .iter()
                    .position(|(under, _)| waited < *under)
                    .unwrap_or(WAIT_BUCKETS.len() - 1);
                self.counts[bucket] += 1;
            }
            (None, None) => {}
        }
    }
}

/// At most this many timelines of requests with findings go in a report.
pub const MAX_FLAGGED_TIMELINES: usize = 500;

fn timeline(
    request_id: &str,
    links: &[Link],
    votes: &[(u64, String, String)],
    flagged: bool,
) -> Timeline {
    let steps = links
        .iter()
        .map(|link| Step {
            seq: link.seq,
            kind: link.kind,
            at: link.at.and_then(DateTime::from_timestamp_millis),
            who: votes
                .iter()
                .find(|(seq, _, _)| *seq == link.seq)
                .map(|(_, voter, choice)| format!("{voter} ({choice})")),
            outcome: link.outcome,
        })
        .collect();
    Timeline {
        request_id: request_id.to_string(),
        steps,
        flagged,
    }
}

/// Keeps the timelines a report shows: every flagged one (up to [`MAX_FLAGGED_TIMELINES`]),
/// then the first `samples` others by request id.
fn keep_timelines(timelines: &mut Vec<Timeline>, samples: usize) {
    timelines.sort_by(|a, b| (!a.flagged, &a.request_id).cmp(&(!b.flagged, &b.request_id)));
    let (mut flagged, mut others) = (0, 0);
    timelines.retain(|t| {
        let (count, most) = if t.flagged {
            (&mut flagged, MAX_FLAGGED_TIMELINES)
        } else {
            (&mut others, samples)
        };
        *count += 1;
        *count <= most
    });
}

/// A decision of a verified chain, with its input rebuilt.
#[derive(Debug, Clone)]
pub struct VerifiedDecision {
    pub decision: RecordedDecision,
    pub request: PreparedRequest,
    pub votes: Vec<Vote>,
    pub time: EvaluationTime,
}

impl AuditReport {
    pub fn integrity_findings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.kind.is_integrity())
            .count()
    }

    pub fn mismatches(&self) -> usize {
        self.findings.len() - self.integrity_findings()
    }
}

/// The policy bundles an audit evaluates decisions under: the export's own (`POLICY#` items)
/// and any given with `--policies`, one per revision.
#[derive(Default)]
pub struct PolicySet {
    bundles: HashMap<String, PolicyBundle>,
    findings: Vec<Finding>,
}

impl PolicySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy bundle item's archived form (the `bundle` attribute, decompressed).
    pub fn add_archived(&mut self, claimed_revision: &str, archived: &str) {
        let restored = serde_json::from_str::<ArchivedBundle>(archived)
            .map_err(|e| e.to_string())
            .and_then(|a| a.restore().map_err(|e| e.to_string()));
        let invalid = |detail: String| {
            Finding::new(
                keys::policy_key(claimed_revision),
                None,
                FindingKind::PolicyInvalid,
                detail,
            )
        };
        match restored {
            Ok(bundle) if bundle.revision == claimed_revision => self.add(bundle, "the export"),
            Ok(bundle) => self.findings.push(invalid(format!(
                "stored as {claimed_revision} but holds {}",
                bundle.revision
            ))),
            Err(problem) => self.findings.push(invalid(problem)),
        }
    }

    /// A bundle given from outside the export (`--policies`).
    pub fn add_known(&mut self, bundle: PolicyBundle) {
        self.add(bundle, "--policies");
    }

    /// Keeps the first bundle of each revision; another one with other files under the same
    /// revision is a `policy_conflict`, whichever came first.
    fn add(&mut self, bundle: PolicyBundle, from: &str) {
        let Some(known) = self.bundles.get(&bundle.revision) else {
            self.bundles.insert(bundle.revision.clone(), bundle);
            return;
        };
        if known.policies != bundle.policies || known.data_json != bundle.data_json {
            self.findings.push(Finding::new(
                keys::policy_key(&bundle.revision),
                None,
                FindingKind::PolicyConflict,
                format!(
                    "the bundle from {from} has other files than another bundle of the same \
                     revision (theirs: {}; this one: {})",
                    file_list(known),
                    file_list(&bundle)
                ),
            ));
        }
    }

    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Merges the bundles another reader of the same export found.
    pub fn absorb(&mut self, other: PolicySet) {
        self.findings.extend(other.findings);
        for bundle in other.bundles.into_values() {
            self.add(bundle, "the export");
        }
    }

    /// Engines for one worker: each revision compiled once, when a decision first needs it.
    pub fn engines(&self) -> Engines<'_> {
        Engines {
            bundles: &self.bundles,
            compiled: BTreeMap::new(),
        }
    }
}

fn file_list(bundle: &PolicyBundle) -> String {
    let mut paths: Vec<String> = bundle
        .policies
        .iter()
        .map(|f| format!("{} sha256:{}", f.path, sha256_hex(&f.source)))
        .collect();
    paths.push(format!(
        "data.json sha256:{}",
        sha256_hex(&bundle.data_json)
    ));
    paths.join(", ")
}

/// What every partition of an audit shares: the bundles, the checked checkpoints and when the
/// export was taken (requests past their timeout by then must have closed).
pub struct AuditContext {
    pub policies: PolicySet,
    pub anchors: Option<Anchors>,
    pub as_of: Option<DateTime<Utc>>,
    /// How many timelines of requests without findings to keep for a report (0: no report).
    pub timelines: usize,
}

/// Which of `partitions` a request's events go to: FNV-1a of its id, so that every event of a
/// request, and its signed heads, meet in one partition.
pub fn partition_of(request_id: &str, partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as usize
}

impl AuditContext {
    /// The requests checkpoints signed, by the partition they fall in: each partition checks
    /// that its own are in the export.
    pub fn anchored_by_partition(&self, partitions: usize) -> Vec<Vec<&str>> {
        let mut split = vec![Vec::new(); partitions.max(1)];
        if let Some(anchors) = &self.anchors {
            for request_id in anchors.heads.keys() {
                split[partition_of(request_id, partitions)].push(request_id.as_str());
            }
        }
        split
    }

    /// The partitions' reports as one: counts summed, the policies' and the checkpoints'
    /// freshness findings added, findings in request and seq order.
    pub fn combine(&self, parts: Vec<AuditReport>) -> AuditReport {
        let mut counts = AuditCounts {
            policies: self.policies.len(),
            checkpoints: self.anchors.as_ref().map_or(0, |a| a.checkpoints),
            unanchored_events: self.anchors.as_ref().map(|_| 0),
            predating_checkpoints: self.anchors.as_ref().map(|_| 0),
            ..AuditCounts::default()
        };
        let mut findings = self.policies.findings.clone();
        let mut oldest: Option<DateTime<Utc>> = None;
        let (mut waits, mut timelines) = (WaitTimes::default(), Vec::new());
        for part in parts {
            waits.add(&part.waits);
            timelines.extend(part.timelines);
            counts.requests += part.counts.requests;
            counts.events += part.counts.events;
            counts.decisions += part.counts.decisions;
            for (sum, add) in [
                (&mut counts.unanchored_events, part.counts.unanchored_events),
                (
                    &mut counts.predating_checkpoints,
                    part.counts.predating_checkpoints,
                ),
            ] {
                if let Some(sum) = sum {
                    *sum += add.unwrap_or_default();
                }
            }
            oldest = match (oldest, part.oldest_event) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            findings.extend(part.findings);
        }
        if let (Some(anchors), Some(as_of)) = (&self.anchors, self.as_of) {
            findings.extend(anchors.staleness(as_of, oldest));
        }
        findings
            .sort_by(|a, b| (&a.request_id, a.seq, a.kind).cmp(&(&b.request_id, b.seq, b.kind)));
        keep_timelines(&mut timelines, self.timelines);
        AuditReport {
            counts,
            findings,
            oldest_event: oldest,
            waits,
            timelines,
        }
    }
}

/// The audit of one partition of a decision log (or of all of it), fed item by item.
#[derive(Default)]
pub struct LogAudit {
    requests: HashMap<String, Trail>,
    findings: Vec<Finding>,
    events: usize,
    /// Each policy revision once, shared by its decisions.
    revisions: HashSet<Arc<str>>,
}

fn intern(revisions: &mut HashSet<Arc<str>>, revision: &str) -> Arc<str> {
    if let Some(known) = revisions.get(revision) {
        return known.clone();
    }
    let new: Arc<str> = Arc::from(revision);
    revisions.insert(new.clone());
    new
}

impl LogAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a finding the caller made (an item count, a change in an incremental export).
    pub fn report(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// One item of the decision-log table, by its keys: an event is read (by `read`, only
    /// then) and checked and kept; idempotency-key markers carry nothing to check; policy
    /// bundles go to a [`PolicySet`] and the checkpoint record to no one, so either is passed
    /// over here; anything else is unreadable.
    pub fn add_item(&mut self, pk: &str, sk: &str, read: impl FnOnce() -> Result<Event, String>) {
        let Some(request_id) = pk.strip_prefix(keys::REQUEST_PREFIX) else {
            if !pk.starts_with(keys::POLICY_PREFIX) && pk != keys::CHECKPOINT_PARTITION {
                self.findings.push(Finding::new(
                    pk,
                    None,
                    FindingKind::Unreadable,
                    format!("an item with sort key {sk:?} that is not part of a decision log"),
                ));
            }
            return;
        };
        if sk.starts_with(keys::KEY_PREFIX) {
            return;
        }
        match read() {
            Ok(event) => self.add_event(request_id, sk, event),
            Err(error) => self.findings.push(Finding::new(
                request_id,
                None,
                FindingKind::Unreadable,
                format!("item {sk:?} is not an event: {error}"),
            )),
        }
    }

    fn add_event(&mut self, request_id: &str, sort_key: &str, event: Event) {
        self.events += 1;
        let finding = |kind, detail: String| {
            Finding::new(request_id.to_string(), Some(event.seq), kind, detail)
        };
        if event.request_id != request_id || keys::sort_key(event.seq) != sort_key {
            self.findings.push(finding(
                FindingKind::KeyMismatch,
                format!(
                    "stored under {}/{sort_key} but says it is request {:?} seq {}",
                    keys::partition_key(request_id),
                    event.request_id,
                    event.seq
                ),
            ));
            return;
        }
        // An altered event still takes its place in the chain, so that it is the one finding.
        let (prev_hash, hash) = (digest(&event.prev_hash), digest(&event.hash));
        let altered = match (&prev_hash, &hash, compute_hash(&event)) {
            (None, _, _) | (_, None, _) => {
                Some("its hash or prev_hash is not a sha256 digest".into())
            }
            (_, _, Ok(recomputed)) if recomputed == event.hash => None,
            (_, _, Ok(_)) => Some(format!(
                "its content does not match its hash ({} event)",
                event.kind
            )),
            (_, _, Err(error)) => Some(error.to_string()),
        };
        let link = Link {
            seq: event.seq,
            prev_hash: prev_hash.unwrap_or_default(),
            hash: hash.unwrap_or_default(),
            at: event.at_time().map(|at| at.timestamp_millis()),
            kind: event.kind,
            outcome: event.outcome,
        };
        let trail = self.requests.entry(request_id.to_string()).or_default();
        trail.links.push(link);
        if let Some(problem) = altered {
            trail.flagged = true;
            self.findings.push(finding(FindingKind::Altered, problem));
            return;
        }
        match event.kind {
            EventKind::Requested => trail.request = event.data.get("request").map(Value::to_string),
            EventKind::Decided | EventKind::Expired => trail.terminal = true,
            EventKind::Vote => trail.votes.push((
                event.seq,
                event.actor.clone().unwrap_or_default(),
                event
                    .data
                    .get("vote")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )),
            _ => {}
        }
        if event.kind == EventKind::Evaluated && event.outcome.is_some_and(Outcome::is_final) {
            trail.terminal = true;
        }
        if let (EventKind::Evaluated, Some(Outcome::ApprovalRequired), Some(at)) =
            (event.kind, event.outcome, event.at_time())
        {
            let timeout = event.data.get(TIMEOUT_SECONDS).and_then(Value::as_u64);
            if let Some(timeout) = timeout {
                trail.waits_from = Some((at, timeout));
            }
        }
        if matches!(event.kind, EventKind::Evaluated | EventKind::Decided) {
            let revision = event
                .policy_revision
                .as_deref()
                .map(|r| intern(&mut self.revisions, r));
            if let Some(decision) = recorded_decision(&event, revision) {
                trail.decisions.push(decision);
            }
        }
    }

    /// Checks every chain of this partition and re-evaluates every decision of the chains
    /// that hold, with `engines` (one worker's), handing each decision that verified to
    /// `verified` (a backtest replays them). `anchored_here` are the requests checkpoints signed
    /// that fall in this partition: each must be in the export.
    pub fn finish(
        mut self,
        context: &AuditContext,
        engines: &mut Engines<'_>,
        anchored_here: &[&str],
        mut verified: impl FnMut(VerifiedDecision),
    ) -> AuditReport {
        let anchors = context.anchors.as_ref();
        let mut counts = AuditCounts {
            requests: self.requests.len(),
            events: self.events,
            unanchored_events: anchors.map(|_| 0),
            predating_checkpoints: anchors.map(|_| 0),
            ..AuditCounts::default()
        };
        let mut oldest_event: Option<i64> = None;
        let (mut waits, mut timelines) = (WaitTimes::default(), Vec::new());
        if let Some(anchors) = anchors {
            for request_id in anchored_here {
                if self.requests.contains_key(*request_id) {
                    continue;
                }
                let last = anchors
                    .heads
                    .get(*request_id)
                    .and_then(|heads| heads.keys().next_back().copied());
                self.findings.push(Finding::new(
                    *request_id,
                    last,
                    FindingKind::DeletedRequest,
                    format!(
                        "a checkpoint signed its chain up to seq {}, but the export does not hold it",
                        last.unwrap_or_default()
                    ),
                ));
            }
        }
        for (request_id, mut trail) in self.requests {
            counts.decisions += trail.decisions.len();
            if let Some(first) = trail.links.iter().filter_map(|l| l.at).min() {
                oldest_event = Some(oldest_event.map_or(first, |o| o.min(first)));
            }
            let before = self.findings.len();
            check_links(&request_id, &mut trail.links, &mut self.findings);
            waits.count(&trail.links);
            if let Some(anchors) = anchors {
                let anchoring =
                    check_anchors(&request_id, &trail.links, anchors, &mut self.findings);
                for (count, add) in [
                    (&mut counts.unanchored_events, anchoring.unanchored),
                    (&mut counts.predating_checkpoints, anchoring.predating),
                ] {
                    if let Some(count) = count {
                        *count += add;
                    }
                }
            }
            if let Some(as_of) = context.as_of {
                let latest = (as_of + CLOCK_SKEW).timestamp_millis();
                let ahead = trail
                    .links
                    .iter()
                    .find(|l| l.at.is_some_and(|at| at > latest));
                if let Some(ahead) = ahead {
                    self.findings.push(Finding::new(
                        request_id.clone(),
                        Some(ahead.seq),
                        FindingKind::DatedAfterExport,
                        format!(
                            "dated {}, after the export was taken ({})",
                            at_text(ahead.at),
                            crate::time::format_rfc3339_ms(as_of)
                        ),
                    ));
                }
            }
            if let (false, Some((at, timeout)), Some(as_of)) =
                (trail.terminal, trail.waits_from, context.as_of)
            {
                let must_close_by = at + chrono::Duration::seconds(timeout as i64) + CLOSE_GRACE;
                if must_close_by < as_of {
                    self.findings.push(Finding::new(
                        request_id.clone(),
                        trail.links.last().map(|l| l.seq),
                        FindingKind::NoTerminalEvent,
                        format!(
                            "it waited from {} for {timeout} s, yet has no decided or expired event",
                            crate::time::format_rfc3339_ms(at)
                        ),
                    ));
                }
            }
            let flagged_before = trail.flagged || self.findings.len() > before;
            if !flagged_before {
                for decision in trail.decisions {
                    match rebuild(&trail.request, decision, &trail.votes) {
                        Ok(rebuilt) => {
                            if let Some(finding) = engines.recheck(&rebuilt) {
                                self.findings.push(finding);
                            } else {
                                verified(rebuilt);
                            }
                        }
                        Err(finding) => self.findings.push(*finding),
                    }
                }
            }
            if context.timelines > 0 {
                let flagged = self.findings.len() > before || trail.flagged;
                timelines.push(timeline(&request_id, &trail.links, &trail.votes, flagged));
                if timelines.len() > 4 * (context.timelines + MAX_FLAGGED_TIMELINES) {
                    keep_timelines(&mut timelines, context.timelines);
                }
            }
        }
        keep_timelines(&mut timelines, context.timelines);
        AuditReport {
            counts,
            findings: self.findings,
            oldest_event: oldest_event.and_then(DateTime::from_timestamp_millis),
            waits,
            timelines,
        }
    }
}

/// A decision that another policy bundle decides otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedDecision {
    pub request_id: String,
    pub seq: u64,
    pub old: Outcome,
    /// `None` when the other bundle fails to evaluate it (the reasons say why).
    pub new: Option<Outcome>,
    pub old_reasons: Vec<String>,
    pub new_reasons: Vec<String>,
}

/// `decision` evaluated under `engine` with its recorded input; `Some` when the outcome changes.
pub fn backtest(decision: &VerifiedDecision, engine: &PolicyEngine) -> Option<ChangedDecision> {
    let recorded = &decision.decision;
    let (new, new_reasons) =
        match engine.evaluate(&decision.request, &decision.votes, decision.time) {
            Ok(again) if again.decision.outcome == recorded.outcome => return None,
            Ok(again) => (Some(again.decision.outcome), again.decision.reasons),
            Err(error) => (None, vec![error.to_string()]),
        };
    Some(ChangedDecision {
        request_id: recorded.request_id.clone(),
        seq: recorded.seq,
        old: recorded.outcome,
        new,
        old_reasons: recorded.reasons.clone(),
        new_reasons,
    })
}

/// How a request's events stand against the checkpoints, besides the findings.
#[derive(Debug, Default, PartialEq, Eq)]
struct Anchoring {
    /// Newer than what the last checkpoint covers.
    unanchored: usize,
    /// Older than what the first checkpoint looked back on.
    predating: usize,
}

/// Checks a request's sorted links against the heads checkpoints signed for it: each signed
/// head must be in the chain with its hash, and every event dated within what the checkpoints
/// cover must be under a signed head.
fn check_anchors(
    request_id: &str,
    links: &[Link],
    anchors: &Anchors,
    findings: &mut Vec<Finding>,
) -> Anchoring {
    let signed = anchors.heads.get(request_id);
    let last_seq = links.last().map_or(0, |l| l.seq);
    for (seq, hash) in signed.into_iter().flatten() {
        let finding =
            |kind, detail: String| Finding::new(request_id.to_string(), Some(*seq), kind, detail);
        match links.iter().find(|l| l.seq == *seq) {
            None => {
                findings.push(finding(
                    FindingKind::TruncatedChain,
                    format!("a checkpoint signed seq {seq}, but the chain ends at seq {last_seq}"),
                ));
                return Anchoring::default();
            }
            Some(link) if hex::encode(link.hash) != *hash => {
                findings.push(finding(
                    FindingKind::RewrittenChain,
                    "its hash is not the one a checkpoint signed".into(),
                ));
                return Anchoring::default();
            }
            Some(_) => {}
        }
    }
    let anchored = signed
        .and_then(|heads| heads.keys().next_back().copied())
        .unwrap_or_default();
    let covers_from = anchors.covers_from.map(|t| t.timestamp_millis());
    let through = anchors.must_cover_through().map(|t| t.timestamp_millis());
    // Older than what checkpoint 1 looked back on: a log older than its checkpoints, which
    // nothing signed can vouch for. Accepted (counted) only when the auditor says the log
    // predates its checkpoints, and only for a request no checkpoint signed at all: an event
    // after a signed head cannot be older than the checkpoints.
    let predates = |at: Option<i64>| match (at, covers_from) {
        (Some(at), Some(from)) => at < from,
        _ => false,
    };
    let accepted_as_older =
        anchors.accept_older_log && anchored == 0 && links.iter().all(|l| predates(l.at));
    let mut anchoring = Anchoring::default();
    let mut reported = false;
    for link in links.iter().filter(|l| l.seq > anchored) {
        let within = match through {
            Some(through) => link.at.is_none_or(|at| at <= through),
            None => false,
        };
        if accepted_as_older {
            anchoring.predating += 1;
        } else if within {
            if !reported {
                reported = true;
                let (number, until) = anchors.last.unwrap_or_default();
                let when = at_text(link.at);
                let why = if predates(link.at) {
                    "before checkpoint 1 looked back, which an event of a signed request or of a \
                     log that checkpoints covered from its start cannot be"
                } else {
                    "within what the checkpoints cover"
                };
                findings.push(Finding::new(
                    request_id,
                    Some(link.seq),
                    FindingKind::UnanchoredBeforeCheckpoint,
                    format!(
                        "dated {when}, {why} (checkpoint {number} covers until {}), yet under \
                         no signed head: it was added after its time was signed",
                        crate::time::format_rfc3339_ms(until)
                    ),
                ));
            }
        } else {
            anchoring.unanchored += 1;
        }
    }
    anchoring
}

fn at_text(at: Option<i64>) -> String {
    at.and_then(DateTime::from_timestamp_millis).map_or_else(
        || "with no readable time".to_string(),
        crate::time::format_rfc3339_ms,
    )
}

/// Sorts one request's links and reports the first gap, duplicate or broken link.
fn check_links(request_id: &str, links: &mut Vec<Link>, findings: &mut Vec<Finding>) {
    links.sort_by_key(|l| l.seq);
    links.dedup();
    let mut prev_hash = digest(GENESIS_HASH).unwrap_or_default();
    for (expected, link) in (1u64..).zip(links.iter()) {
        let finding = |kind, detail: String| {
            Finding::new(request_id.to_string(), Some(link.seq), kind, detail)
        };
        if link.seq < expected {
            findings.push(finding(
                FindingKind::ConflictingCopies,
                "two different events hold this seq".into(),
            ));
            return;
        }
        if link.seq > expected {
            let missing = if link.seq == expected + 1 {
                format!("seq {expected} is missing")
            } else {
                format!("seqs {expected} to {} are missing", link.seq - 1)
            };
            findings.push(finding(FindingKind::MissingEvent, missing));
            return;
        }
        if link.prev_hash != prev_hash {
            let detail = if link.seq == 1 {
                "the first event does not start from the genesis hash"
            } else {
                "prev_hash is not the previous event's hash (reordered or rewritten)"
            };
            findings.push(finding(FindingKind::BrokenLink, detail.into()));
            return;
        }
        prev_hash = link.hash;
    }
}

fn digest(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

fn recorded_decision(event: &Event, revision: Option<Arc<str>>) -> Option<RecordedDecision> {
    let time = |key: &str| {
        event
            .data
            .get(key)
            .and_then(Value::as_str)
            .and_then(crate::time::parse_rfc3339)
    };
    let votes = match event.data.get(INPUT_VOTES) {
        None if event.kind == EventKind::Evaluated => Ok(Vec::new()),
        None => Err("the event does not record the votes it counted".to_string()),
        Some(votes) => serde_json::from_value(votes.clone()).map_err(|e| e.to_string()),
    };
    Some(RecordedDecision {
        request_id: event.request_id.clone(),
        seq: event.seq,
        kind: event.kind,
        outcome: event.outcome?,
        reasons: event.reasons.clone(),
        policy_revision: revision?,
        input_digest: event.input_digest.clone()?,
        now: time(INPUT_NOW),
        opened_at: time(INPUT_OPENED_AT),
        votes,
    })
}

/// The decision's input again, from the chain: the requested event's request, the votes and
/// the `now` the decision event records.
fn rebuild(
    request: &Option<String>,
    decision: RecordedDecision,
    vote_events: &[(u64, String, String)],
) -> Result<VerifiedDecision, Box<Finding>> {
    let fail = |decision: &RecordedDecision, detail: String| {
        Box::new(Finding::new(
            decision.request_id.clone(),
            Some(decision.seq),
            FindingKind::InputMismatch,
            detail,
        ))
    };
    let Some(request) = request else {
        return Err(fail(&decision, "the chain has no requested event".into()));
    };
    let request: Request = serde_json::from_str(request).map_err(|e| {
        fail(
            &decision,
            format!("the recorded request does not read: {e}"),
        )
    })?;
    let request = PreparedRequest::new(request).map_err(|e| {
        fail(
            &decision,
            format!("the recorded request does not read: {e}"),
        )
    })?;
    let Some(now) = decision.now else {
        return Err(fail(
            &decision,
            "the event does not record its `now`".into(),
        ));
    };
    let votes = decision.votes.clone().map_err(|e| fail(&decision, e))?;
    let unrecorded = votes.iter().find(|vote| {
        !vote_events
            .iter()
            .any(|(_, voter, choice)| *voter == vote.voter && choice == vote.vote.as_str())
    });
    if let Some(vote) = unrecorded {
        return Err(fail(
            &decision,
            format!(
                "it counts a {} by {} that no vote event records",
                vote.vote.as_str(),
                vote.voter
            ),
        ));
    }
    let time = EvaluationTime {
        now,
        opened_at: decision.opened_at,
    };
    Ok(VerifiedDecision {
        decision,
        request,
        votes,
        time,
    })
}

/// One worker's engines, compiled once per revision, and what failed to compile.
pub struct Engines<'a> {
    bundles: &'a HashMap<String, PolicyBundle>,
    compiled: BTreeMap<String, Result<PolicyEngine, String>>,
}

impl Engines<'_> {
    /// A finding when the decision does not come out the same under its own policy.
    fn recheck(&mut self, rebuilt: &VerifiedDecision) -> Option<Finding> {
        let decision = &rebuilt.decision;
        let finding = |kind, detail: String| {
            Finding::new(
                decision.request_id.clone(),
                Some(decision.seq),
                kind,
                detail,
            )
        };
        let revision = &decision.policy_revision;
        if !self.compiled.contains_key(&**revision) {
            let Some(bundle) = self.bundles.get(&**revision) else {
                return Some(finding(
                    FindingKind::PolicyMissing,
                    format!("no bundle for policy revision {revision}"),
                ));
            };
            let engine = PolicyEngine::compile(bundle).map_err(|e| e.to_string());
            self.compiled.insert(revision.to_string(), engine);
        }
        let engine = match self.compiled.get(&**revision)? {
            Ok(engine) => engine,
            Err(problem) => {
                return Some(finding(
                    FindingKind::PolicyInvalid,
                    format!("revision {revision} does not compile: {problem}"),
                ))
            }
        };
        let again = match engine.evaluate(&rebuilt.request, &rebuilt.votes, rebuilt.time) {
            Ok(again) => again,
            Err(error) => {
                return Some(finding(
                    FindingKind::OutcomeMismatch,
                    format!("evaluating it again failed: {error}"),
                ))
            }
        };
        if again.input_digest != decision.input_digest {
            return Some(finding(
                FindingKind::InputMismatch,
                "the input rebuilt from the chain has another digest than the recorded one".into(),
            ));
        }
        let (outcome, reasons) = (again.decision.outcome, &again.decision.reasons);
        if outcome != decision.outcome || *reasons != decision.reasons {
            return Some(finding(
                FindingKind::OutcomeMismatch,
                format!(
                    "recorded {} ({}), evaluated again {} ({})",
                    decision.outcome,
                    decision.reasons.join("; "),
                    outcome,
                    reasons.join("; ")
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyFile;

    fn bundle(source: &str) -> PolicyBundle {
        let files = vec![PolicyFile {
            path: "approvals.rego".into(),
            source: source.into(),
        }];
        PolicyBundle::from_files(files, None).unwrap()
    }

    #[test]
    fn another_bundle_under_the_same_revision_is_a_conflict_whichever_comes_first() {
        let exported = bundle("package approvals\n");
        // What an older, ambiguous revision could have let through: other files, same name.
        let mut other = bundle("package approvals\ndefault x := 1\n");
        other.revision = exported.revision.clone();
        for (first, second) in [(&exported, &other), (&other, &exported)] {
            let mut set = PolicySet::new();
            set.add(first.clone(), "the export");
            set.add_known(second.clone());
            let kinds: Vec<FindingKind> = set.findings.iter().map(|f| f.kind).collect();
            assert!(kinds.contains(&FindingKind::PolicyConflict), "{kinds:?}");
            assert_eq!(set.len(), 1);
        }
        // The same bundle twice is no conflict.
        let mut set = PolicySet::new();
        set.add_known(exported.clone());
        set.add_known(exported.clone());
        assert!(set.findings.is_empty());
    }

    #[test]
    fn every_event_of_a_request_goes_to_one_partition_and_the_partitions_are_used() {
        let mut used = [0usize; 8];
        for n in 0..8_000 {
            let id = format!("req-{n}");
            let partition = partition_of(&id, 8);
            assert_eq!(partition, partition_of(&id, 8));
            used[partition] += 1;
        }
        assert!(used.iter().all(|&count| count > 800), "{used:?}");
        assert_eq!(partition_of("anything", 1), 0);
    }
}
