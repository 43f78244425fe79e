//! Policy folders as a policy author changes them: a copy of the repository's `policies/`,
//! edited, for `regate policy build|sign|push`.

use std::path::Path;

use serde_json::Value;

use crate::repo_root;

/// Copies the repository's policy files (`.rego` and `data.json`) into `to`.
pub fn copy_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".rego") || name == "data.json" {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// Applies `change` to the folder's `data.json`.
pub fn edit_data(folder: &Path, change: impl FnOnce(&mut Value)) {
    let path = folder.join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    change(&mut data);
    std::fs::write(&path, serde_json::to_string_pretty(&data).unwrap()).unwrap();
}

/// erin@example.com joins payments-owners, and the policy's tests say so, as a policy author's
/// change would: the owners' test lists her, and the test of an SRE who is not an owner takes
/// frank, another SRE.
pub fn erin_joins_payments_owners(folder: &Path) {
    edit_data(folder, |data| {
        data["groups"]["payments-owners"]
            .as_array_mut()
            .unwrap()
            .push("erin@example.com".into());
    });
    let tests = folder.join("approvals_test.rego");
    let text = std::fs::read_to_string(&tests).unwrap().replace(
        "d.approvers == [\"alice@example.com\", \"bob@example.com\"]",
        "d.approvers == [\"alice@example.com\", \"bob@example.com\", \"erin@example.com\"]",
    );
    let sre_only = "test_before_30_minutes_sre_is_neither_asked_nor_counted if {";
    let (before, after) = text.split_once(sre_only).unwrap();
    let (body, rest) = after.split_once("\n}\n").unwrap();
    let body = body.replace("erin@example.com", "frank@example.com");
    std::fs::write(&tests, format!("{before}{sre_only}{body}\n}}\n{rest}")).unwrap();
}
