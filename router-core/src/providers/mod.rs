//! Provider adapters: one module per cloud API family, each owning its wire types,
//! its request/response/stream mapping and its error mapping, behind [`ChatProvider`].
//!
//! Every adapter turns its provider's answers into the unified API: the same response
//! shape, the same chunk sequence (role, deltas, finish reason, usage last), and one
//! error taxonomy ([`crate::api::Error`]). A stream that ends abnormally — cut,
//! malformed, an error event, no terminal event — is a `stream_interrupted` error,
//! never a clean end. Adapters never retry: the router owns retries and failover, and
//! adapters never say which endpoint an error came from: the engine tags every
//! attempt's error, in one place.
//!
//! The HTTP adapters (OpenAI-compatible, Gemini, Claude on Vertex) share one request
//! skeleton, [`exchange`], over one [`transport`]; Bedrock goes through the AWS SDK.

pub mod bedrock;
mod exchange;
pub mod openai;
mod sse;
mod transport;
mod vertex;
pub mod vertex_anthropic;
pub mod vertex_gemini;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};

use crate::api::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Error, ErrorKind, Message,
};
use crate::config::{EndpointConfig, Provider};

pub use transport::{PoolScope, TransportSettings};

/// A normalised chunk stream from one upstream, and how many malformed events it
/// skipped on the way (none ever reaches the client; the count goes to the ledger
/// and the metrics).
pub struct ChatStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk, Error>> + Send>>,
    skipped: Option<Arc<AtomicU32>>,
}

impl ChatStream {
    /// `inner` as a chat stream that skips nothing.
    pub fn new(inner: impl Stream<Item = Result<ChatChunk, Error>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(inner),
            skipped: None,
        }
    }

    /// A stream that has ended.
    pub fn empty() -> Self {
        Self::new(futures_util::stream::empty())
    }

    /// Malformed events skipped so far.
    pub fn skipped(&self) -> u32 {
        self.skipped
            .as_ref()
            .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk, Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// One endpoint's adapter. Object safe: the router holds `Arc<dyn ChatProvider>`.
pub trait ChatProvider: Send + Sync {
    fn endpoint(&self) -> &EndpointConfig;

    /// A whole completion.
    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>>;

    /// A streamed completion. Errors before the stream starts are returned here;
    /// errors after it started arrive in the stream as `stream_interrupted`. (The
    /// engine times the first token: it owns the clock.)
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>>;
}

/// Builds the adapter for `endpoint`: one HTTP client / SDK client per endpoint, with
/// its credentials resolved once and then cached and refreshed by the cloud libraries.
/// `transport` says how the HTTP adapters pool their connections (the AWS SDK keeps
/// its own).
pub async fn connect(
    endpoint: &EndpointConfig,
    transport: &TransportSettings,
) -> Result<Arc<dyn ChatProvider>, Error> {
    let problems = endpoint.problems(&format!("endpoints.{}", endpoint.name));
    if !problems.is_empty() {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Error::new(ErrorKind::Internal, problems.join("; ")));
    }
    Ok(match endpoint.provider {
        Provider::Bedrock => Arc::new(bedrock::Bedrock::connect(endpoint.clone()).await?),
        Provider::Openai => Arc::new(openai::OpenAi::connect(endpoint.clone(), transport)?),
        Provider::VertexGemini => {
            Arc::new(vertex_gemini::Gemini::connect(endpoint.clone(), transport).await?)
        }
        Provider::VertexAnthropic => {
            Arc::new(vertex_anthropic::Anthropic::connect(endpoint.clone(), transport).await?)
        }
    })
}

