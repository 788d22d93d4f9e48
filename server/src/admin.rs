//! The admin API under `/admin/v1/`: configuration and its versions, publishing,
//! rollback, feature edits, breaker overrides, live health, the event stream, spend,
//! the audit log, feedback and keys. Bearer tokens with roles; the console hides what
//! a role may not do, and every route here refuses it regardless.
//!
//! The routes are declared once, in [`ROUTES`], which both builds the axum router and
//! generates the OpenAPI document (`/admin/v1/openapi.json`), so the two cannot drift.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use futures_util::Stream;
use router_core::admin::BreakerEvent;
use router_core::admin::Override;
use router_core::admin::{
    Action, AuditEntry, ConfigVersion, ConfigVersionSummary, CreateKeyRequest, CreatedKey,
    EndpointHealth, FeatureEdit, FeatureLive, FeedbackRequest, GatewayKeyInfo, LiveSnapshot,
    OverrideRequest, PublishRequest, PublishResult, RollbackRequest, SpendGroup, SpendReport,
    ValidationResult, WhoAmI,
};
use router_core::config::{Config, Problem, RouterConfig};
use serde::Deserialize;
use serde_json::json;

use crate::gateway::{bearer, parse_body};
use crate::keys::AdminIdentity;
use crate::store::NewAudit;
use crate::{AppState, unix_ms};

/// An admin API failure: `{"error": {...}, "problems": [...], "current_version": n}`.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub problems: Vec<Problem>,
    pub current_version: Option<i64>,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
            problems: Vec::new(),
            current_version: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "admin API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: {err}"),
        )
    }
}

impl From<anyhow::Error> for AdminError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

impl From<router_core::api::Error> for AdminError {
    fn from(e: router_core::api::Error) -> Self {
        let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut out = Self::new(status, "invalid_request", e.message.clone());
        out.param = e.param;
        if status == StatusCode::NOT_FOUND {
            out.code = "not_found";
        }
        out
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            409 => "conflict_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        let mut body = json!({
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        if let Some(v) = self.current_version {
            body["current_version"] = json!(v);
        }
        (self.status, Json(body)).into_response()
    }
}

type AdminResult<T> = Result<Json<T>, AdminError>;

/// The signed-in caller of an admin route.
pub struct Caller(pub AdminIdentity);

impl Caller {
    fn require(&self, action: Action) -> Result<(), AdminError> {
        if self.0.role.may(action) {
            Ok(())
        } else {
            Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "role `{}` may not {}",
                    self.0.role.as_str(),
                    action_words(action)
                ),
            ))
        }
    }
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Override => "override breakers",
        Action::Feedback => "send feedback",
        Action::EditFeature => "edit features",
        Action::Rollback => "roll back the configuration",
        Action::Publish => "publish whole configurations",
        Action::ManageKeys => "manage keys",
    }
}

/// Who is calling, from `Authorization: Bearer` or (for EventSource, which cannot send
/// headers) `?access_token=`.
fn authenticate(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<AdminIdentity, AdminError> {
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(str::to_owned)
    });
    let token = bearer(&parts.headers).map(str::to_owned).or(from_query);
    let Some(token) = token else {
        return Err(AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing admin token: send `Authorization: Bearer <token>`",
        ));
    };
    state.keys.admin_token(&token).ok_or_else(|| {
        AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked admin token",
        )
    })
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // The route's guard has already authenticated and authorised the caller.
        if let Some(identity) = parts.extensions.get::<AdminIdentity>() {
            return Ok(Caller(identity.clone()));
        }
        authenticate(state, parts).map(Caller)
    }
}

/// Every admin route's guard, run before the handler and before its body is read:
/// 401 without a valid token, 403 when the role may not do the route's action.
async fn guard(
    State((state, action)): State<(Arc<AppState>, Action)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let identity = match authenticate(&state, &parts) {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = Caller(identity.clone()).require(action) {
        return e.into_response();
    }
    parts.extensions.insert(identity);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// A JSON body parsed into our type, with errors in the admin format.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.body_text(),
            )
        })?;
        parse_body(&bytes).map(Body).map_err(|e| {
            let mut out = AdminError::bad_request(e.message);
            out.param = e.param;
            out
        })
    }
}

