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
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};

use crate::api::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Error, ErrorKind, Message,
};
use crate::config::{EndpointConfig, Provider};

pub use transport::{PoolScope, TransportSettings};

/// A normalised chunk stream.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, Error>> + Send>>;

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

/// Turns one provider event into unified chunks, and knows whether the provider's
/// terminal event has been seen.
pub(crate) trait Decoder: Send + 'static {
    type Event: Send;
    fn decode(&mut self, event: Self::Event, out: &mut Vec<Result<ChatChunk, Error>>);
    fn finished(&self) -> bool;
}

/// Runs a decoder over a provider's event stream: stops after the first error, and
/// reports a source that ends before its terminal event as `stream_interrupted`.
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
        decoded: Vec<Result<ChatChunk, Error>>,
        done: bool,
    }
    let state = State {
        source: Box::pin(source),
        decoder,
        queue: VecDeque::new(),
        decoded: Vec::new(),
        done: false,
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
                    st.queue.extend(st.decoded.drain(..));
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
    Box::pin(stream.fuse())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `retry-after-ms`, else `retry-after` in seconds.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    if let Some(ms) = get("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after").map(|s| Duration::from_secs_f64(s.max(0.0)))
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

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }
}
