//! DynamoDB exports to S3, read from a folder as AWS writes them: each export's
//! `AWSDynamoDB/<id>/manifest-summary.json` and `manifest-files.json`, and its gzipped data
//! files in `DYNAMODB_JSON`, one item per line (`{"Item": ...}` in a full export; `Keys`,
//! `NewImage`, `OldImage` in an incremental one). Items are handed on one at a time, so an
//! export of any size is read as a stream.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_dynamo::{AttributeValue, Item};

use regate_core::audit::{Finding, FindingKind, LogAudit, PolicySet};
use regate_core::checkpoint::Checkpoint;
use regate_core::event::keys;
use regate_core::Event;

const SUMMARY_FILE: &str = "manifest-summary.json";

/// `manifest-summary.json`, the fields regate reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    #[serde(default)]
    export_arn: String,
    #[serde(default)]
    export_time: Option<String>,
    #[serde(default)]
    export_to_time: Option<String>,
    manifest_files_s3_key: String,
    #[serde(default)]
    item_count: Option<u64>,
    output_format: String,
    #[serde(default)]
    export_type: Option<String>,
}

/// One line of `manifest-files.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataFile {
    item_count: u64,
    data_file_s3_key: String,
}

/// One line of a data file: a full export's `Item`, or an incremental export's change.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Line {
    item: Option<Item>,
    keys: Option<Item>,
    new_image: Option<Item>,
    old_image: Option<Item>,
}

/// An export found in the folder.
pub struct Export {
    /// The folder that holds `AWSDynamoDB/` (data file keys are relative to it).
    root: PathBuf,
    summary: Summary,
    data_files: Vec<DataFile>,
}

impl Export {
    fn incremental(&self) -> bool {
        self.summary.export_type.as_deref() == Some("INCREMENTAL_EXPORT")
    }

    /// When the table was as this export shows it.
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.summary
            .export_to_time
            .as_deref()
            .or(self.summary.export_time.as_deref())
            .and_then(regate_core::time::parse_rfc3339)
    }
}

/// Every export under `folder`, full exports first, then incremental ones oldest first.
pub fn find_exports(folder: &Path) -> anyhow::Result<Vec<Export>> {
    if !folder.is_dir() {
        bail!("{} is not a folder", folder.display());
    }
    let mut summaries = Vec::new();
    collect_summaries(folder, &mut summaries, 0)?;
    if summaries.is_empty() {
        bail!(
            "no DynamoDB export under {}: looked for AWSDynamoDB/<export id>/{SUMMARY_FILE}",
            folder.display()
        );
    }
    let mut exports = summaries
        .into_iter()
        .map(|path| read_export(&path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    exports.sort_by_key(|e| (e.incremental(), e.as_of()));
    Ok(exports)
}

fn collect_summaries(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) -> anyhow::Result<()> {
    if depth > 8 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_summaries(&path, found, depth + 1)?;
        } else if path.file_name().is_some_and(|n| n == SUMMARY_FILE) {
            found.push(path);
        }
    }
    Ok(())
}

fn read_export(summary_path: &Path) -> anyhow::Result<Export> {
    let text = std::fs::read_to_string(summary_path)
        .with_context(|| format!("reading {}", summary_path.display()))?;
    let summary: Summary = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a DynamoDB export summary",
            summary_path.display()
        )
    })?;
    if summary.output_format != "DYNAMODB_JSON" {
        bail!(
            "export {} is in the {} format; regate audit reads DYNAMODB_JSON exports (export \
             again with --export-format DYNAMODB_JSON)",
            summary.export_arn,
            summary.output_format
        );
    }
    // `<root>/AWSDynamoDB/<id>/manifest-summary.json`: keys in the manifests start at <root>.
    let root = summary_path
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow!("{} is not inside AWSDynamoDB/<id>/", summary_path.display()))?
        .to_path_buf();
    let files_path = root.join(relative_key(&summary.manifest_files_s3_key)?);
    let files = std::fs::read_to_string(&files_path)
        .with_context(|| format!("reading {}", files_path.display()))?;
    let data_files = files
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str::<DataFile>)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a manifest of data files", files_path.display()))?;
    let listed: u64 = data_files.iter().map(|f| f.item_count).sum();
    if let Some(count) = summary.item_count.filter(|count| *count != listed) {
        bail!(
            "export {}: the summary counts {count} items but its data files {listed}",
            summary.export_arn
        );
    }
    Ok(Export {
        root,
        summary,
        data_files,
    })
}

