//! Candidate order: which endpoints a request may try, in which order.
//!
//! One pure function, [`plan`], in the shape of Pingora's selection: a binding (the
//! variant's, a rollout's target, or a shadow's candidate) in preference order
//! (primary, then backups), passed through three filters that each have one job:
//!
//! 1. the **data boundary**, a hard filter applied first: nothing later (breakers,
//!    capacity, spillover) can add an endpoint outside the feature's geographies;
//! 2. **capacity**: a provisioned endpoint whose ceiling the request would exceed is
//!    replaced, in place, by its on-demand sibling (a spill, not a failure);
//! 3. the **breaker**: open endpoints are skipped; an endpoint in its partial-open
//!    ramp is admitted for its stage's share of requests, and otherwise kept as a last
//!    resort behind every admitted candidate (a recovering endpoint is better than
//!    failing the request).
//!
//! The engine asks the live state through [`Gate`]; tests use a table.

use std::time::Duration;

use crate::api::{Error, ErrorKind};
use crate::config::{Config, EndpointId, Feature};

/// A breaker's answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted,
    /// In the partial-open ramp but not picked for this request.
    Deferred,
    /// Open (or forced open): not to be tried. `retry_in` is how long until it may
    /// admit again, when known.
    Rejected {
        reason: String,
        retry_in: Option<Duration>,
    },
}

/// The live state [`plan`] consults.
pub trait Gate {
    /// Breaker admission for one request; `roll` is uniform in [0, 1).
    fn admit(&mut self, endpoint: EndpointId, roll: f64) -> Admission;
    /// Does a request of `estimate` tokens fit under this provisioned endpoint's
    /// ceiling right now?
    fn fits(&mut self, endpoint: EndpointId, estimate: u64) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub endpoint: EndpointId,
    /// Set when this is the on-demand sibling standing in for a full provisioned one.
    pub spilled_from: Option<EndpointId>,
    /// Position in the binding: 0 is the primary; the fallback depth when it serves.
    pub position: usize,
}