/// One admin route: what it is, who may call it, what it takes and returns. Builds
/// the router and the OpenAPI document.
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub action: Action,
    pub summary: &'static str,
    pub request: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    pub response: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    pub content_type: &'static str,
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

fn schema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

macro_rules! route {
    ($method:literal, $path:literal, $action:ident, $summary:literal, $req:ty, $resp:ty, $ct:literal, $handler:expr) => {
        RouteSpec {
            method: $method,
            path: $path,
            action: Action::$action,
            summary: $summary,
            request: route!(@schema $req),
            response: route!(@schema $resp),
            content_type: $ct,
            handler: || $handler,
        }
    };
    (@schema ()) => { None };
    (@schema $t:ty) => { Some(schema::<$t>) };
}

pub static ROUTES: &[RouteSpec] = &[
    route!(
        "get",
        "/whoami",
        Read,
        "Who the token belongs to, its role and what it may do.",
        (),
        WhoAmI,
        "application/json",
        get(whoami)
    ),
    route!(
        "get",
        "/config",
        Read,
        "The active configuration version.",
        (),
        ConfigVersion,
        "application/json",
        get(active_config)
    ),
    route!(
        "post",
        "/config",
        Publish,
        "Publish a whole configuration (validated; 409 if `base_version` is stale).",
        PublishRequest,
        PublishResult,
        "application/json",
        post(publish_config)
    ),
    route!(
        "post",
        "/config/validate",
        Read,
        "Validate a configuration with the rules a publish applies.",
        RouterConfig,
        ValidationResult,
        "application/json",
        post(validate_config)
    ),
    route!(
        "post",
        "/config/rollback",
        Rollback,
        "Republish an earlier version as a new version.",
        RollbackRequest,
        PublishResult,
        "application/json",
        post(rollback)
    ),
    route!(
        "get",
        "/config/versions",
        Read,
        "Configuration versions, newest first (`limit`).",
        (),
        Vec<ConfigVersionSummary>,
        "application/json",
        get(versions)
    ),
    route!(
        "get",
        "/config/versions/{version}",
        Read,
        "One configuration version.",
        (),
        ConfigVersion,
        "application/json",
        get(version)
    ),
    route!(
        "put",
        "/features/{name}",
        EditFeature,
        "Set a feature's binding and experiment (a new version).",
        FeatureEdit,
        PublishResult,
        "application/json",
        put(edit_feature)
    ),
    route!(
        "get",
        "/features/live",
        Read,
        "Per-feature traffic of the last minute: observed split, fallback depth, errors.",
        (),
        Vec<FeatureLive>,
        "application/json",
        get(features_live)
    ),
    route!(
        "get",
        "/endpoints",
        Read,
        "Live health of every endpoint: breaker state and reason, percentiles, errors, spill.",
        (),
        Vec<EndpointHealth>,
        "application/json",
        get(endpoints)
    ),
    route!(
        "put",
        "/endpoints/{name}/breaker",
        Override,
        "Force a breaker open or closed, or hand it back to the signals (`auto`).",
        OverrideRequest,
        EndpointHealth,
        "application/json",
        put(set_breaker)
    ),
    route!(
        "get",
        "/breaker-events",
        Read,
        "Breaker transitions, newest first (`since_ms`, `limit`).",
        (),
        Vec<BreakerEvent>,
        "application/json",
        get(breaker_events)
    ),
    route!(
        "get",
        "/events",
        Read,
        "Server-sent events: `snapshot` (LiveSnapshot) every second, `breaker` (BreakerEvent), `config` ({version}). Accepts `access_token`.",
        (),
        LiveSnapshot,
        "text/event-stream",
        get(events)
    ),
    route!(
        "get",
        "/spend",
        Read,
        "Spend over [`from_ms`, `to_ms`) grouped by `group_by` (feature, team, endpoint, cloud, variant).",
        (),
        SpendReport,
        "application/json",
        get(spend)
    ),
    route!(
        "get",
        "/spend.csv",
        Read,
        "The spend report as CSV.",
        (),
        (),
        "text/csv",
        get(spend_csv)
    ),
    route!(
        "get",
        "/audit",
        Read,
        "The audit log, newest first (`limit`, `before_id`).",
        (),
        Vec<AuditEntry>,
        "application/json",
        get(audit)
    ),
    route!(
        "post",
        "/feedback",
        Feedback,
        "Thumbs up/down for a request id; feeds the serving endpoint's breaker.",
        FeedbackRequest,
        (),
        "application/json",
        post(feedback)
    ),
    route!(
        "get",
        "/keys",
        ManageKeys,
        "Gateway keys (never the keys themselves).",
        (),
        Vec<GatewayKeyInfo>,
        "application/json",
        get(list_keys)
    ),
    route!(
        "post",
        "/keys",
        ManageKeys,
        "Create a gateway key for a team; the key is returned once.",
        CreateKeyRequest,
        CreatedKey,
        "application/json",
        post(create_key)
    ),
    route!(
        "delete",
        "/keys/{id}",
        ManageKeys,
        "Revoke a gateway key.",
        (),
        (),
        "application/json",
        delete(revoke_key)
    ),
];