/// The part of an S3 key from `AWSDynamoDB/` on, which is where it sits under the root folder.
fn relative_key(key: &str) -> anyhow::Result<&str> {
    key.find("AWSDynamoDB/")
        .map(|at| &key[at..])
        .filter(|rest| !rest.split('/').any(|part| part == ".."))
        .ok_or_else(|| anyhow!("manifest key {key:?} is not under AWSDynamoDB/"))
}

/// One data file of an export, on disk, with what its manifest says it holds.
pub struct DataFileOnDisk<'a> {
    pub path: PathBuf,
    pub bytes: u64,
    pub listed_items: u64,
    pub key: &'a str,
    pub incremental: bool,
}

/// Every data file of `exports`, checked to be there.
pub fn data_files(exports: &[Export]) -> anyhow::Result<Vec<DataFileOnDisk<'_>>> {
    let mut files = Vec::new();
    for export in exports {
        for file in &export.data_files {
            let path = export.root.join(relative_key(&file.data_file_s3_key)?);
            let bytes = std::fs::metadata(&path)
                .with_context(|| {
                    format!(
                        "data file {} of export {}",
                        path.display(),
                        export.summary.export_arn
                    )
                })?
                .len();
            files.push(DataFileOnDisk {
                path,
                bytes,
                listed_items: file.item_count,
                key: &file.data_file_s3_key,
                incremental: export.incremental(),
            });
        }
    }
    Ok(files)
}

/// A progress bar over `total` bytes, shown on a terminal and nowhere else.
pub fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} read, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress
}

/// Reads one data file line by line, handing each line on, then checks the count against its
/// manifest.
pub fn read_data_file(
    file: &DataFileOnDisk<'_>,
    progress: &ProgressBar,
    audit: &mut LogAudit,
    mut each_line: impl FnMut(&str, u64, &mut LogAudit) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let opened =
        File::open(&file.path).with_context(|| format!("opening {}", file.path.display()))?;
    let mut reader =
        BufReader::with_capacity(1 << 16, MultiGzDecoder::new(progress.wrap_read(opened)));
    let (mut items, mut number, mut line) = (0u64, 0u64, String::new());
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", file.path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end();
        if text.trim().is_empty() {
            continue;
        }
        items += 1;
        each_line(text, number, audit)?;
    }
    if items != file.listed_items {
        audit.report(Finding::new(
            file.key,
            None,
            FindingKind::ItemCount,
            format!(
                "the manifest lists {} items; the file holds {items}",
                file.listed_items
            ),
        ));
    }
    Ok(())
}

/// One line of a data file, whole: its item goes to `audit`, a policy bundle to `policies`.
pub fn take_text(
    text: &str,
    incremental: bool,
    audit: &mut LogAudit,
    policies: &mut PolicySet,
    where_: &dyn Fn() -> String,
) {
    match serde_json::from_str::<Line>(text) {
        Ok(line) => take_line(line, incremental, audit, policies, where_),
        Err(error) => audit.report(Finding::new(
            where_(),
            None,
            FindingKind::Unreadable,
            format!("not a DynamoDB JSON item: {error}"),
        )),
    }
}

/// The partition key of a line, read without reading the rest: the item's in a full export,
/// the changed item's in an incremental one.
pub fn partition_key_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct LineKeys {
        item: Option<KeysOnly>,
        keys: Option<KeysOnly>,
        new_image: Option<KeysOnly>,
        old_image: Option<KeysOnly>,
    }
    #[derive(Deserialize)]
    struct KeysOnly {
        pk: Option<Text>,
    }
    #[derive(Deserialize)]
    struct Text {
        #[serde(rename = "S")]
        s: Option<String>,
    }
    let line: LineKeys = serde_json::from_str(text).ok()?;
    // The item that is audited first: a full export's, or an incremental one's new image.
    [line.item, line.new_image, line.keys, line.old_image]
        .into_iter()
        .flatten()
        .find_map(|keys| keys.pk.and_then(|pk| pk.s))
}

