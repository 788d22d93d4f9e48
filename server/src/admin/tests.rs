//! The admin API in process: the app the binary serves, driven with `oneshot`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use router_core::admin::{AuditEntry, ConfigVersion, FeatureEdit, PublishResult, Role};
use router_core::config::diff::config_changes;
use router_core::config::{
    AuthConfig, EndpointConfig, ExperimentConfig, FeatureConfig, Provider, RouterConfig,
    TeamConfig, VariantConfig,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::file::{ConfigFile, TokenSeed};
use crate::store::sha256_hex;
use crate::{Options, Server};

/// A running server's state and the app over it, with one admin token per role.
struct TestApp {
    /// Kept for its listener and the state's background tasks.
    _server: Server,
    app: axum::Router,
}

fn token(role: Role) -> String {
    format!("cba-test-{}", role.as_str())
}

fn config() -> RouterConfig {
    let endpoint = |name: &str| {
        let mut e = EndpointConfig::new(name, Provider::Openai, "gpt-4o-mini", "eastus");
        e.base_url = Some("http://127.0.0.1:9".into());
        e.auth = AuthConfig::None;
        e
    };
    RouterConfig {
        endpoints: vec![endpoint("a-ep"), endpoint("b-ep")],
        features: vec![FeatureConfig::new("summarize", &["a-ep", "b-ep"])],
        teams: vec![TeamConfig {
            name: "search".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
        }],
        ..RouterConfig::default()
    }
}

impl TestApp {
    async fn start() -> TestApp {
        Self::start_with(crate::limits::Limits::default()).await
    }

    async fn start_with(limits: crate::limits::Limits) -> TestApp {
        Self::start_on(None, limits).await
    }

    /// On the SQLite file `db` (in memory for `None`).
    async fn start_on(db: Option<PathBuf>, limits: crate::limits::Limits) -> TestApp {
        let file = ConfigFile {
            path: PathBuf::from("admin-test.toml"),
            router: config(),
            gateway_keys: Vec::new(),
            admin_tokens: Role::ALL
                .into_iter()
                .map(|role| TokenSeed {
                    name: format!("{}-person", role.as_str()),
                    role,
                    sha256: sha256_hex(&token(role)),
                })
                .collect(),
        };
        let server = Server::start(Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            ui_dir: None,
            db,
            config: Some(file),
            publish_file: false,
            bootstrap_admin_token: None,
            workers: 1,
            upstream_http1_when_idle: false,
            limits,
            security: crate::policy::Security::default(),
        })
        .await
        .unwrap();
        let app = crate::app(server.state.clone(), None);
        TestApp {
            _server: server,
            app,
        }
    }

    /// `method PREFIX{path}` as `role` (no token for `None`): the status and the body
    /// as JSON (a string if it is not JSON; not read for an event stream).
    async fn call(
        &self,
        role: Option<Role>,
        method: &Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"));
        if let Some(role) = role {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token(role)));
        }
        let request = match body {
            Some(b) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let streaming = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return (status, Value::Null);
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    async fn active(&self) -> ConfigVersion {
        let (status, body) = self
            .call(Some(Role::Viewer), &Method::GET, "/config", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

/// A request path for `route`, its parameters filled with names that exist where
/// the test needs them to.
fn concrete(route: &AdminRoute) -> String {
    route
        .path
        .replace("{version}", "1")
        .replace("{id}", "no-such-key")
        .replace(
            "{name}",
            if route.path.starts_with("/features") {
                "summarize"
            } else {
                "a-ep"
            },
        )
}

#[tokio::test]
async fn every_route_refuses_a_role_without_its_action_and_admits_one_with_it() {
    let t = TestApp::start().await;
    for route in ROUTES {
        let path = concrete(route);
        let body = matches!(route.method, Method::POST | Method::PUT).then(|| json!({}));
        let (status, _) = t.call(None, &route.method, &path, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{} {path} without a token",
            route.method
        );
        for role in Role::ALL {
            let (status, answer) = t.call(Some(role), &route.method, &path, body.clone()).await;
            if role.may(route.action) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{} may {} {path}: {status} {answer}",
                    role.as_str(),
                    route.method
                );
            } else {
                assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some("forbidden")),
                    "{} may not {} {path}: {answer}",
                    role.as_str(),
                    route.method
                );
            }
        }
    }
}

