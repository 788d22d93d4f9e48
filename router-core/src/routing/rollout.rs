//! A staged rollout's decision: hold, advance, complete or roll back — one pure
//! function, [`evaluate`], of the rollout's plan, its current stage, the clock and
//! what the two arms did in the stage.
//!
//! A rollout moves users from the incumbent binding to a target through stages
//! (default 1 → 5 → 25 → 50 → 100 %). Each stage holds for a minimum time and a
//! minimum number of candidate requests, then advances only if every gate passes.
//! The gates compare the candidate arm with the incumbent over the same window:
//! error rate, TTFT p90 and latency p90, each against an absolute cap and relative
//! to the incumbent, and optionally the shadow parity verdict. A gate is **measurable**
//! once the candidate arm has [`Gates::min_requests`] requests in the stage; from
//! that moment it is checked on every evaluation, not only at the stage's end, so a
//! breach rolls the rollout back as soon as it can be seen (the server evaluates
//! every half second: within 2 s of the breach being measurable).
//!
//! The server owns the rest: the rollout's storage, publishing each stage as a
//! configuration version, audit entries and alerts.

use std::time::Duration;

pub use crate::admin::{GateResult, Gates};

/// A rollout's plan: its stages and what each must show before the next.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// The share of users at each stage, in percent, increasing, ending at 100.
    pub stages: Vec<f64>,
    pub min_stage_time: Duration,
    /// Candidate requests a stage must see before it may advance.
    pub min_stage_requests: u64,
    pub gates: Gates,
}

impl RolloutPlan {
    pub const DEFAULT_STAGES: [f64; 5] = [1.0, 5.0, 25.0, 50.0, 100.0];
}

/// What one arm did in the current stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmStats {
    pub requests: u64,
    /// Requests that failed for the user.
    pub errors: u64,
    pub ttft_p90_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
}

impl ArmStats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// What the rollout does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stay at this stage; the gates as measured (empty while not measurable).
    Hold(Vec<GateResult>),
    /// Go to stage `to`.
    Advance { to: usize, gates: Vec<GateResult> },
    /// The last stage held: the target serves everyone.
    Complete(Vec<GateResult>),
    /// A gate failed: back to 0 %, naming it.
    RollBack(GateResult),
}

/// The next step of a rollout at `stage` (an index into the plan's stages) that
/// began at `stage_started`, as of `now`; `parity` is the shadow verdict when one is
/// known.
pub fn evaluate(
    plan: &RolloutPlan,
    stage: usize,
    stage_started: Duration,
    now: Duration,
    candidate: &ArmStats,
    incumbent: &ArmStats,
    parity: Option<bool>,
) -> Verdict {
    let gates = check(&plan.gates, candidate, incumbent, parity);
    if let Some(failed) = gates.iter().find(|g| !g.ok) {
        return Verdict::RollBack(failed.clone());
    }
    let held = now.saturating_sub(stage_started) >= plan.min_stage_time
        && candidate.requests >= plan.min_stage_requests
        && candidate.requests >= plan.gates.min_requests;
    if !held {
        return Verdict::Hold(gates);
    }
    if stage + 1 >= plan.stages.len() {
        Verdict::Complete(gates)
    } else {
        Verdict::Advance {
            to: stage + 1,
            gates,
        }
    }
}

