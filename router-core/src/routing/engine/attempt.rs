//! The attempt loop of one request: plan the candidates, try them one attempt at a
//! time within the deadline, and carry out what [`after_failure`] decides after
//! each failure.
//!
//! Everything an attempt reserves (its place in the endpoint's in-flight count, its
//! estimated tokens on a provisioned endpoint) is held by an [`AttemptGuard`] and
//! given back however the attempt ends: answered, failed, timed out or dropped with
//! a departing client.
//!
//! Every request that reached an upstream is recorded, a departing client's
//! included: a [`Run`] dropped before it was recorded — the client left while an
//! attempt was in flight or between attempts, or the server cut the request at
//! shutdown — records itself as `cancelled`, with the attempt it interrupted and
//! that attempt's prompt tokens, estimated, billed (the upstream read the prompt;
//! what it went on to generate is unknown).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::shadow::AnswerTx;
use super::snapshot::{EndpointState, Snapshot};
use super::stream::{RoutedStream, Segment};
use super::{RolloutArm, Shared};
use crate::admin::RouteInfo;
use crate::api::{ChatChunk, ChatRequest, ChatResponse, Error, ErrorKind, Usage};
use crate::config::{EndpointConfig, Feature, Shadow};
use crate::providers::{ChatProvider, ChatStream};
use crate::routing::capacity::estimate_tokens;
use crate::routing::clock::{unix_ms, within};
use crate::routing::decision::{Failed, Limits, Step, after_failure};
use crate::routing::parity::AnswerSummary;
use crate::routing::plan::Candidate;
use crate::routing::rolls::Rolls;
use crate::telemetry::record::AttemptRecord;
use crate::telemetry::record::RequestRecord;
use crate::telemetry::window::{Outcome, Sample, classify};

/// Who is asking: filled in by the gateway from the request and its key.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub team: String,
    pub key_id: String,
    /// The experiment's sticky key: the request's `user`, or `x-crossbar-user`.
    pub sticky_key: Option<String>,
    /// The API the request came in by.
    pub dialect: crate::api::Dialect,
}

/// A served request: how it was routed, and the answer.
pub struct Served {
    pub route: RouteInfo,
    pub answer: Answer,
}

/// A whole completion, or a stream committed to one endpoint.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once or twice per request; boxing the whole answer would cost an allocation on the hot path"
)]
pub enum Answer {
    Whole(Completion),
    Stream(RoutedStream),
}

/// A request that could not be served, with what routing got as far as. It has
/// been recorded.
#[derive(Debug)]
pub struct Unserved {
    pub error: Error,
    pub route: RouteInfo,
}

/// A whole completion. Its accounting (the endpoint's breaker sample and live
/// windows, the request's ledger record) happens when it is dropped, so a caller
/// can answer first and account after; what routes the next request (the attempt's
/// capacity reservation, the in-flight count) was settled before it was returned.
pub struct Completion {
    response: ChatResponse,
    accounting: Option<Accounting>,
}

struct Accounting {
    shared: Arc<Shared>,
    state: Arc<EndpointState>,
    sample: Sample,
    run: Run,
    candidate: Candidate,
    usage: Usage,
    /// When the answer came: the breaker's time and the ledger's latency.
    now: Duration,
}

impl Completion {
    pub fn response(&self) -> &ChatResponse {
        &self.response
    }

    /// The answering attempt's latency, in ms.
    pub fn latency_ms(&self) -> f64 {
        self.accounting
            .as_ref()
            .map_or(0.0, |a| a.sample.latency.as_secs_f64() * 1000.0)
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let Some(mut a) = self.accounting.take() else {
            return;
        };
        a.state.observe(&*a.shared.sink, a.now, &a.sample);
        let last = a.run.attempts.len().saturating_sub(1);
        a.run.bill(last, a.candidate, &a.usage, false);
        let mut record = a.run.served_record(a.candidate, "ok", a.now);
        if a.run.shadow_tx.is_some() {
            a.run
                .report_answer(&record, AnswerSummary::of_response(&self.response));
        }
        if a.run.store_text {
            record.completion_text = Some(self.response.text().to_owned());
        }
        a.shared.sink.request(record);
    }
}

