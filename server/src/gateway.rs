//! The gateway's routes and the ingress pipeline they share.
//!
//! Three client APIs come in — OpenAI chat completions (`POST /v1/chat/completions`,
//! here), Anthropic Messages and OpenAI Responses ([`crate::dialects`]) — and every one
//! goes through the same steps, each written once, here:
//!
//! 1. [`admit`]: the gateway key (`Authorization: Bearer`, and `x-api-key` for the
//!    Anthropic dialect), then the body, read within [`MAX_BODY_BYTES`] only after the
//!    key passed;
//! 2. the dialect parses the body and translates it into the one unified
//!    [`ChatRequest`];
//! 3. [`route`]: the key's and team's rate limits, the [`RequestContext`] (request id
//!    from the stack, team, key, sticky key, the dialect the ledger records), then
//!    `engine.run` — bindings, experiments, boundaries, breakers, continuation;
//! 4. the dialect writes the answer, the stream and the errors in its own shape.
//!
//! On this route every failure leaves as an OpenAI error body (`{"error": {"message",
//! "type", "param", "code"}}`) with the normalised class as `code`, a fitting status
//! and `retry-after` where it applies — including a malformed body, a missing key or
//! an unknown feature. A failure after the first streamed token ends the stream with a
//! `data: {"error": ...}` event: never a silent truncation.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use router_core::admin::{GatewayKeyInfo, RouteInfo};
use router_core::api::{ChatRequest, Dialect, Error, ErrorKind};
use router_core::routing::capacity::estimate_tokens;
use router_core::routing::engine::stream::StreamReport;
use router_core::routing::engine::{Answer, RequestContext, RoutedStream, Served};
use serde_json::json;

use crate::AppState;

pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

// Header names built at compile time: `HeaderName::from_static` called at run time
// validates the name and compares it with every standard header, per request.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_ENDPOINT: HeaderName = HeaderName::from_static("x-crossbar-endpoint");
const X_PROVIDER: HeaderName = HeaderName::from_static("x-crossbar-provider");
const X_VARIANT: HeaderName = HeaderName::from_static("x-crossbar-variant");
const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-crossbar-attempts");
const X_CONFIG_VERSION: HeaderName = HeaderName::from_static("x-crossbar-config-version");
const X_SPILLED: HeaderName = HeaderName::from_static("x-crossbar-spilled");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_CROSSBAR_USER: HeaderName = HeaderName::from_static("x-crossbar-user");

/// An error in the OpenAI shape, with the routing headers known so far. (The
/// `x-request-id` header comes from the stack, on every response.)
pub struct GatewayError {
    pub error: Error,
    pub route: Option<RouteInfo>,
}

impl From<Error> for GatewayError {
    fn from(error: Error) -> Self {
        Self { error, route: None }
    }
}

/// A request routing could not serve: its error, and the route headers so far.
impl From<router_core::routing::engine::Unserved> for GatewayError {
    fn from(f: router_core::routing::engine::Unserved) -> Self {
        Self {
            error: f.error,
            route: Some(f.route),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = (status, axum::Json(self.error.to_openai_json())).into_response();
        self.headers(response.headers_mut());
        response
    }
}

impl GatewayError {
    /// The headers every error response carries, whatever its shape: `retry-after` (and
    /// `retry-after-ms`) when there is a wait to ask for, and the route headers so far.
    pub fn headers(&self, headers: &mut HeaderMap) {
        if let Some(after) = self.error.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert(RETRY_AFTER_MS, HeaderValue::from(after.as_millis() as u64));
        }
        if let Some(route) = &self.route {
            route_headers(headers, route);
        }
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The `x-crossbar-*` headers saying how a request was routed.
pub fn route_headers(headers: &mut HeaderMap, route: &RouteInfo) {
    if let Some(endpoint) = &route.endpoint {
        set(headers, X_ENDPOINT, endpoint);
    }
    if let Some(provider) = &route.provider {
        set(headers, X_PROVIDER, provider);
    }
    if let Some(variant) = &route.variant {
        set(headers, X_VARIANT, variant);
    }
    headers.insert(X_ATTEMPTS, HeaderValue::from(route.attempts));
    headers.insert(X_CONFIG_VERSION, HeaderValue::from(route.config_version));
    if route.spilled {
        headers.insert(X_SPILLED, HeaderValue::from_static("true"));
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Parses a JSON request body into our type, with errors in our format that name
/// the offending field.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::invalid(
            "body",
            "the request body is empty: send JSON",
        ));
    }
    // A valid body (the usual case) is parsed without the path bookkeeping, and as
    // text checked once as UTF-8 (from bytes, serde_json checks every string on its
    // own); only a failure is parsed again, to say where it went wrong.
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(value) = serde_json::from_str(text)
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        let mut error = Error::new(ErrorKind::InvalidRequest, format!("{what}: {inner}"));
        if path != "." && !path.is_empty() {
            error.param = Some(path);
        }
        error
    })
}

