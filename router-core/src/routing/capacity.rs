//! Provisioned capacity: how many tokens an endpoint has used in the last minute,
//! and whether the next request still fits under its ceiling.
//!
//! Spilling is decided *before* sending, from Crossbar's own count, so a burst moves
//! to the on-demand sibling instead of collecting throttles from the provisioned
//! endpoint. A request reserves an estimate of its tokens when it is admitted (so
//! concurrent requests see each other) and settles to the real usage when it ends.
//! The provider's own verdict wins too: a `capacity_exhausted` answer marks the
//! endpoint full until its `retry-after` (or a second), whatever the count says.

use std::time::Duration;

const SLOTS: usize = 60;
const SLOT: Duration = Duration::from_secs(1);

/// Tokens per second over the last minute, plus in-flight reservations.
#[derive(Debug, Clone)]
pub struct CapacityTracker {
    ceiling_tpm: u64,
    slots: [u64; SLOTS],
    /// The second (since the clock's epoch) that `slots[head]` counts.
    head_second: u64,
    head: usize,
    reserved: u64,
    full_until: Option<Duration>,
}

impl CapacityTracker {
    pub fn new(ceiling_tpm: u64) -> Self {
        Self {
            ceiling_tpm,
            slots: [0; SLOTS],
            head_second: 0,
            head: 0,
            reserved: 0,
            full_until: None,
        }
    }

    pub fn ceiling(&self) -> u64 {
        self.ceiling_tpm
    }

    pub fn set_ceiling(&mut self, ceiling_tpm: u64) {
        self.ceiling_tpm = ceiling_tpm;
    }

    fn rotate(&mut self, now: Duration) {
        let second = now.as_secs();
        if second <= self.head_second {
            return;
        }
        let gap = second - self.head_second;
        if gap as usize >= SLOTS {
            self.slots = [0; SLOTS];
            self.head = 0;
        } else {
            for _ in 0..gap {
                self.head = (self.head + 1) % SLOTS;
                self.slots[self.head] = 0;
            }
        }
        self.head_second = second;
    }

    /// Tokens used in the last 60 s, plus what in-flight requests reserved.
    pub fn used(&mut self, now: Duration) -> u64 {
        self.rotate(now);
        self.slots.iter().sum::<u64>() + self.reserved
    }

    /// Would `estimate` more tokens fit under the ceiling now?
    pub fn fits(&mut self, now: Duration, estimate: u64) -> bool {
        if self.full_until.is_some_and(|until| now < until) {
            return false;
        }
        self.used(now) + estimate <= self.ceiling_tpm
    }

    /// Counts `estimate` tokens as in flight; give them back with [`Self::settle`].
    pub fn reserve(&mut self, estimate: u64) {
        self.reserved += estimate;
    }

    /// A request that reserved `estimate` ended having used `actual` tokens.
    pub fn settle(&mut self, now: Duration, estimate: u64, actual: u64) {
        self.reserved = self.reserved.saturating_sub(estimate);
        self.rotate(now);
        self.slots[self.head] += actual;
    }

    /// The provider said the ceiling is reached.
    pub fn mark_full(&mut self, now: Duration, retry_after: Option<Duration>) {
        let until = now + retry_after.unwrap_or(SLOT).min(Duration::from_secs(60));
        self.full_until = Some(self.full_until.map_or(until, |u| u.max(until)));
    }

    /// Share of the ceiling used in the last minute, for the dashboard.
    pub fn utilisation(&mut self, now: Duration) -> f64 {
        if self.ceiling_tpm == 0 {
            return 0.0;
        }
        self.used(now) as f64 / self.ceiling_tpm as f64
    }
}

/// A rough token estimate of a request before it is sent: a quarter of its
/// characters (the usual ratio for English with BPE tokenizers) plus its output
/// limit, or 256 output tokens when it sets none.
pub fn estimate_tokens(prompt_chars: usize, output_limit: Option<u32>) -> u64 {
    (prompt_chars as u64).div_ceil(4) + u64::from(output_limit.unwrap_or(256))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn usage_counts_the_last_minute_only() {
        let mut t = CapacityTracker::new(1_000);
        t.settle(Duration::ZERO, 0, 600);
        t.settle(30 * S, 0, 300);
        assert_eq!(t.used(59 * S), 900);
        assert!(!t.fits(59 * S, 200));
        assert_eq!(t.used(60 * S), 300, "the first second has left the window");
        assert!(t.fits(60 * S, 200));
        assert_eq!(t.used(200 * S), 0, "a long gap clears everything");
    }

    #[test]
    fn reservations_make_concurrent_requests_see_each_other() {
        let mut t = CapacityTracker::new(1_000);
        assert!(t.fits(S, 600));
        t.reserve(600);
        assert!(!t.fits(S, 600), "the second burst request must spill");
        t.settle(2 * S, 600, 100);
        assert_eq!(t.used(2 * S), 100);
        assert!(t.fits(2 * S, 600));
    }

    #[test]
    fn the_providers_verdict_wins_until_retry_after() {
        let mut t = CapacityTracker::new(1_000_000);
        t.mark_full(10 * S, Some(3 * S));
        assert!(!t.fits(12 * S, 1));
        assert!(t.fits(13 * S, 1));
        t.mark_full(20 * S, None);
        assert!(!t.fits(20 * S, 1) && t.fits(21 * S, 1));
    }

    #[test]
    fn estimates_count_prompt_and_output() {
        assert_eq!(estimate_tokens(400, Some(100)), 200);
        assert_eq!(estimate_tokens(1, None), 257);
    }
}
