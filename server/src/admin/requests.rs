//! Failed requests, for operators: what each attempt's endpoint said (credentials
//! redacted), which the gateway's client was not told (it got the class and a safe
//! message). From the ledger, so a request shows here once its batch is written
//! (within a second).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use router_core::admin::FailedRequest;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{AdminError, AdminQuery};
use crate::AppState;

#[derive(Deserialize, JsonSchema)]
pub struct FailedQuery {
    /// How many, newest first (default 50, at most 500).
    limit: Option<u32>,
    /// Only this request (the `x-request-id` a client got), failed or not.
    request_id: Option<String>,
}

pub async fn failed(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<FailedQuery>,
) -> Result<Json<Vec<FailedRequest>>, AdminError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let id = q
        .request_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    Ok(Json(state.store.failed_requests(limit, id).await?))
}
