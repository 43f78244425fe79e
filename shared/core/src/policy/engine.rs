//! The compiled policy: both entry points in one regorus RVM program, evaluated on pooled VMs
//! under an instruction limit and a timer, with the hard rules applied to what it returns.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use serde::de::DeserializeOwned;

use crate::canonical::sha256_hex;
use crate::decision::{Decision, Evaluation, MAX_TIMEOUT_SECONDS};
use crate::rules::{self, Groups};
use crate::vote::{Vote, VoteCheck};

use super::input::{policy_input, EvaluationTime, PreparedRequest};
use super::{PolicyBundle, PolicyError, PolicyFile};

pub const DECISION_RULE: &str = "data.approvals.decision";
pub const VOTE_RULE: &str = "data.approvals.vote";
/// Generous for the default policy (microseconds), strict enough that a runaway policy cannot
/// hold a Lambda until its own timeout.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(250);

/// Bounds on one evaluation. The instruction limit is deterministic; the time limit is the
/// backstop for expensive builtins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalLimits {
    pub time: Duration,
    pub instructions: usize,
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self {
            time: DEFAULT_TIME_LIMIT,
            instructions: 2_000_000,
        }
    }
}

/// A bundle compiled once into a regorus RVM program with both entry points, ready to be
/// evaluated many times, from several threads, each evaluation on a pooled VM.
pub struct PolicyEngine {
    program: Arc<Program>,
    data: regorus::Value,
    limits: EvalLimits,
    idle_vms: Mutex<Vec<RegoVM>>,
    revision: String,
    groups: Groups,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Parses and compiles the bundle's policy files (not its tests) and checks that both entry
    /// points exist. Errors name the file and line.
    pub fn compile(bundle: &PolicyBundle) -> Result<Self, PolicyError> {
        let data = prepared_data(bundle)?;
        let mut engine = engine_with(&bundle.policies, &data)?;
        let compiled = engine
            .compile_with_entrypoint(&DECISION_RULE.into())
            .map_err(|e| entry_point_error(DECISION_RULE, &e))?;
        let program = Compiler::compile_from_policy(&compiled, &[DECISION_RULE, VOTE_RULE])
            .map_err(|e| entry_point_error(VOTE_RULE, &e))?;
        Ok(Self::with_program(program, data, bundle))
    }

    /// The engine of `bundle` from its program as [`Self::program_bytes`] wrote it, without
    /// parsing or compiling the Rego: a fraction of compiling's cost at cold start. The
    /// program must come from the same files (a signed bundle carries both, and an audit
    /// re-evaluates every decision from the files); one this regorus cannot load, or without
    /// both entry points, is refused, and the caller compiles instead.
    pub fn from_program(bundle: &PolicyBundle, bytes: &[u8]) -> Result<Self, PolicyError> {
        let data = prepared_data(bundle)?;
        let program = match Program::deserialize_binary(bytes) {
            Ok(regorus::rvm::program::DeserializationResult::Complete(program)) => program,
            Ok(_) => return Err(PolicyError::Compile("the program needs recompiling".into())),
            Err(e) => return Err(PolicyError::Compile(format!("the program: {e}"))),
        };
        for rule in [DECISION_RULE, VOTE_RULE] {
            if program.get_entry_point(rule).is_none() {
                return Err(PolicyError::MissingRule(rule.into()));
            }
        }
        Ok(Self::with_program(Arc::new(program), data, bundle))
    }

    /// The compiled program, serialized (regorus' RVM binary form), for [`Self::from_program`].
    pub fn program_bytes(&self) -> Result<Vec<u8>, PolicyError> {
        self.program
            .serialize_binary()
            .map_err(|e| PolicyError::Compile(format!("serializing the program: {e}")))
    }

    fn with_program(program: Arc<Program>, data: regorus::Value, bundle: &PolicyBundle) -> Self {
        let groups = groups_from_data(&data);
        Self {
            program,
            data,
            limits: EvalLimits::default(),
            idle_vms: Mutex::new(Vec::new()),
            revision: bundle.revision.clone(),
            groups,
        }
    }

    /// Bounds every later evaluation.
    pub fn set_limits(&mut self, limits: EvalLimits) {
        self.limits = limits;
        self.vms().clear();
    }

