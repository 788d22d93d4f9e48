//! Failed requests as operators look them up: the ledger's rows whose outcome is an
//! error, with each attempt's detail (what the endpoint said, which the client was
//! not told). Read-only; the ledger writer owns the table.

use router_core::admin::{FailedAttempt, FailedRequest};
use router_core::telemetry::record::AttemptRecord;

use super::Store;

#[derive(sqlx::FromRow)]
struct Row {
    request_id: String,
    at_ms: i64,
    team: String,
    feature: String,
    variant: String,
    outcome: String,
    status: i64,
    attempts_json: String,
}

impl Row {
    fn failed(self) -> FailedRequest {
        // A row whose attempts cannot be read still says what failed.
        let attempts: Vec<AttemptRecord> =
            serde_json::from_str(&self.attempts_json).unwrap_or_default();
        FailedRequest {
            request_id: self.request_id,
            at_ms: self.at_ms,
            team: self.team,
            feature: self.feature,
            variant: self.variant,
            outcome: self.outcome,
            status: u16::try_from(self.status).unwrap_or_default(),
            attempts: attempts
                .into_iter()
                .map(|a| FailedAttempt {
                    endpoint: a.endpoint,
                    outcome: a.outcome,
                    upstream_status: a.upstream_status,
                    latency_ms: a.latency_ms,
                    retry: a.retry,
                    detail: a.message.map(|m| router_core::logging::redacted(&m)),
                })
                .collect(),
        }
    }
}

const COLUMNS: &str = "request_id, at_ms, team, feature, variant, outcome, status, attempts_json";

impl Store {
    /// The newest failed requests (outcome neither `ok` nor `cancelled`), at most
    /// `limit`; or only `request_id` (failed or not) when given. Attempt details are
    /// redacted of anything that looks like a credential.
    pub async fn failed_requests(
        &self,
        limit: u32,
        request_id: Option<&str>,
    ) -> anyhow::Result<Vec<FailedRequest>> {
        let rows: Vec<Row> = match request_id {
            Some(id) => {
                let sql = format!("SELECT {COLUMNS} FROM usage_ledger WHERE request_id = $1");
                sqlx::query_as(&sql).bind(id).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM usage_ledger WHERE outcome <> 'ok' AND outcome <> 'cancelled' \
                     ORDER BY at_ms DESC, request_id DESC LIMIT $1"
                );
                sqlx::query_as(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(Row::failed).collect())
    }
}
