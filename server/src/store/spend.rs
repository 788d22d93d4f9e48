//! Spend reports, read from the per-minute rollups (never the ledger), so a report
//! over months of traffic reads thousands of rows, not millions.
//!
//! - On demand: the sum of the requests' marginal costs, exactly (nano-units).
//! - Provisioned: each provisioned endpoint's hours in the range × its hourly price,
//!   split among the groups in proportion to their tokens on that endpoint
//!   ([`split_by_tokens`], to the nano-unit, the parts adding up exactly); what nobody
//!   used is `unattributed_provisioned`.
//!
//! The rollups are per minute and per hour: a range selects the minutes that *start*
//! in `[from_ms, to_ms)` (through the hourly rollups for the whole hours inside it),
//! so ranges on minute boundaries are exact (the console's are).
//! The time series has at most [`MAX_POINTS`] buckets of 1 minute, 5 minutes, 1 hour,
//! 1 day or whole days, aligned on multiples of the bucket since the epoch (UTC).

use std::collections::{BTreeMap, HashMap};

use router_core::admin::{SpendGroup, SpendPoint, SpendReport, SpendRow};
use router_core::cost::split_by_tokens;
use rust_decimal::Decimal;

use super::{Store, from_nanos};

/// Most time buckets in a report's series.
pub const MAX_POINTS: i64 = 120;
const BUCKETS_MS: [i64; 4] = [60_000, 300_000, 3_600_000, 86_400_000];
const HOUR_MS: i64 = 3_600_000;
/// Money in reports is exact to the nano-unit, like the ledger.
const DP: u32 = 9;
/// The key of traffic that reached no endpoint, grouped by endpoint or cloud.
pub const NO_ENDPOINT: &str = "(none)";

fn column(group: SpendGroup) -> &'static str {
    match group {
        SpendGroup::Feature => "feature",
        SpendGroup::Team => "team",
        SpendGroup::Endpoint => "endpoint",
        SpendGroup::Cloud => "provider",
        SpendGroup::Variant => "variant",
    }
}

fn display_key(key: String) -> String {
    if key.is_empty() {
        NO_ENDPOINT.to_owned()
    } else {
        key
    }
}

/// The series' bucket for a range: the smallest standard one giving at most
/// [`MAX_POINTS`] aligned buckets, else whole days.
pub fn bucket_ms(from_ms: i64, to_ms: i64) -> i64 {
    let span = to_ms.saturating_sub(from_ms).max(1);
    // An unaligned range touches one bucket more than span / bucket.
    let points = |b: i64| ceil_div(span, b) + 1;
    BUCKETS_MS
        .into_iter()
        .find(|b| points(*b) <= MAX_POINTS)
        .unwrap_or_else(|| {
            let day = BUCKETS_MS[3];
            day * ceil_div(span, day * (MAX_POINTS - 1))
        })
}

/// `a / b` rounded up, for positive numbers (without overflowing near `i64::MAX`).
pub(super) fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[derive(Default)]
struct Acc {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    on_demand_nanos: i64,
    provisioned_tokens: i64,
    on_demand_tokens: i64,
    provisioned: Decimal,
}

/// One scanned cell: a group's use of one endpoint, in one capacity mode, in one
/// series bucket.
struct Cell {
    bucket: i64,
    key: String,
    endpoint: String,
    provisioned: bool,
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
}

/// Floors `ms` to a multiple of `period`.
fn floor_to(ms: i64, period: i64) -> i64 {
    ms.div_euclid(period) * period
}

