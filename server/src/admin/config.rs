//! The configuration: the active version, the versions, validation, and the
//! publishes that make a new version (a whole configuration, a rollback). Feature
//! edits publish too, in `features.rs`; all go through [`crate::publish`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use router_core::admin::{
    ConfigVersion, ConfigVersionSummary, PublishRequest, PublishResult, RollbackRequest,
    ValidationResult,
};
use router_core::config::RouterConfig;
use schemars::JsonSchema;
use serde::Deserialize;

use super::auth::Caller;
use super::{AdminError, AdminJson, AdminPath, AdminQuery, Policy};
use crate::AppState;
use crate::publish::{self, Proposal};

/// The newest version: the one serving.
pub async fn active(State(state): State<Arc<AppState>>) -> Result<Json<ConfigVersion>, AdminError> {
    active_version(&state).await.map(Json)
}

/// The store's newest version. A running server always has one (it does not start
/// without a configuration), so its absence is an internal error.
pub async fn active_version(state: &AppState) -> Result<ConfigVersion, AdminError> {
    state
        .store
        .active_config()
        .await?
        .ok_or_else(|| AdminError::internal("the store has no configuration version"))
}

#[derive(Deserialize, JsonSchema)]
pub struct VersionsQuery {
    /// How many versions, newest first (default 50, at most 1000).
    limit: Option<u32>,
}

pub async fn versions(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<VersionsQuery>,
) -> Result<Json<Vec<ConfigVersionSummary>>, AdminError> {
    let limit = q.limit.unwrap_or(50).min(1000);
    Ok(Json(state.store.config_versions(limit).await?))
}

#[derive(Deserialize, JsonSchema)]
pub struct VersionPath {
    /// The version number.
    version: i64,
}

pub async fn version(
    State(state): State<Arc<AppState>>,
    AdminPath(p): AdminPath<VersionPath>,
) -> Result<Json<ConfigVersion>, AdminError> {
    state
        .store
        .config_version(p.version)
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::not_found(format!("no version {}", p.version)))
}

/// The router's rules and this server's credential policy, as a publish applies them.
pub async fn validate(
    axum::Extension(policy): Policy,
    AdminJson(config): AdminJson<RouterConfig>,
) -> Json<ValidationResult> {
    Json(match publish::validate(&config, &policy) {
        Ok(_) => ValidationResult {
            ok: true,
            problems: Vec::new(),
        },
        Err(publish::PublishError::Invalid(p)) => ValidationResult {
            ok: false,
            problems: p.0,
        },
        // Validation alone fails in no other way.
        Err(other) => ValidationResult {
            ok: false,
            problems: vec![router_core::config::Problem::new("", other.to_string())],
        },
    })
}

pub async fn publish(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    axum::Extension(policy): Policy,
    AdminJson(req): AdminJson<PublishRequest>,
) -> Result<Json<PublishResult>, AdminError> {
    let published = publish::publish(
        &state,
        &policy,
        Proposal {
            config: req.config,
            author: &caller.name,
            role: caller.role.as_str(),
            action: "publish",
            target: "config",
            message: &req.message,
            base_version: Some(req.base_version),
            restored_from: None,
        },
    )
    .await?;
    Ok(Json(result(published)))
}

pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    axum::Extension(policy): Policy,
    AdminJson(req): AdminJson<RollbackRequest>,
) -> Result<Json<PublishResult>, AdminError> {
    let old = state
        .store
        .config_version(req.to_version)
        .await?
        .ok_or_else(|| AdminError {
            param: Some("to_version".into()),
            ..AdminError::not_found(format!("no version {}", req.to_version))
        })?;
    let message = if req.message.is_empty() {
        format!("roll back to version {}", req.to_version)
    } else {
        req.message
    };
    let published = publish::publish(
        &state,
        &policy,
        Proposal {
            config: old.config,
            author: &caller.name,
            role: caller.role.as_str(),
            action: "rollback",
            target: "config",
            message: &message,
            base_version: Some(req.base_version),
            restored_from: Some(req.to_version),
        },
    )
    .await?;
    Ok(Json(result(published)))
}

/// What the API answers for a publish.
pub fn result(published: publish::Published) -> PublishResult {
    PublishResult {
        version: published.version.version,
        changes: published.changes,
    }
}
