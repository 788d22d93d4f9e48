//! The engine: one request from feature to served response, in plain async code.
//!
//! ```text
//! feature → variant (sticky hash) → plan (boundary, capacity, breakers)
//!   → for each candidate: attempt (timeout / TTFT timeout), retries with backoff
//!     bounded by the retry budget → next candidate on a retryable failure
//!   → every attempt observed by its endpoint's breaker, the request recorded once
//! ```
//!
//! Rules that matter to users:
//! - The request **deadline** covers every attempt and backoff. For a stream it
//!   covers the wait for the first token; after that, the adapter's idle timeout
//!   watches the stream.
//! - **Failover only before the first token.** A stream is committed when its first
//!   output chunk arrives (within the TTFT timeout): from then on its chunks go to the
//!   client and a later failure ends the stream with an error event. Before that,
//!   a failed or slow stream is abandoned and the next candidate tried.
//! - **Client errors are final**: never retried, never failed over, except a context
//!   window overflow when the feature enables `context_fallback` (then only endpoints
//!   with a larger window are tried).
//! - **Retries** of the same endpoint only for retryable errors, with exponential
//!   backoff and full jitter, at least the upstream's `retry-after` (a longer one is
//!   not waited for: the next endpoint is), and only while the retry budget allows.
//! - **Capacity**: a provisioned endpoint that answers `capacity_exhausted` is marked
//!   full and the request moves to its on-demand sibling at once: a spill, which does
//!   not count against the endpoint's health.
//! - Every failed attempt is kept; when all fail, the client's error lists them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use rust_decimal::Decimal;

use super::breaker::{Breaker, BreakerSettings, Override, StateName, Transition};
use super::budget::RetryBudget;
use super::capacity::{CapacityTracker, estimate_tokens};
use super::clock::{Clock, TokioClock};
use super::plan::{Admission, Candidate, Gate, plan};
use super::select::select_variant;
use crate::admin::{EndpointHealth, RouteInfo};
use crate::api::{ChatChunk, ChatRequest, ChatResponse, Error, ErrorKind, Fault, Message, Usage};
use crate::config::{Config, EndpointId, Feature};
use crate::cost::token_cost;
use crate::providers::{self, ChatProvider, ChatStream};
use crate::telemetry::record::{
    AttemptRecord, BreakerEvent, RequestRecord, TelemetrySink, unix_ms,
};
use crate::telemetry::window::{Outcome, Sample, classify};

/// Who is asking: filled in by the gateway from the request and its key.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub team: String,
    pub key_id: String,
    /// The experiment's sticky key: the request's `user`, or `x-crossbar-user`.
    pub sticky_key: Option<String>,
}

/// A routing decision: the variant's index in the feature, and the candidates.
#[derive(Debug, Clone)]
pub struct Decision {
    pub variant: usize,
    pub candidates: Vec<Candidate>,
}

/// A response and how it was routed.
pub struct Served<T> {
    pub value: T,
    pub route: RouteInfo,
}

/// A request that could not be served, with what routing got as far as.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub route: RouteInfo,
}

/// The live state of one endpoint, kept by name across config versions so a publish
/// does not reset breakers, windows or capacity counts.
pub struct EndpointState {
    pub name: String,
    breaker: Mutex<Breaker>,
    capacity: Mutex<Option<CapacityTracker>>,
    in_flight: AtomicU64,
}

impl EndpointState {
    /// Runs `f` on the breaker, then reports every transition it caused (the breaker
    /// queues them: one call can cause several, e.g. open → ramp → open).
    fn apply(&self, sink: &dyn TelemetrySink, f: impl FnOnce(&mut Breaker) -> Option<Transition>) {
        let mut transitions = Vec::new();
        {
            let mut breaker = self.breaker.lock().expect("breaker lock");
            transitions.extend(f(&mut breaker));
            while let Some(t) = breaker.take_transition() {
                transitions.push(t);
            }
        }
        for transition in transitions {
            tracing::info!(
                endpoint = %self.name,
                from = %transition.from,
                to = %transition.to,
                reason = %transition.reason.message,
                "breaker transition"
            );
            sink.breaker(BreakerEvent {
                endpoint: self.name.clone(),
                at_ms: unix_ms(),
                transition,
            });
        }
    }
}

/// A configuration whose adapters are connected, ready to [`Router::activate`].
pub struct Prepared {
    config: Config,
    providers: Vec<Arc<dyn ChatProvider>>,
}

impl Prepared {
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// One published configuration with its connected adapters.
pub struct Snapshot {
    pub version: i64,
    pub config: Arc<Config>,
    providers: Vec<Arc<dyn ChatProvider>>,
    states: Vec<Arc<EndpointState>>,
}

impl Snapshot {
    pub fn provider(&self, id: EndpointId) -> &Arc<dyn ChatProvider> {
        &self.providers[id]
    }
}

pub struct Router {
    current: ArcSwap<Snapshot>,
    registry: Mutex<HashMap<String, Arc<EndpointState>>>,
    clock: TokioClock,
    sink: Arc<dyn TelemetrySink>,
    budget: Mutex<RetryBudget>,
}

impl Router {
    /// Connects every endpoint's adapter and starts serving `config` as `version`.
    pub async fn new(
        config: Config,
        version: i64,
        sink: Arc<dyn TelemetrySink>,
    ) -> Result<Router, Error> {
        let mut providers = Vec::with_capacity(config.endpoints().len());
        for e in config.endpoints() {
            providers.push(providers::connect(&e.config).await?);
        }
        Ok(Self::with_providers(config, version, providers, sink))
    }

