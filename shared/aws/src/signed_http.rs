//! The two AWS calls a function makes to load its policy, S3 `GetObject` and KMS
//! `GetPublicKey`, sent on the functions' HTTP client with SigV4 signatures rather than through
//! SDK clients: an S3 and a KMS client added about 380 KB to every function's zip (past the 5 MB
//! bar for the callback) and their construction to every cold start, for two read-only calls.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;

use crate::config::AwsSettings;

/// Attempts of a call that met throttling, a 5xx or a broken connection.
const ATTEMPTS: u32 = 3;

/// Signed requests to S3 and KMS in the function's region (or at `AWS_ENDPOINT_URL`).
#[derive(Clone)]
pub struct SignedHttp {
    http: reqwest::Client,
    region: String,
    identity: Identity,
    endpoint_url: Option<String>,
}

/// An S3 object's body and ETag.
pub struct S3Object {
    pub body: Vec<u8>,
    pub etag: Option<String>,
}

/// What a `GetObject` found.
pub enum S3Get {
    Object(S3Object),
    /// The object's ETag is the one given (304).
    NotModified,
    /// There is no object at the key (404 `NoSuchKey`).
    NoSuchKey,
}

impl SignedHttp {
    pub fn new(aws: &AwsSettings, http: reqwest::Client) -> Self {
        let credentials: Credentials = aws.credentials.clone();
        Self {
            http,
            region: aws.region.clone(),
            identity: credentials.into(),
            endpoint_url: aws.endpoint_url.clone(),
        }
    }

    /// `GetObject`, conditional on `if_none_match`. At most `max_bytes` are read.
    pub async fn s3_get(
        &self,
        bucket: &str,
        key: &str,
        if_none_match: Option<&str>,
        max_bytes: u64,
    ) -> Result<S3Get, String> {
        let key = encode_key(key);
        let url = match &self.endpoint_url {
            // A local S3 answers on paths, not on bucket host names.
            Some(endpoint) => format!("{}/{bucket}/{key}", endpoint.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{key}", self.region),
        };
        let headers: Vec<(&str, String)> = if_none_match
            .map(|etag| ("if-none-match", etag.to_string()))
            .into_iter()
            .collect();
        let response = self.send("s3", "GET", &url, &headers, &[]).await?;
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(S3Get::NotModified);
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(format!(
                "s3://{bucket}/{key} is larger than {max_bytes} bytes"
            ));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if status == 404 && error_code(&body) == "NoSuchKey" {
            return Ok(S3Get::NoSuchKey);
        }
        if status != 200 {
            return Err(format!(
                "s3://{bucket}/{key}: HTTP {status}: {}",
                error_code(&body)
            ));
        }
        if body.len() as u64 > max_bytes {
            return Err(format!(
                "s3://{bucket}/{key} is larger than {max_bytes} bytes"
            ));
        }
        Ok(S3Get::Object(S3Object {
            body: body.to_vec(),
            etag,
        }))
    }

    /// `GetPublicKey`: the key's SubjectPublicKeyInfo DER.
    pub async fn kms_public_key(&self, key_id: &str) -> Result<Vec<u8>, String> {
        let url = match &self.endpoint_url {
            Some(endpoint) => format!("{}/", endpoint.trim_end_matches('/')),
            None => format!("https://kms.{}.amazonaws.com/", self.region),
        };
        let body = serde_json::json!({"KeyId": key_id}).to_string();
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("x-amz-target", "TrentService.GetPublicKey".to_string()),
        ];
        let response = self
            .send("kms", "POST", &url, &headers, body.as_bytes())
            .await?;
        let status = response.status().as_u16();
        let answer = response.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!(
                "KMS GetPublicKey {key_id}: HTTP {status}: {}",
                error_code(&answer)
            ));
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| format!("KMS answered: {e}"))?;
        let key = answer["PublicKey"]
            .as_str()
            .ok_or("KMS answered without a public key")?;
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| format!("KMS answered a public key that is not base64: {e}"))
    }

    /// Signs and sends; retries throttling, 5xx answers and broken connections, backing off.
    async fn send(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<reqwest::Response, String> {
        let mut last_error = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1))).await;
            }
            let request = self.signed(service, method, url, headers, body)?;
            match request.send().await {
                Ok(response) if retryable(response.status().as_u16()) => {
                    last_error = format!("HTTP {}", response.status().as_u16());
                }
                Ok(response) => return Ok(response),
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(format!(
            "{method} {url}: {last_error} after {ATTEMPTS} attempts"
        ))
    }

    fn signed(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(name, value)| (*name, value.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.http.request(method, url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        Ok(request)
    }
}

fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// An S3 key as a URL path: unreserved characters and `/` as they are, the rest %-encoded.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The error code of an AWS error answer (`<Code>` in S3's XML, `__type` in KMS's JSON), for
/// the log; never the whole body.
fn error_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(start) = text.find("<Code>") {
        let rest = &text[start + 6..];
        return rest[..rest.find("</Code>").unwrap_or(rest.len())].to_string();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["__type"].as_str().map(str::to_string))
        .unwrap_or_else(|| "no error code".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_the_path() {
        assert_eq!(encode_key("bundles/ab12.tar.gz"), "bundles/ab12.tar.gz");
        assert_eq!(encode_key("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn error_codes_are_read_from_s3_and_kms_answers() {
        assert_eq!(
            error_code(b"<Error><Code>NoSuchKey</Code><Message>x</Message></Error>"),
            "NoSuchKey"
        );
        assert_eq!(
            error_code(br#"{"__type":"NotFoundException"}"#),
            "NotFoundException"
        );
        assert_eq!(error_code(b"???"), "no error code");
    }
}
