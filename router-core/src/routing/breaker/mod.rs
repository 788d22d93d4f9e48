//! The per-endpoint circuit breaker: a small state machine over the health signals of
//! a [`SlidingWindow`].
//!
//! ## Why several signals
//!
//! An LLM endpoint rarely fails cleanly. Each signal catches a failure the others miss:
//!
//! - **consecutive failures** catch a hard outage within a handful of requests, with
//!   no minimum volume: five timeouts in a row is enough evidence, however little
//!   traffic the endpoint gets;
//! - **windowed rates** (error rate, throttle rate over the last 30 s, once the window
//!   holds `min_requests`) catch a *partial* outage that a streak never sees because
//!   successes keep interrupting it;
//! - **windowed p90s** of TTFT and total latency catch the endpoint that is "up but
//!   slow": every request succeeds, and the users still leave;
//! - **user feedback** catches "answers got worse" (a silently swapped model, a bad
//!   deployment): the recent share of thumbs-up falls below a floor, or drops well
//!   below its own long-run baseline (an EWMA over votes).
//!
//! A throttle (rate limited, overloaded) counts against the throttle rate but neither
//! extends nor resets the failure streak: "too busy" is not "down". A client error (a
//! bad request the endpoint correctly refused) resets the streak, because the
//! endpoint answered. A provisioned endpoint's capacity refusal that spilled to
//! on-demand counts for nothing at all (see [`crate::telemetry::window`]).
//!
//! ## States
//!
//! - **Closed**: every request is admitted; the window's signals are checked after
//!   every sample and vote.
//! - **Open { until }**: nothing is admitted until `until`. Each consecutive trip
//!   doubles the open time (`open_for × 2^(trips − 1)`, capped at `max_open_for`), so
//!   an endpoint that keeps failing its probes is probed less and less often; a
//!   clean Closed period of `max_open_for` forgets the trips.
//! - **Ramp { stage, since }** (half-open): a graduated return, admitting
//!   `ramp[stage]` of requests (5 %, 25 %, 50 %, 100 % by default). Each stage is
//!   judged on its *own* samples (a fresh tally, minimum volume `stage_min_requests`)
//!   with the same conditions as Closed, plus a shorter failure streak
//!   (`max(2, consecutive_failures / 2)`). A bad stage reopens with the doubled open
//!   time; a stage that lasted `stage_for` and saw `stage_min_requests` judged
//!   samples without tripping advances; after the last stage the breaker closes with
//!   a fresh window (old outage samples must not re-trip it).
//!
//! The gate itself is dumb: [`Breaker::admit`] with a caller-supplied uniform roll.
//!
//! ## Overrides
//!
//! An operator can force an endpoint open (drain it) or closed (ignore its signals)
//! during an incident. A forced breaker still records samples (the console keeps
//! showing them) but never changes state by itself. Setting [`Override::Auto`] again:
//!
//! - after **ForceOpen**, enters the ramp at stage 0: the endpoint has had no traffic
//!   for a while, so it comes back gradually, exactly as after an automatic open;
//! - after **ForceClosed**, returns to Closed with a fresh window (streak and samples
//!   cleared): the operator overrode those signals, so the breaker judges the endpoint
//!   on what happens from now on.
//!
//! The trip counter (and with it the next open duration) is kept across overrides.
//!
//! ## Time and transitions
//!
//! `now` is the router clock's time since its epoch, passed in. Time-driven
//! transitions (Open → Ramp, stage advances) happen in whichever call first sees that
//! they are due: [`Breaker::tick`], [`Breaker::admit`], [`Breaker::record`]. Every
//! transition is queued and each mutating call returns the oldest queued one, so a
//! transition that `admit` (which returns a bool) caused comes out of the next call;
//! callers that want everything at once drain [`Breaker::take_transition`]. Calling
//! `tick` about once a second per endpoint keeps reporting prompt and lets idle
//! endpoints leave Open.

use std::collections::VecDeque;

use std::time::Duration;

use crate::admin::{BreakerView, Override, Reason, Signal, StateName, Transition, WindowStats};
use crate::api::ErrorKind;
use crate::telemetry::window::{Sample, SlidingWindow, Tally};

mod signals;

use signals::{Baseline, Scope, check, human, millis, millis_f, streak};

/// Weight of each new vote in the long-run feedback baseline (memory ≈ 50 votes).
pub const FEEDBACK_BASELINE_ALPHA: f64 = 0.02;

/// Queued transitions beyond this are dropped, oldest first (only reachable if a
/// caller never looks at the returned transitions).
const MAX_QUEUED: usize = 64;