    /// Starts serving `config` with adapters the caller built (one per endpoint, in
    /// order).
    pub fn with_providers(
        config: Config,
        version: i64,
        providers: Vec<Arc<dyn ChatProvider>>,
        sink: Arc<dyn TelemetrySink>,
    ) -> Router {
        assert_eq!(
            providers.len(),
            config.endpoints().len(),
            "one adapter per endpoint"
        );
        let clock = TokioClock::new();
        let retry = config.retry().clone();
        let router = Router {
            current: ArcSwap::from_pointee(Snapshot {
                version,
                config: Arc::new(config.clone()),
                providers: Vec::new(),
                states: Vec::new(),
            }),
            registry: Mutex::new(HashMap::new()),
            clock,
            sink,
            budget: Mutex::new(RetryBudget::new(retry.budget_ratio, retry.budget_min_per_s)),
        };
        router.install(config, version, providers);
        router
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
    /// Adapters of unchanged endpoints are reused, with their connection pools and
    /// cached credentials.
    pub async fn prepare(&self, config: Config) -> Result<Prepared, Error> {
        let old = self.current.load_full();
        let mut providers = Vec::with_capacity(config.endpoints().len());
        for e in config.endpoints() {
            let reused = old
                .config
                .endpoint_id(&e.config.name)
                .filter(|&id| old.config.endpoint(id).config == e.config)
                .map(|id| old.providers[id].clone());
            providers.push(match reused {
                Some(p) => p,
                None => providers::connect(&e.config).await?,
            });
        }
        Ok(Prepared { config, providers })
    }

    /// Starts serving a prepared configuration as `version`. Breaker and capacity
    /// state carries over by endpoint name; requests in flight finish on the snapshot
    /// they started with.
    pub fn activate(&self, prepared: Prepared, version: i64) {
        self.install(prepared.config, version, prepared.providers);
    }

    fn install(&self, config: Config, version: i64, providers: Vec<Arc<dyn ChatProvider>>) {
        let now = self.clock.now();
        let mut registry = self.registry.lock().expect("registry lock");
        let states = config
            .endpoints()
            .iter()
            .map(|e| {
                let settings = BreakerSettings::from_params(&e.breaker);
                let state = registry
                    .entry(e.config.name.clone())
                    .or_insert_with(|| {
                        Arc::new(EndpointState {
                            name: e.config.name.clone(),
                            breaker: Mutex::new(Breaker::new(settings.clone(), now)),
                            capacity: Mutex::new(None),
                            in_flight: AtomicU64::new(0),
                        })
                    })
                    .clone();
                state
                    .breaker
                    .lock()
                    .expect("breaker lock")
                    .update_settings(settings);
                let mut capacity = state.capacity.lock().expect("capacity lock");
                match (e.capacity_tpm, capacity.as_mut()) {
                    (Some(tpm), Some(tracker)) => tracker.set_ceiling(tpm),
                    (Some(tpm), None) => *capacity = Some(CapacityTracker::new(tpm)),
                    (None, _) => *capacity = None,
                }
                drop(capacity);
                state
            })
            .collect();
        let retry = config.retry().clone();
        self.budget
            .lock()
            .expect("budget lock")
            .configure(retry.budget_ratio, retry.budget_min_per_s);
        self.current.store(Arc::new(Snapshot {
            version,
            config: Arc::new(config),
            providers,
            states,
        }));
    }

    /// The configuration now serving.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn clock(&self) -> &TokioClock {
        &self.clock
    }

    /// Time-driven breaker transitions (open → ramp, ramp stage advances), so they
    /// happen and are reported even when no traffic arrives. The server calls this
    /// a few times a second.
    pub fn tick(&self) {
        let now = self.clock.now();
        let snapshot = self.current.load();
        for state in &snapshot.states {
            state.apply(&*self.sink, |b| b.tick(now));
        }
    }

