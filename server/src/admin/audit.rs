//! The audit log: who did what, when, and what it changed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use router_core::admin::AuditEntry;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{AdminError, AdminQuery};
use crate::AppState;

#[derive(Deserialize, JsonSchema)]
pub struct AuditQuery {
    /// How many entries, newest first (default 100, at most 1000).
    limit: Option<u32>,
    /// Only entries older than this id (the next page).
    before_id: Option<i64>,
}

pub async fn entries(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, AdminError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(state.store.audit(limit, q.before_id).await?))
}
