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
//! - [`policy`]: the operator's start-up security settings: where endpoint
//!   credentials may come from and go to, and which browser origins may call the
//!   admin API;
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
//! - Shutdown is graceful and bounded: on Ctrl-C or SIGTERM the listener closes,
//!   event streams end, in-flight requests and open streams get `--drain-timeout` to
//!   finish (then they are cut, and recorded as cancelled), then the ledger is
//!   flushed; a second signal cuts at once ([`Server::run_until`], `serve.rs`).
//! - Connections are bounded in number, per client address and in time
//!   ([`limits`]).
//! - The hot path reads an immutable config snapshot and never waits on the database.

// `api::Error` is a flat ~150-byte struct on the failure path only (see router-core).
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod demo;
pub mod dialects;
pub mod file;
pub mod gateway;
pub mod keys;
pub mod limits;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod overrides;
pub mod policy;
pub mod publish;
mod serve;
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
use tower_http::services::{ServeDir, ServeFile};

pub use router_core::telemetry::record::unix_ms;

use crate::keys::Keys;
use crate::live::{Live, ServerSink};
use crate::policy::Security;
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
    /// The limits and timeouts the server runs with.
    pub limits: limits::Limits,
    /// `/admin/v1/events` streams open now (at most `limits.max_event_streams`).
    pub event_streams: std::sync::atomic::AtomicUsize,
    /// `true` once shutdown has begun: event streams end, `/readyz` says `draining`.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The revision of the breaker override applied last, per endpoint
    /// ([`overrides`]).
    pub overrides: parking_lot::Mutex<std::collections::HashMap<String, i64>>,
    /// What the retention task did, for `/readyz`.
    pub retention: parking_lot::Mutex<RetentionStatus>,
}

/// The retention task's work so far, as `/readyz` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RetentionStatus {
    /// The policy of the last run (the active configuration's `[retention]`).
    pub policy: Option<router_core::config::Retention>,
    /// When the last run ended (ms since the Unix epoch).
    pub last_run_ms: Option<i64>,
    /// Rows the last run deleted, per table.
    pub last_deleted: store::Deleted,
    /// Rows deleted since start, per table.
    pub deleted: store::Deleted,
    /// Why the last run failed, if it did.
    pub last_error: Option<String>,
}

