//! A fixed-size log-linear latency histogram (HDR-like).
//!
//! The breaker asks "what is the p90 TTFT of this endpoint over the last 30 s?" after
//! every response, and the console asks for p50/p90/p99 of every endpoint. Keeping
//! every sample would make that O(n) in memory and time; a moving average cannot
//! answer a percentile at all. A log-linear histogram answers any quantile with a
//! bounded *relative* error, in constant memory, with O(1) recording:
//!
//! - values are microseconds, clamped to `[0, 2^32 − 1]` µs (about 71 minutes: longer
//!   than any request the gateway lets run);
//! - values below 32 µs get one bucket each (exact); above, every power of two is cut
//!   into 16 linear sub-buckets, so a bucket is never wider than 1/16 of its lower
//!   bound;
//! - a quantile is reported as the middle of its bucket, so it is within 1/32
//!   (≈ 3.2 %) of the exact sample at that rank.
//!
//! That is 464 `u32` counters (1.8 KiB) per histogram, allocated once. Recording is a
//! `leading_zeros`, a shift, an add and one counter increment, with no loop and no
//! data-dependent branch (≈ 3 ns). The histogram also keeps the lowest and highest
//! bucket used, so a quantile walks only the occupied range, from the nearer end (a
//! p90 or p99 visits a handful of buckets). Histograms of the same layout merge by
//! adding counters, which is how a sliding window sums its time buckets.
//!
//! Counters are `u32` and wrap on overflow (4 billion samples in one bucket): the
//! router's histograms cover one window bucket of a few seconds, far below that.

use std::fmt;
use std::time::Duration;

/// Low bits kept below the leading one: 2^4 = 16 linear sub-buckets per power of two.
const SUB_BITS: u32 = 4;

/// The largest recordable value, in microseconds (≈ 71.6 min). Larger values are
/// recorded as this.
pub const MAX_MICROS: u64 = u32::MAX as u64;

/// Number of buckets: the index of the largest value, plus one.
const BUCKETS: usize = index(MAX_MICROS) + 1;

/// The bucket of a value in microseconds (`us <= MAX_MICROS`).
///
/// `us | 31` puts the leading one at bit 4 or higher, so values below 32 get
/// `shift = 0` and land in buckets 0..32 one per value; a value with its leading one at
/// bit `b >= 5` keeps its top 5 bits (16..32) and lands at `16 * (b - 4) + top5`.
#[inline(always)]
const fn index(us: u64) -> usize {
    let msb = 63 - (us | 31).leading_zeros();
    let shift = msb - SUB_BITS;
    ((shift as u64) << SUB_BITS) as usize + (us >> shift) as usize
}

/// `(lower bound, width)` of bucket `i`, in microseconds.
const fn bounds(i: usize) -> (u64, u64) {
    let shift = if i < 2 << SUB_BITS {
        0
    } else {
        (i >> SUB_BITS) - 1
    };
    let mantissa = (i - (shift << SUB_BITS)) as u64;
    (mantissa << shift, 1 << shift)
}

/// The value reported for bucket `i`: its middle (exact for one-value buckets).
const fn representative(i: usize) -> u64 {
    let (lower, width) = bounds(i);
    lower + (width >> 1)
}

/// Latency distribution in a fixed array of counters. See the module docs.
#[derive(Clone)]
pub struct LatencyHistogram {
    counts: [u32; BUCKETS],
    count: u64,
    sum_us: u64,
    /// Every non-empty bucket is in `lo..hi` (a superset after `subtract`).
    lo: u16,
    hi: u16,
}

impl PartialEq for LatencyHistogram {
    /// Same samples (the walk bounds are a cache, not part of the value).
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.sum_us == other.sum_us && self.counts == other.counts
    }
}

