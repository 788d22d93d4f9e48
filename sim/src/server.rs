//! Listeners and the control API.
//!
//! Each endpoint has its own listener serving its provider's routes plus a control
//! API under `/_sim`:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /_sim` | the endpoint: name, kind, region, models, auth, URL |
//! | `GET /_sim/faults` | current fault settings |
//! | `PUT /_sim/faults` | replace them (missing fields take defaults) |
//! | `PATCH /_sim/faults` | merge a partial setting (JSON merge patch) |
//! | `GET /_sim/stats` | counters: requests, tokens, statuses, faults fired, credentials; and `log`, the last requests ([`crate::request_log`]) |
//! | `POST /_sim/stats/reset` | zero the counters, the capacity window and the request log |
//!
//! The process-wide control listener (`control` in the config) serves the same under
//! `/_sim/endpoints/{name}/...`, plus `GET /_sim/endpoints`. It is how an endpoint in a
//! `refuse` outage (its own listener closed) is brought back.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::config::{Kind, SimConfig};
use crate::endpoint::{Endpoint, Registry, Unanswered};
use crate::faults::{Faults, Outage};
use crate::request_log::{self, Seen};
use crate::{bedrock, google, identity, openai, vertex};

/// A running simulator process (or an in-process one, in tests).
pub struct Sim {
    endpoints: Vec<Arc<Endpoint>>,
    control: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Binds every listener, then serves in the background.
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        config.validate()?;
        let registry = Arc::new(Registry::default());
        let epoch = tokio::time::Instant::now();
        let (shutdown, _) = watch::channel(false);
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        for spec in config.endpoints {
            let listen = spec.listen;
            let ep = Endpoint::started_at(spec, config.seed, registry.clone(), epoch);
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding endpoint {} to {listen}", ep.name()))?;
            ep.set_addr(listener.local_addr()?);
            let app = endpoint_app(ep.clone());
            tasks.push(tokio::spawn(serve_endpoint(
                ep.clone(),
                listener,
                app,
                shutdown.subscribe(),
            )));
            endpoints.push(ep);
        }
        let mut control = None;
        if let Some(addr) = config.control {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the control API to {addr}"))?;
            control = Some(listener.local_addr()?);
            let app = control_app(endpoints.clone());
            let (never, _) = watch::channel(0u64);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                app,
                shutdown.subscribe(),
                never,
            )));
        }
        Ok(Sim {
            endpoints,
            control,
            shutdown,
            tasks,
        })
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The endpoint named `name`. Panics if there is none (a test's typo).
    pub fn endpoint(&self, name: &str) -> &Arc<Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.name() == name)
            .unwrap_or_else(|| panic!("no simulated endpoint named {name}"))
    }

    /// `http://ADDR` of an endpoint.
    pub fn url(&self, name: &str) -> String {
        self.endpoint(name).url()
    }

    /// What endpoint `name` saw: its request log, oldest first.
    pub fn requests(&self, name: &str) -> Vec<Seen> {
        self.endpoint(name).requests()
    }

    pub fn control_url(&self) -> Option<String> {
        self.control.map(|a| format!("http://{a}"))
    }

    /// Stops every listener and drops open connections.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn provider_routes(kind: Kind) -> Router<Arc<Endpoint>> {
    match kind {
        Kind::Bedrock => bedrock::routes(),
        Kind::Vertex => vertex::routes(),
        Kind::Openai => openai::routes(),
        Kind::Identity => identity::routes(),
    }
}

fn endpoint_app(ep: Arc<Endpoint>) -> Router {
    let provider = provider_routes(ep.kind())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ep.clone(), observe))
        .with_state(ep.clone());
    control_routes(ep).merge(provider)
}

/// Answers an unknown route in the provider's own error format.
async fn not_found(State(ep): State<Arc<Endpoint>>, request: Request) -> Response {
    let e = crate::endpoint::SimError::NotFound(format!(
        "No route for {} {}",
        request.method(),
        request.uri().path()
    ));
    match ep.kind() {
        Kind::Bedrock => bedrock::error_response(&ep, &e),
        Kind::Vertex | Kind::Identity => google::error_response(&e),
        Kind::Openai => openai::error_response(&e),
    }
}