/// One request's progress through its candidates.
pub(super) struct Run {
    pub ctx: RequestContext,
    pub snapshot: Arc<Snapshot>,
    pub feature: usize,
    pub variant: String,
    /// Clock time the request arrived.
    pub received: Duration,
    pub at_ms: i64,
    pub stream: bool,
    /// The request's tokens, estimated once: capacity checks and reservations.
    pub estimate: u64,
    /// The request's output limit, if it set one.
    pub output_limit: Option<u32>,
    pub candidates: Vec<Candidate>,
    /// Index of the candidate being tried.
    pub next: usize,
    pub retries_here: u32,
    /// `(endpoint, error)` of every failed attempt.
    pub errors: Vec<(String, Error)>,
    pub attempts: Vec<AttemptRecord>,
    /// The last failure asked for a retry of the same candidate.
    pub pending_retry: bool,
    pub store_text: bool,
    pub prompt_text: Option<String>,
    pub deadline_hit: bool,
    pub rolls: Rolls,
    /// The request's side of the feature's rollout.
    pub arm: Option<RolloutArm>,
    /// A drill took an endpoint out of its candidates.
    pub drill: Option<String>,
    /// The shadow this run is (its id), for a shadow's copy of a request.
    pub shadow: Option<String>,
    /// Where this request reports its answer to the shadow it started.
    pub shadow_tx: Option<AnswerTx>,
    pub keep_text_for_shadow: bool,
    /// For the record a dropped run leaves (its clock and sink).
    pub shared: Arc<Shared>,
    /// The attempt under way: its candidate, whether it is a retry, when it began.
    pub in_flight: Option<(Candidate, bool, Duration)>,
    /// The request's prompt in tokens, estimated (a quarter of its characters).
    pub prompt_estimate: u64,
    /// The request has been recorded (once, by whoever ends it).
    pub recorded: bool,
}

impl Drop for Run {
    /// A run dropped unrecorded: its request was given up by its client (or cut at
    /// shutdown). If it reached an upstream, it is recorded as `cancelled`.
    fn drop(&mut self) {
        if self.recorded || (self.in_flight.is_none() && self.attempts.is_empty()) {
            return;
        }
        let shared = self.shared.clone();
        let now = shared.clock.now();
        let served = self.in_flight.take().map(|(candidate, retry, started)| {
            self.record_attempt(candidate, retry, now.saturating_sub(started), None, None);
            let index = self.attempts.len() - 1;
            if let Some(a) = self.attempts.get_mut(index) {
                a.outcome = CANCELLED.to_owned();
                a.upstream_status = None;
                a.message = Some("the client left before the answer".to_owned());
            }
            let prompt = u32::try_from(self.prompt_estimate).unwrap_or(u32::MAX);
            self.bill(index, candidate, &Usage::new(prompt, 0, None), true);
            candidate
        });
        let mut record = match served {
            Some(candidate) => self.served_record(candidate, CANCELLED, now),
            None => self.base_record(None, CLIENT_CLOSED, CANCELLED, now),
        };
        record.status = CLIENT_CLOSED;
        shared.sink.request(record);
    }
}

/// The outcome of a request its client gave up.
const CANCELLED: &str = "cancelled";
/// The status recorded for it (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

/// One attempt about to be made.
pub(super) struct Attempt {
    pub candidate: Candidate,
    pub retry: bool,
    pub provider: Arc<dyn ChatProvider>,
    pub state: Arc<EndpointState>,
    /// Clock time by which it must answer (whole) or show its first token (stream).
    pub due: Duration,
    pub guard: AttemptGuard,
    pub started: Duration,
}

