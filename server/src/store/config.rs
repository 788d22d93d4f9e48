//! Configuration versions: immutable, numbered 1, 2, 3, ...; the newest is active.
//! A publish checks optimistic concurrency, stores the version, computes its diff
//! against the previous one and audits it, all in one transaction.

use std::fmt;

use router_core::admin::{Change, ConfigVersion, ConfigVersionSummary};
use router_core::config::RouterConfig;
use router_core::config::diff::config_changes;

use super::audit::{self, NewAudit};
use super::{Store, unix_ms};

/// A configuration to publish, and who publishes it why.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    pub config: &'a RouterConfig,
    pub author: &'a str,
    /// The author's role, for the audit log.
    pub role: &'a str,
    /// `publish`, `edit_feature`, `rollback` or `seed`.
    pub action: &'a str,
    /// What the action is about: `config`, a feature name, ...
    pub target: &'a str,
    pub message: &'a str,
    /// The version the edit started from: when it is not the newest any more, the
    /// publish is refused ([`NewVersionError::Conflict`]). `None` publishes regardless.
    pub base_version: Option<i64>,
    /// Rollbacks: the version restored.
    pub restored_from: Option<i64>,
}

/// Why [`Store::publish_config`] wrote nothing.
#[derive(Debug)]
pub enum NewVersionError {
    /// Someone published since `base_version`: `current` is the newest version now
    /// (0 when there is none).
    Conflict {
        current: i64,
    },
    Db(anyhow::Error),
}

impl fmt::Display for NewVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict { current } => write!(
                f,
                "the configuration changed since this edit began: version {current} is current"
            ),
            Self::Db(err) => write!(f, "cannot publish the configuration: {err:#}"),
        }
    }
}

impl std::error::Error for NewVersionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Conflict { .. } => None,
            Self::Db(err) => Some(err.as_ref()),
        }
    }
}

impl From<anyhow::Error> for NewVersionError {
    fn from(err: anyhow::Error) -> Self {
        Self::Db(err)
    }
}

impl From<sqlx::Error> for NewVersionError {
    fn from(err: sqlx::Error) -> Self {
        Self::Db(err.into())
    }
}

impl From<serde_json::Error> for NewVersionError {
    fn from(err: serde_json::Error) -> Self {
        Self::Db(err.into())
    }
}

/// A version's row without its configuration: what a listing shows.
#[derive(sqlx::FromRow)]
struct SummaryRow {
    version: i64,
    created_at_ms: i64,
    author: String,
    message: String,
    parent: Option<i64>,
    restored_from: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    #[sqlx(flatten)]
    summary: SummaryRow,
    config_json: String,
}

impl VersionRow {
    fn into_version(self) -> anyhow::Result<ConfigVersion> {
        let SummaryRow {
            version,
            created_at_ms,
            author,
            message,
            parent,
            restored_from,
        } = self.summary;
        let config = stored_config(&self.config_json).map_err(|err| {
            anyhow::anyhow!("config version {version} is not a valid configuration: {err}")
        })?;
        Ok(ConfigVersion {
            version,
            created_at_ms,
            author,
            message,
            parent,
            restored_from,
            config,
        })
    }
}

const VERSION_COLUMNS: &str =
    "version, created_at_ms, author, message, parent, restored_from, config_json";

impl Store {
    /// The active configuration: the newest version.
    pub async fn active_config(&self) -> anyhow::Result<Option<ConfigVersion>> {
        let sql =
            format!("SELECT {VERSION_COLUMNS} FROM config_versions ORDER BY version DESC LIMIT 1");
        sqlx::query_as::<_, VersionRow>(&sql)
            .fetch_optional(&self.pool)
            .await?
            .map(VersionRow::into_version)
            .transpose()
    }

