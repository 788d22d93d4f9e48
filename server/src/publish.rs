//! The one way a configuration version becomes live:
//!
//! 1. **validate** with the router's rules and the operator's credential policy
//!    ([`CredentialPolicy`]: every problem, with its path);
//! 2. **prepare**: connect what the new version needs ([`Engine::prepare`]) without
//!    serving it yet, so a version that cannot run is refused before it is stored;
//! 3. **record**: one store transaction writes the version and its audit entry (who,
//!    why, the diff), refused when `base_version` is stale ([`Store::publish_config`]);
//! 4. **activate**: swap the prepared snapshot in ([`Engine::activate`]);
//! 5. **notify**: tell the event stream's subscribers (`config_events`).
//!
//! Three callers, three entries, one set of steps:
//! - [`publish`] (the admin API's publish, rollback and feature edit): all five;
//! - [`seed`] (start-up, from the configuration file: `file::load_or_seed`): validate
//!   and record. No engine exists yet; `Server::start` builds it from the version
//!   this returns, which is the activation;
//! - [`follow`] (the replica follower): a version another process already recorded:
//!   validate, prepare, activate, notify; it writes nothing.
//!
//! Any failure before *activate* leaves the live configuration untouched. Publishes
//! in this process are serialised (`AppState::publishing`) so versions go live in
//! the order they were recorded.

use std::fmt;

use router_core::admin::{Change, ConfigVersion};
use router_core::config::{Config, Problems, RouterConfig};
use router_core::routing::engine::{Engine, Prepared};

use crate::AppState;
use crate::policy::CredentialPolicy;
use crate::store::{NewVersion, NewVersionError, Store};

/// A configuration proposed as the next version, with who proposes it and why.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    pub config: RouterConfig,
    /// Who: an admin token's name, or `file:PATH` for the configuration file.
    pub author: &'a str,
    /// The author's role, for the audit log.
    pub role: &'a str,
    /// `publish`, `edit_feature`, `rollback` or `seed`.
    pub action: &'a str,
    /// What the action is about: `config`, a feature name, ...
    pub target: &'a str,
    pub message: &'a str,
    /// The version the change started from; `None` publishes over whatever is active.
    pub base_version: Option<i64>,
    /// Rollbacks: the version restored.
    pub restored_from: Option<i64>,
}

/// A recorded version and what it changed from the previous one.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: ConfigVersion,
    pub changes: Vec<Change>,
}

/// Why a configuration did not go live. Nothing changed in any of these cases.
#[derive(Debug)]
pub enum PublishError {
    /// The configuration breaks the router's rules.
    Invalid(Problems),
    /// The configuration is valid but cannot run: an endpoint cannot be connected.
    Unrunnable(String),
    /// Someone published since the change began: `current` is the newest version.
    Conflict { current: i64, base: Option<i64> },
    /// The store failed.
    Store(anyhow::Error),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(problems) => write!(
                f,
                "the configuration has {} problem(s): {problems}",
                problems.0.len()
            ),
            Self::Unrunnable(err) => write!(
                f,
                "cannot connect an endpoint of the new configuration: {err}"
            ),
            Self::Conflict { current, base } => write!(
                f,
                "version {current} was published since your edit began (from version {}): reload and reapply your change",
                base.unwrap_or_default()
            ),
            Self::Store(err) => write!(f, "cannot publish the configuration: {err:#}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Validate → prepare → record → activate → notify.
pub async fn publish(
    state: &AppState,
    policy: &CredentialPolicy,
    proposal: Proposal<'_>,
) -> Result<Published, PublishError> {
    let _one_at_a_time = state.publishing.lock().await;
    let config = validate(&proposal.config, policy)?;
    let prepared = prepare(&state.engine, config).await?;
    let published = record(&state.store, &proposal).await?;
    go_live(state, prepared, published.version.version);
    tracing::info!(
        version = published.version.version,
        author = proposal.author,
        action = proposal.action,
        changes = published.changes.len(),
        "configuration published"
    );
    Ok(published)
}

/// Validate → record, before any engine exists (start-up): the caller serves the
/// version returned.
pub async fn seed(
    store: &Store,
    policy: &CredentialPolicy,
    proposal: Proposal<'_>,
) -> Result<Published, PublishError> {
    validate(&proposal.config, policy)?;
    record(store, &proposal).await
}

/// Validate → prepare → activate → notify a version already in the store (another
/// replica published it). A version not newer than the one serving is skipped; one
/// that breaks this server's credential policy is not served.
pub async fn follow(
    state: &AppState,
    policy: &CredentialPolicy,
    stored: ConfigVersion,
) -> Result<(), PublishError> {
    let _one_at_a_time = state.publishing.lock().await;
    if stored.version <= state.engine.snapshot().version {
        return Ok(());
    }
    let config = validate(&stored.config, policy)?;
    let prepared = prepare(&state.engine, config).await?;
    go_live(state, prepared, stored.version);
    tracing::info!(
        version = stored.version,
        "following a version published by another replica"
    );
    Ok(())
}

/// The router's rules, then the credential policy: every problem of both.
pub fn validate(config: &RouterConfig, policy: &CredentialPolicy) -> Result<Config, PublishError> {
    let mut refused = policy.problems(config);
    match Config::validate(config.clone()) {
        Ok(config) if refused.is_empty() => Ok(config),
        Ok(_) => Err(PublishError::Invalid(Problems(refused))),
        Err(mut problems) => {
            problems.0.append(&mut refused);
            Err(PublishError::Invalid(problems))
        }
    }
}

async fn prepare(engine: &Engine, config: Config) -> Result<Prepared, PublishError> {
    engine
        .prepare(config)
        .await
        .map_err(|e| PublishError::Unrunnable(e.to_string()))
}

async fn record(store: &Store, p: &Proposal<'_>) -> Result<Published, PublishError> {
    let (version, changes) = store
        .publish_config(NewVersion {
            config: &p.config,
            author: p.author,
            role: p.role,
            action: p.action,
            target: p.target,
            message: p.message,
            base_version: p.base_version,
            restored_from: p.restored_from,
        })
        .await
        .map_err(|e| match e {
            NewVersionError::Conflict { current } => PublishError::Conflict {
                current,
                base: p.base_version,
            },
            NewVersionError::Db(err) => PublishError::Store(err),
        })?;
    Ok(Published { version, changes })
}

/// Activate, then notify: subscribers hear of a version only once it serves.
fn go_live(state: &AppState, prepared: Prepared, version: i64) {
    state.engine.activate(prepared, version);
    // No subscriber is fine: nobody is watching the console.
    let _ = state.config_events.send(version);
}
