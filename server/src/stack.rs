//! The one middleware stack every HTTP request goes through, and the dispatch
//! behind it.
//!
//! Top to bottom (a request passes them in this order, its response back up):
//!
//! 1. **request id** — Crossbar gives every request its own id (`x-request-id`,
//!    time-ordered: see [`new_request_id`]) and returns it on the response. An id a
//!    client sends is replaced: the id keys the usage ledger, so it must be unique and
//!    ours;
//! 2. **panic catch** — a panic in a handler becomes a 500 in the API's error shape
//!    (`{"error": {..., "code": "internal"}}`) for that request only, logged; the
//!    connection, the serving thread and every other request carry on;
//! 3. **timeout** — a backstop on the time to a response head (the gateway's own
//!    deadlines end a request long before it; this catches a handler that hangs);
//! 4. **body-read timeout** — a request body that sends nothing for
//!    `body_read_timeout` fails to read (a 400 on the gateway), so a client cannot
//!    hold a handler, and its connection, by sending a body slowly or not at all;
//! 5. **dispatch** — `POST /v1/chat/completions` goes straight to its handler (the
//!    hot path: axum's route matching and the trace layer's bookkeeping were 2.6 % of
//!    the gateway's CPU at c=32), everything else through the [`crate::app`] router
//!    (the gateway's other routes, the admin API, the console).
//!
//! The chat route is dispatched *inside* the stack, so a layer added here applies to
//! it like to every other route (a test holds the chat route to that).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::Instrument;

use crate::{AppState, gateway};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A response body as the stack hands it to hyper.
pub type StackBody = tower_http::body::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;

/// The stack's settings.
#[derive(Debug, Clone, Copy)]
pub struct StackSettings {
    /// The backstop on a response head: longer than any feature's deadline.
    pub response_timeout: Duration,
    /// The longest a request body may send nothing (`crate::limits::Limits`).
    pub body_read_timeout: Duration,
}

impl Default for StackSettings {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(600),
            body_read_timeout: crate::limits::Limits::default().body_read_timeout,
        }
    }
}

/// Every request's service: the stack over the dispatch.
pub fn service<B>(
    state: Arc<AppState>,
    router: axum::Router,
    settings: StackSettings,
) -> impl tower::Service<
    Request<B>,
    Response = Response<StackBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            X_REQUEST_ID,
            |_: &Request<B>| HeaderValue::try_from(new_request_id()).ok(),
        ))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            settings.response_timeout,
        ))
        .layer(RequestBodyTimeoutLayer::new(body_timeout(
            settings.body_read_timeout,
        )))
        .service(Dispatch { state, router })
}

/// The body-read timeout, a year when it is off (zero).
fn body_timeout(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::from_secs(365 * 86_400)
    } else {
        d
    }
}

/// The chat route straight to its handler, the rest through the router.
#[derive(Clone)]
struct Dispatch {
    state: Arc<AppState>,
    router: axum::Router,
}

impl<B> tower::Service<Request<B>> for Dispatch
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        use tower::ServiceExt;

        let request = request.map(Body::new);
        let span =
            tracing::debug_span!("http", method = %request.method(), path = %request.uri().path());
        if request.method() == axum::http::Method::POST
            && request.uri().path() == gateway::CHAT_COMPLETIONS
        {
            let state = self.state.clone();
            Box::pin(
                async move { Ok(gateway::chat_completions(State(state), request).await) }
                    .instrument(span),
            )
        } else {
            Box::pin(self.router.clone().oneshot(request).instrument(span))
        }
    }
}

/// The answer to a request whose handler panicked: a 500 in the error shape both
/// APIs share, with nothing of the panic in it (that goes to the log).
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = %router_core::logging::escaped(what), "a request's handler panicked");
    let body = serde_json::json!({"error": {
        "message": "internal error: the request failed inside Crossbar (logged); other requests are unaffected",
        "type": "server_error",
        "param": null,
        "code": "internal",
    }});
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request id: 128 bits in hex, the first 48 the time in milliseconds and the
/// other 80 random (the layout of a UUIDv7 or a ULID). Ids that grow with time keep
/// the ledger's primary-key index append-only: random ones cost a B-tree rebalance
/// in a random page for every row.
pub fn new_request_id() -> String {
    let ms = crate::store::unix_ms() as u64 & 0xffff_ffff_ffff;
    let mut id = String::with_capacity(4 + 32);
    id.push_str("req_");
    for (value, digits) in [
        (ms, 12),
        (u64::from(fastrand::u16(..)), 4),
        (fastrand::u64(..), 16),
    ] {
        for i in (0..digits).rev() {
            id.push(char::from(
                b"0123456789abcdef"[(value >> (4 * i) & 0xf) as usize],
            ));
        }
    }
    id
}