    /// Live health of every endpoint of the current configuration.
    pub fn health(&self) -> Vec<EndpointHealth> {
        let now = self.clock.now();
        let snapshot = self.current.load();
        snapshot
            .config
            .endpoints()
            .iter()
            .zip(&snapshot.states)
            .map(|(e, state)| {
                let breaker = state.breaker.lock().expect("breaker lock");
                let (view, stats) = (breaker.view(now), breaker.stats(now));
                drop(breaker);
                let utilisation = state
                    .capacity
                    .lock()
                    .expect("capacity lock")
                    .as_mut()
                    .map(|c| c.utilisation(now));
                EndpointHealth {
                    name: e.config.name.clone(),
                    provider: e.config.provider.as_str().to_owned(),
                    model: e.config.model.clone(),
                    region: e.config.region.clone(),
                    geography: e.config.geography.clone(),
                    provisioned: e.config.is_provisioned(),
                    spill_to: e
                        .spill_to
                        .map(|s| snapshot.config.endpoint(s).config.name.clone()),
                    breaker: view,
                    stats,
                    capacity_utilisation: utilisation,
                    in_flight: state.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Forces an endpoint's breaker open or closed, or hands it back to the signals.
    pub fn set_override(
        &self,
        endpoint: &str,
        value: Override,
        reason: String,
    ) -> Result<(), Error> {
        let state = self.state_by_name(endpoint)?;
        let now = self.clock.now();
        state.apply(&*self.sink, |b| b.set_override(now, value, reason));
        Ok(())
    }

    /// A thumbs up or down for a request `endpoint` served.
    pub fn feedback(&self, endpoint: &str, positive: bool) -> Result<(), Error> {
        let state = self.state_by_name(endpoint)?;
        let now = self.clock.now();
        state.apply(&*self.sink, |b| b.record_feedback(now, positive));
        Ok(())
    }

    fn state_by_name(&self, endpoint: &str) -> Result<Arc<EndpointState>, Error> {
        self.registry
            .lock()
            .expect("registry lock")
            .get(endpoint)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no endpoint is named `{endpoint}`"),
                )
            })
    }

    fn observe(&self, state: &EndpointState, sample: Sample) {
        let now = self.clock.now();
        state.apply(&*self.sink, |b| b.record(now, &sample));
    }

    /// A whole (non-streaming) completion, accounted before it is returned.
    pub async fn chat(
        &self,
        ctx: &RequestContext,
        request: &ChatRequest,
    ) -> Result<Served<ChatResponse>, Failure> {
        let (served, settlement) = self.chat_then_settle(ctx, request).await?;
        settlement.settle();
        Ok(served)
    }

    /// A whole completion whose accounting (the endpoint's breaker and live windows,
    /// the ledger's record) is left to the caller's [`Settlement`], to run once the
    /// answer is on its way to the client: the gateway's hot path. Everything that
    /// routes the next request (the attempt's reservation, the in-flight count) is
    /// settled before this returns.
    pub async fn chat_then_settle(
        &self,
        ctx: &RequestContext,
        request: &ChatRequest,
    ) -> Result<(Served<ChatResponse>, Settlement), Failure> {
        let mut run = self.begin(ctx, request, false)?;
        while let Some(attempt) = self.next_attempt(&mut run, false) {
            let timeout = attempt.timeout;
            let result = match tokio::time::timeout(timeout, attempt.provider.chat(request)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                )),
            };
            let now = self.clock.now();
            let latency = now - attempt.started;
            match result {
                Ok(response) => {
                    let Attempt {
                        candidate,
                        retry,
                        state,
                        mut guard,
                        ..
                    } = attempt;
                    let usage = response.usage.unwrap_or_default();
                    guard.settle(now, u64::from(usage.total_tokens));
                    run.record_attempt(candidate, retry, latency, None, None);
                    let route = run.route_info(Some(candidate));
                    let completion = run.store_text.then(|| response.text().to_owned());
                    let settlement = Settlement(Some(Unsettled {
                        sink: self.sink.clone(),
                        state,
                        sample: Sample {
                            outcome: Outcome::Success,
                            latency,
                            ttft: None,
                            tokens: u64::from(usage.total_tokens),
                            spilled: candidate.spilled_from.is_some(),
                        },
                        run,
                        candidate,
                        usage,
                        completion,
                        now,
                    }));
                    let served = Served {
                        value: response,
                        route,
                    };
                    return Ok((served, settlement));
                }
                Err(error) => {
                    if let Some(final_error) =
                        self.failed(&mut run, attempt, latency, None, error).await
                    {
                        return Err(run.finish_err(self, final_error));
                    }
                }
            }
        }
        let error = run.exhausted();
        Err(run.finish_err(self, error))
    }

