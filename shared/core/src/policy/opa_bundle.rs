//! A policy bundle as a file, in OPA's format: a gzipped tar of `.manifest` (`revision`,
//! `roots`), `data.json`, the `.rego` files and, when signed, `.signatures.json`. A bundle made
//! by `opa build` (and signed by `opa sign --signing-alg ES256`) reads here too.
//!
//! Writing is deterministic: the same files give the same bytes (entries sorted, no times, no
//! owners). Signing follows OPA's bundle-signing format: `.signatures.json` is
//! `{"signatures": [JWT]}`, and the JWT's payload lists every other file with its SHA-256. JSON
//! files are hashed as OPA hashes them, over their compact form with keys sorted; other files
//! over their bytes. Only ES256 (ECDSA P-256, what a KMS `ECC_NIST_P256` key signs) is taken.

use std::collections::BTreeMap;
use std::io::Read;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::sha256_hex;
use crate::checkpoint::PublicKey;

use super::{PolicyBundle, PolicyEngine, PolicyError, PolicyFile};

const MANIFEST: &str = ".manifest";
const SIGNATURES: &str = ".signatures.json";
const DATA: &str = "data.json";
/// The compiled program (regorus' RVM binary form) beside the sources, so that a function
/// loads it instead of compiling at cold start. Signed with the other files.
const PROGRAM: &str = "program.rvm";
/// The `.manifest` metadata key that names the program's format.
const PROGRAM_FORMAT_KEY: &str = "regate_program";
/// The regorus this build compiles with (a test holds it to Cargo.lock).
const REGORUS_VERSION: &str = "0.14.1";
/// A bundle larger than this, unpacked, is refused before it is read further.
pub const MAX_UNPACKED_BYTES: u64 = 16 * 1024 * 1024;
const MAX_ENTRIES: usize = 2_000;

/// `.manifest`: what OPA reads from it, and regate writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// What a program must have been written by to be loaded: this regorus and its RVM format.
fn program_format() -> String {
    format!(
        "regorus {REGORUS_VERSION} rvm {}",
        regorus::rvm::program::Program::SERIALIZATION_VERSION
    )
}

/// A bundle file read into memory: its files as they are in the tar (names without the leading
/// `/`), and the policy bundle they make.
#[derive(Debug, Clone)]
pub struct OpaBundle {
    pub bundle: PolicyBundle,
    pub manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
    signatures: Option<Vec<u8>>,
}

