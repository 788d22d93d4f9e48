//! What the router reports about each request, and where it sends it.
//!
//! The engine builds one [`RequestRecord`] per client request (with one
//! [`AttemptRecord`] per upstream attempt) and hands it to a [`TelemetrySink`] that the
//! server provides. The sink must not block: the server's pushes onto a channel that a
//! writer drains in batches, so the hot path never waits on the database.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::admin::BreakerEvent;
pub use crate::routing::parity::ShadowComparison;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: String,
    /// Wall-clock time the request arrived, ms since the Unix epoch.
    pub at_ms: i64,
    pub team: String,
    /// The gateway key's id (never the key).
    pub key_id: String,
    pub feature: String,
    pub variant: String,
    pub config_version: i64,
    pub stream: bool,
    /// The endpoint that served (or last failed).
    pub endpoint: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub geography: Option<String>,
    /// Served from provisioned capacity.
    pub provisioned: bool,
    /// Served by an on-demand sibling because its provisioned endpoint was full.
    pub spilled: bool,
    /// Position in the binding of the endpoint that served: 0 = primary.
    pub fallback_depth: u32,
    /// `ok`, or the normalised error class (`ErrorKind::as_str`).
    pub outcome: String,
    /// The HTTP status the client got (200 for a stream that started).
    pub status: u16,
    pub latency_ms: f64,
    /// Streams: from arrival to the first token sent to the client.
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    /// Marginal token cost (zero on provisioned capacity).
    pub cost: Decimal,
    /// Some tokens are Crossbar's estimate: a stream ended (cut, cancelled) before
    /// the provider said its usage.
    #[serde(default)]
    pub usage_estimated: bool,
    /// Times the stream was continued on another endpoint after breaking.
    #[serde(default)]
    pub continuations: u32,
    /// Malformed upstream chunks skipped (never sent to the client).
    #[serde(default)]
    pub skipped_chunks: u32,
    /// A shadow request (the migration playbook's quality step): the id of the
    /// feature's shadow it ran for. Never billed to a team: its cost is migration
    /// cost, and it is no user's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The feature's rollout when one is on, and the arm the request was served by
    /// (`candidate`: the rollout's target; `incumbent`: the feature's own binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_arm: Option<String>,
    /// A drill that took an endpoint out of this request's candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<String>,
    /// The API the request came in by (`chat`, `messages`, `responses`).
    #[serde(default)]
    pub dialect: crate::api::Dialect,
    pub attempts: Vec<AttemptRecord>,
    /// Only when the operator enabled `privacy.store_text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_text: Option<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub endpoint: String,
    /// The endpoint's provider, and whether it runs on provisioned capacity (where
    /// its billed tokens are rolled up).
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub provisioned: bool,
    /// `ok`, or the error class.
    pub outcome: String,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub upstream_status: Option<u16>,
    /// A retry of the same endpoint (not a failover).
    pub retry: bool,
    pub spilled: bool,
    /// The error message, for diagnosis (never a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tokens this attempt consumed at its endpoint, and their cost: billed to that
    /// endpoint. Only attempts that produced output have any (a stream's broken
    /// first part and its continuation each bill their own share).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub completion_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub cost: Decimal,
    /// The tokens are Crossbar's estimate (the stream broke before its usage).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// This attempt continued a broken stream, by this method (`prefill`,
    /// `instruction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub use crate::routing::clock::unix_ms;

/// Where the router sends what it observed. Implementations must return quickly.
pub trait TelemetrySink: Send + Sync + 'static {
    fn request(&self, record: RequestRecord);
    fn breaker(&self, event: BreakerEvent);
    /// A shadow's answer compared with the client's (the migration playbook).
    fn shadow(&self, comparison: ShadowComparison) {
        let _ = comparison;
    }
}

/// Discards everything (benchmarks, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl TelemetrySink for NullSink {
    fn request(&self, _: RequestRecord) {}
    fn breaker(&self, _: BreakerEvent) {}
}

/// Keeps everything in memory (tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub requests: std::sync::Mutex<Vec<RequestRecord>>,
    pub breakers: std::sync::Mutex<Vec<BreakerEvent>>,
    pub shadows: std::sync::Mutex<Vec<ShadowComparison>>,
}

impl TelemetrySink for MemorySink {
    fn request(&self, record: RequestRecord) {
        self.requests.lock().expect("sink lock").push(record);
    }
    fn breaker(&self, event: BreakerEvent) {
        self.breakers.lock().expect("sink lock").push(event);
    }
    fn shadow(&self, comparison: ShadowComparison) {
        self.shadows.lock().expect("sink lock").push(comparison);
    }
}
