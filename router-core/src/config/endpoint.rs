//! Endpoints: one concrete place a model is served, and everything the adapters and
//! the router need to know about it (where, how to authenticate, what it can do, its
//! capacity mode and its price).
//!
//! Authentication is described, never stored: the config says *how* to obtain
//! credentials (the AWS default chain, a profile, a role; GCP ADC or a workload
//! identity federation file; the *name* of an environment variable for an API key),
//! and validation rejects anything that looks like a key pasted into it.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Problem;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Bedrock,
    VertexGemini,
    VertexAnthropic,
    /// OpenAI, Azure OpenAI (with `azure`), vLLM and other compatible servers.
    Openai,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bedrock => "bedrock",
            Self::VertexGemini => "vertex-gemini",
            Self::VertexAnthropic => "vertex-anthropic",
            Self::Openai => "openai",
        }
    }

    /// What the provider family can do, before an endpoint narrows it.
    pub fn default_capabilities(self) -> Capabilities {
        match self {
            Self::Bedrock => Capabilities {
                tools: true,
                images: true,
                json_mode: false,
                context_window: 200_000,
                max_output_tokens: 8_192,
                // Refined by model in `EndpointConfig::capabilities`.
                continuation: Continuation::Instruction,
            },
            Self::VertexGemini => Capabilities {
                tools: true,
                images: true,
                json_mode: true,
                context_window: 1_000_000,
                max_output_tokens: 8_192,
                // Gemini's API has no assistant prefill.
                continuation: Continuation::Instruction,
            },
            Self::VertexAnthropic => Capabilities {
                tools: true,
                images: true,
                json_mode: false,
                context_window: 200_000,
                max_output_tokens: 8_192,
                continuation: Continuation::Prefill,
            },
            Self::Openai => Capabilities {
                tools: true,
                images: true,
                json_mode: true,
                context_window: 128_000,
                max_output_tokens: 16_384,
                // OpenAI's own API answers a trailing assistant message with a new
                // turn; servers that continue it (vLLM) say `prefill`.
                continuation: Continuation::Instruction,
            },
        }
    }
}

/// One concrete place a model is served.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: String,
    pub provider: Provider,
    /// Bedrock model id / ARN / inference profile; Vertex model name; OpenAI model.
    pub model: String,
    /// Cloud region (`us-east-1`, `europe-west4`, `eastus`...).
    pub region: String,
    /// The data-boundary geography the region lies in (`us`, `eu`, `apac`...): a
    /// feature restricted to some geographies is never served anywhere else.
    pub geography: String,
    /// Vertex: the GCP project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Overrides the cloud's URL (simulators, vLLM, an Azure resource, a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Azure OpenAI: deployment and API version; requests use the deployment URL form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureDeployment>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// What this endpoint supports; unset fields take the provider's defaults.
    #[serde(default)]
    pub capabilities: CapabilityOverrides,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Speak HTTP/2 over plain TCP from the first byte (h2c "prior knowledge"): for
    /// vLLM and internal endpoints that support it, so thousands of concurrent
    /// streams share a few connections. Over TLS, HTTP/2 is negotiated by ALPN
    /// whatever this says. (HTTP-based adapters only; the AWS SDK manages its own.)
    /// How connections are pooled, and whether a request alone takes HTTP/1.1
    /// instead, is the process's transport setting, not the endpoint's
    /// (`crossbar serve --upstream-http1-when-idle`, `providers::TransportSettings`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2_prior_knowledge: bool,
    /// Provisioned (a reserved tokens-per-minute ceiling, spilling to an on-demand
    /// sibling beyond it) or on demand.
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default)]
    pub pricing: Pricing,
}

