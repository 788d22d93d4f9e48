//! Feedback on a served request: recorded, and fed to the breaker of the endpoint
//! that served it.

use std::sync::Arc;

use axum::extract::State;
use axum::response::NoContent;
use router_core::admin::FeedbackRequest;

use super::{AdminError, AdminJson};
use crate::{AppState, unix_ms};

pub async fn record(
    State(state): State<Arc<AppState>>,
    AdminJson(req): AdminJson<FeedbackRequest>,
) -> Result<NoContent, AdminError> {
    let endpoint = state
        .store
        .request_endpoint(&req.request_id)
        .await?
        .ok_or_else(|| AdminError {
            param: Some("request_id".into()),
            ..AdminError::not_found(format!("no served request has id `{}`", req.request_id))
        })?;
    state.engine.feedback(&endpoint, req.positive)?;
    state
        .store
        .record_feedback(&req.request_id, req.positive, unix_ms())
        .await?;
    Ok(NoContent)
}
