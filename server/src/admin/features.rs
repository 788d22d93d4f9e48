//! Features: a feature's binding and experiment edited (a new version, through
//! [`crate::publish`]), and each feature's live traffic.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use router_core::admin::{FeatureEdit, FeatureLive, PublishResult};
use schemars::JsonSchema;
use serde::Deserialize;

use super::auth::Caller;
use super::config::{active_version, result};
use super::{AdminError, AdminJson, AdminPath, Policy};
use crate::publish::{self, Proposal};
use crate::{AppState, unix_ms};

#[derive(Deserialize, JsonSchema)]
pub struct FeatureName {
    /// The feature's name.
    name: String,
}

/// The active configuration with the feature's binding and experiment replaced,
/// published on top of `base_version`, which must be the active version (else 409,
/// with the current version: the edit was made on an older one).
pub async fn edit(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    axum::Extension(policy): Policy,
    AdminPath(FeatureName { name }): AdminPath<FeatureName>,
    AdminJson(edit): AdminJson<FeatureEdit>,
) -> Result<Json<PublishResult>, AdminError> {
    let active = active_version(&state).await?;
    if active.version != edit.base_version {
        return Err(publish::PublishError::Conflict {
            current: active.version,
            base: Some(edit.base_version),
        }
        .into());
    }
    let mut config = active.config;
    let feature = config
        .feature_mut(&name)
        .ok_or_else(|| AdminError::not_found(format!("no feature is named `{name}`")))?;
    feature.binding = edit.binding;
    feature.experiment = edit.experiment;
    let message = if edit.message.is_empty() {
        format!("edit feature {name}")
    } else {
        edit.message
    };
    let published = publish::publish(
        &state,
        &policy,
        Proposal {
            config,
            author: &caller.name,
            role: caller.role.as_str(),
            action: "edit_feature",
            target: &name,
            message: &message,
            base_version: Some(edit.base_version),
            restored_from: None,
        },
    )
    .await?;
    Ok(Json(result(published)))
}

pub async fn live(State(state): State<Arc<AppState>>) -> Json<Vec<FeatureLive>> {
    Json(
        state
            .live
            .features(&state.engine.snapshot().config, unix_ms()),
    )
}
