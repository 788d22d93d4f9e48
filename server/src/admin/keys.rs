//! Gateway keys: listed (never the keys themselves), created with an optional expiry
//! (the key shown once), revoked. Creations and revocations are audited, and this
//! router's in-memory keys are reloaded at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use router_core::admin::{CreateKeyRequest, CreatedKey, GatewayKeyInfo};
use schemars::JsonSchema;
use serde::Deserialize;

use super::auth::Caller;
use super::{AdminError, AdminJson, AdminPath};
use crate::AppState;
use crate::store::NewAudit;

pub async fn list(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<GatewayKeyInfo>>, AdminError> {
    Ok(Json(state.store.gateway_keys().await?))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    AdminJson(req): AdminJson<CreateKeyRequest>,
) -> Result<Json<CreatedKey>, AdminError> {
    if state.engine.snapshot().config.team(&req.team).is_none() {
        return Err(AdminError::bad_param(
            "team",
            format!(
                "no team is named `{}`: add it to the configuration first",
                req.team
            ),
        ));
    }
    super::tokens::check_name(&req.name)?;
    super::tokens::check_expiry(req.expires_at_ms)?;
    let (info, key) = state
        .store
        .create_expiring_gateway_key(
            &req.team,
            req.name.trim(),
            req.requests_per_minute,
            req.expires_at_ms,
        )
        .await?;
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.name,
            role: caller.role.as_str(),
            action: "create_key",
            target: &info.id,
            message: &format!(
                "key `{}` for team `{}`{}",
                info.name,
                info.team,
                super::tokens::expiry_words(info.expires_at_ms)
            ),
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(Json(CreatedKey { info, key }))
}

#[derive(Deserialize, JsonSchema)]
pub struct KeyId {
    /// The key's id (from the listing).
    id: String,
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    AdminPath(KeyId { id }): AdminPath<KeyId>,
) -> Result<NoContent, AdminError> {
    if !state.store.revoke_gateway_key(&id).await? {
        return Err(AdminError::not_found(format!("no key has id `{id}`")));
    }
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.name,
            role: caller.role.as_str(),
            action: "revoke_key",
            target: &id,
            message: "",
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(NoContent)
}
