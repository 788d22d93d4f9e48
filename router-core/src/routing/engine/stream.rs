//! A stream committed to one endpoint: the chunks read while waiting for the first
//! token, then the rest. Its end — clean, failed, or dropped by a departing client —
//! is observed by the endpoint's breaker and recorded once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;

use super::Shared;
use super::attempt::{AttemptGuard, Run};
use super::records::ms;
use super::snapshot::EndpointState;
use crate::api::{ChatChunk, Error, Usage};
use crate::providers::ChatStream;
use crate::routing::plan::Candidate;
use crate::telemetry::window::{Outcome, Sample, classify};

/// A committed stream of chunks. After the first token nothing fails over: an error
/// ends the stream (adapters report any failure after a stream started as
/// `stream_interrupted`, and the conformance suite holds every provider to it).
pub struct RoutedStream {
    buffered: VecDeque<ChatChunk>,
    rest: ChatStream,
    committed: Committed,
}

/// What a committed stream must account for at its end.
pub(super) struct Committed {
    pub shared: Arc<Shared>,
    pub state: Arc<EndpointState>,
    pub guard: Option<AttemptGuard>,
    /// Taken when the end is recorded.
    pub run: Option<Run>,
    pub candidate: Candidate,
    /// Clock time the committed attempt was sent.
    pub started: Duration,
    pub ttft: Duration,
    pub usage: Option<Usage>,
    pub text: String,
}

impl RoutedStream {
    pub(super) fn new(buffered: Vec<ChatChunk>, rest: ChatStream, committed: Committed) -> Self {
        Self {
            buffered: buffered.into(),
            rest,
            committed,
        }
    }

    /// Time to the first token, from when the committed attempt was sent.
    pub fn ttft(&self) -> Duration {
        self.committed.ttft
    }
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

    /// Whether the stream's end has been recorded.
    fn finished(&self) -> bool {
        self.run.is_none()
    }

    /// Records the stream's end, once: `error` is `None` for a clean end.
    fn finish(&mut self, error: Option<&Error>, cancelled: bool) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let shared = &self.shared;
        let now = shared.clock.now();
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
        self.state.observe(&*shared.sink, now, &sample);
        // The client got a 200 when the stream was committed, whatever its end.
        let outcome = match (error, cancelled) {
            (Some(e), _) => e.kind.as_str(),
            (None, true) => "cancelled",
            (None, false) => "ok",
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
        shared.sink.request(record);
    }
}

impl Drop for RoutedStream {
    fn drop(&mut self) {
        self.committed.finish(None, true);
    }
}

impl Stream for RoutedStream {
    type Item = Result<ChatChunk, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
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
