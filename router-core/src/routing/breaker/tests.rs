//! The breaker's state machine, driven by hand on a manual clock.

use super::*;
use crate::telemetry::window::Outcome;

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

#[test]
fn an_open_endpoint_is_due_a_probe_every_interval_but_not_right_after_its_trip() {
    let (mut b, opened) = tripped();
    assert!(!b.probe_due(opened), "it just failed");
    assert!(!b.probe_due(opened + 4 * S));
    assert!(b.probe_due(opened + 5 * S));
    assert!(!b.probe_due(opened + 6 * S), "one probe per interval");
    assert!(
        !b.probe_due(opened + 10 * S - MS),
        "4.999 s since the last probe"
    );
    assert!(
        !b.probe_due(opened + 10 * S),
        "the open time is over: the ramp probes"
    );
    let off = BreakerSettings {
        probe_every: None,
        ..BreakerSettings::default()
    };
    let mut b = Breaker::new(off, Duration::ZERO);
    let mut now = Duration::ZERO;
    feed(&mut b, &mut now, &repeat(fail(), 5)).expect("trips");
    assert!(!b.probe_due(now + 5 * S), "probes turned off");
}

#[test]
fn a_successful_probe_starts_the_ramp_at_once() {
    let (mut b, opened) = tripped();
    // A second trip: the open time doubles to 20 s.
    let mut now = opened + 10 * S;
    b.tick(now);
    let t = feed(&mut b, &mut now, &repeat(fail(), 2)).expect("the stage fails");
    assert_eq!(t.to, StateName::Open);
    assert!(b.probe_due(now + 5 * S));
    let t = b.probe_succeeded(now + 5 * S).expect("ramps");
    assert_eq!(
        (t.from, t.to, t.stage),
        (StateName::Open, StateName::Ramp, Some(0))
    );
    assert_eq!(t.reason.signal, Signal::ProbeSucceeded);
    assert!(
        t.reason.message.contains("health probe succeeded"),
        "{}",
        t.reason.message
    );
    assert!(
        b.probe_succeeded(now + 6 * S).is_none(),
        "only an open breaker ramps"
    );
}

#[test]
fn at_thin_traffic_the_ramp_admits_a_request_after_a_gap_whatever_its_share() {
    let (mut b, now) = ramping();
    // Stage 0 admits 5 %: a roll of 0.99 is refused while requests come often...
    assert!(
        b.admit(now + 1 * S, 0.99),
        "a second since the ramp began: admitted"
    );
    assert!(!b.admit(now + 1 * S + 100 * MS, 0.99));
    assert!(!b.admit(now + 1 * S + 900 * MS, 0.99));
    // ...and admitted once a second has passed with none.
    assert!(b.admit(now + 2 * S, 0.99));
    assert!(b.admit(now + 2 * S + MS, 0.01), "the share still applies");
}