impl Eq for LatencyHistogram {}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub const fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            count: 0,
            sum_us: 0,
            lo: BUCKETS as u16,
            hi: 0,
        }
    }

    /// Records one value. O(1), branch-free apart from the clamp.
    #[inline]
    pub fn record(&mut self, value: Duration) {
        // u64 arithmetic instead of `as_micros` (u128); saturates for absurd values.
        let us = value
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(value.subsec_micros()));
        self.record_micros(us);
    }

    /// Records one value given in microseconds.
    #[inline]
    pub fn record_micros(&mut self, us: u64) {
        let us = us.min(MAX_MICROS);
        let i = index(us);
        self.counts[i] = self.counts[i].wrapping_add(1);
        self.lo = self.lo.min(i as u16);
        self.hi = self.hi.max(i as u16 + 1);
        self.count = self.count.wrapping_add(1);
        self.sum_us = self.sum_us.wrapping_add(us);
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.wrapping_add(*theirs);
        }
        self.count = self.count.wrapping_add(other.count);
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
        self.lo = self.lo.min(other.lo);
        self.hi = self.hi.max(other.hi);
    }

    /// Removes the samples of `other`, which must have been merged into this one
    /// before (a sliding window uses it to drop an expired bucket from its total).
    pub fn subtract(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.wrapping_sub(*theirs);
        }
        self.count = self.count.wrapping_sub(other.count);
        self.sum_us = self.sum_us.wrapping_sub(other.sum_us);
    }

    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Number of recorded samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value at quantile `q` (0.0 = min, 0.5 = median, 1.0 = max), within ≈ 3.2 %
    /// of the exact sample of rank `ceil(q × count)`; `None` when empty. `q` is
    /// clamped to [0, 1].
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        // NaN casts to 0, i.e. rank 1: the minimum.
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let (lo, hi) = (usize::from(self.lo), usize::from(self.hi).min(BUCKETS));
        let at = |i: usize| Some(Duration::from_micros(representative(i)));
        let mut seen = 0u64;
        if rank <= self.count / 2 {
            // The smallest bucket with at least `rank` samples at or below it.
            for i in lo..hi {
                seen += u64::from(self.counts[i]);
                if seen >= rank {
                    return at(i);
                }
            }
        } else {
            // The same bucket, found from the top: the largest one with at least
            // `count - rank + 1` samples at or above it.
            let from_top = self.count - rank + 1;
            for i in (lo..hi).rev() {
                seen += u64::from(self.counts[i]);
                if seen >= from_top {
                    return at(i);
                }
            }
        }
        // Only reachable if a bucket counter wrapped.
        at(hi.saturating_sub(1))
    }

    /// The exact mean of the (clamped) recorded values; `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_us / self.count))
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("mean", &self.mean())
            .field("p50", &self.quantile(0.5))
            .field("p90", &self.quantile(0.9))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (Knuth's MMIX LCG), no `rand` needed.
    struct Lcg(u64);

    impl Lcg {
        fn next_f64(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn the_layout_has_464_buckets_that_tile_the_range_without_gaps() {
        assert_eq!(BUCKETS, 464);
        let mut expected_lower = 0;
        for i in 0..BUCKETS {
            let (lower, width) = bounds(i);
            assert_eq!(lower, expected_lower, "bucket {i}");
            assert_eq!(index(lower), i);
            assert_eq!(index(lower + width - 1), i);
            assert!(i < 32 || width * 16 <= lower, "bucket {i} is too wide");
            expected_lower = lower + width;
        }
        assert_eq!(expected_lower, MAX_MICROS + 1);
    }

    #[test]
    fn small_values_are_exact_and_huge_ones_are_clamped() {
        let mut h = LatencyHistogram::new();
        for us in [0, 1, 7, 31] {
            h.clear();
            h.record_micros(us);
            assert_eq!(h.quantile(0.5), Some(Duration::from_micros(us)));
        }
        h.clear();
        h.record(Duration::from_secs(10 * 3600));
        let top = h.quantile(1.0).unwrap();
        assert!(top <= Duration::from_micros(MAX_MICROS) && top > Duration::from_secs(4000));
        assert_eq!(h.mean(), Some(Duration::from_micros(MAX_MICROS)));
    }

    #[test]
    fn an_empty_histogram_has_no_quantile_and_no_mean() {
        let h = LatencyHistogram::default();
        assert_eq!((h.count(), h.quantile(0.5), h.mean()), (0, None, None));
        assert!(h.is_empty());
    }

    #[test]
    fn quantiles_are_within_six_percent_of_exact_over_random_data() {
        let mut rng = Lcg(42);
        for scale_us in [1_000u64, 50_000, 2_000_000, 600_000_000] {
            let mut h = LatencyHistogram::new();
            let mut values = Vec::new();
            for _ in 0..20_000 {
                // Log-uniform over three decades below `scale_us`, plus a heavy tail.
                let r = rng.next_f64();
                let v = ((scale_us as f64) * 10f64.powf(-3.0 * r) * (1.0 + 9.0 * r.powi(20)))
                    .max(1.0) as u64;
                values.push(v);
                h.record(Duration::from_micros(v));
            }
            values.sort_unstable();
            for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let exact = exact_quantile(&values, q) as f64;
                let got = h.quantile(q).unwrap().as_micros() as f64;
                let error = (got - exact).abs() / exact;
                assert!(error <= 0.06, "scale {scale_us} q {q}: {got} vs {exact}");
                assert!(error <= 1.0 / 31.0, "the layout promises ≈ 3.2 %: {error}");
            }
            let mean = values.iter().sum::<u64>() / values.len() as u64;
            assert_eq!(h.mean(), Some(Duration::from_micros(mean)));
            assert_eq!(h.count(), values.len() as u64);
        }
    }

    #[test]
    fn merging_two_halves_equals_recording_everything_and_subtract_undoes_it() {
        let mut rng = Lcg(7);
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for i in 0..5_000 {
            let d = Duration::from_micros((rng.next_f64() * 3e6) as u64);
            all.record(d);
            let half = if i % 3 == 0 { &mut a } else { &mut b };
            half.record(d);
        }
        let a_alone = a.clone();
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.quantile(0.9), all.quantile(0.9));
        a.subtract(&b);
        assert_eq!(a, a_alone);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.quantile(q), a_alone.quantile(q), "q {q} after subtract");
        }
    }

    #[test]
    fn out_of_range_quantiles_are_clamped() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.quantile(-1.0), h.quantile(0.0));
        assert_eq!(h.quantile(2.0), h.quantile(1.0));
        assert_eq!(h.quantile(f64::NAN), h.quantile(0.0));
        let p50 = h.quantile(0.5).unwrap().as_secs_f64();
        assert!((p50 - 0.050).abs() / 0.050 < 0.04, "{p50}");
    }
}