    /// sha256 of the bundle this engine was compiled from.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// `data.approvals.decision` for `request` with `votes` counted, under the hard rules.
    pub fn evaluate(
        &self,
        request: &PreparedRequest,
        votes: &[Vote],
        time: EvaluationTime,
    ) -> Result<Evaluation, PolicyError> {
        let counted = rules::countable_votes(request, votes);
        let (decision, input_digest): (Decision, String) =
            self.eval(DECISION_RULE, request, &counted, time, None)?;
        if decision.timeout_seconds == 0 || decision.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(PolicyError::BadOutput {
                rule: DECISION_RULE.into(),
                message: format!(
                    "timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}, not {}",
                    decision.timeout_seconds
                ),
            });
        }
        decision.check().map_err(|message| PolicyError::BadOutput {
            rule: DECISION_RULE.into(),
            message,
        })?;
        let decision = rules::enforce(decision, request, &counted, &self.groups);
        Ok(Evaluation {
            decision,
            policy_revision: self.revision.clone(),
            input_digest,
        })
    }

    /// The input [`Self::evaluate`] gives `data.approvals.decision` for `request` with `votes`
    /// (those the hard rules let count), as canonical JSON text: the text its input digest is
    /// the sha256 of, and what another engine running the same policy is to be given.
    pub fn decision_input(
        request: &PreparedRequest,
        votes: &[Vote],
        time: EvaluationTime,
    ) -> Result<String, PolicyError> {
        let counted = rules::countable_votes(request, votes);
        let (canonical, _) =
            policy_input(request, &counted, time, None).map_err(|message| PolicyError::Eval {
                rule: DECISION_RULE.into(),
                message,
            })?;
        Ok(canonical)
    }

    /// `data.approvals.vote` for `voter`, after the hard rules (self-approval, second vote).
    pub fn check_vote(
        &self,
        request: &PreparedRequest,
        votes: &[Vote],
        voter: &str,
        time: EvaluationTime,
    ) -> Result<VoteCheck, PolicyError> {
        if let Some(refusal) = rules::refuse_voter(request, votes, voter) {
            return Ok(refusal);
        }
        let counted = rules::countable_votes(request, votes);
        Ok(self
            .eval(VOTE_RULE, request, &counted, time, Some(voter))?
            .0)
    }

    /// Evaluates `rule`; returns the typed result and the digest of the input's canonical form.
    fn eval<T: DeserializeOwned>(
        &self,
        rule: &str,
        request: &PreparedRequest,
        votes: &[Vote],
        time: EvaluationTime,
        voter: Option<&str>,
    ) -> Result<(T, String), PolicyError> {
        let (canonical, input) =
            policy_input(request, votes, time, voter).map_err(|message| PolicyError::Eval {
                rule: rule.into(),
                message,
            })?;
        let digest = format!("sha256:{}", sha256_hex(&canonical));
        let result = self.eval_value(rule, input)?;
        let parsed = serde_json::to_value(&result)
            .and_then(serde_json::from_value)
            .map_err(|e| PolicyError::BadOutput {
                rule: rule.into(),
                message: e.to_string(),
            })?;
        Ok((parsed, digest))
    }

    /// Evaluates `rule` on an input as given, with no hard rules and no digest: for comparing
    /// engines and for tools. Handlers use [`Self::evaluate`] and [`Self::check_vote`].
    pub fn evaluate_raw(
        &self,
        rule: &str,
        input: regorus::Value,
    ) -> Result<regorus::Value, PolicyError> {
        self.eval_value(rule, input)
    }

    fn eval_value(&self, rule: &str, input: regorus::Value) -> Result<regorus::Value, PolicyError> {
        let mut vm = match self.vms().pop() {
            Some(vm) => vm,
            None => self.new_vm().map_err(|e| PolicyError::Eval {
                rule: rule.into(),
                message: e.to_string(),
            })?,
        };
        vm.set_input(input);
        let result = vm.execute_entry_point_by_name(rule);
        self.vms().push(vm);
        let value = result.map_err(|e| PolicyError::Eval {
            rule: rule.into(),
            message: e.to_string(),
        })?;
        if value == regorus::Value::Undefined {
            return Err(PolicyError::Undefined(rule.into()));
        }
        Ok(value)
    }

    fn new_vm(&self) -> Result<RegoVM, regorus::LimitError> {
        let mut vm = RegoVM::new();
        vm.load_program(self.program.clone());
        vm.set_max_instructions(self.limits.instructions);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig {
            limit: self.limits.time,
            check_interval: TIMER_CHECK_INTERVAL,
        }));
        // Conflicts between rules and data were already ruled out at compile time.
        let _ = vm.set_data(self.data.clone());
        Ok(vm)
    }

    /// The pool survives a panic elsewhere: a poisoned lock still holds usable VMs.
    fn vms(&self) -> std::sync::MutexGuard<'_, Vec<RegoVM>> {
        self.idle_vms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How often the VM looks at the clock, in instructions: often enough to stop within a