/// The admin router, nested under `/admin/v1`: each route behind its guard.
pub fn router(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for r in ROUTES {
        let guarded = (r.handler)().route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), r.action),
            guard,
        ));
        match by_path.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, m)) => *m = std::mem::take(m).merge(guarded),
            None => by_path.push((r.path, guarded)),
        }
    }
    let mut router = axum::Router::new().route("/openapi.json", get(openapi));
    for (path, methods) in by_path {
        router = router.route(path, methods);
    }
    router.fallback(|| async { AdminError::not_found("no such admin route") })
}

/// The OpenAPI 3.1 document, generated from [`ROUTES`] and the types' JSON schemas.
pub fn openapi_document() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut op = json!({
            "summary": r.summary,
            "x-crossbar-permission": r.action,
            "security": [{"bearer": []}],
            "responses": {
                "401": {"description": "missing or unknown token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminError"}}}},
                "403": {"description": "the token's role may not do this", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminError"}}}},
            }
        });
        let ok = match r.response {
            Some(f) => {
                json!({"description": "OK", "content": {r.content_type: {"schema": f(&mut generator)}}})
            }
            None => json!({"description": "OK"}),
        };
        op["responses"]["200"] = ok;
        if let Some(f) = r.request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": f(&mut generator)}}});
            op["responses"]["400"] = json!({"description": "malformed body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminError"}}}});
            op["responses"]["409"] = json!({"description": "`base_version` is not the active version", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminError"}}}});
            op["responses"]["422"] = json!({"description": "the configuration is invalid: `problems` lists every problem with its path", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminError"}}}});
        }
        let params: Vec<serde_json::Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        let entry = paths
            .entry(format!("/admin/v1{}", r.path))
            .or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut schemas = serde_json::Map::new();
    for (name, schema) in generator.take_definitions(true) {
        schemas.insert(name, schema);
    }
    schemas.insert(
        "AdminError".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"},
                    "param": {"type": ["string", "null"]}, "code": {"type": "string"}}},
                "problems": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
                "current_version": {"type": "integer"}
            }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Crossbar admin API", "version": router_core::VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.0.name.clone(),
        role: caller.0.role,
        permissions: Action::ALL
            .into_iter()
            .filter(|a| caller.0.role.may(*a))
            .collect(),
    })
}

async fn active_config(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> AdminResult<ConfigVersion> {
    state
        .store
        .active_config()
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::not_found("no configuration has been published"))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
    before_id: Option<i64>,
}

async fn versions(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(q): Query<Limit>,
) -> AdminResult<Vec<ConfigVersionSummary>> {
    Ok(Json(
        state
            .store
            .config_versions(q.limit.unwrap_or(50).min(1000))
            .await?,
    ))
}

