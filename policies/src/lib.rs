//! The policy bundle of this folder, embedded at build time. Functions compile it once at cold
//! start with [`bundle`]; editing a `.rego` file or `data.json` and rebuilding deploys a new
//! revision.

use regate_core::policy::{PolicyBundle, PolicyError, PolicyFile};

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_bundle_is_the_folder_on_disk() {
        let embedded = super::bundle().unwrap();
        let on_disk =
            regate_core::PolicyBundle::load_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        assert_eq!(embedded.revision, on_disk.revision);
        assert!(embedded.tests.is_empty());
    }
}
