//! The retry budget: how many retries the router may add on top of the traffic it
//! was given (Finagle's and linkerd's design, on an injected clock).
//!
//! Retries help when one attempt in a hundred fails; when everything fails they are
//! a self-inflicted load multiplier that keeps a struggling provider down. A budget
//! bounds them *relative to real traffic*:
//!
//! - each original request deposits `ratio` of a token (0.2: at most one retry per
//!   five requests, i.e. +20 % load in the worst case);
//! - each retry withdraws one whole token, and is refused when there is none;
//! - deposits (and withdrawals) expire after `ttl` (counted in whole seconds: an
//!   entry lives between `ttl − 1 s` and `ttl`), so tokens saved during a quiet
//!   healthy hour cannot fund a retry storm later: the budget always reflects the
//!   last `ttl` of traffic;
//! - a floor of `min_per_second` retries per second is always allowed, so a
//!   low-traffic feature (a handful of requests a minute) can still retry at all.
//!
//! Floor retries are taken first, so tokens are kept for bursts. A withdrawal expires
//! with its own second, so right after a burst the balance can be negative until the
//! retries that overdrew it leave the window; that is deliberate (new deposits first
//! repay the burst).
//!
//! The state is a ring of one-second buckets over the TTL with running sums, so both
//! operations are O(1) (a gap of several seconds clears several buckets).

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Second {
    deposits: u64,
    withdrawals: u64,
    floor_used: u32,
}

#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    seconds: Box<[Second]>,
    /// The bucket of the second the last operation fell in.
    head: usize,
    head_second: u64,
    /// Sums over the ring.
    deposits: u64,
    withdrawals: u64,
}

/// How long a deposit funds retries, unless [`RetryBudget::with_ttl`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

impl Default for RetryBudget {
    /// linkerd's defaults: 20 % extra load, 10 retries per second always allowed,
    /// over a 10 s window.
    fn default() -> Self {
        Self::new(0.2, 10)
    }
}

impl RetryBudget {
    /// A budget of `ratio` retries per request plus `min_per_second`, over
    /// [`DEFAULT_TTL`]. A negative or NaN `ratio` counts as 0 (floor only).
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        Self::with_ttl(ratio, min_per_second, DEFAULT_TTL)
    }

    /// As [`RetryBudget::new`], with deposits living `ttl` (rounded up to whole
    /// seconds, 1 s to 1 h).
    pub fn with_ttl(ratio: f64, min_per_second: u32, ttl: Duration) -> Self {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds = usize::try_from(seconds.clamp(1, 3600)).unwrap_or(1);
        Self {
            ratio: sane_ratio(ratio),
            min_per_second,
            seconds: vec![Second::default(); seconds].into_boxed_slice(),
            head: 0,
            head_second: 0,
            deposits: 0,
            withdrawals: 0,
        }
    }

    /// Applies a newly published policy; the deposits and withdrawals of the window
    /// are kept (and valued at the new ratio).
    pub fn configure(&mut self, ratio: f64, min_per_second: u32) {
        self.ratio = sane_ratio(ratio);
        self.min_per_second = min_per_second;
    }

    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// An original (non-retry) request: deposits `ratio` of a token.
    pub fn deposit(&mut self, now: Duration) {
        self.rotate(now);
        self.seconds[self.head].deposits += 1;
        self.deposits += 1;
    }

    /// May this retry happen? Takes from this second's floor first, then one token.
    pub fn try_withdraw(&mut self, now: Duration) -> bool {
        self.rotate(now);
        let head = self.head;
        if self.seconds[head].floor_used < self.min_per_second {
            self.seconds[head].floor_used += 1;
            return true;
        }
        if self.tokens() >= 1.0 {
            self.seconds[head].withdrawals += 1;
            self.withdrawals += 1;
            return true;
        }
        false
    }

    /// Tokens available as of `now`, not counting the per-second floor (may be
    /// negative right after a burst, see the module docs).
    pub fn balance(&self, now: Duration) -> f64 {
        let s = now.as_secs();
        if s <= self.head_second {
            return self.tokens();
        }
        let len = self.seconds.len() as u64;
        let gap = s - self.head_second;
        if gap >= len {
            return 0.0;
        }
        let (mut deposits, mut withdrawals) = (0, 0);
        for age in 0..(len - gap) as usize {
            let second = &self.seconds[(self.head + self.seconds.len() - age) % self.seconds.len()];
            deposits += second.deposits;
            withdrawals += second.withdrawals;
        }
        self.ratio * deposits as f64 - withdrawals as f64
    }

    fn tokens(&self) -> f64 {
        self.ratio * self.deposits as f64 - self.withdrawals as f64
    }

    fn rotate(&mut self, now: Duration) {
        let s = now.as_secs();
        // Same second, or a clock that stepped back: stay on the head.
        if s <= self.head_second {
            return;
        }
        let len = self.seconds.len();
        if s - self.head_second >= len as u64 {
            self.seconds.fill(Second::default());
            self.deposits = 0;
            self.withdrawals = 0;
        } else {
            for _ in 0..s - self.head_second {
                self.head = (self.head + 1) % len;
                let expired = std::mem::take(&mut self.seconds[self.head]);
                self.deposits -= expired.deposits;
                self.withdrawals -= expired.withdrawals;
            }
        }
        self.head_second = s;
    }
}