async fn version(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(version): Path<String>,
) -> AdminResult<ConfigVersion> {
    let v: i64 = version
        .parse()
        .map_err(|_| AdminError::bad_request(format!("`{version}` is not a version number")))?;
    state
        .store
        .config_version(v)
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::not_found(format!("no version {v}")))
}

async fn validate_config(
    _caller: Caller,
    Body(config): Body<RouterConfig>,
) -> Json<ValidationResult> {
    Json(match Config::validate(config) {
        Ok(_) => ValidationResult {
            ok: true,
            problems: Vec::new(),
        },
        Err(p) => ValidationResult {
            ok: false,
            problems: p.0,
        },
    })
}

/// What a publish-like call changes and why.
pub struct Publish<'a> {
    pub config: RouterConfig,
    pub base_version: Option<i64>,
    pub action: &'a str,
    pub target: &'a str,
    pub message: &'a str,
    pub restored_from: Option<i64>,
}

pub async fn publish(
    state: &AppState,
    caller: &AdminIdentity,
    p: Publish<'_>,
) -> Result<PublishResult, AdminError> {
    let published = crate::publish::publish(
        state,
        crate::publish::Proposal {
            config: p.config,
            author: &caller.name,
            role: caller.role.as_str(),
            action: p.action,
            target: p.target,
            message: p.message,
            base_version: p.base_version,
            restored_from: p.restored_from,
        },
    )
    .await
    .map_err(|e| {
        use crate::publish::PublishError as E;
        match e {
            E::Invalid(problems) => {
                let mut out = AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", E::Invalid(problems.clone()).to_string());
                out.problems = problems.0;
                out
            }
            E::Unrunnable(_) => AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e.to_string()),
            E::Conflict { current, .. } => {
                let mut out = AdminError::new(StatusCode::CONFLICT, "conflict", e.to_string());
                out.current_version = Some(current);
                out
            }
            E::Store(err) => AdminError::internal(format!("{err:#}")),
        }
    })?;
    Ok(PublishResult {
        version: published.version.version,
        changes: published.changes,
    })
}

async fn publish_config(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<PublishRequest>,
) -> AdminResult<PublishResult> {
    caller.require(Action::Publish)?;
    let result = publish(
        &state,
        &caller.0,
        Publish {
            config: req.config,
            base_version: req.base_version,
            action: "publish",
            target: "config",
            message: &req.message,
            restored_from: None,
        },
    )
    .await?;
    Ok(Json(result))
}

async fn rollback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<RollbackRequest>,
) -> AdminResult<PublishResult> {
    caller.require(Action::Rollback)?;
    let old = state
        .store
        .config_version(req.to_version)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no version {}", req.to_version)))?;
    let message = if req.message.is_empty() {
        format!("roll back to version {}", req.to_version)
    } else {
        req.message.clone()
    };
    let result = publish(
        &state,
        &caller.0,
        Publish {
            config: old.config,
            base_version: req.base_version,
            action: "rollback",
            target: "config",
            message: &message,
            restored_from: Some(req.to_version),
        },
    )
    .await?;
    Ok(Json(result))
}

async fn edit_feature(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(edit): Body<FeatureEdit>,
) -> AdminResult<PublishResult> {
    caller.require(Action::EditFeature)?;
    let active = state
        .store
        .active_config()
        .await?
        .ok_or_else(|| AdminError::not_found("no configuration has been published"))?;
    let mut config = active.config;
    let feature = config
        .feature_mut(&name)
        .ok_or_else(|| AdminError::not_found(format!("no feature is named `{name}`")))?;
    feature.binding = edit.binding;
    feature.experiment = edit.experiment;
    let message = if edit.message.is_empty() {
        format!("edit feature {name}")
    } else {
        edit.message.clone()
    };
    let result = publish(
        &state,
        &caller.0,
        Publish {
            config,
            base_version: edit.base_version,
            action: "edit_feature",
            target: &name,
            message: &message,
            restored_from: None,
        },
    )
    .await?;
    Ok(Json(result))
}