/// How an endpoint's capacity is bought.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Capacity {
    /// Pay per token, shared capacity: a full ceiling is the provider's rate limit.
    #[default]
    OnDemand,
    /// Reserved throughput. Clouds do not publish tokens/minute per purchased unit
    /// (Bedrock model units, Vertex GSUs), so the ceiling is configuration. Beyond it,
    /// requests spill to `spill_to`, an on-demand endpoint in the same geography:
    /// spilling is not a failure and does not count against this endpoint's health.
    Provisioned {
        tokens_per_minute: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spill_to: Option<String>,
    },
}

/// Prices in the endpoint's billing currency (USD by convention), as decimals: money
/// is never a float. Per-token prices are per million tokens. A provisioned endpoint's
/// `hourly` price is a sunk cost: its marginal token cost is zero and the hours are
/// attributed to the features that used it, in proportion to their tokens.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub input_per_million: Decimal,
    #[serde(default)]
    pub output_per_million: Decimal,
    /// Cached prompt tokens, where the provider bills them differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<Decimal>,
    /// Provisioned capacity: the price of one hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<Decimal>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureDeployment {
    pub deployment: String,
    pub api_version: String,
}

/// How to obtain credentials. No variant holds a secret.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    /// The provider's default: the AWS default credential chain for Bedrock
    /// (environment, web identity / IRSA, container credentials, IMDS), Application
    /// Default Credentials for Vertex, none for OpenAI-compatible endpoints.
    #[default]
    Default,
    /// AWS: a named profile and/or a role to assume on top of the default chain.
    Aws {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
    },
    /// GCP: an external-account (workload identity federation) or other ADC JSON file.
    GcpCredentialsFile { path: String },
    /// An API key read from this environment variable at start-up (OpenAI, Azure, vLLM).
    ApiKeyEnv { env: String },
    /// No credentials (a local vLLM, a simulator).
    None,
}

/// How a stream cut after its first token is continued on this endpoint (when it is
/// the backup): the text the client has already seen is sent along, and the
/// endpoint's answer is spliced after it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Continuation {
    /// Assistant prefill: the seen text as a trailing assistant message, which the
    /// model continues (Anthropic models on Bedrock and Vertex; OpenAI-compatible
    /// servers that continue a final assistant message, such as vLLM).
    Prefill,
    /// The seen text as an assistant message and a user message asking to continue
    /// exactly where it stopped (any chat model; the splice is less exact).
    Instruction,
    /// This endpoint never continues another's stream: a cut stream ends with an
    /// error if it is the only backup left.
    None,
}

impl Continuation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefill => "prefill",
            Self::Instruction => "instruction",
            Self::None => "none",
        }
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub tools: bool,
    pub images: bool,
    pub json_mode: bool,
    /// Largest prompt + output, in tokens.
    pub context_window: u32,
    /// Largest output per request, in tokens.
    pub max_output_tokens: u32,
    /// How it continues a stream another endpoint started.
    pub continuation: Continuation,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_mode: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Default: `prefill` for Anthropic models (Vertex, and Bedrock model ids that
    /// name Anthropic or Claude), `instruction` for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP + TLS connect.
    #[serde(default = "Timeouts::default_connect_ms")]
    pub connect_ms: u64,
    /// A whole non-streaming request; for a stream, the wait for its response headers.
    #[serde(default = "Timeouts::default_request_ms")]
    pub request_ms: u64,
    /// Longest silence inside a stream before it counts as interrupted.
    #[serde(default = "Timeouts::default_idle_ms")]
    pub stream_idle_ms: u64,
}

impl Timeouts {
    fn default_connect_ms() -> u64 {
        3_000
    }
    fn default_request_ms() -> u64 {
        120_000
    }
    fn default_idle_ms() -> u64 {
        30_000
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: Self::default_connect_ms(),
            request_ms: Self::default_request_ms(),
            stream_idle_ms: Self::default_idle_ms(),
        }
    }
}

