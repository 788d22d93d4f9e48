//! Seeded randomness for routing: the dice of variant choice (requests without a
//! sticky key), the breaker ramp's admission and the backoff jitter.
//!
//! An engine is given one seed; each request takes the next number of a counter and
//! draws its rolls from a SplitMix64 generator seeded with both. So a test that fixes
//! the seed and sends requests in order gets the same rolls on every run, while
//! production (seeded from the OS once) gets independent rolls per request with no
//! lock shared between serving threads: one relaxed atomic add per request.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hands out each request's [`Rolls`].
#[derive(Debug)]
pub struct Dice {
    seed: u64,
    requests: AtomicU64,
}

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            requests: AtomicU64::new(0),
        }
    }

    /// The rolls of the next request.
    pub fn next_request(&self) -> Rolls {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        Rolls::new(self.seed ^ n.wrapping_mul(GOLDEN).rotate_left(17))
    }
}

/// Uniform rolls in [0, 1) for one request (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rolls {
    state: u64,
}

impl Rolls {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next roll, uniform in [0, 1) (53 bits).
    pub fn roll(&mut self) -> f64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rolls_per_request() {
        let (a, b) = (Dice::new(42), Dice::new(42));
        for _ in 0..10 {
            let (mut x, mut y) = (a.next_request(), b.next_request());
            for _ in 0..5 {
                assert_eq!(x.roll().to_bits(), y.roll().to_bits());
            }
        }
        let mut other = Dice::new(43).next_request();
        assert_ne!(Dice::new(42).next_request().roll(), other.roll());
    }

    #[test]
    fn rolls_are_uniform_in_the_unit_interval() {
        let dice = Dice::new(7);
        let mut buckets = [0u32; 10];
        let n = 100_000;
        for _ in 0..n / 4 {
            let mut rolls = dice.next_request();
            for _ in 0..4 {
                let r = rolls.roll();
                assert!((0.0..1.0).contains(&r));
                buckets[(r * 10.0) as usize] += 1;
            }
        }
        for (i, &count) in buckets.iter().enumerate() {
            let share = f64::from(count) / f64::from(n);
            assert!((share - 0.1).abs() < 0.01, "bucket {i}: {share}");
        }
    }
}