/// One signed file in the JWT's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SignedFile {
    name: String,
    hash: String,
    algorithm: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignedFiles {
    files: Vec<SignedFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignaturesFile {
    signatures: Vec<String>,
}

fn archive_error(message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Archive(message.to_string())
}

fn signature_error(message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Signature(message.to_string())
}

impl OpaBundle {
    /// The bundle file for `bundle`: its policy files, its tests and `data.json`, the program
    /// they compile to, and a `.manifest` whose revision is regate's content revision.
    /// Unsigned. Refused when the policy does not compile.
    pub fn build(bundle: &PolicyBundle) -> Result<Self, PolicyError> {
        let program = PolicyEngine::compile(bundle)?.program_bytes()?;
        let mut metadata = serde_json::Map::new();
        metadata.insert(PROGRAM_FORMAT_KEY.into(), program_format().into());
        let manifest = Manifest {
            revision: bundle.revision.clone(),
            roots: Some(vec!["approvals".into()]),
            metadata: Some(metadata),
        };
        let mut files = BTreeMap::new();
        files.insert(PROGRAM.to_string(), program);
        let manifest_text = serde_json::to_vec(&manifest).map_err(archive_error)?;
        files.insert(MANIFEST.to_string(), manifest_text);
        files.insert(DATA.to_string(), bundle.data_json.clone().into_bytes());
        for file in bundle.policies.iter().chain(&bundle.tests) {
            files.insert(file.path.clone(), file.source.clone().into_bytes());
        }
        Ok(Self {
            bundle: bundle.clone(),
            manifest,
            files,
            signatures: None,
        })
    }

    /// Reads a gzipped tar. Refused: a corrupt or oversized archive, a link or device entry, a
    /// file that is not `.rego`, `data.json`, `.manifest` or `.signatures.json`, a nested data
    /// document, a file that is not UTF-8, and any path `PolicyBundle` refuses.
    pub fn read(tar_gz: &[u8]) -> Result<Self, PolicyError> {
        let unpacked = flate2::read::GzDecoder::new(tar_gz).take(MAX_UNPACKED_BYTES + 1);
        let mut archive = tar::Archive::new(unpacked);
        let mut files = BTreeMap::new();
        let mut signatures = None;
        let mut total = 0u64;
        let entries = archive.entries().map_err(archive_error)?;
        for (count, entry) in entries.enumerate() {
            if count >= MAX_ENTRIES {
                return Err(archive_error(format!("more than {MAX_ENTRIES} entries")));
            }
            let mut entry = entry.map_err(archive_error)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() {
                continue;
            }
            let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if !kind.is_file() {
                return Err(archive_error(format!(
                    "{raw_path:?} is not a regular file ({kind:?})"
                )));
            }
            let name = bundle_name(&raw_path);
            total = total.saturating_add(entry.size());
            if total > MAX_UNPACKED_BYTES {
                return Err(archive_error(format!(
                    "unpacked, it is larger than {MAX_UNPACKED_BYTES} bytes"
                )));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(archive_error)?;
            if name == SIGNATURES {
                signatures = Some(bytes);
                continue;
            }
            check_name(&name)?;
            if files.insert(name.clone(), bytes).is_some() {
                return Err(PolicyError::Path(format!("{name:?} is there twice")));
            }
        }
        let manifest = match files.get(MANIFEST) {
            Some(text) => serde_json::from_slice(text)
                .map_err(|e| archive_error(format!(".manifest is not valid JSON: {e}")))?,
            None => Manifest::default(),
        };
        let bundle = policy_bundle(&files)?;
        Ok(Self {
            bundle,
            manifest,
            files,
            signatures,
        })
    }

    /// The gzipped tar: `.manifest`, `.signatures.json` when signed, then every other file in
    /// name order, with no time or owner.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PolicyError> {
        let gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gzip);
        let manifest = self.files.get_key_value(MANIFEST);
        let manifest = manifest.map(|(name, bytes)| (name.as_str(), bytes));
        let signatures = self.signatures.as_ref().map(|bytes| (SIGNATURES, bytes));
        let others = self.files.iter().filter(|(name, _)| *name != MANIFEST);
        let ordered = manifest
            .into_iter()
            .chain(signatures)
            .chain(others.map(|(name, bytes)| (name.as_str(), bytes)));
        for (name, bytes) in ordered {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            tar.append_data(&mut header, name, bytes.as_slice())
                .map_err(archive_error)?;
        }
        let gzip = tar.into_inner().map_err(archive_error)?;
        gzip.finish().map_err(archive_error)
    }

    pub fn is_signed(&self) -> bool {
        self.signatures.is_some()
    }

    /// The bundle's program, when it carries one written by this regorus.
    fn loadable_program(&self) -> Option<&[u8]> {
        let format = self
            .manifest
            .metadata
            .as_ref()
            .and_then(|m| m.get(PROGRAM_FORMAT_KEY))
            .and_then(Value::as_str)?;
        (format == program_format())
            .then(|| self.files.get(PROGRAM).map(Vec::as_slice))
            .flatten()
    }

    /// The policy engine: loaded from the bundle's program when it carries one written by
    /// this regorus (a fraction of compiling's cost), else compiled from its files. Check the
    /// signature first: the program is trusted as the files are, because the same signature
    /// covers both (and `sign` and `push` refuse a program that is not what the files
    /// compile to: [`OpaBundle::check_program`]).
    pub fn engine(&self) -> Result<PolicyEngine, PolicyError> {
        if let Some(program) = self.loadable_program() {
            match PolicyEngine::from_program(&self.bundle, program) {
                Ok(engine) => return Ok(engine),
                Err(error) => {
                    tracing::warn!(error = %error, "the bundle's program does not load; compiling its files");
                }
            }
        }
        PolicyEngine::compile(&self.bundle)
    }

    /// The program this regorus would load is exactly what the bundle's files compile to
    /// (compiling is deterministic), so that a signature over the bundle vouches for the
    /// decisions its files make, whoever built the program.
    pub fn check_program(&self) -> Result<(), PolicyError> {
        let Some(program) = self.loadable_program() else {
            return Ok(());
        };
        if PolicyEngine::compile(&self.bundle)?.program_bytes()? != program {
            return Err(PolicyError::Revision(format!(
                "{PROGRAM} is not what the bundle's files compile to; build the bundle again \
                 with `regate policy build`"
            )));
        }
        Ok(())
    }

    /// What an ES256 signature is made over: the JWT's `header.payload`, listing every file
    /// but `.signatures.json` with its SHA-256. `keyid` names the key for the verifier.
    pub fn signing_input(&self, keyid: Option<&str>) -> Result<String, PolicyError> {
        let payload = SignedFiles {
            files: self.hashes()?,
            keyid: keyid.map(str::to_string),
        };
        let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
        if let Some(keyid) = keyid {
            header["kid"] = keyid.into();
        }
        let payload = serde_json::to_value(payload).map_err(archive_error)?;
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        Ok(format!("{}.{}", encode(&header), encode(&payload)))
    }

    /// The bundle with `.signatures.json` holding the JWT of `signing_input` and its ES256
    /// signature (`r || s`, 64 bytes). Any earlier signature is replaced.
    pub fn with_signature(mut self, signing_input: &str, signature: &[u8]) -> Self {
        let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        let file = SignaturesFile {
            signatures: vec![jwt],
        };
        self.signatures = serde_json::to_vec(&file).ok();
        self
    }

    /// Signs with a local P-256 private key (PEM or DER, PKCS#8 or SEC1).
    pub fn sign_with_private_key(
        self,
        private_key: &[u8],
        keyid: Option<&str>,
    ) -> Result<Self, PolicyError> {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let der = der_from_pem(private_key).map_err(signature_error)?;
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| signature_error(format!("not a P-256 private key: {e}")))?;
        let input = self.signing_input(keyid)?;
        let signature = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|e| signature_error(format!("signing failed: {e}")))?;
        Ok(self.with_signature(&input, signature.as_ref()))
    }

    /// Checks `.signatures.json` against `key`: one ES256 JWT whose signature verifies, and
    /// whose file list matches the bundle's files exactly, hash for hash.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), PolicyError> {
        let Some(text) = &self.signatures else {
            return Err(signature_error(
                "the bundle is not signed (no .signatures.json)",
            ));
        };
        let file: SignaturesFile = serde_json::from_slice(text)
            .map_err(|e| signature_error(format!(".signatures.json is not valid: {e}")))?;
        let [jwt] = file.signatures.as_slice() else {
            return Err(signature_error(format!(
                ".signatures.json holds {} signatures; regate reads exactly one",
                file.signatures.len()
            )));
        };
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(signature_error("the signature is not a JWT"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|e| signature_error(format!("the JWT's {what} is not base64url: {e}")))
        };
        let header: Value = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|e| signature_error(format!("the JWT's header is not JSON: {e}")))?;
        match header.get("alg").and_then(Value::as_str) {
            Some("ES256") => {}
            other => {
                return Err(signature_error(format!(
                    "the JWT is signed with {}; regate verifies ES256 only",
                    other.unwrap_or("no alg")
                )))
            }
        }
        let signed = &jwt[..jwt.len() - signature.len() - 1];
        if !key.verifies_fixed(signed.as_bytes(), &decode(signature, "signature")?) {
            return Err(signature_error(
                "the signature does not verify with the configured key",
            ));
        }
        let listed: SignedFiles = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|e| signature_error(format!("the JWT's payload is not valid: {e}")))?;
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for file in listed.files {
            if !file.algorithm.eq_ignore_ascii_case("SHA-256") {
                return Err(signature_error(format!(
                    "{} is hashed with {}; regate verifies SHA-256 only",
                    file.name, file.algorithm
                )));
            }
            expected.insert(bundle_name(&file.name), file.hash.to_ascii_lowercase());
        }
        for actual in self.hashes()? {
            match expected.remove(&actual.name) {
                Some(hash) if hash == actual.hash => {}
                Some(_) => {
                    return Err(signature_error(format!(
                        "{} does not match the hash it was signed with",
                        actual.name
                    )))
                }
                None => {
                    return Err(signature_error(format!(
                        "{} is in the bundle but not signed",
                        actual.name
                    )))
                }
            }
        }
        if let Some(missing) = expected.keys().next() {
            return Err(signature_error(format!(
                "{missing} was signed but is not in the bundle"
            )));
        }
        Ok(())
    }

    /// Every file but `.signatures.json`, with its SHA-256 as OPA computes it.
    fn hashes(&self) -> Result<Vec<SignedFile>, PolicyError> {
        self.files
            .iter()
            .map(|(name, bytes)| {
                let hash = if name.ends_with(".json") || name == MANIFEST {
                    sha256_hex(
                        opa_json_form(bytes)
                            .map_err(|e| archive_error(format!("{name} is not valid JSON: {e}")))?,
                    )
                } else {
                    sha256_hex(bytes)
                };
                Ok(SignedFile {
                    name: name.clone(),
                    hash,
                    algorithm: "SHA-256".into(),
                })
            })
            .collect()
    }
}