/// The gates as measured; none until the candidate has enough requests.
pub fn check(
    gates: &Gates,
    candidate: &ArmStats,
    incumbent: &ArmStats,
    parity: Option<bool>,
) -> Vec<GateResult> {
    if candidate.requests < gates.min_requests.max(1) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut gate = |name: &str, value: f64, threshold: f64| {
        out.push(GateResult {
            name: name.to_owned(),
            value,
            threshold,
            ok: value <= threshold,
        });
    };
    let (c_err, i_err) = (candidate.error_rate(), incumbent.error_rate());
    if let Some(max) = gates.max_error_rate {
        gate("error_rate", c_err, max);
    }
    // Relative gates need the incumbent to have been measured too.
    let incumbent_measured = incumbent.requests >= gates.min_requests.max(1);
    if let Some(max) = gates.max_error_rate_increase
        && incumbent_measured
    {
        gate("error_rate_increase", c_err - i_err, max);
    }
    for (name, abs_name, c, i, max_abs, max_ratio) in [
        (
            "ttft_p90_ratio",
            "ttft_p90_ms",
            candidate.ttft_p90_ms,
            incumbent.ttft_p90_ms,
            gates.max_ttft_p90_ms,
            gates.max_ttft_p90_ratio,
        ),
        (
            "latency_p90_ratio",
            "latency_p90_ms",
            candidate.latency_p90_ms,
            incumbent.latency_p90_ms,
            gates.max_latency_p90_ms,
            gates.max_latency_p90_ratio,
        ),
    ] {
        if let (Some(c), Some(max)) = (c, max_abs) {
            gate(abs_name, c, max);
        }
        if let (Some(c), Some(i), Some(max), true) = (c, i, max_ratio, incumbent_measured)
            && i > 0.0
        {
            gate(name, c / i, max);
        }
    }
    if gates.require_parity
        && let Some(parity) = parity
    {
        gate("shadow_parity", if parity { 0.0 } else { 1.0 }, 0.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn plan() -> RolloutPlan {
        RolloutPlan {
            stages: RolloutPlan::DEFAULT_STAGES.to_vec(),
            min_stage_time: 60 * S,
            min_stage_requests: 50,
            gates: Gates::default(),
        }
    }

    fn arm(requests: u64, errors: u64, ttft: f64, latency: f64) -> ArmStats {
        ArmStats {
            requests,
            errors,
            ttft_p90_ms: Some(ttft),
            latency_p90_ms: Some(latency),
        }
    }

    fn healthy() -> ArmStats {
        arm(1_000, 5, 400.0, 2_000.0)
    }

    #[test]
    fn a_stage_holds_until_its_time_and_its_requests_are_in() {
        let c = arm(49, 0, 400.0, 2_000.0);
        assert!(matches!(
            evaluate(&plan(), 0, Duration::ZERO, 61 * S, &c, &healthy(), None),
            Verdict::Hold(_)
        ));
        let c = arm(50, 0, 400.0, 2_000.0);
        assert!(matches!(
            evaluate(&plan(), 0, Duration::ZERO, 59 * S, &c, &healthy(), None),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            evaluate(&plan(), 0, Duration::ZERO, 60 * S, &c, &healthy(), None),
            Verdict::Advance { to: 1, .. }
        ));
    }

    #[test]
    fn the_last_stage_completes_the_rollout() {
        let c = arm(500, 1, 400.0, 2_000.0);
        let v = evaluate(&plan(), 4, Duration::ZERO, 120 * S, &c, &healthy(), None);
        assert!(matches!(v, Verdict::Complete(_)), "{v:?}");
    }

    #[test]
    fn no_gate_is_judged_before_the_candidate_has_enough_requests() {
        let failing = arm(19, 19, 9_000.0, 90_000.0);
        assert_eq!(
            evaluate(&plan(), 2, Duration::ZERO, S, &failing, &healthy(), None),
            Verdict::Hold(Vec::new())
        );
    }

    #[test]
    fn a_breach_rolls_back_as_soon_as_it_is_measurable_naming_the_gate() {
        // Mid-stage, long before its minimum time: the breach is enough.
        let c = arm(20, 4, 400.0, 2_000.0);
        let Verdict::RollBack(gate) =
            evaluate(&plan(), 2, Duration::ZERO, 3 * S, &c, &healthy(), None)
        else {
            panic!("rolled back");
        };
        assert_eq!(gate.name, "error_rate");
        assert_eq!((gate.value, gate.threshold, gate.ok), (0.2, 0.05, false));
    }

    #[test]
    fn an_error_rate_well_over_the_incumbents_rolls_back_even_under_the_absolute_cap() {
        let gates = Gates {
            max_error_rate: Some(0.5),
            ..Gates::default()
        };
        let p = RolloutPlan { gates, ..plan() };
        let c = arm(100, 10, 400.0, 2_000.0);
        let Verdict::RollBack(gate) = evaluate(&p, 1, Duration::ZERO, S, &c, &healthy(), None)
        else {
            panic!("rolled back");
        };
        assert_eq!(gate.name, "error_rate_increase");
        assert!((gate.value - 0.095).abs() < 1e-12);
    }

    #[test]
    fn a_slow_candidate_rolls_back_on_its_ttft_or_latency_ratio() {
        let slow_ttft = arm(100, 0, 700.0, 2_000.0);
        let Verdict::RollBack(g) =
            evaluate(&plan(), 1, Duration::ZERO, S, &slow_ttft, &healthy(), None)
        else {
            panic!("rolled back");
        };
        assert_eq!(
            (g.name.as_str(), g.value, g.threshold),
            ("ttft_p90_ratio", 1.75, 1.5)
        );
        let slow = arm(100, 0, 400.0, 3_200.0);
        let Verdict::RollBack(g) = evaluate(&plan(), 1, Duration::ZERO, S, &slow, &healthy(), None)
        else {
            panic!("rolled back");
        };
        assert_eq!(g.name, "latency_p90_ratio");
    }

    #[test]
    fn absolute_caps_apply_when_set() {
        let gates = Gates {
            max_ttft_p90_ms: Some(300.0),
            ..Gates::default()
        };
        let p = RolloutPlan { gates, ..plan() };
        let Verdict::RollBack(g) = evaluate(&p, 0, Duration::ZERO, S, &healthy(), &healthy(), None)
        else {
            panic!("rolled back");
        };
        assert_eq!(
            (g.name.as_str(), g.value, g.threshold),
            ("ttft_p90_ms", 400.0, 300.0)
        );
    }

    #[test]
    fn relative_gates_wait_for_the_incumbent_to_be_measured() {
        let c = arm(100, 0, 4_000.0, 20_000.0);
        let quiet_incumbent = arm(3, 0, 100.0, 100.0);
        let gates = check(&Gates::default(), &c, &quiet_incumbent, None);
        assert!(gates.iter().all(|g| g.name == "error_rate"), "{gates:?}");
    }

    #[test]
    fn a_required_parity_verdict_is_a_gate() {
        let gates = Gates {
            require_parity: true,
            ..Gates::default()
        };
        let p = RolloutPlan { gates, ..plan() };
        let c = arm(100, 0, 400.0, 2_000.0);
        let Verdict::RollBack(g) = evaluate(&p, 0, Duration::ZERO, S, &c, &healthy(), Some(false))
        else {
            panic!("rolled back");
        };
        assert_eq!(g.name, "shadow_parity");
        assert!(matches!(
            evaluate(&p, 0, Duration::ZERO, 61 * S, &c, &healthy(), Some(true)),
            Verdict::Advance { to: 1, .. }
        ));
    }

    #[test]
    fn every_passing_gate_is_reported_with_its_value_and_threshold() {
        let c = arm(100, 1, 420.0, 2_100.0);
        let Verdict::Advance { gates, .. } =
            evaluate(&plan(), 0, Duration::ZERO, 61 * S, &c, &healthy(), None)
        else {
            panic!("advanced");
        };
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "error_rate",
                "error_rate_increase",
                "ttft_p90_ratio",
                "latency_p90_ratio"
            ]
        );
        assert!(gates.iter().all(|g| g.ok));
    }
}
