//! The `crossbar` server: for now the console's static files and `GET /healthz`.
//!
//! The gateway API (`/v1/...`), the admin API and the store join this crate with their
//! own issues. It is a library as well as a binary so that tests (here and in
//! `tests/`) can build the same [`Router`] the binary serves.
//!
//! Two details matter for latency and operations:
//! - TCP_NODELAY is set on every accepted socket: without it, small chunked responses
//!   on keep-alive connections stall on delayed ACKs (~44 ms per request, measured).
//! - Shutdown is graceful: on Ctrl-C or SIGTERM the listener closes and in-flight
//!   requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use router_core::api::Health;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

/// The console's entry page; also the answer to any path the console routes itself.
const INDEX_HTML: &str = "index.html";

/// The HTTP application: API routes first, then the console's files.
///
/// Any path that is neither an API route nor a file of `ui_dir` gets `index.html`, so
/// the console's client-side routes survive a reload.
pub fn app(ui_dir: &Path) -> Router {
    let console = ServeDir::new(ui_dir).fallback(ServeFile::new(ui_dir.join(INDEX_HTML)));
    Router::new()
        .route("/healthz", get(healthz))
        .fallback_service(console)
        .layer(TraceLayer::new_for_http())
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: router_core::VERSION.to_owned(),
    })
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

/// A bound, not yet running server: binding first lets the caller learn the real
/// address (port 0 picks a free port) before serving.
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    /// Validates the console directory and binds `listen`.
    pub async fn bind(listen: SocketAddr, ui_dir: PathBuf) -> anyhow::Result<Self> {
        check_ui_dir(&ui_dir)?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        Ok(Self {
            listener,
            router: app(&ui_dir),
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "cannot set TCP_NODELAY on an accepted socket");
            }
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A throwaway console directory with an index page and one asset, one per test.
    fn console_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("crossbar-server-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(INDEX_HTML),
            "<!doctype html><title>console</title>",
        )
        .unwrap();
        std::fs::write(dir.join("style.css"), "body {}").unwrap();
        dir
    }

    async fn get(router: Router, uri: &str) -> (StatusCode, Option<String>, String) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn healthz_reports_ok_and_version() {
        let (status, content_type, body) = get(app(&console_dir("healthz")), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let health: Health = serde_json::from_str(&body).unwrap();
        assert_eq!(
            health,
            Health {
                status: "ok".into(),
                version: router_core::VERSION.into()
            }
        );
    }

    #[tokio::test]
    async fn serves_console_files_and_falls_back_to_index() {
        let dir = console_dir("files");
        let (status, content_type, body) = get(app(&dir), "/style.css").await;
        assert_eq!(
            (status, content_type.as_deref(), body.as_str()),
            (StatusCode::OK, Some("text/css"), "body {}")
        );

        for path in ["/", "/features/summarize"] {
            let (status, _, body) = get(app(&dir), path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains("<title>console</title>"), "{path}: {body}");
        }
    }

    #[test]
    fn missing_console_dir_is_a_clear_error() {
        let missing = std::env::temp_dir().join("crossbar-no-such-console");
        let err = check_ui_dir(&missing).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("cargo xtask build"),
            "{err}"
        );
    }
}
