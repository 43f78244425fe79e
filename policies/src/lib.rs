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

/// A policy folder ([`load_dir`]) or a bundle file (OPA's format, from `regate policy build` or
/// `opa build`).
pub fn load(path: &Path) -> Result<PolicyBundle, LoadError> {
    if !path.is_file() {
        return load_dir(path);
    }
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(regate_core::policy::OpaBundle::read(&bytes)?.bundle)
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
    let mut outcomes = Vec::new();
    for name in test_rule_names(&mut engine) {
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

/// `data.<package>.test_<name>` for each test rule, in load order, once each: read from regorus'
/// own parse of the loaded files (its `unstable` AST), so a `test_` line inside a string or a
/// comment is no rule, and an indented or `default` one is. Functions (`test_f(x)`) are not
/// tests, as in OPA.
fn test_rule_names(engine: &mut regorus::Engine) -> Vec<String> {
    use regorus::unstable::{Rule, RuleHead};
    use regorus::utils::get_path_string;
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for module in engine.get_modules() {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        for rule in &module.policy {
            let head = match rule.as_ref() {
                Rule::Spec {
                    head: RuleHead::Compr { refr, .. },
                    ..
                }
                | Rule::Default { refr, .. } => refr,
                Rule::Spec { .. } => continue,
            };
            let Ok(name) = get_path_string(head, None) else {
                continue;
            };
            let full = format!("{package}.{name}");
            if name.starts_with("test_") && !name.contains('.') && seen.insert(full.clone()) {
                names.push(full);
            }
        }
    }
    names
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

    /// The test rules of `sources` (policy files of an otherwise empty bundle).
    fn tests_in(sources: &[&str]) -> Vec<String> {
        let files = sources
            .iter()
            .enumerate()
            .map(|(i, source)| PolicyFile {
                path: format!("t{i}.rego"),
                source: source.to_string(),
            })
            .collect();
        let bundle = PolicyBundle::from_files(files, None).unwrap();
        test_rule_names(&mut interpreter(&bundle, true).unwrap())
    }

    #[test]
    fn test_rules_are_found_per_package_once_each() {
        let found = tests_in(&["package approvals_test\n\ntest_one if { true }\ntest_two := true\nnot_a_test if { true }\ntest_one if { false }\n"]);
        assert_eq!(
            found,
            [
                "data.approvals_test.test_one",
                "data.approvals_test.test_two"
            ]
        );
    }

    #[test]
    fn only_real_test_rules_count_in_tricky_files() {
        let tricky = r#"package a.b_test

# test_commented if { true }
message := `
test_in_a_raw_string if { true }
`
other := "test_in_a_string if { true }"

  test_indented if {
    true
  }
default test_defaulted := false
test_defaulted if { true }
test_function(x) if { x }
test_set contains 1
test_object.key := 1
testing_prefix_only if { true }
test_last if { true }"#;
        assert_eq!(
            tests_in(&[tricky, "package second\ntest_other := true"]),
            [
                "data.a.b_test.test_indented",
                "data.a.b_test.test_defaulted",
                "data.a.b_test.test_last",
                "data.second.test_other",
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
        let request = regate_core::Request::from_policy_input(&example, None).unwrap();
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
    /// on the default policy for every example input, and so must the RVM program a bundle
    /// carries, loaded instead of compiled.
    #[test]
    fn the_vm_and_the_interpreter_agree_on_every_example() {
        let bundle = load_dir(here()).unwrap();
        let engine = PolicyEngine::compile(&bundle).unwrap();
        let loaded = PolicyEngine::from_program(&bundle, &engine.program_bytes().unwrap()).unwrap();
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
                assert_eq!(
                    format!("{:?}", loaded.evaluate_raw(rule, input.clone())),
                    format!("{:?}", engine.evaluate_raw(rule, input.clone())),
                    "{} {rule}: the loaded program",
                    path.display()
                );
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
