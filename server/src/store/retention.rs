//! Retention: rows older than the configuration's `[retention]` are deleted, table by
//! table (the per-request ledger, the per-minute and per-hour rollups, breaker
//! events and feedback), by a background task of the server (`lib.rs`), about once
//! an hour and once at start. `/readyz` shows the policy and what the last run did.
//!
//! The ledger has no index on its time (each index costs every request a B-tree
//! insert), but its primary key is the request id, and Crossbar's ids begin with the
//! time (`req_` and 12 hex digits of ms, see `stack::new_request_id`): old rows are a
//! range of the key, deleted in batches of [`BATCH`] so the ledger writer is never
//! held up long. (A row whose id sorts after Crossbar's format is never in that
//! range: only rows written by something else could be.)

use router_core::config::Retention;
use serde::Serialize;

use super::Store;

/// Ledger rows deleted per statement.
pub const BATCH: i64 = 5_000;
const DAY_MS: i64 = 86_400_000;

/// Rows deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub ledger: u64,
    pub minute_rollups: u64,
    pub hour_rollups: u64,
    pub breaker_events: u64,
    pub feedback: u64,
}

impl Deleted {
    pub fn add(&mut self, other: &Deleted) {
        self.ledger += other.ledger;
        self.minute_rollups += other.minute_rollups;
        self.hour_rollups += other.hour_rollups;
        self.breaker_events += other.breaker_events;
        self.feedback += other.feedback;
    }
}

/// The cutoff for `days` of retention at `now_ms`: rows before it go; `None` keeps
/// everything (`0` days).
fn cutoff(now_ms: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS)))
}

/// The first request id at `ms`: every id of a request before `ms` sorts below it.
fn first_id_at(ms: i64) -> String {
    format!("req_{:012x}", ms.clamp(0, 0xffff_ffff_ffff))
}

impl Store {
    /// Deletes what `policy` no longer keeps at wall-clock `now_ms`.
    pub async fn apply_retention(
        &self,
        policy: &Retention,
        now_ms: i64,
    ) -> anyhow::Result<Deleted> {
        let mut deleted = Deleted::default();
        if let Some(before) = cutoff(now_ms, policy.ledger_days) {
            let below = first_id_at(before);
            loop {
                let n = sqlx::query(
                    "DELETE FROM usage_ledger WHERE request_id IN \
                     (SELECT request_id FROM usage_ledger \
                      WHERE request_id < $1 AND at_ms < $2 LIMIT $3)",
                )
                .bind(&below)
                .bind(before)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
                deleted.ledger += n;
                if n < BATCH as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let delete = async |sql: &str, days: u32| -> anyhow::Result<u64> {
            let Some(before) = cutoff(now_ms, days) else {
                return Ok(0);
            };
            Ok(sqlx::query(sql)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected())
        };
        deleted.minute_rollups = delete(
            "DELETE FROM usage_minute WHERE minute_ms < $1",
            policy.minute_rollup_days,
        )
        .await?;
        deleted.hour_rollups = delete(
            "DELETE FROM usage_hour WHERE hour_ms < $1",
            policy.hour_rollup_days,
        )
        .await?;
        deleted.breaker_events = delete(
            "DELETE FROM breaker_events WHERE at_ms < $1",
            policy.event_days,
        )
        .await?;
        deleted.feedback =
            delete("DELETE FROM feedback WHERE at_ms < $1", policy.event_days).await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_of_an_earlier_request_sorts_below_the_first_id_of_a_later_time() {
        let id = |ms: i64| format!("req_{ms:012x}{}", "f".repeat(20));
        assert!(id(999) < first_id_at(1_000));
        assert!(id(1_000) >= first_id_at(1_000));
        assert!(id(1_700_000_000_000) < first_id_at(1_700_000_000_001));
        assert_eq!(cutoff(10 * DAY_MS, 0), None);
        assert_eq!(cutoff(10 * DAY_MS, 3), Some(7 * DAY_MS));
    }
}
