//! The router's clock, injected so breaker, window and capacity logic is
//! deterministic under test.
//!
//! Routing code never reads `std::time::Instant` (clippy's `disallowed-types` bans it
//! in this crate): it asks a [`Clock`] for "time since the clock's epoch" and passes
//! that `now` down to pure functions. In production the clock is tokio's, which tests
//! pause and advance (`#[tokio::test(start_paused = true)]`); pure unit tests use a
//! [`ManualClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since this clock's epoch.
    fn now(&self) -> Duration;
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn set(&self, to: Duration) {
        self.nanos.store(to.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// tokio's clock: real time in production, paused and auto-advanced in tests.
#[cfg(feature = "providers")]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

#[cfg(feature = "providers")]
impl TokioClock {
    pub fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The tokio instant of a `now` of this clock (for `sleep_until`, `timeout_at`).
    pub fn instant(&self, at: Duration) -> tokio::time::Instant {
        self.epoch + at
    }
}

#[cfg(feature = "providers")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "providers")]
impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}
