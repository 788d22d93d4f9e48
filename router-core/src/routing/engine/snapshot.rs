//! What the engine serves from: the published configuration with its connected
//! adapters ([`Snapshot`]), and each endpoint's live state ([`EndpointState`]:
//! breaker, provisioned capacity, requests in flight).
//!
//! A snapshot is immutable and swapped in whole, so a request reads one consistent
//! configuration from start to end without a lock. Endpoint state outlives
//! snapshots: the [`Registry`] keeps it by endpoint name, so a publish does not reset
//! a breaker, a window or a capacity count.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::admin::{BreakerEvent, EndpointHealth, StateName, Transition};
use crate::api::Error;
use crate::config::{Config, EndpointId};
use crate::providers::{self, ChatProvider, TransportSettings};
use crate::routing::breaker::{Breaker, BreakerSettings};
use crate::routing::capacity::CapacityTracker;
use crate::routing::clock::unix_ms;
use crate::routing::drill::DrillRule;
use crate::routing::plan::{Admission, Gate};
use crate::telemetry::record::TelemetrySink;
use crate::telemetry::window::Sample;

/// The live state of one endpoint.
pub struct EndpointState {
    pub name: String,
    breaker: Mutex<Breaker>,
    capacity: Mutex<Option<CapacityTracker>>,
    in_flight: AtomicU64,
}