fn sane_ratio(ratio: f64) -> f64 {
    if ratio > 0.0 { ratio } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exhausted_budget_refuses_retries() {
        let mut b = RetryBudget::new(0.2, 0);
        let now = 5 * S;
        assert!(!b.try_withdraw(now), "nothing deposited yet");
        for _ in 0..10 {
            b.deposit(now);
        }
        assert_eq!(b.balance(now), 2.0);
        assert!(b.try_withdraw(now));
        assert!(b.try_withdraw(now + 300 * MS));
        assert!(
            !b.try_withdraw(now + 600 * MS),
            "10 requests at 20 % fund two retries"
        );
        // Five more requests fund exactly one more.
        for _ in 0..5 {
            b.deposit(now + S);
        }
        assert!(b.try_withdraw(now + S));
        assert!(!b.try_withdraw(now + S));
    }

    #[test]
    fn deposits_expire() {
        let mut b = RetryBudget::new(0.2, 0);
        for _ in 0..50 {
            b.deposit(Duration::ZERO);
        }
        assert_eq!(b.balance(9 * S + 999 * MS), 10.0);
        // Ten seconds later the deposits have left the window: an old quiet period
        // cannot fund a burst now.
        assert_eq!(b.balance(10 * S), 0.0);
        assert!(!b.try_withdraw(10 * S));
        assert!(!b.try_withdraw(3600 * S));

        // Withdrawals age out with their second too.
        let mut b = RetryBudget::new(0.5, 0);
        for _ in 0..4 {
            b.deposit(Duration::ZERO);
        }
        assert!(b.try_withdraw(9 * S) && b.try_withdraw(9 * S));
        assert_eq!(
            b.balance(10 * S),
            -2.0,
            "the deposits left, the retries not yet"
        );
        assert_eq!(b.balance(19 * S), 0.0);
    }

    #[test]
    fn floor_allows_min_per_second() {
        let mut b = RetryBudget::new(0.2, 3);
        for second in 0..5u64 {
            let now = Duration::from_secs(second) + 100 * MS;
            for i in 0..3 {
                assert!(b.try_withdraw(now + i * MS), "second {second}, retry {i}");
            }
            assert!(
                !b.try_withdraw(now + 500 * MS),
                "second {second}: floor used up"
            );
        }
        // Floor retries do not consume tokens.
        for _ in 0..10 {
            b.deposit(10 * S);
        }
        for _ in 0..5 {
            assert!(b.try_withdraw(10 * S));
        }
        assert!(!b.try_withdraw(10 * S), "3 from the floor, then 2 tokens");
    }

    #[test]
    fn the_running_sums_match_the_live_seconds() {
        let mut b = RetryBudget::with_ttl(0.3, 1, 5 * S);
        let mut now = Duration::ZERO;
        for i in 0..2_000u64 {
            now += Duration::from_millis(i % 13 * 41);
            if i % 3 == 0 {
                b.try_withdraw(now);
            } else {
                b.deposit(now);
            }
            let later = now + 2 * S;
            let mut copy = b.clone();
            copy.rotate(later);
            assert!(
                (copy.tokens() - b.balance(later)).abs() < 1e-9,
                "at {now:?}"
            );
        }
    }
}
