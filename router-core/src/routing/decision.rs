//! What follows a failed attempt: one pure function, [`after_failure`].
//!
//! The engine reports what it knows about the failure ([`Failed`]) and the request's
//! limits ([`Limits`]); the function answers with the next [`Step`]. It reads no
//! clock and sleeps nowhere: `now` comes in for the retry budget, the jitter comes in
//! as a roll, and the wait it decides is the engine's to do. So every branch is a
//! table row in the tests below.
//!
//! The rules, in the order they apply:
//! 1. **Full provisioned capacity** (`capacity_exhausted` from a provisioned endpoint)
//!    is not a failure: the endpoint is marked full and the request moves to its
//!    on-demand sibling at once (a spill), or on to the next candidate.
//! 2. **Client errors are final** — the request is wrong, and no endpoint can fix it —
//!    with one exception: a context-window overflow on a feature with
//!    `context_fallback` moves on to the later candidates with a larger window (and
//!    gives up when there is none). A content filter's refusal is final: the reason
//!    reaches the client.
//! 3. **A timeout moves on.** An endpoint that said nothing within the attempt's
//!    first-byte or first-token limit is not asked again; the next candidate is.
//! 4. Errors that trying again cannot fix (rejected credentials, Crossbar's own
//!    failures) move on to the next candidate.
//! 5. Otherwise (throttles, 5xx, unreachable, a stream cut before its first token)
//!    the same endpoint is **retried** after a backoff — exponential with "equal
//!    jitter" (half fixed, half random: never a retry storm at ~0 s) and at least the
//!    upstream's `retry-after` — while retries of this endpoint remain, the wait fits
//!    the policy's `max_retry_after` and the request's deadline, and the retry budget
//!    has a token. A refused retry moves on instead, and spends nothing.

use std::time::Duration;

use super::budget::RetryBudget;
use crate::api::{ErrorKind, Fault};
use crate::config::{EndpointId, RetryPolicy};

/// What the engine knows about a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub kind: ErrorKind,
    /// How long the upstream asked us to wait, when it said.
    pub retry_after: Option<Duration>,
    /// Retries of this endpoint already made for this request.
    pub retries_here: u32,
    /// The endpoint runs on provisioned capacity.
    pub provisioned: bool,
    /// Its on-demand sibling, when that is inside the feature's data boundary and
    /// not already among the request's candidates.
    pub spill_to: Option<EndpointId>,
    /// Whether a later candidate has a larger context window than this endpoint.
    pub larger_window_ahead: bool,
}

/// The request's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    pub policy: &'a RetryPolicy,
    /// The feature falls back to larger context windows on an overflow.
    pub context_fallback: bool,
    /// Time left until the request's deadline.
    pub remaining: Duration,
}

/// The next step of a request after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Try the same endpoint again after `wait` (a retry budget token is taken).
    Retry { wait: Duration },
    /// Go on to the next candidate.
    MoveOn(Why),
    /// The provisioned endpoint is full: mark it so, then go on to `to` (its
    /// on-demand sibling, put next) or, without one, to the next candidate.
    Spill { to: Option<EndpointId> },
    /// Keep only the later candidates whose context window is larger than the
    /// failed endpoint's, and go on.
    ContextFallback,
    /// End the request with this attempt's error.
    GiveUp,
}

/// Why a request moves on instead of retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The endpoint did not answer in time: it is not asked again.
    TimedOut,
    /// Trying again cannot help (credentials rejected, a Crossbar failure).
    NotRetryable,
    /// The endpoint had its retries.
    RetriesUsed,
    /// The upstream asked for a longer wait than the policy allows.
    RetryAfterTooLong,
    /// The wait would not leave time before the deadline.
    DeadlineTooClose,
    /// The retry budget is spent: retries would only add load.
    BudgetExhausted,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimedOut => "timed out",
            Self::NotRetryable => "not retryable",
            Self::RetriesUsed => "retries used",
            Self::RetryAfterTooLong => "retry-after too long",
            Self::DeadlineTooClose => "deadline too close",
            Self::BudgetExhausted => "retry budget exhausted",
        }
    }
}

