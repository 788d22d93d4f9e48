//! A committed stream: the chunks read while waiting for the first token, then the
//! rest — and, when it breaks after that, its continuation on a backup.
//!
//! The first token is the commit point: from then on the client holds a prefix of
//! the answer, and nothing it has seen is ever retracted or sent twice. When the
//! upstream stream breaks (cut, an error event, or a stall longer than the
//! feature's idle timeout), a text answer is **continued**: the original request
//! plus the prefix goes to the next endpoint that can take it (by its
//! [`Continuation`] method, its breaker, the data boundary the binding already
//! respects, the retry budget and the deadline), and that endpoint's answer is
//! spliced after the prefix ([`Splice`]). The client sees one stream, one id, one
//! `finish_reason`, then `[DONE]`; its usage chunk states what it was served (its
//! prompt once, the whole answer). Tool calls and JSON output are never continued:
//! half an argument cannot be spliced; such a stream ends with the error event.
//!
//! Every part is accounted: each segment's attempt record bills the tokens its
//! endpoint produced (counted by Crossbar where the stream broke before the
//! provider said, and marked estimated), the breaker of each segment's endpoint sees
//! how it went, and the request is recorded once — at the end, when the stream
//! fails for good, or when the client leaves.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, select};
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;

use super::Shared;
use super::attempt::{AttemptFailure, AttemptGuard, Reply, Run, open_stream, tag};
use super::records::ms;
use super::snapshot::{EndpointState, LiveGate};
use crate::api::{ChatChunk, ChatRequest, Error, ErrorKind, Fault, Usage};
use crate::config::{Continuation, EndpointId};
use crate::providers::ChatStream;
use crate::routing::clock::Sleep;
use crate::routing::continuation::{Splice, continuation_request};
use crate::routing::parity::{AnswerSummary, argument_keys};
use crate::routing::plan::{Admission, Candidate, Gate};
use crate::telemetry::window::{Outcome, Sample, classify};

/// At most this many continuations of one stream.
const MAX_CONTINUATIONS: usize = 3;

/// A committed stream of chunks.
pub struct RoutedStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk, Error>> + Send>>,
    ttft: Duration,
    report: Arc<Mutex<StreamReport>>,
}

/// What a stream did besides passing chunks on, for the caller to tell the client
/// (the gateway writes it as a final SSE comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    pub continuations: Vec<Continued>,
}

/// One continuation: the answer broke at `from` after about `after_tokens` tokens
/// and went on at `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Continued {
    pub from: String,
    pub to: String,
    pub method: Continuation,
    pub after_tokens: u64,
}

/// The upstream stream one attempt is serving.
pub(super) struct Segment {
    pub candidate: Candidate,
    pub state: Arc<EndpointState>,
    pub guard: AttemptGuard,
    /// Clock time the attempt was sent.
    pub started: Duration,
    pub ttft: Duration,
    /// Its attempt record's index in the run.
    pub record: usize,
    pub rest: ChatStream,
}

impl RoutedStream {
    /// The stream of a request committed to `segment`, which brought `buffered`.
    pub(super) fn commit(
        shared: Arc<Shared>,
        run: Run,
        request: Arc<ChatRequest>,
        segment: Segment,
        buffered: Vec<ChatChunk>,
    ) -> Self {
        let ttft = segment.ttft;
        let report = Arc::new(Mutex::new(StreamReport::default()));
        let live = Live::new(shared, run, request, segment, buffered, report.clone());
        let inner = futures_util::stream::unfold(live, |mut live| async move {
            let item = live.next().await?;
            Some((item, live))
        });
        Self {
            inner: Box::pin(inner),
            ttft,
            report,
        }
    }

    /// Time to the first token, from when the committed attempt was sent.
    pub fn ttft(&self) -> Duration {
        self.ttft
    }

    /// What the stream did besides passing chunks on (complete once it has ended).
    pub fn report(&self) -> StreamReport {
        self.report.lock().clone()
    }
}