/// Around every provider request: writes it to the request log, counts its status, and
/// carries out the faults that are not answers (a reset, a silence), which need the
/// connection rather than a response.
async fn observe(State(ep): State<Arc<Endpoint>>, request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<Connection>().cloned();
    let seq = ep.log_arrival(request.method().as_str(), request.uri().path());
    let (response, note) = request_log::with_note(seq, next.run(request)).await;
    let unanswered = response.extensions().get::<Unanswered>().copied();
    let status = response.status().as_u16();
    let at = ep.since_start_ms();
    ep.log_update(seq, |e| {
        e.model = note.model;
        e.stream = note.stream.unwrap_or(false);
        e.prefill = note.prefill;
        e.responded_ms = Some(at);
        match unanswered {
            Some(_) => e.outcome = note.outcome.unwrap_or("reset").into(),
            None => {
                e.status = Some(status);
                e.outcome = match note.outcome {
                    Some(outcome) => outcome.into(),
                    None if response.status().is_success() => "ok".into(),
                    None => format!("http_{status}"),
                };
            }
        }
    });
    match unanswered {
        None => {
            ep.record(|s| *s.statuses.entry(status).or_default() += 1);
            response
        }
        Some(Unanswered::Reset) => {
            match connection {
                Some(connection) => connection.reset(),
                None => tracing::warn!(
                    endpoint = ep.name(),
                    "a reset was injected on a request without a connection: it stays silent"
                ),
            }
            // The connection task drops this request with the connection.
            std::future::pending().await
        }
        // Until the client gives up (hyper then drops this future) or the simulator
        // shuts down (the connection task drops the connection).
        Some(Unanswered::Silent) => std::future::pending().await,
    }
}

fn control_routes(ep: Arc<Endpoint>) -> Router {
    Router::new()
        .route("/_sim", get(info))
        .route(
            "/_sim/faults",
            get(get_faults).put(put_faults).patch(patch_faults),
        )
        .route("/_sim/stats", get(stats))
        .route("/_sim/stats/reset", post(reset_stats))
        .with_state(ep)
}

fn describe(ep: &Endpoint) -> Value {
    json!({
        "name": ep.name(),
        "kind": ep.kind().as_str(),
        "url": ep.url(),
        "region": ep.spec.region,
        "models": ep.spec.models,
        "auth": ep.spec.auth,
        "context_window": ep.spec.context_window,
    })
}

async fn info(State(ep): State<Arc<Endpoint>>) -> Response {
    axum::Json(describe(&ep)).into_response()
}

async fn get_faults(State(ep): State<Arc<Endpoint>>) -> Response {
    axum::Json(ep.faults()).into_response()
}

async fn put_faults(State(ep): State<Arc<Endpoint>>, body: Bytes) -> Response {
    apply_faults(&ep, &body, |_, value| Faults::from_value(value))
}

async fn patch_faults(State(ep): State<Arc<Endpoint>>, body: Bytes) -> Response {
    apply_faults(&ep, &body, |current, patch| current.patched(&patch))
}

/// Validates the whole new setting first; a bad one is a 400 that changes nothing.
fn apply_faults(
    ep: &Endpoint,
    body: &[u8],
    make: impl FnOnce(&Faults, Value) -> Result<Faults, String>,
) -> Response {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return control_error(format!("malformed JSON: {e}")),
    };
    match ep.update_faults(|current| make(current, value)) {
        Ok(faults) => {
            tracing::info!(endpoint = ep.name(), faults = %serde_json::to_string(&faults).unwrap_or_default(), "faults changed");
            axum::Json(faults).into_response()
        }
        Err(message) => control_error(message),
    }
}

fn control_error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// The counters, plus `log`: the request log.
fn stats_json(ep: &Endpoint) -> Value {
    let mut stats = serde_json::to_value(ep.stats()).unwrap_or_else(|_| json!({}));
    stats["log"] = serde_json::to_value(ep.requests()).unwrap_or_else(|_| json!([]));
    stats
}

async fn stats(State(ep): State<Arc<Endpoint>>) -> Response {
    axum::Json(stats_json(&ep)).into_response()
}

async fn reset_stats(State(ep): State<Arc<Endpoint>>) -> Response {
    ep.reset_stats();
    axum::Json(stats_json(&ep)).into_response()
}

