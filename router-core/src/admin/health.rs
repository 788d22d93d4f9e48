//! The live-health views the console shows: an endpoint's breaker ([`BreakerView`],
//! with the [`Reason`] for its state), its recent window ([`WindowStats`]) and
//! breaker transitions ([`BreakerEvent`]).
//!
//! They live here, apart from the breaker and the windows that fill them, so the
//! console (wasm) gets the shapes without compiling the routing machinery.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Closed,
    Open,
    /// Half-open: the graduated ramp back to full traffic.
    Ramp,
}

impl StateName {
    /// The serde name: `closed`, `open`, `ramp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Ramp => "ramp",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's override of the automatic state.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    #[default]
    Auto,
    ForceOpen,
    ForceClosed,
}

/// What caused a transition.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The breaker was created (the reason of its first state).
    Initial,
    ConsecutiveFailures,
    ErrorRate,
    ThrottleRate,
    TtftP90,
    LatencyP90,
    Feedback,
    OpenElapsed,
    /// A health probe sent while open succeeded.
    ProbeSucceeded,
    StageHealthy,
    Override,
}

/// Why the breaker is in its state: the signal, its measured value and the threshold
/// it crossed (rates as fractions, durations in ms, counts as counts; 0 for signals
/// without a value), and a sentence for people.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub signal: Signal,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

impl Reason {
    pub fn new(signal: Signal, value: f64, threshold: f64, message: String) -> Self {
        Self {
            signal,
            value,
            threshold,
            message,
        }
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: StateName,
    pub to: StateName,
    /// Router clock time of the transition, in ms.
    pub at_ms: u64,
    /// The ramp stage entered (0-based), when `to` is `ramp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    pub reason: Reason,
}

/// The breaker as the console shows it (JSON).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerView {
    /// The effective state (a forced state included).
    pub state: StateName,
    /// Router clock time the state began, in ms.
    pub since_ms: u64,
    /// How long the state has lasted, in ms.
    pub elapsed_ms: u64,
    pub reason: Reason,
    /// Share of requests admitted now.
    pub admission: f64,
    /// Current ramp stage (0-based), in `ramp`.
    pub stage: Option<usize>,
    /// Number of ramp stages.
    pub stages: usize,
    /// Judged samples seen in the current ramp stage.
    pub stage_requests: Option<u64>,
    /// Consecutive trips (drives the open time).
    pub trips: u32,
    #[serde(rename = "override")]
    pub override_mode: Override,
    /// When an automatic open ends, in router clock ms.
    pub open_until_ms: Option<u64>,
}

impl BreakerView {
    /// The sentence explaining the current state.
    pub fn reason_message(&self) -> &str {
        &self.reason.message
    }
}

/// One endpoint's recent health, as the console shows it (JSON).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowStats {
    /// Length of the window, in seconds.
    pub window_s: f64,
    /// Requests the endpoint answered or failed (spilled-away ones excluded).
    pub requests: u64,
    pub successes: u64,
    /// Upstream failures (5xx, unavailable, timeout, interrupted stream, auth).
    pub failures: u64,
    /// Rate limited or overloaded.
    pub throttles: u64,
    /// The endpoint correctly refused a bad request.
    pub client_errors: u64,
    /// Outcomes that say nothing about the endpoint (Crossbar's own bugs, cancelled
    /// requests).
    pub neutral: u64,
    /// Requests this provisioned endpoint turned away at its capacity ceiling, which
    /// then spilled to on-demand (not counted in `requests`).
    pub spilled_away: u64,
    /// Requests this endpoint served as the on-demand stand-in for a full
    /// provisioned sibling.
    pub spilled: u64,
    /// Every error class the endpoint answered with, whatever it counts as for
    /// health (`ErrorKind::as_str` keys; neutral outcomes have none).
    pub errors_by_kind: BTreeMap<String, u64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_mean_ms: Option<f64>,
    pub tokens: u64,
    pub feedback_up: u64,
    pub feedback_down: u64,
}

impl WindowStats {
    /// Requests that say something about the endpoint's health.
    pub fn judged(&self) -> u64 {
        self.requests
            .saturating_sub(self.client_errors)
            .saturating_sub(self.neutral)
    }

    /// failures / (requests − client errors − neutral); 0 when nothing was judged.
    pub fn error_rate(&self) -> f64 {
        ratio(self.failures, self.judged())
    }

    /// throttles / (requests − client errors − neutral); 0 when nothing was judged.
    pub fn throttle_rate(&self) -> f64 {
        ratio(self.throttles, self.judged())
    }

    /// Share of positive feedback votes; `None` without votes.
    pub fn feedback_score(&self) -> Option<f64> {
        let votes = self.feedback_up + self.feedback_down;
        (votes > 0).then(|| self.feedback_up as f64 / votes as f64)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A breaker changed state.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerEvent {
    pub endpoint: String,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: i64,
    pub transition: Transition,
}
