//! The `crossbar` server: the OpenAI-compatible gateway, the admin API, the store, and
//! the console's static files.
//!
//! It is a library as well as a binary so that tests (here and in `tests/`) build the
//! same [`Router`] the binary serves.
//!
//! - [`gateway`]: `/v1/chat/completions`, `/v1/models`, errors in the OpenAI shape, and
//!   the ingress pipeline every gateway route shares;
//! - [`dialects`]: `/v1/messages` (Anthropic Messages) and `/v1/responses` (OpenAI
//!   Responses), translated into the same unified request;
//! - [`admin`]: `/admin/v1/...` with roles, and its OpenAPI document;
//! - [`publish`]: the one way a configuration version goes live (admin API, file
//!   seeding, the replica follower);
//! - [`store`]: SQLite (WAL) through sqlx: config versions, audit log, keys, usage
//!   ledger (batched off the hot path) and per-minute rollups;
//! - [`live`]: the telemetry sink and in-memory live windows;
//! - [`metrics`]: Prometheus text format;
//! - [`keys`]: gateway keys and admin tokens resolved in memory, rate limits;
//! - [`file`]: the TOML configuration file;
//! - [`demo`]: `crossbar demo`, simulated clouds and traffic in one process.
//!
//! Latency and operations details:
//! - TCP_NODELAY is set on every accepted socket: without it, small chunked responses
//!   on keep-alive connections stall on delayed ACKs (~44 ms per request, measured).
//! - Shutdown is graceful: on Ctrl-C or SIGTERM the listener closes, in-flight
//!   requests and open streams finish, then the ledger is flushed.
//! - The hot path reads an immutable config snapshot and never waits on the database.

// `api::Error` is a flat ~150-byte struct on the failure path only (see router-core).
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod demo;
pub mod dialects;
pub mod file;
pub mod gateway;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod publish;
pub mod stack;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use router_core::admin::BreakerEvent;
use router_core::api::Health;
use router_core::config::Config;
use router_core::routing::engine::Engine;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tower_http::cors::CorsLayer;
use tower_http::services::{ServeDir, ServeFile};

pub use router_core::telemetry::record::unix_ms;

use crate::keys::Keys;
use crate::live::{Live, ServerSink};
use crate::stack::StackSettings;
use crate::store::{LedgerHandle, Store};

/// The console's entry page; also the answer to any path the console routes itself.
const INDEX_HTML: &str = "index.html";

/// Everything a request handler can reach.
pub struct AppState {
    pub engine: Engine,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub live: Arc<Live>,
    pub ledger: LedgerHandle,
    pub sink_events: broadcast::Sender<BreakerEvent>,
    pub config_events: broadcast::Sender<i64>,
    /// Serialises publishes in this process (the store refuses stale ones across
    /// replicas).
    pub publishing: tokio::sync::Mutex<()>,
}

/// The HTTP application: the gateway, the admin API, health and metrics, then the
/// console's files (any other path gets `index.html`, so the console's client-side
/// routes survive a reload).
pub fn app(state: Arc<AppState>, ui_dir: Option<&Path>) -> Router {
    let api = Router::new()
        .route(gateway::CHAT_COMPLETIONS, post(gateway::chat_completions))
        .route(
            dialects::messages::MESSAGES,
            post(dialects::messages::create).fallback(dialects::messages::method_not_allowed),
        )
        .route(
            dialects::messages::COUNT_TOKENS,
            post(dialects::messages::count_tokens).fallback(dialects::messages::method_not_allowed),
        )
        .route(
            dialects::responses::RESPONSES,
            post(dialects::responses::create),
        )
        .route("/v1/models", get(gateway::models))
        .route("/v1/{*rest}", axum::routing::any(gateway::not_found))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(gateway::method_not_allowed)
        // The gateway checks the size itself, to answer in the OpenAI shape.
        .layer(DefaultBodyLimit::disable());
    // The desktop console runs at tauri://localhost: it may call the admin API.
    let admin = admin::router(state.clone())
        .layer(CorsLayer::very_permissive().max_age(Duration::from_secs(600)));
    let mut app = api.nest("/admin/v1", admin);
    if let Some(ui_dir) = ui_dir {
        let console = ServeDir::new(ui_dir).fallback(ServeFile::new(ui_dir.join(INDEX_HTML)));
        app = app.fallback_service(console);
    }
    app.layer(
        tower_http::trace::TraceLayer::new_for_http()
            // The path only: the event stream's query carries a token.
            .make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
            })
            // Upstream failures are counted in /metrics and breaker events are logged;
            // one ERROR line per failed request would drown them.
            .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    )
    .with_state(state)
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: router_core::VERSION.to_owned(),
    })
}