/// The process-wide control API: forwards `/_sim/endpoints/{name}/...` to that
/// endpoint's own control routes, so both surfaces behave identically.
fn control_app(endpoints: Vec<Arc<Endpoint>>) -> Router {
    let endpoints = Arc::new(endpoints);
    Router::new()
        .route("/_sim/endpoints", get(list_endpoints))
        .route("/_sim/endpoints/{name}", any(forward))
        .route("/_sim/endpoints/{name}/{*rest}", any(forward))
        .with_state(endpoints)
}

async fn list_endpoints(State(endpoints): State<Arc<Vec<Arc<Endpoint>>>>) -> Response {
    axum::Json(endpoints.iter().map(|e| describe(e)).collect::<Vec<_>>()).into_response()
}

async fn forward(
    State(endpoints): State<Arc<Vec<Arc<Endpoint>>>>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let Some(ep) = endpoints.iter().find(|e| e.name() == name) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("no endpoint named `{name}`") })),
        )
            .into_response();
    };
    let rest = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| format!("/{v}"))
        .unwrap_or_default();
    let (mut parts, body) = request.into_parts();
    parts.uri = match format!("/_sim{rest}").parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    match control_routes(ep.clone())
        .oneshot(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Serves one endpoint, closing and reopening its listener as `outage` moves in and
/// out of `refuse`.
async fn serve_endpoint(
    ep: Arc<Endpoint>,
    first: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = first.local_addr().expect("a bound listener has an address");
    let mut outage = ep.watch_outage();
    let mut listener = Some(first);
    // Bumped to drop every open connection when the endpoint starts refusing.
    let (generation, _) = watch::channel(0u64);
    loop {
        let refusing = *outage.borrow_and_update() == Outage::Refuse;
        if refusing && listener.is_some() {
            listener = None;
            // Let the control response that asked for this reach its client first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            generation.send_modify(|g| *g += 1);
            tracing::info!(endpoint = ep.name(), "listener closed (outage = refuse)");
        } else if !refusing && listener.is_none() {
            match bind_again(addr).await {
                Ok(l) => {
                    tracing::info!(endpoint = ep.name(), %addr, "listener reopened");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::error!(endpoint = ep.name(), %addr, error = %e, "cannot reopen listener")
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = outage.changed() => if changed.is_err() { break },
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    spawn_connection(stream, app.clone(), shutdown.clone(), generation.subscribe());
                }
            }
        }
    }
    generation.send_modify(|g| *g += 1);
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn bind_again(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.expect("at least one attempt"))
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    generation: watch::Sender<u64>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    spawn_connection(stream, app.clone(), shutdown.clone(), generation.subscribe());
                }
            }
        }
    }
}

fn spawn_connection(
    stream: TcpStream,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    mut generation: watch::Receiver<u64>,
) {
    let _ = stream.set_nodelay(true);
    let handle = Connection::default();
    let stream = ResetOnDrop {
        stream,
        reset: handle.reset.clone(),
    };
    tokio::spawn(async move {
        let aborted = handle.aborted.clone();
        // Every request carries its connection, so a handler can have it reset.
        let app = app.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(handle.clone());
            request
        });
        let service = TowerToHyperService::new(app);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A client speaking h2c may multiplex thousands of streams on one connection
        // (load tests hold 10,000 open streams): do not cap them at hyper's default.
        builder.http2().max_concurrent_streams(100_000);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            _ = connection => {}
            _ = shutdown.changed() => {}
            _ = generation.changed() => {}
            // Dropping the connection drops the socket: with the reset flag set, an RST.
            _ = aborted.notified() => {}
        }
    });
}

/// A request's way back to its TCP connection: what an injected `reset` pulls.
#[derive(Clone, Default)]
struct Connection {
    reset: Arc<AtomicBool>,
    aborted: Arc<Notify>,
}

impl Connection {
    /// Closes the connection with a TCP RST (zero linger), whatever is in flight on it
    /// (over HTTP/2, every stream of the connection).
    fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        // A stored permit if the connection task is not waiting yet.
        self.aborted.notify_one();
    }
}

/// The accepted socket, which closes with an RST instead of a FIN when its
/// connection was reset.
struct ResetOnDrop {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst)
            && let Err(e) = self.stream.set_zero_linger()
        {
            tracing::warn!(error = %e, "cannot set SO_LINGER 0: the reset closes normally");
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
