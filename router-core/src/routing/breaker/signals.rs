//! The breaker's signals: the trip conditions a window's tally is checked against
//! ([`check`]), the failure streak ([`streak`]), the long-run feedback baseline, and
//! the sentences that explain a trip to people.

use std::fmt;
use std::time::Duration;

use super::{BreakerSettings, FEEDBACK_BASELINE_ALPHA};
use crate::admin::{Reason, Signal};
use crate::api::ErrorKind;
use crate::telemetry::window::{Outcome, Tally};

/// Bias-corrected EWMA of votes (1 = up, 0 = down): exact mean at first, then an
/// exponential average with memory ≈ 1/alpha votes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Baseline {
    weighted: f64,
    weight: f64,
    votes: u64,
}

impl Baseline {
    pub(super) fn add(&mut self, positive: bool) {
        let a = FEEDBACK_BASELINE_ALPHA;
        self.weighted = (1.0 - a) * self.weighted + a * f64::from(u8::from(positive));
        self.weight = (1.0 - a) * self.weight + a;
        self.votes += 1;
    }

    pub(super) fn trusted(&self, min_votes: u32) -> Option<f64> {
        (self.votes >= u64::from(min_votes.max(1))).then(|| self.weighted / self.weight)
    }
}

/// Where a check's samples come from, for messages.
#[derive(Clone, Copy)]
pub(super) enum Scope {
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

/// Updates a failure streak: failures extend it, answers (success, client error)
/// reset it, throttles and neutral outcomes leave it alone.
pub(super) fn streak(streak: &mut u32, last: &mut Option<ErrorKind>, outcome: Outcome) {
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
pub(super) fn check(
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

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn millis_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn pct(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// "30 s", "2.5 s", "800 ms", "5 min".
pub(super) fn human(d: Duration) -> String {
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
