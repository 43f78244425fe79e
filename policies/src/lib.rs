//! The policy bundle of this folder, embedded at build time, and the tools that work on bundle
//! folders on disk. Functions compile the embedded bundle once at cold start with [`bundle`];
//! editing a `.rego` file or `data.json` and rebuilding deploys a new revision. The CLI loads
//! any folder with [`load_dir`] and runs its `test_*` rules with [`run_tests`].

mod walk;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use regate_core::policy::{interpreter, PolicyBundle, PolicyEngine, PolicyError, PolicyFile};
use regorus::utils::limits::ExecutionTimerConfig;

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// The bundle this crate was built with.
pub fn bundle() -> Result<PolicyBundle, PolicyError> {
    let files = FILES
        .iter()
        .map(|(path, source)| PolicyFile {
            path: (*path).to_string(),
            source: (*source).to_string(),
        })
        .collect();
    PolicyBundle::from_files(files, DATA_JSON.map(str::to_string))
}

/// The bundle this crate was built with, compiled: what every function does once at cold start.
pub fn compiled() -> Result<PolicyEngine, PolicyError> {
    PolicyEngine::compile(&bundle()?)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Loads every `.rego` file below `dir` (tests included) and `dir/data.json` if present.
pub fn load_dir(dir: &Path) -> Result<PolicyBundle, LoadError> {
    let io = |path: &Path, e: std::io::Error| LoadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for (relative, path) in walk::rego_files(dir).map_err(|e| io(dir, e))? {
        let source = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        files.push(PolicyFile {
            path: relative,
            source,
        });
    }
    let data_path = dir.join("data.json");
    let data_json = match std::fs::read_to_string(&data_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&data_path, e)),
    };
    Ok(PolicyBundle::from_files(files, data_json)?)
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
    let mut engine = interpreter(bundle, true)?;
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: Duration::from_secs(5),
        check_interval: NonZeroU32::MIN,
    });
    let files: Vec<&PolicyFile> = bundle.policies.iter().chain(&bundle.tests).collect();
    let mut outcomes = Vec::new();
    for name in test_rule_names(&files) {
        let mut run = engine.clone();
        let (passed, message) = match run.eval_rule(name.clone()) {
            Ok(regorus::Value::Bool(true)) => (true, None),
            Ok(regorus::Value::Undefined) => (false, Some("undefined".into())),
            Ok(other) => (
                false,
                Some(format!(
                    "evaluated to {}",
                    other.to_json_str().unwrap_or_default()
                )),
            ),
            Err(e) => (false, Some(e.to_string())),
        };
        outcomes.push(TestOutcome {
            name,
            passed,
            message,
        });
    }
    Ok(outcomes)
}

/// `data.<package>.test_<name>` for each test rule head, in file order, once each.
fn test_rule_names(files: &[&PolicyFile]) -> Vec<String> {
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

fn is_rule_head(line: &str, name: &str) -> bool {
    line.strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '{', ':', '=', '[']))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use regate_core::policy::{DECISION_RULE, VOTE_RULE};

    fn here() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_embedded_bundle_is_the_folder_on_disk() {
        let embedded = bundle().unwrap();
        let on_disk = load_dir(here()).unwrap();
        assert_eq!(embedded.revision, on_disk.revision);
        assert!(embedded.tests.is_empty());
        assert!(!on_disk.tests.is_empty());
    }

    #[test]
    fn a_missing_folder_is_a_named_io_error() {
        let error = load_dir(&here().join("no-such-folder")).unwrap_err();
        assert!(error.to_string().contains("no-such-folder"), "{error}");
    }

    #[test]
    fn test_rules_are_found_per_package() {
        let file = PolicyFile {
            path: "a_test.rego".into(),
            source: "package approvals_test\n\ntest_one if { true }\ntest_two := true\nnot_a_test if { true }\ntest_one if { false }\n".into(),
        };
        assert_eq!(
            test_rule_names(&[&file]),
            [
                "data.approvals_test.test_one",
                "data.approvals_test.test_two"
            ]
        );
    }

    /// The default data's year-end freeze is a real example: a production deploy inside it is
    /// denied, the same deploy on a calm day waits for approval. The local stack and the tests
    /// pin their clocks to a calm day, so they never depend on the real date.
    #[test]
    fn the_default_freeze_window_denies_production_changes_inside_it_only() {
        let engine = compiled().unwrap();
        let example = here().join("examples/03-prod-deploy-known-service.json");
        let example: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
        let request = regate_core::Request::from_value(&example["request"], None).unwrap();
        let prepared = regate_core::PreparedRequest::new(request).unwrap();
        let outcome_at = |when: &str| {
            let now = regate_core::time::parse_rfc3339(when).unwrap();
            engine
                .evaluate(&prepared, &[], regate_core::EvaluationTime::opening(now))
                .unwrap()
                .decision
                .outcome
        };
        assert_eq!(
            outcome_at("2026-12-24T12:00:00Z"),
            regate_core::Outcome::Deny
        );
        assert_eq!(
            outcome_at("2026-06-01T12:00:00Z"),
            regate_core::Outcome::ApprovalRequired
        );
    }

    /// The deployed path runs the RVM; `regate policy test` runs the interpreter. Both must agree
    /// on the default policy for every example input.
    #[test]
    fn the_vm_and_the_interpreter_agree_on_every_example() {
        let bundle = load_dir(here()).unwrap();
        let engine = PolicyEngine::compile(&bundle).unwrap();
        let mut interpreter = interpreter(&bundle, false).unwrap();
        let mut checked = 0;
        for entry in std::fs::read_dir(here().join("examples")).unwrap() {
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
                match engine.evaluate_raw(rule, input) {
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
}