    /// A streamed completion. Failover happens only until the first token: the
    /// returned stream is committed to one endpoint.
    pub async fn chat_stream(
        &self,
        ctx: &RequestContext,
        request: &ChatRequest,
    ) -> Result<Served<RoutedStream>, Failure> {
        let mut run = self.begin(ctx, request, true)?;
        while let Some(attempt) = self.next_attempt(&mut run, true) {
            let (provider, timeout, started) =
                (&attempt.provider, attempt.timeout, attempt.started);
            let ttft_deadline = self.clock.instant(started + timeout);
            // Open the stream and read up to its first output chunk, all within the
            // TTFT timeout. Nothing has reached the client yet: failover is still free.
            let opened = async {
                let mut stream = provider.chat_stream(request).await?;
                let mut buffered = Vec::new();
                loop {
                    match stream.next().await {
                        Some(Ok(chunk)) => {
                            let output = chunk.has_output();
                            buffered.push(chunk);
                            if output {
                                return Ok((stream, buffered, false));
                            }
                        }
                        Some(Err(e)) => return Err(e),
                        // Ended cleanly before any output (an empty answer): committed.
                        None => return Ok((stream, buffered, true)),
                    }
                }
            };
            let result = match tokio::time::timeout_at(ttft_deadline, opened).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no first token within {} ms", timeout.as_millis()),
                )),
            };
            let first = self.clock.now() - started;
            match result {
                Ok((stream, buffered, ended)) => {
                    let Attempt {
                        candidate,
                        retry,
                        state,
                        guard,
                        ..
                    } = attempt;
                    run.record_attempt(candidate, retry, first, Some(first), None);
                    let route = run.route_info(Some(candidate));
                    let committed = Committed {
                        router_sink: self.sink.clone(),
                        clock: self.clock,
                        state,
                        guard: Some(guard),
                        run: Some(run),
                        candidate,
                        started,
                        ttft: first,
                        usage: None,
                        text: String::new(),
                    };
                    let rest: ChatStream = if ended {
                        Box::pin(futures_util::stream::empty())
                    } else {
                        Box::pin(stream)
                    };
                    return Ok(Served {
                        value: RoutedStream {
                            buffered: buffered.into(),
                            rest,
                            committed,
                        },
                        route,
                    });
                }
                Err(error) => {
                    // A TTFT timeout is itself a first-token sample: the slowness the
                    // breaker's TTFT p90 must see.
                    let ttft = (error.kind == ErrorKind::Timeout).then_some(first);
                    if let Some(final_error) =
                        self.failed(&mut run, attempt, first, ttft, error).await
                    {
                        return Err(run.finish_err(self, final_error));
                    }
                }
            }
        }
        let error = run.exhausted();
        Err(run.finish_err(self, error))
    }

    /// The next attempt of `run` — a retry of the same candidate or the next one —
    /// with its timeout (the TTFT timeout for a stream), or `None` when the
    /// candidates or the deadline are exhausted.
    fn next_attempt(&self, run: &mut Run, stream: bool) -> Option<Attempt> {
        let (candidate, retry) = run.next_attempt()?;
        let timeout = if stream {
            run.ttft_timeout(self)
        } else {
            run.attempt_timeout(self)
        };
        let Some(timeout) = timeout else {
            run.deadline_exceeded();
            return None;
        };
        let provider = run.snapshot.providers[candidate.endpoint].clone();
        let state = run.snapshot.states[candidate.endpoint].clone();
        let guard = AttemptGuard::start(&state, run.estimate);
        Some(Attempt {
            candidate,
            retry,
            provider,
            state,
            timeout,
            guard,
            started: self.clock.now(),
        })
    }

    /// A failed attempt: its reservation released, the error tagged with the
    /// endpoint, the endpoint's breaker told, then [`Run::attempt_failed`] decides
    /// what follows. `Some(error)` ends the request.
    async fn failed(
        &self,
        run: &mut Run,
        attempt: Attempt,
        latency: Duration,
        ttft: Option<Duration>,
        error: Error,
    ) -> Option<Error> {
        let Attempt {
            candidate,
            retry,
            state,
            guard,
            ..
        } = attempt;
        guard.finish(self, 0);
        let endpoint = &run.snapshot.config.endpoint(candidate.endpoint).config;
        let error = error.at(endpoint.provider.as_str(), &endpoint.name);
        self.observe(
            &state,
            Sample {
                outcome: classify(error.kind, endpoint.is_provisioned()),
                latency,
                ttft,
                tokens: 0,
                spilled: candidate.spilled_from.is_some(),
            },
        );
        run.attempt_failed(self, candidate, retry, latency, ttft, error)
            .await
    }

    /// The routing decision for one request, without sending anything: the variant
    /// and the ordered candidates (what [`Self::chat`] does first). For tools and the
    /// benchmark of the hot path.
    pub fn decide(
        &self,
        feature: &str,
        sticky_key: Option<&str>,
        estimate: u64,
    ) -> Result<Decision, Error> {
        let snapshot = self.current.load();
        let feature_id = snapshot.config.feature_index(feature).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("unknown feature `{feature}`"))
        })?;
        let (variant, planned) = self.decide_in(
            &snapshot,
            feature_id,
            sticky_key,
            estimate,
            self.clock.now(),
        );
        Ok(Decision {
            variant,
            candidates: planned?,
        })
    }

    fn decide_in(
        &self,
        snapshot: &Snapshot,
        feature_id: usize,
        sticky_key: Option<&str>,
        estimate: u64,
        now: Duration,
    ) -> (usize, Result<Vec<Candidate>, Error>) {
        let feature = &snapshot.config.features()[feature_id];
        let variant = select_variant(feature, sticky_key, fastrand::f64());
        let index = feature
            .variants
            .iter()
            .position(|v| std::ptr::eq(v, variant))
            .unwrap_or(0);
        let mut gate = LiveGate {
            router: self,
            snapshot,
            now,
        };
        let planned = plan(
            &snapshot.config,
            feature,
            variant,
            estimate,
            &mut gate,
            &mut fastrand::f64,
        );
        (index, planned)
    }

    /// Resolves the feature, picks the variant and plans the candidates.
    fn begin(
        &self,
        ctx: &RequestContext,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<Run, Failure> {
        let snapshot = self.current.load_full();
        let received = self.clock.now();
        let store_text = snapshot.config.raw().privacy.store_text;
        let mut run = Run {
            ctx: ctx.clone(),
            snapshot: snapshot.clone(),
            feature: usize::MAX,
            variant: String::new(),
            received,
            at_ms: unix_ms(),
            stream,
            estimate: estimate_tokens(prompt_chars(request), request.output_limit()),
            candidates: Vec::new(),
            next: 0,
            retries_here: 0,
            errors: Vec::new(),
            attempts: Vec::new(),
            pending_retry: false,
            store_text,
            prompt_text: store_text.then(|| prompt_text(request)),
            deadline_hit: false,
        };
        let Some(feature_id) = snapshot.config.feature_index(&request.model) else {
            let error = Error::new(
                ErrorKind::NotFound,
                format!(
                    "unknown feature `{}`: `model` names a Crossbar feature (GET /v1/models lists them)",
                    request.model
                ),
            )
            .with_param("model");
            return Err(run.finish_err(self, error));
        };
        run.feature = feature_id;
        self.budget.lock().expect("budget lock").deposit(received);
        let (variant, planned) = self.decide_in(
            &snapshot,
            feature_id,
            ctx.sticky_key.as_deref(),
            run.estimate,
            received,
        );
        run.variant = snapshot.config.features()[feature_id].variants[variant]
            .name
            .clone();
        match planned {
            Ok(candidates) => {
                // A full provisioned endpoint that was spilled away from: counted in
                // its window as spill, never against its health.
                for c in &candidates {
                    if let Some(from) = c.spilled_from {
                        self.observe(
                            &snapshot.states[from],
                            Sample {
                                outcome: Outcome::SpilledAway,
                                latency: Duration::ZERO,
                                ttft: None,
                                tokens: 0,
                                spilled: true,
                            },
                        );
                    }
                }
                run.candidates = candidates;
                Ok(run)
            }
            Err(error) => Err(run.finish_err(self, error)),
        }
    }
}

