//! What the two Vertex adapters (Gemini, Claude on Vertex) share: the publisher-model
//! URL, bearer tokens from google-cloud-auth on every request, and the Vertex front
//! end's own error format (Google's, which Claude's adapter falls back to when the
//! error is not the model's).

use std::sync::Arc;

use http::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::exchange::{ErrorMapper, Exchange};
use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::{ChatStream, Decoder, retry_after};
use crate::api::{Error, ErrorKind};
use crate::auth;
use crate::config::EndpointConfig;

/// One Vertex endpoint's exchange, for one publisher's models (`google`,
/// `anthropic`), with its credentials.
pub(crate) struct Vertex {
    exchange: Exchange,
    publisher: &'static str,
    credentials: Arc<google_cloud_auth::credentials::Credentials>,
}

impl Vertex {
    /// Resolves `endpoint`'s credentials (once; google-cloud-auth caches and
    /// refreshes the tokens) and builds its client; `map_error` reads the publisher's
    /// error answers.
    pub(crate) async fn connect(
        endpoint: EndpointConfig,
        publisher: &'static str,
        transport: &TransportSettings,
        map_error: ErrorMapper,
    ) -> Result<Self, Error> {
        let credentials = auth::gcp_credentials(&endpoint).await?;
        let url = vertex_url(&endpoint, publisher, "rawPredict");
        Ok(Self {
            exchange: Exchange::new(endpoint, &url, transport, map_error)?,
            publisher,
            credentials,
        })
    }

    pub(crate) fn endpoint(&self) -> &EndpointConfig {
        self.exchange.endpoint()
    }

    /// Calls `method` (`generateContent`, `rawPredict`...) and reads the whole answer.
    pub(crate) async fn whole<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let (uri, headers) = self.target(method).await?;
        self.exchange.whole(uri, headers, body).await
    }

    /// Calls a streaming `method` and decodes its server-sent events.
    pub(crate) async fn stream<D: Decoder<Event = SseEvent>>(
        &self,
        method: &str,
        body: &impl Serialize,
        decoder: D,
    ) -> Result<ChatStream, Error> {
        let (uri, headers) = self.target(method).await?;
        self.exchange.stream(uri, headers, body, decoder).await
    }

    /// `method`'s URL and the headers with a current bearer token.
    async fn target(&self, method: &str) -> Result<(http::Uri, HeaderMap), Error> {
        let headers = auth::gcp_headers(&self.credentials).await?;
        let uri = self
            .exchange
            .uri(&vertex_url(self.endpoint(), self.publisher, method))?;
        Ok((uri, headers))
    }
}

/// `{base}/v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`.
fn vertex_url(endpoint: &EndpointConfig, publisher: &str, method: &str) -> String {
    let base = endpoint
        .base_url
        .clone()
        .unwrap_or_else(|| match endpoint.region.as_str() {
            "global" => "https://aiplatform.googleapis.com".into(),
            region => format!("https://{region}-aiplatform.googleapis.com"),
        });
    format!(
        "{}/v1/projects/{}/locations/{}/publishers/{publisher}/models/{}:{method}",
        base.trim_end_matches('/'),
        endpoint.project.as_deref().unwrap_or_default(),
        endpoint.region,
        endpoint.model
    )
}

/// A Google API error (`{"error":{"code","message","status"}}`), normalised.
pub(crate) fn google_error(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    provisioned: bool,
) -> Error {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let google_status = value
        .pointer("/error/status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let field = value
        .pointer("/error/details/0/fieldViolations/0/field")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = match (status, google_status.as_deref().unwrap_or_default()) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") if provisioned => ErrorKind::CapacityExhausted,
        (429, _) | (_, "RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
        (_, "DEADLINE_EXCEEDED") | (504, _) => ErrorKind::Timeout,
        (503, _) | (_, "UNAVAILABLE") if message.to_ascii_lowercase().contains("overloaded") => {
            ErrorKind::Overloaded
        }
        (503, _) | (_, "UNAVAILABLE") => ErrorKind::Unavailable,
        (400, _) | (_, "INVALID_ARGUMENT")
            if message.contains("exceeds the maximum number of tokens") =>
        {
            ErrorKind::ContextLengthExceeded
        }
        (400, _) | (_, "INVALID_ARGUMENT" | "FAILED_PRECONDITION") => ErrorKind::InvalidRequest,
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorKind::UpstreamAuth,
        (404, _) | (_, "NOT_FOUND") => ErrorKind::NotFound,
        _ => ErrorKind::UpstreamError,
    };
    let mut e = Error::new(kind, message)
        .with_upstream(Some(status), google_status)
        .with_retry_after(retry_after(headers));
    if kind.fault() == crate::api::Fault::Client {
        e.param = field;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_map_to_the_taxonomy() {
        let h = http::HeaderMap::new();
        let e = google_error(429, &h, br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}"#, false);
        assert_eq!(
            (e.kind, e.upstream_code.as_deref()),
            (ErrorKind::RateLimited, Some("RESOURCE_EXHAUSTED"))
        );
        let e = google_error(400, &h, br#"{"error":{"code":400,"message":"The input token count (9) exceeds the maximum number of tokens allowed (5).","status":"INVALID_ARGUMENT"}}"#, false);
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(
            google_error(503, &h, b"", false).kind,
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn the_url_names_project_region_publisher_model_and_method() {
        let mut endpoint = EndpointConfig::new(
            "g",
            crate::config::Provider::VertexGemini,
            "gemini-2.0-flash-001",
            "europe-west4",
        );
        endpoint.project = Some("p".into());
        assert_eq!(
            vertex_url(&endpoint, "google", "generateContent"),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent"
        );
        endpoint.region = "global".into();
        endpoint.base_url = Some("http://127.0.0.1:9/".into());
        assert_eq!(
            vertex_url(&endpoint, "anthropic", "rawPredict"),
            "http://127.0.0.1:9/v1/projects/p/locations/global/publishers/anthropic/models/gemini-2.0-flash-001:rawPredict"
        );
    }
}
