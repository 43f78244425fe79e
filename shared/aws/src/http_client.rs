//! The AWS SDK's HTTP client in a function is the process's reqwest client, the one Slack and
//! Teams are called with (`crate::function_http_client`). One TLS stack and one set of root
//! certificates per process: the SDK's own HTTPS client would read and parse the system's store
//! at cold start (about 19 M instructions, see BENCHMARKS.md) and add a second HTTP stack to
//! each zip.
//!
//! Timeouts: connections are bounded by the reqwest client's connect timeout; the SDK's own
//! operation and attempt timeouts and its retries (throttling, 5xx, I/O errors, timeouts) apply
//! on top, as with its default client.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// An SDK HTTP client that sends through a reqwest client (and its connection pool).
#[derive(Debug, Clone)]
pub struct ReqwestHttpClient {
    http: reqwest::Client,
}

impl ReqwestHttpClient {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for ReqwestHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?
                .map(request_body);
            let request =
                reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let mut response = http.execute(request).await.map_err(dispatch_error)?;
            let status = StatusCode::try_from(response.status().as_u16())
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let headers = std::mem::take(response.headers_mut());
            let body = response.bytes().await.map_err(dispatch_error)?;
            let mut answer = HttpResponse::new(status, SdkBody::from(body));
            for (name, value) in &headers {
                answer.headers_mut().append(name.clone(), value.clone());
            }
            Ok(answer)
        })
    }
}

/// An in-memory body is sent as bytes (what every call regate makes has); a streaming one is
/// streamed.
fn request_body(body: SdkBody) -> reqwest::Body {
    match body.bytes() {
        Some(bytes) => reqwest::Body::from(bytes.to_vec()),
        None => reqwest::Body::wrap(body),
    }
}

/// Timeouts and I/O failures are transient to the SDK's retry strategy, as its own client's are.
fn dispatch_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_builder() {
        ConnectorError::user(error.into())
    } else {
        ConnectorError::io(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn sdk_request(uri: &str, body: &'static str) -> HttpRequest {
        let mut request = HttpRequest::new(SdkBody::from(body));
        request.set_method("POST").ok();
        request.set_uri(uri).ok();
        request
            .headers_mut()
            .insert("x-amz-target", "DynamoDB_20120810.PutItem");
        request
    }

    /// A listener on a free local port, and its address.
    async fn listen() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        (listener, address)
    }

    #[test]
    fn the_function_client_takes_every_compiled_in_root() {
        let client = crate::function_http_client(Duration::from_secs(1));
        assert!(client.is_ok(), "{:?}", client.err());
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
    }

    #[tokio::test]
    async fn a_request_and_its_answer_cross_unchanged() {
        let (listener, address) = listen().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            while !String::from_utf8_lossy(&received).contains("{\"a\":1}") {
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
            }
            let answer = "HTTP/1.1 400 Bad Request\r\nx-amzn-requestid: req-9\r\n\
                          content-type: application/x-amz-json-1.0\r\ncontent-length: 12\r\n\r\n\
                          {\"bad\":true}";
            socket.write_all(answer.as_bytes()).await.ok();
            String::from_utf8_lossy(&received).to_string()
        });
        let client = ReqwestHttpClient::new(reqwest::Client::new());
        let response = client
            .call(sdk_request(&format!("http://{address}/"), "{\"a\":1}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = server.await.unwrap_or_default();
        assert!(seen.starts_with("POST / HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_lowercase()
                .contains("x-amz-target: dynamodb_20120810.putitem"),
            "{seen}"
        );
        assert!(seen.ends_with("{\"a\":1}"), "{seen}");
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("req-9"));
        assert_eq!(response.body().bytes(), Some(&b"{\"bad\":true}"[..]));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_io_error() {
        let (listener, address) = listen().await;
        drop(listener);
        let client = ReqwestHttpClient::new(reqwest::Client::new());
        let error = client
            .call(sdk_request(&format!("http://{address}/"), "{}"))
            .await
            .err()
            .unwrap_or_else(|| panic!("a closed port answered"));
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let (listener, address) = listen().await;
        let _held = tokio::spawn(async move {
            let accepted = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(accepted);
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let error = ReqwestHttpClient::new(http)
            .call(sdk_request(&format!("http://{address}/"), "{}"))
            .await
            .err()
            .unwrap_or_else(|| panic!("a silent server answered"));
        assert!(error.is_timeout(), "{error:?}");
    }
}
