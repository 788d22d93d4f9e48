//! The audit log: who did what, when, with what effect. Config publishes are audited
//! by [`Store::publish_config`] in the same transaction; other actions (breaker
//! overrides, keys and tokens) through [`Store::append_audit`]. Feedback is not
//! audited.

use router_core::admin::{AuditEntry, Change};
use sqlx::{Sqlite, Transaction};

use super::{Store, unix_ms};

/// An audit entry to append. `version` and `changes` are for config-like actions;
/// other actions leave them out: `NewAudit { actor, role, action, target, message,
/// ..Default::default() }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    /// `breaker_override`, `create_key`, `revoke_key`, `create_token`, ...
    pub action: &'a str,
    pub target: &'a str,
    pub version: Option<i64>,
    pub changes: &'a [Change],
    pub message: &'a str,
}

/// Appends an entry inside `tx`; returns its id.
pub(super) async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    e: &NewAudit<'_>,
    at_ms: i64,
) -> anyhow::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_log \
         (id, at_ms, actor, role, action, target, version, changes_json, message) \
         SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8 FROM audit_log \
         RETURNING id",
    )
    .bind(at_ms)
    .bind(e.actor)
    .bind(e.role)
    .bind(e.action)
    .bind(e.target)
    .bind(e.version)
    .bind(serde_json::to_string(e.changes)?)
    .bind(e.message)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at_ms: i64,
    actor: String,
    role: String,
    action: String,
    target: String,
    version: Option<i64>,
    changes_json: String,
    message: String,
}

impl Store {
    /// Appends an audit entry now; returns its id.
    pub async fn append_audit(&self, e: NewAudit<'_>) -> anyhow::Result<i64> {
        let mut tx = self.begin_write().await?;
        let id = insert(&mut tx, &e, unix_ms()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Up to `limit` entries older than `before_id` (all when `None`), newest first.
    pub async fn audit(
        &self,
        limit: u32,
        before_id: Option<i64>,
    ) -> anyhow::Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at_ms, actor, role, action, target, version, changes_json, message \
             FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.id,
                    at_ms: r.at_ms,
                    actor: r.actor,
                    role: r.role,
                    action: r.action,
                    target: r.target,
                    version: r.version,
                    changes: serde_json::from_str(&r.changes_json)?,
                    message: r.message,
                })
            })
            .collect()
    }
}
