//! Variant selection: a pure function of (feature, experiment id, sticky key).
//!
//! The key is hashed to a point in [0, 1) and the variant is the one whose cumulative
//! range holds it. Because the point depends only on the key (and the experiment id),
//! a user stays in their variant across requests, replicas and restarts; and because
//! ranges are cumulative, changing 50/50 to 60/40 moves exactly the users in
//! [0.5, 0.6): the 10 % that must move, no one else. A new experiment id reshuffles
//! everyone, which is what starting a new experiment should do.

use crate::config::{Feature, Variant};

/// A stable 64-bit hash: FNV-1a over the parts (with a separator so `("ab","c")` and
/// `("a","bc")` differ), finished with MurmurHash3's fmix64 for a uniform spread.
/// Stable across platforms, versions and processes: assignments must not change when
/// the router is upgraded.
pub fn stable_hash(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for &b in part.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// A hash as a point in [0, 1) (53 bits: every value exactly representable).
pub fn unit_interval(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a sticky key falls for this feature's experiment.
pub fn assignment_point(feature: &str, experiment_id: &str, sticky_key: &str) -> f64 {
    unit_interval(stable_hash(&[feature, experiment_id, sticky_key]))
}

/// The variant a point in [0, 1) selects.
pub fn variant_at(feature: &Feature, point: f64) -> &Variant {
    feature
        .variants
        .iter()
        .find(|v| point < v.upper && v.percent > 0.0)
        // Only reachable when the point sits in the range of a 0 % variant at the
        // top; validation guarantees a non-empty list and a last upper of 1.
        .or_else(|| feature.variants.iter().rev().find(|v| v.percent > 0.0))
        .unwrap_or(&feature.variants[0])
}

/// The variant for a request: by its sticky key when it has one, else by `roll`
/// (a uniform random draw in [0, 1) from the caller).
pub fn select_variant<'f>(
    feature: &'f Feature,
    sticky_key: Option<&str>,
    roll: f64,
) -> &'f Variant {
    if feature.variants.len() == 1 {
        return &feature.variants[0];
    }
    let point = match (sticky_key, &feature.experiment_id) {
        (Some(key), Some(id)) => assignment_point(&feature.name, id, key),
        _ => roll,
    };
    variant_at(feature, point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Config, EndpointConfig, ExperimentConfig, FeatureConfig, Provider, RouterConfig,
        VariantConfig,
    };

    fn feature(split: &[f64]) -> Feature {
        let raw = RouterConfig {
            endpoints: vec![EndpointConfig::new("e", Provider::Openai, "m", "us-east-1")],
            features: vec![FeatureConfig {
                experiment: Some(ExperimentConfig {
                    id: "exp".into(),
                    variants: split
                        .iter()
                        .enumerate()
                        .map(|(i, &percent)| VariantConfig {
                            name: format!("v{i}"),
                            percent,
                            binding: vec!["e".into()],
                        })
                        .collect(),
                }),
                ..FeatureConfig::new("f", &[])
            }],
            ..RouterConfig::default()
        };
        Config::validate(raw).unwrap().feature("f").unwrap().clone()
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned values: if these change, every user's assignment changes on upgrade.
        assert_eq!(stable_hash(&[]), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(
            stable_hash(&["summarize", "exp-1", "user-42"]),
            0x346d_d66e_2f3e_396a
        );
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }

    #[test]
    fn observed_split_converges_to_the_configured_percentages() {
        for split in [[50.0, 50.0, 0.0], [80.0, 20.0, 0.0], [10.0, 30.0, 60.0]] {
            let f = feature(&split);
            let mut counts = [0u32; 3];
            let n = 100_000;
            for user in 0..n {
                let v = select_variant(&f, Some(&format!("user-{user}")), 0.0);
                counts[v.name[1..].parse::<usize>().unwrap()] += 1;
            }
            for (i, &c) in counts.iter().enumerate() {
                let observed = f64::from(c) / f64::from(n) * 100.0;
                assert!(
                    (observed - split[i]).abs() < 0.6,
                    "{split:?}: v{i} got {observed:.2} %"
                );
            }
        }
    }

    #[test]
    fn assignment_is_sticky_per_user() {
        let f = feature(&[50.0, 50.0]);
        for user in 0..1000 {
            let key = format!("u{user}");
            let first = &select_variant(&f, Some(&key), 0.1).name;
            for roll in [0.0, 0.5, 0.99] {
                assert_eq!(&select_variant(&f, Some(&key), roll).name, first);
            }
        }
    }

    #[test]
    fn changing_50_50_to_60_40_moves_only_the_users_it_must() {
        let before = feature(&[50.0, 50.0]);
        let after = feature(&[60.0, 40.0]);
        let n = 50_000;
        let mut moved = 0;
        for user in 0..n {
            let key = format!("user-{user}");
            let (b, a) = (
                &select_variant(&before, Some(&key), 0.0).name,
                &select_variant(&after, Some(&key), 0.0).name,
            );
            if b != a {
                assert_eq!((b.as_str(), a.as_str()), ("v1", "v0"), "only b → a moves");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(n);
        assert!((share - 0.10).abs() < 0.01, "moved {share}");
    }

    #[test]
    fn without_a_sticky_key_the_roll_decides() {
        let f = feature(&[25.0, 75.0]);
        assert_eq!(select_variant(&f, None, 0.1).name, "v0");
        assert_eq!(select_variant(&f, None, 0.3).name, "v1");
        assert_eq!(select_variant(&f, None, 0.999_999).name, "v1");
    }

    #[test]
    fn a_zero_percent_variant_is_never_chosen() {
        let f = feature(&[0.0, 100.0]);
        for user in 0..2000 {
            assert_eq!(select_variant(&f, Some(&user.to_string()), 0.0).name, "v1");
        }
        assert_eq!(select_variant(&f, None, 0.0).name, "v1");
    }
}
