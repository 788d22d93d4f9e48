//! Breaker overrides across processes: stored first (with their audit entry, in one
//! transaction: [`Store::set_breaker_override`]), then applied to this process's
//! engine; applied by every other process sharing the store within a second or two
//! ([`spawn_follower`]), and by each process at start ([`load`]), so an override
//! survives a restart.
//!
//! Each process remembers the revision it applied last per endpoint, so an older
//! override never undoes a newer one, whichever of the admin handler and the
//! follower gets to it first.
//!
//! [`Store::set_breaker_override`]: crate::store::Store::set_breaker_override

use std::sync::Arc;
use std::time::Duration;

use router_core::logging::escaped;

use crate::AppState;
use crate::store::{StoredOverride, mode_name};

/// Applies `o` to this process's engine, unless an override of its endpoint at
/// least as recent has been applied already.
pub fn apply(state: &AppState, o: &StoredOverride) -> Result<(), router_core::api::Error> {
    let mut applied = state.overrides.lock();
    if applied.get(&o.endpoint).is_some_and(|r| *r >= o.revision) {
        return Ok(());
    }
    state
        .engine
        .set_override(&o.endpoint, o.mode, format!("{}: {}", o.actor, o.reason))?;
    applied.insert(o.endpoint.clone(), o.revision);
    tracing::info!(
        endpoint = %o.endpoint,
        mode = mode_name(o.mode),
        actor = %escaped(&o.actor),
        reason = %escaped(&o.reason),
        revision = o.revision,
        "breaker override applied"
    );
    Ok(())
}

/// Applies the stored overrides written after `since`, in order; returns the newest
/// revision seen. An override of an endpoint this configuration does not have is
/// skipped.
pub async fn follow_from(state: &AppState, since: i64) -> anyhow::Result<i64> {
    let mut seen = since;
    for o in state.store.breaker_overrides_since(since).await? {
        seen = seen.max(o.revision);
        if let Err(err) = apply(state, &o) {
            tracing::debug!(endpoint = %o.endpoint, %err, "a stored breaker override was not applied");
        }
    }
    Ok(seen)
}

/// At start: every stored override, applied; returns the newest revision.
pub async fn load(state: &AppState) -> anyhow::Result<i64> {
    follow_from(state, 0).await
}

/// Applies the overrides other processes store, every `every`, from `since` on.
pub fn spawn_follower(
    state: Arc<AppState>,
    since: i64,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = since;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match follow_from(&state, seen).await {
                Ok(newest) => seen = newest,
                Err(err) => tracing::warn!(%err, "cannot read the stored breaker overrides"),
            }
        }
    })
}