impl EndpointConfig {
    /// A minimal endpoint, as tests and the demo build them.
    pub fn new(name: &str, provider: Provider, model: &str, region: &str) -> Self {
        Self {
            name: name.to_owned(),
            provider,
            model: model.to_owned(),
            region: region.to_owned(),
            geography: geography_of(region).to_owned(),
            project: None,
            base_url: None,
            azure: None,
            auth: AuthConfig::Default,
            capabilities: CapabilityOverrides::default(),
            timeouts: Timeouts::default(),
            http2_prior_knowledge: false,
            capacity: Capacity::OnDemand,
            pricing: Pricing::default(),
        }
    }

    /// The cloud the endpoint runs in: `aws` (Bedrock), `gcp` (Vertex), `azure`
    /// (Azure OpenAI) or `openai` (OpenAI and other compatible servers).
    pub fn cloud(&self) -> &'static str {
        match self.provider {
            Provider::Bedrock => "aws",
            Provider::VertexGemini | Provider::VertexAnthropic => "gcp",
            Provider::Openai if self.azure.is_some() => "azure",
            Provider::Openai => "openai",
        }
    }

    /// Whether requests to this endpoint carry a credential (a cloud token, a
    /// signature, an API key): every method but `none`, and `default` except on
    /// OpenAI-compatible endpoints, where it means none.
    pub fn sends_credentials(&self) -> bool {
        match self.auth {
            AuthConfig::None => false,
            AuthConfig::Default => self.provider != Provider::Openai,
            _ => true,
        }
    }

    /// A provisioned endpoint reports a full ceiling as `capacity_exhausted` (spill),
    /// an on-demand one as `rate_limited` (back off).
    pub fn is_provisioned(&self) -> bool {
        matches!(self.capacity, Capacity::Provisioned { .. })
    }

    /// The provider's continuation method, refined by model: Anthropic models on
    /// Bedrock take a prefill.
    fn default_continuation(&self, provider: Capabilities) -> Continuation {
        let model = self.model.to_ascii_lowercase();
        if self.provider == Provider::Bedrock
            && (model.contains("anthropic") || model.contains("claude"))
        {
            Continuation::Prefill
        } else {
            provider.continuation
        }
    }

    /// The provider's capabilities with this endpoint's overrides applied.
    pub fn capabilities(&self) -> Capabilities {
        let d = self.provider.default_capabilities();
        let o = &self.capabilities;
        Capabilities {
            tools: o.tools.unwrap_or(d.tools),
            images: o.images.unwrap_or(d.images),
            json_mode: o.json_mode.unwrap_or(d.json_mode),
            context_window: o.context_window.unwrap_or(d.context_window),
            max_output_tokens: o.max_output_tokens.unwrap_or(d.max_output_tokens),
            continuation: o
                .continuation
                .unwrap_or_else(|| self.default_continuation(d)),
        }
    }

    /// Every problem, each with its path under `path` (e.g. `endpoints.bedrock-use1`).
    pub fn problems(&self, path: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad =
            |field: &str, why: String| out.push(Problem::new(format!("{path}.{field}"), why));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bad(
                "name",
                format!(
                    "`{}` must be non-empty letters, digits, '-', '_' or '.'",
                    self.name
                ),
            );
        }
        if self.model.trim().is_empty() {
            bad("model", "must not be empty".into());
        }
        if self.region.trim().is_empty() {
            bad("region", "must not be empty".into());
        } else if !is_region(&self.region) {
            // Vertex puts the region in the host name (`{region}-aiplatform...`) and
            // the path, the AWS SDK in the host name: anything but a plain region name
            // could move the request, and its credentials, to another host.
            bad(
                "region",
                format!(
                    "`{}` must be a cloud region name: lowercase letters, digits and '-' (at most {MAX_NAME_LEN})",
                    self.region
                ),
            );
        }
        if let Some(why) = self.model_charset_problem() {
            bad("model", why);
        }
        if let Some(project) = &self.project
            && !project.is_empty()
            && !is_gcp_project(project)
        {
            bad(
                "project",
                format!(
                    "`{project}` must be a GCP project id: lowercase letters, digits and '-' \
                     (optionally after a `domain.example:` prefix)"
                ),
            );
        }
        if let Some(azure) = &self.azure {
            // Both go into the request URL.
            if !is_url_segment(&azure.deployment) {
                bad(
                    "azure.deployment",
                    format!(
                        "`{}` must be a deployment name: letters, digits, '-', '_' and '.'",
                        azure.deployment
                    ),
                );
            }
            if !is_url_segment(&azure.api_version) {
                bad(
                    "azure.api_version",
                    format!(
                        "`{}` must be an API version such as `2024-10-21`",
                        azure.api_version
                    ),
                );
            }
        }
        if self.geography.is_empty()
            || !self
                .geography
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bad(
                "geography",
                format!(
                    "`{}` must be a lowercase data-boundary name such as `us`, `eu` or `apac`",
                    self.geography
                ),
            );
        }
        if let Capacity::Provisioned {
            tokens_per_minute, ..
        } = &self.capacity
            && *tokens_per_minute == 0
        {
            bad(
                "capacity.tokens_per_minute",
                "a provisioned endpoint needs a positive ceiling".into(),
            );
        }
        let p = &self.pricing;
        for (field, value) in [
            ("input_per_million", Some(p.input_per_million)),
            ("output_per_million", Some(p.output_per_million)),
            ("cached_input_per_million", p.cached_input_per_million),
            ("hourly", p.hourly),
        ] {
            if value.is_some_and(|v| v.is_sign_negative() && !v.is_zero()) {
                bad(&format!("pricing.{field}"), "must not be negative".into());
            }
        }
        if p.hourly.is_some() && !self.is_provisioned() {
            bad(
                "pricing.hourly",
                "only provisioned endpoints have an hourly price".into(),
            );
        }
        if matches!(
            self.provider,
            Provider::VertexGemini | Provider::VertexAnthropic
        ) && self.project.as_deref().is_none_or(str::is_empty)
        {
            bad("project", "Vertex endpoints need a GCP project".into());
        }
        if let Some(url) = &self.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bad(
                "base_url",
                format!("`{url}` must start with http:// or https://"),
            );
        }
        if self.azure.is_some() && self.provider != Provider::Openai {
            bad(
                "azure",
                "only OpenAI-compatible endpoints have Azure deployments".into(),
            );
        }
        if self.provider == Provider::Openai && self.base_url.is_none() && self.azure.is_some() {
            bad(
                "base_url",
                "an Azure deployment needs the resource URL (https://NAME.openai.azure.com)".into(),
            );
        }
        match (&self.auth, self.provider) {
            (AuthConfig::Aws { .. }, p) if p != Provider::Bedrock => bad(
                "auth",
                "`aws` authentication is for Bedrock endpoints".into(),
            ),
            (AuthConfig::GcpCredentialsFile { .. }, p)
                if !matches!(p, Provider::VertexGemini | Provider::VertexAnthropic) =>
            {
                bad(
                    "auth",
                    "`gcp-credentials-file` is for Vertex endpoints".into(),
                )
            }
            (AuthConfig::ApiKeyEnv { env }, _)
                if (!env
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    || env.is_empty()) =>
            {
                bad("auth.env", "must be the NAME of an environment variable (A-Z, 0-9, _), never the key itself".into());
            }
            _ => {}
        }
        let caps = self.capabilities();
        if self.provider == Provider::VertexGemini && caps.continuation == Continuation::Prefill {
            bad(
                "capabilities.continuation",
                "Gemini's API has no assistant prefill: use `instruction` (or `none`)".into(),
            );
        }
        if caps.max_output_tokens == 0 || caps.context_window == 0 {
            bad(
                "capabilities",
                "context_window and max_output_tokens must be positive".into(),
            );
        }
        if caps.max_output_tokens > caps.context_window {
            bad(
                "capabilities.max_output_tokens",
                format!(
                    "{} exceeds context_window {}",
                    caps.max_output_tokens, caps.context_window
                ),
            );
        }
        let t = &self.timeouts;
        if t.connect_ms == 0 || t.request_ms == 0 || t.stream_idle_ms == 0 {
            bad("timeouts", "every timeout must be positive".into());
        }
        out
    }
}