/// The chat completions route.
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    // The whole request, not the `HeaderMap` extractor, which copies the headers.
    let (parts, body) = request.into_parts();
    let id = crate::stack::request_id_of(&parts.headers);
    match handle_chat(&state, &parts.headers, body, &id).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle_chat(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    id: &str,
) -> Result<Response, GatewayError> {
    let Admitted { key, raw } = admit(state, headers, body, Dialect::Chat).await?;
    let request: ChatRequest = parse_body(&raw)?;
    if request.messages.is_empty() {
        return Err(Error::invalid("messages", "messages must not be empty").into());
    }
    let include_usage = request.include_usage();
    let sticky = sticky_key(request.user.as_deref(), headers);
    let request = Arc::new(request);
    let (served, ctx) = route(state, &key, id, Dialect::Chat, raw.len(), sticky, &request).await?;
    let completion = match served.answer {
        Answer::Stream(stream) => {
            let mut response = sse_response(stream, include_usage);
            route_headers(response.headers_mut(), &served.route);
            return Ok(response);
        }
        Answer::Whole(completion) => completion,
    };
    let mut response = json_response(completion.response());
    route_headers(response.headers_mut(), &served.route);
    // The accounting (done when the completion is dropped), and freeing the request,
    // wait until the answer is written: a task spawned on this serving thread's
    // runtime runs when the connection's task next yields, which is after hyper has
    // written the response. At one request at a time that takes them off the
    // client's wait (BENCHMARKS.md).
    tokio::spawn(async move {
        drop((completion, request, ctx, raw));
    });
    Ok(response)
}

/// A caller past the first steps every gateway route shares: its key, and its body
/// read within the limit.
pub struct Admitted {
    pub key: Arc<GatewayKeyInfo>,
    /// The body as it arrived: a body in one chunk (the usual case) is not copied.
    pub raw: Bytes,
}

/// The gateway key a request presents: `Authorization: Bearer <key>` on every route,
/// and Anthropic's `x-api-key: <key>` on the Messages routes.
pub fn gateway_secret(headers: &HeaderMap, dialect: Dialect) -> Option<&str> {
    bearer(headers).or_else(|| match dialect {
        Dialect::Messages => headers
            .get(X_API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim),
        Dialect::Chat | Dialect::Responses => None,
    })
}

/// The caller's gateway key, or `unauthorized`.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    dialect: Dialect,
) -> Result<Arc<GatewayKeyInfo>, Error> {
    let Some(secret) = gateway_secret(headers, dialect) else {
        let how = match dialect {
            Dialect::Messages => "`x-api-key: <key>` or `Authorization: Bearer <key>`",
            Dialect::Chat | Dialect::Responses => "`Authorization: Bearer <key>`",
        };
        return Err(Error::new(
            ErrorKind::Unauthorized,
            format!("missing gateway key: send {how}"),
        ));
    };
    state
        .keys
        .gateway_key(secret)
        .ok_or_else(|| Error::new(ErrorKind::Unauthorized, "unknown or revoked gateway key"))
}

