//! What the server observes of its own traffic, in memory: the telemetry sink the
//! router reports to, per-feature live windows for the console, the cumulative
//! totals `/metrics` reports ([`MetricTotals`]), and the broadcast of breaker events.
//!
//! Every method here is called on the hot path (once per request): each takes one
//! short mutex and never awaits. The durable copy goes to the ledger writer's channel.
//!
//! The mutexes are `parking_lot`'s, which a panic does not poison: were one request's
//! accounting to panic while holding a lock (its handler gets a 500 from the stack's
//! panic catch), every later request still takes the lock as usual, instead of
//! panicking on a poisoned `std::sync::Mutex` for the rest of the process's life.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use router_core::admin::BreakerEvent;
use router_core::admin::{ContinuationEvent, FeatureLive, VariantLive};
use router_core::api::Dialect;
use router_core::config::Config;
use router_core::telemetry::histogram::LatencyHistogram;
use router_core::telemetry::record::{RequestRecord, TelemetrySink};
use rust_decimal::Decimal;
use tokio::sync::broadcast;

use crate::store::{LedgerHandle, is_error};

/// Seconds of history in the live feature windows.
pub const LIVE_WINDOW_S: u64 = 60;

/// Recent stream continuations kept for the console's timeline.
const RECENT_CONTINUATIONS: usize = 100;

/// The router's telemetry sink: ledger, live windows, metric totals, event broadcast.
pub struct ServerSink {
    pub ledger: LedgerHandle,
    pub live: Arc<Live>,
    pub events: broadcast::Sender<BreakerEvent>,
}

impl TelemetrySink for ServerSink {
    fn request(&self, record: RequestRecord) {
        self.live.observe(&record);
        self.ledger.record(record);
    }

    fn breaker(&self, event: BreakerEvent) {
        self.live.count_transition(&event);
        self.ledger.breaker_event(event.clone());
        // No subscriber is fine: nobody is watching the console.
        let _ = self.events.send(event);
    }
}

/// Live per-feature traffic and cumulative totals.
#[derive(Default)]
pub struct Live {
    features: Mutex<HashMap<String, FeatureRing>>,
    totals: Mutex<MetricTotals>,
    continuations: Mutex<VecDeque<ContinuationEvent>>,
}

