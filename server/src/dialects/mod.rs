//! More ways in: client APIs other than OpenAI chat completions, each translated into
//! the one unified [`ChatRequest`](router_core::api::ChatRequest) the engine routes.
//!
//! - [`messages`]: Anthropic Messages, `POST /v1/messages` and
//!   `POST /v1/messages/count_tokens`;
//! - [`responses`]: OpenAI Responses, `POST /v1/responses`, the stateless subset.
//!
//! A dialect owns its wire types (serde), the translation of its request into the
//! unified one, of the unified answer and stream into its own, and its error shape.
//! Everything else is the chat route's, shared through [`crate::gateway`]: the key,
//! the body limit, the rate limits, the request id, and `engine.run` with
//! `RequestContext.dialect` set — so bindings, experiments, data boundaries, breakers,
//! stream continuation, retry budgets and the ledger apply unchanged, and the ledger
//! and the console say which dialect a request came in by.
//!
//! A dialect's stream is the engine's committed stream written as that dialect's
//! events by a [`StreamWriter`]; a continued stream's chunks pass through it like any
//! other, and its end carries the same `: x-crossbar-continued ...` SSE comments as
//! the chat route's.

pub mod messages;
pub mod responses;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use router_core::api::{ChatChunk, Error};
use router_core::routing::engine::stream::StreamReport;
use serde::Deserialize;

use crate::gateway::{LimitedStream, event_stream_response, public_error_logged};

/// How a dialect writes a committed stream: every call appends complete SSE events
/// to `out`.
pub trait StreamWriter: Send + 'static {
    /// One chunk of the answer.
    fn chunk(&mut self, chunk: ChatChunk, out: &mut Vec<u8>);
    /// The stream failed after its first token and could not be continued: the
    /// dialect's error event, its last word.
    fn failed(&mut self, error: &Error, out: &mut Vec<u8>);
    /// The clean end, with what the stream did besides passing chunks on.
    fn end(&mut self, report: &StreamReport, out: &mut Vec<u8>);
    /// Nothing came for [`Self::KEEP_ALIVE`]: a keep-alive event, if the dialect has one.
    fn idle(&mut self, _out: &mut Vec<u8>) {}
    /// The silence after which [`Self::idle`] is called (`None`: never).
    const KEEP_ALIVE: Option<Duration> = None;
}

/// `stream` written by `writer` as a `text/event-stream` response. An error is
/// written as Crossbar's own words, the upstream's text logged under `request_id`.
pub fn event_stream<W: StreamWriter>(
    stream: LimitedStream,
    writer: W,
    request_id: &str,
) -> Response {
    let state = Some((stream, writer));
    let request_id: Arc<str> = request_id.into();
    let events = futures_util::stream::unfold(state, move |state| {
        let request_id = request_id.clone();
        async move {
            let (mut stream, mut writer) = state?;
            let mut out = Vec::with_capacity(512);
            loop {
                let next = match W::KEEP_ALIVE {
                    // `next` only polls the stream, whose state lives in the stream: dropping
                    // it at the timeout loses nothing.
                    Some(every) => match tokio::time::timeout(every, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            writer.idle(&mut out);
                            if out.is_empty() {
                                continue;
                            }
                            return Some((
                                Ok::<_, Infallible>(Bytes::from(out)),
                                Some((stream, writer)),
                            ));
                        }
                    },
                    None => stream.next().await,
                };
                let more = match next {
                    Some(Ok(chunk)) => {
                        writer.chunk(chunk, &mut out);
                        true
                    }
                    Some(Err(error)) => {
                        writer.failed(&public_error_logged(&request_id, &error), &mut out);
                        false
                    }
                    None => {
                        writer.end(&stream.report(), &mut out);
                        false
                    }
                };
                if !more {
                    return Some((Ok(Bytes::from(out)), None));
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), Some((stream, writer))));
                }
            }
        }
    });
    event_stream_response(Body::from_stream(events))
}

/// A string, or an array of blocks or parts (message content, `system`, tool results,
/// Responses input): the JSON type decides, without buffering.
#[derive(Debug)]
pub enum TextOrBlocks<T> {
    Text(String),
    Blocks(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOrBlocks<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = TextOrBlocks<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(TextOrBlocks::Blocks(blocks))
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// Appends one SSE event, `event: <name>\ndata: <json>\n\n`.
pub fn sse_event(out: &mut Vec<u8>, name: &str, data: &impl serde::Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing into a Vec cannot fail, and these types serialise without error.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// The continuation comments of a stream's report, as their own SSE block (nothing
/// when the stream was not continued).
pub fn continued(out: &mut Vec<u8>, report: &StreamReport) {
    if !report.continuations.is_empty() {
        out.extend_from_slice(crate::gateway::continued_comments(report).as_bytes());
        out.push(b'\n');
    }
}

/// An id for an object of this request: `prefix` and the request id's 32 hex digits,
/// so that a client's message or response id names its ledger row.
pub fn object_id(prefix: &str, request_id: &str) -> String {
    format!(
        "{prefix}_{}",
        request_id.strip_prefix("req_").unwrap_or(request_id)
    )
}

/// Wall-clock seconds, for the `created` fields.
pub fn unix_seconds() -> u64 {
    u64::try_from(crate::unix_ms() / 1000).unwrap_or_default()
}

/// A tool call's JSON arguments as an object (the Messages `input`): `{}` when the
/// model wrote none, the raw text under `"arguments"` when it wrote something that is
/// not a JSON object (nothing is dropped).
pub fn arguments_object(arguments: &str) -> serde_json::Value {
    if arguments.trim().is_empty() {
        return serde_json::json!({});
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        _ => serde_json::json!({ "arguments": arguments }),
    }
}
