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
use std::fmt;
use std::time::Duration;

use crate::admin::{BreakerView, Override, Reason, Signal, StateName, Transition, WindowStats};
use crate::api::ErrorKind;
use crate::telemetry::window::{Outcome, Sample, SlidingWindow, Tally};

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

/// Bias-corrected EWMA of votes (1 = up, 0 = down): exact mean at first, then an
/// exponential average with memory ≈ 1/alpha votes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Baseline {
    weighted: f64,
    weight: f64,
    votes: u64,
}

impl Baseline {
    fn add(&mut self, positive: bool) {
        let a = FEEDBACK_BASELINE_ALPHA;
        self.weighted = (1.0 - a) * self.weighted + a * f64::from(u8::from(positive));
        self.weight = (1.0 - a) * self.weight + a;
        self.votes += 1;
    }

    fn trusted(&self, min_votes: u32) -> Option<f64> {
        (self.votes >= u64::from(min_votes.max(1))).then(|| self.weighted / self.weight)
    }
}

/// Where a check's samples come from, for messages.
#[derive(Clone, Copy)]
enum Scope {
    Window(Duration),
    Stage { stage: usize, stages: usize },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Window(d) => write!(f, "in {}", human(*d)),
            Self::Stage { stage, stages } => write!(f, "in ramp stage {} of {stages}", stage + 1),
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
            (Override::Auto, State::Ramp { stage, .. }) => {
                roll < self.settings.stage_fraction(stage)
            }
        }
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

/// Updates a failure streak: failures extend it, answers (success, client error)
/// reset it, throttles and neutral outcomes leave it alone.
fn streak(streak: &mut u32, last: &mut Option<ErrorKind>, outcome: Outcome) {
    match outcome {
        Outcome::Failure(kind) => {
            *streak = streak.saturating_add(1);
            *last = Some(kind);
        }
        Outcome::Success | Outcome::ClientError(_) => *streak = 0,
        Outcome::Throttled(_) | Outcome::Neutral | Outcome::SpilledAway => {}
    }
}