/// Breaker policy. Rates are fractions in [0, 1]; a threshold of `None` (or a rate
/// above 1) disables that condition.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Length of the sliding window the rates and p90s are computed over.
    pub window: Duration,
    /// Number of time buckets of the window (its expiry granularity).
    pub window_buckets: usize,
    /// Judged requests the window needs before rates and p90s may trip it.
    pub min_requests: u32,
    /// Consecutive failures that trip it whatever the volume (0 disables).
    pub consecutive_failures: u32,
    pub error_rate: f64,
    pub throttle_rate: f64,
    pub ttft_p90: Option<Duration>,
    pub latency_p90: Option<Duration>,
    /// Votes the window needs before feedback may trip it; also the number of votes
    /// before the long-run baseline is trusted.
    pub feedback_min_votes: u32,
    /// Trip when the window's share of positive votes is below this.
    pub feedback_min_score: f64,
    /// Trip when the window's score is more than this below the long-run baseline.
    pub feedback_max_drop: f64,
    /// Open time after the first trip; doubled on each consecutive trip.
    pub open_for: Duration,
    /// Cap of the open time, and the clean Closed period that forgets past trips.
    pub max_open_for: Duration,
    /// Admission fractions of the partial-open stages, in order.
    pub ramp: Vec<f64>,
    /// Minimum time in each stage.
    pub stage_for: Duration,
    /// Judged samples a stage needs before it may advance (and before its rates may
    /// reopen the breaker).
    pub stage_min_requests: u32,
    /// While open, send the endpoint a health probe (a one-token request) this often;
    /// one that succeeds starts the ramp at once, so traffic comes back soon after
    /// the endpoint does even when open periods have grown long. `None`: no probes.
    pub probe_every: Option<Duration>,
    /// In the ramp, a request is admitted whatever the stage's share when none was
    /// for this long: at thin traffic a recovering endpoint still gets requests (and
    /// the samples its stages need) instead of sitting behind its backups.
    pub ramp_min_gap: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            window_buckets: 10,
            min_requests: 20,
            consecutive_failures: 5,
            error_rate: 0.5,
            throttle_rate: 0.5,
            // Latency depends on the model and on output length: thresholds are set
            // per endpoint, not defaulted.
            ttft_p90: None,
            latency_p90: None,
            feedback_min_votes: 20,
            feedback_min_score: 0.4,
            feedback_max_drop: 0.25,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(300),
            ramp: vec![0.05, 0.25, 0.5, 1.0],
            stage_for: Duration::from_secs(5),
            stage_min_requests: 5,
            probe_every: Some(Duration::from_secs(5)),
            ramp_min_gap: Duration::from_secs(1),
        }
    }
}

impl BreakerSettings {
    /// Open time after the `trips`-th consecutive trip.
    pub fn open_duration(&self, trips: u32) -> Duration {
        let doubling = 1u32 << trips.saturating_sub(1).min(20);
        self.open_for
            .saturating_mul(doubling)
            .min(self.max_open_for.max(self.open_for))
    }

    /// Admission fraction of ramp stage `stage` (1.0 past the last stage).
    pub fn stage_fraction(&self, stage: usize) -> f64 {
        self.ramp.get(stage).copied().unwrap_or(1.0)
    }

    fn stage_streak_limit(&self) -> u32 {
        (self.consecutive_failures / 2).max(2)
    }
}

/// The automatic state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    Closed,
    Open {
        until: Duration,
    },
    /// Half-open: admitting `ramp[stage]` of requests since `since`.
    Ramp {
        stage: usize,
        since: Duration,
    },
}

impl State {
    pub fn name(&self) -> StateName {
        match self {
            Self::Closed => StateName::Closed,
            Self::Open { .. } => StateName::Open,
            Self::Ramp { .. } => StateName::Ramp,
        }
    }
}