#[tokio::test]
async fn the_changes_a_feature_edit_publishes_and_audits_are_what_the_console_previews() {
    let t = TestApp::start().await;
    let base = t.active().await;
    let edit = FeatureEdit {
        binding: vec!["b-ep".into(), "a-ep".into()],
        experiment: Some(ExperimentConfig {
            id: "summarize-ab".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 60.0,
                    binding: vec!["a-ep".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 40.0,
                    binding: vec!["b-ep".into()],
                },
            ],
        }),
        base_version: base.version,
        message: "an A/B test".into(),
    };
    // What the console's feature editor shows: the draft applied to the version it
    // started from (ui/src/features/draft.rs), diffed against that version.
    let mut edited = base.config.clone();
    let feature = edited.feature_mut("summarize").unwrap();
    feature.binding = edit.binding.clone();
    feature.experiment = edit.experiment.clone();
    let previewed = config_changes(&base.config, &edited).unwrap();
    assert!(
        previewed
            .iter()
            .any(|c| c.path == "features.summarize.binding"),
        "{previewed:?}"
    );

    let (status, body) = t
        .call(
            Some(Role::Experimenter),
            &Method::PUT,
            "/features/summarize",
            Some(serde_json::to_value(&edit).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let published: PublishResult = serde_json::from_value(body).unwrap();
    assert_eq!(published.changes, previewed);

    let (_, body) = t
        .call(Some(Role::Viewer), &Method::GET, "/audit", None)
        .await;
    let audit: Vec<AuditEntry> = serde_json::from_value(body).unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].version),
        ("edit_feature", Some(published.version))
    );
    assert_eq!(audit[0].changes, previewed);
}

#[tokio::test]
async fn a_stale_edit_is_a_conflict_and_an_invalid_one_lists_its_problems() {
    let t = TestApp::start().await;
    let base = t.active().await.version;
    let edit = |binding: &[&str], base_version: i64| json!({"binding": binding, "experiment": null, "base_version": base_version});
    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::PUT,
            "/features/summarize",
            Some(edit(&["b-ep"], base)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::PUT,
            "/features/summarize",
            Some(edit(&["a-ep"], base)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["current_version"].as_i64()
        ),
        (Some("conflict"), Some(base + 1))
    );

    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::PUT,
            "/features/summarize",
            Some(edit(&["nope"], base + 1)),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert_eq!(
        body["problems"][0]["path"], "features.summarize.binding[0]",
        "{body}"
    );
    assert_eq!(t.active().await.version, base + 1, "nothing was published");
}

#[tokio::test]
async fn malformed_queries_and_paths_are_refused_in_the_admin_error_shape() {
    let t = TestApp::start().await;
    for path in [
        "/config/versions?limit=lots",
        "/config/versions/latest",
        "/spend?group_by=planet",
        "/audit?before_id=x",
    ] {
        let (status, body) = t.call(Some(Role::Viewer), &Method::GET, path, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{path}: {body}"
        );
    }
    let (status, body) = t
        .call(
            Some(Role::Viewer),
            &Method::GET,
            "/config/versions/99",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn the_spend_csv_is_a_download_with_a_header_row() {
    let t = TestApp::start().await;
    let request = Request::get(format!("{PREFIX}/spend.csv?group_by=team"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(Role::Viewer)),
        )
        .body(Body::empty())
        .unwrap();
    let response = t.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"crossbar-spend-team-")
    );
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(text.starts_with(b"team,requests,errors,"), "{text:?}");
}