fn take_line(
    line: Line,
    incremental: bool,
    audit: &mut LogAudit,
    policies: &mut PolicySet,
    where_: &dyn Fn() -> String,
) {
    let item = match (line.item, incremental) {
        (Some(item), false) => item,
        (None, true) => {
            let item_keys = line
                .keys
                .clone()
                .or(line.old_image.clone())
                .unwrap_or_default();
            // The record of the last checkpoint is the one item regate updates.
            if text(&item_keys, "pk") == keys::CHECKPOINT_PARTITION {
                return;
            }
            // The image must be of the item its keys name.
            if let (Some(named), Some(image)) = (&line.keys, &line.new_image) {
                let (pk, image_pk) = (text(named, "pk"), text(image, "pk"));
                if pk != image_pk || text(named, "sk") != text(image, "sk") {
                    audit.report(Finding::new(
                        where_(),
                        None,
                        FindingKind::KeyMismatch,
                        format!("its keys name {pk:?} but its new image is of {image_pk:?}"),
                    ));
                    return;
                }
            }
            // Only a new item may appear: an event, a key marker or a policy is never changed.
            if line.old_image.is_some() || line.new_image.is_none() {
                let what = if line.new_image.is_some() {
                    "changed"
                } else {
                    "deleted"
                };
                let (pk, sk) = (text(&item_keys, "pk"), text(&item_keys, "sk"));
                audit.report(Finding::new(
                    pk.strip_prefix(keys::REQUEST_PREFIX)
                        .unwrap_or(&pk)
                        .to_string(),
                    sk.strip_prefix(keys::EVENT_PREFIX)
                        .and_then(|s| s.parse().ok()),
                    FindingKind::ChangedAfterWrite,
                    format!("item {pk}/{sk} was {what} after it was written"),
                ));
                return;
            }
            line.new_image.unwrap_or_default()
        }
        _ => {
            audit.report(Finding::new(
                where_(),
                None,
                FindingKind::Unreadable,
                "the line does not have the shape of its export type".to_string(),
            ));
            return;
        }
    };
    take_item(item, audit, policies);
}

fn take_item(mut item: Item, audit: &mut LogAudit, policies: &mut PolicySet) {
    let pk = text(&item, "pk");
    if let Some(revision) = pk.strip_prefix(keys::POLICY_PREFIX) {
        match bundle_text(&mut item) {
            Ok(text) => policies.add_archived(revision, &text),
            Err(problem) => audit.report(Finding::new(
                pk.clone(),
                None,
                FindingKind::PolicyInvalid,
                problem,
            )),
        }
        return;
    }
    // Read straight from DynamoDB JSON into an event (its keys and `day_shard` are ignored).
    let sk = text(&item, "sk");
    audit.add_item(&pk, &sk, || {
        serde_dynamo::from_item::<_, Event>(item).map_err(|e| e.to_string())
    });
}

/// A policy item's archived bundle: `bundle` as text, or `bundle_gzip` decompressed.
fn bundle_text(item: &mut Item) -> Result<String, String> {
    let fields = item.inner_mut();
    match (fields.remove("bundle"), fields.remove("bundle_gzip")) {
        (Some(AttributeValue::S(text)), _) => Ok(text),
        (_, Some(AttributeValue::B(bytes))) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut MultiGzDecoder::new(bytes.as_slice()), &mut text)
                .map_err(|e| format!("bundle_gzip does not decompress: {e}"))?;
            Ok(text)
        }
        _ => Err("the item holds no bundle".into()),
    }
}

fn text(item: &Item, key: &str) -> String {
    match item.inner().get(key) {
        Some(AttributeValue::S(text)) => text.clone(),
        _ => String::new(),
    }
}

/// Where the exports are: a folder, or an S3 prefix (`s3://bucket/prefix`).
pub enum Source {
    Folder(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Source {
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Self::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_end_matches('/').to_string(),
                }
            }
            None => Self::Folder(PathBuf::from(text)),
        }
    }
}

/// What to download from an S3 prefix.
#[derive(Clone, Copy)]
pub enum Download {
    /// Each object as it is now, under its key less the prefix (an export).
    Latest,
    /// Every version of each object: the latest as [`Self::Latest`] writes it, each older one
    /// beside it as `<name>.<version id>`, and the listing as [`VERSIONS_FILE`] (checkpoints).
    EveryVersion,
}

