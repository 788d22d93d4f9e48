//! Admin API tokens: listed (never the tokens themselves, nor their hashes), created
//! with a role and an optional expiry (the token shown once), revoked. Creations and
//! revocations are audited, and this router's in-memory tokens are reloaded at once,
//! so a revoked token is refused on the next request here; other replicas reload
//! every few seconds.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use router_core::admin::{AdminTokenInfo, CreateTokenRequest, CreatedToken};
use schemars::JsonSchema;
use serde::Deserialize;

use super::auth::Caller;
use super::{AdminError, AdminJson, AdminPath};
use crate::store::NewAudit;
use crate::{AppState, unix_ms};

pub async fn list(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<AdminTokenInfo>>, AdminError> {
    Ok(Json(state.store.admin_tokens().await?))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    AdminJson(req): AdminJson<CreateTokenRequest>,
) -> Result<Json<CreatedToken>, AdminError> {
    check_name(&req.name)?;
    check_expiry(req.expires_at_ms)?;
    let (info, token) = state
        .store
        .create_expiring_admin_token(req.name.trim(), req.role, req.expires_at_ms)
        .await?;
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.name,
            role: caller.role.as_str(),
            action: "create_token",
            target: &info.id,
            message: &format!(
                "token `{}` with role `{}`{}",
                info.name,
                info.role.as_str(),
                expiry_words(info.expires_at_ms)
            ),
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(Json(CreatedToken { info, token }))
}

#[derive(Deserialize, JsonSchema)]
pub struct TokenId {
    /// The token's id (from the listing).
    id: String,
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    AdminPath(TokenId { id }): AdminPath<TokenId>,
) -> Result<NoContent, AdminError> {
    if !state.store.revoke_admin_token(&id).await? {
        return Err(AdminError::not_found(format!(
            "no token in force has id `{id}`"
        )));
    }
    state
        .store
        .append_audit(NewAudit {
            actor: &caller.name,
            role: caller.role.as_str(),
            action: "revoke_token",
            target: &id,
            message: if id == caller.id {
                "their own token"
            } else {
                ""
            },
            ..Default::default()
        })
        .await?;
    state.keys.reload().await?;
    Ok(NoContent)
}

/// A holder's name: what the audit log and the console show.
pub fn check_name(name: &str) -> Result<(), AdminError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AdminError::bad_param(
            "name",
            "a name is 1 to 100 characters, without control characters",
        ));
    }
    Ok(())
}

/// An expiry, when given, lies in the future.
pub fn check_expiry(expires_at_ms: Option<i64>) -> Result<(), AdminError> {
    match expires_at_ms {
        Some(t) if t <= unix_ms() => Err(AdminError::bad_param(
            "expires_at_ms",
            "the expiry must lie in the future (ms since the Unix epoch)",
        )),
        _ => Ok(()),
    }
}

/// `, expires at <ms>` for the audit message.
pub fn expiry_words(expires_at_ms: Option<i64>) -> String {
    expires_at_ms
        .map(|t| format!(", expires at {t} (ms since the Unix epoch)"))
        .unwrap_or_default()
}