/// The breaker and capacity state, as the planner sees it.
struct LiveGate<'a> {
    router: &'a Router,
    snapshot: &'a Snapshot,
    now: Duration,
}

impl Gate for LiveGate<'_> {
    fn admit(&mut self, endpoint: EndpointId, roll: f64) -> Admission {
        let state = &self.snapshot.states[endpoint];
        let now = self.now;
        let mut admitted = false;
        let mut view = None;
        state.apply(&*self.router.sink, |b| {
            let t = b.tick(now);
            admitted = b.admit(now, roll);
            if !admitted {
                view = Some(b.view(now));
            }
            t
        });
        let Some(view) = view else {
            return Admission::Admitted;
        };
        match view.state {
            StateName::Ramp => Admission::Deferred,
            _ => Admission::Rejected {
                reason: format!("breaker {}: {}", view.state.as_str(), view.reason_message()),
                retry_in: view
                    .open_until_ms
                    .map(|until| Duration::from_millis(until).saturating_sub(self.now)),
            },
        }
    }

    fn fits(&mut self, endpoint: EndpointId, estimate: u64) -> bool {
        let state = &self.snapshot.states[endpoint];
        state
            .capacity
            .lock()
            .expect("capacity lock")
            .as_mut()
            .is_none_or(|c| c.fits(self.now, estimate))
    }
}

/// One attempt about to be made.
struct Attempt {
    candidate: Candidate,
    retry: bool,
    provider: Arc<dyn ChatProvider>,
    state: Arc<EndpointState>,
    timeout: Duration,
    guard: AttemptGuard,
    started: Duration,
}

/// Counts an attempt in flight and reserves its estimated tokens on a provisioned
/// endpoint, until it finishes.
struct AttemptGuard {
    state: Arc<EndpointState>,
    estimate: u64,
    done: bool,
}

impl AttemptGuard {
    /// `estimate`: the request's tokens, reserved on a provisioned endpoint.
    fn start(state: &Arc<EndpointState>, estimate: u64) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut capacity = state.capacity.lock().expect("capacity lock");
        let estimate = match capacity.as_mut() {
            Some(c) => {
                c.reserve(estimate);
                estimate
            }
            None => 0,
        };
        Self {
            state: state.clone(),
            estimate,
            done: false,
        }
    }

    fn finish(mut self, router: &Router, tokens: u64) {
        self.settle(router.clock.now(), tokens);
    }

    fn settle(&mut self, now: Duration, tokens: u64) {
        if self.done {
            return;
        }
        self.done = true;
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = self.state.capacity.lock().expect("capacity lock").as_mut() {
            c.settle(now, self.estimate, tokens);
        }
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        // A cancelled attempt (client gone) still gives back its reservation; the
        // tokens it used are unknown, so none are counted.
        self.settle(Duration::ZERO, 0);
    }
}

/// One request's progress through its candidates.
struct Run {
    ctx: RequestContext,
    snapshot: Arc<Snapshot>,
    feature: usize,
    variant: String,
    received: Duration,
    at_ms: i64,
    stream: bool,
    /// The request's tokens, estimated once: capacity checks and reservations.
    estimate: u64,
    candidates: Vec<Candidate>,
    /// Index of the candidate being tried.
    next: usize,
    retries_here: u32,
    /// `(endpoint, error)` of every failed attempt.
    errors: Vec<(String, Error)>,
    attempts: Vec<AttemptRecord>,
    /// The last failure asked for a retry of the same candidate.
    pending_retry: bool,
    store_text: bool,
    prompt_text: Option<String>,
    deadline_hit: bool,
}

impl Run {
    fn feature(&self) -> &Feature {
        &self.snapshot.config.features()[self.feature]
    }

    fn remaining(&self, router: &Router) -> Option<Duration> {
        let deadline = self.received + Duration::from_millis(self.feature().deadline_ms);
        deadline
            .checked_sub(router.clock.now())
            .filter(|d| !d.is_zero())
    }

    fn attempt_timeout(&self, router: &Router) -> Option<Duration> {
        let remaining = self.remaining(router)?;
        Some(remaining.min(Duration::from_millis(self.feature().attempt_timeout_ms)))
    }