/// `source` as a local folder: the folder itself, or the S3 prefix downloaded (each object
/// streamed to disk) into a temporary folder kept while `held` lives.
pub fn local_folder(
    source: &Source,
    held: &mut Option<tempfile::TempDir>,
    what: Download,
) -> anyhow::Result<PathBuf> {
    let (bucket, prefix) = match source {
        Source::Folder(path) => return Ok(path.clone()),
        Source::S3 { bucket, prefix } => (bucket, prefix),
    };
    let dir = tempfile::tempdir().context("creating a folder for the download")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listing_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    runtime.block_on(async {
        let s3 = regate_aws::s3_client(&crate::load_aws_config().await);
        match what {
            Download::Latest => download(&s3, bucket, &listing_prefix, dir.path()).await,
            Download::EveryVersion => {
                download_versions(&s3, bucket, &listing_prefix, dir.path()).await
            }
        }
    })?;
    let path = dir.path().to_path_buf();
    *held = Some(dir);
    Ok(path)
}

async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    listing_prefix: &str,
    into: &Path,
) -> anyhow::Result<()> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(listing_prefix)
        .into_paginator()
        .send();
    let mut count = 0usize;
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow!("listing s3://{bucket}/{listing_prefix}: {}", aws_error(&e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let relative = key.strip_prefix(listing_prefix).unwrap_or(key);
            if relative
                .split('/')
                .any(|part| part.is_empty() || part == "..")
            {
                continue;
            }
            let target = into.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| anyhow!("reading s3://{bucket}/{key}: {}", aws_error(&e)))?
                .body;
            let mut file = File::create(&target)?;
            while let Some(chunk) = body
                .try_next()
                .await
                .with_context(|| format!("reading s3://{bucket}/{key}"))?
            {
                std::io::Write::write_all(&mut file, &chunk)?;
            }
            count += 1;
        }
    }
    if count == 0 {
        bail!("nothing under s3://{bucket}/{listing_prefix}");
    }
    Ok(())
}

/// An SDK error as one line: the service's code and message when it gave them.
fn aws_error<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or_default()
        ),
        None => format!("{error}"),
    }
}

/// The file, in a folder of checkpoints, that lists every version of every checkpoint object:
/// the output of `aws s3api list-object-versions --bucket B --prefix checkpoints/`.
pub const VERSIONS_FILE: &str = "versions.json";

/// `aws s3api list-object-versions` output, the fields regate reads.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionListing {
    #[serde(default)]
    versions: Vec<ObjectVersion>,
    #[serde(default)]
    delete_markers: Vec<ObjectVersion>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectVersion {
    key: String,
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

async fn download_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    listing_prefix: &str,
    into: &Path,
) -> anyhow::Result<()> {
    let mut listing = VersionListing::default();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(listing_prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "listing the versions under s3://{bucket}/{listing_prefix}: {}",
                    aws_error(&e)
                )
            })?;
        let version = |key: Option<&str>, id: Option<&str>, latest, tag: Option<&str>, at| {
            Some(ObjectVersion {
                key: key?.to_string(),
                version_id: id.unwrap_or("null").to_string(),
                is_latest: latest,
                e_tag: tag.map(str::to_string),
                last_modified: at,
            })
        };
        for v in page.versions() {
            let at = v.last_modified().map(|t| t.to_string());
            let latest = v.is_latest().unwrap_or_default();
            listing
                .versions
                .extend(version(v.key(), v.version_id(), latest, v.e_tag(), at));
        }
        for m in page.delete_markers() {
            let at = m.last_modified().map(|t| t.to_string());
            let latest = m.is_latest().unwrap_or_default();
            listing
                .delete_markers
                .extend(version(m.key(), m.version_id(), latest, None, at));
        }
        if !page.is_truncated().unwrap_or_default() {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() {
            break;
        }
    }
    if listing.versions.is_empty() {
        bail!("nothing under s3://{bucket}/{listing_prefix}");
    }
    for version in &listing.versions {
        let relative = version
            .key
            .strip_prefix(listing_prefix)
            .unwrap_or(&version.key);
        if relative
            .split('/')
            .any(|part| part.is_empty() || part == ".." || part == ".")
            || version.version_id.contains(['/', '\\'])
        {
            continue;
        }
        let name = if version.is_latest {
            relative.to_string()
        } else {
            format!("{relative}.{}", version.version_id)
        };
        let target = into.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut request = s3.get_object().bucket(bucket).key(&version.key);
        if version.version_id != "null" {
            request = request.version_id(&version.version_id);
        }
        let body = request
            .send()
            .await
            .map_err(|e| anyhow!("reading s3://{bucket}/{}: {}", version.key, aws_error(&e)))?
            .body
            .collect()
            .await
            .with_context(|| format!("reading s3://{bucket}/{}", version.key))?;
        std::fs::write(&target, body.into_bytes())?;
    }
    std::fs::write(
        into.join(VERSIONS_FILE),
        serde_json::to_vec_pretty(&listing)?,
    )?;
    Ok(())
}

