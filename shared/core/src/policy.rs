//! The policy engine on regorus. A bundle (a folder of `.rego` files plus `data.json`) is
//! compiled once at cold start; every evaluation works on a clone of the prepared engine,
//! under a time limit, with time given through the input rather than read inside Rego.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use serde::de::DeserializeOwned;

use crate::canonical::{canonical_text, sha256_hex};
use crate::decision::{Decision, Evaluation, MAX_TIMEOUT_SECONDS};
use crate::request::Request;
use crate::rules::{self, Groups};
use crate::vote::{Vote, VoteCheck};

pub const DECISION_RULE: &str = "data.approvals.decision";
pub const VOTE_RULE: &str = "data.approvals.vote";
/// Generous for the default policy (microseconds), strict enough that a runaway policy cannot
/// hold a Lambda until its own timeout.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(250);
const TEST_SUFFIX: &str = "_test.rego";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("data.json is not valid: {0}")]
    Data(String),
    #[error("the policy does not define {0}")]
    MissingRule(String),
    #[error("evaluating {rule} failed: {message}")]
    Eval { rule: String, message: String },
    #[error("{0} is undefined for this input")]
    Undefined(String),
    #[error("{rule} returned an unusable value: {message}")]
    BadOutput { rule: String, message: String },
}

/// One source file of a bundle, with its path relative to the bundle root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub path: String,
    pub source: String,
}

/// The policy files, the test files and the data of a bundle, and the bundle's revision.
#[derive(Debug, Clone)]
pub struct PolicyBundle {
    pub policies: Vec<PolicyFile>,
    pub tests: Vec<PolicyFile>,
    pub data_json: String,
    pub revision: String,
}

impl PolicyBundle {
    /// Loads every `.rego` file below `dir` and `dir/data.json` (if present).
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |path: &Path, e: std::io::Error| PolicyError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut paths = Vec::new();
        collect_rego_files(dir, &mut paths).map_err(|e| io(dir, e))?;
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let source = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>();
            files.push(PolicyFile {
                path: relative.join("/"),
                source,
            });
        }
        let data_path = dir.join("data.json");
        let data_json = match std::fs::read_to_string(&data_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&data_path, e)),
        };
        Self::from_files(files, data_json)
    }

    /// Builds a bundle from sources already in memory (a bundle embedded in a function binary).
    /// Files ending in `_test.rego` are tests: they are not part of the revision or the deployed
    /// policy.
    pub fn from_files(
        files: Vec<PolicyFile>,
        data_json: Option<String>,
    ) -> Result<Self, PolicyError> {
        let (mut tests, mut policies): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|f| f.path.ends_with(TEST_SUFFIX));
        if policies.is_empty() {
            return Err(PolicyError::Compile(
                "the bundle has no .rego policy files".into(),
            ));
        }
        policies.sort_by(|a, b| a.path.cmp(&b.path));
        tests.sort_by(|a, b| a.path.cmp(&b.path));
        let data_json = data_json.unwrap_or_else(|| "{}".to_string());
        let revision = revision_of(&policies, &data_json);
        Ok(Self {
            policies,
            tests,
            data_json,
            revision,
        })
    }
}

fn collect_rego_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rego_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            out.push(path);
        }
    }
    Ok(())
}

/// `sha256:` over each file (sorted by path) as `path NUL sha256(content) LF`, then `data.json`
/// the same way: a file's name and content both matter, and no two bundles collide by concatenation.
fn revision_of(policies: &[PolicyFile], data_json: &str) -> String {
    let mut manifest = String::new();
    let data = PolicyFile {
        path: "data.json".into(),
        source: data_json.into(),
    };
    for file in policies.iter().chain(std::iter::once(&data)) {
        manifest.push_str(&file.path);
        manifest.push('\0');
        manifest.push_str(&sha256_hex(&file.source));
        manifest.push('\n');
    }
    format!("sha256:{}", sha256_hex(manifest))
}

