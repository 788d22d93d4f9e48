//! Experiment split editing: the variants' percentages always sum to 100.
//!
//! Editing one variant moves the *last other* variant by the opposite amount (for the
//! usual A/B or control-last layouts that is the variant people expect to give way).
//! When that variant cannot give enough (it would go below 0), the edit itself is
//! capped, so the total stays 100 without silently touching a third variant.

/// Percentages are kept to two decimals (the inputs step by 0.01 at most).
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The percentages after variant `changed` was set to `requested`.
pub fn rebalance(percents: &[f64], changed: usize, requested: f64) -> Vec<f64> {
    let mut out: Vec<f64> = percents.to_vec();
    if changed >= out.len() {
        return out;
    }
    let requested = if requested.is_finite() {
        round2(requested.clamp(0.0, 100.0))
    } else {
        out[changed]
    };
    let Some(absorber) = (0..out.len()).rev().find(|&i| i != changed) else {
        // A single variant takes all the traffic.
        out[changed] = 100.0;
        return out;
    };
    let others: f64 = out
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != changed && i != absorber)
        .map(|(_, v)| *v)
        .sum();
    let room = round2((100.0 - others).max(0.0));
    let value = requested.min(room);
    out[changed] = value;
    out[absorber] = round2(room - value);
    out
}

/// The percentages after variant `removed` is taken out: its share goes to the last
/// remaining variant (the one that gives way when editing), so the total stays 100.
pub fn remove(percents: &[f64], removed: usize) -> Vec<f64> {
    let mut out: Vec<f64> = percents.to_vec();
    if removed >= out.len() {
        return out;
    }
    let share = out.remove(removed);
    if let Some(last) = out.last_mut() {
        *last = round2(*last + share);
    }
    out
}

/// The sum of the percentages, rounded for display.
pub fn total(percents: &[f64]) -> f64 {
    round2(percents.iter().sum())
}

/// Whether the split is complete: the same tolerance the server's validation uses.
pub fn sums_to_100(percents: &[f64]) -> bool {
    (percents.iter().sum::<f64>() - 100.0).abs() <= 1e-6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_variant_gives_its_share_to_the_last_remaining_one() {
        assert_eq!(remove(&[50.0, 30.0, 20.0], 1), vec![50.0, 50.0]);
        assert_eq!(remove(&[50.0, 30.0, 20.0], 2), vec![50.0, 50.0]);
        assert_eq!(remove(&[80.0, 20.0], 0), vec![100.0]);
        assert_eq!(remove(&[100.0], 0), Vec::<f64>::new());
        assert_eq!(remove(&[60.0, 40.0], 5), vec![60.0, 40.0]);
    }

    #[test]
    fn editing_one_variant_moves_the_last_other_one() {
        assert_eq!(rebalance(&[50.0, 50.0], 0, 70.0), vec![70.0, 30.0]);
        assert_eq!(rebalance(&[50.0, 50.0], 1, 10.0), vec![90.0, 10.0]);
        assert_eq!(
            rebalance(&[20.0, 30.0, 50.0], 0, 30.0),
            vec![30.0, 30.0, 40.0]
        );
        // Editing the last variant moves the one before it.
        assert_eq!(
            rebalance(&[20.0, 30.0, 50.0], 2, 60.0),
            vec![20.0, 20.0, 60.0]
        );
    }

    #[test]
    fn an_edit_the_absorber_cannot_cover_is_capped_and_the_total_stays_100() {
        assert_eq!(
            rebalance(&[20.0, 30.0, 50.0], 0, 90.0),
            vec![70.0, 30.0, 0.0]
        );
        assert!(sums_to_100(&rebalance(&[20.0, 30.0, 50.0], 0, 90.0)));
    }

    #[test]
    fn values_are_clamped_to_0_100_and_rounded_to_cents() {
        assert_eq!(rebalance(&[50.0, 50.0], 0, 150.0), vec![100.0, 0.0]);
        assert_eq!(rebalance(&[50.0, 50.0], 0, -5.0), vec![0.0, 100.0]);
        assert_eq!(rebalance(&[50.0, 50.0], 0, 33.333), vec![33.33, 66.67]);
        assert_eq!(rebalance(&[50.0, 50.0], 0, f64::NAN), vec![50.0, 50.0]);
        let thirds = rebalance(&[33.33, 33.33, 33.34], 1, 33.33);
        assert!(sums_to_100(&thirds), "{thirds:?}");
    }

    #[test]
    fn a_single_variant_always_takes_everything() {
        assert_eq!(rebalance(&[40.0], 0, 10.0), vec![100.0]);
        assert_eq!(rebalance(&[], 0, 10.0), Vec::<f64>::new());
        assert_eq!(rebalance(&[60.0, 40.0], 5, 10.0), vec![60.0, 40.0]);
    }

    #[test]
    fn a_broken_split_is_repaired_by_the_next_edit() {
        // Loaded at 90 % (the validator flags it); one edit makes it whole again.
        let fixed = rebalance(&[45.0, 45.0], 0, 45.0);
        assert_eq!(fixed, vec![45.0, 55.0]);
        assert!(!sums_to_100(&[45.0, 45.0]));
        assert!(sums_to_100(&fixed));
        assert_eq!(total(&[33.33, 33.33, 33.34]), 100.0);
    }
}
