//! A policy bundle in memory: its policy files, its test files, `data.json`, and the revision
//! that names it in every recorded decision.

use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;

use super::PolicyError;

/// Files ending in this are tests: not part of the revision or the deployed policy.
pub const TEST_SUFFIX: &str = "_test.rego";

/// One source file of a bundle, with its path relative to the bundle root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Builds a bundle from sources already in memory (a bundle embedded in a function binary).
    /// Files ending in `_test.rego` are tests: they are not part of the revision or the deployed
    /// policy.
    pub fn from_files(
        files: Vec<PolicyFile>,
        data_json: Option<String>,
    ) -> Result<Self, PolicyError> {
        check_paths(&files)?;
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

/// Refuses a path that could make two different bundles hash alike, or that points outside the
/// bundle: empty, absolute, with an empty, `.` or `..` part, with a NUL or a line break, or
/// the same as another file's, or `data.json` itself.
fn check_paths(files: &[PolicyFile]) -> Result<(), PolicyError> {
    let mut seen = std::collections::HashSet::new();
    for file in files {
        let path = file.path.as_str();
        let problem = if path.contains(['\0', '\n', '\r']) {
            Some("holds a NUL or a line break")
        } else if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
            Some("is absolute, or has an empty, `.` or `..` part")
        } else if path == "data.json" {
            Some("is data.json's")
        } else if !seen.insert(path) {
            Some("is there twice")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(PolicyError::Path(format!("{path:?} {problem}")));
        }
    }
    Ok(())
}

/// A bundle as the decision log keeps it (`pk = POLICY#<revision>`): the policy files and
/// `data.json`, enough to compile it again and to recompute its revision. Tests stay out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedBundle {
    pub revision: String,
    pub policies: Vec<PolicyFile>,
    pub data_json: String,
}

impl PolicyBundle {
    pub fn archive(&self) -> ArchivedBundle {
        ArchivedBundle {
            revision: self.revision.clone(),
            policies: self.policies.clone(),
            data_json: self.data_json.clone(),
        }
    }
}

impl ArchivedBundle {
    /// The bundle again, refused unless its files still hash to the revision it claims.
    pub fn restore(self) -> Result<PolicyBundle, PolicyError> {
        let bundle = PolicyBundle::from_files(self.policies, Some(self.data_json))?;
        if bundle.revision != self.revision {
            return Err(PolicyError::Revision(format!(
                "it claims {} but its files hash to {}",
                self.revision, bundle.revision
            )));
        }
        Ok(bundle)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> PolicyFile {
        PolicyFile {
            path: path.into(),
            source: "package approvals\n".into(),
        }
    }

    #[test]
    fn a_path_that_could_be_read_two_ways_or_leaves_the_bundle_is_refused() {
        let one_name_for_two = format!("a.rego\0{}\nb.rego", sha256_hex("package approvals\n"));
        for paths in [
            vec![one_name_for_two.as_str()],
            vec!["a\nb.rego"],
            vec!["a\rb.rego"],
            vec!["../outside.rego"],
            vec!["rules/../a.rego"],
            vec!["/etc/a.rego"],
            vec!["rules//a.rego"],
            vec!["./a.rego"],
            vec!["a.rego", "a.rego"],
            vec!["data.json"],
        ] {
            let files = paths.iter().map(|p| file(p)).collect();
            let refused = PolicyBundle::from_files(files, None);
            assert!(
                matches!(refused, Err(PolicyError::Path(_))),
                "{paths:?}: {refused:?}"
            );
        }
        // What a bundle folder holds is fine.
        let files = vec![file("a.rego"), file("rules/b.rego"), file("a_test.rego")];
        assert!(PolicyBundle::from_files(files, None).is_ok());
    }

    #[test]
    fn an_archived_bundle_with_a_refused_path_does_not_restore() {
        let bundle = PolicyBundle::from_files(vec![file("a.rego")], None).unwrap();
        let mut archived = bundle.archive();
        archived.policies.push(file("a.rego"));
        assert!(matches!(archived.restore(), Err(PolicyError::Path(_))));
    }
}
