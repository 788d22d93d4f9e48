//! An edit in progress: what the feature editor changes, and the configuration it
//! makes when applied to the version the edit started from.

use router_core::admin::Change;
use router_core::config::{Config, ExperimentConfig, FeatureConfig, Problem, RouterConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub binding: Vec<String>,
    pub experiment: Option<ExperimentConfig>,
}

impl Draft {
    pub fn of(feature: &FeatureConfig) -> Self {
        Self {
            binding: feature.binding.clone(),
            experiment: feature.experiment.clone(),
        }
    }

    /// `base` with this draft applied to feature `name`.
    pub fn apply(&self, base: &RouterConfig, name: &str) -> RouterConfig {
        let mut config = base.clone();
        if let Some(f) = config.feature_mut(name) {
            f.binding = self.binding.clone();
            f.experiment = self.experiment.clone();
        }
        config
    }
}

/// Every problem of `config`, by the server's rules.
pub fn problems(config: &RouterConfig) -> Vec<Problem> {
    match Config::validate(config.clone()) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

/// What publishing `edited` over `base` changes: router-core's configuration diff,
/// the one the server returns from the publish and writes to the audit log.
pub fn changes(base: &RouterConfig, edited: &RouterConfig) -> Result<Vec<Change>, String> {
    router_core::config::diff::config_changes(base, edited)
        .map_err(|e| format!("cannot compare the configurations: {e}"))
}

/// The validator's path of a feature (its name; see `config::validate`).
pub fn feature_path(name: &str) -> String {
    format!("features.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::config::{EndpointConfig, Problems, Provider, VariantConfig};

    fn config() -> RouterConfig {
        let mut recap = FeatureConfig::new("recap", &[]);
        recap.experiment = Some(ExperimentConfig {
            id: "recap-1".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 50.0,
                    binding: vec!["br".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 50.0,
                    binding: vec!["gem".into()],
                },
            ],
        });
        let mut gem = EndpointConfig::new("gem", Provider::VertexGemini, "gemini", "us-central1");
        gem.project = Some("p".into());
        RouterConfig {
            endpoints: vec![
                EndpointConfig::new("br", Provider::Bedrock, "claude", "us-east-1"),
                gem,
            ],
            features: vec![FeatureConfig::new("summarize", &["br", "gem"]), recap],
            ..Default::default()
        }
    }

    #[test]
    fn the_servers_rules_flag_a_split_that_does_not_sum_to_100_at_the_variants_path() {
        let base = config();
        assert_eq!(problems(&base), vec![]);
        let mut draft = Draft::of(base.feature("recap").unwrap());
        draft.experiment.as_mut().unwrap().variants[0].percent = 40.0;
        let edited = draft.apply(&base, "recap");
        let all = Problems(problems(&edited));
        let under: Vec<&Problem> = all.under("features.recap.experiment.variants").collect();
        assert_eq!(under.len(), 1, "{all}");
        assert!(
            under[0].message.contains("sum to 90"),
            "{}",
            under[0].message
        );
        assert_eq!(
            changes(&base, &edited)
                .unwrap()
                .iter()
                .map(|c| c.path.as_str())
                .collect::<Vec<_>>(),
            ["features.recap.experiment.variants.a.percent"]
        );
    }

    #[test]
    fn an_unknown_endpoint_in_a_binding_is_reported_at_its_index() {
        let base = config();
        let mut draft = Draft::of(base.feature("summarize").unwrap());
        draft.binding.push("nope".into());
        let edited = draft.apply(&base, "summarize");
        let all = Problems(problems(&edited));
        let at: Vec<&Problem> = all.under("features.summarize.binding[2]").collect();
        assert_eq!(at.len(), 1, "{all}");
        assert_eq!(feature_path("summarize"), "features.summarize");
        assert_eq!(changes(&base, &base), Ok(vec![]));
    }
}