/// The first steps of every gateway route: the key, then the body, read within
/// [`MAX_BODY_BYTES`] (whatever `Content-Length` claims) and only after the key
/// passed, so that an unauthenticated client cannot make us buffer anything.
pub async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    dialect: Dialect,
) -> Result<Admitted, Error> {
    let key = authenticate(state, headers, dialect)?;
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        drain(body).await;
        return Err(too_large());
    }
    // A body that arrives in one chunk (the usual case) is used as it is; only one in
    // several chunks is copied together.
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(Error::invalid("body", "the request body could not be read"));
        };
        len += chunk.len();
        if len > MAX_BODY_BYTES {
            drain(Body::from_stream(stream)).await;
            return Err(too_large());
        }
        if let Some(head) = first.take() {
            joined.reserve(declared.unwrap_or(len).max(len));
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&chunk);
        } else if joined.is_empty() {
            first = Some(chunk);
        } else {
            joined.extend_from_slice(&chunk);
        }
    }
    let raw = first.unwrap_or_else(|| Bytes::from(joined));
    Ok(Admitted { key, raw })
}

/// The experiment's sticky key: the one the request's body names (`user`,
/// `metadata.user_id`, ...), else the `x-crossbar-user` header.
pub fn sticky_key(from_body: Option<&str>, headers: &HeaderMap) -> Option<String> {
    from_body.map(str::to_owned).or_else(|| {
        headers
            .get(X_CROSSBAR_USER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// The last steps every gateway route shares: the key's and the team's rate limits
/// (the token limit charged an estimate from the body's size, a cheap upper bound of
/// the prompt's characters, and the output limit), then routing, with the request
/// recorded under `dialect`. The context is returned so that the caller can free it
/// after answering.
pub async fn route(
    state: &AppState,
    key: &GatewayKeyInfo,
    id: &str,
    dialect: Dialect,
    body_bytes: usize,
    sticky: Option<String>,
    request: &Arc<ChatRequest>,
) -> Result<(Served, RequestContext), GatewayError> {
    let snapshot = state.engine.snapshot();
    let team = snapshot.config.team(&key.team);
    let estimate = estimate_tokens(body_bytes, request.output_limit());
    state.keys.allow(
        key,
        team.and_then(|t| t.requests_per_minute),
        team.and_then(|t| t.tokens_per_minute),
        estimate,
    )?;
    let ctx = RequestContext {
        request_id: id.to_owned(),
        team: key.team.clone(),
        key_id: key.id.clone(),
        sticky_key: sticky,
        dialect,
    };
    let served = state.engine.run(&ctx, request.clone()).await?;
    Ok((served, ctx))
}

/// A committed stream as server-sent events: its chunks, `[DONE]` only after a clean
/// end, and an error event (after the first token nothing can fail over) as the
/// stream's last word.
fn sse_response(stream: RoutedStream, include_usage: bool) -> Response {
    let events = futures_util::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        loop {
            return match stream.next().await {
                Some(Ok(chunk)) => {
                    // Usage comes as a last chunk without choices: only when asked.
                    if chunk.choices.is_empty() && chunk.usage.is_some() && !include_usage {
                        continue;
                    }
                    Some((Ok::<_, Infallible>(sse_data(&chunk)), Some(stream)))
                }
                Some(Err(e)) => Some((Ok(sse_data(&e.to_openai_json())), None)),
                None => Some((Ok(stream_end(&stream.report())), None)),
            };
        }
    });
    event_stream_response(Body::from_stream(events))
}

/// A `text/event-stream` response of `body`.
pub fn event_stream_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The end of a clean stream: `[DONE]`, after an SSE comment per continuation
/// (`: x-crossbar-continued from=A to=B method=prefill after_tokens=40`), which
/// every SSE client skips and a person or a log can read.
fn stream_end(report: &StreamReport) -> Bytes {
    if report.continuations.is_empty() {
        return Bytes::from_static(b"data: [DONE]\n\n");
    }
    let mut end = continued_comments(report);
    end.push_str("\ndata: [DONE]\n\n");
    Bytes::from(end)
}

/// One SSE comment line per continuation of a stream (`: x-crossbar-continued from=A
/// to=B method=prefill after_tokens=40`), the same on every dialect's stream.
pub fn continued_comments(report: &StreamReport) -> String {
    let mut comments = String::new();
    for c in &report.continuations {
        comments.push_str(&format!(
            ": x-crossbar-continued from={} to={} method={} after_tokens={}\n",
            c.from,
            c.to,
            c.method.as_str(),
            c.after_tokens
        ));
    }
    comments
}

/// A JSON response, serialised into one buffer sized for a usual completion. axum's
/// `Json` writes through a `BytesMut` writer; this took 8,200 fewer instructions per
/// bench completion (callgrind), about 6 % of the request.
pub fn json_response(value: &impl serde::Serialize) -> Response {
    let mut buffer = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buffer, value) {
        Ok(()) => {
            let mut response = Response::new(Body::from(buffer));
            // Room for the route headers, so that the map does not grow twice.
            *response.headers_mut() = HeaderMap::with_capacity(16);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => GatewayError::from(Error::new(
            ErrorKind::Internal,
            format!("encoding the response: {e}"),
        ))
        .into_response(),
    }
}

/// One SSE event, `data: <json>\n\n`, serialised straight into its buffer (one
/// allocation per streamed chunk).
fn sse_data(value: &impl serde::Serialize) -> Bytes {
    let mut buffer = Vec::with_capacity(256);
    buffer.extend_from_slice(b"data: ");
    // Writing into a Vec cannot fail, and these types serialise without error (no
    // maps with non-string keys).
    let _ = serde_json::to_writer(&mut buffer, value);
    buffer.extend_from_slice(b"\n\n");
    Bytes::from(buffer)
}

/// Reads and discards what the client is still sending (up to a bound), so that it
/// gets to read our 413 instead of a broken pipe.
async fn drain(body: Body) {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

/// `GET /v1/models`: the features, in OpenAI's list shape.
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&state, &headers, Dialect::Chat) {
        return GatewayError::from(e).into_response();
    }
    let snapshot = state.engine.snapshot();
    let data: Vec<_> = snapshot
        .config
        .raw()
        .features
        .iter()
        .map(|f| {
            json!({
                "id": f.name,
                "object": "model",
                "created": 0,
                "owned_by": f.owner.as_deref().unwrap_or("crossbar"),
                "description": f.description,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// A gateway route called with a method it does not take: an OpenAI-shaped 405 (the
/// router adds the `Allow` header).
pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    let mut response = GatewayError::from(Error::new(
        ErrorKind::InvalidRequest,
        format!("{method} is not allowed on this route"),
    ))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Unknown `/v1/...` paths: an OpenAI-shaped 404, not the console's index page.
pub async fn not_found() -> Response {
    GatewayError::from(Error::new(ErrorKind::NotFound, "no such route")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field_and_say_what_is_wrong() {
        let e = parse_body::<ChatRequest>(b"{\"model\": \"x\", ").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{e:?}");
        let e =
            parse_body::<ChatRequest>(br#"{"model": "x", "messages": [], "temperature": "hot"}"#)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.starts_with("invalid request"), "{e:?}");
        let e = parse_body::<ChatRequest>(br#"{"model": "x", "messages": [], "temprature": 1}"#)
            .unwrap_err();
        assert!(e.message.contains("temprature"), "{e:?}");
        assert_eq!(
            parse_body::<ChatRequest>(b"").unwrap_err().param.as_deref(),
            Some("body")
        );
        // Not UTF-8: the same clear error as any malformed body, naming the field.
        let e = parse_body::<ChatRequest>(b"{\"model\": \"\xff\", \"messages\": []}").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{e:?}");
        assert_eq!(e.param.as_deref(), Some("model"));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