    fn ttft_timeout(&self, router: &Router) -> Option<Duration> {
        let remaining = self.remaining(router)?;
        Some(remaining.min(Duration::from_millis(self.feature().ttft_timeout_ms)))
    }

    fn deadline_exceeded(&mut self) {
        self.deadline_hit = true;
    }

    /// The candidate to try next, and whether it is a retry of the previous one.
    fn next_attempt(&mut self) -> Option<(Candidate, bool)> {
        if self.deadline_hit {
            return None;
        }
        if self.pending_retry {
            self.pending_retry = false;
            return self.candidates.get(self.next).map(|c| (*c, true));
        }
        if !self.attempts.is_empty() {
            self.next += 1;
            self.retries_here = 0;
        }
        self.candidates.get(self.next).map(|c| (*c, false))
    }

    /// Keeps one attempt for the record: `failure` is `None` when it succeeded.
    fn record_attempt(
        &mut self,
        candidate: Candidate,
        retry: bool,
        latency: Duration,
        ttft: Option<Duration>,
        failure: Option<&Error>,
    ) {
        let (outcome, upstream_status, message) = match failure {
            None => ("ok".to_owned(), Some(200), None),
            Some(e) => (
                e.kind.as_str().to_owned(),
                e.upstream_status,
                Some(e.message.clone()),
            ),
        };
        let endpoint = self
            .snapshot
            .config
            .endpoint(candidate.endpoint)
            .config
            .name
            .clone();
        self.attempts.push(AttemptRecord {
            endpoint,
            outcome,
            latency_ms: ms(latency),
            ttft_ms: ttft.map(ms),
            upstream_status,
            retry,
            spilled: candidate.spilled_from.is_some(),
            message,
        });
    }

    /// Decides what follows a failed attempt. `Some(error)` ends the request with
    /// that error (a client error); `None` goes on (retry or next candidate).
    async fn attempt_failed(
        &mut self,
        router: &Router,
        candidate: Candidate,
        retry: bool,
        latency: Duration,
        ttft: Option<Duration>,
        error: Error,
    ) -> Option<Error> {
        let config = self.snapshot.config.clone();
        let endpoint = config.endpoint(candidate.endpoint);
        self.record_attempt(candidate, retry, latency, ttft, Some(&error));
        self.errors
            .push((endpoint.config.name.clone(), error.clone()));

        // Capacity: mark full, spill to the sibling right away.
        if error.kind == ErrorKind::CapacityExhausted && endpoint.config.is_provisioned() {
            let now = router.clock.now();
            if let Some(c) = self.snapshot.states[candidate.endpoint]
                .capacity
                .lock()
                .expect("capacity lock")
                .as_mut()
            {
                c.mark_full(now, error.retry_after);
            }
            if let Some(sibling) = endpoint.spill_to
                && self
                    .feature()
                    .allows(&config.endpoint(sibling).config.geography)
                && !self.candidates[self.next + 1..]
                    .iter()
                    .any(|c| c.endpoint == sibling)
                && !self.candidates[..=self.next]
                    .iter()
                    .any(|c| c.endpoint == sibling)
            {
                self.candidates.insert(
                    self.next + 1,
                    Candidate {
                        endpoint: sibling,
                        spilled_from: Some(candidate.endpoint),
                        position: candidate.position,
                    },
                );
            }
            return None;
        }

        if error.fault() == Fault::Client {
            if error.kind == ErrorKind::ContextLengthExceeded && self.feature().context_fallback {
                // Only endpoints with a larger window are worth trying.
                let window = endpoint.config.capabilities().context_window;
                let rest: Vec<Candidate> = self.candidates[self.next + 1..]
                    .iter()
                    .copied()
                    .filter(|c| {
                        config
                            .endpoint(c.endpoint)
                            .config
                            .capabilities()
                            .context_window
                            > window
                    })
                    .collect();
                if !rest.is_empty() {
                    self.candidates.truncate(self.next + 1);
                    self.candidates.extend(rest);
                    return None;
                }
            }
            return Some(error);
        }

        let policy = config.retry();
        let may_retry = error.retryable()
            && self.retries_here < policy.max_retries
            && error
                .retry_after
                .is_none_or(|after| after <= Duration::from_millis(policy.max_retry_after_ms));
        if !may_retry {
            return None;
        }
        let base = Duration::from_millis(policy.backoff_base_ms);
        let cap = Duration::from_millis(policy.backoff_max_ms);
        let exp = base
            .saturating_mul(1u32 << self.retries_here.min(16))
            .min(cap);
        let jittered = exp.mul_f64(fastrand::f64());
        let wait = jittered.max(error.retry_after.unwrap_or_default());
        // Not worth it if the wait eats the rest of the deadline.
        if self.remaining(router).is_none_or(|left| left <= wait) {
            return None;
        }
        if !router
            .budget
            .lock()
            .expect("budget lock")
            .try_withdraw(router.clock.now())
        {
            tracing::debug!(endpoint = %endpoint.config.name, "retry budget exhausted: failing over instead");
            return None;
        }
        tokio::time::sleep(wait).await;
        self.retries_here += 1;
        self.pending_retry = true;
        None
    }