/// Longest region, project, model or deployment name accepted.
const MAX_NAME_LEN: usize = 128;

/// A cloud region name (`us-east-1`, `europe-west4`, `eastus`, `global`).
fn is_region(region: &str) -> bool {
    region.len() <= MAX_NAME_LEN
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
}

/// A GCP project id (`crossbar-prod`), or a domain-scoped one (`example.com:crossbar`).
fn is_gcp_project(project: &str) -> bool {
    let id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if project.len() > MAX_NAME_LEN {
        return false;
    }
    match project.split_once(':') {
        None => id(project),
        Some((domain, name)) => {
            id(name)
                && !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        }
    }
}

/// One path segment or query value of a URL, with nothing to escape and no way out
/// of its segment: letters, digits, '-', '_', '.' and (with `extra`) a few more; never
/// `.` or `..`.
fn is_segment_with(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s != "."
        && s != ".."
        && !s.contains("..")
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || extra.contains(&b)
        })
}

fn is_url_segment(s: &str) -> bool {
    is_segment_with(s, &[])
}

impl EndpointConfig {
    /// Why the model id cannot be put where the provider puts it, if it cannot:
    /// Vertex puts it in the URL's path (`.../models/{model}:{method}`); the AWS SDK
    /// percent-encodes it, but an id with anything outside the ids and ARNs Bedrock
    /// knows is refused all the same.
    fn model_charset_problem(&self) -> Option<String> {
        if self.model.trim().is_empty() {
            return None; // said already
        }
        match self.provider {
            Provider::VertexGemini | Provider::VertexAnthropic
                if !is_segment_with(&self.model, b"@") =>
            {
                Some(format!(
                    "`{}` must be a Vertex model name: letters, digits, '-', '_', '.' and '@'",
                    self.model
                ))
            }
            Provider::Bedrock if !is_segment_with(&self.model, b":/@") => Some(format!(
                "`{}` must be a Bedrock model id, inference profile or ARN: letters, digits, '-', '_', '.', ':', '/' and '@'",
                self.model
            )),
            Provider::Openai if self.model.chars().any(char::is_control) => {
                Some("must not contain control characters".into())
            }
            _ => None,
        }
    }
}

