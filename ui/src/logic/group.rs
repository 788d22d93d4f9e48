//! The overview's layout: endpoints grouped by cloud (provider family), then region.
//!
//! The groups hold endpoint *names* only: each card reads its own live values, so a
//! snapshot that changes numbers (every second) does not rebuild the layout, and the
//! layout changes only when endpoints appear, disappear or move.

use router_core::admin::EndpointHealth;
use router_core::admin::StateName;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloudGroup {
    /// The provider family (`bedrock`, `vertex-gemini`, ...).
    pub cloud: String,
    pub regions: Vec<RegionGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegionGroup {
    pub region: String,
    pub geography: String,
    pub endpoints: Vec<String>,
}

/// Known clouds first, in a fixed order people learn; unknown ones after, by name.
fn cloud_rank(cloud: &str) -> (usize, &str) {
    let rank = ["bedrock", "vertex-gemini", "vertex-anthropic", "openai"]
        .iter()
        .position(|c| *c == cloud)
        .unwrap_or(usize::MAX);
    (rank, cloud)
}

/// Groups endpoints by cloud, then region (alphabetical), names sorted inside.
pub fn by_cloud(endpoints: &[EndpointHealth]) -> Vec<CloudGroup> {
    let mut sorted: Vec<&EndpointHealth> = endpoints.iter().collect();
    sorted.sort_by(|a, b| {
        cloud_rank(&a.provider)
            .cmp(&cloud_rank(&b.provider))
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut clouds: Vec<CloudGroup> = Vec::new();
    for e in sorted {
        if clouds.last().is_none_or(|c| c.cloud != e.provider) {
            clouds.push(CloudGroup {
                cloud: e.provider.clone(),
                regions: Vec::new(),
            });
        }
        let cloud = clouds.last_mut().expect("pushed above");
        if cloud.regions.last().is_none_or(|r| r.region != e.region) {
            cloud.regions.push(RegionGroup {
                region: e.region.clone(),
                geography: e.geography.clone(),
                endpoints: Vec::new(),
            });
        }
        let region = cloud.regions.last_mut().expect("pushed above");
        region.endpoints.push(e.name.clone());
    }
    clouds
}

/// A cloud's name for people.
pub fn cloud_label(cloud: &str) -> String {
    match cloud {
        "bedrock" => "AWS · Bedrock".to_owned(),
        "vertex-gemini" => "GCP · Vertex AI Gemini".to_owned(),
        "vertex-anthropic" => "GCP · Vertex AI Anthropic".to_owned(),
        "openai" => "OpenAI-compatible".to_owned(),
        other => other.to_owned(),
    }
}

/// How many endpoints are in each state: (closed, ramp, open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub closed: usize,
    pub ramp: usize,
    pub open: usize,
}

impl StateCounts {
    pub fn of<'a>(states: impl IntoIterator<Item = &'a StateName>) -> Self {
        let mut c = Self::default();
        for s in states {
            match s {
                StateName::Closed => c.closed += 1,
                StateName::Ramp => c.ramp += 1,
                StateName::Open => c.open += 1,
            }
        }
        c
    }

    pub fn total(&self) -> usize {
        self.closed + self.ramp + self.open
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use router_core::admin::WindowStats;
    use router_core::admin::{BreakerView, Override, Reason, Signal};

    pub(crate) fn endpoint(
        name: &str,
        provider: &str,
        region: &str,
        state: StateName,
    ) -> EndpointHealth {
        EndpointHealth {
            name: name.into(),
            provider: provider.into(),
            model: "m".into(),
            region: region.into(),
            geography: "us".into(),
            provisioned: false,
            spill_to: None,
            breaker: BreakerView {
                state,
                since_ms: 0,
                elapsed_ms: 0,
                reason: Reason {
                    signal: Signal::Initial,
                    value: 0.0,
                    threshold: 0.0,
                    message: String::new(),
                },
                admission: 1.0,
                stage: None,
                stages: 4,
                stage_requests: None,
                trips: 0,
                override_mode: Override::Auto,
                open_until_ms: None,
            },
            stats: WindowStats::default(),
            capacity_utilisation: None,
            in_flight: 0,
        }
    }

    #[test]
    fn endpoints_group_by_known_cloud_order_then_region_then_name() {
        let eps = [
            endpoint("oai-east", "openai", "eastus", StateName::Closed),
            endpoint("gem-eu", "vertex-gemini", "europe-west4", StateName::Closed),
            endpoint("br-use1-b", "bedrock", "us-east-1", StateName::Open),
            endpoint("br-euc1", "bedrock", "eu-central-1", StateName::Closed),
            endpoint("br-use1-a", "bedrock", "us-east-1", StateName::Ramp),
            endpoint("custom", "acme", "mars-1", StateName::Closed),
        ];
        let groups = by_cloud(&eps);
        type Shape = Vec<(String, Vec<(String, Vec<String>)>)>;
        let shape: Shape = groups
            .into_iter()
            .map(|c| {
                (
                    c.cloud,
                    c.regions
                        .into_iter()
                        .map(|r| (r.region, r.endpoints))
                        .collect(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shape,
            vec![
                (
                    "bedrock".into(),
                    vec![
                        ("eu-central-1".into(), s(&["br-euc1"])),
                        ("us-east-1".into(), s(&["br-use1-a", "br-use1-b"])),
                    ]
                ),
                (
                    "vertex-gemini".into(),
                    vec![("europe-west4".into(), s(&["gem-eu"]))]
                ),
                ("openai".into(), vec![("eastus".into(), s(&["oai-east"]))]),
                ("acme".into(), vec![("mars-1".into(), s(&["custom"]))]),
            ]
        );
        assert!(by_cloud(&[]).is_empty());
    }

    #[test]
    fn states_are_counted() {
        let c = StateCounts::of(&[StateName::Closed, StateName::Open, StateName::Closed]);
        assert_eq!((c.closed, c.ramp, c.open, c.total()), (2, 0, 1, 3));
        assert_eq!(cloud_label("bedrock"), "AWS · Bedrock");
        assert_eq!(cloud_label("acme"), "acme");
    }
}
