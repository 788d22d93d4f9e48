//! Spend: time ranges, the table's derived columns and the chart's stacked series.

use router_core::admin::{SpendPoint, SpendRow};
use rust_decimal::Decimal;

use super::format::decimal_f64;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    LastHour,
    LastDay,
    LastWeek,
    Custom,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::LastHour,
        Preset::LastDay,
        Preset::LastWeek,
        Preset::Custom,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Preset::LastHour => "last hour",
            Preset::LastDay => "24 h",
            Preset::LastWeek => "7 d",
            Preset::Custom => "custom",
        }
    }

    /// The range ending now; `None` for custom.
    pub fn range(self, now_ms: i64) -> Option<(i64, i64)> {
        let span = match self {
            Preset::LastHour => HOUR_MS,
            Preset::LastDay => DAY_MS,
            Preset::LastWeek => 7 * DAY_MS,
            Preset::Custom => return None,
        };
        Some((now_ms - span, now_ms))
    }
}

/// Share of a row's tokens served by provisioned capacity (0–1); `None` without tokens.
pub fn provisioned_share(row: &SpendRow) -> Option<f64> {
    let all = row.provisioned_tokens + row.on_demand_tokens;
    (all > 0).then(|| row.provisioned_tokens as f64 / all as f64)
}

/// The table's footer: every row added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub provisioned_tokens: u64,
    pub on_demand_tokens: u64,
    pub on_demand: Decimal,
    pub provisioned: Decimal,
    pub total: Decimal,
}

pub fn totals(rows: &[SpendRow]) -> Totals {
    rows.iter().fold(Totals::default(), |mut t, r| {
        t.requests += r.requests;
        t.errors += r.errors;
        t.prompt_tokens += r.prompt_tokens;
        t.completion_tokens += r.completion_tokens;
        t.provisioned_tokens += r.provisioned_tokens;
        t.on_demand_tokens += r.on_demand_tokens;
        t.on_demand += r.on_demand;
        t.provisioned += r.provisioned;
        t.total += r.total;
        t
    })
}

/// The chart's data: one value per key per bucket, keys ordered by their total
/// (largest first, so the largest sits at the bottom of the stack).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stacked {
    /// Bucket start times, ascending, every bucket of the range (gaps are zeros).
    pub buckets: Vec<i64>,
    pub keys: Vec<String>,
    /// `values[k][b]`: key `k`'s on-demand spend in bucket `b`.
    pub values: Vec<Vec<f64>>,
}

impl Stacked {
    /// The running sums from the bottom: `tops[k][b]` = sum of keys `0..=k` in bucket `b`.
    pub fn tops(&self) -> Vec<Vec<f64>> {
        let mut acc = vec![0.0; self.buckets.len()];
        self.values
            .iter()
            .map(|row| {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
                acc.clone()
            })
            .collect()
    }

    /// The highest stack (the chart's y range).
    pub fn max(&self) -> f64 {
        self.tops()
            .last()
            .map(|t| t.iter().cloned().fold(0.0, f64::max))
            .unwrap_or(0.0)
    }
}

/// Most keys drawn separately; the rest are summed into "other".
pub const MAX_KEYS: usize = 8;