/// Ready when a configuration is serving and the ledger writer keeps up.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let version = state.engine.snapshot().version;
    let ledger = state.ledger.stats();
    let ready = version > 0;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "config_version": version,
        "ledger": ledger,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Checks that `ui_dir` holds a built console, with a message that says how to get one.
pub fn check_ui_dir(ui_dir: &Path) -> anyhow::Result<()> {
    if !ui_dir.is_dir() {
        bail!(
            "the console directory `{}` does not exist: build the console with `cargo xtask build` \
             (or `cargo xtask demo`), or point `--ui-dir` at a built `ui/dist`",
            ui_dir.display()
        );
    }
    if !ui_dir.join(INDEX_HTML).is_file() {
        bail!(
            "the console directory `{}` has no {INDEX_HTML}: it is not a built console; \
             run `cargo xtask build`",
            ui_dir.display()
        );
    }
    Ok(())
}

/// How to start: where the configuration comes from and where state lives.
pub struct Options {
    pub listen: SocketAddr,
    pub ui_dir: Option<PathBuf>,
    /// `None`: an in-memory database (tests, throwaway demos).
    pub db: Option<PathBuf>,
    /// The configuration file: seeds an empty store; with `publish_file`, published
    /// as a new version when it differs from the active one.
    pub config: Option<file::ConfigFile>,
    pub publish_file: bool,
    /// An admin token to create (role admin) at start-up, e.g. from `CROSSBAR_ADMIN_TOKEN`.
    pub bootstrap_admin_token: Option<String>,
    /// Serving threads, each with its own runtime; 0: one per CPU.
    pub workers: usize,
    /// On h2c endpoints, send a request that finds nothing else in flight from its
    /// serving thread over HTTP/1.1 instead (`providers::TransportSettings`).
    pub upstream_http1_when_idle: bool,
}