/// The next step after `failed`; see the module docs for the rules. `roll` is a
/// uniform draw in [0, 1) for the jitter; the budget is only drawn on when the
/// answer is [`Step::Retry`].
pub fn after_failure(
    failed: &Failed,
    limits: Limits<'_>,
    budget: &mut RetryBudget,
    now: Duration,
    roll: f64,
) -> Step {
    let kind = failed.kind;
    if kind == ErrorKind::CapacityExhausted && failed.provisioned {
        return Step::Spill {
            to: failed.spill_to,
        };
    }
    if kind.fault() == Fault::Client {
        return if kind == ErrorKind::ContextLengthExceeded
            && limits.context_fallback
            && failed.larger_window_ahead
        {
            Step::ContextFallback
        } else {
            Step::GiveUp
        };
    }
    if kind == ErrorKind::Timeout {
        return Step::MoveOn(Why::TimedOut);
    }
    if !kind.retryable() {
        return Step::MoveOn(Why::NotRetryable);
    }
    let policy = limits.policy;
    if failed.retries_here >= policy.max_retries {
        return Step::MoveOn(Why::RetriesUsed);
    }
    let asked = failed.retry_after.unwrap_or_default();
    if asked > Duration::from_millis(policy.max_retry_after_ms) {
        return Step::MoveOn(Why::RetryAfterTooLong);
    }
    let wait = backoff(policy, failed.retries_here, roll).max(asked);
    if limits.remaining <= wait {
        return Step::MoveOn(Why::DeadlineTooClose);
    }
    if !budget.try_withdraw(now) {
        return Step::MoveOn(Why::BudgetExhausted);
    }
    Step::Retry { wait }
}