impl Store {
    /// The cells of one rollup table over `[from_ms, to_ms)` of its time column.
    async fn scan(
        &self,
        table: &str,
        time: &str,
        (from_ms, to_ms): (i64, i64),
        bucket: i64,
        col: &str,
    ) -> anyhow::Result<Vec<Cell>> {
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        // `bucket` is a computed integer, not input: inlined, it keeps one prepared
        // statement per bucket size (and integer division stays integer).
        let sql = format!(
            "SELECT ({time} / {bucket}) * {bucket} AS bucket, {col} AS k, endpoint, provisioned, \
             CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT), \
             CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT), \
             CAST(SUM(cost_nanos) AS BIGINT) \
             FROM {table} WHERE {time} >= $1 AND {time} < $2 \
             GROUP BY bucket, k, endpoint, provisioned"
        );
        type Row = (i64, String, String, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    bucket,
                    key,
                    endpoint,
                    provisioned,
                    requests,
                    errors,
                    prompt,
                    completion,
                    nanos,
                )| Cell {
                    bucket,
                    key: display_key(key),
                    endpoint,
                    provisioned: provisioned != 0,
                    requests,
                    errors,
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    cost_nanos: nanos,
                },
            )
            .collect())
    }

    /// Spend over `[from_ms, to_ms)` grouped by `group`; `endpoints_hourly` names the
    /// provisioned endpoints and their hourly prices. The admin API bounds the range
    /// first (`admin/spend.rs`: at most two years); any range is computed without
    /// overflowing, but the work grows with it.
    pub async fn spend(
        &self,
        from_ms: i64,
        to_ms: i64,
        group: SpendGroup,
        endpoints_hourly: &[(String, Decimal)],
    ) -> anyhow::Result<SpendReport> {
        let col = column(group);
        let bucket = bucket_ms(from_ms, to_ms);
        // Hour buckets and longer (ranges over ~10 hours) read the hourly rollups for
        // the whole hours of the range and the minutes at its edges; shorter ranges
        // read minutes. Either way the minutes covered are those starting in range.
        let first_hour = floor_to(from_ms.saturating_add(HOUR_MS - 1), HOUR_MS);
        let last_hour = floor_to(to_ms, HOUR_MS);
        let cells = if bucket % HOUR_MS == 0 && first_hour < last_hour {
            let mut cells = self
                .scan(
                    "usage_hour",
                    "hour_ms",
                    (first_hour, last_hour),
                    bucket,
                    col,
                )
                .await?;
            for edge in [(from_ms, first_hour), (last_hour, to_ms)] {
                cells.extend(
                    self.scan("usage_minute", "minute_ms", edge, bucket, col)
                        .await?,
                );
            }
            cells
        } else {
            self.scan("usage_minute", "minute_ms", (from_ms, to_ms), bucket, col)
                .await?
        };

        let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
        // Tokens per group on each endpoint, for the provisioned split.
        let mut by_endpoint: HashMap<&str, BTreeMap<&str, u64>> = HashMap::new();
        let mut series: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
        for c in &cells {
            let tokens = c.prompt_tokens.saturating_add(c.completion_tokens);
            let a = groups.entry(c.key.clone()).or_default();
            a.requests += c.requests;
            a.errors += c.errors;
            a.prompt_tokens += c.prompt_tokens;
            a.completion_tokens += c.completion_tokens;
            a.on_demand_nanos += c.cost_nanos;
            if c.provisioned {
                a.provisioned_tokens += tokens;
            } else {
                a.on_demand_tokens += tokens;
            }
            *by_endpoint
                .entry(&c.endpoint)
                .or_default()
                .entry(&c.key)
                .or_default() += count(tokens);
            let point = series.entry((c.bucket, &c.key)).or_default();
            point.0 += c.cost_nanos;
            point.1 += c.requests;
        }

        let range_ms = Decimal::from(to_ms.saturating_sub(from_ms).max(0));
        let mut unattributed = Decimal::ZERO;
        let mut seen = Vec::new();
        for (endpoint, hourly) in endpoints_hourly {
            if seen.contains(&endpoint) {
                continue;
            }
            seen.push(endpoint);
            let amount = range_ms * *hourly / Decimal::from(HOUR_MS);
            let usage: Vec<(&str, u64)> = by_endpoint
                .get(endpoint.as_str())
                .map(|m| m.iter().map(|(k, t)| (*k, *t)).collect())
                .unwrap_or_default();
            let (parts, idle) = split_by_tokens(amount, &usage, DP);
            for (key, part) in parts {
                groups.entry(key.to_owned()).or_default().provisioned += part;
            }
            unattributed += idle.unwrap_or_default();
        }

        let mut rows: Vec<SpendRow> = groups
            .into_iter()
            .map(|(key, a)| {
                let on_demand = from_nanos(a.on_demand_nanos);
                SpendRow {
                    key,
                    requests: count(a.requests),
                    errors: count(a.errors),
                    prompt_tokens: count(a.prompt_tokens),
                    completion_tokens: count(a.completion_tokens),
                    on_demand,
                    provisioned: a.provisioned.normalize(),
                    provisioned_tokens: count(a.provisioned_tokens),
                    on_demand_tokens: count(a.on_demand_tokens),
                    total: (on_demand + a.provisioned).normalize(),
                }
            })
            .collect();
        rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
        let total = rows.iter().map(|r| r.total).sum::<Decimal>() + unattributed;
        let series = series
            .into_iter()
            .map(|((at_ms, key), (nanos, requests))| SpendPoint {
                at_ms,
                key: key.to_owned(),
                on_demand: from_nanos(nanos),
                requests: count(requests),
            })
            .collect();

        Ok(SpendReport {
            from_ms,
            to_ms,
            group_by: group,
            rows,
            unattributed_provisioned: unattributed.normalize(),
            total: total.normalize(),
            series,
            bucket_ms: bucket,
        })
    }

    /// The sum of the ledger's per-request costs of `feature` over `[from_ms, to_ms)`.
    pub async fn ledger_cost(
        &self,
        feature: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Decimal> {
        let nanos: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM usage_ledger \
             WHERE feature = $1 AND at_ms >= $2 AND at_ms < $3",
        )
        .bind(feature)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(from_nanos(nanos))
    }
}
