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
//! 3. [`route`]: the key's team (a removed team's keys are refused), the key's and
//!    team's rate limits, the [`RequestContext`] (request id from the stack, team, key,
//!    sticky key, the dialect the ledger records), then `engine.run` — bindings,
//!    experiments, boundaries, breakers, continuation. A whole answer comes back as a
//!    [`WholeAnswer`] whose token charge is corrected by its usage; a stream as a
//!    [`LimitedStream`], ended at the feature's maximum duration, its charge
//!    corrected however it ends;
//! 4. the dialect writes the answer, the stream and the errors in its own shape, every
//!    error through [`public_error_logged`].
//!
//! On this route every failure leaves as an OpenAI error body (`{"error": {"message",
//! "type", "param", "code"}}`) with the normalised class as `code`, a fitting status
//! and `retry-after` where it applies — including a malformed body, a missing key or
//! an unknown feature. A failure after the first streamed token ends the stream with a
//! `data: {"error": ...}` event: never a silent truncation.
//!
//! What a client reads is Crossbar's own words only ([`public_error`]): the class
//! (`code`), which endpoints failed with which class, our own timeouts, validation
//! errors, unknown features. Text that came from an upstream's body — where clouds
//! put masked key suffixes, role ARNs and internal addresses — is replaced by the
//! class's safe message; the full detail goes to the log (credentials redacted,
//! control characters escaped) and stays in the ledger's attempt records.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use router_core::admin::RouteInfo;
use router_core::api::{ChatChunk, ChatRequest, Dialect, Error, ErrorKind};
use router_core::config::DEFAULT_MAX_STREAM_MS;
use router_core::routing::capacity::estimate_tokens;
use router_core::routing::engine::stream::StreamReport;
use router_core::routing::engine::{Answer, RequestContext, RoutedStream};
use serde_json::json;

use crate::AppState;
use crate::keys::GatewayKey;

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

impl GatewayError {
    /// Logs what the client will not see of this error (the upstream's own text), if
    /// anything: the request id, the class, where, and the detail, redacted.
    pub fn log_detail(&self, request_id: &str) {
        log_upstream_detail(request_id, &self.error);
    }
}

/// What a client may read of `error` ([`public_error`]), with what it may not logged
/// for the operator: every dialect's error, whole or mid-stream, goes through here.
pub fn public_error_logged(request_id: &str, error: &Error) -> Error {
    log_upstream_detail(request_id, error);
    public_error(error)
}

/// One log line with what [`public_error`] keeps from the client, when it keeps
/// anything: credentials redacted, control characters escaped.
fn log_upstream_detail(request_id: &str, error: &Error) {
    let public = public_message(error);
    if public == error.message {
        return;
    }
    let detail = router_core::logging::redacted(&error.message);
    tracing::warn!(
        request_id,
        code = error.kind.as_str(),
        endpoint = error.endpoint.as_deref().unwrap_or(""),
        upstream_status = error.upstream_status,
        upstream_code = %router_core::logging::escaped(error.upstream_code.as_deref().unwrap_or("")),
        detail = %router_core::logging::escaped(&detail),
        "request failed upstream (the client got the class and a safe message)"
    );
}

/// What a gateway client may read of `error`: the same class, status, retry hint and
/// (when it is a plain field name) parameter, with the message in Crossbar's own
/// words ([`public_message`]).
pub fn public_error(error: &Error) -> Error {
    let mut public = error.clone();
    public.message = public_message(error);
    if error.upstream_status.is_some() {
        public.param = error.param.clone().filter(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']'))
        });
    }
    public
}

/// The message a client reads:
/// - Crossbar's own errors (no attempt was made, or the attempt failed in Crossbar:
///   a timeout, a capability the endpoint lacks, a field the request lacks) as they
///   are;
/// - when every attempt failed, the list of attempts with each endpoint and class
///   (`all 2 attempt(s) failed: a: rate_limited; b: timeout (no answer within
///   5000 ms)`), our own timeouts' words kept, any other text dropped;
/// - anything else an endpoint returned: its class's safe message
///   ([`ErrorKind::safe_message`]).
pub fn public_message(error: &Error) -> String {
    let message = error.message.as_str();
    if let Some(listed) = attempts_listed(message) {
        return listed;
    }
    let attempted = error.endpoint.is_some() || error.provider.is_some();
    if error.upstream_status.is_none()
        && (!attempted
            || own_timeout(message)
            || error.kind == ErrorKind::UnsupportedParameter
            || (error.kind == ErrorKind::InvalidRequest && error.param.is_some()))
    {
        return message.to_owned();
    }
    error.kind.safe_message().to_owned()
}

