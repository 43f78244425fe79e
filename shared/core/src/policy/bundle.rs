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
