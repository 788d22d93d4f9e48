//! The simulator's configuration: which endpoints to serve, and how they start.
//!
//! ```toml
//! seed = 42
//! control = "127.0.0.1:0"          # process-wide control API (optional)
//!
//! [[endpoint]]
//! name = "bedrock-us-east-1"
//! kind = "bedrock"                  # bedrock | vertex | openai | identity
//! listen = "127.0.0.1:0"            # port 0: any free port, printed at start
//! region = "us-east-1"
//! models = ["anthropic.claude-3-5-sonnet-20240620-v1:0"]   # empty: any model
//! auth = "signed"                   # none | present | signed | issued
//! [endpoint.faults]
//! ttft_ms = 300
//! tokens_per_second = 80
//! ```

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::faults::Faults;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every reply and fault roll: same seed and requests, same answers.
    #[serde(default)]
    pub seed: u64,
    /// Address of the process-wide control API (all endpoints by name). It stays up
    /// when an endpoint's own listener is closed by a `refuse` outage.
    #[serde(default)]
    pub control: Option<SocketAddr>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    pub kind: Kind,
    #[serde(default = "localhost_any_port")]
    pub listen: SocketAddr,
    /// Bedrock: the region in the SigV4 scope; Vertex: the `locations/{l}` path part.
    #[serde(default)]
    pub region: Option<String>,
    /// Model ids (Bedrock ids, ARNs, inference profiles; Vertex model names; OpenAI
    /// models or Azure deployments) this endpoint serves. Empty: any.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub auth: AuthMode,
    /// Largest prompt accepted, in tokens; beyond it the provider's context-length error.
    #[serde(default = "default_context_window")]
    pub context_window: u32,
    /// Identity endpoints: the `Authorization` value the container-credentials route
    /// requires (what `AWS_CONTAINER_AUTHORIZATION_TOKEN` holds). None: not checked.
    #[serde(default)]
    pub container_authorization: Option<String>,
    #[serde(default)]
    pub faults: Faults,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// AWS Bedrock runtime: Converse and ConverseStream.
    Bedrock,
    /// GCP Vertex AI: Gemini and Anthropic-on-Vertex publisher models.
    Vertex,
    /// OpenAI chat completions, including the Azure deployment URL form.
    Openai,
    /// Identity services for secretless auth: AWS container credentials and STS web
    /// identity, GCP STS token exchange, IAM generateAccessToken, metadata server.
    Identity,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bedrock => "bedrock",
            Self::Vertex => "vertex",
            Self::Openai => "openai",
            Self::Identity => "identity",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bedrock" => Ok(Self::Bedrock),
            "vertex" => Ok(Self::Vertex),
            "openai" => Ok(Self::Openai),
            "identity" => Ok(Self::Identity),
            other => Err(format!(
                "unknown endpoint kind `{other}` (bedrock, vertex, openai, identity)"
            )),
        }
    }
}

/// How strictly a simulated endpoint checks the caller's credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No check.
    None,
    /// A credential of the right form must be present (Bedrock: a SigV4
    /// `Authorization` header; Vertex/OpenAI: a bearer token or `api-key`).
    Present,
    /// As `present`, and a SigV4 scope must name this endpoint's region and service.
    #[default]
    Signed,
    /// As `signed`, and the credential must have been issued by this process's
    /// identity endpoint (an access key id or bearer token it handed out).
    Issued,
}

fn localhost_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_context_window() -> u32 {
    200_000
}

impl EndpointSpec {
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            kind,
            listen: localhost_any_port(),
            region: None,
            models: Vec::new(),
            auth: AuthMode::default(),
            context_window: default_context_window(),
            container_authorization: None,
            faults: Faults::default(),
        }
    }

    /// Does this endpoint serve `model`? (An empty model list serves any.)
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

impl SimConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: SimConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(config)
    }

    /// Every problem at once, each with its path.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = format!("endpoint[{i}] ({})", e.name);
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                problems.push(format!("{at}.name: use letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(e.name.as_str()) {
                problems.push(format!("{at}.name: duplicate endpoint name"));
            }
            if let Err(p) = e.faults.validate() {
                problems.push(format!("{at}.faults: {p}"));
            }
            if e.context_window == 0 {
                problems.push(format!("{at}.context_window: must be positive"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
            seed = 42
            control = "127.0.0.1:0"
            [[endpoint]]
            name = "bedrock-us-east-1"
            kind = "bedrock"
            region = "us-east-1"
            models = ["anthropic.claude-3-5-sonnet-20240620-v1:0"]
            [endpoint.faults]
            ttft_ms = 300
            tokens_per_second = 80
        "#;
        let c: SimConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.endpoints[0].faults.ttft_ms, 300);
        assert_eq!(c.endpoints[0].auth, AuthMode::Signed);
        assert!(c.endpoints[0].serves("anthropic.claude-3-5-sonnet-20240620-v1:0"));
        assert!(!c.endpoints[0].serves("other"));
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
            [[endpoint]]
            name = "a b"
            kind = "openai"
            [endpoint.faults]
            errors = { throttle = 2.0 }
            [[endpoint]]
            name = "x"
            kind = "openai"
            [[endpoint]]
            name = "x"
            kind = "vertex"
        "#;
        let err = toml::from_str::<SimConfig>(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint[0] (a b).name"), "{err}");
        assert!(err.contains("errors.throttle"), "{err}");
        assert!(err.contains("endpoint[2] (x).name: duplicate"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(
            toml::from_str::<SimConfig>("[[endpoint]]\nname='a'\nkind='openai'\nmodle='x'")
                .is_err()
        );
        assert!(toml::from_str::<SimConfig>("[[endpoint]]\nname='a'\nkind='azure'").is_err());
    }
}