/// The first trip condition `tally` meets, if any. Rates and p90s need `min_volume`
/// judged requests (p90s: that many samples in their histogram); feedback needs
/// `feedback_min_votes` votes.
fn check(
    tally: &Tally,
    s: &BreakerSettings,
    min_volume: u32,
    baseline: Option<f64>,
    scope: Scope,
) -> Option<Reason> {
    let min_volume = u64::from(min_volume);
    let judged = tally.judged();
    if judged >= min_volume && judged > 0 {
        let rate = tally.error_rate();
        if rate > s.error_rate {
            return Some(Reason::new(
                Signal::ErrorRate,
                rate,
                s.error_rate,
                format!(
                    "error rate {} over threshold {} ({} failures of {judged} requests {scope})",
                    pct(rate),
                    pct(s.error_rate),
                    tally.failures(),
                ),
            ));
        }
        let rate = tally.throttle_rate();
        if rate > s.throttle_rate {
            return Some(Reason::new(
                Signal::ThrottleRate,
                rate,
                s.throttle_rate,
                format!(
                    "throttle rate {} over threshold {} ({} throttled of {judged} requests {scope})",
                    pct(rate),
                    pct(s.throttle_rate),
                    tally.throttles(),
                ),
            ));
        }
    }
    let slow = [
        (Signal::TtftP90, "TTFT", s.ttft_p90, tally.ttft()),
        (
            Signal::LatencyP90,
            "latency",
            s.latency_p90,
            tally.latency(),
        ),
    ];
    for (signal, label, threshold, histogram) in slow {
        if let Some(threshold) = threshold
            && histogram.count() >= min_volume.max(1)
            && let Some(p90) = histogram.quantile(0.9)
            && p90 > threshold
        {
            return Some(Reason::new(
                signal,
                millis_f(p90),
                millis_f(threshold),
                format!(
                    "{label} p90 {:.0} ms over threshold {:.0} ms ({} requests {scope})",
                    millis_f(p90),
                    millis_f(threshold),
                    histogram.count(),
                ),
            ));
        }
    }
    let votes = tally.feedback_votes();
    if votes >= u64::from(s.feedback_min_votes)
        && let Some(score) = tally.feedback_score()
    {
        if score < s.feedback_min_score {
            return Some(Reason::new(
                Signal::Feedback,
                score,
                s.feedback_min_score,
                format!(
                    "feedback score {score:.2} below minimum {:.2} ({votes} votes {scope})",
                    s.feedback_min_score
                ),
            ));
        }
        if let Some(baseline) = baseline
            && baseline - score > s.feedback_max_drop
        {
            return Some(Reason::new(
                Signal::Feedback,
                baseline - score,
                s.feedback_max_drop,
                format!(
                    "feedback score {score:.2} is {:.2} below its baseline {baseline:.2}, max drop {:.2} ({votes} votes {scope})",
                    baseline - score,
                    s.feedback_max_drop
                ),
            ));
        }
    }
    None
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn millis_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// "30 s", "2.5 s", "800 ms", "5 min".
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn ok() -> Sample {
        Sample::success(200 * MS)
    }

    fn fail() -> Sample {
        Sample::new(Outcome::Failure(ErrorKind::UpstreamError), 50 * MS)
    }

    fn throttled() -> Sample {
        Sample::new(Outcome::Throttled(ErrorKind::RateLimited), 20 * MS)
    }

    /// Deterministic rolls in [0, 1) (Knuth's MMIX LCG).
    struct Lcg(u64);

    impl Lcg {
        fn roll(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Records `samples` one per 10 ms from `*now`, returning the first transition.
    fn feed(b: &mut Breaker, now: &mut Duration, samples: &[Sample]) -> Option<Transition> {
        let mut first = None;
        for sample in samples {
            *now += 10 * MS;
            if let Some(t) = b.record(*now, sample) {
                first.get_or_insert(t);
            }
        }
        first
    }

    fn repeat(sample: Sample, n: usize) -> Vec<Sample> {
        vec![sample; n]
    }

    /// Trips a default breaker on consecutive failures; returns it and the time.
    fn tripped() -> (Breaker, Duration) {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = 100 * S;
        let t = feed(&mut b, &mut now, &repeat(fail(), 5)).expect("trips");
        assert_eq!(t.to, StateName::Open);
        (b, now)
    }

    /// Opens, waits out the open time and enters ramp stage 0.
    fn ramping() -> (Breaker, Duration) {
        let (mut b, mut now) = tripped();
        now += 10 * S;
        let t = b.tick(now).expect("ramps");
        assert_eq!((t.to, t.stage), (StateName::Ramp, Some(0)));
        (b, now)
    }

    #[test]
    fn trips_on_consecutive_failures() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        assert!(feed(&mut b, &mut now, &repeat(fail(), 4)).is_none());
        // A success resets the streak.
        assert!(feed(&mut b, &mut now, &[ok()]).is_none());
        assert!(feed(&mut b, &mut now, &repeat(fail(), 4)).is_none());
        let t = feed(&mut b, &mut now, &[fail()]).expect("the fifth in a row trips");
        assert_eq!((t.from, t.to), (StateName::Closed, StateName::Open));
        assert_eq!(t.reason.signal, Signal::ConsecutiveFailures);
        assert_eq!((t.reason.value, t.reason.threshold), (5.0, 5.0));
        assert!(
            t.reason.message.contains("upstream_error"),
            "{}",
            t.reason.message
        );
        assert!(!b.admit(now, 0.0));
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn throttles_count_against_the_rate_not_the_streak() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        // Throttles neither extend nor reset the failure streak ...
        let mut samples = Vec::new();
        for _ in 0..4 {
            samples.extend([fail(), throttled()]);
        }
        assert!(feed(&mut b, &mut now, &samples).is_none());
        let t = feed(&mut b, &mut now, &[fail()]).expect("fifth failure");
        assert_eq!(t.reason.signal, Signal::ConsecutiveFailures);

        // ... and a run of throttles alone never trips the streak.
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        assert!(feed(&mut b, &mut now, &repeat(throttled(), 19)).is_none());
        // With the window's minimum volume reached, the throttle rate trips it.
        let t = feed(&mut b, &mut now, &[throttled()]).expect("throttle rate");
        assert_eq!(t.reason.signal, Signal::ThrottleRate);
    }

    #[test]
    fn trips_on_5xx_rate() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        // 2 failures out of 3, never 5 in a row: 12 failures in 18 requests so far.
        let pattern = [fail(), fail(), ok()];
        for _ in 0..6 {
            assert!(feed(&mut b, &mut now, &pattern).is_none());
        }
        assert!(feed(&mut b, &mut now, &[fail()]).is_none(), "19 requests");
        let t = feed(&mut b, &mut now, &[fail()]).expect("20 requests, 70 % errors");
        assert_eq!(t.reason.signal, Signal::ErrorRate);
        assert_eq!((t.reason.value, t.reason.threshold), (0.7, 0.5));
        assert_eq!(
            t.reason.message,
            "error rate 70% over threshold 50% (14 failures of 20 requests in 30 s); open for 10 s"
        );
    }

    #[test]
    fn trips_on_throttle_rate() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut samples = Vec::new();
        for _ in 0..10 {
            samples.extend([throttled(), throttled(), ok()]);
        }
        let t = feed(&mut b, &mut now, &samples).expect("2 of 3 throttled");
        assert_eq!(t.reason.signal, Signal::ThrottleRate);
        assert!(t.reason.value > 0.6 && t.reason.threshold == 0.5);
        assert_eq!(b.stats(now).failures, 0);
    }

    #[test]
    fn trips_on_ttft_p90() {
        let settings = BreakerSettings {
            ttft_p90: Some(1500 * MS),
            ..BreakerSettings::default()
        };
        let mut b = Breaker::new(settings, Duration::ZERO);
        let mut now = Duration::ZERO;
        let fast = Sample::success(3 * S).with_ttft(400 * MS);
        let slow = Sample::success(5 * S).with_ttft(2400 * MS);
        // All successes, and under the TTFT threshold at p90.
        assert!(feed(&mut b, &mut now, &repeat(fast, 30)).is_none());
        // "Up but slow": 10 slow ones of 40 push p90 over.
        let t = feed(&mut b, &mut now, &repeat(slow, 10)).expect("slow TTFT");
        assert_eq!(t.reason.signal, Signal::TtftP90);
        assert!(
            (t.reason.value - 2400.0).abs() < 2400.0 * 0.04,
            "{}",
            t.reason.value
        );
        assert_eq!(t.reason.threshold, 1500.0);
    }

    #[test]
    fn trips_on_latency_p90() {
        let settings = BreakerSettings {
            latency_p90: Some(8 * S),
            ..BreakerSettings::default()
        };
        let mut b = Breaker::new(settings, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut samples = repeat(Sample::success(2 * S), 15);
        samples.extend(repeat(Sample::success(12 * S), 5));
        let t = feed(&mut b, &mut now, &samples).expect("slow p90 at 20 requests");
        assert_eq!(t.reason.signal, Signal::LatencyP90);
        assert_eq!(t.reason.threshold, 8000.0);
        assert!(
            t.reason.message.starts_with("latency p90 "),
            "{}",
            t.reason.message
        );
    }

    #[test]
    fn trips_on_feedback_trend() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        // A long history of 95 % positive votes, spread over several windows.
        for i in 0..400 {
            now += 300 * MS;
            assert!(b.record_feedback(now, i % 20 != 0).is_none());
        }
        // A window of 50/50: above the absolute floor (0.4), but far below the
        // baseline (≈ 0.95): the trend trips it.
        now += 60 * S;
        let mut trip = None;
        for i in 0..40 {
            now += 100 * MS;
            if let Some(t) = b.record_feedback(now, i % 2 == 0) {
                trip = Some((i + 1, t));
                break;
            }
        }
        let (votes, t) = trip.expect("feedback trend");
        assert_eq!(votes, 20, "trips as soon as the window has enough votes");
        assert_eq!(t.reason.signal, Signal::Feedback);
        assert!(t.reason.value > 0.25 && t.reason.threshold == 0.25);
        assert!(
            t.reason.message.contains("baseline"),
            "{}",
            t.reason.message
        );

        // A steady 50 % from the start is the baseline itself: no trend, no trip.
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        for i in 0..400 {
            now += 300 * MS;
            assert!(b.record_feedback(now, i % 2 == 0).is_none());
        }
        // But a window under the floor trips whatever the baseline.
        now += 60 * S;
        let mut trip = None;
        for i in 0..40 {
            now += 100 * MS;
            trip = trip.or(b.record_feedback(now, i % 4 == 0));
        }
        assert!(trip.unwrap().reason.message.contains("below minimum 0.40"));
    }

    #[test]
    fn holds_under_minimum_volume() {
        let settings = BreakerSettings {
            latency_p90: Some(S),
            ..BreakerSettings::default()
        };
        let mut b = Breaker::new(settings, Duration::ZERO);
        let mut now = Duration::ZERO;
        // 19 judged requests, 2/3 failures, all successes slow: still closed.
        let pattern = [fail(), fail(), Sample::success(5 * S)];
        for _ in 0..6 {
            assert!(feed(&mut b, &mut now, &pattern).is_none());
        }
        assert!(feed(&mut b, &mut now, &[fail()]).is_none());
        // Client errors and our own bugs do not make up the volume.
        let client = Sample::new(Outcome::ClientError(ErrorKind::InvalidRequest), MS);
        let neutral = Sample::new(Outcome::Neutral, MS);
        assert!(feed(&mut b, &mut now, &repeat(client, 10)).is_none());
        assert!(feed(&mut b, &mut now, &repeat(neutral, 10)).is_none());
        assert_eq!(b.state(), State::Closed);
        assert!(b.admit(now, 0.99));
        assert_eq!(b.stats(now).requests, 39);
        // The 20th judged request trips it.
        assert!(feed(&mut b, &mut now, &[fail()]).is_some());
    }

    #[test]
    fn open_rejects_then_ramps_after_open_for() {
        let (mut b, mut now) = tripped();
        let until = now + 10 * S;
        assert_eq!(b.view(now).open_until_ms, Some(millis(until)));
        while now < until {
            assert!(!b.admit(now, 0.0), "open at {now:?}");
            assert!(b.tick(now).is_none());
            now += 500 * MS;
        }
        // Due: admit itself moves to ramp stage 0 and admits its share ...
        assert!(b.admit(until, 0.01));
        assert!(!b.admit(until, 0.5));
        assert_eq!(
            b.state(),
            State::Ramp {
                stage: 0,
                since: until
            }
        );
        // ... and the transition comes out of the next call.
        let t = b.tick(until).expect("queued transition");
        assert_eq!(
            (t.from, t.to, t.stage),
            (StateName::Open, StateName::Ramp, Some(0))
        );
        assert_eq!(t.reason.signal, Signal::OpenElapsed);
        assert_eq!((t.reason.value, t.reason.threshold), (10_000.0, 10_000.0));
        assert!(b.tick(until).is_none());
    }

    #[test]
    fn ramp_admits_roughly_its_fraction() {
        let (mut b, now) = ramping();
        let mut rng = Lcg(3);
        let admitted = (0..10_000).filter(|_| b.admit(now, rng.roll())).count();
        assert!(
            (400..=600).contains(&admitted),
            "{admitted} of 10000 at 5 %"
        );
        assert_eq!(b.view(now).admission, 0.05);
    }

    #[test]
    fn ramp_advances_through_every_stage_to_closed() {
        let (mut b, mut now) = ramping();
        let stages = b.settings().ramp.clone();
        for (stage, fraction) in stages.iter().enumerate() {
            assert_eq!(b.admission(), *fraction);
            // Enough samples but not enough time: stays.
            assert!(feed(&mut b, &mut now, &repeat(ok(), 5)).is_none());
            assert!(b.tick(now + S).is_none());
            // Enough time but (in a fresh stage) the samples are counted per stage.
            now += 5 * S;
            let t = b.tick(now).expect("stage advances");
            assert_eq!(t.reason.signal, Signal::StageHealthy);
            assert_eq!(t.from, StateName::Ramp);
            if stage + 1 < stages.len() {
                assert_eq!((t.to, t.stage), (StateName::Ramp, Some(stage + 1)));
                assert_eq!(b.view(now).stage_requests, Some(0));
            } else {
                assert_eq!(t.to, StateName::Closed);
                assert!(t.reason.message.ends_with("closed"), "{}", t.reason.message);
            }
        }
        assert_eq!(b.state(), State::Closed);
        assert!(b.admit(now, 0.999));
        // Closed with a fresh window: the outage samples are gone.
        assert_eq!(b.stats(now).failures, 0);
        // A stage that saw too few samples does not advance, however long it lasts.
        let (mut b, mut now) = ramping();
        feed(&mut b, &mut now, &repeat(ok(), 4));
        assert!(b.tick(now + 60 * S).is_none());
        assert_eq!(b.view(now).stage, Some(0));
    }

    #[test]
    fn bad_stage_reopens_with_doubled_open_time() {
        let (mut b, mut now) = ramping();
        // Two failures in a row in a stage reopen it, for twice as long.
        assert!(feed(&mut b, &mut now, &[ok(), fail()]).is_none());
        let t = feed(&mut b, &mut now, &[fail()]).expect("reopens");
        assert_eq!((t.from, t.to), (StateName::Ramp, StateName::Open));
        assert_eq!(t.reason.signal, Signal::ConsecutiveFailures);
        assert!(
            t.reason.message.contains("in ramp stage 1 of 4"),
            "{}",
            t.reason.message
        );
        assert!(
            t.reason.message.ends_with("open for 20 s"),
            "{}",
            t.reason.message
        );
        assert_eq!(b.view(now).open_until_ms, Some(millis(now + 20 * S)));
        assert_eq!(b.trips(), 2);

        // A stage's rates are judged on its own samples: 3 failures of 5 reopen it
        // (40 s now), even with no two in a row.
        now += 20 * S;
        assert!(b.admit(now, 0.0));
        assert_eq!(b.tick(now).unwrap().to, StateName::Ramp);
        let t = feed(&mut b, &mut now, &[fail(), ok(), fail(), ok(), fail()]).expect("rate");
        assert_eq!(t.reason.signal, Signal::ErrorRate);
        assert!(
            t.reason
                .message
                .contains("of 5 requests in ramp stage 1 of 4")
        );
        assert_eq!(b.view(now).open_until_ms, Some(millis(now + 40 * S)));

        // The open time is capped at max_open_for.
        let s = BreakerSettings::default();
        assert_eq!(s.open_duration(1), 10 * S);
        assert_eq!(s.open_duration(5), 160 * S);
        assert_eq!(s.open_duration(6), 300 * S);
        assert_eq!(s.open_duration(60), 300 * S);

        // A clean closed period of max_open_for forgets the trips.
        let (mut b, mut now) = ramping();
        for _ in 0..4 {
            feed(&mut b, &mut now, &repeat(ok(), 5));
            now += 5 * S;
            b.tick(now);
        }
        assert_eq!((b.state(), b.trips()), (State::Closed, 1));
        now += 300 * S;
        b.tick(now);
        assert_eq!(b.trips(), 0);
    }

    #[test]
    fn spilled_capacity_never_counts_against_health() {
        use crate::telemetry::window::classify;
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        let spilled = Sample::new(classify(ErrorKind::CapacityExhausted, true), 30 * MS);
        assert_eq!(spilled.outcome, Outcome::SpilledAway);
        let mut samples = repeat(spilled, 100);
        samples.extend(repeat(ok(), 20));
        samples.extend(repeat(spilled, 100));
        assert!(feed(&mut b, &mut now, &samples).is_none());
        // Spills neither reset nor extend the failure streak either.
        let mut samples = repeat(fail(), 4);
        samples.extend(repeat(spilled, 10));
        assert!(feed(&mut b, &mut now, &samples).is_none());
        assert_eq!(b.state(), State::Closed);
        let stats = b.stats(now);
        assert_eq!(
            (stats.requests, stats.spilled_away, stats.failures),
            (24, 210, 4)
        );
        assert_eq!(stats.throttles, 0);
        // On an on-demand endpoint the same error is a throttle.
        assert_eq!(
            classify(ErrorKind::CapacityExhausted, false),
            Outcome::Throttled(ErrorKind::CapacityExhausted)
        );
    }

    #[test]
    fn force_open_and_force_closed_override_signals() {
        let mut b = Breaker::new(BreakerSettings::default(), Duration::ZERO);
        let mut now = Duration::ZERO;
        let t = b
            .set_override(now, Override::ForceClosed, "known bad health probe".into())
            .expect("transition");
        assert_eq!(
            (t.from, t.to, t.reason.signal),
            (StateName::Closed, StateName::Closed, Signal::Override)
        );
        assert_eq!(
            t.reason.message,
            "forced closed by an operator: known bad health probe"
        );
        // Forced closed: 50 failures change nothing, but are still counted.
        assert!(feed(&mut b, &mut now, &repeat(fail(), 50)).is_none());
        assert!(b.admit(now, 0.999));
        assert_eq!(b.stats(now).failures, 50);
        assert_eq!(b.view(now).override_mode, Override::ForceClosed);
        assert!(
            b.set_override(now, Override::ForceClosed, String::new())
                .is_none()
        );

        // Back to Auto: Closed with a fresh window, so old failures do not re-trip it.
        let t = b.set_override(now, Override::Auto, String::new()).unwrap();
        assert_eq!(t.to, StateName::Closed);
        assert_eq!(b.stats(now).failures, 0);
        assert!(feed(&mut b, &mut now, &repeat(fail(), 4)).is_none());

        // Forced open: nothing admitted, healthy samples and time change nothing.
        let t = b
            .set_override(now, Override::ForceOpen, "drain for maintenance".into())
            .unwrap();
        assert_eq!((t.from, t.to), (StateName::Closed, StateName::Open));
        assert!(feed(&mut b, &mut now, &repeat(ok(), 50)).is_none());
        now += 3600 * S;
        assert!(b.tick(now).is_none());
        assert!(!b.admit(now, 0.0));
        let view = b.view(now);
        assert_eq!(
            (view.state, view.admission, view.open_until_ms),
            (StateName::Open, 0.0, None)
        );

        // Back to Auto: the endpoint ramps back in from stage 0.
        let t = b
            .set_override(now, Override::Auto, "maintenance over".into())
            .unwrap();
        assert_eq!(
            (t.from, t.to, t.stage),
            (StateName::Open, StateName::Ramp, Some(0))
        );
        assert!(
            t.reason
                .message
                .starts_with("override released: maintenance over")
        );
        assert_eq!(b.admission(), 0.05);
    }

    #[test]
    fn transitions_carry_signal_value_and_threshold() {
        let settings = BreakerSettings {
            ttft_p90: Some(1500 * MS),
            ..BreakerSettings::default()
        };
        let mut b = Breaker::new(settings, Duration::ZERO);
        let mut now = 30 * S;
        let slow = Sample::success(4 * S).with_ttft(2400 * MS);
        let mut samples = repeat(Sample::success(S).with_ttft(300 * MS), 30);
        samples.extend(repeat(slow, 10));
        let t = feed(&mut b, &mut now, &samples).expect("trips");
        assert_eq!(t.at_ms, 30_340, "the 34th sample, 10 ms apart from 30 s");
        assert_eq!(t.reason.signal, Signal::TtftP90);
        assert_eq!(t.reason.threshold, 1500.0);
        // The histogram reports the middle of its bucket: within 3.2 % of 2400 ms.
        assert!((t.reason.value - 2400.0).abs() < 80.0);
        assert!(
            t.reason.message.starts_with("TTFT p90 2")
                && t.reason
                    .message
                    .contains(" ms over threshold 1500 ms (34 requests in 30 s)"),
            "{}",
            t.reason.message
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["reason"]["signal"], "ttft_p90");
        assert_eq!(json["from"], "closed");
        assert_eq!(json["to"], "open");
        assert_eq!(serde_json::from_value::<Transition>(json).unwrap(), t);

        // The view remembers the reason of the current state.
        let view = b.view(Duration::from_millis(t.at_ms) + S);
        assert_eq!(view.reason, t.reason);
        assert_eq!(
            (view.state, view.trips, view.elapsed_ms),
            (StateName::Open, 1, 1000)
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["override"], "auto");
        assert_eq!(serde_json::from_value::<BreakerView>(json).unwrap(), view);
    }

    #[test]
    fn settings_update_keeps_state() {
        let (mut b, now) = tripped();
        let before = b.view(now);
        let stats = b.stats(now);
        b.update_settings(BreakerSettings {
            error_rate: 0.2,
            open_for: 60 * S,
            ttft_p90: Some(S),
            ..BreakerSettings::default()
        });
        assert_eq!(b.view(now), before, "still open, same deadline and reason");
        assert_eq!(b.stats(now), stats, "window kept");
        assert_eq!(b.settings().error_rate, 0.2);
        // A new window geometry starts an empty window, and keeps the state.
        b.update_settings(BreakerSettings {
            window: 60 * S,
            ..BreakerSettings::default()
        });
        assert_eq!(b.state(), before_state(&before));
        assert_eq!(b.stats(now).requests, 0);
    }

    fn before_state(view: &BreakerView) -> State {
        State::Open {
            until: Duration::from_millis(view.open_until_ms.unwrap()),
        }
    }

    #[test]
    fn every_transition_is_reported_even_when_admit_caused_it() {
        let settings = BreakerSettings {
            stage_min_requests: 0,
            stage_for: Duration::ZERO,
            ..BreakerSettings::default()
        };
        let mut b = Breaker::new(settings, Duration::ZERO);
        let mut now = Duration::ZERO;
        feed(&mut b, &mut now, &repeat(fail(), 5));
        now += 10 * S;
        // With no minimums, one admit runs Open → every stage → Closed.
        assert!(b.admit(now, 0.5));
        let mut seen = Vec::new();
        while let Some(t) = b.take_transition() {
            seen.push((t.to, t.stage));
        }
        assert_eq!(
            seen,
            [
                (StateName::Ramp, Some(0)),
                (StateName::Ramp, Some(1)),
                (StateName::Ramp, Some(2)),
                (StateName::Ramp, Some(3)),
                (StateName::Closed, None)
            ]
        );
    }
}