/// Our own words for an attempt that timed out (the engine's).
fn own_timeout(message: &str) -> bool {
    [
        "no answer within ",
        "no first token within ",
        "the stream stalled: nothing for ",
    ]
    .iter()
    .any(|prefix| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(" ms"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The routing engine's message for a request whose attempts all failed, rebuilt
/// from its own parts: `all N attempt(s) failed: A: kind (text); B: kind (text)` or
/// `the feature's deadline of D ms passed; attempts: ...`. Each attempt keeps its
/// endpoint and class, and its text only when it is one of our timeouts. `None` when
/// `message` is not such a list. A list that cannot be read back exactly gives the
/// count and the classes' safe summary instead: never any of its text.
fn attempts_listed(message: &str) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // What leads the list, the separator before it, how many it must hold, the list.
    let (lead, separator, count, list) = if let Some(rest) = message.strip_prefix("all ") {
        let (n, list) = rest.split_once(" attempt(s) failed: ")?;
        if !digits(n) {
            return None;
        }
        let lead = format!("all {n} attempt(s) failed");
        (lead, ": ", n.parse::<usize>().ok(), list)
    } else if let Some(rest) = message.strip_prefix("the feature's deadline of ") {
        let (d, after) = rest.split_once(" ms passed")?;
        if !digits(d) {
            return None;
        }
        let lead = format!("the feature's deadline of {d} ms passed");
        let Some(list) = after.strip_prefix("; attempts: ") else {
            // No attempt had failed yet: our words only.
            return after.is_empty().then_some(lead);
        };
        (lead, "; attempts: ", None, list)
    } else {
        return None;
    };
    let attempts = read_attempts(list).filter(|a| count.is_none_or(|n| a.len() == n));
    let Some(attempts) = attempts else {
        return Some(format!(
            "{lead} (the attempts' details are in the router's log)"
        ));
    };
    let parts: Vec<String> = attempts
        .into_iter()
        .map(|(endpoint, kind, text)| {
            if own_timeout(text) {
                format!("{endpoint}: {kind} ({text})")
            } else {
                format!("{endpoint}: {kind}")
            }
        })
        .collect();
    Some(format!("{lead}{separator}{}", parts.join("; ")))
}

/// `A: kind (text); B: kind (text)` as (endpoint, kind, text), or `None` when it does
/// not read exactly that way. Endpoint names are letters, digits, '-', '_' and '.'
/// (config validation), kinds are [`ErrorKind`]'s names.
fn read_attempts(list: &str) -> Option<Vec<(&str, ErrorKind, &str)>> {
    // Where each attempt starts: the beginning, or after "); " — and there an
    // endpoint name, ": ", a kind and " (".
    let head_at = |at: usize| -> Option<(&str, ErrorKind, usize)> {
        let rest = &list[at..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(rest.len());
        let (name, rest) = rest.split_at(name_len);
        let rest = rest.strip_prefix(": ")?;
        let (kind, _) = rest.split_once(" (")?;
        let kind = ErrorKind::parse(kind)?;
        let text_at = at + name_len + 2 + kind.as_str().len() + 2;
        (!name.is_empty()).then_some((name, kind, text_at))
    };
    let mut starts = vec![0];
    starts.extend(list.match_indices("); ").map(|(i, _)| i + 3));
    let heads: Vec<(usize, (&str, ErrorKind, usize))> = starts
        .into_iter()
        .filter_map(|at| Some((at, head_at(at)?)))
        .collect();
    if heads.first().is_none_or(|(at, _)| *at != 0) || !list.ends_with(')') {
        return None;
    }
    let mut out = Vec::with_capacity(heads.len());
    for (i, (_, (name, kind, text_at))) in heads.iter().enumerate() {
        let text_end = match heads.get(i + 1) {
            Some((next, _)) => next - 3,
            None => list.len() - 1,
        };
        out.push((*name, *kind, list.get(*text_at..text_end)?));
    }
    Some(out)
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = public_error(&self.error).to_openai_json();
        let mut response = (status, axum::Json(body)).into_response();
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
        Err(e) => {
            e.log_detail(&id);
            e.into_response()
        }
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
    let routed = route(state, &key, id, Dialect::Chat, raw.len(), sticky, &request).await?;
    let (route, answer) = (routed.route, routed.answer);
    let whole = match answer {
        Routed::Stream(stream) => {
            let mut response = sse_response(stream, include_usage, id.to_owned());
            route_headers(response.headers_mut(), &route);
            return Ok(response);
        }
        Routed::Whole(whole) => whole,
    };
    let mut response = json_response(whole.response());
    route_headers(response.headers_mut(), &route);
    // The accounting (done when the completion is dropped), the team's token charge
    // corrected by the answer's usage, and freeing the request wait until the answer
    // is written: a task spawned on this serving thread's runtime runs when the
    // connection's task next yields, which is after hyper has written the response.
    // At one request at a time that takes them off the client's wait (BENCHMARKS.md).
    tokio::spawn(async move {
        whole.settle();
        drop((request, raw));
    });
    Ok(response)
}
/// A caller past the first steps every gateway route shares: its key, and its body
/// read within the limit.
pub struct Admitted {
    pub key: Arc<GatewayKey>,
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
) -> Result<Arc<GatewayKey>, Error> {
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

/// The last steps every gateway route shares: the key's team (a team removed from
/// the configuration takes its keys with it), the key's and the team's rate limits
/// (the token limit charged an estimate from the body's size, a cheap upper bound of
/// the prompt's characters, and the output limit), then routing, with the request
/// recorded under `dialect`. The answer comes with what it may still take: a whole
/// answer its token charge to correct, a stream its deadline too.
pub async fn route(
    state: &AppState,
    key: &GatewayKey,
    id: &str,
    dialect: Dialect,
    body_bytes: usize,
    sticky: Option<String>,
    request: &Arc<ChatRequest>,
) -> Result<RoutedAnswer, GatewayError> {
    let snapshot = state.engine.snapshot();
    let Some(team) = snapshot.config.team(&key.team) else {
        return Err(removed_team(&key.team).into());
    };
    let estimate = estimate_tokens(body_bytes, request.output_limit());
    let charge = state.keys.allow(key, team, estimate)?;
    // A stream's end by the feature's maximum duration, counted from now.
    let max_stream = stream_max(&snapshot, request);
    let deadline = state.engine.clock().now().saturating_add(max_stream);
    let ctx = RequestContext {
        request_id: id.to_owned(),
        team: key.team.clone(),
        key_id: key.id.clone(),
        sticky_key: sticky,
        dialect,
    };
    let served = match state.engine.run(&ctx, request.clone()).await {
        Ok(served) => served,
        Err(unserved) => {
            // Nothing was served: the team's tokens are given back.
            charge.settle(&state.keys, 0);
            return Err(unserved.into());
        }
    };
    let answer = match served.answer {
        Answer::Whole(completion) => Routed::Whole(WholeAnswer {
            completion,
            charge,
            keys: state.keys.clone(),
            _ctx: ctx,
        }),
        Answer::Stream(stream) => Routed::Stream(LimitedStream {
            deadline: state.engine.clock().sleep_until(deadline),
            max: max_stream,
            stream: Some(stream),
            usage: StreamUsage {
                keys: state.keys.clone(),
                charge: Some(charge),
                prompt_chars: body_bytes,
                completion_chars: 0,
                total_tokens: None,
            },
        }),
    };
    Ok(RoutedAnswer {
        route: served.route,
        answer,
    })
}

/// A served request: its route (for the response headers) and its answer.
pub struct RoutedAnswer {
    pub route: RouteInfo,
    pub answer: Routed,
}

/// A served answer, whole or streamed, with what it still owes.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per request, like the engine's `Answer`: boxing would cost an allocation on the hot path"
)]
pub enum Routed {
    Whole(WholeAnswer),
    Stream(LimitedStream),
}

/// A whole answer and the team's token charge to correct by its usage.
pub struct WholeAnswer {
    completion: router_core::routing::engine::Completion,
    charge: crate::keys::TokenCharge,
    keys: Arc<crate::keys::Keys>,
    _ctx: RequestContext,
}

impl WholeAnswer {
    pub fn response(&self) -> &router_core::api::ChatResponse {
        self.completion.response()
    }

    /// Once the answer is written: the team's charge corrected by the answer's usage
    /// (the estimate when the provider gave none), and the completion dropped, which
    /// does its accounting.
    pub fn settle(self) {
        let used = self
            .completion
            .response()
            .usage
            .map_or(self.charge.estimate(), |u| u64::from(u.total_tokens));
        self.charge.settle(&self.keys, used);
    }
}

/// The feature's maximum stream duration (validation keeps it within a day).
fn stream_max(
    snapshot: &router_core::routing::engine::Snapshot,
    request: &ChatRequest,
) -> Duration {
    let ms = snapshot
        .config
        .feature(&request.model)
        .map_or(DEFAULT_MAX_STREAM_MS, |f| f.max_stream_ms)
        .min(router_core::config::MAX_STREAM_MS);
    Duration::from_millis(ms)
}

/// The 401 for a key whose team is no longer in the configuration.
fn removed_team(team: &str) -> Error {
    Error::new(
        ErrorKind::Unauthorized,
        format!(
            "this key's team `{team}` is not in the configuration any more: its keys are refused"
        ),
    )
}

/// A committed stream within what it may take, the same for every dialect: it ends
/// with an `upstream_error` when it outlives the feature's maximum duration (on the
/// engine's clock), and the team's token charge is corrected by its usage however it
/// ends.
pub struct LimitedStream {
    stream: Option<RoutedStream>,
    deadline: router_core::routing::clock::Sleep,
    max: Duration,
    usage: StreamUsage,
}

impl LimitedStream {
    /// The next chunk; after an error, `None`. Cancel-safe: dropping the future
    /// loses nothing (the stream and the deadline keep their state).
    pub async fn next(&mut self) -> Option<Result<ChatChunk, Error>> {
        use futures_util::future::{Either, select};
        let stream = self.stream.as_mut()?;
        match select(stream.next(), &mut self.deadline).await {
            Either::Left((Some(Ok(chunk)), _)) => {
                self.usage.saw(&chunk);
                Some(Ok(chunk))
            }
            Either::Left((Some(Err(error)), _)) => {
                self.stream = None;
                Some(Err(error))
            }
            // The report stays readable after a clean end.
            Either::Left((None, _)) => None,
            Either::Right(((), _)) => {
                // Dropping the stream ends it upstream; the router records it.
                self.stream = None;
                Some(Err(Error::new(
                    ErrorKind::UpstreamError,
                    format!(
                        "the stream lasted longer than the feature's maximum of {} ms and was ended",
                        self.max.as_millis()
                    ),
                )))
            }
        }
    }

    /// What the stream did besides passing chunks on (continuations), once it ended.
    pub fn report(&self) -> StreamReport {
        self.stream
            .as_ref()
            .map(RoutedStream::report)
            .unwrap_or_default()
    }
}

/// A stream's usage as it passes, and the team's token charge, corrected when the
/// stream ends — however it ends: by the provider's usage when it said, else by
/// Crossbar's count of what was sent (a quarter of the characters).
struct StreamUsage {
    keys: Arc<crate::keys::Keys>,
    charge: Option<crate::keys::TokenCharge>,
    prompt_chars: usize,
    completion_chars: usize,
    total_tokens: Option<u64>,
}

impl StreamUsage {
    fn saw(&mut self, chunk: &ChatChunk) {
        if let Some(usage) = chunk.usage {
            self.total_tokens = Some(u64::from(usage.total_tokens));
        }
        for choice in &chunk.choices {
            self.completion_chars += choice.delta.content.as_ref().map_or(0, String::len);
        }
    }
}

impl Drop for StreamUsage {
    fn drop(&mut self) {
        if let Some(charge) = self.charge.take() {
            let used = self.total_tokens.unwrap_or_else(|| {
                (self.prompt_chars as u64).div_ceil(4) + (self.completion_chars as u64).div_ceil(4)
            });
            charge.settle(&self.keys, used);
        }
    }
}

/// A committed stream as server-sent events: its chunks, `[DONE]` only after a clean
/// end, and an error event (after the first token nothing can fail over; the
/// upstream's text logged, not sent) as the stream's last word.
fn sse_response(stream: LimitedStream, include_usage: bool, request_id: String) -> Response {
    let events = futures_util::stream::unfold(Some(stream), move |stream| {
        let request_id = request_id.clone();
        async move {
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
                    Some(Err(e)) => {
                        let event =
                            sse_data(&public_error_logged(&request_id, &e).to_openai_json());
                        Some((Ok(event), None))
                    }
                    None => Some((Ok(stream_end(&stream.report())), None)),
                };
            }
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
    let key = match authenticate(&state, &headers, Dialect::Chat) {
        Ok(key) => key,
        Err(e) => return GatewayError::from(e).into_response(),
    };
    let snapshot = state.engine.snapshot();
    if snapshot.config.team(&key.team).is_none() {
        return GatewayError::from(removed_team(&key.team)).into_response();
    }
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

    /// What clouds put in error bodies never reaches a client: only the class, the
    /// endpoints and our own words.
    #[test]
    fn upstream_text_is_replaced_and_crossbars_own_words_kept() {
        let leaky = "Incorrect API key provided: sk-proj-****abcd; role arn:aws:iam::123456789012:role/crossbar at http://10.0.0.5:8080";
        // One attempt, its upstream's text.
        let single = Error::new(ErrorKind::UpstreamAuth, leaky)
            .at("openai", "oa")
            .with_upstream(Some(401), Some("invalid_api_key".into()));
        let public = public_error(&single);
        assert_eq!(public.message, ErrorKind::UpstreamAuth.safe_message());
        assert_eq!(
            (public.kind, public.upstream_status),
            (ErrorKind::UpstreamAuth, Some(401))
        );
        // A transport failure's text names an internal address: replaced too.
        let refused = Error::new(
            ErrorKind::Unavailable,
            "connecting to 10.0.0.5:8080: refused",
        )
        .at("openai", "oa");
        assert_eq!(
            public_message(&refused),
            ErrorKind::Unavailable.safe_message()
        );
        // Every attempt failed: endpoints and classes stay, and our timeouts' words.
        let all = Error::new(
            ErrorKind::Timeout,
            format!("all 3 attempt(s) failed: a: upstream_auth ({leaky}); b-2.x: rate_limited (slow down (really); a: timeout (no first token within 2000 ms)"),
        )
        .at("openai", "a");
        assert_eq!(
            public_message(&all),
            "all 3 attempt(s) failed: a: upstream_auth; b-2.x: rate_limited; a: timeout (no first token within 2000 ms)"
        );
        let deadline = Error::new(
            ErrorKind::Timeout,
            format!(
                "the feature's deadline of 30000 ms passed; attempts: a: unavailable ({leaky})"
            ),
        );
        assert_eq!(
            public_message(&deadline),
            "the feature's deadline of 30000 ms passed; attempts: a: unavailable"
        );
        // A list that does not read back exactly (an upstream forged an entry) gives
        // the count only.
        let forged = Error::new(
            ErrorKind::Unavailable,
            "all 1 attempt(s) failed: a: unavailable (x); b: timeout (sk-secret)",
        );
        let message = public_message(&forged);
        assert!(
            message.starts_with("all 1 attempt(s) failed") && !message.contains("sk-secret"),
            "{message}"
        );
        // Crossbar's own errors are kept as they are.
        for own in [
            Error::new(
                ErrorKind::NotFound,
                "unknown feature `nope`: `model` names a Crossbar feature",
            )
            .with_param("model"),
            Error::invalid("messages", "messages must not be empty"),
            Error::new(
                ErrorKind::QuotaExceeded,
                "key `k` is over its limit of 3 per minute",
            ),
            Error::new(ErrorKind::Timeout, "no answer within 5000 ms").at("openai", "a"),
            Error::unsupported(
                "tools",
                "endpoint `a` (openai) does not support tool calling",
            )
            .at("openai", "a"),
            Error::new(
                ErrorKind::Timeout,
                "the feature's deadline of 100 ms passed",
            ),
        ] {
            assert_eq!(public_message(&own), own.message, "{own:?}");
        }
        // An upstream's parameter name stays when it is only a name.
        let mut field = Error::new(ErrorKind::InvalidRequest, "bad").with_upstream(Some(400), None);
        field.param = Some("contents[0].parts".into());
        assert_eq!(
            public_error(&field).param.as_deref(),
            Some("contents[0].parts")
        );
        field.param = Some("x; see https://internal.example".into());
        assert_eq!(public_error(&field).param, None);
    }

    /// The server's state over one unreachable endpoint, team `t` configured, and
    /// a key of `t` and one of a team `gone` that the configuration no longer has.
    async fn state() -> (Arc<AppState>, String, String) {
        state_with(None).await
    }

    /// As [`state`], team `t` with a token limit of `tpm`.
    async fn state_with(tpm: Option<u64>) -> (Arc<AppState>, String, String) {
        use router_core::config::{
            AuthConfig, Config, EndpointConfig, FeatureConfig, Provider, RouterConfig, TeamConfig,
        };
        let mut endpoint = EndpointConfig::new("e", Provider::Openai, "m", "eastus");
        endpoint.base_url = Some("http://127.0.0.1:9".into());
        endpoint.auth = AuthConfig::None;
        let raw = RouterConfig {
            endpoints: vec![endpoint],
            features: vec![FeatureConfig::new("f", &["e"])],
            teams: vec![TeamConfig {
                name: "t".into(),
                requests_per_minute: None,
                tokens_per_minute: tpm,
            }],
            ..RouterConfig::default()
        };
        let store = crate::store::Store::open_in_memory().await.unwrap();
        let (ledger, _writer) = store.ledger_writer(16);
        let live = Arc::new(crate::live::Live::default());
        let sink = Arc::new(crate::live::ServerSink {
            ledger: ledger.clone(),
            live: live.clone(),
            events: tokio::sync::broadcast::channel(1).0,
        });
        let engine =
            router_core::routing::engine::Engine::new(Config::validate(raw).unwrap(), 1, sink)
                .await
                .unwrap();
        let (_, kept) = store.create_gateway_key("t", "k", None).await.unwrap();
        let (_, orphan) = store.create_gateway_key("gone", "k", None).await.unwrap();
        let keys = crate::keys::Keys::load(store.clone()).await.unwrap();
        let state = Arc::new(AppState::new(
            engine,
            store,
            keys,
            live,
            ledger,
            tokio::sync::broadcast::channel(1).0,
            tokio::sync::broadcast::channel(1).0,
            crate::limits::Limits::default(),
        ));
        (state, kept, orphan)
    }

    async fn chat(state: &Arc<AppState>, key: &str) -> (StatusCode, serde_json::Value) {
        let request = axum::http::Request::post(CHAT_COMPLETIONS)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(
                r#"{"model": "f", "messages": [{"role": "user", "content": "hi"}]}"#,
            ))
            .unwrap();
        let response = chat_completions(State(state.clone()), request).await;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// A team's limits live in the configuration: when the team is removed, its
    /// keys are refused (they used to go on working with no limits at all).
    #[tokio::test]
    async fn a_key_of_a_team_removed_from_the_configuration_is_refused() {
        let (state, kept, orphan) = state().await;
        let (status, body) = chat(&state, &orphan).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`gone`"),
            "{body}"
        );
        let (status, body) = chat(&state, &kept).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{body}");
        let models = |key: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
            );
            models(State(state.clone()), headers)
        };
        assert_eq!(models(&orphan).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(models(&kept).await.status(), StatusCode::OK);
    }

    /// The token charge of a request is corrected once it is answered: one that
    /// reached no endpoint used nothing, and gets its whole estimate back (it used
    /// to keep it, and the team's next request was refused).
    #[tokio::test]
    async fn a_request_that_is_not_served_gives_its_token_estimate_back() {
        // Each request is estimated at ~280 tokens (its characters / 4, plus 256
        // for its missing `max_tokens`): one fits in 300 a minute, two do not.
        let (state, key, _) = state_with(Some(300)).await;
        for _ in 0..3 {
            let (status, body) = chat(&state, &key).await;
            assert_ne!(body["error"]["code"], "quota_exceeded", "{body}");
            assert!(status.is_server_error(), "{status} {body}");
        }
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