pub(super) async fn run(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    request: Arc<ChatRequest>,
) -> Result<Served, Unserved> {
    run_routed(shared, ctx, request, None).await
}

/// A request routed on the feature's own binding (`shadow` `None`), or a shadow's
/// copy of one on the shadow's candidate.
pub(super) async fn run_routed(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    request: Arc<ChatRequest>,
    shadow: Option<&Shadow>,
) -> Result<Served, Unserved> {
    let mut run = Run::begin(shared, ctx, &request, shadow)?;
    while let Some(attempt) = run.next_attempt(shared) {
        let tried = if run.stream {
            open_stream(shared, &attempt, &request).await
        } else {
            whole(shared, &attempt, &request).await
        };
        match tried {
            Ok(reply) => return Ok(run.commit(shared, attempt, reply, request)),
            Err(failure) => {
                if let Some(error) = run.failed(shared, attempt, failure).await {
                    return Err(run.unserved(shared, error));
                }
            }
        }
    }
    let error = run.exhausted();
    Err(run.unserved(shared, error))
}

/// What a successful attempt brought back.
pub(super) enum Reply {
    Whole {
        response: ChatResponse,
        latency: Duration,
        now: Duration,
    },
    Stream {
        /// The chunks read up to the first output.
        buffered: Vec<ChatChunk>,
        rest: ChatStream,
        ttft: Duration,
    },
}

/// A failed attempt: the error, after how long, and the time to first token when
/// that is what timed out.
pub(super) struct AttemptFailure {
    pub error: Error,
    pub latency: Duration,
    pub ttft: Option<Duration>,
}

/// One whole-completion attempt, answered within its time.
async fn whole(
    shared: &Shared,
    attempt: &Attempt,
    request: &ChatRequest,
) -> Result<Reply, AttemptFailure> {
    let clock = &*shared.clock;
    let result = within(clock, attempt.due, attempt.provider.chat(request))
        .await
        .unwrap_or_else(|| {
            Err(timeout_error(format!(
                "no answer within {} ms",
                (attempt.due - attempt.started).as_millis()
            )))
        });
    let now = clock.now();
    let latency = now.saturating_sub(attempt.started);
    match result {
        Ok(response) => Ok(Reply::Whole {
            response,
            latency,
            now,
        }),
        Err(error) => Err(AttemptFailure {
            error,
            latency,
            ttft: None,
        }),
    }
}

/// One stream attempt: open the stream and read up to its first output chunk, all
/// within the TTFT timeout. Nothing has reached the client yet: failover is still
/// free.
pub(super) async fn open_stream(
    shared: &Shared,
    attempt: &Attempt,
    request: &ChatRequest,
) -> Result<Reply, AttemptFailure> {
    let clock = &*shared.clock;
    let opened = async {
        let mut stream = attempt.provider.chat_stream(request).await?;
        let mut buffered: Vec<ChatChunk> = Vec::new();
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let output = chunk.has_output();
                    buffered.push(chunk);
                    if output {
                        return Ok((buffered, stream));
                    }
                }
                Some(Err(e)) => return Err(e),
                // Ended cleanly before any output (an empty answer): committed.
                None => return Ok((buffered, ChatStream::empty())),
            }
        }
    };
    let result = within(clock, attempt.due, opened).await.unwrap_or_else(|| {
        Err(timeout_error(format!(
            "no first token within {} ms",
            (attempt.due - attempt.started).as_millis()
        )))
    });
    let ttft = clock.now().saturating_sub(attempt.started);
    match result {
        Ok((buffered, rest)) => Ok(Reply::Stream {
            buffered,
            rest,
            ttft,
        }),
        Err(error) => {
            // A TTFT timeout is itself a first-token sample: the slowness the
            // breaker's TTFT p90 must see.
            let timed_out = error.kind == ErrorKind::Timeout;
            Err(AttemptFailure {
                error,
                latency: ttft,
                ttft: timed_out.then_some(ttft),
            })
        }
    }
}