/// A validated request turned once into what every evaluation of it needs: its canonical JSON
/// (for the input digest) and its regorus value (for the VM). A request is evaluated several
/// times in its life (first, then after each vote), and this work does not change between them.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    request: Request,
    canonical: String,
    value: regorus::Value,
}

impl PreparedRequest {
    pub fn new(request: Request) -> Result<Self, PolicyError> {
        let json = serde_json::to_value(&request).map_err(|e| PolicyError::Eval {
            rule: "input.request".into(),
            message: e.to_string(),
        })?;
        let canonical = canonical_text(&json).map_err(|e| PolicyError::Eval {
            rule: "input.request".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            request,
            canonical,
            value: regorus::Value::from(json),
        })
    }

    pub fn request(&self) -> &Request {
        &self.request
    }
}

impl std::ops::Deref for PreparedRequest {
    type Target = Request;
    fn deref(&self) -> &Request {
        &self.request
    }
}

/// The policy input `{"now", "request", "voter"?, "votes"}`: its canonical text (keys in that
/// order, which is RFC 8785's) and the same document as a regorus value.
fn policy_input(
    request: &PreparedRequest,
    votes: &[Vote],
    now: DateTime<Utc>,
    voter: Option<&str>,
) -> Result<(String, regorus::Value), String> {
    let now = crate::time::format_rfc3339_ms(now);
    let votes_json = serde_json::to_value(votes).map_err(|e| e.to_string())?;
    let votes_text = canonical_text(&votes_json).map_err(|e| e.to_string())?;
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    let mut canonical = String::with_capacity(request.canonical.len() + votes_text.len() + 64);
    canonical.push_str("{\"now\":");
    canonical.push_str(&quoted(&now));
    canonical.push_str(",\"request\":");
    canonical.push_str(&request.canonical);
    if let Some(voter) = voter {
        canonical.push_str(",\"voter\":");
        canonical.push_str(&quoted(voter));
    }
    canonical.push_str(",\"votes\":");
    canonical.push_str(&votes_text);
    canonical.push('}');

    let mut value = std::collections::BTreeMap::new();
    value.insert(regorus::Value::from("now"), regorus::Value::from(now));
    value.insert(regorus::Value::from("request"), request.value.clone());
    value.insert(
        regorus::Value::from("votes"),
        regorus::Value::from(votes_json),
    );
    if let Some(voter) = voter {
        value.insert(regorus::Value::from("voter"), regorus::Value::from(voter));
    }
    Ok((canonical, regorus::Value::from(value)))
}

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
    compiled: regorus::CompiledPolicy,
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
        let groups = groups_from_data(&data);
        Ok(Self {
            program,
            compiled,
            data,
            limits: EvalLimits::default(),
            idle_vms: Mutex::new(Vec::new()),
            revision: bundle.revision.clone(),
            groups,
        })
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
        now: DateTime<Utc>,
    ) -> Result<Evaluation, PolicyError> {
        let counted = rules::countable_votes(request, votes);
        let (decision, input_digest): (Decision, String) =
            self.eval(DECISION_RULE, request, &counted, now, None)?;
        if decision.timeout_seconds == 0 || decision.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(PolicyError::BadOutput {
                rule: DECISION_RULE.into(),
                message: format!(
                    "timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}, not {}",
                    decision.timeout_seconds
                ),
            });
        }
        let decision = rules::enforce(decision, request, &counted, &self.groups);
        Ok(Evaluation {
            decision,
            policy_revision: self.revision.clone(),
            input_digest,
        })
    }

    /// `data.approvals.vote` for `voter`, after the hard rules (self-approval, second vote).
    pub fn check_vote(
        &self,
        request: &PreparedRequest,
        votes: &[Vote],
        voter: &str,
        now: DateTime<Utc>,
    ) -> Result<VoteCheck, PolicyError> {
        if let Some(refusal) = rules::refuse_voter(request, votes, voter) {
            return Ok(refusal);
        }
        let counted = rules::countable_votes(request, votes);
        Ok(self.eval(VOTE_RULE, request, &counted, now, Some(voter))?.0)
    }

    /// Evaluates `rule`; returns the typed result and the digest of the input's canonical form.
    fn eval<T: DeserializeOwned>(
        &self,
        rule: &str,
        request: &PreparedRequest,
        votes: &[Vote],
        now: DateTime<Utc>,
        voter: Option<&str>,
    ) -> Result<(T, String), PolicyError> {
        let (canonical, input) =
            policy_input(request, votes, now, voter).map_err(|message| PolicyError::Eval {
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
        let mut vm = RegoVM::new_with_policy(self.compiled.clone());
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

/// An interpreter engine with the policy files and data loaded.
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

/// `data.json` as the policy sees it: an object, with `data.groups` members in lower case so
/// identities compare without case (see [`rules::normalize`]).
fn prepared_data(bundle: &PolicyBundle) -> Result<regorus::Value, PolicyError> {
    let mut data: serde_json::Value =
        serde_json::from_str(&bundle.data_json).map_err(|e| PolicyError::Data(e.to_string()))?;
    let Some(object) = data.as_object_mut() else {
        return Err(PolicyError::Data(
            "the top level must be a JSON object".into(),
        ));
    };
    if let Some(serde_json::Value::Object(groups)) = object.get_mut("groups") {
        for members in groups.values_mut() {
            if let serde_json::Value::Array(members) = members {
                for member in members.iter_mut() {
                    if let serde_json::Value::String(id) = member {
                        *id = rules::normalize(id);
                    }
                }
            }
        }
    }
    Ok(regorus::Value::from(data))
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

fn is_rule_head(line: &str, name: &str) -> bool {
    line.strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '{', ':', '=', '[']))
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
        let (Ok(name), Ok(members)) = (name.as_string(), members.as_array()) else {
            continue;
        };
        let members: BTreeSet<String> = members
            .iter()
            .filter_map(|m| m.as_string().ok().map(|s| rules::normalize(s)))
            .collect();
        groups.insert(name.to_string(), members);
    }
    groups
}

