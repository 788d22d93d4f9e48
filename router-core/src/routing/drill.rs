//! Disaster-recovery drills as routing sees them: a cloud, a region or an endpoint
//! taken out of the plan on purpose, for a share of requests, until a moment.
//!
//! A drill is an overlay on the plan, not a breaker state: the breaker of a drilled
//! endpoint is not touched, so its health data stays true and the drill leaves no
//! trace once it ends. Drills are the server's (stored, audited, expiring, followed
//! by every replica); the engine only applies the active ones it is given.

use serde::{Deserialize, Serialize};

use crate::config::EndpointConfig;

/// What a drill takes out.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillTarget {
    /// A cloud (`aws`, `gcp`, `azure`, `openai`) or a provider (`bedrock`,
    /// `vertex-gemini`, ...).
    Cloud(String),
    Region(String),
    Endpoint(String),
}

impl DrillTarget {
    pub fn matches(&self, endpoint: &EndpointConfig) -> bool {
        match self {
            Self::Cloud(c) => c == endpoint.cloud() || c == endpoint.provider.as_str(),
            Self::Region(r) => r == &endpoint.region,
            Self::Endpoint(e) => e == &endpoint.name,
        }
    }
}

/// One active drill.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRule {
    pub id: String,
    pub target: DrillTarget,
    /// Share of requests for which the target is taken out, in (0, 1].
    pub fraction: f64,
    /// Wall-clock end, ms since the Unix epoch.
    pub until_ms: i64,
}

impl DrillRule {
    /// Whether this drill takes `endpoint` out of a request at wall-clock
    /// `now_ms`, for a request whose roll is `roll` (uniform in [0, 1)).
    pub fn takes_out(&self, endpoint: &EndpointConfig, now_ms: i64, roll: f64) -> bool {
        now_ms < self.until_ms && roll < self.fraction && self.target.matches(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AzureDeployment, Provider};

    fn rule(target: DrillTarget, fraction: f64) -> DrillRule {
        DrillRule {
            id: "d1".into(),
            target,
            fraction,
            until_ms: 1_000,
        }
    }

    #[test]
    fn a_drill_matches_by_cloud_provider_region_or_name() {
        let bedrock = EndpointConfig::new("claude-us", Provider::Bedrock, "m", "us-east-1");
        let mut azure = EndpointConfig::new("gpt-eu", Provider::Openai, "m", "swedencentral");
        azure.azure = Some(AzureDeployment {
            deployment: "d".into(),
            api_version: "2024-10-21".into(),
        });
        let cloud = |c: &str| DrillTarget::Cloud(c.into());
        assert!(cloud("aws").matches(&bedrock) && cloud("bedrock").matches(&bedrock));
        assert!(!cloud("gcp").matches(&bedrock));
        assert!(cloud("azure").matches(&azure) && !cloud("aws").matches(&azure));
        assert!(DrillTarget::Region("us-east-1".into()).matches(&bedrock));
        assert!(DrillTarget::Endpoint("gpt-eu".into()).matches(&azure));
        assert!(!DrillTarget::Endpoint("gpt-eu".into()).matches(&bedrock));
    }

    #[test]
    fn a_drill_takes_out_its_share_of_requests_until_it_ends() {
        let e = EndpointConfig::new("a", Provider::Bedrock, "m", "us-east-1");
        let half = rule(DrillTarget::Endpoint("a".into()), 0.5);
        assert!(half.takes_out(&e, 999, 0.49));
        assert!(!half.takes_out(&e, 999, 0.5));
        assert!(!half.takes_out(&e, 1_000, 0.0), "ended");
        assert!(rule(DrillTarget::Endpoint("a".into()), 1.0).takes_out(&e, 0, 0.999));
    }
}