/// The ordered candidates for one request, or why there are none.
pub fn plan(
    config: &Config,
    feature: &Feature,
    binding: &[EndpointId],
    estimate: u64,
    gate: &mut impl Gate,
    roll: &mut impl FnMut() -> f64,
) -> Result<Vec<Candidate>, Error> {
    let geography = |id: EndpointId| config.endpoint(id).config.geography.as_str();
    let name = |id: EndpointId| config.endpoint(id).config.name.as_str();

    // 1. The data boundary, before anything else looks at the list.
    let eligible: Vec<(usize, EndpointId)> = binding
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, id)| feature.allows(geography(id)))
        .collect();
    if eligible.is_empty() {
        let boundary = feature
            .geographies
            .as_ref()
            .map(|g| g.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::NoEligibleEndpoint,
            format!(
                "feature `{}` may only be served in [{boundary}], and none of its endpoints is inside that boundary",
                feature.name
            ),
        ));
    }

    let mut admitted: Vec<Candidate> = Vec::with_capacity(eligible.len());
    let mut deferred: Vec<Candidate> = Vec::new();
    let mut rejected: Vec<(EndpointId, String, Option<Duration>)> = Vec::new();
    for (position, id) in eligible {
        // 2. Capacity: spill a full provisioned endpoint to its sibling, in place.
        let endpoint = config.endpoint(id);
        let mut choices = vec![Candidate {
            endpoint: id,
            spilled_from: None,
            position,
        }];
        if endpoint.capacity_tpm.is_some()
            && !gate.fits(id, estimate)
            && let Some(sibling) = endpoint.spill_to.filter(|&s| feature.allows(geography(s)))
        {
            // The sibling first; the full endpoint stays behind it, in case the
            // sibling's breaker is open (the provider may still have room).
            choices.insert(
                0,
                Candidate {
                    endpoint: sibling,
                    spilled_from: Some(id),
                    position,
                },
            );
        }
        // 3. The breaker.
        for candidate in choices {
            match gate.admit(candidate.endpoint, roll()) {
                Admission::Admitted => {
                    admitted.push(candidate);
                    break;
                }
                Admission::Deferred => {
                    deferred.push(candidate);
                    break;
                }
                Admission::Rejected { reason, retry_in } => {
                    rejected.push((candidate.endpoint, reason, retry_in));
                }
            }
        }
    }
    let mut out = admitted;
    out.extend(deferred);
    // An endpoint reached twice (a spill target that is also a later backup) is
    // tried once, at its first place.
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|c| {
        let first = !seen.contains(&c.endpoint);
        seen.push(c.endpoint);
        first
    });
    if out.is_empty() {
        let retry_in = rejected.iter().filter_map(|r| r.2).min();
        let detail: Vec<String> = rejected
            .iter()
            .map(|(id, reason, _)| format!("{} ({reason})", name(*id)))
            .collect();
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "every endpoint of feature `{}` is unavailable: {}",
                feature.name,
                detail.join("; ")
            ),
        )
        .with_retry_after(retry_in.map(|d| d.max(Duration::from_secs(1)))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{Capacity, EndpointConfig, FeatureConfig, Provider, RouterConfig};

    /// A gate from a table: each endpoint's admission and whether it has room.
    #[derive(Default)]
    struct Table {
        admission: HashMap<EndpointId, Admission>,
        full: Vec<EndpointId>,
    }

    impl Gate for Table {
        fn admit(&mut self, endpoint: EndpointId, _roll: f64) -> Admission {
            self.admission
                .get(&endpoint)
                .cloned()
                .unwrap_or(Admission::Admitted)
        }
        fn fits(&mut self, endpoint: EndpointId, _estimate: u64) -> bool {
            !self.full.contains(&endpoint)
        }
    }

    fn open() -> Admission {
        Admission::Rejected {
            reason: "breaker open".into(),
            retry_in: Some(Duration::from_secs(7)),
        }
    }

    /// us-prov (provisioned, spills to us-od), us-od, us-west, eu-a, eu-b.
    fn config(boundary: &[&str], binding: &[&str]) -> Config {
        let mut prov = EndpointConfig::new("us-prov", Provider::Bedrock, "m", "us-east-1");
        prov.capacity = Capacity::Provisioned {
            tokens_per_minute: 1000,
            spill_to: Some("us-od".into()),
        };
        let mut eu_prov = EndpointConfig::new("eu-prov", Provider::Bedrock, "m", "eu-central-1");
        eu_prov.capacity = Capacity::Provisioned {
            tokens_per_minute: 1000,
            spill_to: Some("eu-b".into()),
        };
        let raw = RouterConfig {
            endpoints: vec![
                prov,
                EndpointConfig::new("us-od", Provider::Bedrock, "m", "us-east-1"),
                EndpointConfig::new("us-west", Provider::Bedrock, "m", "us-west-2"),
                EndpointConfig::new("eu-a", Provider::VertexGemini, "m", "europe-west4"),
                EndpointConfig::new("eu-b", Provider::Bedrock, "m", "eu-central-1"),
                eu_prov,
            ]
            .into_iter()
            .map(|mut e| {
                e.project = Some("p".into());
                e
            })
            .collect(),
            features: vec![FeatureConfig {
                geographies: boundary.iter().map(|s| (*s).to_owned()).collect(),
                ..FeatureConfig::new("f", binding)
            }],
            ..RouterConfig::default()
        };
        Config::validate(raw).unwrap()
    }

    fn names(config: &Config, plan: &[Candidate]) -> Vec<String> {
        plan.iter()
            .map(|c| {
                let n = config.endpoint(c.endpoint).config.name.clone();
                match c.spilled_from {
                    Some(from) => format!("{n}<-{}", config.endpoint(from).config.name),
                    None => n,
                }
            })
            .collect()
    }

    fn run(config: &Config, gate: &mut Table) -> Result<Vec<String>, Error> {
        let f = config.feature("f").unwrap();
        plan(config, f, &f.variants[0].binding, 100, gate, &mut || 0.5).map(|p| names(config, &p))
    }

    #[test]
    fn primary_first_then_backups_in_order() {
        let c = config(&[], &["us-prov", "us-west", "eu-a"]);
        assert_eq!(
            run(&c, &mut Table::default()).unwrap(),
            ["us-prov", "us-west", "eu-a"]
        );
    }

    #[test]
    fn open_breakers_are_skipped_and_ramping_ones_go_last() {
        let c = config(&[], &["us-prov", "us-west", "eu-a"]);
        let mut gate = Table::default();
        gate.admission.insert(0, Admission::Deferred);
        gate.admission.insert(2, open());
        assert_eq!(run(&c, &mut gate).unwrap(), ["eu-a", "us-prov"]);
    }

    #[test]
    fn a_full_provisioned_endpoint_spills_to_its_sibling_in_place() {
        let c = config(&[], &["us-prov", "us-west"]);
        let mut gate = Table {
            full: vec![0],
            ..Table::default()
        };
        assert_eq!(run(&c, &mut gate).unwrap(), ["us-od<-us-prov", "us-west"]);
        // The sibling's breaker is open: the provisioned endpoint is still tried.
        gate.admission.insert(1, open());
        assert_eq!(run(&c, &mut gate).unwrap(), ["us-prov", "us-west"]);
    }

    #[test]
    fn a_spill_target_that_is_also_a_backup_is_tried_once() {
        let c = config(&[], &["us-prov", "us-od"]);
        let mut gate = Table {
            full: vec![0],
            ..Table::default()
        };
        assert_eq!(run(&c, &mut gate).unwrap(), ["us-od<-us-prov"]);
    }

    #[test]
    fn all_open_is_unavailable_with_reasons_and_retry_after() {
        let c = config(&[], &["us-west", "eu-a"]);
        let mut gate = Table::default();
        gate.admission.insert(2, open());
        gate.admission.insert(3, open());
        let e = run(&c, &mut gate).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message.contains("us-west (breaker open)") && e.message.contains("eu-a"),
            "{}",
            e.message
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    }

    /// The property: whatever the breakers and capacity say, no candidate is ever
    /// outside the boundary. Every combination of admission (3 states) and fullness
    /// (2) for all six endpoints is tried: 3^6 × 2^6 = 46,656 gates.
    #[test]
    fn the_data_boundary_is_never_crossed_under_any_breaker_and_capacity_state() {
        let c = config(&["eu"], &["eu-prov", "eu-a", "eu-b"]);
        let f = c.feature("f").unwrap();
        let states = [Admission::Admitted, Admission::Deferred, open()];
        let mut served = 0;
        for admission_code in 0..3usize.pow(6) {
            for full_mask in 0..(1u32 << 6) {
                let mut gate = Table::default();
                let mut code = admission_code;
                for id in 0..6 {
                    gate.admission.insert(id, states[code % 3].clone());
                    code /= 3;
                    if full_mask & (1 << id) != 0 {
                        gate.full.push(id);
                    }
                }
                match plan(&c, f, &f.variants[0].binding, 100, &mut gate, &mut || 0.5) {
                    Ok(p) => {
                        served += 1;
                        for cand in p {
                            assert_eq!(c.endpoint(cand.endpoint).config.geography, "eu");
                        }
                    }
                    Err(e) => assert_eq!(e.kind, ErrorKind::Unavailable),
                }
            }
        }
        assert!(served > 0);
    }

    #[test]
    fn a_boundary_with_no_endpoint_inside_is_a_clear_error() {
        // Validation refuses such a binding; the planner refuses it again at run time.
        let c = config(&[], &["us-west"]);
        let mut f = c.feature("f").unwrap().clone();
        f.geographies = Some(["eu".to_owned()].into());
        let e = plan(
            &c,
            &f,
            &f.variants[0].binding,
            1,
            &mut Table::default(),
            &mut || 0.5,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoEligibleEndpoint);
        assert!(e.message.contains("[eu]"), "{}", e.message);
    }
}
