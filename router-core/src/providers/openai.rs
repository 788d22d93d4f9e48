//! OpenAI-compatible endpoints: OpenAI, Azure OpenAI (deployment URL form, `api-key`
//! header) and vLLM. The unified API *is* this wire format, so the mapping is mostly
//! the model name, the auth header, and the error mapping.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::exchange::Exchange;
use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::{ChatProvider, ChatStream, Decoded, Decoder, check_capabilities, retry_after};
use crate::api::{
    ChatChunk, ChatRequest, ChatResponse, Error, ErrorKind, Message, ResponseFormat, Stop,
    StreamOptions, ToolChoice, ToolDefinition,
};
use crate::auth;
use crate::config::{AuthConfig, EndpointConfig};

pub struct OpenAi {
    exchange: Exchange,
    /// Parsed once: URL parsing is measurable per request.
    url: http::Uri,
    /// The API key read from the configured environment variable, as the header it
    /// goes in (marked sensitive).
    key: Option<(http::HeaderName, http::HeaderValue)>,
}

impl OpenAi {
    pub fn connect(endpoint: EndpointConfig, transport: &TransportSettings) -> Result<Self, Error> {
        let base = endpoint
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com".into());
        let base = base.trim_end_matches('/');
        let url = match &endpoint.azure {
            Some(azure) => format!(
                "{base}/openai/deployments/{}/chat/completions?api-version={}",
                azure.deployment, azure.api_version
            ),
            None if base.ends_with("/v1") => format!("{base}/chat/completions"),
            None => format!("{base}/v1/chat/completions"),
        };
        let key = match &endpoint.auth {
            AuthConfig::ApiKeyEnv { env } => {
                let value = auth::api_key_from_env(env)?;
                let (name, value) = if endpoint.azure.is_some() {
                    (http::HeaderName::from_static("api-key"), value)
                } else {
                    (http::header::AUTHORIZATION, format!("Bearer {value}"))
                };
                let mut value = http::HeaderValue::try_from(value).map_err(|_| {
                    Error::new(
                        ErrorKind::UpstreamAuth,
                        format!(
                            "endpoint `{}`: the API key in `{env}` is not a valid header value",
                            endpoint.name
                        ),
                    )
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            _ => None,
        };
        let exchange = Exchange::new(endpoint, &url, transport, error_from)?;
        Ok(Self {
            url: exchange.uri(&url)?,
            exchange,
            key,
        })
    }

    /// The API key header, if the endpoint has one.
    fn headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some((name, value)) = &self.key {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    /// The request as this endpoint receives it: its model, and usage always reported.
    fn upstream_request<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: bool,
    ) -> UpstreamRequest<'a> {
        UpstreamRequest::new(request, &self.endpoint().model, stream)
    }
}

/// A client's request as an OpenAI-compatible endpoint receives it, borrowed from the
/// client's (no copy of the messages): the endpoint's model instead of the feature,
/// and when streaming, usage always asked for (Crossbar accounts every token).
#[derive(Serialize)]
struct UpstreamRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [ToolDefinition]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<&'a serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Map<String, Value>>,
    /// vLLM's way to continue a trailing assistant message instead of answering it
    /// with a new turn (a stream continued here): `continue_final_message: true`
    /// with `add_generation_prompt: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    continue_final_message: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    add_generation_prompt: Option<bool>,
}

impl<'a> UpstreamRequest<'a> {
    fn new(request: &'a ChatRequest, model: &'a str, stream: bool) -> Self {
        // Destructured without `..`: a new request field fails to compile here until
        // it is forwarded (or deliberately not).
        let ChatRequest {
            model: _,
            messages,
            temperature,
            top_p,
            max_tokens,
            max_completion_tokens,
            stop,
            seed,
            user,
            response_format,
            tools,
            tool_choice,
            parallel_tool_calls,
            stream: _,
            stream_options: _,
            n,
            presence_penalty,
            frequency_penalty,
            logprobs,
            top_logprobs,
            logit_bias,
            metadata,
            continue_final_message,
        } = request;
        Self {
            model,
            messages,
            temperature: *temperature,
            top_p: *top_p,
            max_tokens: *max_tokens,
            max_completion_tokens: *max_completion_tokens,
            stop: stop.as_ref(),
            seed: *seed,
            user: user.as_deref(),
            response_format: response_format.as_ref(),
            tools: tools.as_deref(),
            tool_choice: tool_choice.as_ref(),
            parallel_tool_calls: *parallel_tool_calls,
            stream: stream.then_some(true),
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            n: *n,
            presence_penalty: *presence_penalty,
            frequency_penalty: *frequency_penalty,
            logprobs: *logprobs,
            top_logprobs: *top_logprobs,
            logit_bias: logit_bias.as_ref(),
            metadata: metadata.as_ref(),
            continue_final_message: continue_final_message.then_some(true),
            add_generation_prompt: continue_final_message.then_some(false),
        }
    }
}

impl ChatProvider for OpenAi {
    fn endpoint(&self) -> &EndpointConfig {
        self.exchange.endpoint()
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            check_capabilities(self.endpoint(), request)?;
            let body = self.upstream_request(request, false);
            self.exchange
                .whole(self.url.clone(), self.headers(), &body)
                .await
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        Box::pin(async move {
            check_capabilities(self.endpoint(), request)?;
            let body = self.upstream_request(request, true);
            let decoder = OpenAiDecoder {
                done: false,
                finish_seen: false,
            };
            self.exchange
                .stream(self.url.clone(), self.headers(), &body, decoder)
                .await
        })
    }
}

struct OpenAiDecoder {
    done: bool,
    /// A chunk carried a `finish_reason`: the answer is whole.
    finish_seen: bool,
}

impl Decoder for OpenAiDecoder {
    type Event = SseEvent;

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Decoded>) {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        // A chunk (nearly every event) is parsed straight into its type; only an event
        // that is not one is looked at as JSON, for an error. (Parsing every event into
        // a `Value` first, then converting it, took more than twice the instructions.)
        let chunk_error = match serde_json::from_str::<ChatChunk>(&event.data) {
            Ok(chunk) => {
                self.finish_seen |= chunk.choices.iter().any(|c| c.finish_reason.is_some());
                return out.push(Decoded::Chunk(chunk));
            }
            Err(e) => e,
        };
        let value: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => return out.push(Decoded::Malformed(format!("not JSON: {e}"))),
        };
        if let Some(error) = value.get("error") {
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .or_else(|| error.get("type").and_then(Value::as_str))
                .map(str::to_owned);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error event in the stream");
            return out.push(Decoded::Failed(
                Error::new(
                    ErrorKind::StreamInterrupted,
                    format!("upstream error mid-stream: {message}"),
                )
                .with_upstream(None, code),
            ));
        }
        out.push(Decoded::Malformed(format!("not a chunk: {chunk_error}")));
    }

    /// At `[DONE]`, or once a chunk gave the `finish_reason`: a stream that ends
    /// after that without `[DONE]` brought the whole answer (and its usage, which
    /// follows the finish), and is not an interruption.
    fn finished(&self) -> bool {
        self.done || self.finish_seen
    }
}