/// Stacks a report's series. `bucket_ms` fills the gaps between the first and last
/// points with zeros so the areas do not interpolate across empty buckets.
pub fn stack(series: &[SpendPoint], from_ms: i64, to_ms: i64, bucket_ms: i64) -> Stacked {
    let mut buckets: Vec<i64> = series.iter().map(|p| p.at_ms).collect();
    if bucket_ms > 0 && to_ms > from_ms {
        // The server's grid, whatever its origin: anchored on a point when there is one.
        let anchor = series.first().map_or(from_ms, |p| p.at_ms);
        let start = anchor - (anchor - from_ms).div_euclid(bucket_ms) * bucket_ms;
        let n = ((to_ms - start) / bucket_ms).min(2_000);
        buckets.extend(
            (0..=n)
                .map(|i| start + i * bucket_ms)
                .filter(|&t| t < to_ms),
        );
    }
    buckets.sort_unstable();
    buckets.dedup();

    let mut keys: Vec<(String, f64)> = Vec::new();
    for p in series {
        let v = decimal_f64(&p.on_demand);
        match keys.iter_mut().find(|(k, _)| *k == p.key) {
            Some((_, total)) => *total += v,
            None => keys.push((p.key.clone(), v)),
        }
    }
    keys.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut names: Vec<String> = keys.into_iter().map(|(k, _)| k).collect();
    let other = names.len() > MAX_KEYS;
    if other {
        names.truncate(MAX_KEYS - 1);
        names.push("other".to_owned());
    }

    let mut values = vec![vec![0.0; buckets.len()]; names.len()];
    for p in series {
        let Ok(b) = buckets.binary_search(&p.at_ms) else {
            continue;
        };
        let k = names
            .iter()
            .position(|n| *n == p.key)
            .unwrap_or(names.len() - 1);
        values[k][b] += decimal_f64(&p.on_demand);
    }
    Stacked {
        buckets,
        keys: names,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn point(at_ms: i64, key: &str, amount: &str) -> SpendPoint {
        SpendPoint {
            at_ms,
            key: key.into(),
            on_demand: Decimal::from_str(amount).unwrap(),
            requests: 1,
        }
    }

    #[test]
    fn presets_end_now() {
        assert_eq!(
            Preset::LastHour.range(10 * HOUR_MS),
            Some((9 * HOUR_MS, 10 * HOUR_MS))
        );
        assert_eq!(
            Preset::LastWeek.range(8 * DAY_MS),
            Some((DAY_MS, 8 * DAY_MS))
        );
        assert_eq!(Preset::Custom.range(1), None);
    }

    #[test]
    fn series_stack_by_key_with_the_largest_at_the_bottom_and_gaps_as_zero() {
        let series = [
            point(0, "recap", "1"),
            point(0, "summarize", "3"),
            point(2_000, "summarize", "2"),
        ];
        let s = stack(&series, 0, 3_000, 1_000);
        assert_eq!(s.buckets, vec![0, 1_000, 2_000]);
        assert_eq!(s.keys, vec!["summarize", "recap"]);
        assert_eq!(s.values, vec![vec![3.0, 0.0, 2.0], vec![1.0, 0.0, 0.0]]);
        assert_eq!(s.tops(), vec![vec![3.0, 0.0, 2.0], vec![4.0, 0.0, 2.0]]);
        assert_eq!(s.max(), 4.0);
    }

    #[test]
    fn many_keys_fold_into_other() {
        let series: Vec<SpendPoint> = (0..12)
            .map(|i| point(0, &format!("k{i:02}"), &format!("{}", 12 - i)))
            .collect();
        let s = stack(&series, 0, 1, 0);
        assert_eq!(s.keys.len(), MAX_KEYS);
        assert_eq!(s.keys.last().unwrap(), "other");
        // k07..k11 cost 5+4+3+2+1.
        assert_eq!(s.values.last().unwrap(), &vec![15.0]);
        assert_eq!(stack(&[], 0, 0, 0), Stacked::default());
    }

    #[test]
    fn totals_and_provisioned_share() {
        let row = SpendRow {
            key: "recap".into(),
            requests: 10,
            errors: 1,
            prompt_tokens: 100,
            completion_tokens: 50,
            on_demand: Decimal::from_str("0.5").unwrap(),
            provisioned: Decimal::from_str("1.25").unwrap(),
            provisioned_tokens: 120,
            on_demand_tokens: 30,
            total: Decimal::from_str("1.75").unwrap(),
        };
        assert_eq!(provisioned_share(&row), Some(0.8));
        let t = totals(&[row.clone(), row]);
        assert_eq!(t.requests, 20);
        assert_eq!(t.total, Decimal::from_str("3.5").unwrap());
        let empty = SpendRow {
            provisioned_tokens: 0,
            on_demand_tokens: 0,
            ..totals_row()
        };
        assert_eq!(provisioned_share(&empty), None);
    }

    fn totals_row() -> SpendRow {
        SpendRow {
            key: String::new(),
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            on_demand: Decimal::ZERO,
            provisioned: Decimal::ZERO,
            provisioned_tokens: 0,
            on_demand_tokens: 0,
            total: Decimal::ZERO,
        }
    }
}
