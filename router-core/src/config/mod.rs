//! Crossbar's configuration: endpoints, features (bindings and experiments), teams,
//! and the breaker and retry policies.
//!
//! Two layers, as in TensorZero's gateway:
//! - [`RouterConfig`] and its parts are the *raw* form: plain serde structs with
//!   unknown fields rejected, exactly what a TOML file, the admin API or the console's
//!   editor holds. It round-trips: exporting a published version gives back its input.
//! - [`Config`] is the *validated* form the engine runs on: names resolved to indexes,
//!   percentages turned into cumulative ranges, breaker settings resolved per endpoint.
//!   [`Config::validate`] reports every problem at once, each with its path
//!   (`features.recap.experiment.variants: percentages sum to 90, must be 100`).
//!
//! [`diff`] says what changed between two configurations: the console's preview
//! before a publish and the audit log's record of it are the same computation.
//!
//! Everything here compiles to wasm: the console validates an edit with exactly the
//! rules the server applies on publish.

pub mod diff;
mod endpoint;
mod feature;
mod playbook;
mod policy;
mod validate;

pub use diff::Change;
pub use endpoint::{
    AuthConfig, AzureDeployment, Capabilities, CapabilityOverrides, Capacity, Continuation,
    EndpointConfig, Pricing, Provider, Timeouts, geography_of,
};
pub use feature::{ExperimentConfig, FeatureConfig, TeamConfig, Thresholds, VariantConfig};
pub use playbook::{Rollout, RolloutConfig, Shadow, ShadowConfig};
pub use policy::{BreakerParams, BreakerPolicy, RetryPolicy};
pub use validate::{
    Config, DEFAULT_MAX_STREAM_MS, Endpoint, EndpointId, Feature, MAX_STREAM_MS, Variant,
    endpoint_path,
};

use std::fmt;

use serde::{Deserialize, Serialize};

/// The whole routing configuration, as written (TOML file, admin API, console).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    pub features: Vec<FeatureConfig>,
    /// Teams own gateway keys; spend and limits are per team.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    #[serde(default)]
    pub breaker: BreakerPolicy,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub privacy: Privacy,
    /// How long the store keeps the usage ledger, its rollups and breaker events.
    #[serde(default)]
    pub retention: Retention,
}

impl RouterConfig {
    pub fn feature(&self, name: &str) -> Option<&FeatureConfig> {
        self.features.iter().find(|f| f.name == name)
    }

    pub fn feature_mut(&mut self, name: &str) -> Option<&mut FeatureConfig> {
        self.features.iter_mut().find(|f| f.name == name)
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// What Crossbar may keep of the traffic it carries.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Store prompt and completion text in the usage ledger. Off unless an operator
    /// turns it on: by default only counts, timings and costs are kept.
    #[serde(default)]
    pub store_text: bool,
}

/// How long the store keeps what the traffic leaves behind, in days; `0` keeps it
/// forever. A background task of the server deletes older rows (about once an hour)
/// and `/readyz` reports what it did. Spend reports read the rollups: a range older
/// than `minute_rollup_days` is reported from the hourly rollups only (its whole
/// hours), one older than `hour_rollup_days` as empty.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// One row per request (`usage_ledger`), with its attempts: the largest table.
    pub ledger_days: u32,
    /// Per-minute rollups (`usage_minute`): spend over short ranges.
    pub minute_rollup_days: u32,
    /// Per-hour rollups (`usage_hour`): spend over long ranges.
    pub hour_rollup_days: u32,
    /// Breaker transitions (`breaker_events`) and feedback votes (`feedback`).
    pub event_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            ledger_days: 30,
            minute_rollup_days: 35,
            hour_rollup_days: 800,
            event_days: 90,
        }
    }
}

/// One validation problem: where (a dotted path into [`RouterConfig`]) and why.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of a configuration that failed validation.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The problems at `path` or below it (the console shows them next to a field).
    pub fn under<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Problem> + 'a {
        self.0.iter().filter(move |p| {
            p.path == path
                || p.path
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Names of endpoints, features, variants and teams: they appear in URLs, headers and
/// metric labels, so they are kept to a safe alphabet.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
