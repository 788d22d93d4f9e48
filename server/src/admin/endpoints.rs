//! Endpoints: live health, breaker overrides (stored and audited, then applied, and
//! followed by every process sharing the store: `crate::overrides`), and breaker
//! transitions.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use router_core::admin::{BreakerEvent, EndpointHealth, OverrideRequest};
use schemars::JsonSchema;
use serde::Deserialize;

use super::auth::Caller;
use super::{AdminError, AdminJson, AdminPath, AdminQuery};
use crate::AppState;
use crate::store::{NewAudit, mode_name};

pub async fn health(State(state): State<Arc<AppState>>) -> Json<Vec<EndpointHealth>> {
    Json(state.engine.health())
}

#[derive(Deserialize, JsonSchema)]
pub struct EndpointName {
    /// The endpoint's name.
    name: String,
}

/// An operator's override: stored with its audit entry first (one transaction), then
/// applied here; the other processes sharing the store follow it within a couple of
/// seconds, and every process applies it again after a restart.
pub async fn set_breaker(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    AdminPath(EndpointName { name }): AdminPath<EndpointName>,
    AdminJson(req): AdminJson<OverrideRequest>,
) -> Result<Json<EndpointHealth>, AdminError> {
    if req.reason.trim().is_empty() {
        return Err(AdminError::bad_param(
            "reason",
            "say why: `reason` must not be empty (it goes to the audit log)",
        ));
    }
    let unknown = || AdminError::not_found(format!("no endpoint is named `{name}`"));
    if state.engine.snapshot().config.endpoint_id(&name).is_none() {
        return Err(unknown());
    }
    let mode = mode_name(req.mode);
    let stored = state
        .store
        .set_breaker_override(
            &name,
            req.mode,
            &req.reason,
            NewAudit {
                actor: &caller.name,
                role: caller.role.as_str(),
                action: "breaker_override",
                target: &name,
                message: &format!("{mode}: {}", req.reason),
                ..Default::default()
            },
        )
        .await?;
    crate::overrides::apply(&state, &stored)?;
    state
        .engine
        .health()
        .into_iter()
        .find(|h| h.name == name)
        .map(Json)
        .ok_or_else(unknown)
}

#[derive(Deserialize, JsonSchema)]
pub struct BreakerEventsQuery {
    /// Only transitions at or after this time (ms since the Unix epoch; default 0).
    since_ms: Option<i64>,
    /// How many, newest first (default 200, at most 5000).
    limit: Option<u32>,
}

pub async fn breaker_events(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<BreakerEventsQuery>,
) -> Result<Json<Vec<BreakerEvent>>, AdminError> {
    Ok(Json(
        state
            .store
            .breaker_events(q.since_ms.unwrap_or(0), q.limit.unwrap_or(200).min(5000))
            .await?,
    ))
}
