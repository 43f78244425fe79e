//! Finds the `.rego` files of a bundle folder, in path order, with their paths relative to it
//! (`/`-separated). Folders a bundle never holds policies in (`src`, `examples`, `target`) are
//! skipped. Shared by `build.rs`, which embeds the bundle, and [`crate::load_dir`].

use std::path::{Path, PathBuf};

pub fn rego_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    collect(root, root, &mut found)?;
    found.sort();
    Ok(found)
}

fn collect(dir: &Path, root: &Path, found: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if !["src", "examples", "target"].contains(&name.as_str()) {
                collect(&path, root, found)?;
            }
        } else if name.ends_with(".rego") {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative: Vec<_> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect();
            found.push((relative.join("/"), path));
        }
    }
    Ok(())
}