/// One endpoint's breaker. See the module docs.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    /// When the current state began.
    entered: Duration,
    reason: Reason,
    forced: Override,
    window: SlidingWindow,
    /// Consecutive failures while Closed, and the last one's class.
    streak: u32,
    last_failure: Option<ErrorKind>,
    /// The current ramp stage's own samples and failure streak.
    stage: Box<Tally>,
    stage_streak: u32,
    trips: u32,
    baseline: Baseline,
    queued: VecDeque<Transition>,
    /// When the ramp last admitted a request.
    last_ramp_admit: Option<Duration>,
    /// When the last health probe was sent.
    last_probe: Option<Duration>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, now: Duration) -> Self {
        Self {
            window: SlidingWindow::new(settings.window, settings.window_buckets),
            settings,
            state: State::Closed,
            entered: now,
            reason: Reason::new(Signal::Initial, 0.0, 0.0, "breaker created".into()),
            forced: Override::Auto,
            streak: 0,
            last_failure: None,
            stage: Box::default(),
            stage_streak: 0,
            trips: 0,
            baseline: Baseline::default(),
            queued: VecDeque::new(),
            last_ramp_admit: None,
            last_probe: None,
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// The current state (a forced state shows as Open / Closed).
    pub fn state(&self) -> State {
        self.state
    }

    pub fn override_mode(&self) -> Override {
        self.forced
    }

    /// Consecutive trips not yet forgotten.
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// Share of requests admitted in the current state.
    pub fn admission(&self) -> f64 {
        match (self.forced, self.state) {
            (Override::ForceOpen, _) | (Override::Auto, State::Open { .. }) => 0.0,
            (Override::ForceClosed, _) | (Override::Auto, State::Closed) => 1.0,
            (Override::Auto, State::Ramp { stage, .. }) => self.settings.stage_fraction(stage),
        }
    }

    /// May a request go to this endpoint now? `roll` is uniform in [0, 1) from the
    /// caller's RNG. Performs due time-driven transitions first (Open → Ramp once
    /// `until` has passed); those come out of the next call that returns transitions.
    pub fn admit(&mut self, now: Duration, roll: f64) -> bool {
        self.advance(now);
        match (self.forced, self.state) {
            (Override::ForceOpen, _) | (Override::Auto, State::Open { .. }) => false,
            (Override::ForceClosed, _) | (Override::Auto, State::Closed) => true,
            (Override::Auto, State::Ramp { stage, since }) => {
                let last = self.last_ramp_admit.unwrap_or(since);
                let starved = now.saturating_sub(last) >= self.settings.ramp_min_gap;
                let admitted = starved || roll < self.settings.stage_fraction(stage);
                if admitted {
                    self.last_ramp_admit = Some(now);
                }
                admitted
            }
        }
    }

    /// Whether the endpoint is due a health probe now (open, automatic, and the
    /// probe interval passed since it opened and since the last probe). A `true`
    /// counts as the probe being sent.
    pub fn probe_due(&mut self, now: Duration) -> bool {
        self.advance(now);
        let (Override::Auto, State::Open { until }, Some(every)) =
            (self.forced, self.state, self.settings.probe_every)
        else {
            return false;
        };
        let since = self.last_probe.unwrap_or(self.entered).max(self.entered);
        let due = now < until && now.saturating_sub(since) >= every;
        if due {
            self.last_probe = Some(now);
        }
        due
    }

    /// A health probe answered: an open endpoint starts its ramp now.
    pub fn probe_succeeded(&mut self, now: Duration) -> Option<Transition> {
        self.advance(now);
        if let (Override::Auto, State::Open { .. }) = (self.forced, self.state) {
            let open = now.saturating_sub(self.entered);
            let reason = Reason::new(
                Signal::ProbeSucceeded,
                millis_f(open),
                0.0,
                format!(
                    "a health probe succeeded after {} open; probing with {:.0}% of traffic (ramp stage 1 of {})",
                    human(open),
                    self.settings.stage_fraction(0) * 100.0,
                    self.settings.ramp.len()
                ),
            );
            self.enter_stage(now, 0, reason);
        }
        self.next_transition()
    }

    /// Records one finished attempt and checks the trip conditions.
    pub fn record(&mut self, now: Duration, sample: &Sample) -> Option<Transition> {
        self.advance(now);
        self.window.record(now, sample);
        if self.forced != Override::Auto {
            return self.next_transition();
        }
        match self.state {
            State::Closed => {
                streak(&mut self.streak, &mut self.last_failure, sample.outcome);
                let cf = self.settings.consecutive_failures;
                let reason = if cf > 0 && self.streak >= cf {
                    Some(self.streak_reason(self.streak, cf, None))
                } else {
                    self.window_reason(now)
                };
                if let Some(reason) = reason {
                    self.trip(now, reason);
                }
            }
            // A late answer to a request admitted before the trip: telemetry only.
            State::Open { .. } => {}
            State::Ramp { stage, .. } => {
                self.stage.record(sample);
                streak(
                    &mut self.stage_streak,
                    &mut self.last_failure,
                    sample.outcome,
                );
                let limit = self.settings.stage_streak_limit();
                let reason = if self.stage_streak >= limit {
                    let scope = self.stage_scope(stage);
                    Some(self.streak_reason(self.stage_streak, limit, Some(scope)))
                } else {
                    self.stage_reason(stage)
                };
                match reason {
                    Some(reason) => self.trip(now, reason),
                    None => self.advance(now),
                }
            }
        }
        self.next_transition()
    }

    /// Records a user's vote on an answer this endpoint gave and checks the feedback
    /// condition.
    pub fn record_feedback(&mut self, now: Duration, positive: bool) -> Option<Transition> {
        self.advance(now);
        self.window.record_feedback(now, positive);
        self.baseline.add(positive);
        if self.forced != Override::Auto {
            return self.next_transition();
        }
        let reason = match self.state {
            State::Closed => self.window_reason(now),
            State::Open { .. } => None,
            State::Ramp { stage, .. } => {
                self.stage.record_feedback(positive);
                self.stage_reason(stage)
            }
        };
        if let Some(reason) = reason {
            self.trip(now, reason);
        }
        self.next_transition()
    }

    /// Performs due time-driven transitions: Open → Ramp once `until` has passed, a
    /// ramp stage advance once it lasted `stage_for` with `stage_min_requests` judged
    /// samples and no trip condition, Closed after the last stage.
    pub fn tick(&mut self, now: Duration) -> Option<Transition> {
        self.advance(now);
        self.next_transition()
    }

    /// The oldest transition not yet returned by any call.
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.queued.pop_front()
    }

    /// Sets an operator override (see the module docs for what Auto returns to).
    /// `reason` is the operator's note, kept in the transition's message.
    pub fn set_override(
        &mut self,
        now: Duration,
        mode: Override,
        reason: String,
    ) -> Option<Transition> {
        self.advance(now);
        let previous = self.forced;
        if mode == previous {
            return self.next_transition();
        }
        self.forced = mode;
        let note = if reason.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", reason.trim())
        };
        let why = |message: String| Reason::new(Signal::Override, 0.0, 0.0, message);
        match (mode, previous) {
            (Override::ForceOpen, _) => {
                let reason = why(format!("forced open by an operator{note}"));
                self.enter(
                    now,
                    State::Open {
                        until: Duration::MAX,
                    },
                    reason,
                );
            }
            (Override::ForceClosed, _) => {
                let reason = why(format!("forced closed by an operator{note}"));
                self.enter(now, State::Closed, reason);
            }
            (Override::Auto, Override::ForceOpen) => {
                let reason = why(format!(
                    "override released{note}; ramping back from {:.0}% of traffic",
                    self.settings.stage_fraction(0) * 100.0
                ));
                self.enter_stage(now, 0, reason);
            }
            (Override::Auto, _) => {
                let reason = why(format!(
                    "override released{note}; closed with a fresh window"
                ));
                self.enter(now, State::Closed, reason);
                self.window.clear();
            }
        }
        self.next_transition()
    }

    /// Applies a newly published policy. The state, its timers and the window's
    /// samples are kept; only a change of the window's length or bucket count
    /// starts a new (empty) window, since samples cannot be re-bucketed. New
    /// thresholds apply from the next sample.
    pub fn update_settings(&mut self, settings: BreakerSettings) {
        if settings.window != self.settings.window
            || settings.window_buckets != self.settings.window_buckets
        {
            self.window = SlidingWindow::new(settings.window, settings.window_buckets);
        }
        self.settings = settings;
    }

    pub fn view(&self, now: Duration) -> BreakerView {
        let ramp = match self.state {
            State::Ramp { stage, .. } if self.forced == Override::Auto => Some(stage),
            _ => None,
        };
        BreakerView {
            state: self.state.name(),
            since_ms: millis(self.entered),
            elapsed_ms: millis(now.saturating_sub(self.entered)),
            reason: self.reason.clone(),
            admission: self.admission(),
            stage: ramp,
            stages: self.settings.ramp.len(),
            stage_requests: ramp.map(|_| self.stage.judged()),
            trips: self.trips,
            override_mode: self.forced,
            open_until_ms: match (self.forced, self.state) {
                (Override::Auto, State::Open { until }) => Some(millis(until)),
                _ => None,
            },
        }
    }

    /// The window's summary as of `now`.
    pub fn stats(&self, now: Duration) -> WindowStats {
        self.window.stats(now)
    }

    // --- internals -------------------------------------------------------------

    fn next_transition(&mut self) -> Option<Transition> {
        self.queued.pop_front()
    }

    fn enter(&mut self, now: Duration, to: State, reason: Reason) {
        if self.queued.len() >= MAX_QUEUED {
            self.queued.pop_front();
        }
        self.queued.push_back(Transition {
            from: self.state.name(),
            to: to.name(),
            at_ms: millis(now),
            stage: match to {
                State::Ramp { stage, .. } => Some(stage),
                _ => None,
            },
            reason: reason.clone(),
        });
        self.state = to;
        self.entered = now;
        self.reason = reason;
        self.streak = 0;
        self.stage_streak = 0;
        self.stage.clear();
    }

    /// Enters ramp stage `stage`, or Closed (with a fresh window) past the last one.
    fn enter_stage(&mut self, now: Duration, stage: usize, reason: Reason) {
        if stage < self.settings.ramp.len() {
            self.enter(now, State::Ramp { stage, since: now }, reason);
        } else {
            self.enter(now, State::Closed, reason);
            self.window.clear();
        }
    }

    fn trip(&mut self, now: Duration, mut reason: Reason) {
        self.trips = self.trips.saturating_add(1);
        let open_for = self.settings.open_duration(self.trips);
        reason.message = format!("{}; open for {}", reason.message, human(open_for));
        let until = now.saturating_add(open_for);
        self.enter(now, State::Open { until }, reason);
    }

    /// Time-driven transitions, repeated while they are due.
    fn advance(&mut self, now: Duration) {
        if self.forced != Override::Auto {
            return;
        }
        // Each pass moves at most one stage forward: bounded by the number of stages.
        for _ in 0..self.settings.ramp.len() + 2 {
            match self.state {
                State::Closed => {
                    if self.trips > 0
                        && now.saturating_sub(self.entered) >= self.settings.max_open_for
                    {
                        self.trips = 0;
                    }
                    return;
                }
                State::Open { until } => {
                    if now < until {
                        return;
                    }
                    let open = until.saturating_sub(self.entered);
                    let next = if self.settings.ramp.is_empty() {
                        "closing (no ramp configured)".to_owned()
                    } else {
                        format!(
                            "probing with {:.0}% of traffic (ramp stage 1 of {})",
                            self.settings.stage_fraction(0) * 100.0,
                            self.settings.ramp.len()
                        )
                    };
                    let reason = Reason::new(
                        Signal::OpenElapsed,
                        millis_f(now.saturating_sub(self.entered)),
                        millis_f(open),
                        format!("open for {}; {next}", human(open)),
                    );
                    self.enter_stage(now, 0, reason);
                }
                State::Ramp { stage, since } => {
                    let judged = self.stage.judged();
                    if now.saturating_sub(since) < self.settings.stage_for
                        || judged < u64::from(self.settings.stage_min_requests)
                    {
                        return;
                    }
                    if let Some(reason) = self.stage_reason(stage) {
                        self.trip(now, reason);
                        return;
                    }
                    let stages = self.settings.ramp.len();
                    let next = if stage + 1 < stages {
                        format!(
                            "admitting {:.0}%",
                            self.settings.stage_fraction(stage + 1) * 100.0
                        )
                    } else {
                        "closed".to_owned()
                    };
                    let reason = Reason::new(
                        Signal::StageHealthy,
                        judged as f64,
                        f64::from(self.settings.stage_min_requests),
                        format!(
                            "ramp stage {} of {stages} healthy ({judged} requests, {} failures in {}); {next}",
                            stage + 1,
                            self.stage.failures(),
                            human(now.saturating_sub(since)),
                        ),
                    );
                    self.enter_stage(now, stage + 1, reason);
                }
            }
        }
    }

    fn stage_scope(&self, stage: usize) -> Scope {
        Scope::Stage {
            stage,
            stages: self.settings.ramp.len(),
        }
    }

    fn streak_reason(&self, streak: u32, limit: u32, scope: Option<Scope>) -> Reason {
        let last = self.last_failure.map_or("failure", ErrorKind::as_str);
        let scope = scope.map(|s| format!(" {s}")).unwrap_or_default();
        Reason::new(
            Signal::ConsecutiveFailures,
            f64::from(streak),
            f64::from(limit),
            format!("{streak} consecutive failures{scope} (last: {last}), threshold {limit}"),
        )
    }

    /// Rate, p90 and feedback conditions on the Closed window.
    fn window_reason(&mut self, now: Duration) -> Option<Reason> {
        let scope = Scope::Window(self.window.window());
        let baseline = self.baseline.trusted(self.settings.feedback_min_votes);
        let tally = self.window.current(now);
        check(
            tally,
            &self.settings,
            self.settings.min_requests,
            baseline,
            scope,
        )
    }

    /// The same conditions on the current ramp stage's own samples.
    fn stage_reason(&self, stage: usize) -> Option<Reason> {
        let baseline = self.baseline.trusted(self.settings.feedback_min_votes);
        let scope = self.stage_scope(stage);
        check(
            &self.stage,
            &self.settings,
            self.settings.stage_min_requests,
            baseline,
            scope,
        )
    }
}

#[cfg(test)]
mod tests;
