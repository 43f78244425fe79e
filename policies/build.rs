//! Embeds every policy file of this folder (`*.rego` but not `*_test.rego`, and `data.json`)
//! into the crate, so a deployed function carries exactly the bundle it was built with and its
//! `policy_revision` says which one.

#[path = "src/walk.rs"]
mod walk;

use std::fmt::Write as _;
use std::path::PathBuf;

const TEST_SUFFIX: &str = "_test.rego";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let files = match walk::rego_files(&root) {
        Ok(files) => files,
        Err(e) => {
            println!("cargo:warning=cannot read the policy folder: {e}");
            Vec::new()
        }
    };
    let mut code = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for (relative, path) in files.iter().filter(|(r, _)| !r.ends_with(TEST_SUFFIX)) {
        let _ = writeln!(
            code,
            "    ({relative:?}, include_str!({:?})),",
            path.display().to_string()
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
    code.push_str("];\n");
    let data = root.join("data.json");
    if data.exists() {
        let _ = writeln!(
            code,
            "pub const DATA_JSON: Option<&str> = Some(include_str!({:?}));",
            data.display().to_string()
        );
    } else {
        code.push_str("pub const DATA_JSON: Option<&str> = None;\n");
    }
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", data.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("bundle.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
    }
}