/// The wait before retry number `retries_done + 1`: `min(max, base × 2^retries_done)`,
/// half of it fixed and half scaled by `roll` ("equal jitter").
pub fn backoff(policy: &RetryPolicy, retries_done: u32, roll: f64) -> Duration {
    let base = Duration::from_millis(policy.backoff_base_ms);
    let cap = Duration::from_millis(policy.backoff_max_ms);
    let exp = base.saturating_mul(1u32 << retries_done.min(16)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(roll.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            max_retry_after_ms: 5_000,
            budget_ratio: 0.2,
            budget_min_per_s: 10,
        }
    }

    fn failed(kind: ErrorKind) -> Failed {
        Failed {
            kind,
            retry_after: None,
            retries_here: 0,
            provisioned: false,
            spill_to: None,
            larger_window_ahead: false,
        }
    }

    /// The step for `f` with the test policy, 60 s left, a fresh budget, roll 0.5.
    fn step(f: &Failed) -> Step {
        step_with(
            f,
            &policy(),
            false,
            60 * S,
            &mut RetryBudget::default(),
            0.5,
        )
    }

    fn step_with(
        f: &Failed,
        policy: &RetryPolicy,
        context_fallback: bool,
        remaining: Duration,
        budget: &mut RetryBudget,
        roll: f64,
    ) -> Step {
        let limits = Limits {
            policy,
            context_fallback,
            remaining,
        };
        after_failure(f, limits, budget, 10 * S, roll)
    }

    #[test]
    fn a_full_provisioned_endpoint_spills_to_its_sibling() {
        let f = Failed {
            provisioned: true,
            spill_to: Some(3),
            ..failed(ErrorKind::CapacityExhausted)
        };
        assert_eq!(step(&f), Step::Spill { to: Some(3) });
    }

    #[test]
    fn a_full_provisioned_endpoint_without_a_sibling_moves_on_without_a_retry() {
        let f = Failed {
            provisioned: true,
            ..failed(ErrorKind::CapacityExhausted)
        };
        assert_eq!(step(&f), Step::Spill { to: None });
    }

    #[test]
    fn capacity_exhausted_from_an_on_demand_endpoint_is_a_throttle_and_is_retried() {
        assert!(matches!(
            step(&failed(ErrorKind::CapacityExhausted)),
            Step::Retry { .. }
        ));
    }

    #[test]
    fn a_client_error_gives_up_at_once() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::UnsupportedParameter,
            ErrorKind::NotFound,
        ] {
            assert_eq!(step(&failed(kind)), Step::GiveUp, "{kind}");
        }
    }

    #[test]
    fn a_content_filter_refusal_is_neither_retried_nor_failed_over() {
        let f = Failed {
            larger_window_ahead: true,
            ..failed(ErrorKind::ContentFiltered)
        };
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(&f, &policy(), true, 60 * S, &mut budget, 0.5),
            Step::GiveUp
        );
    }

    #[test]
    fn a_context_overflow_gives_up_when_the_feature_has_no_context_fallback() {
        let f = Failed {
            larger_window_ahead: true,
            ..failed(ErrorKind::ContextLengthExceeded)
        };
        assert_eq!(step(&f), Step::GiveUp);
    }

    #[test]
    fn a_context_overflow_falls_back_to_a_larger_window_when_enabled() {
        let f = Failed {
            larger_window_ahead: true,
            ..failed(ErrorKind::ContextLengthExceeded)
        };
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(&f, &policy(), true, 60 * S, &mut budget, 0.5),
            Step::ContextFallback
        );
    }

    #[test]
    fn a_context_overflow_gives_up_when_no_larger_window_is_ahead() {
        let f = failed(ErrorKind::ContextLengthExceeded);
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(&f, &policy(), true, 60 * S, &mut budget, 0.5),
            Step::GiveUp
        );
    }

    #[test]
    fn a_timeout_moves_on_instead_of_asking_a_silent_endpoint_again() {
        assert_eq!(
            step(&failed(ErrorKind::Timeout)),
            Step::MoveOn(Why::TimedOut)
        );
    }

    #[test]
    fn errors_that_trying_again_cannot_fix_move_on() {
        for kind in [ErrorKind::UpstreamAuth, ErrorKind::Internal] {
            assert_eq!(
                step(&failed(kind)),
                Step::MoveOn(Why::NotRetryable),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_server_error_is_retried_on_the_same_endpoint() {
        for kind in [
            ErrorKind::UpstreamError,
            ErrorKind::Unavailable,
            ErrorKind::Overloaded,
            ErrorKind::RateLimited,
            ErrorKind::StreamInterrupted,
        ] {
            assert!(matches!(step(&failed(kind)), Step::Retry { .. }), "{kind}");
        }
    }

    #[test]
    fn retries_stop_after_the_policy_s_maximum_and_move_on() {
        let f = Failed {
            retries_here: 2,
            ..failed(ErrorKind::UpstreamError)
        };
        assert_eq!(step(&f), Step::MoveOn(Why::RetriesUsed));
        let once = Failed {
            retries_here: 1,
            ..failed(ErrorKind::UpstreamError)
        };
        assert!(matches!(step(&once), Step::Retry { .. }));
    }

    #[test]
    fn no_retries_at_all_when_the_policy_allows_none() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..policy()
        };
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(
                &failed(ErrorKind::RateLimited),
                &policy,
                false,
                60 * S,
                &mut budget,
                0.5
            ),
            Step::MoveOn(Why::RetriesUsed)
        );
    }

    #[test]
    fn the_upstream_s_retry_after_is_waited_for_when_it_fits() {
        let f = Failed {
            retry_after: Some(2 * S),
            ..failed(ErrorKind::RateLimited)
        };
        assert_eq!(step(&f), Step::Retry { wait: 2 * S });
    }

    #[test]
    fn a_retry_after_longer_than_the_policy_allows_moves_on() {
        let f = Failed {
            retry_after: Some(5 * S + MS),
            ..failed(ErrorKind::RateLimited)
        };
        assert_eq!(step(&f), Step::MoveOn(Why::RetryAfterTooLong));
    }

    #[test]
    fn a_retry_after_that_would_pass_the_deadline_moves_on() {
        let f = Failed {
            retry_after: Some(2 * S),
            ..failed(ErrorKind::RateLimited)
        };
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(&f, &policy(), false, 2 * S, &mut budget, 0.5),
            Step::MoveOn(Why::DeadlineTooClose)
        );
    }

    #[test]
    fn a_backoff_that_would_pass_the_deadline_moves_on() {
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(
                &failed(ErrorKind::UpstreamError),
                &policy(),
                false,
                50 * MS,
                &mut budget,
                0.5
            ),
            Step::MoveOn(Why::DeadlineTooClose)
        );
    }

    #[test]
    fn an_exhausted_retry_budget_moves_on_instead_of_retrying() {
        let mut empty = RetryBudget::new(0.2, 0);
        assert_eq!(
            step_with(
                &failed(ErrorKind::UpstreamError),
                &policy(),
                false,
                60 * S,
                &mut empty,
                0.5
            ),
            Step::MoveOn(Why::BudgetExhausted)
        );
    }

    #[test]
    fn a_retry_takes_a_budget_token_and_a_refused_one_takes_none() {
        let mut budget = RetryBudget::new(0.5, 0);
        for _ in 0..2 {
            budget.deposit(10 * S);
        }
        assert_eq!(budget.balance(10 * S), 1.0);
        let refused = step_with(
            &failed(ErrorKind::UpstreamError),
            &policy(),
            false,
            MS,
            &mut budget,
            0.5,
        );
        assert_eq!(refused, Step::MoveOn(Why::DeadlineTooClose));
        assert_eq!(budget.balance(10 * S), 1.0, "nothing spent on a refusal");
        let granted = step_with(
            &failed(ErrorKind::UpstreamError),
            &policy(),
            false,
            60 * S,
            &mut budget,
            0.5,
        );
        assert!(matches!(granted, Step::Retry { .. }));
        assert_eq!(budget.balance(10 * S), 0.0);
    }

    #[test]
    fn the_backoff_doubles_with_each_retry_and_is_jittered_within_its_bounds() {
        let p = policy();
        // Retry n waits in [exp/2, exp] with exp = 200 ms × 2^n.
        for (n, exp) in [(0, 200), (1, 400), (2, 800), (3, 1_600)] {
            assert_eq!(backoff(&p, n, 0.0), exp / 2 * MS, "retry {n}, lowest");
            assert_eq!(
                backoff(&p, n, 0.999_999).as_millis(),
                u128::from(exp - 1),
                "retry {n}"
            );
        }
    }

    #[test]
    fn the_backoff_is_capped_at_the_policy_s_maximum() {
        let p = policy();
        assert_eq!(backoff(&p, 10, 1.0), 2 * S);
        assert_eq!(backoff(&p, u32::MAX, 0.0), S);
    }

    #[test]
    fn the_backoff_is_a_real_wait_whatever_the_roll() {
        let f = failed(ErrorKind::RateLimited);
        let mut budget = RetryBudget::default();
        let step = step_with(&f, &policy(), false, 60 * S, &mut budget, 0.0);
        assert_eq!(step, Step::Retry { wait: 100 * MS });
    }

    #[test]
    fn a_longer_backoff_wins_over_a_shorter_retry_after() {
        let f = Failed {
            retry_after: Some(10 * MS),
            retries_here: 1,
            ..failed(ErrorKind::RateLimited)
        };
        let mut budget = RetryBudget::default();
        assert_eq!(
            step_with(&f, &policy(), false, 60 * S, &mut budget, 1.0),
            Step::Retry { wait: 400 * MS }
        );
    }

    /// Every error class against the defaults, in one table: what a request does
    /// next after a first failure on a plain on-demand endpoint.
    #[test]
    fn every_error_class_has_a_defined_next_step() {
        use ErrorKind::*;
        let table = [
            (RateLimited, "retry"),
            (CapacityExhausted, "retry"),
            (Overloaded, "retry"),
            (Unavailable, "retry"),
            (UpstreamError, "retry"),
            (StreamInterrupted, "retry"),
            (Timeout, "move on"),
            (UpstreamAuth, "move on"),
            (Internal, "move on"),
            (NoEligibleEndpoint, "move on"),
            (ContextLengthExceeded, "give up"),
            (ContentFiltered, "give up"),
            (InvalidRequest, "give up"),
            (UnsupportedParameter, "give up"),
            (NotFound, "give up"),
        ];
        for (kind, expected) in table {
            let got = match step(&failed(kind)) {
                Step::Retry { .. } => "retry",
                Step::MoveOn(_) => "move on",
                Step::GiveUp => "give up",
                other => panic!("{kind}: {other:?}"),
            };
            assert_eq!(got, expected, "{kind}");
        }
    }
}
