//! The engine: one request from feature to served answer, in plain async code.
//!
//! ```text
//! feature → variant (sticky hash) → plan (boundary, capacity, breakers)
//!   → for each candidate: attempt (timeout / TTFT timeout)
//!     → on failure, decision::after_failure: retry after a backoff, move on,
//!       spill, fall back to a larger context window, or give up
//!   → every attempt observed by its endpoint's breaker, the request recorded once
//! ```
//!
//! Rules that matter to users:
//! - The request **deadline** covers every attempt and backoff. For a stream it
//!   covers the wait for the first token; after that, the adapter's idle timeout
//!   watches the stream.
//! - **The first token is the commit point.** A stream is committed when its first
//!   output chunk arrives (within the TTFT timeout): from then on its chunks go to the
//!   client. Before that, a failed or slow stream is abandoned and the next candidate
//!   tried.
//! - What follows a failed attempt is [`crate::routing::decision`]'s to say; the
//!   engine only carries it out (waits, reorders candidates, marks capacity full).
//! - Every failed attempt is kept; when all fail, the client's error lists them.
//!
//! The module is split by job:
//! - [`snapshot`]: the published configuration, its adapters and each endpoint's
//!   live state (breaker, capacity, in-flight count);
//! - `attempt`: the attempt loop of one request;
//! - `records`: what a request leaves behind (route headers, the ledger record,
//!   the error that lists every attempt);
//! - [`stream`]: a committed stream and its accounting;
//! - this file: the [`Engine`] handle, publishing, health and operator actions.
//!
//! Time comes from the injected [`Clock`] (tests pause or drive it), randomness from
//! seeded [`Dice`]; nothing here reads the system clock or an unseeded generator.

mod attempt;
mod records;
mod shadow;
pub mod snapshot;
pub mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use attempt::{Answer, Completion, RequestContext, Served, Unserved};
pub use shadow::MIGRATION_TEAM;
pub use snapshot::{EndpointState, Prepared, Snapshot};
pub use stream::RoutedStream;

use super::budget::RetryBudget;
use super::clock::unix_ms;
use super::clock::{Clock, TokioClock};
use super::drill::DrillRule;
use super::plan::{Candidate, plan};
use super::rolls::{Dice, Rolls};
use super::select::{assignment_point, select_variant};
use crate::admin::{EndpointHealth, Override};
use crate::api::{ChatRequest, Error, ErrorKind};
use crate::config::{Config, EndpointId};
use crate::providers::{ChatProvider, TransportSettings};
use crate::telemetry::record::TelemetrySink;
use snapshot::{LiveGate, Registry};

/// The routing engine. Cheap to clone: clones share one engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// How an engine keeps time and rolls dice, and how its adapters pool connections.
/// Production's default is tokio's clock, a seed from the operating system and the
/// default transport (one shared pool); tests pass a paused or manual clock and a
/// fixed seed; the server passes its transport settings.
pub struct EngineParts {
    pub clock: Arc<dyn Clock>,
    pub seed: u64,
    pub transport: TransportSettings,
    /// Most shadow requests in flight at once (beyond: shed).
    pub shadow_concurrency: usize,
}

impl Default for EngineParts {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Self {
            clock: Arc::new(TokioClock::new()),
            // std's per-process random keys: a seed nobody chose.
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
            transport: TransportSettings::default(),
            shadow_concurrency: 64,
        }
    }
}

/// A health probe's time to answer.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every request and every committed stream of an engine shares.
pub(crate) struct Shared {
    current: ArcSwap<Snapshot>,
    registry: Registry,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn TelemetrySink>,
    budget: Mutex<RetryBudget>,
    dice: Dice,
    /// The active drills (the server's, followed from its store).
    drills: ArcSwap<Vec<DrillRule>>,
    /// Shadows in flight may not exceed these permits; beyond them a sampled
    /// request runs none (shed), counted here.
    shadow_permits: Arc<tokio::sync::Semaphore>,
    shadow_cap: usize,
    shadow_shed: std::sync::atomic::AtomicU64,
    /// Every adapter this engine connects pools its connections so.
    transport: TransportSettings,
}