/// The statuses an operation of the document answers with.
fn statuses(doc: &Value, method: &str, path: &str) -> BTreeSet<String> {
    let op = &doc["paths"][format!("{PREFIX}{path}")][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn set(codes: &[&str]) -> BTreeSet<String> {
    codes.iter().map(|c| (*c).to_owned()).collect()
}

#[test]
fn the_openapi_document_lists_every_route_with_its_permission_and_guard() {
    let doc = serde_json::to_value(openapi::document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in ROUTES {
        let method = route.method.as_str().to_lowercase();
        let op = &doc["paths"][format!("{PREFIX}{}", route.path)][&method];
        assert_eq!(
            op["x-crossbar-permission"],
            json!(route.action),
            "{method} {}",
            route.path
        );
        assert_eq!(
            op["security"],
            json!([{"bearer": []}]),
            "{method} {}",
            route.path
        );
        let codes = statuses(&doc, &method, route.path);
        assert!(
            codes.contains("401") && codes.contains("403"),
            "{method} {}: {codes:?}",
            route.path
        );
        // Every `{parameter}` of the path is declared.
        for name in route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            assert!(
                declared,
                "{method} {}: no path parameter `{name}`",
                route.path
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "RouterConfig",
        "EndpointHealth",
        "SpendReport",
        "PublishResult",
        "AdminErrorBody",
    ] {
        assert!(
            schemas.contains_key(name),
            "{name} missing: {:?}",
            schemas.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_openapi_document_gives_each_route_only_the_responses_it_can_answer() {
    let doc = serde_json::to_value(openapi::document()).unwrap();
    assert_eq!(
        statuses(&doc, "get", "/whoami"),
        set(&["200", "401", "403"])
    );
    assert_eq!(
        statuses(&doc, "put", "/features/{name}"),
        set(&["200", "400", "401", "403", "404", "409", "413", "422"])
    );
    assert_eq!(
        statuses(&doc, "delete", "/keys/{id}"),
        set(&["204", "400", "401", "403", "404"])
    );
    assert_eq!(
        statuses(&doc, "post", "/feedback"),
        set(&["204", "400", "401", "403", "404", "413"])
    );
    assert_eq!(
        statuses(&doc, "post", "/config/validate"),
        set(&["200", "400", "401", "403", "413"]),
        "validation reports problems in its answer, not as a 422"
    );
    assert_eq!(
        statuses(&doc, "get", "/spend"),
        set(&["200", "400", "401", "403"])
    );
    // 409 and 422 exactly on the routes that take a `base_version` and publish.
    let publishing = [
        ("post", "/config"),
        ("post", "/config/rollback"),
        ("put", "/features/{name}"),
    ];
    for route in ROUTES {
        let method = route.method.as_str().to_lowercase();
        let codes = statuses(&doc, &method, route.path);
        let publishes = publishing.contains(&(method.as_str(), route.path));
        assert_eq!(
            codes.contains("409"),
            publishes,
            "{method} {}: {codes:?}",
            route.path
        );
        assert_eq!(
            codes.contains("422"),
            publishes,
            "{method} {}: {codes:?}",
            route.path
        );
    }
    let csv = &doc["paths"][format!("{PREFIX}/spend.csv")]["get"]["responses"]["200"];
    assert!(csv["content"]["text/csv"].is_object(), "{csv}");
    let events = &doc["paths"][format!("{PREFIX}/events")]["get"];
    assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object());
    assert_eq!(events["parameters"][0]["name"], "access_token");
}

/// Every write of the configuration names the version it was based on: without one
/// it is refused (400 naming `base_version`), and nothing is published. A feature
/// edit without one used to publish over whatever was active, silently undoing a
/// concurrent change.
#[tokio::test]
async fn a_write_without_the_version_it_was_based_on_is_refused() {
    let t = TestApp::start().await;
    let active = t.active().await;
    for (method, path, body) in [
        (
            Method::PUT,
            "/features/summarize",
            json!({"binding": ["b-ep"], "experiment": null}),
        ),
        (
            Method::POST,
            "/config",
            json!({"config": active.config, "message": "no base"}),
        ),
        (Method::POST, "/config/rollback", json!({"to_version": 1})),
    ] {
        let (status, body) = t.call(Some(Role::Admin), &method, path, Some(body)).await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some("base_version")),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(
        t.active().await.version,
        active.version,
        "nothing was published"
    );

    // A stale one is a conflict naming the current version, for a whole publish too.
    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::POST,
            "/config",
            Some(json!({"config": active.config, "base_version": active.version - 1})),
        )
        .await;
    assert_eq!(
        (status, body["current_version"].as_i64()),
        (StatusCode::CONFLICT, Some(active.version)),
        "{body}"
    );
}

/// Spend ranges are checked before any arithmetic: the default start is computed
/// only when none is given, ends outside [0, 2100) and spans over two years are a
/// 400 naming the parameter. `from_ms=i64::MIN&to_ms=i64::MAX` used to overflow
/// (a panic in a debug build, unbounded buckets in a release one).
#[tokio::test]
async fn spend_ranges_are_validated_and_never_overflow() {
    let t = TestApp::start().await;
    let (min, max) = (i64::MIN, i64::MAX);
    for (query, param) in [
        (format!("from_ms={min}&to_ms={max}"), "to_ms"),
        (format!("to_ms={min}"), "to_ms"),
        (format!("from_ms=0&to_ms={max}"), "to_ms"),
        (format!("from_ms={min}&to_ms=1000"), "from_ms"),
        ("from_ms=-1&to_ms=1000".to_owned(), "from_ms"),
        ("from_ms=0&to_ms=4102444800000".to_owned(), "from_ms"),
        ("from_ms=5000&to_ms=5000".to_owned(), "from_ms"),
    ] {
        for route in ["/spend", "/spend.csv"] {
            let (status, body) = t
                .call(
                    Some(Role::Viewer),
                    &Method::GET,
                    &format!("{route}?{query}"),
                    None,
                )
                .await;
            assert_eq!(
                (status, body["error"]["param"].as_str()),
                (StatusCode::BAD_REQUEST, Some(param)),
                "{route}?{query}: {body}"
            );
        }
    }
    for query in ["to_ms=1000", "from_ms=0&to_ms=63158400000", ""] {
        let (status, body) = t
            .call(
                Some(Role::Viewer),
                &Method::GET,
                &format!("/spend?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert!(body["series"].as_array().unwrap().len() <= 120, "{body}");
    }
}

/// Event streams are capped (a 503 past the cap, a place freed when one ends), and
/// every open one ends when shutdown begins: a console left open used to hold a
/// shutdown up for ever.
#[tokio::test]
async fn event_streams_are_capped_and_end_when_shutdown_begins() {
    let t = TestApp::start_with(crate::limits::Limits {
        max_event_streams: 2,
        ..crate::limits::Limits::default()
    })
    .await;
    let open = || async {
        let request = Request::get(format!("{PREFIX}/events"))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token(Role::Viewer)),
            )
            .body(Body::empty())
            .unwrap();
        t.app.clone().oneshot(request).await.unwrap()
    };
    let first = open().await;
    let second = open().await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = open().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    drop(first);
    let third = open().await;
    assert_eq!(third.status(), StatusCode::OK, "a place was freed");

    t._server.state.shutdown.send_replace(true);
    for stream in [second, third] {
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.into_body().collect(),
        )
        .await;
        assert!(ended.is_ok(), "the stream ended with the shutdown");
    }
    assert_eq!(
        t._server
            .state
            .event_streams
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A real-time wait for what background tasks do in real time (followers, retention).
#[allow(
    clippy::disallowed_methods,
    reason = "the server's background tasks run in real time"
)]
async fn pause(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The breaker of endpoint `name` as `t`'s engine has it.
fn breaker(t: &TestApp, name: &str) -> router_core::admin::BreakerView {
    t._server
        .state
        .engine
        .health()
        .into_iter()
        .find(|h| h.name == name)
        .unwrap()
        .breaker
}

fn force_open(reason: &str) -> Value {
    json!({"mode": "force_open", "reason": reason})
}

/// An override is stored and audited first, and applied only then: when the store
/// cannot take it, nothing changes (it used to be applied, and then its audit write
/// fail).
#[tokio::test]
async fn a_breaker_override_the_store_cannot_take_is_not_applied() {
    let t = TestApp::start().await;
    t._server.state.store.close().await;
    let (status, body) = t
        .call(
            Some(Role::Operator),
            &Method::PUT,
            "/endpoints/a-ep/breaker",
            Some(force_open("incident 7")),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let b = breaker(&t, "a-ep");
    assert_eq!(
        (b.override_mode, b.state),
        (
            router_core::admin::Override::Auto,
            router_core::admin::StateName::Closed
        )
    );
}

/// Several processes share one store: an override made through one is applied by
/// the others within a couple of seconds, and by a process started afterwards; its
/// audit entry is there.
#[tokio::test]
async fn an_override_is_followed_by_every_process_sharing_the_store_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "crossbar-admin-overrides-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let db = dir.join("crossbar.db");
    let limits = crate::limits::Limits::default();
    let a = TestApp::start_on(Some(db.clone()), limits).await;
    let b = TestApp::start_on(Some(db.clone()), limits).await;
    let (status, body) = a
        .call(
            Some(Role::Operator),
            &Method::PUT,
            "/endpoints/a-ep/breaker",
            Some(force_open("incident 7\nERROR a forged line")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["breaker"]["override"], "force_open", "{body}");
    let mut followed = false;
    for _ in 0..40 {
        if breaker(&b, "a-ep").override_mode == router_core::admin::Override::ForceOpen {
            followed = true;
            break;
        }
        pause(100).await;
    }
    assert!(followed, "the other process applied the override");
    assert_eq!(
        breaker(&b, "a-ep").state,
        router_core::admin::StateName::Open
    );

    let restarted = TestApp::start_on(Some(db.clone()), limits).await;
    assert_eq!(
        breaker(&restarted, "a-ep").override_mode,
        router_core::admin::Override::ForceOpen,
        "applied at start"
    );
    let (_, audit) = restarted
        .call(Some(Role::Viewer), &Method::GET, "/audit", None)
        .await;
    assert_eq!(audit[0]["action"], "breaker_override", "{audit}");
    assert_eq!(audit[0]["actor"], "operator-person", "{audit}");

    // Back to auto, through the restarted one: the first follows.
    let (status, _) = restarted
        .call(
            Some(Role::Operator),
            &Method::PUT,
            "/endpoints/a-ep/breaker",
            Some(json!({"mode": "auto", "reason": "resolved"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut back = false;
    for _ in 0..40 {
        if breaker(&a, "a-ep").override_mode == router_core::admin::Override::Auto {
            back = true;
            break;
        }
        pause(100).await;
    }
    assert!(back, "the first process followed the return to auto");
    drop((a, b, restarted));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_override_of_an_unknown_endpoint_is_a_404_and_stores_nothing() {
    let t = TestApp::start().await;
    let (status, _) = t
        .call(
            Some(Role::Operator),
            &Method::PUT,
            "/endpoints/nope/breaker",
            Some(force_open("x")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        t._server
            .state
            .store
            .breaker_overrides_since(0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An override's reason is the operator's text: in log lines it is escaped, so a
/// newline in it cannot forge a second line.
#[tokio::test]
async fn an_overrides_reason_cannot_forge_a_log_line() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let t = TestApp::start().await;
    let stored = t
        ._server
        .state
        .store
        .set_breaker_override(
            "a-ep",
            router_core::admin::Override::ForceOpen,
            "incident 7\nERROR forged: all is well",
            crate::store::NewAudit {
                actor: "operator-person",
                role: "operator",
                action: "breaker_override",
                target: "a-ep",
                message: "force_open",
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false),
    );
    tracing::subscriber::with_default(subscriber, || {
        crate::overrides::apply(&t._server.state, &stored).unwrap();
    });
    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("incident 7\\nERROR forged"), "{out}");
    assert!(out.lines().all(|l| !l.starts_with("ERROR forged")), "{out}");
}

/// `/readyz` shows the retention policy and what the task (run at start) did.
#[tokio::test]
async fn readyz_shows_the_retention_policy_and_the_last_run() {
    let t = TestApp::start().await;
    let mut body = Value::Null;
    for _ in 0..50 {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        let response = t.app.clone().oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        body = serde_json::from_slice(&bytes).unwrap();
        if !body["retention"]["last_run_ms"].is_null() {
            break;
        }
        pause(50).await;
    }
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["retention"]["policy"]["ledger_days"], 30, "{body}");
    assert!(body["retention"]["last_run_ms"].is_i64(), "{body}");
    assert_eq!(body["retention"]["last_deleted"]["ledger"], 0, "{body}");
}

impl TestApp {
    /// `method PREFIX{path}` with `token` (any token, not only the roles' own).
    async fn call_with(
        &self,
        token: &str,
        method: &Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(b) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }
}

#[tokio::test]
async fn admin_tokens_are_created_listed_and_revoked_with_effect_on_the_next_request() {
    let t = TestApp::start().await;
    let create = json!({"name": "ci-bot", "role": "operator"});
    let (status, _) = t
        .call(
            Some(Role::Operator),
            &Method::POST,
            "/tokens",
            Some(create.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins manage tokens");
    let (status, created) = t
        .call(Some(Role::Admin), &Method::POST, "/tokens", Some(create))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["info"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cba-"), "{created}");
    let (status, who) = t.call_with(&secret, &Method::GET, "/whoami", None).await;
    assert_eq!(
        (status, who["role"].as_str()),
        (StatusCode::OK, Some("operator"))
    );

    // Listed without the token or its hash.
    let (status, list) = t
        .call(Some(Role::Admin), &Method::GET, "/tokens", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(&sha256_hex(&secret)),
        "{text}"
    );
    let listed = list.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked"] == false)
    );

    // Revoked: refused on the very next request, not after a refresh.
    let (status, _) = t
        .call(
            Some(Role::Admin),
            &Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = t.call_with(&secret, &Method::GET, "/whoami", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = t
        .call(
            Some(Role::Admin),
            &Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already revoked");
    let (_, audit) = t
        .call(Some(Role::Viewer), &Method::GET, "/audit", None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.starts_with(&["revoke_token", "create_token"]),
        "{actions:?}"
    );

    // Expiry: in the past is refused; a token that expires stops working by itself.
    let past = crate::unix_ms() - 1_000;
    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::POST,
            "/tokens",
            Some(json!({"name": "late", "role": "viewer", "expires_at_ms": past})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expires_at_ms"))
    );
    let soon = crate::unix_ms() + 300;
    let (status, created) = t
        .call(
            Some(Role::Admin),
            &Method::POST,
            "/tokens",
            Some(json!({"name": "brief", "role": "viewer", "expires_at_ms": soon})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["info"]["expires_at_ms"], soon);
    let brief = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        t.call_with(&brief, &Method::GET, "/whoami", None).await.0,
        StatusCode::OK
    );
    #[allow(clippy::disallowed_methods, reason = "waits for a wall-clock expiry")]
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        t.call_with(&brief, &Method::GET, "/whoami", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Gateway keys take an expiry too.
    let (status, key) = t
        .call(
            Some(Role::Admin),
            &Method::POST,
            "/keys",
            Some(json!({"team": "search", "name": "temp", "expires_at_ms": crate::unix_ms() + 60_000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert!(key["info"]["expires_at_ms"].is_i64(), "{key}");
}

#[tokio::test]
async fn a_token_in_the_query_string_is_taken_only_by_the_event_stream_and_decoded() {
    let t = TestApp::start().await;
    let viewer = token(Role::Viewer);
    let request = |path: String| {
        Request::get(format!("{PREFIX}{path}"))
            .body(Body::empty())
            .unwrap()
    };
    // Anywhere else it is refused, even when it is a valid token.
    let response = t
        .app
        .clone()
        .oneshot(request(format!("/config?access_token={viewer}")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The event stream takes it percent-encoded, as a browser's URL API writes it.
    let encoded: String = viewer
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_ne!(encoded, viewer);
    let response = t
        .app
        .clone()
        .oneshot(request(format!("/events?access_token={encoded}")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .as_bytes()
            .starts_with(b"text/event-stream")
    );
}

/// An admin token must not be able to point an endpoint at any environment variable,
/// send credentials over plain http, or read any file.
#[tokio::test]
async fn a_configuration_that_breaks_the_credential_policy_is_refused_with_its_problems() {
    let t = TestApp::start().await;
    let mut config = config();
    config.endpoints[0].auth = AuthConfig::ApiKeyEnv {
        env: "AWS_SECRET_ACCESS_KEY".into(),
    };
    config.endpoints[0].base_url = Some("http://attacker.example".into());
    let mut vertex = EndpointConfig::new("v-ep", Provider::VertexGemini, "gemini", "us-central1");
    vertex.project = Some("p".into());
    vertex.auth = AuthConfig::GcpCredentialsFile {
        path: "/etc/shadow".into(),
    };
    config.endpoints.push(vertex);
    let base = t.active().await.version;
    let (status, body) = t
        .call(
            Some(Role::Admin),
            &Method::POST,
            "/config",
            Some(json!({"config": config, "base_version": base, "message": "exfiltrate"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: BTreeSet<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for want in [
        "endpoints.a-ep.auth.env",
        "endpoints.a-ep.base_url",
        "endpoints.v-ep.auth.path",
    ] {
        assert!(paths.contains(want), "{want} missing from {paths:?}");
    }
    assert_eq!(t.active().await.version, base, "nothing was published");
    // The console's validation says the same before anyone publishes.
    let (status, body) = t
        .call(
            Some(Role::Viewer),
            &Method::POST,
            "/config/validate",
            Some(serde_json::to_value(&config).unwrap()),
        )
        .await;
    assert_eq!(
        (status, body["ok"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert!(
        body.to_string().contains("endpoints.a-ep.auth.env"),
        "{body}"
    );
}

#[tokio::test]
async fn the_admin_api_answers_only_its_own_and_the_desktop_apps_origins() {
    let t = TestApp::start().await;
    let security = crate::policy::Security {
        cors_origins: vec!["https://ops.example.com".into()],
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("crossbar-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>x</title>").unwrap();
    let app = crate::app_with(t._server.state.clone(), Some(&dir), &security);
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{PREFIX}/whoami"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    for (origin, allowed) in [
        ("https://evil.example", false),
        ("null", false),
        ("tauri://localhost", true),
        ("http://tauri.localhost", true),
        ("https://ops.example.com", true),
    ] {
        let response = app.clone().oneshot(preflight(origin)).await.unwrap();
        let allow = response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(allow.as_deref(), allowed.then_some(origin), "{origin}");
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "{origin}"
        );
    }
    // The console: a strict CSP and the anti-framing, anti-sniffing headers.
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self' https://ops.example.com",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    // The admin API's answers carry the same browser headers.
    let response = app
        .oneshot(
            Request::get(format!("{PREFIX}/whoami"))
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", token(Role::Viewer)),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_short_bootstrap_token_is_refused_at_start_up() {
    let start = |token: &str| {
        Server::start(Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            ui_dir: None,
            db: None,
            config: Some(ConfigFile {
                path: PathBuf::from("bootstrap-test.toml"),
                router: config(),
                gateway_keys: Vec::new(),
                admin_tokens: Vec::new(),
            }),
            publish_file: false,
            bootstrap_admin_token: Some(token.to_owned()),
            workers: 1,
            upstream_http1_when_idle: false,
            security: crate::policy::Security::default(),
            limits: crate::limits::Limits::default(),
        })
    };
    let err = start("admin123")
        .await
        .err()
        .expect("a short token is refused");
    assert!(err.to_string().contains("shorter than 32"), "{err}");
    let long = "cba-bootstrap-0123456789abcdefghijklmnopqrstuvwxyz";
    let server = start(long).await.unwrap();
    assert!(server.state.keys.admin_token(long).is_some());
}
