//! The admin API's JSON shapes, shared by the server and the console (wasm).
//!
//! The console compiles this module (with `api` and `config`) and nothing of the
//! routing machinery: the live-health views it shows are in [`health`].

use serde::{Deserialize, Serialize};

mod health;
mod playbook;

/// What a publish changed: the configuration diff (see [`crate::config::diff`]).
pub use crate::config::Change;
pub use health::{
    BreakerEvent, BreakerView, Override, Reason, Signal, StateName, Transition, WindowStats,
};
pub use playbook::{GateResult, Gates};

/// How a request was routed: the gateway's `x-crossbar-*` headers.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The endpoint that served, or the last one tried.
    pub endpoint: Option<String>,
    pub provider: Option<String>,
    pub variant: Option<String>,
    /// Upstream attempts made (retries and failovers included).
    pub attempts: u32,
    pub config_version: i64,
    /// Served by an on-demand sibling because the provisioned endpoint was full.
    pub spilled: bool,
    /// 0 when the primary served.
    pub fallback_depth: u32,
}

/// One endpoint's live health, as the overview shows it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointHealth {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub region: String,
    pub geography: String,
    pub provisioned: bool,
    pub spill_to: Option<String>,
    pub breaker: BreakerView,
    pub stats: WindowStats,
    /// Provisioned endpoints: share of the tokens-per-minute ceiling in use.
    pub capacity_utilisation: Option<f64>,
    pub in_flight: u64,
}

/// An admin API caller's role. Each role may do what the ones before it may not
/// necessarily: they are capabilities, not a ladder, except that `admin` may do all.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything: config, versions, health, metrics, spend, audit.
    Viewer,
    /// On call: breaker overrides, feedback.
    Operator,
    /// Product owner: edits a feature's binding and experiment split, rolls back.
    Experimenter,
    /// Everything, including whole-config publishes, keys and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Viewer,
        Role::Operator,
        Role::Experimenter,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Experimenter => "experimenter",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Override | Action::Feedback => matches!(self, Role::Operator | Role::Admin),
            Action::EditFeature | Action::Rollback => {
                matches!(self, Role::Experimenter | Role::Admin)
            }
            Action::Publish | Action::ManageKeys | Action::ManageTokens => self == Role::Admin,
        }
    }
}

/// What an admin API route does, for role checks (the console hides what a role may
/// not do; the server refuses it regardless).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Override,
    Feedback,
    EditFeature,
    Rollback,
    Publish,
    /// Gateway keys: list, create, revoke.
    ManageKeys,
    /// Admin API tokens: list, create, revoke.
    ManageTokens,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::Override,
        Action::Feedback,
        Action::EditFeature,
        Action::Rollback,
        Action::Publish,
        Action::ManageKeys,
        Action::ManageTokens,
    ];
}

/// Who is signed in: `GET /admin/v1/whoami`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub name: String,
    pub role: Role,
    pub permissions: Vec<Action>,
}

/// One published configuration version.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: i64,
    pub created_at_ms: i64,
    pub author: String,
    pub message: String,
    /// The version this one was edited from (rollbacks name the version restored in
    /// `restored_from`).
    pub parent: Option<i64>,
    pub restored_from: Option<i64>,
    pub config: crate::config::RouterConfig,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersionSummary {
    pub version: i64,
    pub created_at_ms: i64,
    pub author: String,
    pub message: String,
    pub parent: Option<i64>,
    pub restored_from: Option<i64>,
    pub active: bool,
}

/// `POST /admin/v1/config`: publish a whole configuration.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub config: crate::config::RouterConfig,
    /// The version the edit started from (required): a publish on top of a newer
    /// version is refused (409, with the current version) instead of silently
    /// overwriting someone else's change.
    pub base_version: i64,
    #[serde(default)]
    pub message: String,
}

/// `PUT /admin/v1/features/{name}`: a feature's binding and experiment.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureEdit {
    pub binding: Vec<String>,
    pub experiment: Option<crate::config::ExperimentConfig>,
    /// The version the edit started from (required; see [`PublishRequest`]).
    pub base_version: i64,
    #[serde(default)]
    pub message: String,
}

/// `POST /admin/v1/config/rollback`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to restore; it is republished as a new version.
    pub to_version: i64,
    /// The version active when the rollback was asked for (required; see
    /// [`PublishRequest`]).
    pub base_version: i64,
    #[serde(default)]
    pub message: String,
}

/// What a publish, edit or rollback did.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    pub version: i64,
    pub changes: Vec<Change>,
}

/// `PUT /admin/v1/endpoints/{name}/breaker`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub mode: Override,
    pub reason: String,
}

/// `POST /admin/v1/feedback`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub request_id: String,
    /// Thumbs up (`true`) or down.
    pub positive: bool,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    /// `publish`, `edit_feature`, `rollback`, `breaker_override`, `create_key`, ...
    pub action: String,
    pub target: String,
    pub version: Option<i64>,
    pub changes: Vec<Change>,
    pub message: String,
}

/// Spend grouping.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendGroup {
    Feature,
    Team,
    Endpoint,
    /// The provider family (`bedrock`, `vertex-gemini`, ...).
    Cloud,
    Variant,
}

impl SpendGroup {
    pub const ALL: [SpendGroup; 5] = [
        SpendGroup::Feature,
        SpendGroup::Team,
        SpendGroup::Endpoint,
        SpendGroup::Cloud,
        SpendGroup::Variant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpendGroup::Feature => "feature",
            SpendGroup::Team => "team",
            SpendGroup::Endpoint => "endpoint",
            SpendGroup::Cloud => "cloud",
            SpendGroup::Variant => "variant",
        }
    }
}