/// `error` as failed at `endpoint`: where it came from, for the client's message and
/// the record. Adapters do not tag; the engine, which knows which endpoint it asked,
/// tags every attempt's error here.
pub(super) fn tag(error: Error, endpoint: &EndpointConfig) -> Error {
    error.at(endpoint.provider.as_str(), &endpoint.name)
}

fn timeout_error(message: String) -> Error {
    Error::new(ErrorKind::Timeout, message)
}

impl Run {
    /// Resolves the feature, picks the variant and plans the candidates.
    fn begin(
        shared: &Arc<Shared>,
        ctx: &RequestContext,
        request: &Arc<ChatRequest>,
        shadow: Option<&Shadow>,
    ) -> Result<Run, Unserved> {
        let snapshot = shared.current.load_full();
        let received = shared.clock.now();
        let store_text = snapshot.config.raw().privacy.store_text;
        let mut run = Run {
            ctx: ctx.clone(),
            snapshot: snapshot.clone(),
            feature: usize::MAX,
            variant: String::new(),
            received,
            at_ms: unix_ms(),
            stream: request.is_stream(),
            estimate: estimate_tokens(request.prompt_chars(), request.output_limit()),
            output_limit: request.output_limit(),
            candidates: Vec::new(),
            next: 0,
            retries_here: 0,
            errors: Vec::new(),
            attempts: Vec::new(),
            pending_retry: false,
            store_text,
            prompt_text: store_text.then(|| request.prompt_text()),
            deadline_hit: false,
            rolls: shared.dice.next_request(),
            arm: None,
            drill: None,
            shadow: shadow.map(|s| s.id.clone()),
            shadow_tx: None,
            keep_text_for_shadow: false,
            shared: shared.clone(),
            in_flight: None,
            prompt_estimate: (request.prompt_chars() as u64).div_ceil(4),
            recorded: false,
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
            return Err(run.unserved(shared, error));
        };
        run.feature = feature_id;
        shared.budget.lock().deposit(received);
        let route = shared.route(
            &snapshot,
            feature_id,
            ctx.sticky_key.as_deref(),
            run.estimate,
            &mut run.rolls,
            shadow.map(|s| s.candidate.as_slice()),
        );
        run.variant = snapshot.config.features()[feature_id].variants[route.variant]
            .name
            .clone();
        run.arm = route.arm;
        run.drill = route.drilled;
        match route.planned {
            Ok(candidates) => {
                // A full provisioned endpoint that was spilled away from: counted in
                // its window as spill, never against its health.
                for c in &candidates {
                    if let Some(from) = c.spilled_from {
                        snapshot.state(from).observe(
                            &*shared.sink,
                            received,
                            &Sample::new(Outcome::SpilledAway, Duration::ZERO).with_spilled(true),
                        );
                    }
                }
                run.candidates = candidates;
                if shadow.is_none() && !run.feature().shadows.is_empty() {
                    run.shadow_tx = super::shadow::start(
                        shared,
                        &snapshot,
                        feature_id,
                        ctx,
                        request,
                        &mut run.rolls,
                    );
                    // The shadow compares texts: this side keeps its own.
                    run.keep_text_for_shadow = run.shadow_tx.is_some();
                }
                Ok(run)
            }
            Err(error) => Err(run.unserved(shared, error)),
        }
    }