/// The id the stack gave `request` (a fresh one outside the stack, e.g. in a
/// handler's unit test).
pub fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map_or_else(new_request_id, str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::live::Live;
    use crate::store::Store;
    use router_core::admin::BreakerEvent;
    use router_core::config::{
        AuthConfig, Config, EndpointConfig, FeatureConfig, Provider, RouterConfig, TeamConfig,
    };
    use router_core::routing::engine::Engine;
    use router_core::telemetry::record::{RequestRecord, TelemetrySink};
    use tower::ServiceExt;

    /// A sink that panics on every request record: the failure of a request's own
    /// code, on demand.
    struct PanickingSink;

    impl TelemetrySink for PanickingSink {
        fn request(&self, record: RequestRecord) {
            panic!("a sink that cannot take {}", record.request_id);
        }
        fn breaker(&self, _: BreakerEvent) {}
    }

    /// The server's state with an engine whose every record panics, and a gateway
    /// key for team `t`.
    async fn panicking_state() -> (Arc<AppState>, String) {
        let mut endpoint = EndpointConfig::new("e", Provider::Openai, "m", "eastus");
        endpoint.base_url = Some("http://127.0.0.1:9".into());
        endpoint.auth = AuthConfig::None;
        let raw = RouterConfig {
            endpoints: vec![endpoint],
            features: vec![FeatureConfig::new("f", &["e"])],
            teams: vec![TeamConfig {
                name: "t".into(),
                requests_per_minute: None,
                tokens_per_minute: None,
            }],
            ..RouterConfig::default()
        };
        let engine = Engine::new(Config::validate(raw).unwrap(), 1, Arc::new(PanickingSink))
            .await
            .unwrap();
        let store = Store::open_in_memory().await.unwrap();
        let (_, key) = store.create_gateway_key("t", "k", None).await.unwrap();
        let keys = Keys::load(store.clone()).await.unwrap();
        let (ledger, _writer) = store.ledger_writer(16);
        let state = Arc::new(AppState::new(
            engine,
            store,
            keys,
            Arc::new(Live::default()),
            ledger,
            tokio::sync::broadcast::channel(1).0,
            tokio::sync::broadcast::channel(1).0,
            crate::limits::Limits::default(),
        ));
        (state, key)
    }

    /// The chat route is dispatched inside the stack: its response carries the
    /// stack's request id (the handler sets none), and a panic in its handler is the
    /// stack's 500, not a dropped connection. Were the route dispatched before the
    /// stack, both would fail.
    #[tokio::test]
    async fn the_chat_route_goes_through_every_layer_of_the_stack() {
        let (state, key) = panicking_state().await;
        let service = service(
            state.clone(),
            crate::app(state, None),
            StackSettings::default(),
        );
        // An unknown feature is recorded at once, inside the handler: the sink panics.
        let request = Request::post(gateway::CHAT_COMPLETIONS)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(X_REQUEST_ID, "client-chosen")
            .body(Body::from(
                r#"{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}"#,
            ))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = response.headers()[X_REQUEST_ID]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            id.starts_with("req_") && id.len() == 36,
            "ours, not the client's: {id}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(
            !body.to_string().contains("cannot take"),
            "the panic's text stays in the log: {body}"
        );

        // The same stack serves every other route.
        let health = Request::get("/healthz").body(Body::empty()).unwrap();
        let response = service.oneshot(health).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key(X_REQUEST_ID));
    }

    #[test]
    fn request_ids_are_unique_and_sort_by_time() {
        let first = new_request_id();
        std::thread::sleep(Duration::from_millis(2));
        let ids: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        assert!(
            ids.iter().all(|id| id.len() == 4 + 32 && id > &first),
            "{first} {ids:?}"
        );
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let ms = u64::from_str_radix(&first[4..16], 16).unwrap();
        assert!(ms.abs_diff(crate::unix_ms() as u64) < 60_000, "{first}");
    }
}