impl AppState {
    /// The state of a server: `limits` as given, nothing open, not shutting down.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        store: Store,
        keys: Arc<Keys>,
        live: Arc<Live>,
        ledger: LedgerHandle,
        sink_events: broadcast::Sender<BreakerEvent>,
        config_events: broadcast::Sender<i64>,
        limits: limits::Limits,
    ) -> AppState {
        AppState {
            engine,
            store,
            keys,
            live,
            ledger,
            sink_events,
            config_events,
            publishing: tokio::sync::Mutex::new(()),
            limits,
            event_streams: std::sync::atomic::AtomicUsize::new(0),
            shutdown: tokio::sync::watch::Sender::new(false),
            overrides: parking_lot::Mutex::default(),
            retention: parking_lot::Mutex::default(),
        }
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// The HTTP application with the default [`Security`] settings: see [`app_with`].
pub fn app(state: Arc<AppState>, ui_dir: Option<&Path>) -> Router {
    app_with(state, ui_dir, &Security::default())
}

/// The HTTP application: the gateway, the admin API, health and metrics, then the
/// console's files (any other path gets `index.html`, so the console's client-side
/// routes survive a reload).
///
/// Browser-facing protections, from `security`:
/// - the admin API answers cross-origin requests only from the desktop app's origins
///   and the operator's `--cors-origin`s ([`policy::cors_layer`]); the console itself
///   is same-origin and needs none;
/// - the console's files carry a strict Content-Security-Policy
///   ([`policy::console_csp`]: its own scripts and wasm, connections to itself and the
///   configured origins, no frames), and with the admin API's answers
///   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
///   `Referrer-Policy: no-referrer` ([`policy::browser_headers`]).
pub fn app_with(state: Arc<AppState>, ui_dir: Option<&Path>, security: &Security) -> Router {
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
    let admin = admin::router(state.clone())
        // The publish paths apply the operator's credential policy.
        .layer(axum::Extension(Arc::new(security.credentials.clone())))
        .layer(policy::browser_headers())
        .layer(policy::cors_layer(&security.cors_origins));
    let mut app = api.nest("/admin/v1", admin);
    if let Some(ui_dir) = ui_dir {
        let console = ServeDir::new(ui_dir).fallback(ServeFile::new(ui_dir.join(INDEX_HTML)));
        app = app.fallback_service(
            tower::ServiceBuilder::new()
                .layer(policy::browser_headers())
                .layer(policy::csp_header(&security.cors_origins))
                .service(console),
        );
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

/// Ready when a configuration is serving and the server is not shutting down; with
/// the ledger writer's counters.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let version = state.engine.snapshot().version;
    let ledger = state.ledger.stats();
    let draining = state.shutting_down();
    let ready = version > 0 && !draining;
    let retention = state.retention.lock().clone();
    let body = serde_json::json!({
        "status": if draining { "draining" } else if ready { "ready" } else { "not_ready" },
        "config_version": version,
        "ledger": ledger,
        "retention": retention,
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
    /// An admin token to create (role admin) at start-up, e.g. from `CROSSBAR_ADMIN_TOKEN`;
    /// at least [`MIN_BOOTSTRAP_TOKEN_LEN`] characters. Once revoked (through the admin
    /// API), it stays revoked however often the server starts with it.
    pub bootstrap_admin_token: Option<String>,
    /// The operator's security settings (`crossbar serve` flags only, never the
    /// published configuration nor the admin API).
    pub security: Security,
    /// Serving threads, each with its own runtime; 0: one per CPU.
    pub workers: usize,
    /// On h2c endpoints, send a request that finds nothing else in flight from its
    /// serving thread over HTTP/1.1 instead (`providers::TransportSettings`).
    pub upstream_http1_when_idle: bool,
    /// Connection caps, timeouts, the drain deadline ([`limits::Limits`]).
    pub limits: limits::Limits,
}

/// The shortest bootstrap admin token accepted: a guessable one would open the whole
/// admin API.
pub const MIN_BOOTSTRAP_TOKEN_LEN: usize = 32;

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
        let mut security = options.security;
        security.credentials = security.credentials.checked()?;
        policy::check_origins(&security.cors_origins)?;
        if let Some(token) = &options.bootstrap_admin_token
            && token.trim().chars().count() < MIN_BOOTSTRAP_TOKEN_LEN
        {
            bail!(
                "the bootstrap admin token (CROSSBAR_ADMIN_TOKEN) is shorter than {MIN_BOOTSTRAP_TOKEN_LEN} \
                 characters: use a random one, e.g. `openssl rand -base64 33`"
            );
        }
        let store = match &options.db {
            Some(path) => Store::open(path).await?,
            None => Store::open_in_memory().await?,
        };
        let (version, raw) = file::load_or_seed(
            &store,
            options.config.as_ref(),
            options.publish_file,
            &security.credentials,
        )
        .await?;
        if let Some(token) = &options.bootstrap_admin_token {
            let hash = store::sha256_hex(token.trim());
            if store.admin_token_hash_revoked(&hash).await? {
                tracing::warn!(
                    "the bootstrap admin token (CROSSBAR_ADMIN_TOKEN) was revoked and stays revoked; \
                     unset it, or set a new one"
                );
            }
            store
                .insert_admin_token_hash("bootstrap", router_core::admin::Role::Admin, &hash)
                .await?;
        }
        security.credentials.check(&raw).map_err(|p| {
            anyhow::anyhow!(
                "the active configuration (version {version}) breaks this server's credential policy \
                 (--key-env-prefix, --credentials-dir, --allow-plain-http-credentials):\n{p}"
            )
        })?;
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
        let state = Arc::new(AppState::new(
            engine,
            store,
            keys.clone(),
            live,
            ledger,
            sink_events,
            config_events,
            options.limits.fitted_to_fd_limit(),
        ));
        let listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        // Breaker overrides stored by this or another process before it started.
        let overrides = overrides::load(&state).await?;
        let background = vec![
            keys.spawn_refresh(Duration::from_secs(5)),
            spawn_breaker_ticker(state.clone()),
            spawn_health_prober(state.clone()),
            spawn_config_follower(state.clone(), security.credentials.clone()),
            overrides::spawn_follower(state.clone(), overrides, Duration::from_secs(1)),
            spawn_retention(state.clone(), RETENTION_EVERY),
        ];
        Ok(Server {
            listener,
            router: app_with(state.clone(), options.ui_dir.as_deref(), &security),
            workers: options.workers,
            state,
            background,
            ledger_task,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, lets in-flight requests and streams finish
    /// (within `limits.drain_timeout`), then flushes the ledger.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.run_until(shutdown, std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then drains: event streams end at once,
    /// in-flight requests and streams get `limits.drain_timeout` to finish — unless
    /// `cut` completes first (a second signal) — and what is still open is cut (the
    /// router records each cut request). Then the ledger is flushed: all of it after
    /// a clean drain, what it can within [`CUT_FLUSH`] after a cut.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        cut: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let settings = StackSettings {
            body_read_timeout: state.limits.body_read_timeout,
            ..StackSettings::default()
        };
        let service = stack::service(state.clone(), self.router, settings);
        let announced = {
            let state = state.clone();
            async move {
                shutdown.await;
                // Event streams end, /readyz says draining.
                state.shutdown.send_replace(true);
            }
        };
        let drained = serve::serve(
            self.listener,
            service,
            self.workers,
            state.limits,
            announced,
            cut,
        )
        .await?;
        for task in self.background {
            task.abort();
        }
        let stats = state.ledger.stats();
        tracing::info!(queued = stats.queued, "draining the usage ledger");
        let flushed = state.ledger.clone().shutdown();
        match drained {
            serve::Drained::Clean => flushed.await,
            serve::Drained::Cut => {
                if tokio::time::timeout(CUT_FLUSH, flushed).await.is_err() {
                    tracing::error!(
                        queued = state.ledger.stats().queued,
                        "the usage ledger did not flush in time; exiting without the rest"
                    );
                    return Ok(());
                }
            }
        }
        let _ = self.ledger_task.await;
        let stats = state.ledger.stats();
        tracing::info!(
            written = stats.written,
            dropped = stats.dropped,
            "usage ledger flushed"
        );
        Ok(())
    }
}

/// After a cut, how long the ledger may take to write what is queued.
pub const CUT_FLUSH: Duration = Duration::from_secs(5);

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

/// How often the retention task runs (and once at start).
pub const RETENTION_EVERY: Duration = Duration::from_secs(3_600);

/// Deletes what the active configuration's `[retention]` no longer keeps, at start
/// and every `every`; `/readyz` shows what it did ([`RetentionStatus`]). Several
/// replicas may run it on one store: a delete finds nothing the second time.
fn spawn_retention(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            run_retention(&state).await;
        }
    })
}