    /// The request is served by `attempt`'s `reply`: the run becomes the answer's
    /// accounting, done when the completion is dropped or the stream ends.
    fn commit(
        mut self,
        shared: &Arc<Shared>,
        attempt: Attempt,
        reply: Reply,
        request: Arc<ChatRequest>,
    ) -> Served {
        let Attempt {
            candidate,
            retry,
            state,
            mut guard,
            started,
            ..
        } = attempt;
        match reply {
            Reply::Whole {
                response,
                latency,
                now,
            } => {
                let usage = response.usage.unwrap_or_default();
                guard.settle(now, u64::from(usage.total_tokens));
                self.record_attempt(candidate, retry, latency, None, None);
                let route = self.route_info(Some(candidate));
                let sample = Sample {
                    outcome: Outcome::Success,
                    latency,
                    ttft: None,
                    tokens: u64::from(usage.total_tokens),
                    spilled: candidate.spilled_from.is_some(),
                };
                let accounting = Accounting {
                    shared: shared.clone(),
                    state,
                    sample,
                    run: self,
                    candidate,
                    usage,
                    now,
                };
                Served {
                    route,
                    answer: Answer::Whole(Completion {
                        response,
                        accounting: Some(accounting),
                    }),
                }
            }
            Reply::Stream {
                buffered,
                rest,
                ttft,
            } => {
                self.record_attempt(candidate, retry, ttft, Some(ttft), None);
                let route = self.route_info(Some(candidate));
                let segment = Segment {
                    candidate,
                    state,
                    guard,
                    started,
                    ttft,
                    record: self.attempts.len() - 1,
                    rest,
                };
                let stream = RoutedStream::commit(shared.clone(), self, request, segment, buffered);
                Served {
                    route,
                    answer: Answer::Stream(stream),
                }
            }
        }
    }

    pub(super) fn feature(&self) -> &Feature {
        &self.snapshot.config.features()[self.feature]
    }

    /// Time left until the deadline; `None` once it has passed.
    fn remaining(&self, now: Duration) -> Option<Duration> {
        let deadline = self.received + Duration::from_millis(self.feature().deadline_ms);
        deadline.checked_sub(now).filter(|d| !d.is_zero())
    }

    /// The next attempt — a retry of the same candidate or the next one — with the
    /// time by which it must answer (show its first token, for a stream), or `None`
    /// when the candidates or the deadline are exhausted.
    fn next_attempt(&mut self, shared: &Shared) -> Option<Attempt> {
        let (candidate, retry) = self.next_candidate()?;
        self.attempt_on(shared, candidate, retry)
    }

    /// An attempt on `candidate` starting now, with its time limit (the TTFT
    /// timeout for a stream), or `None` once the deadline has passed.
    pub(super) fn attempt_on(
        &mut self,
        shared: &Shared,
        candidate: Candidate,
        retry: bool,
    ) -> Option<Attempt> {
        let now = shared.clock.now();
        let Some(remaining) = self.remaining(now) else {
            self.deadline_hit = true;
            return None;
        };
        let feature = self.feature();
        let limit = if self.stream {
            Duration::from_millis(feature.ttft_timeout_ms)
        } else {
            feature.attempt_timeout(self.output_limit)
        };
        let timeout = remaining.min(limit);
        let provider = self.snapshot.provider(candidate.endpoint).clone();
        let state = self.snapshot.state(candidate.endpoint).clone();
        let guard = AttemptGuard::start(&state, self.estimate);
        self.in_flight = Some((candidate, retry, now));
        Some(Attempt {
            candidate,
            retry,
            provider,
            state,
            due: now + timeout,
            guard,
            started: now,
        })
    }