/// The usual geography of a cloud region name, for defaults and the demo: AWS
/// (`eu-central-1`), GCP (`europe-west4`) and Azure (`westeurope`) spellings.
pub fn geography_of(region: &str) -> &'static str {
    let r = region.to_ascii_lowercase();
    if r.starts_with("eu") || r.contains("europe") || r.starts_with("uk") {
        "eu"
    } else if r.starts_with("ap")
        || r.starts_with("asia")
        || r.contains("australia")
        || r.contains("japan")
        || r.contains("korea")
    {
        "apac"
    } else if r.starts_with("ca") || r.starts_with("canada") {
        "ca"
    } else if r.starts_with("sa") || r.starts_with("southamerica") || r.contains("brazil") {
        "sa"
    } else if r.starts_with("me") || r.starts_with("il") || r.starts_with("af") {
        "mea"
    } else {
        "us"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_from_toml_with_defaults() {
        let e: EndpointConfig = toml_like(
            r#"{"name": "bedrock-use1", "provider": "bedrock", "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                "region": "us-east-1", "geography": "us", "auth": {"method": "aws", "role_arn": "arn:aws:iam::1:role/crossbar"},
                "capabilities": {"images": false}}"#,
        );
        assert!(e.problems("endpoints.bedrock-use1").is_empty());
        let caps = e.capabilities();
        assert!(caps.tools && !caps.images && !caps.json_mode);
        assert_eq!(e.timeouts, Timeouts::default());
    }

    #[test]
    fn problems_name_their_paths() {
        let mut e = EndpointConfig::new("bad name", Provider::VertexGemini, "", "europe-west4");
        e.auth = AuthConfig::ApiKeyEnv {
            env: "sk-live-abc123".into(),
        };
        e.capabilities.max_output_tokens = Some(10_000_000);
        let problems: Vec<String> = e
            .problems("endpoints[0]")
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "endpoints[0].name",
            "endpoints[0].model",
            "endpoints[0].project",
            "endpoints[0].auth.env",
            "endpoints[0].capabilities.max_output_tokens",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_secret_fields_are_rejected() {
        assert!(
            serde_json::from_str::<EndpointConfig>(
                r#"{"name":"a","provider":"openai","model":"m","region":"r","api_key":"sk-1"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<AuthConfig>(r#"{"method":"aws","secret_access_key":"x"}"#)
                .is_err()
        );
    }

    /// Vertex builds its URL (host name included) from region, project and model: a
    /// crafted value must not move the request, and the GCP token with it, elsewhere.
    #[test]
    fn region_project_and_model_that_would_change_the_url_are_refused() {
        let vertex = |region: &str, project: &str, model: &str| {
            let mut e = EndpointConfig::new("v", Provider::VertexGemini, model, region);
            e.project = Some(project.into());
            e.geography = "us".into();
            e.problems("endpoints[0]")
                .iter()
                .map(|p| p.path.clone())
                .collect::<Vec<_>>()
        };
        assert!(vertex("us-central1", "crossbar-prod", "gemini-2.0-flash-001").is_empty());
        assert!(
            vertex(
                "global",
                "example.com:crossbar",
                "claude-3-5-sonnet-v2@20241022"
            )
            .is_empty()
        );
        for (region, project, model, field) in [
            ("evil.example/x#", "p", "gemini", "endpoints[0].region"),
            (
                "us-central1.attacker.example",
                "p",
                "gemini",
                "endpoints[0].region",
            ),
            ("US-CENTRAL1", "p", "gemini", "endpoints[0].region"),
            (
                "us-central1",
                "p/../../other",
                "gemini",
                "endpoints[0].project",
            ),
            ("us-central1", "p?x=", "gemini", "endpoints[0].project"),
            (
                "us-central1",
                "p",
                "../../../v1/projects/x",
                "endpoints[0].model",
            ),
            (
                "us-central1",
                "p",
                "gemini:streamGenerateContent?alt=",
                "endpoints[0].model",
            ),
            ("us-central1", "p", "..", "endpoints[0].model"),
        ] {
            let problems = vertex(region, project, model);
            assert!(
                problems.iter().any(|p| p == field),
                "{region} / {project} / {model}: expected {field} in {problems:?}"
            );
        }
        let mut bedrock = EndpointConfig::new(
            "b",
            Provider::Bedrock,
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc",
            "us-east-1",
        );
        assert!(bedrock.problems("e").is_empty());
        bedrock.region = "us-east-1.evil.example#".into();
        assert!(bedrock.problems("e").iter().any(|p| p.path == "e.region"));
        let mut azure = EndpointConfig::new("a", Provider::Openai, "gpt-4o", "eastus");
        azure.base_url = Some("https://x.openai.azure.com".into());
        azure.azure = Some(AzureDeployment {
            deployment: "gpt-4o/../../admin".into(),
            api_version: "2024-10-21&x=1".into(),
        });
        let paths: Vec<String> = azure.problems("e").iter().map(|p| p.path.clone()).collect();
        assert!(
            paths.contains(&"e.azure.deployment".to_owned())
                && paths.contains(&"e.azure.api_version".to_owned()),
            "{paths:?}"
        );
    }

    fn toml_like(json: &str) -> EndpointConfig {
        serde_json::from_str(json).unwrap()
    }
}