/// Refuses what `endpoint` cannot do, naming the parameter, instead of dropping it.
pub fn check_capabilities(endpoint: &EndpointConfig, request: &ChatRequest) -> Result<(), Error> {
    let caps = endpoint.capabilities();
    let name = &endpoint.name;
    let refuse = |param: &str, what: &str| {
        Err(Error::unsupported(
            param,
            format!(
                "endpoint `{name}` ({}) does not support {what}",
                endpoint.provider.as_str()
            ),
        ))
    };
    if request.messages.is_empty() {
        return Err(Error::invalid("messages", "messages must not be empty"));
    }
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) && !caps.tools {
        return refuse("tools", "tool calling");
    }
    if request.wants_json() && !caps.json_mode {
        return refuse("response_format", "JSON response formats");
    }
    for (i, message) in request.messages.iter().enumerate() {
        let content = match message {
            Message::User { content, .. } => content,
            _ => continue,
        };
        // Plain text has no images: only typed parts are looked at (without the copy
        // `Content::parts` makes).
        let Content::Parts(parts) = content else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            if matches!(part, ContentPart::ImageUrl { .. }) && !caps.images {
                return refuse(&format!("messages[{i}].content[{j}]"), "image inputs");
            }
        }
    }
    if let Some(limit) = request.output_limit()
        && limit > caps.max_output_tokens
    {
        let param = if request.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(Error::unsupported(
            param,
            format!(
                "{limit} exceeds endpoint `{name}`'s maximum output of {} tokens",
                caps.max_output_tokens
            ),
        ));
    }
    if request.n.is_some_and(|n| n != 1) {
        return refuse("n", "more than one choice per request");
    }
    let openai = endpoint.provider == Provider::Openai;
    if !openai {
        if request.logprobs == Some(true) || request.top_logprobs.is_some() {
            return refuse("logprobs", "log probabilities");
        }
        if request.logit_bias.is_some() {
            return refuse("logit_bias", "logit bias");
        }
    }
    if matches!(
        endpoint.provider,
        Provider::Bedrock | Provider::VertexAnthropic
    ) {
        if request.seed.is_some() {
            return refuse("seed", "seeded sampling");
        }
        if request.presence_penalty.is_some() {
            return refuse("presence_penalty", "presence penalties");
        }
        if request.frequency_penalty.is_some() {
            return refuse("frequency_penalty", "frequency penalties");
        }
    }
    Ok(())
}

/// What one provider event turns into.
#[derive(Debug)]
pub(crate) enum Decoded {
    Chunk(ChatChunk),
    /// The provider reported a failure (an error event): the stream ends.
    Failed(Error),
    /// The event could not be read (not JSON, not the provider's shape): it is
    /// skipped and counted, and the stream goes on.
    Malformed(String),
}

impl Decoded {
    /// The chunk or the error (`None` for a skipped event).
    #[cfg(test)]
    pub(crate) fn into_result(self) -> Option<Result<ChatChunk, Error>> {
        match self {
            Self::Chunk(c) => Some(Ok(c)),
            Self::Failed(e) => Some(Err(e)),
            Self::Malformed(_) => None,
        }
    }
}

/// Turns one provider event into unified chunks, and knows whether the provider's
/// terminal event has been seen.
pub(crate) trait Decoder: Send + 'static {
    type Event: Send;
    fn decode(&mut self, event: Self::Event, out: &mut Vec<Decoded>);
    fn finished(&self) -> bool;
}

/// Runs a decoder over a provider's event stream: stops after the first error,
/// skips (and counts) malformed events, and reports a source that ends before its
/// terminal event as `stream_interrupted`.
pub(crate) fn drive<S, D>(source: S, decoder: D) -> ChatStream
where
    S: Stream<Item = Result<D::Event, Error>> + Send + 'static,
    D: Decoder,
{
    struct State<S, D> {
        source: Pin<Box<S>>,
        decoder: D,
        queue: VecDeque<Result<ChatChunk, Error>>,
        /// The decoder's output buffer, reused for every event.
        decoded: Vec<Decoded>,
        done: bool,
        skipped: Arc<AtomicU32>,
    }
    let skipped = Arc::new(AtomicU32::new(0));
    let state = State {
        source: Box::pin(source),
        decoder,
        queue: VecDeque::new(),
        decoded: Vec::new(),
        done: false,
        skipped: skipped.clone(),
    };
    let stream = futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                if item.is_err() {
                    st.queue.clear();
                    st.done = true;
                }
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.source.next().await {
                Some(Ok(event)) => {
                    st.decoder.decode(event, &mut st.decoded);
                    for item in st.decoded.drain(..) {
                        match item {
                            Decoded::Chunk(c) => st.queue.push_back(Ok(c)),
                            Decoded::Failed(e) => st.queue.push_back(Err(e)),
                            Decoded::Malformed(why) => {
                                st.skipped
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tracing::debug!(%why, "skipped a malformed stream event");
                            }
                        }
                    }
                }
                Some(Err(e)) => st.queue.push_back(Err(e)),
                None => {
                    st.done = true;
                    if !st.decoder.finished() {
                        st.queue.push_back(Err(Error::new(
                            ErrorKind::StreamInterrupted,
                            "the stream ended before its terminal event",
                        )));
                    }
                }
            }
        }
    });
    // Fused: polling after the end keeps answering `None`.
    ChatStream {
        inner: Box::pin(stream.fuse()),
        skipped: Some(skipped),
    }
}