    /// The candidate to try next, and whether it is a retry of the previous one.
    fn next_candidate(&mut self) -> Option<(Candidate, bool)> {
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

    /// A failed attempt: its reservation released, the error tagged with the
    /// endpoint, the endpoint's breaker told, then the decision carried out.
    /// `Some(error)` ends the request with that error.
    async fn failed(
        &mut self,
        shared: &Shared,
        attempt: Attempt,
        failure: AttemptFailure,
    ) -> Option<Error> {
        let (candidate, state) = (attempt.candidate, attempt.state.clone());
        let error = self.record_failure(shared, attempt, failure);
        let now = shared.clock.now();
        let config = self.snapshot.config.clone();
        let endpoint = config.endpoint(candidate.endpoint);
        let provisioned = endpoint.config.is_provisioned();

        let window = endpoint.config.capabilities().context_window;
        let feature = self.feature();
        let spill_to = endpoint.spill_to.filter(|&sibling| {
            feature.allows(&config.endpoint(sibling).config.geography)
                && !self.candidates.iter().any(|c| c.endpoint == sibling)
        });
        let failed = Failed {
            kind: error.kind,
            retry_after: error.retry_after,
            retries_here: self.retries_here,
            provisioned,
            spill_to,
            larger_window_ahead: self.larger_windows_ahead(window).next().is_some(),
        };
        let limits = Limits {
            policy: config.retry(),
            context_fallback: feature.context_fallback,
            remaining: self.remaining(now).unwrap_or_default(),
        };
        let roll = self.rolls.roll();
        let step = {
            let mut budget = shared.budget.lock();
            after_failure(&failed, limits, &mut budget, now, roll)
        };
        match step {
            Step::Retry { wait } => {
                shared.clock.sleep_until(now + wait).await;
                self.retries_here += 1;
                self.pending_retry = true;
            }
            Step::MoveOn(why) => {
                tracing::debug!(endpoint = %endpoint.config.name, why = why.as_str(), "moving on to the next candidate");
            }
            Step::Spill { to } => {
                state.capacity(|c| c.mark_full(now, error.retry_after));
                if let Some(sibling) = to {
                    self.candidates.insert(
                        self.next + 1,
                        Candidate {
                            endpoint: sibling,
                            spilled_from: Some(candidate.endpoint),
                            position: candidate.position,
                        },
                    );
                }
            }
            Step::ContextFallback => {
                let rest: Vec<Candidate> = self.larger_windows_ahead(window).collect();
                self.candidates.truncate(self.next + 1);
                self.candidates.extend(rest);
            }
            Step::GiveUp => return Some(error),
        }
        None
    }

    /// Accounts a failed attempt: its reservation released, its error tagged with
    /// the endpoint (the one place attempt errors are tagged), the endpoint's
    /// breaker told, the attempt and its error kept for the record. Returns the
    /// tagged error.
    pub(super) fn record_failure(
        &mut self,
        shared: &Shared,
        attempt: Attempt,
        failure: AttemptFailure,
    ) -> Error {
        let AttemptFailure {
            error,
            latency,
            ttft,
        } = failure;
        let Attempt {
            candidate,
            retry,
            state,
            mut guard,
            ..
        } = attempt;
        let now = shared.clock.now();
        guard.settle(now, 0);
        let endpoint = &self.snapshot.config.endpoint(candidate.endpoint).config;
        let error = tag(error, endpoint);
        state.observe(
            &*shared.sink,
            now,
            &Sample {
                outcome: classify(error.kind, endpoint.is_provisioned()),
                latency,
                ttft,
                tokens: 0,
                spilled: candidate.spilled_from.is_some(),
            },
        );
        let name = endpoint.name.clone();
        self.record_attempt(candidate, retry, latency, ttft, Some(&error));
        self.errors.push((name, error.clone()));
        error
    }

    /// The candidates after the current one whose context window is larger than
    /// `window`.
    fn larger_windows_ahead(&self, window: u32) -> impl Iterator<Item = Candidate> + '_ {
        let config = &self.snapshot.config;
        self.candidates[self.next + 1..]
            .iter()
            .copied()
            .filter(move |c| {
                config
                    .endpoint(c.endpoint)
                    .config
                    .capabilities()
                    .context_window
                    > window
            })
    }

    /// Ends the request with `error`: records it, and says how far routing got.
    pub(super) fn unserved(&mut self, shared: &Shared, error: Error) -> Unserved {
        let now = shared.clock.now();
        let route = self.route_info(None);
        let record = self.base_record(None, error.kind.http_status(), error.kind.as_str(), now);
        self.report_answer(&record, AnswerSummary::default());
        shared.sink.request(record);
        Unserved { error, route }
    }