impl Stream for RoutedStream {
    type Item = Result<ChatChunk, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A read from the current segment.
enum Read {
    Chunk(ChatChunk),
    End,
    Failed(Error),
}

/// The state of a committed stream.
struct Live {
    shared: Arc<Shared>,
    run: Run,
    request: Arc<ChatRequest>,
    seg: Segment,
    /// The usage the current segment's provider reported.
    seg_usage: Option<Usage>,
    /// Characters of output the current segment passed on.
    seg_chars: usize,
    /// Text deltas (non-empty) the current segment passed on.
    seg_deltas: u64,
    /// The current segment sent its `finish_reason`: the answer is whole.
    seg_finished: bool,
    /// Malformed upstream events skipped, over every segment so far.
    skipped: u32,
    /// The last finish reason the client got (for a shadow's comparison).
    last_finish: Option<crate::api::FinishReason>,
    /// Tool calls the client got, as (name, arguments), when a shadow compares them.
    tool_calls: Vec<(String, String)>,
    /// The current segment continues another: its text is spliced.
    splice: Option<Splice>,
    /// Characters the current segment's prompt has beyond the original (the prefix
    /// and an instruction).
    seg_added_chars: usize,
    /// Of those, the prefix's: the answer so far, as the client saw it.
    seg_prefix_chars: usize,
    /// The original prompt's tokens, when the first endpoint said (Anthropic does in
    /// its first event): a continued stream's usage reports them as they are.
    first_prompt_tokens: Option<u32>,
    /// Upstream chunks read but not yet looked at.
    buffered: VecDeque<ChatChunk>,
    /// Chunks ready for the client.
    out: VecDeque<ChatChunk>,
    done: bool,
    idle: Duration,
    idle_timer: Sleep,
    last_chunk: Duration,
    /// What the client has seen of the answer (kept when it may be continued, or
    /// stored).
    text: String,
    keep_text: bool,
    continuable: bool,
    tool_call_seen: bool,
    /// Tokens of the prefix the client is sure to have seen: the providers' counts
    /// where they said, else one per text delta (a lower bound: a delta holds at
    /// least a token; exact for streams that send a token at a time). The
    /// continuation's output limit shrinks by this, never by the billing estimate
    /// (characters / 4), which can exceed it and would cut the answer short.
    prefix_seen: u64,
    /// Endpoints whose stream broke in this request.
    broken: Vec<EndpointId>,
    first_id: String,
    first_created: u64,
    prompt_chars: usize,
    /// The request's TTFT as the ledger records it (from arrival).
    ttft_ms: f64,
    report: Arc<Mutex<StreamReport>>,
}

impl Live {
    fn new(
        shared: Arc<Shared>,
        run: Run,
        request: Arc<ChatRequest>,
        seg: Segment,
        buffered: Vec<ChatChunk>,
        report: Arc<Mutex<StreamReport>>,
    ) -> Self {
        let feature = run.feature();
        let idle = Duration::from_millis(feature.stream_idle_timeout_ms);
        let continuable = feature.continue_streams && !request.wants_json();
        let now = shared.clock.now();
        let idle_timer = shared.clock.sleep_until(now + idle);
        let (first_id, first_created) = buffered
            .first()
            .map(|c| (c.id.clone(), c.created))
            .unwrap_or_default();
        let ttft_ms = ms(seg.ttft + seg.started.saturating_sub(run.received));
        Self {
            keep_text: continuable || run.store_text || run.keep_text_for_shadow,
            last_finish: None,
            tool_calls: Vec::new(),
            prompt_chars: request.prompt_chars(),
            shared,
            run,
            request,
            seg,
            seg_usage: None,
            seg_chars: 0,
            seg_deltas: 0,
            seg_finished: false,
            skipped: 0,
            splice: None,
            seg_added_chars: 0,
            seg_prefix_chars: 0,
            first_prompt_tokens: None,
            buffered: buffered.into(),
            out: VecDeque::new(),
            done: false,
            idle,
            idle_timer,
            last_chunk: now,
            text: String::new(),
            continuable,
            tool_call_seen: false,
            prefix_seen: 0,
            broken: Vec::new(),
            first_id,
            first_created,
            ttft_ms,
            report,
        }
    }