/// The result of one `test_*` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    pub message: Option<String>,
}

/// Runs every `test_*` rule of the bundle's test and policy files (OPA's convention: a test
/// passes when its rule evaluates to `true`).
pub fn run_tests(bundle: &PolicyBundle) -> Result<Vec<TestOutcome>, PolicyError> {
    let all: Vec<PolicyFile> = bundle
        .policies
        .iter()
        .chain(&bundle.tests)
        .cloned()
        .collect();
    let mut engine = engine_with(&all, &prepared_data(bundle)?)?;
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: Duration::from_secs(5),
        check_interval: NonZeroU32::MIN,
    });
    let mut outcomes = Vec::new();
    for name in test_rule_names(&all) {
        let mut run = engine.clone();
        let outcome = match run.eval_rule(name.clone()) {
            Ok(regorus::Value::Bool(true)) => TestOutcome {
                name,
                passed: true,
                message: None,
            },
            Ok(regorus::Value::Undefined) => TestOutcome {
                name,
                passed: false,
                message: Some("undefined".into()),
            },
            Ok(other) => TestOutcome {
                name,
                passed: false,
                message: Some(format!(
                    "evaluated to {}",
                    other.to_json_str().unwrap_or_default()
                )),
            },
            Err(e) => TestOutcome {
                name,
                passed: false,
                message: Some(e.to_string()),
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// `data.<package>.test_<name>` for each test rule head, in file order, once each.
fn test_rule_names(files: &[PolicyFile]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for file in files {
        let mut package = None;
        for line in file.source.lines() {
            if let Some(rest) = line.strip_prefix("package ") {
                package = Some(rest.trim().to_string());
                continue;
            }
            let Some(package) = &package else { continue };
            if !line.starts_with("test_") {
                continue;
            }
            let rule: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let full = format!("data.{package}.{rule}");
            if is_rule_head(line, &rule) && seen.insert(full.clone()) {
                names.push(full);
            }
        }
    }
    names
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
        let request = crate::Request::from_value(
            &serde_json::json!({"id": "r", "action": "deploy", "environment": "dev",
                "resource": {"type": "service", "name": "x"},
                "requester": {"id": "a@example.com", "kind": "human"}, "summary": "s"}),
            None,
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = engine
            .evaluate(&PreparedRequest::new(request).unwrap(), &[], Utc::now())
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
        let request = crate::Request::from_value(
            &serde_json::json!({"id": "r", "action": "deploy", "environment": "dev",
                "resource": {"type": "service", "name": "x"},
                "requester": {"id": "a@example.com", "kind": "human"}, "summary": "s"}),
            None,
        )
        .unwrap();
        let votes = [Vote {
            voter: "b@example.com".into(),
            vote: crate::Choice::Approve,
            reason: None,
            at: "t".into(),
        }];
        let now = crate::time::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let prepared = PreparedRequest::new(request.clone()).unwrap();
        let (canonical, _) = policy_input(&prepared, &votes, now, Some("c@example.com")).unwrap();
        let expected = serde_json::json!({"request": request, "votes": votes, "now": "2026-01-02T03:04:05.000Z", "voter": "c@example.com"});
        assert_eq!(
            canonical,
            crate::canonical::to_canonical_json(&expected).unwrap()
        );
        let evaluation = PolicyEngine::compile(&bundle(MINIMAL, "{}"))
            .unwrap()
            .evaluate(&prepared, &votes, now)
            .unwrap();
        let (canonical, _) = policy_input(&prepared, &votes, now, None).unwrap();
        assert_eq!(
            evaluation.input_digest,
            format!("sha256:{}", sha256_hex(canonical))
        );
    }

    /// The deployed path runs the RVM; `regate policy test` runs the interpreter. Both must agree
    /// on the default policy for every example input.
    #[test]
    fn the_vm_and_the_interpreter_agree_on_every_example() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let bundle = PolicyBundle::load_dir(&root).unwrap();
        let engine = PolicyEngine::compile(&bundle).unwrap();
        let mut interpreter =
            engine_with(&bundle.policies, &prepared_data(&bundle).unwrap()).unwrap();
        let mut checked = 0;
        for entry in std::fs::read_dir(root.join("examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() == "expected.json" {
                continue;
            }
            let example: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let voters = [
                "alice@example.com",
                "ivan@example.com",
                "erin@example.com",
                "mallory@example.com",
                "dev@example.com",
                "ci-bot",
            ];
            let inputs = std::iter::once(example.clone()).chain(voters.iter().map(|voter| {
                let mut with_voter = example.clone();
                with_voter["voter"] = serde_json::Value::from(*voter);
                with_voter
            }));
            for (input, rule) in inputs.flat_map(|i| [(i.clone(), DECISION_RULE), (i, VOTE_RULE)]) {
                let input = regorus::Value::from(input);
                interpreter.set_input(input.clone());
                let expected = interpreter.eval_rule(rule.to_string()).unwrap();
                let actual = engine.eval_value(rule, input.clone());
                match actual {
                    Ok(actual) => assert_eq!(actual, expected, "{} {rule}", path.display()),
                    Err(PolicyError::Undefined(_)) => {
                        assert_eq!(expected, regorus::Value::Undefined)
                    }
                    Err(e) => panic!("{}: {e}", path.display()),
                }
                checked += 1;
            }
        }
        assert!(checked >= 9 * 14);
    }

    #[test]
    fn test_rules_are_found_per_package() {
        let files = vec![PolicyFile {
            path: "a_test.rego".into(),
            source: "package approvals_test\n\ntest_one if { true }\ntest_two := true\nnot_a_test if { true }\ntest_one if { false }\n".into(),
        }];
        assert_eq!(
            test_rule_names(&files),
            [
                "data.approvals_test.test_one",
                "data.approvals_test.test_two"
            ]
        );
    }
}