/// An OpenAI (or Azure) error response, normalised.
fn error_from(status: u16, headers: &http::HeaderMap, body: &[u8], provisioned: bool) -> Error {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = value.get("error").unwrap_or(&Value::Null);
    let code = error.get("code").and_then(|c| {
        c.as_str()
            .map(str::to_owned)
            .or_else(|| (!c.is_null()).then(|| c.to_string()))
    });
    let kind_field = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let code_str = code.as_deref().unwrap_or_default();
    let kind = match status {
        429 if provisioned => ErrorKind::CapacityExhausted,
        429 => ErrorKind::RateLimited,
        400 if code_str == "context_length_exceeded" => ErrorKind::ContextLengthExceeded,
        400 if code_str == "content_filter" || code_str == "content_policy_violation" => {
            ErrorKind::ContentFiltered
        }
        400 | 422 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::UpstreamAuth,
        404 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        503 if code_str == "overloaded" || message.contains("overloaded") => ErrorKind::Overloaded,
        502 | 503 => ErrorKind::Unavailable,
        _ if status >= 500 => ErrorKind::UpstreamError,
        _ => ErrorKind::UpstreamError,
    };
    let mut e = Error::new(kind, message).with_upstream(
        Some(status),
        code.or_else(|| (!kind_field.is_empty()).then(|| kind_field.to_owned())),
    );
    if kind.fault() == crate::api::Fault::Client {
        e.param = error
            .get("param")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    e.with_retry_after(retry_after(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_request_is_the_clients_with_the_endpoints_model() {
        let client: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "recap",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 12,
            "stop": ["\n"], "seed": 7, "user": "u-1",
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto", "parallel_tool_calls": false, "stream": false,
            "n": 1, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": true,
            "top_logprobs": 2, "logit_bias": {"50256": -100}, "metadata": {"k": "v"}
        }))
        .unwrap();
        for stream in [false, true] {
            let mut expected = client.clone();
            expected.model = "gpt-4o-mini".into();
            expected.stream = stream.then_some(true);
            expected.stream_options = stream.then_some(StreamOptions {
                include_usage: true,
            });
            assert_eq!(
                serde_json::to_value(UpstreamRequest::new(&client, "gpt-4o-mini", stream)).unwrap(),
                serde_json::to_value(&expected).unwrap()
            );
        }
    }

    #[test]
    fn errors_map_by_status_and_code() {
        let h = http::HeaderMap::new();
        let e = error_from(400, &h, br#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#, false);
        assert_eq!(
            (e.kind, e.param.as_deref()),
            (ErrorKind::ContextLengthExceeded, Some("messages"))
        );
        assert_eq!(
            error_from(429, &h, b"{}", true).kind,
            ErrorKind::CapacityExhausted
        );
        assert_eq!(
            error_from(
                503,
                &h,
                br#"{"error":{"message":"x","code":"overloaded"}}"#,
                false
            )
            .kind,
            ErrorKind::Overloaded
        );
        assert_eq!(
            error_from(500, &h, b"not json", false).kind,
            ErrorKind::UpstreamError
        );
    }
}