    /// Tells this request's shadow, if it started one, how the request was answered:
    /// `summary` has what only the caller knows (text, finish, tools), `record` the
    /// rest.
    pub(super) fn report_answer(&mut self, record: &RequestRecord, mut summary: AnswerSummary) {
        let Some(tx) = self.shadow_tx.take() else {
            return;
        };
        summary.endpoint.clone_from(&record.endpoint);
        summary.error = (record.outcome != "ok").then(|| record.outcome.clone());
        summary.latency_ms = record.latency_ms;
        summary.ttft_ms = record.ttft_ms;
        summary.completion_tokens = record.completion_tokens;
        summary.cost = record.cost;
        // The shadow may have been shed or finished: nobody listening is fine.
        let _ = tx.send(summary);
    }
}

/// Counts an attempt in flight and reserves its estimated tokens on a provisioned
/// endpoint, until it is settled (or dropped).
pub(super) struct AttemptGuard {
    state: Arc<EndpointState>,
    estimate: u64,
    done: bool,
}

impl AttemptGuard {
    /// `estimate`: the request's tokens, reserved on a provisioned endpoint.
    fn start(state: &Arc<EndpointState>, estimate: u64) -> Self {
        state.in_flight().fetch_add(1, Ordering::Relaxed);
        let estimate = state
            .capacity(|c| {
                c.reserve(estimate);
                estimate
            })
            .unwrap_or(0);
        Self {
            state: state.clone(),
            estimate,
            done: false,
        }
    }

    /// Gives the reservation back, counting `tokens` as used at `now`. Once.
    pub(super) fn settle(&mut self, now: Duration, tokens: u64) {
        if self.done {
            return;
        }
        self.done = true;
        self.state.in_flight().fetch_sub(1, Ordering::Relaxed);
        let estimate = self.estimate;
        self.state.capacity(|c| c.settle(now, estimate, tokens));
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        // A cancelled attempt (client gone) still gives back its reservation; the
        // tokens it used are unknown, so none are counted.
        self.settle(Duration::ZERO, 0);
    }
}

#[cfg(test)]
mod cancelled {
    //! A whole request whose client leaves while the engine waits on the upstream:
    //! its run is dropped, and it must still leave a ledger record.

    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::future::BoxFuture;

    use super::super::{Engine, EngineParts, RequestContext};
    use crate::api::{ChatRequest, ChatResponse, Error, ErrorKind, Message};
    use crate::config::{
        AuthConfig, Config, EndpointConfig, FeatureConfig, Provider, RouterConfig,
    };
    use crate::providers::{ChatProvider, ChatStream};
    use crate::routing::clock::{Clock, TokioClock};
    use crate::telemetry::record::MemorySink;

    /// Never answers; or, `failing`, fails at once as unavailable.
    struct Silent {
        config: EndpointConfig,
        failing: bool,
    }

    impl ChatProvider for Silent {
        fn endpoint(&self) -> &EndpointConfig {
            &self.config
        }

        fn chat<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
            let failing = self.failing;
            Box::pin(async move {
                if failing {
                    return Err(Error::new(ErrorKind::Unavailable, "down"));
                }
                std::future::pending().await
            })
        }