impl EndpointState {
    fn new(name: &str, settings: BreakerSettings, now: Duration) -> Self {
        Self {
            name: name.to_owned(),
            breaker: Mutex::new(Breaker::new(settings, now)),
            capacity: Mutex::new(None),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the breaker, then reports every transition it caused (the breaker
    /// queues them: one call can cause several, e.g. open → ramp → open). The
    /// transitions are reported after the lock is released.
    pub(super) fn apply<R>(
        &self,
        sink: &dyn TelemetrySink,
        f: impl FnOnce(&mut Breaker) -> (R, Option<Transition>),
    ) -> R {
        let mut transitions = Vec::new();
        let result = {
            let mut breaker = self.breaker.lock();
            let (result, first) = f(&mut breaker);
            transitions.extend(first);
            while let Some(t) = breaker.take_transition() {
                transitions.push(t);
            }
            result
        };
        for transition in transitions {
            tracing::info!(
                endpoint = %self.name,
                from = %transition.from,
                to = %transition.to,
                reason = %crate::logging::escaped(&transition.reason.message),
                "breaker transition"
            );
            sink.breaker(BreakerEvent {
                endpoint: self.name.clone(),
                at_ms: unix_ms(),
                transition,
            });
        }
        result
    }

    /// Records one finished attempt in the breaker and its windows.
    pub(super) fn observe(&self, sink: &dyn TelemetrySink, now: Duration, sample: &Sample) {
        self.apply(sink, |b| ((), b.record(now, sample)));
    }

    /// Runs `f` on the provisioned capacity tracker, if the endpoint has one.
    pub(super) fn capacity<R>(&self, f: impl FnOnce(&mut CapacityTracker) -> R) -> Option<R> {
        self.capacity.lock().as_mut().map(f)
    }

    pub(super) fn in_flight(&self) -> &AtomicU64 {
        &self.in_flight
    }
}

/// A configuration whose adapters are connected, ready to activate.
pub struct Prepared {
    pub(super) config: Config,
    pub(super) providers: Vec<Arc<dyn ChatProvider>>,
}

impl Prepared {
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connects what `config` needs; adapters of endpoints unchanged since `old` are
    /// reused, with their connection pools and cached credentials; new ones pool
    /// their connections as `transport` says.
    pub(super) async fn connect(
        config: Config,
        old: Option<&Snapshot>,
        transport: &TransportSettings,
    ) -> Result<Self, Error> {
        let mut providers = Vec::with_capacity(config.endpoints().len());
        for e in config.endpoints() {
            let reused = old.and_then(|old| {
                old.config
                    .endpoint_id(&e.config.name)
                    .filter(|&id| old.config.endpoint(id).config == e.config)
                    .map(|id| old.providers[id].clone())
            });
            providers.push(match reused {
                Some(p) => p,
                None => providers::connect(&e.config, transport).await?,
            });
        }
        Ok(Self { config, providers })
    }
}

/// One published configuration with its connected adapters and its endpoints' state.
pub struct Snapshot {
    pub version: i64,
    pub config: Arc<Config>,
    pub(super) providers: Vec<Arc<dyn ChatProvider>>,
    pub(super) states: Vec<Arc<EndpointState>>,
}

impl Snapshot {
    pub fn provider(&self, id: EndpointId) -> &Arc<dyn ChatProvider> {
        &self.providers[id]
    }

    pub(super) fn state(&self, id: EndpointId) -> &Arc<EndpointState> {
        &self.states[id]
    }

    /// Live health of every endpoint, as of `now`.
    pub(super) fn health(&self, now: Duration) -> Vec<EndpointHealth> {
        self.config
            .endpoints()
            .iter()
            .zip(&self.states)
            .map(|(e, state)| {
                let (breaker, stats) = {
                    let b = state.breaker.lock();
                    (b.view(now), b.stats(now))
                };
                let capacity_utilisation = state.capacity(|c| c.utilisation(now));
                EndpointHealth {
                    name: e.config.name.clone(),
                    provider: e.config.provider.as_str().to_owned(),
                    model: e.config.model.clone(),
                    region: e.config.region.clone(),
                    geography: e.config.geography.clone(),
                    provisioned: e.config.is_provisioned(),
                    spill_to: e
                        .spill_to
                        .map(|s| self.config.endpoint(s).config.name.clone()),
                    breaker,
                    stats,
                    capacity_utilisation,
                    in_flight: state.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Every endpoint's state by name, across configuration versions.
#[derive(Default)]
pub(super) struct Registry {
    states: Mutex<HashMap<String, Arc<EndpointState>>>,
}

impl Registry {
    /// The state of each endpoint of `config`, in its order: kept where the name is
    /// known, new otherwise; breaker settings and capacity ceilings updated to the
    /// new configuration.
    pub(super) fn states_for(&self, config: &Config, now: Duration) -> Vec<Arc<EndpointState>> {
        let mut states = self.states.lock();
        config
            .endpoints()
            .iter()
            .map(|e| {
                let settings = BreakerSettings::from_params(&e.breaker);
                let state = states
                    .entry(e.config.name.clone())
                    .or_insert_with(|| {
                        Arc::new(EndpointState::new(&e.config.name, settings.clone(), now))
                    })
                    .clone();
                state.breaker.lock().update_settings(settings);
                let mut capacity = state.capacity.lock();
                match (e.capacity_tpm, capacity.as_mut()) {
                    (Some(tpm), Some(tracker)) => tracker.set_ceiling(tpm),
                    (Some(tpm), None) => *capacity = Some(CapacityTracker::new(tpm)),
                    (None, _) => *capacity = None,
                }
                drop(capacity);
                state
            })
            .collect()
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<EndpointState>> {
        self.states.lock().get(name).cloned()
    }
}

/// The breaker and capacity state, and the active drills, as the planner sees them.
pub(super) struct LiveGate<'a> {
    pub snapshot: &'a Snapshot,
    pub sink: &'a dyn TelemetrySink,
    pub now: Duration,
    pub drills: &'a [DrillRule],
    /// Wall-clock time (drills end at a wall-clock moment).
    pub now_ms: i64,
    /// This request's roll for drills: one per request, so a drill of a share of
    /// traffic takes its target out of whole requests.
    pub drill_roll: f64,
    /// The first drill that took an endpoint out.
    pub drilled: Option<String>,
}

impl Gate for LiveGate<'_> {
    fn admit(&mut self, endpoint: EndpointId, roll: f64) -> Admission {
        let config = &self.snapshot.config.endpoint(endpoint).config;
        if let Some(drill) = self
            .drills
            .iter()
            .find(|d| d.takes_out(config, self.now_ms, self.drill_roll))
        {
            // The breaker is not asked (nor ticked): a drill leaves its data alone.
            self.drilled.get_or_insert_with(|| drill.id.clone());
            return Admission::Rejected {
                reason: format!("taken out by drill {}", drill.id),
                retry_in: None,
            };
        }
        let now = self.now;
        let refused = self.snapshot.states[endpoint].apply(self.sink, |b| {
            let t = b.tick(now);
            let view = (!b.admit(now, roll)).then(|| b.view(now));
            (view, t)
        });
        let Some(view) = refused else {
            return Admission::Admitted;
        };
        match view.state {
            StateName::Ramp => Admission::Deferred,
            _ => Admission::Rejected {
                reason: format!("breaker {}: {}", view.state.as_str(), view.reason_message()),
                retry_in: view
                    .open_until_ms
                    .map(|until| Duration::from_millis(until).saturating_sub(now)),
            },
        }
    }

    fn fits(&mut self, endpoint: EndpointId, estimate: u64) -> bool {
        self.snapshot.states[endpoint]
            .capacity(|c| c.fits(self.now, estimate))
            .unwrap_or(true)
    }
}