/// One retention run, recorded in `state.retention`.
pub async fn run_retention(state: &AppState) {
    let policy = state.engine.snapshot().config.raw().retention;
    let result = state.store.apply_retention(&policy, unix_ms()).await;
    let mut status = state.retention.lock();
    status.policy = Some(policy);
    status.last_run_ms = Some(unix_ms());
    match result {
        Ok(deleted) => {
            if deleted != store::Deleted::default() {
                tracing::info!(?deleted, "retention: old rows deleted");
            }
            status.deleted.add(&deleted);
            status.last_deleted = deleted;
            status.last_error = None;
        }
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "retention: the run failed; the next one retries");
            status.last_error = Some(format!("{err:#}"));
        }
    }
}

/// Several replicas share one database: each follows the newest published version,
/// through the publish path's own steps ([`publish::follow`]: validate, prepare,
/// activate, notify; another replica has already recorded it).
fn spawn_config_follower(
    state: Arc<AppState>,
    policy: policy::CredentialPolicy,
) -> tokio::task::JoinHandle<()> {
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
            if let Err(err) = publish::follow(&state, &policy, active).await {
                tracing::error!(version, %err, "cannot apply a published version");
            }
        }
    })
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, the signals a terminal, systemd or a
/// container runtime send.
pub async fn shutdown_signal() {
    shutdown_signals().0.await;
}

/// Two futures: the first completes on the first SIGINT or SIGTERM (begin a graceful
/// shutdown), the second on the one after it (stop waiting). Must be called inside a
/// tokio runtime: a task listens from the call on.
pub fn shutdown_signals() -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (count, heard) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        let mut signals = Signals::listen();
        loop {
            signals.next().await;
            let n = {
                count.send_modify(|n| *n += 1);
                *count.borrow()
            };
            if n == 1 {
                tracing::info!(
                    "shutting down: draining open requests (a second signal stops at once)"
                );
            } else {
                tracing::warn!("a second signal: stopping now");
            }
        }
    });
    let wait = |at_least: u32| {
        let mut heard = heard.clone();
        async move {
            // The sender lives as long as the listening task, which never ends.
            let _ = heard.wait_for(|n| *n >= at_least).await;
        }
    };
    (wait(1), wait(2))
}

/// The process's SIGINT and SIGTERM (Ctrl-C elsewhere), listened to from creation.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|err| tracing::error!(%err, "cannot listen for {name}"))
                    .ok()
            };
            Signals {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal; pending forever if none can be listened for.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
                let received = match signal {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                () = one(&mut self.terminate) => {}
                () = one(&mut self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