/// A routing decision: the variant's index in the feature, the rollout arm, and
/// the candidates.
#[derive(Debug, Clone)]
pub struct Decision {
    pub variant: usize,
    pub arm: Option<RolloutArm>,
    pub candidates: Vec<Candidate>,
}

/// Which side of a rollout a request is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutArm {
    pub rollout: String,
    /// Served by the rollout's target (else by the feature's own binding).
    pub candidate: bool,
}

impl RolloutArm {
    pub fn as_str(&self) -> &'static str {
        if self.candidate {
            "candidate"
        } else {
            "incumbent"
        }
    }
}

/// Where one request goes.
pub(crate) struct Route {
    pub variant: usize,
    pub arm: Option<RolloutArm>,
    pub planned: Result<Vec<Candidate>, Error>,
    /// A drill took an endpoint out of the candidates.
    pub drilled: Option<String>,
}

impl Engine {
    /// Connects every endpoint's adapter and starts serving `config` as `version`.
    pub async fn new(
        config: Config,
        version: i64,
        sink: Arc<dyn TelemetrySink>,
    ) -> Result<Engine, Error> {
        Self::with_parts(config, version, sink, EngineParts::default()).await
    }

    /// As [`Engine::new`], with the given clock, seed and transport settings.
    pub async fn with_parts(
        config: Config,
        version: i64,
        sink: Arc<dyn TelemetrySink>,
        parts: EngineParts,
    ) -> Result<Engine, Error> {
        let prepared = Prepared::connect(config, None, &parts.transport).await?;
        Ok(Self::from_prepared(prepared, version, sink, parts))
    }

    /// Starts serving `config` with adapters the caller built (one per endpoint, in
    /// order).
    pub fn with_providers(
        config: Config,
        version: i64,
        providers: Vec<Arc<dyn ChatProvider>>,
        sink: Arc<dyn TelemetrySink>,
        parts: EngineParts,
    ) -> Engine {
        assert_eq!(
            providers.len(),
            config.endpoints().len(),
            "one adapter per endpoint"
        );
        Self::from_prepared(Prepared { config, providers }, version, sink, parts)
    }

