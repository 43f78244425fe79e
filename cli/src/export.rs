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
use serde_json::{Map, Value};

use regate_core::audit::{Finding, FindingKind, LogAudit};
use regate_core::checkpoint::Checkpoint;
use regate_core::event::keys;

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

/// Feeds every item of `exports` into `audit`, checking each data file's item count against
/// its manifest and every change an incremental export shows. A progress bar shows on a
/// terminal and nowhere else.
pub fn read_into(exports: &[Export], audit: &mut LogAudit) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for export in exports {
        for file in &export.data_files {
            let path = export.root.join(relative_key(&file.data_file_s3_key)?);
            let size = std::fs::metadata(&path)
                .with_context(|| {
                    format!(
                        "data file {} of export {}",
                        path.display(),
                        export.summary.export_arn
                    )
                })?
                .len();
            paths.push((export, file, path, size));
        }
    }
    let progress = ProgressBar::new(paths.iter().map(|p| p.3).sum());
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} read, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (export, file, path, _) in paths {
        let opened = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let reader = BufReader::new(MultiGzDecoder::new(progress.wrap_read(opened)));
        let mut items = 0u64;
        for (number, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            items += 1;
            let where_ = || format!("{} line {}", path.display(), number + 1);
            match serde_json::from_str::<Line>(&line) {
                Ok(line) => take_line(line, export.incremental(), audit, &where_),
                Err(error) => audit.report(Finding::new(
                    where_(),
                    None,
                    FindingKind::Unreadable,
                    format!("not a DynamoDB JSON item: {error}"),
                )),
            }
        }
        if items != file.item_count {
            audit.report(Finding::new(
                file.data_file_s3_key.clone(),
                None,
                FindingKind::ItemCount,
                format!(
                    "the manifest lists {} items; the file holds {items}",
                    file.item_count
                ),
            ));
        }
    }
    progress.finish_and_clear();
    Ok(())
}

fn take_line(line: Line, incremental: bool, audit: &mut LogAudit, where_: &dyn Fn() -> String) {
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
    take_item(item, audit, where_);
}

fn take_item(mut item: Item, audit: &mut LogAudit, where_: &dyn Fn() -> String) {
    let pk = text(&item, "pk");
    if let Some(revision) = pk.strip_prefix(keys::POLICY_PREFIX) {
        match bundle_text(&mut item) {
            Ok(text) => audit.add_policy(revision, &text),
            Err(problem) => audit.report(Finding::new(
                pk.clone(),
                None,
                FindingKind::PolicyInvalid,
                problem,
            )),
        }
        return;
    }
    match serde_dynamo::from_item::<_, Map<String, Value>>(item) {
        Ok(map) => audit.add_item(map),
        Err(error) => audit.report(Finding::new(
            where_(),
            None,
            FindingKind::Unreadable,
            format!("item {pk:?} does not read as JSON: {error}"),
        )),
    }
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

/// `source` as a local folder: the folder itself, or the S3 prefix downloaded object by object
/// (each streamed to disk, under its key less the prefix) into a temporary folder kept while
/// `held` lives.
pub fn local_folder(
    source: &Source,
    held: &mut Option<tempfile::TempDir>,
) -> anyhow::Result<PathBuf> {
    let (bucket, prefix) = match source {
        Source::Folder(path) => return Ok(path.clone()),
        Source::S3 { bucket, prefix } => (bucket, prefix),
    };
    let dir = tempfile::tempdir().context("creating a folder for the download")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(download(bucket, prefix, dir.path()))?;
    let path = dir.path().to_path_buf();
    *held = Some(dir);
    Ok(path)
}

async fn download(bucket: &str, prefix: &str, into: &Path) -> anyhow::Result<()> {
    let s3 = regate_aws::s3_client(&crate::load_aws_config().await);
    let listing_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&listing_prefix)
        .into_paginator()
        .send();
    let mut count = 0usize;
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow!("listing s3://{bucket}/{listing_prefix}: {}", aws_error(&e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let relative = key.strip_prefix(&listing_prefix).unwrap_or(key);
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

/// Every checkpoint (`*.json`) under `folder`.
pub fn read_checkpoints(folder: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                found.push(
                    serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a regate checkpoint", path.display())
                    })?,
                );
            }
        }
    }
    if found.is_empty() {
        bail!("no checkpoints (*.json) under {}", folder.display());
    }
    Ok(found)
}
