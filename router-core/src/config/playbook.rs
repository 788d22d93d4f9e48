//! A feature's migration playbook, as far as routing must know it: its **shadows**
//! (a candidate binding that also receives a sample of the feature's requests, off
//! the client's path) and its **rollout** (the share of users moved to a target
//! binding).
//!
//! Only what every replica must route the same way is configuration, published as a
//! version like any edit: a shadow, or a rollout's current percentage. The rest of a
//! rollout — its stages, gates and history — is the server's (its store and its
//! controller, which publishes each stage change here).
//!
//! Both are inside the feature's data boundary by validation: a shadow or a rollout
//! target outside it is refused, like a binding.

use serde::{Deserialize, Serialize};

/// A shadow: a candidate binding that is sent a sample of the feature's requests as
/// well, whose answers are compared with the incumbent's but never returned.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub id: String,
    /// The candidate's endpoints: primary, then backups.
    pub candidate: Vec<String>,
    /// Share of the feature's requests also sent to the candidate, 0.1–100.
    pub sample_percent: f64,
    /// Limits the shadow to this share of users (by the sticky hash, so a user is
    /// always in or always out); unset: every user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_percent: Option<f64>,
    /// The time window, ms since the Unix epoch; unset ends: open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Shadow a stream as a stream (to judge the candidate's time to first token);
    /// otherwise streams are shadowed as whole requests.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub judge_ttft: bool,
}

/// A rollout's routing: the share of users (by the sticky hash) served by the
/// target binding instead of the feature's (or one variant's) own.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    pub id: String,
    /// The target's endpoints: primary, then backups.
    pub target: Vec<String>,
    /// The current stage's share of users, 0–100. Widening only adds users: a
    /// user moved stays moved.
    pub percent: f64,
    /// Roll out one experiment variant only; unset: the whole feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A validated shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    pub id: String,
    pub candidate: Vec<crate::config::EndpointId>,
    /// Share of requests, as a fraction in (0, 1].
    pub sample: f64,
    /// Share of users, as a fraction in (0, 1]; 1 when unset.
    pub cohort: f64,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub judge_ttft: bool,
}

impl Shadow {
    /// Whether the shadow is active at wall-clock time `now_ms`.
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.from_ms.is_none_or(|from| now_ms >= from)
            && self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// A validated rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub id: String,
    pub target: Vec<crate::config::EndpointId>,
    /// The share of users, as a fraction in [0, 1].
    pub fraction: f64,
    pub variant: Option<String>,
}

/// The problems of a feature's shadows and rollout that are not about their
/// bindings (those are checked like any binding): ids, percentages, windows.
pub(crate) fn problems(
    path: &str,
    shadows: &[ShadowConfig],
    rollout: Option<&RolloutConfig>,
    variants: &[&str],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (i, s) in shadows.iter().enumerate() {
        let at = format!("{path}.shadows[{i}]");
        if !super::valid_name(&s.id) {
            out.push((
                format!("{at}.id"),
                format!("`{}` must be 1–64 letters, digits, '-', '_' or '.'", s.id),
            ));
        }
        if !ids.insert(s.id.as_str()) {
            out.push((
                format!("{at}.id"),
                format!("shadow `{}` is defined twice", s.id),
            ));
        }
        if !(s.sample_percent.is_finite() && (0.1..=100.0).contains(&s.sample_percent)) {
            out.push((
                format!("{at}.sample_percent"),
                format!("{} must be between 0.1 and 100", s.sample_percent),
            ));
        }
        if let Some(c) = s.cohort_percent
            && !(c.is_finite() && c > 0.0 && c <= 100.0)
        {
            out.push((
                format!("{at}.cohort_percent"),
                format!("{c} must be in (0, 100]"),
            ));
        }
        if let (Some(from), Some(until)) = (s.from_ms, s.until_ms)
            && until <= from
        {
            out.push((
                format!("{at}.until_ms"),
                "the window must end after it starts".into(),
            ));
        }
    }
    if let Some(r) = rollout {
        let at = format!("{path}.rollout");
        if !super::valid_name(&r.id) {
            out.push((
                format!("{at}.id"),
                format!("`{}` must be 1–64 letters, digits, '-', '_' or '.'", r.id),
            ));
        }
        if !(r.percent.is_finite() && (0.0..=100.0).contains(&r.percent)) {
            out.push((
                format!("{at}.percent"),
                format!("{} must be between 0 and 100", r.percent),
            ));
        }
        if let Some(v) = &r.variant
            && !variants.contains(&v.as_str())
        {
            out.push((
                format!("{at}.variant"),
                format!("the feature has no variant `{v}`"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadow(sample: f64) -> ShadowConfig {
        ShadowConfig {
            id: "cheaper".into(),
            candidate: vec!["c".into()],
            sample_percent: sample,
            cohort_percent: None,
            from_ms: None,
            until_ms: None,
            judge_ttft: false,
        }
    }

    #[test]
    fn a_shadow_samples_between_a_tenth_of_a_percent_and_everything() {
        assert!(problems("f", &[shadow(0.1)], None, &[]).is_empty());
        assert!(problems("f", &[shadow(100.0)], None, &[]).is_empty());
        let p = problems("f", &[shadow(0.05), shadow(f64::NAN)], None, &[]);
        let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "f.shadows[0].sample_percent",
                "f.shadows[1].id",
                "f.shadows[1].sample_percent"
            ]
        );
    }

    #[test]
    fn a_shadow_window_must_end_after_it_starts_and_knows_when_it_is_active() {
        let mut s = shadow(5.0);
        s.from_ms = Some(100);
        s.until_ms = Some(100);
        assert_eq!(problems("f", &[s], None, &[])[0].0, "f.shadows[0].until_ms");
        let active = Shadow {
            id: "x".into(),
            candidate: vec![0],
            sample: 0.5,
            cohort: 1.0,
            from_ms: Some(100),
            until_ms: Some(200),
            judge_ttft: false,
        };
        assert!(!active.active_at(99));
        assert!(active.active_at(100));
        assert!(!active.active_at(200));
    }

    #[test]
    fn a_rollout_names_an_existing_variant_and_a_percentage() {
        let r = RolloutConfig {
            id: "to-eu".into(),
            target: vec!["c".into()],
            percent: 101.0,
            variant: Some("b".into()),
        };
        let p = problems("f", &[], Some(&r), &["a"]);
        let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["f.rollout.percent", "f.rollout.variant"]);
        let ok = RolloutConfig {
            percent: 25.0,
            variant: Some("a".into()),
            ..r
        };
        assert!(problems("f", &[], Some(&ok), &["a"]).is_empty());
    }
}