/// Every checkpoint (`*.json`) under `folder`, and a `rewritten_checkpoint` finding for each
/// object [`VERSIONS_FILE`] lists more than one version of (a put over it, or a delete
/// marker). Where the original (oldest) version is in the folder as `<name>.<version id>`, it
/// is the one verified: it is what was signed when the checkpoint was cut.
pub fn read_checkpoints(folder: &Path) -> anyhow::Result<(Vec<Checkpoint>, Vec<Finding>)> {
    let mut findings = Vec::new();
    let mut originals: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    let versions_path = folder.join(VERSIONS_FILE);
    if !versions_path.is_file() {
        eprintln!(
            "note: {} has no {VERSIONS_FILE}: a checkpoint put again over the original cannot be \
             seen (see \"Audit the decision log\" in docs/guide.md for how to list the versions)",
            folder.display()
        );
    }
    if versions_path.is_file() {
        let text = std::fs::read_to_string(&versions_path)
            .with_context(|| format!("reading {}", versions_path.display()))?;
        let listing: VersionListing = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not what `aws s3api list-object-versions` prints",
                versions_path.display()
            )
        })?;
        let mut by_key: std::collections::BTreeMap<&str, Vec<&ObjectVersion>> = Default::default();
        for version in listing.versions.iter().chain(&listing.delete_markers) {
            by_key.entry(&version.key).or_default().push(version);
        }
        for (key, mut versions) in by_key {
            if versions.len() < 2 {
                continue;
            }
            versions.sort_by(|a, b| a.last_modified.cmp(&b.last_modified));
            let name = key.rsplit('/').next().unwrap_or(key);
            let local = |v: &ObjectVersion| {
                let latest = folder.join(name_in_folder(key, folder));
                if v.is_latest {
                    latest
                } else {
                    PathBuf::from(format!("{}.{}", latest.display(), v.version_id))
                }
            };
            let described: Vec<String> = versions
                .iter()
                .map(|v| {
                    let digest = std::fs::read(local(v))
                        .map(|bytes| {
                            format!(", sha256 {}", regate_core::canonical::sha256_hex(bytes))
                        })
                        .unwrap_or_default();
                    let deleted = if listing.delete_markers.iter().any(|m| std::ptr::eq(m, *v)) {
                        " (a delete marker)"
                    } else {
                        ""
                    };
                    format!(
                        "version {}{deleted} of {}: ETag {}{digest}",
                        v.version_id,
                        v.last_modified.as_deref().unwrap_or("an unknown time"),
                        v.e_tag.as_deref().unwrap_or("none")
                    )
                })
                .collect();
            findings.push(Finding::new(
                key,
                None,
                FindingKind::RewrittenCheckpoint,
                format!(
                    "{name} has {} versions: it was put again after it was cut ({})",
                    versions.len(),
                    described.join("; ")
                ),
            ));
            if let Some(oldest) = versions.first().filter(|v| !v.is_latest) {
                let original = local(oldest);
                if original.is_file() {
                    originals.insert(folder.join(name_in_folder(key, folder)), original);
                }
            }
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") && path != versions_path {
                let read = originals.get(&path).unwrap_or(&path);
                let text = std::fs::read_to_string(read)
                    .with_context(|| format!("reading {}", read.display()))?;
                found.push(
                    serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a regate checkpoint", read.display())
                    })?,
                );
            }
        }
    }
    if found.is_empty() {
        bail!("no checkpoints (*.json) under {}", folder.display());
    }
    Ok((found, findings))
}

/// Where a listed key sits in the folder: keys in [`VERSIONS_FILE`] may carry the prefix the
/// folder was downloaded from (`checkpoints/0000000001.json` for a folder of `checkpoints/`).
fn name_in_folder(key: &str, folder: &Path) -> PathBuf {
    let mut relative = key;
    while !relative.is_empty() && !folder.join(relative).exists() {
        match relative.split_once('/') {
            Some((_, rest)) => relative = rest,
            None => break,
        }
    }
    PathBuf::from(relative)
}