/// A bound, not yet running server: binding first lets the caller learn the real
/// address (port 0 picks a free port) before serving.
pub struct Server {
    listener: TcpListener,
    pub state: Arc<AppState>,
    router: Router,
    workers: usize,
    background: Vec<tokio::task::JoinHandle<()>>,
    ledger_task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(options: Options) -> anyhow::Result<Server> {
        if let Some(ui_dir) = &options.ui_dir {
            check_ui_dir(ui_dir)?;
        }
        let store = match &options.db {
            Some(path) => Store::open(path).await?,
            None => Store::open_in_memory().await?,
        };
        let (version, raw) =
            file::load_or_seed(&store, options.config.as_ref(), options.publish_file).await?;
        if let Some(token) = &options.bootstrap_admin_token {
            store
                .insert_admin_token_hash(
                    "bootstrap",
                    router_core::admin::Role::Admin,
                    &store::sha256_hex(token),
                )
                .await?;
        }
        let config = Config::validate(raw).map_err(|p| {
            anyhow::anyhow!("the active configuration (version {version}) is invalid:\n{p}")
        })?;
        let (ledger, ledger_task) = store.ledger_writer(65_536);
        let live = Arc::new(Live::default());
        let (sink_events, _) = broadcast::channel(1024);
        let (config_events, _) = broadcast::channel(64);
        let sink = Arc::new(ServerSink {
            ledger: ledger.clone(),
            live: live.clone(),
            events: sink_events.clone(),
        });
        // One runtime per serving thread: each thread keeps its own upstream
        // connections (`PoolScope::PerThread`).
        let engine = Engine::with_parts(
            config,
            version,
            sink,
            router_core::routing::engine::EngineParts {
                transport: router_core::providers::TransportSettings {
                    pool: router_core::providers::PoolScope::PerThread,
                    http1_when_idle: options.upstream_http1_when_idle,
                },
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect the configured endpoints: {e}"))?;
        let keys = Keys::load(store.clone()).await?;
        let state = Arc::new(AppState {
            engine,
            store,
            keys: keys.clone(),
            live,
            ledger,
            sink_events,
            config_events,
            publishing: tokio::sync::Mutex::new(()),
        });
        let listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        let background = vec![
            keys.spawn_refresh(Duration::from_secs(5)),
            spawn_breaker_ticker(state.clone()),
            spawn_health_prober(state.clone()),
            spawn_config_follower(state.clone()),
        ];
        Ok(Server {
            listener,
            router: app(state.clone(), options.ui_dir.as_deref()),
            workers: options.workers,
            state,
            background,
            ledger_task,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, lets in-flight requests and streams finish,
    /// then flushes the ledger.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = stack::service(self.state.clone(), self.router, StackSettings::default());
        serve(self.listener, service, self.workers, shutdown).await?;
        for task in self.background {
            task.abort();
        }
        let stats = self.state.ledger.stats();
        tracing::info!(queued = stats.queued, "draining the usage ledger");
        self.state.ledger.clone().shutdown().await;
        let _ = self.ledger_task.await;
        let stats = self.state.ledger.stats();
        tracing::info!(
            written = stats.written,
            dropped = stats.dropped,
            "usage ledger flushed"
        );
        Ok(())
    }
}

/// Serves `service` on `listener` with `workers` serving threads until `shutdown`
/// completes, then lets open requests and streams finish.
///
/// Thread per core: each serving thread runs its own single-threaded tokio runtime,
/// and a connection lives on one of them for its whole life, with the upstream
/// connections its requests use (the plain-HTTP endpoint clients keep a pool per
/// thread, see router-core's `transport`). A request then crosses no thread on its way: the
/// client's socket, the handler and the upstream h2 connection wake each other on
/// one thread, without the futex round trips and work stealing of a shared
/// multi-threaded scheduler (16 % of the gateway's CPU at c=32 with one).
///
/// The accept loop runs on the caller's runtime and hands each connection to the
/// thread with the fewest open connections, so long-lived streams spread evenly.
async fn serve<S>(
    listener: TcpListener,
    service: S,
    workers: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    S: Stack,
{
    let threads = if workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        workers
    };
    // Every thread keeps its runtime, and so its upstream connections, until all of
    // them have drained: a connection handed between pools must stay driven.
    let drained = Arc::new(tokio::sync::Barrier::new(threads));
    let mut pool = Vec::with_capacity(threads);
    for index in 0..threads {
        pool.push(ServingThread::start(
            index,
            service.clone(),
            drained.clone(),
        )?);
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted.and_then(|(stream, _)| stream.into_std()) {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                #[allow(clippy::disallowed_methods, reason = "the accept loop is an I/O edge")]
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut stream = Some(stream);
        while let Some(unserved) = stream.take() {
            let Some(least_busy) = pool
                .iter()
                .filter(|t| t.serving())
                .min_by_key(|t| t.open.load(std::sync::atomic::Ordering::Relaxed))
            else {
                tracing::error!("no serving thread is left; connection refused");
                break;
            };
            stream = least_busy.hand_over(unserved).err();
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; waiting for open requests and streams to finish");
    // All threads hear first, then each is waited for: each waits for the others.
    let ended: Vec<_> = pool.into_iter().map(ServingThread::finish).collect();
    for thread in ended {
        let _ = thread.await;
    }
    Ok(())
}

/// The service every connection serves: [`stack::service`].
trait Stack:
    tower::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = axum::http::Response<stack::StackBody>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Stack for S where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<stack::StackBody>,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// What every connection serves: the [`stack`] over the dispatch, as hyper wants it.
type ConnectionService<S> = hyper_util::service::TowerToHyperService<S>;

/// One serving thread: a single-threaded runtime that serves the connections it is
/// handed.
struct ServingThread {
    connections: tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>,
    /// Connections open on this thread.
    open: Arc<std::sync::atomic::AtomicUsize>,
    /// Closed when the thread has ended.
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl ServingThread {
    fn start<S: Stack>(
        index: usize,
        service: S,
        drained: Arc<tokio::sync::Barrier>,
    ) -> anyhow::Result<ServingThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a serving thread's runtime")?;
        let (connections, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = open.clone();
        std::thread::Builder::new()
            .name(format!("crossbar-serve-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    use futures_util::FutureExt;
                    let serving = serve_connections(incoming, service, counter);
                    // A panic here ends this thread's serving, not the process: its
                    // connections go to the others, and shutdown still completes.
                    if std::panic::AssertUnwindSafe(serving)
                        .catch_unwind()
                        .await
                        .is_err()
                    {
                        tracing::error!(thread = index, "a serving thread's loop panicked");
                    }
                    drained.wait().await;
                });
                // Dropping the runtime ends what is left on it (idle upstream
                // connections) before the thread reports its end.
                drop(runtime);
                drop(ended_tx);
            })
            .context("cannot start a serving thread")?;
        Ok(ServingThread {
            connections,
            open,
            ended,
        })
    }

    /// Hands `stream` to this thread, or gives it back if the thread has stopped
    /// serving (its loop panicked and dropped its end of the channel).
    fn hand_over(&self, stream: std::net::TcpStream) -> Result<(), std::net::TcpStream> {
        use std::sync::atomic::Ordering::Relaxed;
        self.open.fetch_add(1, Relaxed);
        self.connections.send(stream).map_err(|unsent| {
            self.open.fetch_sub(1, Relaxed);
            tracing::error!("a serving thread has stopped; its connections go to the others");
            unsent.0
        })
    }

    /// Whether the thread still takes connections.
    fn serving(&self) -> bool {
        !self.connections.is_closed()
    }

    /// Tells the thread that no more connections come; what it returns completes once
    /// the thread has served its open ones and ended.
    fn finish(self) -> tokio::sync::oneshot::Receiver<()> {
        drop(self.connections);
        self.ended
    }
}

/// A serving thread's loop: HTTP/1.1 (keep-alive) and HTTP/2 (h2c), TCP_NODELAY on
/// every socket, and a graceful end that lets open requests — streams included —
/// finish once no more connections come.
///
/// Written out rather than `axum::serve`: that one keeps every connection in a task
/// whose state costs ~40 KB of memory even when idle, ~15× what this loop's costs
/// (measured with 5,000 idle connections); at 10,000 open streams that is the
/// difference between fitting in 300 MB or not.
async fn serve_connections<S: Stack>(
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    service: S,
    open: Arc<std::sync::atomic::AtomicUsize>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let wake_guard = tokio::spawn(keep_a_timer_armed());
    while let Some(stream) = incoming.recv().await {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%err, "cannot serve an accepted socket");
                open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY on an accepted socket");
        }
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                ConnectionService::new(service.clone()),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        let open = open.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!(%err, "connection ended with an error");
            }
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    graceful.shutdown().await;
    wake_guard.abort();
}

/// Keeps a timer due within a second on the serving thread's runtime.
///
/// tokio's timer wakes its driver (an `eventfd` write, and one more `epoll_wait`) when
/// a timer is set earlier than the earliest it knew of when it last went idle. At
/// one request at a time the thread goes idle with no timer at all, so each of the
/// request's timeouts (the attempt's, the upstream exchange's) cost that wakeup: two
/// system calls and a loop of the runtime per request, on the request's critical
/// path. A timer that is always due within a second, earlier than any request's
/// timeout, keeps that from happening, at the price of one wakeup a second.
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Time-driven breaker transitions (open → ramp, stage advances) happen even when
/// an endpoint gets no traffic.
fn spawn_breaker_ticker(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            state.engine.tick();
        }
    })
}

/// Health probes of open endpoints (see [`Engine::probe`]), about once a second: a
/// recovered endpoint gets traffic back within seconds, however little comes.
fn spawn_health_prober(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            state.engine.probe().await;
        }
    })
}

/// Several replicas share one database: each follows the newest published version,
/// through the publish path's own steps ([`publish::follow`]: validate, prepare,
/// activate, notify; another replica has already recorded it).
fn spawn_config_follower(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(Some(active)) = state.store.active_config().await else {
                continue;
            };
            if active.version <= state.engine.snapshot().version {
                continue;
            }
            let version = active.version;
            if let Err(err) = publish::follow(&state, active).await {
                tracing::error!(version, %err, "cannot apply a published version");
            }
        }
    })
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, the signals a terminal, systemd or a
/// container runtime send.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