/// An upstream's token count as the unified API's `u32`: a count too large for it is
/// `u32::MAX`, a negative one (the AWS SDK's counts are `i32`) zero. Never a wrapping
/// `as` cast: the counts are the upstream's numbers, and they are billed.
pub(crate) fn token_count(n: impl Into<i128>) -> u32 {
    u32::try_from(n.into().max(0)).unwrap_or(u32::MAX)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    u64::try_from(crate::routing::clock::unix_ms() / 1000).unwrap_or(0)
}

/// The longest wait an upstream's `retry-after` is taken at. Beyond an hour the
/// advice says "not soon" rather than when: the breaker and the retry budget handle
/// an endpoint that long gone, and a client is not told to wait for days.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// How long an upstream asks to be left alone: `retry-after-ms` (OpenAI's, a number
/// of milliseconds), else `retry-after` (seconds, or an HTTP-date counted from now).
///
/// Never panics, whatever the upstream sends: a value longer than
/// [`MAX_RETRY_AFTER`] (`1e20`, `inf`) is that maximum; a negative number, `NaN`,
/// anything unparsable is no advice (the next header is tried); a date already past
/// is zero.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, crate::routing::clock::wall_clock())
}

/// [`retry_after`] with the time an HTTP-date is counted from.
fn retry_after_at(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    header("retry-after-ms")
        .and_then(|ms| delay(ms, 1000.0))
        .or_else(|| {
            let value = header("retry-after")?;
            delay(value, 1.0).or_else(|| {
                let date = httpdate::parse_http_date(value).ok()?;
                // A date already past: retry now.
                Some(
                    date.duration_since(now)
                        .unwrap_or_default()
                        .min(MAX_RETRY_AFTER),
                )
            })
        })
}