        fn chat_stream<'a>(
            &'a self,
            _: &'a ChatRequest,
        ) -> BoxFuture<'a, Result<ChatStream, Error>> {
            Box::pin(std::future::pending())
        }
    }

    /// An engine over endpoints `a` (silent, or failing) and `b` (silent).
    fn engine(a_fails: bool) -> (Engine, Arc<MemorySink>, TokioClock) {
        let endpoints: Vec<EndpointConfig> = ["a", "b"]
            .iter()
            .map(|n| {
                let mut e = EndpointConfig::new(n, Provider::Openai, "m", "eastus");
                e.base_url = Some("http://127.0.0.1:9".into());
                e.auth = AuthConfig::None;
                e.pricing.input_per_million = rust_decimal::Decimal::new(250, 2);
                e
            })
            .collect();
        let raw = RouterConfig {
            endpoints: endpoints.clone(),
            features: vec![FeatureConfig::new("f", &["a", "b"])],
            ..RouterConfig::default()
        };
        let providers: Vec<Arc<dyn ChatProvider>> = endpoints
            .into_iter()
            .map(|config| {
                let failing = a_fails && config.name == "a";
                Arc::new(Silent { config, failing }) as Arc<dyn ChatProvider>
            })
            .collect();
        let sink = Arc::new(MemorySink::default());
        let clock = TokioClock::new();
        let engine = Engine::with_providers(
            Config::validate(raw).unwrap(),
            1,
            providers,
            sink.clone(),
            EngineParts {
                clock: Arc::new(clock),
                seed: 1,
                ..EngineParts::default()
            },
        );
        (engine, sink, clock)
    }

    fn request(stream: bool) -> Arc<ChatRequest> {
        Arc::new(ChatRequest {
            model: "f".into(),
            messages: vec![Message::user("Summarise the meeting notes, please")],
            max_tokens: Some(40),
            stream: stream.then_some(true),
            ..ChatRequest::default()
        })
    }

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "req-left".into(),
            team: "t".into(),
            key_id: "k".into(),
            sticky_key: None,
            ..RequestContext::default()
        }
    }

    /// Runs a request for `for_` of the engine's clock, then drops it: the client
    /// went away.
    async fn leave_after(engine: &Engine, clock: &TokioClock, stream: bool, for_: Duration) {
        let ctx = ctx();
        let run = engine.run(&ctx, request(stream));
        let left = crate::routing::clock::within(clock, clock.now() + for_, run).await;
        assert!(left.is_none(), "the request was still waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_request_whose_client_leaves_while_the_upstream_works_is_recorded_as_cancelled()
    {
        let (engine, sink, clock) = engine(false);
        leave_after(&engine, &clock, false, Duration::from_secs(3)).await;
        let records = sink.requests.lock().unwrap();
        assert_eq!(records.len(), 1, "one record, not none");
        let r = &records[0];
        assert_eq!((r.outcome.as_str(), r.status), ("cancelled", 499));
        assert_eq!(r.endpoint.as_deref(), Some("a"));
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.attempts[0].outcome, "cancelled");
        assert!((r.attempts[0].latency_ms - 3_000.0).abs() < 1.0, "{r:?}");
        // The upstream read the prompt: billed, and marked as Crossbar's estimate.
        assert!(r.prompt_tokens > 0 && r.usage_estimated, "{r:?}");
        assert_eq!(r.completion_tokens, 0);
        assert!(!r.cost.is_zero(), "{r:?}");
        // Nothing held: the endpoint's in-flight count is back to zero.
        assert!(
            engine
                .snapshot()
                .states
                .iter()
                .all(|s| s.in_flight().load(std::sync::atomic::Ordering::Relaxed) == 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_left_after_a_failed_attempt_keeps_every_attempt() {
        let (engine, sink, clock) = engine(true);
        leave_after(&engine, &clock, false, Duration::from_secs(3)).await;
        let records = sink.requests.lock().unwrap();
        assert_eq!(records.len(), 1);
        let outcomes: Vec<&str> = records[0]
            .attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect();
        // `a` failed (and was retried), then the client left while `b` worked.
        let (last, failed) = outcomes.split_last().unwrap();
        assert_eq!(*last, "cancelled");
        assert!(
            !failed.is_empty() && failed.iter().all(|o| *o == "unavailable"),
            "{outcomes:?}"
        );
        assert_eq!(records[0].attempts.last().unwrap().endpoint, "b");
        assert_eq!(records[0].endpoint.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_client_leaves_before_its_first_token_is_recorded_as_cancelled() {
        let (engine, sink, clock) = engine(false);
        leave_after(&engine, &clock, true, Duration::from_secs(1)).await;
        let records = sink.requests.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, "cancelled");
        assert!(records[0].stream);
    }
}
