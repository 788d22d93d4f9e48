//! The migration playbook's API shapes that the console shares: rollout gates and
//! their results. (The playbook's decisions are in `routing::rollout`; its storage
//! and its admin routes are the server's.)

use serde::{Deserialize, Serialize};

/// The gates of a rollout. Unset thresholds are not checked.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Candidate requests in the stage before any gate is judged.
    pub min_requests: u64,
    /// Largest error rate of the candidate arm (0–1).
    pub max_error_rate: Option<f64>,
    /// Largest excess of the candidate's error rate over the incumbent's (0–1).
    pub max_error_rate_increase: Option<f64>,
    pub max_ttft_p90_ms: Option<f64>,
    /// Largest candidate TTFT p90 as a multiple of the incumbent's.
    pub max_ttft_p90_ratio: Option<f64>,
    pub max_latency_p90_ms: Option<f64>,
    pub max_latency_p90_ratio: Option<f64>,
    /// Also require the shadow parity verdict (when a shadow of the same target
    /// exists).
    pub require_parity: bool,
}

impl Default for Gates {
    /// An error rate at most 5 % and at most 2 points over the incumbent's; TTFT and
    /// latency p90 at most 1.5 × the incumbent's.
    fn default() -> Self {
        Self {
            min_requests: 20,
            max_error_rate: Some(0.05),
            max_error_rate_increase: Some(0.02),
            max_ttft_p90_ms: None,
            max_ttft_p90_ratio: Some(1.5),
            max_latency_p90_ms: None,
            max_latency_p90_ratio: Some(1.5),
            require_parity: false,
        }
    }
}

/// One gate's value against its threshold.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub value: f64,
    pub threshold: f64,
    pub ok: bool,
}