/// A tar entry's name inside the bundle: without a leading `/` or `./` (`opa build` writes
/// `/data.json`; `tar -C dir .` writes `./data.json`).
fn bundle_name(path: &str) -> String {
    let trimmed = path.strip_prefix("./").unwrap_or(path);
    trimmed.strip_prefix('/').unwrap_or(trimmed).to_string()
}

fn check_name(name: &str) -> Result<(), PolicyError> {
    if name == MANIFEST || name == DATA || name == PROGRAM || name.ends_with(".rego") {
        return Ok(());
    }
    let problem = if name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml") {
        "is a nested data document; regate reads data from data.json at the bundle's root"
    } else {
        "is not a .rego file, data.json or .manifest"
    };
    Err(archive_error(format!("{name:?} {problem}")))
}

fn policy_bundle(files: &BTreeMap<String, Vec<u8>>) -> Result<PolicyBundle, PolicyError> {
    let text = |name: &str, bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| archive_error(format!("{name} is not UTF-8 text")))
    };
    let mut sources = Vec::new();
    let mut data = None;
    for (name, bytes) in files {
        if name == DATA {
            data = Some(text(name, bytes)?);
        } else if name != MANIFEST && name != PROGRAM {
            sources.push(PolicyFile {
                path: name.clone(),
                source: text(name, bytes)?,
            });
        }
    }
    PolicyBundle::from_files(sources, data)
}