/// What `/metrics` reports of the traffic, cumulative since start: kept here as plain
/// sums under one short lock per request; `metrics.rs` turns them into Prometheus
/// families at scrape time, so the hot path pays nothing for the exposition format.
#[derive(Default)]
pub struct MetricTotals {
    /// `feature␟variant␟endpoint␟outcome` → totals (one joined key: a lookup builds
    /// one small string instead of cloning four; see [`MetricTotals::requests`]).
    requests: HashMap<String, RequestTotals>,
    /// (endpoint, state entered) → breaker transitions.
    pub transitions: BTreeMap<(String, String), u64>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RequestTotals {
    pub count: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Decimal,
    pub latency_ms_sum: f64,
    pub spilled: u64,
    pub fallbacks: u64,
    /// Streams continued on another endpoint after breaking.
    pub continuations: u64,
    /// Malformed upstream chunks skipped.
    pub skipped_chunks: u64,
}

/// `(feature, variant, endpoint, outcome)`.
pub type RequestKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Separates the parts of a request key (ASCII unit separator: not in any name).
const KEY_SEPARATOR: &str = "\u{1f}";

impl MetricTotals {
    /// `((feature, variant, endpoint, outcome), totals)`, sorted by key.
    pub fn requests(&self) -> Vec<(RequestKey<'_>, &RequestTotals)> {
        let mut out: Vec<_> = self
            .requests
            .iter()
            .filter_map(|(k, t)| {
                let mut parts = k.split(KEY_SEPARATOR);
                Some((
                    (parts.next()?, parts.next()?, parts.next()?, parts.next()?),
                    t,
                ))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One feature's last minute, one slot per second.
struct FeatureRing {
    slots: Vec<Slot>,
}

#[derive(Default, Clone)]
struct Slot {
    second: i64,
    requests: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    variants: BTreeMap<String, (u64, u64)>,
    depth: Vec<u64>,
    spilled: u64,
    continuations: u64,
    /// Requests per dialect, in [`Dialect::ALL`]'s order.
    dialects: [u64; Dialect::ALL.len()],
    latency: LatencyHistogram,
    ttft: LatencyHistogram,
    cost: Decimal,
}

impl FeatureRing {
    fn new() -> Self {
        Self {
            slots: vec![Slot::default(); LIVE_WINDOW_S as usize],
        }
    }

    fn slot(&mut self, second: i64) -> &mut Slot {
        let i = second.rem_euclid(LIVE_WINDOW_S as i64) as usize;
        let slot = &mut self.slots[i];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }
}

/// `dialect`'s place in [`Dialect::ALL`].
fn dialect_index(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Chat => 0,
        Dialect::Messages => 1,
        Dialect::Responses => 2,
    }
}

/// `map[key]`, inserted as the default if missing: copies `key` only the first time
/// (this runs once per request on the hot path).
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

impl Live {
    pub fn observe(&self, r: &RequestRecord) {
        // A shadow is no user's request: its health shows in the candidate's breaker
        // windows, its cost in the ledger as migration cost, its comparison in the
        // parity report.
        if r.shadow.is_some() {
            return;
        }
        let second = r.at_ms.div_euclid(1000);
        {
            let mut features = self.features.lock();
            if !features.contains_key(&r.feature) {
                features.insert(r.feature.clone(), FeatureRing::new());
            }
            let ring = features.get_mut(&r.feature).expect("just inserted");
            let slot = ring.slot(second);
            slot.requests += 1;
            slot.dialects[dialect_index(r.dialect)] += 1;
            let error = is_error(&r.outcome);
            if error {
                slot.errors += 1;
                *entry(&mut slot.errors_by_kind, &r.outcome) += 1;
            }
            let v = entry(&mut slot.variants, &r.variant);
            v.0 += 1;
            v.1 += u64::from(error);
            if !error {
                let depth = r.fallback_depth as usize;
                if slot.depth.len() <= depth {
                    slot.depth.resize(depth + 1, 0);
                }
                slot.depth[depth] += 1;
                slot.latency
                    .record(Duration::from_secs_f64(r.latency_ms.max(0.0) / 1000.0));
                if let Some(ttft) = r.ttft_ms {
                    slot.ttft
                        .record(Duration::from_secs_f64(ttft.max(0.0) / 1000.0));
                }
            }
            slot.spilled += u64::from(r.spilled);
            slot.continuations += u64::from(r.continuations);
            slot.cost += r.cost;
        }
        if r.continuations > 0 {
            self.note_continuations(r);
        }
        let key = [
            r.feature.as_str(),
            r.variant.as_str(),
            r.endpoint.as_deref().unwrap_or_default(),
            r.outcome.as_str(),
        ]
        .join(KEY_SEPARATOR);
        let mut all = self.totals.lock();
        let totals = all.requests.entry(key).or_default();
        totals.count += 1;
        totals.prompt_tokens += r.prompt_tokens;
        totals.completion_tokens += r.completion_tokens;
        totals.cost += r.cost;
        totals.latency_ms_sum += r.latency_ms;
        totals.spilled += u64::from(r.spilled);
        totals.fallbacks += u64::from(r.fallback_depth > 0);
        totals.continuations += u64::from(r.continuations);
        totals.skipped_chunks += u64::from(r.skipped_chunks);
    }

    /// Keeps a continued stream's continuations for the timeline: each attempt that
    /// continued, from the last earlier attempt that had streamed output.
    fn note_continuations(&self, r: &RequestRecord) {
        let mut recent = self.continuations.lock();
        for (i, a) in r.attempts.iter().enumerate() {
            let Some(method) = &a.continuation else {
                continue;
            };
            if a.outcome != "ok" && i + 1 != r.attempts.len() {
                continue;
            }
            let from = r.attempts[..i]
                .iter()
                .rev()
                .find(|b| b.completion_tokens > 0)
                .map(|b| b.endpoint.clone())
                .unwrap_or_default();
            if recent.len() == RECENT_CONTINUATIONS {
                recent.pop_front();
            }
            recent.push_back(ContinuationEvent {
                at_ms: r.at_ms,
                request_id: r.request_id.clone(),
                feature: r.feature.clone(),
                from,
                to: a.endpoint.clone(),
                method: method.clone(),
            });
        }
    }

    /// The most recent stream continuations, newest last.
    pub fn recent_continuations(&self) -> Vec<ContinuationEvent> {
        self.continuations.lock().iter().cloned().collect()
    }

    fn count_transition(&self, e: &BreakerEvent) {
        let mut totals = self.totals.lock();
        *totals
            .transitions
            .entry((e.endpoint.clone(), e.transition.to.as_str().to_owned()))
            .or_default() += 1;
    }

    /// Runs `f` over the cumulative totals (`/metrics`, at scrape time).
    pub fn with_totals<R>(&self, f: impl FnOnce(&MetricTotals) -> R) -> R {
        f(&self.totals.lock())
    }

    /// Every configured feature's last minute, at wall-clock `now_ms`.
    pub fn features(&self, config: &Config, now_ms: i64) -> Vec<FeatureLive> {
        let now_second = now_ms.div_euclid(1000);
        let oldest = now_second - LIVE_WINDOW_S as i64 + 1;
        let features = self.features.lock();
        config
            .features()
            .iter()
            .map(|f| {
                let mut live = FeatureLive {
                    feature: f.name.clone(),
                    experiment_id: f.experiment_id.clone(),
                    window_s: LIVE_WINDOW_S,
                    ..FeatureLive::default()
                };
                let mut variants: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                let mut dialects = [0u64; Dialect::ALL.len()];
                let (mut latency, mut ttft) = (LatencyHistogram::new(), LatencyHistogram::new());
                if let Some(ring) = features.get(&f.name) {
                    for slot in ring
                        .slots
                        .iter()
                        .filter(|s| s.second >= oldest && s.second <= now_second)
                    {
                        live.requests += slot.requests;
                        live.errors += slot.errors;
                        for (k, n) in &slot.errors_by_kind {
                            *live.errors_by_kind.entry(k.clone()).or_default() += n;
                        }
                        for (k, (n, e)) in &slot.variants {
                            let v = variants.entry(k.clone()).or_default();
                            v.0 += n;
                            v.1 += e;
                        }
                        if live.fallback_depth.len() < slot.depth.len() {
                            live.fallback_depth.resize(slot.depth.len(), 0);
                        }
                        for (i, n) in slot.depth.iter().enumerate() {
                            live.fallback_depth[i] += n;
                        }
                        live.spilled += slot.spilled;
                        live.continuations += slot.continuations;
                        for (sum, n) in dialects.iter_mut().zip(slot.dialects) {
                            *sum += n;
                        }
                        live.cost += slot.cost;
                        latency.merge(&slot.latency);
                        ttft.merge(&slot.ttft);
                    }
                }
                let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
                live.dialects = Dialect::ALL
                    .into_iter()
                    .zip(dialects)
                    .filter(|(_, n)| *n > 0)
                    .map(|(d, n)| (d.as_str().to_owned(), n))
                    .collect();
                live.latency_p50_ms = ms(latency.quantile(0.5));
                live.latency_p90_ms = ms(latency.quantile(0.9));
                live.ttft_p90_ms = ms(ttft.quantile(0.9));
                live.variants = f
                    .variants
                    .iter()
                    .map(|v| {
                        let (requests, errors) = variants.get(&v.name).copied().unwrap_or_default();
                        VariantLive {
                            name: v.name.clone(),
                            configured_percent: v.percent,
                            requests,
                            observed_percent: if live.requests == 0 {
                                0.0
                            } else {
                                requests as f64 * 100.0 / live.requests as f64
                            },
                            errors,
                        }
                    })
                    .collect();
                live
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::config::{EndpointConfig, FeatureConfig, Provider, RouterConfig};

    fn record(feature: &str) -> RequestRecord {
        RequestRecord {
            request_id: "req_1".into(),
            at_ms: 1_700_000_000_000,
            feature: feature.into(),
            variant: "default".into(),
            endpoint: Some("e".into()),
            outcome: "ok".into(),
            status: 200,
            latency_ms: 12.0,
            ..RequestRecord::default()
        }
    }

    /// One request's accounting panicking with the locks held (a bug, a bad
    /// record) must not take every later request down with it: a poisoned
    /// `std::sync::Mutex` behind `.expect("lock")` did exactly that.
    #[test]
    fn a_panic_while_a_lock_is_held_does_not_break_later_requests() {
        let live = Arc::new(Live::default());
        live.observe(&record("summarize"));
        let held = live.clone();
        let panicked = std::thread::spawn(move || {
            let _features = held.features.lock();
            let _totals = held.totals.lock();
            panic!("a request's accounting fails with the locks held");
        })
        .join();
        assert!(panicked.is_err());
        live.observe(&record("recap"));
        assert_eq!(live.with_totals(|t| t.requests().len()), 2);
        assert_eq!(live.features.lock().len(), 2);
    }

    #[test]
    fn a_features_live_window_counts_requests_by_dialect() {
        let raw = RouterConfig {
            endpoints: vec![EndpointConfig::new("e", Provider::Openai, "m", "eastus")],
            features: vec![FeatureConfig::new("f", &["e"])],
            ..RouterConfig::default()
        };
        let config = Config::validate(raw).unwrap();
        let live = Live::default();
        let now_ms = 1_000_000;
        for dialect in [Dialect::Chat, Dialect::Messages, Dialect::Messages] {
            live.observe(&RequestRecord {
                at_ms: now_ms,
                feature: "f".into(),
                variant: "default".into(),
                outcome: "ok".into(),
                dialect,
                ..RequestRecord::default()
            });
        }
        let features = live.features(&config, now_ms);
        assert_eq!(features[0].requests, 3);
        assert_eq!(
            features[0].dialects,
            BTreeMap::from([("chat".to_owned(), 1), ("messages".to_owned(), 2)])
        );
    }
}
