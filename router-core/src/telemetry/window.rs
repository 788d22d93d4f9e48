//! Rolling per-endpoint health signals: what happened in the last 30 seconds.
//!
//! The breaker and the console need the *recent* behaviour of an endpoint, not its
//! lifetime average: an endpoint that was healthy for a day and is failing now must
//! look like it is failing now. A [`SlidingWindow`] is a ring of N time buckets (by
//! default 10 × 3 s); each bucket is a [`Tally`] of counters and two latency
//! histograms. Time is the router clock's `now` (a monotonic [`Duration`] since its
//! epoch), always passed in by the caller, never read here, so tests drive it by hand.
//!
//! Buckets rotate lazily on access: when `now` has moved into a later bucket, the
//! buckets it skipped over are cleared (a gap longer than the window clears
//! everything). The window also keeps a running total of its live buckets (adding
//! each sample to its bucket and to the total; subtracting a bucket when it expires),
//! so recording stays O(1) and reading the current totals costs nothing extra.
//!
//! ## What counts as what
//!
//! Every attempt's result is first reduced to an [`Outcome`] by [`classify`]: the
//! point is to judge the *endpoint*, not the request.
//!
//! - a client-fault error (bad request, context too long, content filtered...) is
//!   a correct answer from a healthy endpoint: it counts as a request, never as a
//!   failure;
//! - a throttle (rate limited, overloaded) says "too busy", which is its own signal
//!   (the throttle rate), not a failure;
//! - `capacity_exhausted` from a *provisioned* endpoint means its reserved capacity
//!   is full and the request spills to on-demand: that is capacity planning working
//!   as intended, so it does not count against the endpoint at all (not even as a
//!   request); from an on-demand endpoint it is a throttle;
//! - our own bugs (`internal`), gateway-side refusals and requests the client
//!   cancelled are [`Outcome::Neutral`]: the endpoint did nothing wrong;
//! - everything else from upstream (5xx, unavailable, timeout, interrupted stream,
//!   rejected credentials) is a failure.
//!
//! Latency and TTFT percentiles are taken over *successful* attempts only: a fast
//! error must not make a broken endpoint look fast, and a slow failure (a timeout) is
//! already counted as a failure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admin::WindowStats;
use crate::api::{ErrorKind, Fault};
use crate::telemetry::histogram::LatencyHistogram;

/// What one attempt says about the health of the endpoint that served it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The endpoint correctly refused a bad request (client fault): counts as a
    /// request, not as a failure.
    ClientError(ErrorKind),
    /// Rate limited or overloaded: counts against the throttle rate only.
    Throttled(ErrorKind),
    /// The endpoint failed: counts against the error rate and the failure streak.
    Failure(ErrorKind),
    /// A provisioned endpoint was at its capacity ceiling and the request spilled to
    /// on-demand: not a health signal at all (`capacity_exhausted`).
    SpilledAway,
    /// Says nothing about the endpoint (a Crossbar bug, a gateway-side refusal, a
    /// client that went away): counts as a request, never against the endpoint, and
    /// has no error class in `errors_by_kind`.
    Neutral,
}

impl Outcome {
    /// The error class the endpoint answered with (none for success and neutral).
    pub fn kind(self) -> Option<ErrorKind> {
        match self {
            Self::Success | Self::Neutral => None,
            Self::SpilledAway => Some(ErrorKind::CapacityExhausted),
            Self::ClientError(k) | Self::Throttled(k) | Self::Failure(k) => Some(k),
        }
    }
}

/// How an attempt's error counts for the endpoint's health. `provisioned`: whether the
/// endpoint that answered runs on provisioned capacity. See the module docs for why.
pub fn classify(kind: ErrorKind, provisioned: bool) -> Outcome {
    match kind.fault() {
        Fault::Client => Outcome::ClientError(kind),
        Fault::Gateway => Outcome::Neutral,
        Fault::Upstream => match kind {
            ErrorKind::CapacityExhausted if provisioned => Outcome::SpilledAway,
            ErrorKind::CapacityExhausted | ErrorKind::RateLimited | ErrorKind::Overloaded => {
                Outcome::Throttled(kind)
            }
            _ => Outcome::Failure(kind),
        },
    }
}