    /// The error for a request whose every candidate failed.
    fn exhausted(&mut self) -> Error {
        if self.deadline_hit {
            let mut e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "the feature's deadline of {} ms passed",
                    self.feature().deadline_ms
                ),
            );
            if !self.errors.is_empty() {
                e.message
                    .push_str(&format!("; attempts: {}", self.summary()));
            }
            return e;
        }
        let Some((_, last)) = self.errors.last() else {
            return Error::new(ErrorKind::Internal, "no candidate was tried");
        };
        let all_throttled = self.errors.iter().all(|(_, e)| {
            matches!(
                e.kind,
                ErrorKind::RateLimited | ErrorKind::CapacityExhausted | ErrorKind::Overloaded
            )
        });
        let mut error = Error::new(
            last.kind,
            format!(
                "all {} attempt(s) failed: {}",
                self.errors.len(),
                self.summary()
            ),
        );
        error.provider = last.provider.clone();
        error.endpoint = last.endpoint.clone();
        error.upstream_status = last.upstream_status;
        error.upstream_code = last.upstream_code.clone();
        if all_throttled {
            error.retry_after = self.errors.iter().filter_map(|(_, e)| e.retry_after).min();
        }
        error
    }

    fn summary(&self) -> String {
        self.errors
            .iter()
            .map(|(endpoint, e)| format!("{endpoint}: {} ({})", e.kind, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn route_info(&self, served: Option<Candidate>) -> RouteInfo {
        let config = &self.snapshot.config;
        let last = served.or_else(|| {
            self.attempts.last().and_then(|a| {
                config.endpoint_id(&a.endpoint).map(|id| Candidate {
                    endpoint: id,
                    spilled_from: None,
                    position: 0,
                })
            })
        });
        RouteInfo {
            endpoint: last.map(|c| config.endpoint(c.endpoint).config.name.clone()),
            provider: last.map(|c| {
                config
                    .endpoint(c.endpoint)
                    .config
                    .provider
                    .as_str()
                    .to_owned()
            }),
            variant: (!self.variant.is_empty()).then(|| self.variant.clone()),
            attempts: self.attempts.len() as u32,
            config_version: self.snapshot.version,
            spilled: served.is_some_and(|c| c.spilled_from.is_some()),
            fallback_depth: served.map_or(0, |c| c.position as u32),
        }
    }

    /// The request's record. It takes the run's attempts and prompt text (a run is
    /// recorded once), so take [`Self::route_info`] first.
    fn base_record(
        &mut self,
        served: Option<Candidate>,
        status: u16,
        outcome: String,
        now: Duration,
    ) -> RequestRecord {
        let config = &self.snapshot.config;
        let endpoint = served
            .map(|c| c.endpoint)
            .or_else(|| {
                self.attempts
                    .last()
                    .and_then(|a| config.endpoint_id(&a.endpoint))
            })
            .map(|id| &config.endpoint(id).config);
        RequestRecord {
            request_id: self.ctx.request_id.clone(),
            at_ms: self.at_ms,
            team: self.ctx.team.clone(),
            key_id: self.ctx.key_id.clone(),
            feature: config
                .features()
                .get(self.feature)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
            variant: self.variant.clone(),
            config_version: self.snapshot.version,
            stream: self.stream,
            endpoint: endpoint.map(|e| e.name.clone()),
            provider: endpoint.map(|e| e.provider.as_str().to_owned()),
            region: endpoint.map(|e| e.region.clone()),
            geography: endpoint.map(|e| e.geography.clone()),
            provisioned: served.is_some() && endpoint.is_some_and(|e| e.is_provisioned()),
            spilled: served.is_some_and(|c| c.spilled_from.is_some()),
            fallback_depth: served.map_or(0, |c| c.position as u32),
            outcome,
            status,
            latency_ms: ms(now.saturating_sub(self.received)),
            ttft_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost: Decimal::ZERO,
            attempts: std::mem::take(&mut self.attempts),
            prompt_text: self.prompt_text.take(),
            completion_text: None,
        }
    }

    /// The record of a request served by `candidate`, with its tokens and their cost.
    fn served_record(
        &mut self,
        candidate: Candidate,
        outcome: String,
        now: Duration,
        usage: &Usage,
    ) -> RequestRecord {
        let mut record = self.base_record(Some(candidate), 200, outcome, now);
        let config = &self.snapshot.config;
        let endpoint = &config.endpoint(candidate.endpoint).config;
        record.prompt_tokens = u64::from(usage.prompt_tokens);
        record.completion_tokens = u64::from(usage.completion_tokens);
        record.cached_tokens =
            u64::from(usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens));
        record.cost = token_cost(&endpoint.pricing, usage, endpoint.is_provisioned());
        record
    }

    fn finish_err(&mut self, router: &Router, error: Error) -> Failure {
        let now = router.clock.now();
        let route = self.route_info(None);
        let record = self.base_record(
            None,
            error.kind.http_status(),
            error.kind.as_str().to_owned(),
            now,
        );
        router.sink.request(record);
        Failure { route, error }
    }
}

/// What is left of a served whole completion once its answer is ready: the sample
/// its endpoint's breaker and live windows must see, and the request's ledger
/// record. [`Router::chat_then_settle`] leaves it to the caller, so that none of it
/// delays the answer. Settled once: by [`Settlement::settle`], or when dropped, so
/// that no request goes unaccounted.
#[must_use = "a settlement accounts the request: settle it once the answer is sent"]
pub struct Settlement(Option<Unsettled>);

struct Unsettled {
    sink: Arc<dyn TelemetrySink>,
    state: Arc<EndpointState>,
    sample: Sample,
    run: Run,
    candidate: Candidate,
    usage: Usage,
    completion: Option<String>,
    /// When the answer came: the breaker's time and the ledger's latency.
    now: Duration,
}

impl Settlement {
    /// Accounts the request now.
    pub fn settle(mut self) {
        self.settle_once();
    }

    fn settle_once(&mut self) {
        let Some(mut u) = self.0.take() else {
            return;
        };
        let (now, sample) = (u.now, u.sample);
        u.state.apply(&*u.sink, |b| b.record(now, &sample));
        let mut record = u
            .run
            .served_record(u.candidate, "ok".to_owned(), now, &u.usage);
        record.completion_text = u.completion;
        u.sink.request(record);
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        self.settle_once();
    }
}

/// A stream committed to one endpoint: the chunks read while waiting for the first
/// token, then the rest. Its end (clean, failed, or dropped by a departing client)
/// is observed by the endpoint's breaker and recorded once.
pub struct RoutedStream {
    buffered: std::collections::VecDeque<ChatChunk>,
    rest: ChatStream,
    committed: Committed,
}

struct Committed {
    router_sink: Arc<dyn TelemetrySink>,
    clock: TokioClock,
    state: Arc<EndpointState>,
    guard: Option<AttemptGuard>,
    run: Option<Run>,
    candidate: Candidate,
    started: Duration,
    ttft: Duration,
    usage: Option<Usage>,
    text: String,
}

impl Committed {
    fn observe_chunk(&mut self, chunk: &ChatChunk) {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        if self.run.as_ref().is_some_and(|r| r.store_text) {
            for c in &chunk.choices {
                if let Some(t) = &c.delta.content {
                    self.text.push_str(t);
                }
            }
        }
    }

    /// Whether the stream's end has been recorded (the run is consumed by it).
    fn finished(&self) -> bool {
        self.run.is_none()
    }

    /// Records the stream's end, once: `error` is `None` for a clean end.
    fn finish(&mut self, error: Option<&Error>, cancelled: bool) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let now = self.clock.now();
        let usage = self.usage.unwrap_or_default();
        if let Some(mut guard) = self.guard.take() {
            guard.settle(now, u64::from(usage.total_tokens));
        }
        let config = run.snapshot.config.clone();
        let endpoint = &config.endpoint(self.candidate.endpoint).config;
        let outcome = match (error, cancelled) {
            (Some(e), _) => classify(e.kind, endpoint.is_provisioned()),
            // The client went away: says nothing about the endpoint.
            (None, true) => Outcome::Neutral,
            (None, false) => Outcome::Success,
        };
        let sample = Sample {
            outcome,
            latency: now.saturating_sub(self.started),
            ttft: Some(self.ttft),
            tokens: u64::from(usage.total_tokens),
            spilled: self.candidate.spilled_from.is_some(),
        };
        self.state
            .apply(&*self.router_sink, |b| b.record(now, &sample));
        // The client got a 200 when the stream was committed, whatever its end.
        let outcome = match (error, cancelled) {
            (Some(e), _) => e.kind.as_str().to_owned(),
            (None, true) => "cancelled".to_owned(),
            (None, false) => "ok".to_owned(),
        };
        if let Some(e) = error
            && let Some(a) = run.attempts.last_mut()
        {
            a.outcome = e.kind.as_str().to_owned();
            a.message = Some(e.message.clone());
        }
        let mut record = run.served_record(self.candidate, outcome, now, &usage);
        record.ttft_ms = Some(ms(self.ttft + self.started.saturating_sub(run.received)));
        record.completion_text = run.store_text.then(|| std::mem::take(&mut self.text));
        self.router_sink.request(record);
    }
}