/// millisecond, rarely enough to cost nothing measurable.
const TIMER_CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(256) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

fn entry_point_error(rule: &str, error: &impl std::fmt::Display) -> PolicyError {
    let message = error.to_string();
    if message.contains("not found") || message.contains("not a valid rule path") {
        PolicyError::MissingRule(rule.to_string())
    } else {
        PolicyError::Compile(one_line(&message))
    }
}

/// regorus's interpreter with `files` and `data` loaded.
fn engine_with(
    files: &[PolicyFile],
    data: &regorus::Value,
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    for file in files {
        engine
            .add_policy(file.path.clone(), file.source.clone())
            .map_err(|e| PolicyError::Compile(one_line(&e.to_string())))?;
    }
    engine
        .add_data(data.clone())
        .map_err(|e| PolicyError::Data(e.to_string()))?;
    Ok(engine)
}

/// The bundle on regorus's interpreter: its policy files, and its test files too when
/// `with_tests` is set. `regate policy test` runs `test_*` rules on it, and a test holds the VM
/// to agree with it.
pub fn interpreter(
    bundle: &PolicyBundle,
    with_tests: bool,
) -> Result<regorus::Engine, PolicyError> {
    let tests: &[PolicyFile] = if with_tests { &bundle.tests } else { &[] };
    let files: Vec<PolicyFile> = bundle.policies.iter().chain(tests).cloned().collect();
    engine_with(&files, &prepared_data(bundle)?)
}

/// `data.json` as the policy sees it: an object, with each `data.groups` member list a set of
/// lower-case identities, made once at load. Identities compare without case (see
/// [`rules::normalize`]), and `p in data.groups[g]` is a set lookup rather than a scan, which
/// keeps large groups cheap.
fn prepared_data(bundle: &PolicyBundle) -> Result<regorus::Value, PolicyError> {
    let mut data: serde_json::Value =
        serde_json::from_str(&bundle.data_json).map_err(|e| PolicyError::Data(e.to_string()))?;
    let Some(object) = data.as_object_mut() else {
        return Err(PolicyError::Data(
            "the top level must be a JSON object".into(),
        ));
    };
    let groups = match object.remove("groups") {
        Some(serde_json::Value::Object(groups)) => Some(member_sets(groups)),
        Some(other) => Some(regorus::Value::from(other)),
        None => None,
    };
    let mut data = regorus::Value::from(data);
    if let (Some(groups), Ok(object)) = (groups, data.as_object_mut()) {
        object.insert(regorus::Value::from("groups"), groups);
    }
    Ok(data)
}

/// `{group: [members]}` as `{group: {members}}`, lower case; a value that is not a list of
/// strings stays as it is.
fn member_sets(groups: serde_json::Map<String, serde_json::Value>) -> regorus::Value {
    let mut by_name = std::collections::BTreeMap::new();
    for (name, members) in groups {
        let value = match members {
            serde_json::Value::Array(members) if members.iter().all(|m| m.is_string()) => {
                let set: BTreeSet<regorus::Value> = members
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(|id| regorus::Value::from(rules::normalize(id)))
                    .collect();
                regorus::Value::from(set)
            }
            other => regorus::Value::from(other),
        };
        by_name.insert(regorus::Value::from(name), value);
    }
    regorus::Value::from(by_name)
}