/// `GET /admin/v1/spend?from_ms&to_ms&group_by`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: SpendGroup,
    pub rows: Vec<SpendRow>,
    /// Provisioned hours in the range that no traffic used (not attributable).
    pub unattributed_provisioned: rust_decimal::Decimal,
    pub total: rust_decimal::Decimal,
    /// Time series of the range, per bucket, for the chart.
    pub series: Vec<SpendPoint>,
    pub bucket_ms: i64,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub key: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Marginal token cost (on-demand).
    pub on_demand: rust_decimal::Decimal,
    /// This group's share of provisioned hours, in proportion to its tokens.
    pub provisioned: rust_decimal::Decimal,
    pub provisioned_tokens: u64,
    pub on_demand_tokens: u64,
    pub total: rust_decimal::Decimal,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendPoint {
    pub at_ms: i64,
    pub key: String,
    pub on_demand: rust_decimal::Decimal,
    pub requests: u64,
}

/// A feature's live traffic over the last minute: `GET /admin/v1/features/live` and
/// the event stream.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureLive {
    pub feature: String,
    pub experiment_id: Option<String>,
    pub requests: u64,
    /// Requests that failed for the user (after every failover).
    pub errors: u64,
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    pub variants: Vec<VariantLive>,
    /// Requests served at each fallback depth: `[primary, first backup, ...]`.
    pub fallback_depth: Vec<u64>,
    pub spilled: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    /// Marginal (on-demand) cost of the window's requests.
    pub cost: rust_decimal::Decimal,
    pub window_s: u64,
    /// Streams that broke after their first token and were continued on another
    /// endpoint.
    #[serde(default)]
    pub continuations: u64,
    /// Requests by the client API they came in by (`chat`, `messages`, `responses`:
    /// [`crate::api::Dialect`]), those with requests only.
    #[serde(default)]
    pub dialects: std::collections::BTreeMap<String, u64>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantLive {
    pub name: String,
    pub configured_percent: f64,
    pub requests: u64,
    /// Share of the feature's requests in the window, 0–100.
    pub observed_percent: f64,
    pub errors: u64,
}

/// What the event stream sends every second (`event: snapshot`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub at_ms: i64,
    pub config_version: i64,
    pub endpoints: Vec<EndpointHealth>,
    pub features: Vec<FeatureLive>,
    /// Ledger health: records queued, written, and lost (must stay 0).
    pub ledger: LedgerStats,
    /// The most recent stream continuations, newest last (the incident timeline).
    #[serde(default)]
    pub continuations: Vec<ContinuationEvent>,
}

/// A stream that broke at one endpoint after its first token and went on at another.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinuationEvent {
    /// Wall-clock time of the request, ms since the Unix epoch.
    pub at_ms: i64,
    pub request_id: String,
    pub feature: String,
    /// Where the stream broke, and where it went on.
    pub from: String,
    pub to: String,
    /// `prefill` or `instruction`.
    pub method: String,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStats {
    pub received: u64,
    pub written: u64,
    pub dropped: u64,
    pub queued: u64,
    pub batches: u64,
}

/// `POST /admin/v1/config/validate`: the same rules the publish applies.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationResult {
    pub ok: bool,
    pub problems: Vec<crate::config::Problem>,
}

/// A gateway key as listed (the key itself is shown once, at creation).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayKeyInfo {
    pub id: String,
    pub team: String,
    pub name: String,
    pub created_at_ms: i64,
    pub revoked: bool,
    pub requests_per_minute: Option<u32>,
    /// When the key stops working (ms since the Unix epoch); `None`: never.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

impl GatewayKeyInfo {
    /// Whether the key is accepted at `now_ms`: not revoked, not expired.
    pub fn in_force(&self, now_ms: i64) -> bool {
        !self.revoked && self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

/// `POST /admin/v1/keys`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub team: String,
    pub name: String,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// When the key stops working (ms since the Unix epoch, in the future); omitted:
    /// never.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub info: GatewayKeyInfo,
    /// The key: shown this once, stored only as a hash.
    pub key: String,
}

/// An admin API token as listed (the token itself is shown once, at creation).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// When the token stops working (ms since the Unix epoch); `None`: never.
    pub expires_at_ms: Option<i64>,
    pub revoked: bool,
}

impl AdminTokenInfo {
    /// Whether the token is accepted at `now_ms`: not revoked, not expired.
    pub fn in_force(&self, now_ms: i64) -> bool {
        !self.revoked && self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

/// `POST /admin/v1/tokens`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who holds it (shown in the audit log).
    pub name: String,
    pub role: Role,
    /// When the token stops working (ms since the Unix epoch, in the future);
    /// omitted: never.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub info: AdminTokenInfo,
    /// The token: shown this once, stored only as a hash.
    pub token: String,
}

/// A request that failed, as operators see it (`GET /admin/v1/requests/failed`): what
/// the client was told (the class), and what each attempt's endpoint said, which the
/// client was not told.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRequest {
    /// The `x-request-id` the client got.
    pub request_id: String,
    pub at_ms: i64,
    pub team: String,
    pub feature: String,
    pub variant: String,
    /// The class the client got (`code`).
    pub outcome: String,
    /// The HTTP status the client got.
    pub status: u16,
    pub attempts: Vec<FailedAttempt>,
}

/// One attempt of a [`FailedRequest`].
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedAttempt {
    pub endpoint: String,
    /// `ok`, or the error class.
    pub outcome: String,
    pub upstream_status: Option<u16>,
    pub latency_ms: f64,
    /// A retry of the same endpoint (not a failover).
    pub retry: bool,
    /// What the endpoint (or Crossbar) said, credentials redacted: the detail the
    /// client did not get.
    pub detail: Option<String>,
}