async fn features_live(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Json<Vec<FeatureLive>> {
    Json(
        state
            .live
            .features(&state.engine.snapshot().config, unix_ms()),
    )
}

async fn endpoints(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Json<Vec<EndpointHealth>> {
    Json(state.engine.health())
}

async fn set_breaker(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<OverrideRequest>,
) -> AdminResult<EndpointHealth> {
    caller.require(Action::Override)?;
    if req.reason.trim().is_empty() {
        let mut e = AdminError::bad_request(
            "say why: `reason` must not be empty (it goes to the audit log)",
        );
        e.param = Some("reason".into());
        return Err(e);
    }
    state.engine.set_override(
        &name,
        req.mode,
        format!("{}: {}", caller.0.name, req.reason),
    )?;
    let mode = match req.mode {
        Override::Auto => "auto",
        Override::ForceOpen => "force_open",
        Override::ForceClosed => "force_closed",
    };
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.0.name,
            role: caller.0.role.as_str(),
            action: "breaker_override",
            target: &name,
            message: &format!("{mode}: {}", req.reason),
            ..Default::default()
        })
        .await?;
    state
        .engine
        .health()
        .into_iter()
        .find(|h| h.name == name)
        .map(Json)
        .ok_or_else(|| AdminError::not_found(format!("no endpoint is named `{name}`")))
}

#[derive(Deserialize)]
struct EventsQuery {
    since_ms: Option<i64>,
    limit: Option<u32>,
}

async fn breaker_events(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(q): Query<EventsQuery>,
) -> AdminResult<Vec<BreakerEvent>> {
    Ok(Json(
        state
            .store
            .breaker_events(q.since_ms.unwrap_or(0), q.limit.unwrap_or(200).min(5000))
            .await?,
    ))
}

/// The live state the console's overview shows, as of now.
pub fn live_snapshot(state: &AppState) -> LiveSnapshot {
    let snapshot = state.engine.snapshot();
    let now = unix_ms();
    LiveSnapshot {
        at_ms: now,
        config_version: snapshot.version,
        endpoints: state.engine.health(),
        features: state.live.features(&snapshot.config, now),
        ledger: state.ledger.stats(),
    }
}

async fn events(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Feed {
        state: Arc<AppState>,
        breakers: tokio::sync::broadcast::Receiver<BreakerEvent>,
        configs: tokio::sync::broadcast::Receiver<i64>,
        tick: tokio::time::Interval,
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let feed = Feed {
        breakers: state.sink_events.subscribe(),
        configs: state.config_events.subscribe(),
        state,
        tick,
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = tokio::select! {
                _ = f.tick.tick() => {
                    let snapshot = live_snapshot(&f.state);
                    Event::default().event("snapshot").json_data(&snapshot).ok()
                }
                e = f.breakers.recv() => match e {
                    Ok(e) => Event::default().event("breaker").json_data(&e).ok(),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").json_data(json!({"missed": n})).ok(),
                    Err(RecvError::Closed) => return None,
                },
                v = f.configs.recv() => match v {
                    Ok(v) => Event::default().event("config").json_data(json!({"version": v})).ok(),
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return None,
                },
            };
            if let Some(event) = event {
                return Some((Ok(event), f));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Deserialize)]
struct SpendQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    group_by: Option<String>,
}

async fn spend_report(state: &AppState, q: &SpendQuery) -> Result<SpendReport, AdminError> {
    let to = q.to_ms.unwrap_or_else(unix_ms);
    let from = q.from_ms.unwrap_or(to - 24 * 3_600_000);
    if from >= to {
        return Err(AdminError::bad_request("`from_ms` must be before `to_ms`"));
    }
    let g = q.group_by.as_deref().unwrap_or("feature");
    let group = SpendGroup::ALL
        .into_iter()
        .find(|s| s.as_str() == g)
        .ok_or_else(|| {
            let mut e = AdminError::bad_request(format!(
                "`{g}` is not a grouping: use feature, team, endpoint, cloud or variant"
            ));
            e.param = Some("group_by".into());
            e
        })?;
    let snapshot = state.engine.snapshot();
    let hourly: Vec<(String, rust_decimal::Decimal)> = snapshot
        .config
        .endpoints()
        .iter()
        .filter_map(|e| e.config.pricing.hourly.map(|h| (e.config.name.clone(), h)))
        .collect();
    Ok(state.store.spend(from, to, group, &hourly).await?)
}

async fn spend(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(q): Query<SpendQuery>,
) -> AdminResult<SpendReport> {
    Ok(Json(spend_report(&state, &q).await?))
}

async fn spend_csv(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(q): Query<SpendQuery>,
) -> Result<Response, AdminError> {
    let report = spend_report(&state, &q).await?;
    let mut csv = format!(
        "{},requests,errors,prompt_tokens,completion_tokens,on_demand_tokens,provisioned_tokens,on_demand,provisioned,total\n",
        report.group_by.as_str()
    );
    for r in &report.rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.key),
            r.requests,
            r.errors,
            r.prompt_tokens,
            r.completion_tokens,
            r.on_demand_tokens,
            r.provisioned_tokens,
            r.on_demand,
            r.provisioned,
            r.total
        ));
    }
    csv.push_str(&format!(
        "(unattributed provisioned),,,,,,,,{},{}\n",
        report.unattributed_provisioned, report.unattributed_provisioned
    ));
    let mut response = csv.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"crossbar-spend-{}-{}-{}.csv\"",
        report.group_by.as_str(),
        report.from_ms,
        report.to_ms
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