    fn from_prepared(
        prepared: Prepared,
        version: i64,
        sink: Arc<dyn TelemetrySink>,
        parts: EngineParts,
    ) -> Engine {
        let retry = prepared.config.retry().clone();
        let registry = Registry::default();
        let now = parts.clock.now();
        let snapshot = Snapshot {
            version,
            states: registry.states_for(&prepared.config, now),
            config: Arc::new(prepared.config),
            providers: prepared.providers,
        };
        Engine {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snapshot),
                registry,
                clock: parts.clock,
                sink,
                budget: Mutex::new(RetryBudget::new(retry.budget_ratio, retry.budget_min_per_s)),
                dice: Dice::new(parts.seed),
                drills: ArcSwap::from_pointee(Vec::new()),
                shadow_permits: Arc::new(tokio::sync::Semaphore::new(parts.shadow_concurrency)),
                shadow_cap: parts.shadow_concurrency,
                shadow_shed: std::sync::atomic::AtomicU64::new(0),
                transport: parts.transport,
            }),
        }
    }

    /// Routes and serves one request: a whole completion, or a stream committed at
    /// its first token (by `request.stream`; a stream keeps the request, to continue
    /// on a backup should it break). Every request is recorded once: a
    /// failure at once, a whole answer when its [`Completion`] is dropped, a stream
    /// at its end.
    pub async fn run(
        &self,
        ctx: &RequestContext,
        request: Arc<ChatRequest>,
    ) -> Result<Served, Unserved> {
        attempt::run(&self.shared, ctx, request).await
    }

    /// Swaps in a new configuration: [`Self::prepare`] then [`Self::activate`].
    pub async fn publish(&self, config: Config, version: i64) -> Result<(), Error> {
        let prepared = self.prepare(config).await?;
        self.activate(prepared, version);
        Ok(())
    }

    /// Connects what a new configuration needs, without serving it yet: a caller that
    /// must first make the version durable (the server writes it to its store) can
    /// still back out, and a failure here leaves the live configuration untouched.
    pub async fn prepare(&self, config: Config) -> Result<Prepared, Error> {
        let old = self.shared.current.load_full();
        Prepared::connect(config, Some(&old), &self.shared.transport).await
    }

    /// Starts serving a prepared configuration as `version`. Breaker and capacity
    /// state carries over by endpoint name; requests in flight finish on the snapshot
    /// they started with.
    pub fn activate(&self, prepared: Prepared, version: i64) {
        let shared = &self.shared;
        let states = shared
            .registry
            .states_for(&prepared.config, shared.clock.now());
        let retry = prepared.config.retry();
        shared
            .budget
            .lock()
            .configure(retry.budget_ratio, retry.budget_min_per_s);
        shared.current.store(Arc::new(Snapshot {
            version,
            config: Arc::new(prepared.config),
            providers: prepared.providers,
            states,
        }));
    }

    /// The configuration now serving.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// The engine's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.shared.clock
    }

    /// Time-driven breaker transitions (open → ramp, ramp stage advances), so they
    /// happen and are reported even when no traffic arrives. The server calls this
    /// a few times a second.
    pub fn tick(&self) {
        let shared = &self.shared;
        let now = shared.clock.now();
        for state in &shared.current.load().states {
            state.apply(&*shared.sink, |b| ((), b.tick(now)));
        }
    }

    /// Sends a health probe (a one-token request) to every endpoint whose open
    /// breaker is due one, concurrently, and starts the ramp of each that answers:
    /// traffic returns soon after an endpoint does, even when little traffic comes
    /// to try it. An answer of any kind counts, a client error included (the
    /// endpoint is up); a throttle or a failure changes nothing. The server calls
    /// this about once a second.
    pub async fn probe(&self) {
        let shared = &self.shared;
        let snapshot = shared.current.load_full();
        let now = shared.clock.now();
        let due: Vec<usize> = (0..snapshot.states.len())
            .filter(|&id| snapshot.states[id].apply(&*shared.sink, |b| (b.probe_due(now), None)))
            .collect();
        let probes = due.into_iter().map(|id| {
            let snapshot = snapshot.clone();
            async move {
                let endpoint = &snapshot.config.endpoint(id).config;
                let request = ChatRequest {
                    model: endpoint.model.clone(),
                    messages: vec![crate::api::Message::user("ping")],
                    max_tokens: Some(1),
                    ..ChatRequest::default()
                };
                let timeout = shared.clock.now() + PROBE_TIMEOUT;
                let answer = super::clock::within(
                    &*shared.clock,
                    timeout,
                    snapshot.provider(id).chat(&request),
                )
                .await;
                let up = match answer {
                    Some(Ok(_)) => true,
                    Some(Err(e)) => e.fault() == crate::api::Fault::Client,
                    None => false,
                };
                tracing::debug!(endpoint = %endpoint.name, up, "health probe");
                if up {
                    let now = shared.clock.now();
                    snapshot.states[id].apply(&*shared.sink, |b| ((), b.probe_succeeded(now)));
                }
            }
        });
        futures_util::future::join_all(probes).await;
    }

    /// Live health of every endpoint of the current configuration.
    pub fn health(&self) -> Vec<EndpointHealth> {
        let now = self.shared.clock.now();
        self.shared.current.load().health(now)
    }

    /// Forces an endpoint's breaker open or closed, or hands it back to the signals.
    pub fn set_override(
        &self,
        endpoint: &str,
        value: Override,
        reason: String,
    ) -> Result<(), Error> {
        let state = self.state_by_name(endpoint)?;
        let now = self.shared.clock.now();
        state.apply(&*self.shared.sink, |b| {
            ((), b.set_override(now, value, reason))
        });
        Ok(())
    }

    /// A thumbs up or down for a request `endpoint` served.
    pub fn feedback(&self, endpoint: &str, positive: bool) -> Result<(), Error> {
        let state = self.state_by_name(endpoint)?;
        let now = self.shared.clock.now();
        state.apply(&*self.shared.sink, |b| {
            ((), b.record_feedback(now, positive))
        });
        Ok(())
    }

    fn state_by_name(&self, endpoint: &str) -> Result<Arc<EndpointState>, Error> {
        self.shared.registry.get(endpoint).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no endpoint is named `{endpoint}`"),
            )
        })
    }

    /// The routing decision for one request, without sending anything: the variant
    /// and the ordered candidates (what [`Self::run`] does first). For tools and the
    /// benchmark of the hot path.
    pub fn decide(
        &self,
        feature: &str,
        sticky_key: Option<&str>,
        estimate: u64,
    ) -> Result<Decision, Error> {
        let snapshot = self.shared.current.load();
        let feature_id = snapshot.config.feature_index(feature).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("unknown feature `{feature}`"))
        })?;
        let mut rolls = self.shared.dice.next_request();
        let route = self.shared.route(
            &snapshot, feature_id, sticky_key, estimate, &mut rolls, None,
        );
        Ok(Decision {
            variant: route.variant,
            arm: route.arm,
            candidates: route.planned?,
        })
    }

    /// Shadow requests in flight now, and shed since start (over the cap, or the
    /// candidate unavailable).
    pub fn shadow_stats(&self) -> (usize, u64) {
        let cap_left = self.shared.shadow_permits.available_permits();
        let shed = self
            .shared
            .shadow_shed
            .load(std::sync::atomic::Ordering::Relaxed);
        (self.shared.shadow_cap.saturating_sub(cap_left), shed)
    }

    /// Replaces the active drills (the server follows them from its store).
    pub fn set_drills(&self, drills: Vec<DrillRule>) {
        self.shared.drills.store(Arc::new(drills));
    }
}

