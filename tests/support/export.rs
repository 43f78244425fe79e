//! DynamoDB exports to S3 as AWS lays them out, for the audit tests: moto's
//! `ExportTableToPointInTime` writes real data lines but no manifests and no incremental
//! exports, so tests write those the way AWS does
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html>).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use regate_core::event::keys;
use serde_json::{json, Value};

/// The local stack's bucket for exports (made by the first test that needs it).
pub const EXPORT_BUCKET: &str = "regate-exports";

/// A plain JSON item in DynamoDB JSON (`{"pk": {"S": ...}, ...}`).
pub fn dynamo(item: &Value) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(item).unwrap();
    serde_json::to_value(item).unwrap()
}

/// Gzipped lines, as a data file holds them.
pub fn gzip_lines(lines: &[Value]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for line in lines {
        writeln!(gz, "{line}").unwrap();
    }
    gz.finish().unwrap()
}

/// Writes one export under `root/AWSDynamoDB/<id>/` as AWS does, a line at a time: gzipped
/// data files of one DynamoDB JSON line each (lines go round-robin over `files` of them, as an
/// export has at least one file per partition), then `manifest-files.json` with each file's
/// item count and `manifest-summary.json`. Lines are in their export's shape already
/// (`{"Item": ...}`, or an incremental change).
pub struct ExportWriter {
    root: PathBuf,
    id: String,
    files: Vec<(String, GzEncoder<BufWriter<File>>, u64)>,
    next: usize,
}

impl ExportWriter {
    pub fn new(root: &Path, id: &str, files: usize) -> Self {
        std::fs::create_dir_all(root.join("AWSDynamoDB").join(id).join("data")).unwrap();
        let files = (0..files.max(1))
            .map(|n| {
                let key = format!("AWSDynamoDB/{id}/data/part-{n}.json.gz");
                let file = BufWriter::new(File::create(root.join(&key)).unwrap());
                (key, GzEncoder::new(file, Compression::fast()), 0)
            })
            .collect();
        Self {
            root: root.to_path_buf(),
            id: id.to_string(),
            files,
            next: 0,
        }
    }

    pub fn push(&mut self, line: &Value) {
        let (_, gz, count) = &mut self.files[self.next];
        writeln!(gz, "{line}").unwrap();
        *count += 1;
        self.next = (self.next + 1) % self.files.len();
    }

    pub fn finish(self, export_type: &str, export_time: &str) {
        let (id, dir) = (&self.id, self.root.join("AWSDynamoDB").join(&self.id));
        let mut manifest = String::new();
        let mut total = 0;
        for (key, gz, count) in self.files {
            gz.finish().unwrap().flush().unwrap();
            let entry =
                json!({"itemCount": count, "md5Checksum": "", "etag": "", "dataFileS3Key": key});
            manifest.push_str(&format!("{entry}\n"));
            total += count;
        }
        std::fs::write(dir.join("manifest-files.json"), manifest).unwrap();
        let table = "arn:aws:dynamodb:us-east-1:123456789012:table/DecisionLog";
        let summary = json!({
            "version": "2020-06-30",
            "exportArn": format!("{table}/export/{id}"),
            "startTime": export_time, "endTime": export_time, "exportTime": export_time,
            "tableArn": table, "tableId": "00000000-0000-0000-0000-000000000000",
            "s3Bucket": EXPORT_BUCKET, "s3Prefix": null,
            "manifestFilesS3Key": format!("AWSDynamoDB/{id}/manifest-files.json"),
            "billedSizeBytes": 0, "itemCount": total,
            "outputFormat": "DYNAMODB_JSON", "exportType": export_type,
        });
        std::fs::write(dir.join("manifest-summary.json"), summary.to_string()).unwrap();
    }
}

/// One whole export of `lines` in two data files (see [`ExportWriter`]).
pub fn write_export(root: &Path, id: &str, export_type: &str, export_time: &str, lines: &[Value]) {
    let mut writer = ExportWriter::new(root, id, 2);
    for line in lines {
        writer.push(line);
    }
    writer.finish(export_type, export_time);
}

/// The decision-log table exported through the local stack as an auditor exports it from AWS
/// (`ExportTableToPointInTime` into an S3 bucket, then downloaded): every `{"Item": ...}` line
/// of the data files moto wrote.
pub async fn export_decision_log(config: &aws_config::SdkConfig) -> Vec<Value> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let s3 = local_s3(config);
    let bucket = EXPORT_BUCKET;
    // Already there from an earlier run on this stack is fine.
    let _ = s3.create_bucket().bucket(bucket).send().await;
    let table = dynamodb
        .describe_table()
        .table_name(crate::decision_log_table())
        .send()
        .await
        .unwrap();
    let table_arn = table.table().unwrap().table_arn().unwrap().to_string();
    let prefix = format!("exports/{}", crate::unique("audit"));
    let started = dynamodb
        .export_table_to_point_in_time()
        .table_arn(&table_arn)
        .s3_bucket(bucket)
        .s3_prefix(&prefix)
        .export_format(aws_sdk_dynamodb::types::ExportFormat::DynamodbJson)
        .send()
        .await
        .unwrap();
    let arn = started
        .export_description()
        .unwrap()
        .export_arn()
        .unwrap()
        .to_string();
    for attempt in 0.. {
        assert!(attempt < 300, "the export did not complete within a minute");
        let described = dynamodb
            .describe_export()
            .export_arn(&arn)
            .send()
            .await
            .unwrap();
        let status = described
            .export_description()
            .unwrap()
            .export_status()
            .cloned();
        match status {
            Some(aws_sdk_dynamodb::types::ExportStatus::Completed) => break,
            Some(aws_sdk_dynamodb::types::ExportStatus::Failed) => {
                panic!("export failed: {described:?}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let mut lines = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body;
        let bytes = body.collect().await.unwrap().into_bytes();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut text,
        )
        .unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert!(
        !lines.is_empty(),
        "the export under {prefix} holds no items"
    );
    lines
}

/// An S3 client for the local stack (moto answers on paths, not bucket host names).
pub fn local_s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// Uploads every file under `dir` to `s3://bucket/prefix/`, keeping their paths.
pub async fn upload_folder(s3: &aws_sdk_s3::Client, dir: &Path, bucket: &str, prefix: &str) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            s3.put_object()
                .bucket(bucket)
                .key(format!("{prefix}/{relative}"))
                .body(std::fs::read(&path).unwrap().into())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Whether a line of a full export is an item of one of `ids`, or a policy bundle: the local
/// stack's table holds every test's requests, and an export for one purpose keeps its own.
pub fn of_requests(line: &Value, ids: &[String]) -> bool {
    let pk = line["Item"]["pk"]["S"].as_str().unwrap_or_default();
    pk.starts_with(keys::POLICY_PREFIX) || ids.iter().any(|id| pk == keys::partition_key(id))
}