/// One finished attempt at one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub outcome: Outcome,
    /// From sending the request to the end of the response.
    pub latency: Duration,
    /// Time to the first token, for streams.
    pub ttft: Option<Duration>,
    /// Tokens consumed (prompt + completion).
    pub tokens: u64,
    /// This endpoint served the request as the on-demand stand-in for a full
    /// provisioned sibling (a spillover), as in `RequestRecord::spilled`.
    pub spilled: bool,
}

impl Sample {
    pub fn new(outcome: Outcome, latency: Duration) -> Self {
        Self {
            outcome,
            latency,
            ttft: None,
            tokens: 0,
            spilled: false,
        }
    }

    pub fn success(latency: Duration) -> Self {
        Self::new(Outcome::Success, latency)
    }

    pub fn with_ttft(mut self, ttft: Duration) -> Self {
        self.ttft = Some(ttft);
        self
    }

    pub fn with_tokens(mut self, tokens: u64) -> Self {
        self.tokens = tokens;
        self
    }

    pub fn with_spilled(mut self, spilled: bool) -> Self {
        self.spilled = spilled;
        self
    }
}

const KINDS: usize = ErrorKind::ALL.len();

/// Counters and latency histograms of a set of samples: one bucket of a
/// [`SlidingWindow`], the window's total, or a breaker's ramp stage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tally {
    requests: u64,
    successes: u64,
    failures: u64,
    throttles: u64,
    client_errors: u64,
    neutral: u64,
    spilled_away: u64,
    spilled: u64,
    tokens: u64,
    feedback_up: u64,
    feedback_down: u64,
    errors: [u64; KINDS],
    latency: LatencyHistogram,
    ttft: LatencyHistogram,
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, sample: &Sample) {
        match sample.outcome {
            Outcome::Success => {
                self.successes += 1;
                self.latency.record(sample.latency);
                if let Some(ttft) = sample.ttft {
                    self.ttft.record(ttft);
                }
            }
            Outcome::ClientError(_) => self.client_errors += 1,
            Outcome::Throttled(_) => self.throttles += 1,
            Outcome::Failure(_) => self.failures += 1,
            Outcome::Neutral => self.neutral += 1,
            Outcome::SpilledAway => self.spilled_away += 1,
        }
        if sample.outcome != Outcome::SpilledAway {
            self.requests += 1;
        }
        if let Some(kind) = sample.outcome.kind() {
            // `ErrorKind` is fieldless and `ALL` lists it in declaration order (tested).
            self.errors[kind as usize] += 1;
        }
        self.tokens += sample.tokens;
        self.spilled += u64::from(sample.spilled);
    }

    /// A user's thumbs up (`positive`) or down on an answer this endpoint gave.
    pub fn record_feedback(&mut self, positive: bool) {
        if positive {
            self.feedback_up += 1;
        } else {
            self.feedback_down += 1;
        }
    }

    pub fn merge(&mut self, other: &Self) {
        self.apply(other, |a, b| a.wrapping_add(b));
        self.latency.merge(&other.latency);
        self.ttft.merge(&other.ttft);
    }

    /// Removes `other`, which must have been merged into this tally before.
    pub fn subtract(&mut self, other: &Self) {
        self.apply(other, |a, b| a.wrapping_sub(b));
        self.latency.subtract(&other.latency);
        self.ttft.subtract(&other.ttft);
    }

    fn apply(&mut self, other: &Self, op: impl Fn(u64, u64) -> u64) {
        let pairs = [
            (&mut self.requests, other.requests),
            (&mut self.successes, other.successes),
            (&mut self.failures, other.failures),
            (&mut self.throttles, other.throttles),
            (&mut self.client_errors, other.client_errors),
            (&mut self.neutral, other.neutral),
            (&mut self.spilled_away, other.spilled_away),
            (&mut self.spilled, other.spilled),
            (&mut self.tokens, other.tokens),
            (&mut self.feedback_up, other.feedback_up),
            (&mut self.feedback_down, other.feedback_down),
        ];
        for (mine, theirs) in pairs {
            *mine = op(*mine, theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine = op(*mine, theirs);
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Requests the endpoint answered or failed (everything but spilled-away ones).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn successes(&self) -> u64 {
        self.successes
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// Requests that say something about the endpoint's health: all requests but
    /// client errors and neutral ones. The denominator of the rates, and the volume
    /// the breaker's minimums apply to.
    pub fn judged(&self) -> u64 {
        self.requests - self.client_errors - self.neutral
    }

    /// failures / judged requests; 0 when nothing was judged.
    pub fn error_rate(&self) -> f64 {
        ratio(self.failures, self.judged())
    }

    /// throttles / judged requests; 0 when nothing was judged.
    pub fn throttle_rate(&self) -> f64 {
        ratio(self.throttles, self.judged())
    }

    pub fn feedback_votes(&self) -> u64 {
        self.feedback_up + self.feedback_down
    }

    /// Share of positive votes; `None` without votes.
    pub fn feedback_score(&self) -> Option<f64> {
        let votes = self.feedback_votes();
        (votes > 0).then(|| self.feedback_up as f64 / votes as f64)
    }

    /// Latency of successful requests.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Time to first token of successful streamed requests.
    pub fn ttft(&self) -> &LatencyHistogram {
        &self.ttft
    }

    /// The serialisable summary, labelled as covering `window`.
    pub fn stats(&self, window: Duration) -> WindowStats {
        let ms = |h: &LatencyHistogram, q: f64| h.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        WindowStats {
            window_s: window.as_secs_f64(),
            requests: self.requests,
            successes: self.successes,
            failures: self.failures,
            throttles: self.throttles,
            client_errors: self.client_errors,
            neutral: self.neutral,
            spilled_away: self.spilled_away,
            spilled: self.spilled,
            errors_by_kind: ErrorKind::ALL
                .iter()
                .zip(self.errors)
                .filter(|&(_, n)| n > 0)
                .map(|(k, n)| (k.as_str().to_owned(), n))
                .collect(),
            ttft_p50_ms: ms(&self.ttft, 0.5),
            ttft_p90_ms: ms(&self.ttft, 0.9),
            ttft_p99_ms: ms(&self.ttft, 0.99),
            latency_p50_ms: ms(&self.latency, 0.5),
            latency_p90_ms: ms(&self.latency, 0.9),
            latency_p99_ms: ms(&self.latency, 0.99),
            latency_mean_ms: self.latency.mean().map(|d| d.as_secs_f64() * 1e3),
            tokens: self.tokens,
            feedback_up: self.feedback_up,
            feedback_down: self.feedback_down,
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A ring of time buckets over the last `window`. See the module docs.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    window: Duration,
    bucket_nanos: u64,
    buckets: Box<[Tally]>,
    /// The bucket `now` falls in, as of the last rotation.
    head: usize,
    /// `now / bucket width` of the head bucket.
    head_epoch: u64,
    /// Sum of every bucket in the ring (expired ones are cleared on rotation).
    total: Box<Tally>,
}

impl Default for SlidingWindow {
    /// 30 s as 10 buckets of 3 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(30), 10)
    }
}

impl SlidingWindow {
    /// A window of `window` cut into `buckets` buckets (at least one). Samples leave
    /// the window between `window − window/buckets` and `window` after they were
    /// recorded.
    pub fn new(window: Duration, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        let bucket_nanos = (window.as_nanos() / buckets as u128).clamp(1, u64::MAX as u128) as u64;
        Self {
            window,
            bucket_nanos,
            buckets: vec![Tally::default(); buckets].into_boxed_slice(),
            head: 0,
            head_epoch: 0,
            total: Box::default(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn record(&mut self, now: Duration, sample: &Sample) {
        self.rotate(now);
        self.buckets[self.head].record(sample);
        self.total.record(sample);
    }

    pub fn record_feedback(&mut self, now: Duration, positive: bool) {
        self.rotate(now);
        self.buckets[self.head].record_feedback(positive);
        self.total.record_feedback(positive);
    }

    /// The totals of the window as of `now` (expiring old buckets first). O(1) apart
    /// from the expiry itself.
    pub fn current(&mut self, now: Duration) -> &Tally {
        self.rotate(now);
        &self.total
    }

    /// The summary as of `now`, without mutating (old buckets are left out, not
    /// cleared).
    pub fn stats(&self, now: Duration) -> WindowStats {
        let n = self.epoch(now);
        let len = self.buckets.len() as u64;
        if n <= self.head_epoch {
            return self.total.stats(self.window);
        }
        let gap = n - self.head_epoch;
        let mut live = Tally::default();
        if gap < len {
            // Buckets of age (in buckets, behind the head) below `len - gap` are still live.
            for age in 0..(len - gap) as usize {
                let i = (self.head + self.buckets.len() - age) % self.buckets.len();
                live.merge(&self.buckets[i]);
            }
        }
        live.stats(self.window)
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.buckets.iter_mut().for_each(Tally::clear);
        self.total.clear();
    }

    fn epoch(&self, now: Duration) -> u64 {
        (now.as_nanos() / u128::from(self.bucket_nanos)) as u64
    }

    fn rotate(&mut self, now: Duration) {
        let n = self.epoch(now);
        // Same bucket, or a clock that stepped back: keep recording into the head.
        if n <= self.head_epoch {
            return;
        }
        let len = self.buckets.len();
        if n - self.head_epoch >= len as u64 {
            self.clear();
            self.head = 0;
        } else {
            for _ in 0..n - self.head_epoch {
                self.head = (self.head + 1) % len;
                let expired = &mut self.buckets[self.head];
                if expired.requests > 0 || expired.spilled_away > 0 || expired.feedback_votes() > 0
                {
                    self.total.subtract(expired);
                    expired.clear();
                }
            }
        }
        self.head_epoch = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn failure(kind: ErrorKind) -> Sample {
        Sample::new(Outcome::Failure(kind), 200 * MS)
    }

    #[test]
    fn error_kinds_index_their_own_counter() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(
                *kind as usize, i,
                "ErrorKind::ALL must follow declaration order"
            );
        }
    }

    #[test]
    fn classify_judges_the_endpoint_not_the_request() {
        use ErrorKind::*;
        let table = [
            (RateLimited, false, Outcome::Throttled(RateLimited)),
            (RateLimited, true, Outcome::Throttled(RateLimited)),
            (Overloaded, false, Outcome::Throttled(Overloaded)),
            (CapacityExhausted, true, Outcome::SpilledAway),
            (
                CapacityExhausted,
                false,
                Outcome::Throttled(CapacityExhausted),
            ),
            (Unavailable, true, Outcome::Failure(Unavailable)),
            (UpstreamError, false, Outcome::Failure(UpstreamError)),
            (Timeout, false, Outcome::Failure(Timeout)),
            (
                StreamInterrupted,
                false,
                Outcome::Failure(StreamInterrupted),
            ),
            (UpstreamAuth, false, Outcome::Failure(UpstreamAuth)),
            (InvalidRequest, false, Outcome::ClientError(InvalidRequest)),
            (
                ContextLengthExceeded,
                true,
                Outcome::ClientError(ContextLengthExceeded),
            ),
            (
                ContentFiltered,
                false,
                Outcome::ClientError(ContentFiltered),
            ),
            (
                UnsupportedParameter,
                false,
                Outcome::ClientError(UnsupportedParameter),
            ),
            (NotFound, false, Outcome::ClientError(NotFound)),
            (Internal, false, Outcome::Neutral),
        ];
        for (kind, provisioned, expected) in table {
            assert_eq!(
                classify(kind, provisioned),
                expected,
                "{kind} provisioned={provisioned}"
            );
        }
        // Every kind is classified consistently with who is at fault.
        for kind in ErrorKind::ALL {
            let outcome = classify(kind, false);
            match kind.fault() {
                Fault::Client => assert_eq!(outcome, Outcome::ClientError(kind)),
                Fault::Gateway => assert_eq!(outcome, Outcome::Neutral),
                Fault::Upstream => assert!(matches!(
                    outcome,
                    Outcome::Failure(_) | Outcome::Throttled(_)
                )),
            }
        }
    }

    #[test]
    fn stats_count_each_outcome_in_its_place() {
        let mut w = SlidingWindow::default();
        let now = 100 * S;
        w.record(
            now,
            &Sample::success(300 * MS).with_ttft(80 * MS).with_tokens(50),
        );
        w.record(
            now,
            &Sample::success(500 * MS).with_tokens(70).with_spilled(true),
        );
        w.record(now, &failure(ErrorKind::Timeout));
        w.record(
            now,
            &Sample::new(Outcome::Throttled(ErrorKind::RateLimited), MS),
        );
        w.record(
            now,
            &Sample::new(Outcome::ClientError(ErrorKind::InvalidRequest), MS),
        );
        w.record(now, &Sample::new(Outcome::Neutral, MS));
        w.record(now, &Sample::new(Outcome::SpilledAway, MS));
        w.record_feedback(now, true);
        w.record_feedback(now, false);
        w.record_feedback(now, true);
        let s = w.stats(now);
        assert_eq!(
            (
                s.requests,
                s.successes,
                s.failures,
                s.throttles,
                s.client_errors,
                s.neutral
            ),
            (6, 2, 1, 1, 1, 1)
        );
        assert_eq!((s.spilled_away, s.spilled, s.tokens), (1, 1, 120));
        assert_eq!(s.judged(), 4);
        assert_eq!(s.error_rate(), 0.25);
        assert_eq!(s.throttle_rate(), 0.25);
        assert_eq!(s.feedback_score(), Some(2.0 / 3.0));
        assert_eq!(s.errors_by_kind.len(), 4);
        assert_eq!(s.errors_by_kind["capacity_exhausted"], 1);
        assert_eq!(s.errors_by_kind["timeout"], 1);
        // Percentiles cover successes only: the 1 ms errors do not make it look fast.
        let p50 = s.latency_p50_ms.unwrap();
        assert!((p50 - 300.0).abs() < 10.0, "{p50}");
        assert!((s.ttft_p90_ms.unwrap() - 80.0).abs() < 3.0);
        assert_eq!(s.window_s, 30.0);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<WindowStats>(&json).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<WindowStats>("{}").unwrap(),
            WindowStats::default()
        );
    }

    #[test]
    fn old_buckets_expire_as_time_advances() {
        let mut w = SlidingWindow::new(30 * S, 10);
        w.record(S, &failure(ErrorKind::UpstreamError)); // bucket [0 s, 3 s)
        w.record(10 * S, &Sample::success(MS)); // bucket [9 s, 12 s)
        assert_eq!(w.stats(29 * S).requests, 2);
        // At 30 s the first bucket has left the window; the second is still in.
        assert_eq!(w.stats(30 * S).requests, 1);
        assert_eq!(w.stats(30 * S).failures, 0);
        assert_eq!(w.current(30 * S).requests(), 1);
        // At 39 s the second one has left too.
        assert_eq!(w.stats(39 * S).requests, 0);
        assert_eq!(w.current(39 * S).requests(), 0);
        assert_eq!(
            *w.current(39 * S),
            Tally::default(),
            "the total returns to zero"
        );
    }

    #[test]
    fn a_gap_longer_than_the_window_clears_everything() {
        let mut w = SlidingWindow::default();
        for t in 0..30 {
            w.record(t * S, &Sample::success(MS));
            w.record_feedback(t * S, false);
        }
        assert_eq!(w.stats(29 * S).requests, 30);
        assert_eq!(w.stats(3600 * S), Tally::default().stats(30 * S));
        w.record(3600 * S, &Sample::success(MS));
        let s = w.stats(3600 * S);
        assert_eq!((s.requests, s.feedback_down), (1, 0));
    }

    #[test]
    fn the_running_total_matches_the_sum_of_live_buckets() {
        let mut w = SlidingWindow::new(10 * S, 5);
        let mut t = Duration::ZERO;
        for i in 0..500u64 {
            t += Duration::from_millis(37 * (i % 7));
            let sample = if i % 4 == 0 {
                failure(ErrorKind::Timeout)
            } else {
                Sample::success(Duration::from_millis(10 + i % 90))
            };
            w.record(t, &sample);
            if i % 10 == 0 {
                // `stats` one bucket later merges the live buckets; `current` at the
                // same time rotates and reads the running total: they must agree.
                let later = t + 2 * S;
                let merged = w.stats(later);
                let mut copy = w.clone();
                assert_eq!(copy.current(later).stats(10 * S), merged, "at {t:?}");
            }
        }
    }

    #[test]
    fn a_clock_that_steps_back_records_into_the_current_bucket() {
        let mut w = SlidingWindow::default();
        w.record(60 * S, &Sample::success(MS));
        w.record(50 * S, &Sample::success(MS));
        assert_eq!(w.stats(60 * S).requests, 2);
        assert_eq!(w.stats(50 * S).requests, 2);
    }
}