/// regorus reports `--> file:line:col`, a source excerpt and `error: message` on separate
/// lines; callers want `file:line:col: message` on one.
fn one_line(message: &str) -> String {
    let location = message.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let detail = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("error: "));
    match (location, detail) {
        (Some(location), Some(detail)) => format!("{location}: {detail}"),
        _ => message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// `data.groups`, normalised, for the hard rule that counts each person once.
fn groups_from_data(data: &regorus::Value) -> Groups {
    let mut groups = Groups::new();
    let Ok(object) = data.as_object() else {
        return groups;
    };
    let Some(Ok(by_name)) = object
        .get(&regorus::Value::from("groups"))
        .map(|g| g.as_object())
    else {
        return groups;
    };
    for (name, members) in by_name.iter() {
        let Ok(name) = name.as_string() else {
            continue;
        };
        let members: BTreeSet<String> = match (members.as_set(), members.as_array()) {
            (Ok(set), _) => set
                .iter()
                .filter_map(|m| m.as_string().ok())
                .map(|s| rules::normalize(s))
                .collect(),
            (_, Ok(list)) => list
                .iter()
                .filter_map(|m| m.as_string().ok())
                .map(|s| rules::normalize(s))
                .collect(),
            _ => continue,
        };
        groups.insert(name.to_string(), members);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(rego: &str, data: &str) -> PolicyBundle {
        PolicyBundle::from_files(
            vec![PolicyFile {
                path: "approvals.rego".into(),
                source: rego.into(),
            }],
            Some(data.into()),
        )
        .unwrap()
    }

    /// A small valid request (unit tests here cannot use the testkit: it links its own copy of
    /// this crate).
    fn dev_deploy() -> crate::Request {
        crate::Request::from_value(
            &serde_json::json!({"id": "r", "action": "deploy", "environment": "dev",
                "resource": {"type": "service", "name": "x"},
                "requester": {"id": "a@example.com", "kind": "human"}, "summary": "s"}),
            None,
        )
        .unwrap()
    }

    const MINIMAL: &str = r#"package approvals

decision := {"outcome": "allow", "reasons": ["ok"], "timeout_seconds": 60} if input.request.action == "deploy"
decision := {"outcome": "deny", "reasons": ["no"]} if input.request.action != "deploy"
vote := {"allowed": true, "reason": ""}
"#;

    #[test]
    fn the_revision_changes_with_any_file_or_data_and_not_with_tests() {
        let a = bundle(MINIMAL, "{}");
        let b = bundle(MINIMAL, r#"{"groups":{}}"#);
        assert_ne!(a.revision, b.revision);
        assert!(a.revision.starts_with("sha256:"));
        let with_test = PolicyBundle::from_files(
            vec![
                PolicyFile {
                    path: "approvals.rego".into(),
                    source: MINIMAL.into(),
                },
                PolicyFile {
                    path: "approvals_test.rego".into(),
                    source: "package approvals\n".into(),
                },
            ],
            Some("{}".into()),
        )
        .unwrap();
        assert_eq!(with_test.revision, a.revision);
        assert_eq!(with_test.tests.len(), 1);
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let b = bundle(
            "package approvals\n\ndecision := {\n  \"outcome\": \n",
            "{}",
        );
        let err = PolicyEngine::compile(&b).unwrap_err().to_string();
        assert!(
            err.contains("approvals.rego:5:1: expecting expression"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_bundle_without_the_entry_points_is_refused() {
        let b = bundle("package approvals\n\nx := 1\n", "{}");
        assert_eq!(
            PolicyEngine::compile(&b).unwrap_err(),
            PolicyError::MissingRule(DECISION_RULE.into())
        );
    }

    #[test]
    fn bad_data_json_is_reported() {
        let b = bundle(MINIMAL, "[1,2]");
        assert!(matches!(
            PolicyEngine::compile(&b),
            Err(PolicyError::Data(_))
        ));
        let b = bundle(MINIMAL, "{");
        assert!(matches!(
            PolicyEngine::compile(&b),
            Err(PolicyError::Data(_))
        ));
    }

    #[test]
    fn a_runaway_policy_is_stopped_by_the_time_limit() {
        let rego = r#"package approvals

big := [x | some a in numbers.range(1, 3000); some b in numbers.range(1, 3000); x := a * b]
decision := {"outcome": "allow", "reasons": [sprintf("%d", [count(big)])]}
vote := {"allowed": true, "reason": ""}
"#;
        let mut engine = PolicyEngine::compile(&bundle(rego, "{}")).unwrap();
        engine.set_limits(EvalLimits {
            time: Duration::from_millis(20),
            instructions: usize::MAX,
        });
        let request = dev_deploy();
        let started = std::time::Instant::now();
        let err = engine
            .evaluate(
                &PreparedRequest::new(request).unwrap(),
                &[],
                EvaluationTime::opening(chrono::Utc::now()),
            )
            .unwrap_err();
        assert!(matches!(err, PolicyError::Eval { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_input_digest_is_the_sha256_of_the_canonical_input() {
        let request = dev_deploy();
        let votes = [Vote {
            voter: "b@example.com".into(),
            vote: crate::Choice::Approve,
            reason: None,
            at: "t".into(),
        }];
        let opened_at = crate::time::parse_rfc3339("2026-01-02T02:04:05Z").unwrap();
        let now = crate::time::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let time = EvaluationTime::since(opened_at, now);
        let prepared = PreparedRequest::new(request.clone()).unwrap();
        let (canonical, _) = policy_input(&prepared, &votes, time, Some("c@example.com")).unwrap();
        let expected = serde_json::json!({"request": request, "votes": votes, "now": "2026-01-02T03:04:05.000Z", "opened_at": "2026-01-02T02:04:05.000Z", "voter": "c@example.com"});
        assert_eq!(
            canonical,
            crate::canonical::to_canonical_json(&expected).unwrap()
        );
        // A decision logged before `opened_at` existed is rebuilt without it.
        let legacy = EvaluationTime {
            now,
            opened_at: None,
        };
        let (canonical, _) = policy_input(&prepared, &votes, legacy, None).unwrap();
        let expected = serde_json::json!({"request": request, "votes": votes, "now": "2026-01-02T03:04:05.000Z"});
        assert_eq!(
            canonical,
            crate::canonical::to_canonical_json(&expected).unwrap()
        );
        let evaluation = PolicyEngine::compile(&bundle(MINIMAL, "{}"))
            .unwrap()
            .evaluate(&prepared, &votes, time)
            .unwrap();
        let (canonical, _) = policy_input(&prepared, &votes, time, None).unwrap();
        assert_eq!(
            evaluation.input_digest,
            format!("sha256:{}", sha256_hex(canonical))
        );
    }

    #[test]
    fn the_policy_sees_how_long_the_approval_has_waited_and_its_offsets_are_checked() {
        let rego = r#"package approvals

waited := time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(input.opened_at)
decision := {"outcome": "approval_required", "reasons": [sprintf("waited %d s", [waited / 1000000000])],
  "timeout_seconds": 3600, "remind_after_seconds": data.remind, "reevaluate_after_seconds": [1800]}
vote := {"allowed": true, "reason": ""}
"#;
        let opened_at = crate::time::parse_rfc3339("2026-01-02T03:00:00Z").unwrap();
        let now = crate::time::parse_rfc3339("2026-01-02T03:30:00Z").unwrap();
        let prepared = PreparedRequest::new(dev_deploy()).unwrap();
        let evaluate = |remind: &str| {
            PolicyEngine::compile(&bundle(rego, &format!(r#"{{"remind": {remind}}}"#)))
                .unwrap()
                .evaluate(&prepared, &[], EvaluationTime::since(opened_at, now))
        };
        let decision = evaluate("[900, 2700]").unwrap().decision;
        assert_eq!(decision.reasons, vec!["waited 1800 s".to_string()]);
        assert_eq!(decision.remind_after_seconds, vec![900, 2700]);
        assert_eq!(decision.reevaluate_after_seconds, vec![1800]);
        for (bad, named) in [
            ("[2700, 900]", "ascending"),
            ("[900, 900]", "ascending"),
            ("[0]", "between 1 and"),
            ("[3600]", "between 1 and"),
            (
                &format!("{:?}", (1..=21).collect::<Vec<u64>>()),
                "at most 20",
            ),
        ] {
            let error = evaluate(bad).unwrap_err();
            assert!(
                matches!(&error, PolicyError::BadOutput { message, .. }
                    if message.contains("remind_after_seconds") && message.contains(named)),
                "{bad}: {error}"
            );
        }
    }
}