/// A number of `units_per_second` as a wait, at most [`MAX_RETRY_AFTER`]; `None`
/// for anything but a non-negative number.
fn delay(value: &str, units_per_second: f64) -> Option<Duration> {
    let n: f64 = value.parse().ok()?;
    if n.is_nan() || n < 0.0 {
        return None;
    }
    let seconds = n / units_per_second;
    if seconds >= MAX_RETRY_AFTER.as_secs_f64() {
        return Some(MAX_RETRY_AFTER);
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ImageUrl;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn capabilities_refuse_with_the_parameter_named() {
        let mut ep = EndpointConfig::new(
            "claude-eu",
            Provider::VertexAnthropic,
            "claude",
            "europe-west4",
        );
        ep.capabilities.images = Some(false);
        let mut r = request();
        r.seed = Some(1);
        assert_eq!(
            check_capabilities(&ep, &r).unwrap_err().param.as_deref(),
            Some("seed")
        );
        let mut r = request();
        r.messages = vec![Message::User {
            content: Content::Parts(vec![ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: "data:image/png;base64,AA".into(),
                    detail: None,
                },
            }]),
            name: None,
        }];
        let e = check_capabilities(&ep, &r).unwrap_err();
        assert_eq!(
            (e.kind, e.param.as_deref()),
            (
                ErrorKind::UnsupportedParameter,
                Some("messages[0].content[0]")
            )
        );
        let mut r = request();
        r.max_tokens = Some(1_000_000);
        assert_eq!(
            check_capabilities(&ep, &r).unwrap_err().param.as_deref(),
            Some("max_tokens")
        );
        let mut r = request();
        r.response_format = Some(crate::api::ResponseFormat::JsonObject);
        assert_eq!(
            check_capabilities(&ep, &r).unwrap_err().param.as_deref(),
            Some("response_format")
        );
        assert!(check_capabilities(&ep, &request()).is_ok());
    }

    /// Every shape an upstream's advice comes in, well-formed or not: a wait within
    /// [`MAX_RETRY_AFTER`], or none; never a panic.
    #[test]
    fn retry_after_is_a_bounded_wait_or_none_whatever_the_upstream_sends() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = |at: std::time::SystemTime| httpdate::fmt_http_date(at);
        let in_two_minutes = date(now + Duration::from_secs(120));
        let in_two_days = date(now + Duration::from_secs(2 * 86_400));
        let an_hour_ago = date(now - Duration::from_secs(3_600));
        let max = Some(MAX_RETRY_AFTER);
        // (the headers, the wait expected)
        type Case<'a> = (&'a [(&'static str, &'a str)], Option<Duration>);
        let cases: &[Case] = &[
            (&[("retry-after", "3")], Some(Duration::from_secs(3))),
            (
                &[("retry-after", " 0.25 ")],
                Some(Duration::from_millis(250)),
            ),
            (&[("retry-after", "0")], Some(Duration::ZERO)),
            (&[("retry-after", "-0")], Some(Duration::ZERO)),
            (&[("retry-after", "3600")], max),
            (&[("retry-after", "86400")], max),
            (&[("retry-after", "inf")], max),
            (&[("retry-after", "infinity")], max),
            (&[("retry-after", "1e20")], max),
            (&[("retry-after", "1e308")], max),
            (&[("retry-after", "-5")], None),
            (&[("retry-after", "-inf")], None),
            (&[("retry-after", "NaN")], None),
            (&[("retry-after", "soon")], None),
            (&[("retry-after", "")], None),
            (&[("retry-after", "5s")], None),
            (
                &[("retry-after", &in_two_minutes)],
                Some(Duration::from_secs(120)),
            ),
            (&[("retry-after", &in_two_days)], max),
            (&[("retry-after", &an_hour_ago)], Some(Duration::ZERO)),
            (&[("retry-after", "Sun, 99 Foo 2026 25:00:00 GMT")], None),
            (
                &[("retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            (
                &[("retry-after-ms", "1500"), ("retry-after", "3")],
                Some(Duration::from_millis(1500)),
            ),
            (&[("retry-after-ms", "1e30")], max),
            (&[("retry-after-ms", "inf")], max),
            (&[("retry-after-ms", "NaN")], None),
            // Advice in milliseconds that is no advice: the seconds header answers.
            (
                &[("retry-after-ms", "-1"), ("retry-after", "2")],
                Some(Duration::from_secs(2)),
            ),
            (
                &[("retry-after-ms", "garbage"), ("retry-after", "2")],
                Some(Duration::from_secs(2)),
            ),
            (&[("retry-after-ms", "garbage")], None),
            (&[], None),
        ];
        for (headers, expected) in cases {
            let mut map = http::HeaderMap::new();
            for (name, value) in *headers {
                map.insert(*name, value.parse().unwrap());
            }
            assert_eq!(retry_after_at(&map, now), *expected, "{headers:?}");
            // Against the real clock too: no panic, never beyond the maximum.
            assert!(retry_after(&map).is_none_or(|d| d <= MAX_RETRY_AFTER));
        }
        // A header value that is not visible ASCII is no advice either.
        let mut map = http::HeaderMap::new();
        map.insert(
            "retry-after",
            http::HeaderValue::from_bytes(b"\xff5").unwrap(),
        );
        assert_eq!(retry_after_at(&map, now), None);
    }
}
