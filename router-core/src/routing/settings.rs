//! From the configured [`BreakerParams`] (every field optional) to the breaker's
//! concrete [`BreakerSettings`], unset fields taking the built-in defaults.

use std::time::Duration;

use super::breaker::BreakerSettings;
use crate::config::BreakerParams;

impl BreakerSettings {
    pub fn from_params(p: &BreakerParams) -> BreakerSettings {
        let d = BreakerSettings::default();
        let ms = Duration::from_millis;
        BreakerSettings {
            window: p.window_s.map_or(d.window, Duration::from_secs),
            window_buckets: d.window_buckets,
            min_requests: p.min_requests.unwrap_or(d.min_requests),
            consecutive_failures: p.consecutive_failures.unwrap_or(d.consecutive_failures),
            error_rate: p.error_rate.unwrap_or(d.error_rate),
            throttle_rate: p.throttle_rate.unwrap_or(d.throttle_rate),
            ttft_p90: p.ttft_p90_ms.map(ms).or(d.ttft_p90),
            latency_p90: p.latency_p90_ms.map(ms).or(d.latency_p90),
            feedback_min_votes: p.feedback_min_votes.unwrap_or(d.feedback_min_votes),
            feedback_min_score: p.feedback_min_score.unwrap_or(d.feedback_min_score),
            feedback_max_drop: p.feedback_max_drop.unwrap_or(d.feedback_max_drop),
            open_for: p.open_ms.map_or(d.open_for, ms),
            max_open_for: p.max_open_ms.map_or(d.max_open_for, ms),
            ramp: p
                .ramp_percent
                .as_ref()
                .map_or_else(|| d.ramp.clone(), |r| r.iter().map(|x| x / 100.0).collect()),
            stage_for: p.stage_ms.map_or(d.stage_for, ms),
            stage_min_requests: p.stage_min_requests.unwrap_or(d.stage_min_requests),
            probe_every: match p.probe_interval_ms {
                Some(0) => None,
                Some(ms_) => Some(ms(ms_)),
                None => d.probe_every,
            },
            ramp_min_gap: p.ramp_min_gap_ms.map_or(d.ramp_min_gap, ms),
        }
    }
}