    /// The next item for the client.
    async fn next(&mut self) -> Option<Result<ChatChunk, Error>> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(Ok(chunk));
            }
            if self.done {
                return None;
            }
            if let Some(chunk) = self.buffered.pop_front() {
                self.pass(chunk);
                continue;
            }
            match self.read().await {
                Read::Chunk(chunk) => self.pass(chunk),
                Read::End => {
                    if let Some(text) = self.splice.as_mut().map(Splice::finish)
                        && !text.is_empty()
                    {
                        let chunk = self.text_chunk(text);
                        self.out.push_back(chunk);
                    }
                    self.finish(None);
                }
                Read::Failed(error) if self.seg_finished => {
                    // The answer was whole (finish reason given); only its end
                    // marker or the connection's close went wrong: a clean end.
                    tracing::debug!(%error, "the stream failed after its finish reason: ended as complete");
                    self.finish(None);
                }
                Read::Failed(error) => {
                    if self.continue_after(&error).await {
                        continue;
                    }
                    self.finish(Some(&error));
                    return Some(Err(error));
                }
            }
        }
    }

    /// Reads the current segment's next chunk, or its end, or its failure — a
    /// silence longer than the idle timeout is one.
    async fn read(&mut self) -> Read {
        loop {
            let next = self.seg.rest.next();
            match select(next, &mut self.idle_timer).await {
                Either::Left((item, _)) => {
                    self.last_chunk = self.shared.clock.now();
                    return match item {
                        Some(Ok(chunk)) => Read::Chunk(chunk),
                        Some(Err(e)) => Read::Failed(self.tagged(e)),
                        None => Read::End,
                    };
                }
                Either::Right(((), _)) => {
                    let due = self.last_chunk + self.idle;
                    if self.shared.clock.now() >= due {
                        let stalled = Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "the stream stalled: nothing for {} ms",
                                self.idle.as_millis()
                            ),
                        );
                        return Read::Failed(self.tagged(stalled));
                    }
                    self.idle_timer = self.shared.clock.sleep_until(due);
                }
            }
        }
    }

    /// `error` as failed at the current segment's endpoint.
    fn tagged(&self, error: Error) -> Error {
        let endpoint = &self
            .run
            .snapshot
            .config
            .endpoint(self.seg.candidate.endpoint)
            .config;
        tag(error, endpoint)
    }

    /// Looks at one upstream chunk and queues what the client gets of it.
    fn pass(&mut self, mut chunk: ChatChunk) {
        if let Some(usage) = chunk.usage {
            self.seg_usage = Some(usage);
            if self.splice.is_none() && usage.prompt_tokens > 0 {
                self.first_prompt_tokens = Some(usage.prompt_tokens);
            }
        }
        self.seg_finished |= chunk.choices.iter().any(|c| c.finish_reason.is_some());
        if self.run.shadow_tx.is_some() {
            self.note_for_shadow(&chunk);
        }
        if chunk.choices.iter().any(|c| c.delta.tool_calls.is_some()) {
            self.tool_call_seen = true;
        }
        if let Some(splice) = self.splice.as_mut() {
            // A continuation: one stream for the client, the first's id; no second
            // role; the text spliced; the usage what the client was served.
            chunk.id.clone_from(&self.first_id);
            chunk.created = self.first_created;
            for choice in &mut chunk.choices {
                choice.delta.role = None;
                let mut text = match choice.delta.content.take() {
                    Some(t) => splice.feed(&t),
                    None => String::new(),
                };
                if choice.finish_reason.is_some() {
                    let mut held = splice.finish();
                    held.push_str(&text);
                    text = held;
                }
                choice.delta.content = (!text.is_empty()).then_some(text);
            }
            if let Some(usage) = chunk.usage.as_mut() {
                *usage = self.served_usage(*usage);
            }
            let empty = chunk.usage.is_none()
                && chunk.choices.iter().all(|c| {
                    c.delta.content.is_none()
                        && c.delta.tool_calls.is_none()
                        && c.finish_reason.is_none()
                });
            if empty {
                return;
            }
        }
        for choice in &chunk.choices {
            if let Some(t) = &choice.delta.content {
                self.seg_chars += t.len();
                self.seg_deltas += u64::from(!t.is_empty());
                if self.keep_text {
                    self.text.push_str(t);
                }
            }
        }
        self.out.push_back(chunk);
    }

    /// Keeps what a shadow's comparison needs of a chunk: its finish reason and tool
    /// calls (the text is kept with the rest).
    fn note_for_shadow(&mut self, chunk: &ChatChunk) {
        for choice in &chunk.choices {
            self.last_finish = choice.finish_reason.or(self.last_finish);
            for call in choice.delta.tool_calls.iter().flatten() {
                let i = call.index as usize;
                if i >= self.tool_calls.len() && i < 64 {
                    self.tool_calls.resize(i + 1, Default::default());
                }
                if let Some(slot) = self.tool_calls.get_mut(i) {
                    slot.0
                        .push_str(call.function.name.as_deref().unwrap_or_default());
                    slot.1
                        .push_str(call.function.arguments.as_deref().unwrap_or_default());
                }
            }
        }
    }

    /// A chunk carrying `text`, in the stream's id.
    fn text_chunk(&self, text: String) -> ChatChunk {
        let model = self
            .run
            .snapshot
            .config
            .endpoint(self.seg.candidate.endpoint)
            .config
            .model
            .clone();
        ChatChunk::new(&self.first_id, &model, self.first_created).with_delta(
            crate::api::Delta {
                content: Some(text),
                ..crate::api::Delta::default()
            },
            None,
        )
    }

    /// A continued stream's usage as the client reads it: what it was served, one
    /// answer to one prompt. The completion is the prefix's tokens as the client saw
    /// them ([`Self::prefix_seen`]) plus the continuation's; the prompt is the first
    /// endpoint's count when it gave one, else the continuation's prompt less the
    /// prefix it was given (counted the same way) and Crossbar's estimate of the
    /// instruction. (The ledger bills each attempt apart, as its provider charged.)
    fn served_usage(&self, continuation: Usage) -> Usage {
        let completion = self.prefix_seen + u64::from(continuation.completion_tokens);
        let prompt = self.first_prompt_tokens.map_or_else(
            || {
                let instruction = self.seg_added_chars.saturating_sub(self.seg_prefix_chars);
                u64::from(continuation.prompt_tokens)
                    .saturating_sub(self.prefix_seen)
                    .saturating_sub(tokens_of(instruction))
                    .max(1)
            },
            u64::from,
        );
        Usage::new(clamp(prompt), clamp(completion), None)
    }

    /// The current segment's usage: the provider's, or Crossbar's count.
    fn seg_usage(&self) -> (Usage, bool) {
        match self.seg_usage {
            Some(u) => (u, false),
            None => {
                let prompt = tokens_of(self.prompt_chars + self.seg_added_chars);
                let completion = tokens_of(self.seg_chars);
                (Usage::new(clamp(prompt), clamp(completion), None), true)
            }
        }
    }

    /// Closes the current segment: its reservation settled, its endpoint's breaker
    /// told `outcome`, its attempt billed and (on failure) marked.
    fn close_segment(&mut self, error: Option<&Error>, cancelled: bool) -> Usage {
        let now = self.shared.clock.now();
        let (usage, estimated) = self.seg_usage();
        self.skipped = self.skipped.saturating_add(self.seg.rest.skipped());
        self.seg.guard.settle(now, u64::from(usage.total_tokens));
        let endpoint = &self
            .run
            .snapshot
            .config
            .endpoint(self.seg.candidate.endpoint)
            .config;
        let outcome = match (error, cancelled) {
            (Some(e), _) => classify(e.kind, endpoint.is_provisioned()),
            // The client went away: says nothing about the endpoint.
            (None, true) => Outcome::Neutral,
            (None, false) => Outcome::Success,
        };
        let sample = Sample {
            outcome,
            latency: now.saturating_sub(self.seg.started),
            ttft: Some(self.seg.ttft),
            tokens: u64::from(usage.total_tokens),
            spilled: self.seg.candidate.spilled_from.is_some(),
        };
        self.seg.state.observe(&*self.shared.sink, now, &sample);
        let index = self.seg.record;
        if let Some(e) = error
            && let Some(a) = self.run.attempts.get_mut(index)
        {
            a.outcome = e.kind.as_str().to_owned();
            a.message = Some(e.message.clone());
            a.latency_ms = ms(now.saturating_sub(self.seg.started));
        }
        self.run.bill(index, self.seg.candidate, &usage, estimated);
        usage
    }

    /// Records the request's end, once: `error` is `None` for a clean end.
    fn finish(&mut self, error: Option<&Error>) {
        if self.done {
            return;
        }
        self.done = true;
        self.close_segment(error, false);
        let outcome = error.map_or("ok", |e| e.kind.as_str());
        self.record(outcome);
    }

    fn record(&mut self, outcome: &str) {
        let now = self.shared.clock.now();
        let mut record = self.run.served_record(self.seg.candidate, outcome, now);
        record.ttft_ms = Some(self.ttft_ms);
        record.continuations =
            u32::try_from(self.report.lock().continuations.len()).unwrap_or(u32::MAX);
        record.skipped_chunks = self.skipped;
        if self.run.shadow_tx.is_some() {
            let summary = AnswerSummary {
                text: self.text.clone(),
                finish: self.last_finish,
                tools: std::mem::take(&mut self.tool_calls)
                    .into_iter()
                    .map(|(name, args)| (name, argument_keys(&args)))
                    .collect(),
                ..AnswerSummary::default()
            };
            self.run.report_answer(&record, summary);
        }
        if self.run.store_text {
            record.completion_text = Some(std::mem::take(&mut self.text));
        }
        self.shared.sink.request(record);
    }

    /// Whether `error` can be rescued by a continuation, and if so, the current
    /// segment closed and the next one opened: `true` when the stream goes on.
    async fn continue_after(&mut self, error: &Error) -> bool {
        let may = self.continuable
            && !self.tool_call_seen
            && !self.text.is_empty()
            && error.fault() != Fault::Client
            && self.report.lock().continuations.len() < MAX_CONTINUATIONS;
        if !may {
            return false;
        }
        let from = self.seg.candidate;
        let from_name = self
            .run
            .snapshot
            .config
            .endpoint(from.endpoint)
            .config
            .name
            .clone();
        let error = error.clone();
        let reported = self.seg_usage.is_some();
        let usage = self.close_segment(Some(&error), false);
        self.prefix_seen += if reported {
            u64::from(usage.completion_tokens)
        } else {
            self.seg_deltas
        };
        self.run.errors.push((from_name.clone(), error.clone()));
        self.broken.push(from.endpoint);
        let stalled = error.kind == ErrorKind::Timeout;
        for (candidate, method) in self.continuation_candidates(from, stalled) {
            if self.try_continuation(candidate, method, &from_name).await {
                return true;
            }
            if self.run.deadline_hit {
                break;
            }
        }
        // Nothing took it over: the stream ends with its own error, already
        // accounted for its first part.
        self.done = true;
        self.record(error.kind.as_str());
        false
    }

    /// Where the answer may go on, in order: the binding's endpoints the breaker
    /// admits now (a ramping one after the admitted), then the broken endpoint
    /// itself unless it stalled; never one that cannot continue, nor one that
    /// broke already.
    fn continuation_candidates(
        &mut self,
        broken: Candidate,
        stalled: bool,
    ) -> Vec<(Candidate, Continuation)> {
        let snapshot = self.run.snapshot.clone();
        let now = self.shared.clock.now();
        let drills = self.shared.drills.load();
        let mut gate = LiveGate {
            snapshot: &snapshot,
            sink: &*self.shared.sink,
            now,
            drills: &drills,
            now_ms: crate::routing::clock::unix_ms(),
            drill_roll: self.run.rolls.roll(),
            drilled: None,
        };
        let mut ordered: Vec<Candidate> = self.run.candidates[self.run.next + 1..].to_vec();
        ordered.extend(self.run.candidates[..self.run.next].iter().copied());
        if !stalled {
            ordered.push(broken);
        }
        let (mut admitted, mut deferred) = (Vec::new(), Vec::new());
        for c in ordered {
            let method = snapshot
                .config
                .endpoint(c.endpoint)
                .config
                .capabilities()
                .continuation;
            if method == Continuation::None
                || (self.broken.contains(&c.endpoint) && c.endpoint != broken.endpoint)
                || admitted
                    .iter()
                    .chain(&deferred)
                    .any(|(d, _): &(Candidate, _)| d.endpoint == c.endpoint)
            {
                continue;
            }
            match gate.admit(c.endpoint, self.run.rolls.roll()) {
                Admission::Admitted => admitted.push((c, method)),
                Admission::Deferred => deferred.push((c, method)),
                Admission::Rejected { .. } => {}
            }
        }
        admitted.extend(deferred);
        admitted
    }

    /// Opens a continuation at `candidate` by `method` (a prefill the endpoint
    /// refuses is tried once more as an instruction): `true` when it streams.
    async fn try_continuation(
        &mut self,
        candidate: Candidate,
        mut method: Continuation,
        from: &str,
    ) -> bool {
        loop {
            let now = self.shared.clock.now();
            if !self.shared.budget.lock().try_withdraw(now) {
                tracing::debug!("retry budget exhausted: the stream is not continued");
                return false;
            }
            let Some(attempt) = self.run.attempt_on(&self.shared, candidate, false) else {
                return false;
            };
            let request = continuation_request(
                &self.request,
                &self.text,
                method,
                u32::try_from(self.prefix_seen).unwrap_or(u32::MAX),
            );
            match open_stream(&self.shared, &attempt, &request).await {
                Ok(Reply::Stream {
                    buffered,
                    rest,
                    ttft,
                }) => {
                    self.run
                        .record_attempt(candidate, false, ttft, Some(ttft), None);
                    let record = self.run.attempts.len() - 1;
                    self.run.attempts[record].continuation = Some(method.as_str().to_owned());
                    self.run.next = self
                        .run
                        .candidates
                        .iter()
                        .position(|c| c.endpoint == candidate.endpoint)
                        .unwrap_or(self.run.next);
                    let to = self
                        .run
                        .snapshot
                        .config
                        .endpoint(candidate.endpoint)
                        .config
                        .name
                        .clone();
                    tracing::info!(from, to = %to, method = method.as_str(), after_tokens = self.prefix_seen, "stream continued on another endpoint");
                    self.report.lock().continuations.push(Continued {
                        from: from.to_owned(),
                        to,
                        method,
                        after_tokens: self.prefix_seen,
                    });
                    self.seg = Segment {
                        candidate,
                        state: attempt.state.clone(),
                        guard: attempt.guard,
                        started: attempt.started,
                        ttft,
                        record,
                        rest,
                    };
                    self.seg_usage = None;
                    self.seg_chars = 0;
                    self.seg_deltas = 0;
                    self.seg_finished = false;
                    self.seg_added_chars = added_chars(&request, self.request.messages.len());
                    self.seg_prefix_chars = self.text.len();
                    self.splice = Some(Splice::new(&self.text, method));
                    self.buffered = buffered.into();
                    self.last_chunk = self.shared.clock.now();
                    return true;
                }
                Ok(Reply::Whole { .. }) => return false,
                Err(failure) => {
                    let refused = failure.error.fault() == Fault::Client;
                    let error = self.run.record_failure(
                        &self.shared,
                        attempt,
                        AttemptFailure {
                            error: failure.error,
                            latency: failure.latency,
                            ttft: failure.ttft,
                        },
                    );
                    if let Some(a) = self.run.attempts.last_mut() {
                        a.continuation = Some(method.as_str().to_owned());
                    }
                    if refused && method == Continuation::Prefill {
                        // The endpoint does not take a prefill after all: ask it the
                        // other way rather than surface its refusal.
                        tracing::debug!(%error, "prefill refused: continuing by instruction");
                        method = Continuation::Instruction;
                        continue;
                    }
                    return false;
                }
            }
        }
    }
}

impl Drop for Live {
    /// A stream dropped before its end: the client left. What was streamed is
    /// billed (counted, where the provider had not said yet).
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.close_segment(None, true);
        self.record("cancelled");
    }
}

/// Characters of the messages `request` has beyond the original's first
/// `original` messages.
fn added_chars(request: &ChatRequest, original: usize) -> usize {
    request.messages[original.min(request.messages.len())..]
        .iter()
        .map(crate::api::Message::text_len)
        .sum()
}

/// Crossbar's token estimate for text of `chars` characters (about four each).
fn tokens_of(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