async fn audit(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(q): Query<Limit>,
) -> AdminResult<Vec<AuditEntry>> {
    Ok(Json(
        state
            .store
            .audit(q.limit.unwrap_or(100).min(1000), q.before_id)
            .await?,
    ))
}

async fn feedback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<FeedbackRequest>,
) -> Result<StatusCode, AdminError> {
    caller.require(Action::Feedback)?;
    let endpoint = state
        .store
        .request_endpoint(&req.request_id)
        .await?
        .ok_or_else(|| {
            AdminError::not_found(format!("no served request has id `{}`", req.request_id))
        })?;
    state.engine.feedback(&endpoint, req.positive)?;
    state
        .store
        .record_feedback(&req.request_id, req.positive, unix_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> AdminResult<Vec<GatewayKeyInfo>> {
    caller.require(Action::ManageKeys)?;
    Ok(Json(state.store.gateway_keys().await?))
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<CreateKeyRequest>,
) -> AdminResult<CreatedKey> {
    caller.require(Action::ManageKeys)?;
    if state.engine.snapshot().config.team(&req.team).is_none() {
        let mut e = AdminError::bad_request(format!(
            "no team is named `{}`: add it to the configuration first",
            req.team
        ));
        e.param = Some("team".into());
        return Err(e);
    }
    let (info, key) = state
        .store
        .create_gateway_key(&req.team, &req.name, req.requests_per_minute)
        .await?;
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.0.name,
            role: caller.0.role.as_str(),
            action: "create_key",
            target: &info.id,
            message: &format!("key `{}` for team `{}`", info.name, info.team),
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(Json(CreatedKey { info, key }))
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    caller.require(Action::ManageKeys)?;
    if !state.store.revoke_gateway_key(&id).await? {
        return Err(AdminError::not_found(format!("no key has id `{id}`")));
    }
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.0.name,
            role: caller.0.role.as_str(),
            action: "revoke_key",
            target: &id,
            message: "",
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route_with_its_schemas() {
        let doc = openapi_document();
        for r in ROUTES {
            let op = &doc["paths"][format!("/admin/v1{}", r.path)][r.method];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
            assert_eq!(op["x-crossbar-permission"], json!(r.action));
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "RouterConfig",
            "EndpointHealth",
            "SpendReport",
            "PublishResult",
            "BreakerView",
        ] {
            assert!(
                schemas.contains_key(name),
                "{name} missing from {:?}",
                schemas.keys().collect::<Vec<_>>()
            );
        }
    }
}
