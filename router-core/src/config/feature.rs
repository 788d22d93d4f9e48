//! Features (what clients address), their bindings and experiments, and teams.

use serde::{Deserialize, Serialize};

/// A product capability that calls an LLM. Clients name it as `model`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The team that owns the feature (shown in the console; spend is still
    /// attributed to the team whose key made each request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Primary endpoint first, then the backups in order. Required unless an
    /// experiment gives every variant its own binding.
    #[serde(default)]
    pub binding: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentConfig>,
    /// The data boundary: geographies this feature's data may be processed in. Empty
    /// means unrestricted. Routing never crosses it, whatever breakers or capacity say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geographies: Vec<String>,
    /// Health thresholds for the endpoints this feature uses: an endpoint whose
    /// breaker policy does not set its own takes the strictest of its features'.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// The whole request, every attempt and backoff included.
    #[serde(default = "FeatureConfig::default_deadline_ms")]
    pub deadline_ms: u64,
    /// One whole (non-streaming) attempt, to its full answer. Default: 10 s plus
    /// 20 ms per requested output token (`max_tokens`, 256 when unset): a healthy
    /// model writes at least 50 tokens a second, and a silent endpoint is left
    /// after about 15 s, not after the 60 s deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// A stream's wait for its first token. Default: twice the feature's TTFT
    /// threshold when it has one, else 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_timeout_ms: Option<u64>,
    /// Longest silence between two chunks of a stream once it has started; a stall
    /// is a failure like a cut (and is continued on a backup). Default 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Longest a stream may last, from the request's arrival: past it the stream
    /// ends with an `upstream_error` event (an upstream that keeps a stream alive
    /// without ever finishing it cannot hold a connection for ever). Default 15
    /// minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_ms: Option<u64>,
    /// Continue a text stream that breaks after its first token on a backup, so the
    /// client gets one uninterrupted answer (default). Off: such a stream ends with
    /// an error event. Tool calls and JSON output are never continued.
    #[serde(
        default = "FeatureConfig::default_continue_streams",
        skip_serializing_if = "FeatureConfig::is_default_continue_streams"
    )]
    pub continue_streams: bool,
    /// When a prompt exceeds an endpoint's context window, try the binding's next
    /// endpoint with a larger window instead of failing (the one client error that
    /// may fail over).
    #[serde(default)]
    pub context_fallback: bool,
    /// Candidate bindings sent a sample of the requests too, off the client's path
    /// (the migration playbook's quality step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadows: Vec<super::ShadowConfig>,
    /// The share of users moved to a target binding (the rollout step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::RolloutConfig>,
}

impl FeatureConfig {
    fn default_deadline_ms() -> u64 {
        60_000
    }

    fn default_continue_streams() -> bool {
        true
    }

    fn is_default_continue_streams(value: &bool) -> bool {
        *value
    }

    /// A feature with a binding and defaults, as tests and the demo build them.
    pub fn new(name: &str, binding: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            owner: None,
            binding: binding.iter().map(|s| (*s).to_owned()).collect(),
            experiment: None,
            geographies: Vec::new(),
            thresholds: Thresholds::default(),
            deadline_ms: Self::default_deadline_ms(),
            attempt_timeout_ms: None,
            ttft_timeout_ms: None,
            stream_idle_timeout_ms: None,
            max_stream_ms: None,
            continue_streams: true,
            context_fallback: false,
            shadows: Vec::new(),
            rollout: None,
        }
    }
}

/// A split of a feature's traffic between variants, sticky per user.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Part of the assignment hash: a new id reshuffles every user, the same id with
    /// new percentages moves only the users it must.
    pub id: String,
    pub variants: Vec<VariantConfig>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Share of traffic, 0–100; the variants sum to 100.
    pub percent: f64,
    /// Primary + backups for this variant.
    pub binding: Vec<String>,
}

/// Signals beyond which an endpoint serving this feature counts as unhealthy.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Time to first token, 90th percentile over the breaker window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p90_ms: Option<u64>,
    /// Whole-request latency, 90th percentile over the breaker window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p90_ms: Option<u64>,
    /// Share of failed requests (5xx, timeouts, cut streams), 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}

/// A team: owns gateway keys, is charged for their traffic, may be rate limited.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}
