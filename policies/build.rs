//! Embeds every policy file of this folder (`*.rego` but not `*_test.rego`, and `data.json`)
//! into the crate, so a deployed function carries exactly the bundle it was built with and its
//! `policy_revision` says which one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "src" && name != "examples" && name != "target" {
                collect(&path, root, out);
            }
        } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, path));
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for (relative, path) in &files {
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
