//! The router's clock: the one place routing code learns the time or waits for it.
//!
//! Routing code never reads `std::time::Instant`, `SystemTime::now` or calls
//! `tokio::time::sleep` (the workspace's `clippy.toml` bans them; this module is the
//! only one allowed to use them). It asks a [`Clock`] for "time since the clock's
//! epoch" and passes that `now` down to pure functions (breaker, windows, budget,
//! capacity, the decision after a failed attempt); the engine waits for a moment of
//! the same clock with [`Clock::sleep_until`] (backoffs) and [`within`] (timeouts).
//!
//! - [`TokioClock`] is production's: tokio's monotonic clock, which tests can pause
//!   (`#[tokio::test(start_paused = true)]`): then time only moves when every task is
//!   waiting on a timer, and jumps straight to the next one, so a test of a 30 s
//!   outage runs in microseconds and always the same way.
//! - [`ManualClock`] moves only when told to; pure unit tests use it, and its sleeps
//!   end when it is advanced past them.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the clock module is where time is read and waited for"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of monotonic time, and a way to wait for it.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since this clock's epoch.
    fn now(&self) -> Duration;

    /// Completes once [`Clock::now`] has reached `at` (at once if it has).
    fn sleep_until(&self, at: Duration) -> Sleep;
}

/// A wait on a [`Clock`].
pub type Sleep = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `work` until `clock` reaches `at`: `Some(output)` if it finished first,
/// `None` if time ran out (and `work` was dropped).
pub async fn within<F: std::future::Future>(
    clock: &dyn Clock,
    at: Duration,
    work: F,
) -> Option<F::Output> {
    use futures_util::future::{Either, select};
    let work = std::pin::pin!(work);
    match select(work, clock.sleep_until(at)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}

/// A clock that moves only when told to. Clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    shared: Arc<ManualTime>,
}

#[derive(Debug, Default)]
struct ManualTime {
    nanos: AtomicU64,
    moved: tokio::sync::Notify,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.shared.nanos.fetch_add(by, Ordering::SeqCst);
        self.wake();
    }

    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.shared.nanos.store(to, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        self.shared.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.shared.nanos.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, at: Duration) -> Sleep {
        let clock = self.clone();
        Box::pin(async move {
            loop {
                // Registered before the check, so an advance in between is not missed.
                let moved = clock.shared.moved.notified();
                if clock.now() >= at {
                    return;
                }
                moved.await;
            }
        })
    }
}

/// tokio's clock: real time in production, paused and auto-advanced in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn sleep_until(&self, at: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.epoch + at))
    }
}

/// Wall-clock time now (to read an upstream's HTTP-date against; routing decisions
/// never read it).
pub fn wall_clock() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// Wall-clock time now, in ms since the Unix epoch: the `at_ms` of records, events
/// and stored state. Routing decisions never read it; they run on a [`Clock`].
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_sleep_ends_when_the_clock_is_advanced_past_it() {
        let clock = ManualClock::new();
        let sleeper = tokio::spawn(clock.sleep_until(Duration::from_secs(5)));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "4 s is not 5 s");
        clock.advance(Duration::from_secs(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn within_gives_up_when_the_clock_reaches_the_deadline() {
        let clock = ManualClock::new();
        let never = std::future::pending::<()>();
        let waiting = {
            let clock = clock.clone();
            tokio::spawn(async move { within(&clock, Duration::from_millis(10), never).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(10));
        assert_eq!(waiting.await.unwrap(), None);
        assert_eq!(within(&clock, Duration::ZERO, async { 7 }).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_a_paused_runtime() {
        let clock = TokioClock::new();
        clock.sleep_until(Duration::from_secs(30)).await;
        assert_eq!(clock.now(), Duration::from_secs(30));
    }
}