/// A JSON file as OPA hashes it: compact, object keys sorted by their bytes, strings escaped
/// as Go's encoder escapes them with HTML escaping off (U+2028 and U+2029 as `\uXXXX`; `<`,
/// `>` and `&` as they are).
fn opa_json_form(bytes: &[u8]) -> Result<String, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    let mut compact = String::new();
    write_sorted(&value, &mut compact)?;
    Ok(compact
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// Compact JSON with every object's keys in byte order, whatever order the map keeps them in.
fn write_sorted(value: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                write_sorted(&map[key], out)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out)?;
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

/// DER bytes from PEM text (the body between its `-----BEGIN` and `-----END` lines), or the
/// bytes themselves when they are not PEM.
pub fn der_from_pem(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    if !text.trim_start().starts_with("-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}

/// An ES256 signature as JWTs carry it (`r || s`, 32 bytes each) from the ASN.1 DER form KMS
/// returns.
pub fn fixed_signature_from_der(der: &[u8]) -> Result<[u8; 64], PolicyError> {
    let bad = || signature_error("KMS returned a signature that is not ECDSA DER");
    let (tag, rest) = der.split_first().ok_or_else(bad)?;
    let (length, mut rest) = rest.split_first().ok_or_else(bad)?;
    if *tag != 0x30 || usize::from(*length) != rest.len() {
        return Err(bad());
    }
    let mut fixed = [0u8; 64];
    for half in fixed.chunks_mut(32) {
        let (&[0x02, length], tail) = rest.split_at_checked(2).ok_or_else(bad)? else {
            return Err(bad());
        };
        let (integer, tail) = tail.split_at_checked(usize::from(length)).ok_or_else(bad)?;
        let integer = integer.strip_prefix(&[0]).unwrap_or(integer);
        let offset = 32usize.checked_sub(integer.len()).ok_or_else(bad)?;
        half[offset..].copy_from_slice(integer);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    fn bundle() -> PolicyBundle {
        let files = vec![
            PolicyFile {
                path: "approvals.rego".into(),
                source: DEFAULT_LIKE.into(),
            },
            PolicyFile {
                path: "approvals_test.rego".into(),
                source: "package approvals\n\ntest_allow if true\n".into(),
            },
        ];
        PolicyBundle::from_files(files, Some("{\"groups\": {\"a\": [\"<b>\"]}}".into())).unwrap()
    }

    /// A P-256 key pair: the private key as PKCS#8 DER, and the verifier's key.
    fn key_pair() -> (Vec<u8>, PublicKey) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let private = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
        let public = pair.public_key().as_der().unwrap();
        (private, PublicKey::from_spki_der(public.as_ref()).unwrap())
    }

    fn signed(private: &[u8]) -> OpaBundle {
        let built = OpaBundle::build(&bundle()).unwrap();
        let bytes = built.to_bytes().unwrap();
        OpaBundle::read(&bytes)
            .unwrap()
            .sign_with_private_key(private, Some("regate-policy"))
            .unwrap()
    }

    /// A gzipped tar of `entries`, named as given.
    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gzip);
        for (name, bytes) in entries {
            // Written into the header as is: `opa build` names entries `/data.json`, which
            // the tar crate's path setter refuses.
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            tar.append(&header, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn the_same_files_give_the_same_bytes_and_read_back_as_the_same_revision() {
        let first = OpaBundle::build(&bundle()).unwrap().to_bytes().unwrap();
        let second = OpaBundle::build(&bundle()).unwrap().to_bytes().unwrap();
        assert_eq!(first, second);
        let read = OpaBundle::read(&first).unwrap();
        assert_eq!(read.bundle.revision, bundle().revision);
        assert_eq!(read.manifest.revision, bundle().revision);
        assert_eq!(read.bundle.tests.len(), 1, "tests travel in the bundle");
        assert!(!read.is_signed());
        // Signing and reading again keeps every byte of the other files.
        let (private, key) = key_pair();
        let signed = signed(&private).to_bytes().unwrap();
        let again = OpaBundle::read(&signed).unwrap();
        again.verify_signature(&key).unwrap();
        assert_eq!(again.bundle.revision, bundle().revision);
    }

    #[test]
    fn a_built_bundle_carries_its_program_and_loads_it_deciding_as_its_files_do() {
        let policies = crate::policy::PolicyBundle::from_files(
            vec![PolicyFile {
                path: "approvals.rego".into(),
                source: DEFAULT_LIKE.into(),
            }],
            None,
        )
        .unwrap();
        let built =
            OpaBundle::read(&OpaBundle::build(&policies).unwrap().to_bytes().unwrap()).unwrap();
        assert!(built.files.contains_key(PROGRAM));
        let loaded = built.engine().unwrap();
        let compiled = PolicyEngine::compile(&policies).unwrap();
        assert_eq!(loaded.revision(), compiled.revision());
        // A program from another regorus is not loaded: the files are compiled instead.
        let mut other = built.clone();
        other.manifest.metadata = None;
        assert_eq!(other.engine().unwrap().revision(), compiled.revision());
        // A corrupt program is not evaluated: the files are compiled instead.
        let mut corrupt = built.clone();
        corrupt
            .files
            .insert(PROGRAM.into(), b"REGO not a program".to_vec());
        assert!(PolicyEngine::from_program(&policies, b"REGO not a program").is_err());
        assert_eq!(corrupt.engine().unwrap().revision(), compiled.revision());
    }

    #[test]
    fn a_program_that_is_not_what_the_files_compile_to_is_refused_by_check_program() {
        let files = |source: &str| {
            crate::policy::PolicyBundle::from_files(
                vec![PolicyFile {
                    path: "approvals.rego".into(),
                    source: source.into(),
                }],
                None,
            )
            .unwrap()
        };
        let allowing = OpaBundle::build(&files(DEFAULT_LIKE)).unwrap();
        allowing.check_program().unwrap();
        let denying = OpaBundle::build(&files(&DEFAULT_LIKE.replace("allow", "deny"))).unwrap();
        // The allowing files with the denying program: what a signer could be handed.
        let mut swapped = allowing.clone();
        swapped
            .files
            .insert(PROGRAM.into(), denying.files[PROGRAM].clone());
        let refused = swapped.check_program().unwrap_err();
        assert!(matches!(refused, PolicyError::Revision(_)), "{refused}");
        assert!(refused.to_string().contains(PROGRAM), "{refused}");
        // Without a program (an `opa build` bundle), there is nothing to compare.
        let mut without = allowing.clone();
        without.files.remove(PROGRAM);
        without.check_program().unwrap();
    }

    const DEFAULT_LIKE: &str = "package approvals\n\ndecision := {\"outcome\": \"allow\", \"reasons\": [], \"timeout_seconds\": 60}\n\nvote := {\"allowed\": true, \"reason\": \"\"}\n";

    #[test]
    fn the_program_format_names_the_regorus_in_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        let pinned = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"regorus\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"').to_string());
        assert_eq!(pinned.as_deref(), Some(REGORUS_VERSION));
    }

    #[test]
    fn a_bundle_as_opa_build_or_tar_writes_it_reads() {
        let rego: &[u8] = b"package approvals\n\ndecision := {\"outcome\": \"allow\"}\n";
        for prefix in ["/", "./", ""] {
            let bytes = tar_of(&[
                (
                    &format!("{prefix}.manifest"),
                    br#"{"revision":"v7","roots":[""]}"#,
                ),
                (&format!("{prefix}data.json"), b"{}"),
                (&format!("{prefix}rules/approvals.rego"), rego),
            ]);
            let read = OpaBundle::read(&bytes).unwrap();
            assert_eq!(read.manifest.revision, "v7");
            assert_eq!(read.bundle.policies[0].path, "rules/approvals.rego");
        }
    }

    #[test]
    fn a_bundle_that_is_not_one_is_refused_naming_why() {
        let rego: &[u8] = b"package approvals\n";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not gzip at all".to_vec(), "cannot be read"),
            (
                tar_of(&[("/a.rego", rego), ("/roles/data.json", b"{}")]),
                "nested data",
            ),
            (
                tar_of(&[("/a.rego", rego), ("/notes.md", b"hi")]),
                "not a .rego",
            ),
            (tar_of(&[("/a.rego", b"\xff\xfe")]), "not UTF-8"),
            (
                tar_of(&[("/a.rego", rego), ("/.manifest", b"{")]),
                ".manifest is not valid",
            ),
            (tar_of(&[("/data.json", b"{}")]), "no .rego"),
            (tar_of(&[("/a.rego", rego), ("./a.rego", rego)]), "twice"),
        ];
        for (bytes, why) in cases {
            let refused = OpaBundle::read(&bytes).unwrap_err().to_string();
            assert!(refused.contains(why), "{why}: {refused}");
        }
        let mut truncated = OpaBundle::build(&bundle()).unwrap().to_bytes().unwrap();
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            OpaBundle::read(&truncated),
            Err(PolicyError::Archive(_))
        ));
    }

    #[test]
    fn a_signature_holds_only_for_the_signed_files_and_the_right_key() {
        let (private, key) = key_pair();
        let good = signed(&private);
        good.verify_signature(&key).unwrap();

        let refused = |bundle: &OpaBundle, why: &str| {
            let error = bundle.verify_signature(&key).unwrap_err().to_string();
            assert!(error.contains(why), "{why}: {error}");
        };
        refused(&OpaBundle::build(&bundle()).unwrap(), "not signed");

        let (other_private, _) = key_pair();
        refused(&signed(&other_private), "does not verify");

        let mut changed = good.clone();
        changed
            .files
            .insert(DATA.into(), b"{\"groups\": {}}".to_vec());
        refused(&changed, "data.json does not match");

        let mut added = good.clone();
        added
            .files
            .insert("extra.rego".into(), b"package approvals\n".to_vec());
        refused(&added, "extra.rego is in the bundle but not signed");

        let mut removed = good.clone();
        removed.files.remove("approvals_test.rego");
        refused(
            &removed,
            "approvals_test.rego was signed but is not in the bundle",
        );

        // alg none and HS256 are refused whatever follows.
        for alg in ["none", "HS256", "RS256"] {
            let input = good.signing_input(None).unwrap();
            let payload = input.split('.').nth(1).unwrap();
            let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\"}}"));
            let forged = good
                .clone()
                .with_signature(&format!("{header}.{payload}"), b"");
            refused(&forged, &format!("signed with {alg}"));
        }
    }

    #[test]
    fn json_files_are_hashed_in_opa_form_so_reformatting_them_keeps_the_signature() {
        assert_eq!(
            opa_json_form(b"{ \"b\": 1,\n \"a\": [\"<x&y>\"] }").unwrap(),
            r#"{"a":["<x&y>"],"b":1}"#
        );
        let (private, key) = key_pair();
        let mut reformatted = signed(&private);
        reformatted.files.insert(
            DATA.into(),
            b"{\n  \"groups\": {\"a\": [\"<b>\"]}\n}\n".to_vec(),
        );
        reformatted.verify_signature(&key).unwrap();
    }

    #[test]
    fn a_kms_der_signature_becomes_the_jwt_form_and_verifies() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let key = PublicKey::from_spki_der(pair.public_key().as_der().unwrap().as_ref()).unwrap();
        let bundle = OpaBundle::build(&bundle()).unwrap();
        let input = bundle.signing_input(None).unwrap();
        for _ in 0..20 {
            // DER integers vary in length (a leading zero, or a short r or s): try several.
            let der = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            let fixed = fixed_signature_from_der(der.as_ref()).unwrap();
            let signed = bundle.clone().with_signature(&input, &fixed);
            signed.verify_signature(&key).unwrap();
        }
        for bad in [&b""[..], b"\x30\x02\x02\x00", b"\x31\x00"] {
            assert!(fixed_signature_from_der(bad).is_err());
        }
    }

    #[test]
    fn a_public_key_reads_from_pem_as_from_der() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.public_key().as_der().unwrap().as_ref().to_vec();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&der)
        );
        let from_pem = PublicKey::from_pem_or_der(pem.as_bytes()).unwrap();
        let from_der = PublicKey::from_pem_or_der(&der).unwrap();
        assert_eq!(from_pem.fingerprint(), from_der.fingerprint());
        assert!(PublicKey::from_pem_or_der(b"-----BEGIN PUBLIC KEY-----\n!!\n").is_err());
    }
}
