//! What a request costs, in decimals (money is never a float).
//!
//! On-demand traffic costs its tokens at the endpoint's prices. Provisioned capacity is
//! paid by the hour whether used or not, so its *marginal* token cost is zero; the
//! hours are attributed to the features (or teams) that used the endpoint, in
//! proportion to their tokens ([`split_by_tokens`]). Both appear in spend reports, kept
//! apart, so a platform lead sees provisioned and on-demand spend side by side.

use rust_decimal::Decimal;

use crate::api::Usage;
use crate::config::Pricing;

const MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The marginal cost of one request's usage on an endpoint.
pub fn token_cost(pricing: &Pricing, usage: &Usage, provisioned: bool) -> Decimal {
    if provisioned {
        return Decimal::ZERO;
    }
    let cached = usage
        .prompt_tokens_details
        .map_or(0, |d| d.cached_tokens)
        .min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    let cached_price = pricing
        .cached_input_per_million
        .unwrap_or(pricing.input_per_million);
    (Decimal::from(uncached) * pricing.input_per_million
        + Decimal::from(cached) * cached_price
        + Decimal::from(usage.completion_tokens) * pricing.output_per_million)
        / MILLION
}

/// Splits `amount` among keys in proportion to their tokens, rounded to `dp` decimal
/// places, such that the parts add up to `amount` rounded the same way exactly (the
/// rounding remainder goes to the largest user). Keys with no tokens get nothing; if
/// nobody used the capacity the whole amount is returned as unattributed (`None`).
pub fn split_by_tokens<K: Clone>(
    amount: Decimal,
    usage: &[(K, u64)],
    dp: u32,
) -> (Vec<(K, Decimal)>, Option<Decimal>) {
    let total: u64 = usage.iter().map(|(_, t)| t).sum();
    let amount = amount.round_dp(dp);
    if total == 0 {
        return (Vec::new(), (!amount.is_zero()).then_some(amount));
    }
    let total = Decimal::from(total);
    let mut parts: Vec<(K, Decimal)> = usage
        .iter()
        .filter(|(_, t)| *t > 0)
        .map(|(k, t)| (k.clone(), (amount * Decimal::from(*t) / total).round_dp(dp)))
        .collect();
    let assigned: Decimal = parts.iter().map(|(_, v)| *v).sum();
    let remainder = amount - assigned;
    if !remainder.is_zero() {
        let largest = usage
            .iter()
            .filter(|(_, t)| *t > 0)
            .enumerate()
            .max_by_key(|(_, (_, t))| *t)
            .map(|(i, _)| i)
            .unwrap_or(0);
        parts[largest].1 += remainder;
    }
    (parts, None)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn pricing() -> Pricing {
        Pricing {
            input_per_million: d("3.00"),
            output_per_million: d("15.00"),
            cached_input_per_million: Some(d("0.30")),
            hourly: None,
        }
    }

    #[test]
    fn on_demand_tokens_cost_their_prices_exactly() {
        let cost = token_cost(&pricing(), &Usage::new(1_000, 500, None), false);
        assert_eq!(cost, d("0.0105"));
        let cached = token_cost(&pricing(), &Usage::new(1_000, 0, Some(400)), false);
        assert_eq!(cached, d("0.00192"), "600 × 3/M + 400 × 0.30/M");
        // Summing many small costs stays exact (floats would drift).
        let one = token_cost(&pricing(), &Usage::new(7, 3, None), false);
        let sum: Decimal = (0..1_000_000).map(|_| one).sum();
        assert_eq!(sum, one * Decimal::from(1_000_000));
    }

    #[test]
    fn provisioned_tokens_cost_nothing_at_the_margin() {
        assert_eq!(
            token_cost(&pricing(), &Usage::new(1_000, 500, None), true),
            Decimal::ZERO
        );
    }

    #[test]
    fn hourly_cost_is_split_by_tokens_and_adds_up_exactly() {
        let (parts, unattributed) =
            split_by_tokens(d("40.00"), &[("a", 1u64), ("b", 1), ("c", 1)], 6);
        assert_eq!(unattributed, None);
        assert_eq!(parts.iter().map(|p| p.1).sum::<Decimal>(), d("40.00"));
        assert_eq!(parts[1].1, d("13.333333"));
        let (parts, _) = split_by_tokens(d("10"), &[("a", 300u64), ("b", 100), ("idle", 0)], 6);
        assert_eq!(parts, vec![("a", d("7.5")), ("b", d("2.5"))]);
        assert_eq!(
            split_by_tokens::<&str>(d("5"), &[], 6),
            (vec![], Some(d("5")))
        );
    }
}
