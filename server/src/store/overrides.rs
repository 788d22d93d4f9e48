//! Breaker overrides: an operator's "force open", "force closed" or "back to auto"
//! for an endpoint, stored with its audit entry in one transaction before any
//! process applies it, and read back by every process sharing the store (at start,
//! and by the follower in `lib.rs`, in revision order).

use router_core::admin::Override;

use super::audit::{self, NewAudit};
use super::{Store, unix_ms};

/// A stored override: the latest for its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOverride {
    pub endpoint: String,
    pub mode: Override,
    pub reason: String,
    pub actor: String,
    pub at_ms: i64,
    /// Increases with every override written, across processes.
    pub revision: i64,
}

/// An override's name in the store (and its JSON name).
pub fn mode_name(mode: Override) -> &'static str {
    match mode {
        Override::Auto => "auto",
        Override::ForceOpen => "force_open",
        Override::ForceClosed => "force_closed",
    }
}

fn parse_mode(name: &str) -> Option<Override> {
    [Override::Auto, Override::ForceOpen, Override::ForceClosed]
        .into_iter()
        .find(|m| mode_name(*m) == name)
}

impl Store {
    /// Stores `mode` as `endpoint`'s override and `audit` as its audit entry, in one
    /// transaction: both or neither. Returns the stored override.
    pub async fn set_breaker_override(
        &self,
        endpoint: &str,
        mode: Override,
        reason: &str,
        audit: NewAudit<'_>,
    ) -> anyhow::Result<StoredOverride> {
        let mut tx = self.begin_write().await?;
        let at_ms = unix_ms();
        let revision: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) + 1 FROM breaker_overrides")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO breaker_overrides (endpoint, mode, reason, actor, at_ms, revision) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (endpoint) DO UPDATE SET mode = excluded.mode, \
             reason = excluded.reason, actor = excluded.actor, at_ms = excluded.at_ms, \
             revision = excluded.revision",
        )
        .bind(endpoint)
        .bind(mode_name(mode))
        .bind(reason)
        .bind(audit.actor)
        .bind(at_ms)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        audit::insert(&mut tx, &audit, at_ms).await?;
        tx.commit().await?;
        Ok(StoredOverride {
            endpoint: endpoint.to_owned(),
            mode,
            reason: reason.to_owned(),
            actor: audit.actor.to_owned(),
            at_ms,
            revision,
        })
    }

    /// The stored overrides written after `revision`, oldest first (0: all of them).
    pub async fn breaker_overrides_since(
        &self,
        revision: i64,
    ) -> anyhow::Result<Vec<StoredOverride>> {
        let rows: Vec<(String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT endpoint, mode, reason, actor, at_ms, revision FROM breaker_overrides \
             WHERE revision > $1 ORDER BY revision",
        )
        .bind(revision)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(endpoint, mode, reason, actor, at_ms, revision)| {
                let Some(mode) = parse_mode(&mode) else {
                    tracing::warn!(
                        endpoint = %router_core::logging::escaped(&endpoint),
                        mode = %router_core::logging::escaped(&mode),
                        "a stored breaker override has an unknown mode; ignored"
                    );
                    return None;
                };
                Some(StoredOverride {
                    endpoint,
                    mode,
                    reason,
                    actor,
                    at_ms,
                    revision,
                })
            })
            .collect())
    }
}