    pub async fn config_version(&self, version: i64) -> anyhow::Result<Option<ConfigVersion>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM config_versions WHERE version = $1");
        sqlx::query_as::<_, VersionRow>(&sql)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .map(VersionRow::into_version)
            .transpose()
    }

    /// The newest `limit` versions, newest first; the first is the active one.
    pub async fn config_versions(&self, limit: u32) -> anyhow::Result<Vec<ConfigVersionSummary>> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT version, created_at_ms, author, message, parent, restored_from \
             FROM config_versions ORDER BY version DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| ConfigVersionSummary {
                version: r.version,
                created_at_ms: r.created_at_ms,
                author: r.author,
                message: r.message,
                parent: r.parent,
                restored_from: r.restored_from,
                active: i == 0,
            })
            .collect())
    }

    /// Publishes `p.config` as the next version, in one transaction with its audit
    /// entry. Returns the new version and what changed from the previous one (from
    /// an empty configuration for the first version).
    pub async fn publish_config(
        &self,
        p: NewVersion<'_>,
    ) -> Result<(ConfigVersion, Vec<Change>), NewVersionError> {
        let _serial = self.publish_lock.lock().await;
        let mut tx = self.begin_write().await?;
        let newest: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, config_json FROM config_versions ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let current = newest.as_ref().map_or(0, |(v, _)| *v);
        if let Some(base) = p.base_version
            && base != current
        {
            return Err(NewVersionError::Conflict { current });
        }

        // Both sides parsed, as the console holds them: the diff is of the same
        // values the console's preview diffs (router-core's `config::diff`).
        let old: RouterConfig = match &newest {
            Some((_, json)) => stored_config(json)?,
            None => RouterConfig::default(),
        };
        let changes = config_changes(&old, p.config)?;
        let version = current + 1;
        let created_at_ms = unix_ms();
        let inserted = sqlx::query(
            "INSERT INTO config_versions \
             (version, created_at_ms, author, message, parent, restored_from, config_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(version)
        .bind(created_at_ms)
        .bind(p.author)
        .bind(p.message)
        .bind(newest.as_ref().map(|(v, _)| *v))
        .bind(p.restored_from)
        .bind(serde_json::to_string(p.config)?)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Another process published this version number first (PostgreSQL with
            // several replicas): the same conflict as a stale base version.
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                return Err(NewVersionError::Conflict { current: version });
            }
            Err(err) => return Err(err.into()),
        }
        audit::insert(
            &mut tx,
            &NewAudit {
                actor: p.author,
                role: p.role,
                action: p.action,
                target: p.target,
                version: Some(version),
                changes: &changes,
                message: p.message,
            },
            created_at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok((
            ConfigVersion {
                version,
                created_at_ms,
                author: p.author.to_owned(),
                message: p.message.to_owned(),
                parent: newest.map(|(v, _)| v),
                restored_from: p.restored_from,
                config: p.config.clone(),
            },
            changes,
        ))
    }
}

/// A configuration as stored, read with today's types. Versions stored by older
/// releases may carry settings that have since moved out of the configuration;
/// they are dropped here, so an upgraded server starts on its stored history:
/// - `endpoints[].http1_when_idle` (now `crossbar serve --upstream-http1-when-idle`).
fn stored_config(json: &str) -> serde_json::Result<RouterConfig> {
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    if let Some(endpoints) = value
        .get_mut("endpoints")
        .and_then(serde_json::Value::as_array_mut)
    {
        for endpoint in endpoints
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            endpoint.remove("http1_when_idle");
        }
    }
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_stored_with_a_setting_that_has_since_moved_out_still_loads() {
        let json = r#"{"endpoints": [{"name": "a", "provider": "openai", "model": "m",
            "region": "eastus", "geography": "us", "http1_when_idle": true}],
            "features": [{"name": "f", "binding": ["a"]}]}"#;
        let config = stored_config(json).unwrap();
        assert_eq!(config.endpoints[0].name, "a");
        // Anything else unknown is still refused.
        let typo = json.replace("http1_when_idle", "http1_when_idel");
        assert!(stored_config(&typo).is_err());
    }
}
