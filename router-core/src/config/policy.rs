//! Breaker and retry policies, as written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Breaker parameters: the defaults for every endpoint, and per-endpoint overrides.
///
/// An endpoint's effective setting for each parameter is, first found: its override,
/// then (for `ttft_p90_ms`, `latency_p90_ms`, `error_rate`) the strictest threshold
/// among the features that bind it, then `defaults`, then the built-in default.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    #[serde(default)]
    pub defaults: BreakerParams,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, BreakerParams>,
}

/// Every field optional: unset means "inherit" (see [`BreakerPolicy`]).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerParams {
    /// Length of the sliding window the rates and percentiles are computed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    /// Requests in the window before a rate or percentile can trip the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// Failures in a row that trip it whatever the volume (hard outages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p90_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p90_ms: Option<u64>,
    /// Thumbs up/down votes in the window before feedback can trip the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_min_votes: Option<u32>,
    /// Share of positive votes below which the endpoint counts as unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_min_score: Option<f64>,
    /// Drop of the recent score below its long-run baseline that trips the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_max_drop: Option<f64>,
    /// First open period; it doubles on each consecutive trip up to `max_open_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_ms: Option<u64>,
    /// The partial-open ramp: the share of the endpoint's normal traffic admitted at
    /// each stage, increasing, ending at 100 (e.g. `[5, 25, 50, 100]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_percent: Option<Vec<f64>>,
    /// Minimum time in each ramp stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_ms: Option<u64>,
    /// Requests a stage must see, healthy, before the ramp advances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_min_requests: Option<u32>,
    /// While open, a one-token health probe this often; one that succeeds starts
    /// the ramp early (default 5000; 0: no probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval_ms: Option<u64>,
    /// In the ramp, admit a request whatever the stage's share when none was for
    /// this long, so thin traffic still reaches a recovering endpoint (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_min_gap_ms: Option<u64>,
}

impl BreakerParams {
    /// `self` with unset fields taken from `fallback`.
    pub fn or(&self, fallback: &BreakerParams) -> BreakerParams {
        BreakerParams {
            window_s: self.window_s.or(fallback.window_s),
            min_requests: self.min_requests.or(fallback.min_requests),
            consecutive_failures: self.consecutive_failures.or(fallback.consecutive_failures),
            error_rate: self.error_rate.or(fallback.error_rate),
            throttle_rate: self.throttle_rate.or(fallback.throttle_rate),
            ttft_p90_ms: self.ttft_p90_ms.or(fallback.ttft_p90_ms),
            latency_p90_ms: self.latency_p90_ms.or(fallback.latency_p90_ms),
            feedback_min_votes: self.feedback_min_votes.or(fallback.feedback_min_votes),
            feedback_min_score: self.feedback_min_score.or(fallback.feedback_min_score),
            feedback_max_drop: self.feedback_max_drop.or(fallback.feedback_max_drop),
            open_ms: self.open_ms.or(fallback.open_ms),
            max_open_ms: self.max_open_ms.or(fallback.max_open_ms),
            ramp_percent: self
                .ramp_percent
                .clone()
                .or_else(|| fallback.ramp_percent.clone()),
            stage_ms: self.stage_ms.or(fallback.stage_ms),
            stage_min_requests: self.stage_min_requests.or(fallback.stage_min_requests),
            probe_interval_ms: self.probe_interval_ms.or(fallback.probe_interval_ms),
            ramp_min_gap_ms: self.ramp_min_gap_ms.or(fallback.ramp_min_gap_ms),
        }
    }
}

/// Retries of the same endpoint (failover to the next one is not a retry).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Extra tries of one endpoint after a retryable error, before failing over.
    #[serde(default = "RetryPolicy::default_max_retries")]
    pub max_retries: u32,
    /// Exponential backoff with equal jitter: a wait in `[d/2, d]` with
    /// `d = min(max, base × 2^retry)`, or the upstream's `retry-after` when longer.
    #[serde(default = "RetryPolicy::default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "RetryPolicy::default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A `retry-after` longer than this is not waited for: the next endpoint is tried.
    #[serde(default = "RetryPolicy::default_max_retry_after_ms")]
    pub max_retry_after_ms: u64,
    /// Retry budget: retries may add at most this share of the request rate ...
    #[serde(default = "RetryPolicy::default_budget_ratio")]
    pub budget_ratio: f64,
    /// ... plus this many retries per second, so a quiet router can still retry.
    #[serde(default = "RetryPolicy::default_budget_min_per_s")]
    pub budget_min_per_s: u32,
}

impl RetryPolicy {
    // Two retries of one endpoint with a backoff of 200 ms, then 400 ms (each half
    // fixed, half jittered): a blip (one 500, one 429) is absorbed where it
    // happened, and a persistent failure reaches the backup within about half a
    // second, not after a storm of instant retries.
    fn default_max_retries() -> u32 {
        2
    }
    fn default_backoff_base_ms() -> u64 {
        200
    }
    fn default_backoff_max_ms() -> u64 {
        2_000
    }
    // Providers ask for a few seconds (Bedrock and Azure commonly 1–2 s): honoured
    // when it fits the deadline, otherwise the next endpoint is tried at once.
    fn default_max_retry_after_ms() -> u64 {
        5_000
    }
    fn default_budget_ratio() -> f64 {
        0.2
    }
    fn default_budget_min_per_s() -> u32 {
        10
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: Self::default_max_retries(),
            backoff_base_ms: Self::default_backoff_base_ms(),
            backoff_max_ms: Self::default_backoff_max_ms(),
            max_retry_after_ms: Self::default_max_retry_after_ms(),
            budget_ratio: Self::default_budget_ratio(),
            budget_min_per_s: Self::default_budget_min_per_s(),
        }
    }
}