impl Drop for RoutedStream {
    fn drop(&mut self) {
        self.committed.finish(None, true);
    }
}

impl futures_util::Stream for RoutedStream {
    type Item = Result<ChatChunk, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(chunk) = this.buffered.pop_front() {
            this.committed.observe_chunk(&chunk);
            return Poll::Ready(Some(Ok(chunk)));
        }
        if this.committed.finished() {
            return Poll::Ready(None);
        }
        match this.rest.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.committed.observe_chunk(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                // After the first token: the stream ends with this error, no failover.
                // Adapters report any failure after a stream started as
                // `stream_interrupted` (the conformance suite holds every provider to it).
                this.committed.finish(Some(&e), false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.committed.finish(None, false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl RoutedStream {
    /// Time to the first token, from when the committed attempt was sent.
    pub fn ttft(&self) -> Duration {
        self.committed.ttft
    }
}

fn prompt_chars(request: &ChatRequest) -> usize {
    request
        .messages
        .iter()
        .map(|m| match m {
            Message::System { content, .. }
            | Message::Developer { content, .. }
            | Message::User { content, .. }
            | Message::Tool { content, .. } => content.text_len(),
            Message::Assistant { content, .. } => content.as_ref().map_or(0, |c| c.text_len()),
        })
        .sum()
}

fn prompt_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::System { content, .. }
            | Message::Developer { content, .. }
            | Message::User { content, .. }
            | Message::Tool { content, .. } => Some(content.text()),
            Message::Assistant { content, .. } => content.as_ref().map(|c| c.text()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