impl Shared {
    /// Where one request goes, as of now: its variant (sticky), its side of the
    /// feature's rollout (sticky, by the same hash as experiments on the rollout's
    /// id, so widening a stage only adds users), and the candidates of that
    /// binding under the boundary, capacity, breakers and drills.
    fn route(
        &self,
        snapshot: &Snapshot,
        feature_id: usize,
        sticky_key: Option<&str>,
        estimate: u64,
        rolls: &mut Rolls,
        shadow_candidate: Option<&[EndpointId]>,
    ) -> Route {
        let feature = &snapshot.config.features()[feature_id];
        let variant = select_variant(feature, sticky_key, rolls.roll());
        let index = feature
            .variants
            .iter()
            .position(|v| std::ptr::eq(v, variant))
            .unwrap_or(0);
        let mut binding: &[EndpointId] = &variant.binding;
        if let Some(candidate) = shadow_candidate {
            binding = candidate;
        }
        let arm = feature
            .rollout
            .as_ref()
            .filter(|_| shadow_candidate.is_none())
            .filter(|r| r.variant.as_ref().is_none_or(|v| *v == variant.name))
            .map(|r| {
                let point = match sticky_key {
                    Some(key) => assignment_point(&feature.name, &format!("rollout:{}", r.id), key),
                    None => rolls.roll(),
                };
                let candidate = point < r.fraction;
                if candidate {
                    binding = &r.target;
                }
                RolloutArm {
                    rollout: r.id.clone(),
                    candidate,
                }
            });
        let drills = self.drills.load();
        let mut gate = LiveGate {
            snapshot,
            sink: &*self.sink,
            now: self.clock.now(),
            drills: &drills,
            now_ms: unix_ms(),
            drill_roll: if drills.is_empty() { 1.0 } else { rolls.roll() },
            drilled: None,
        };
        let planned = plan(
            &snapshot.config,
            feature,
            binding,
            estimate,
            &mut gate,
            &mut || rolls.roll(),
        );
        Route {
            variant: index,
            arm,
            planned,
            drilled: gate.drilled,
        }
    }
}
