//! Claude on Vertex AI: the Anthropic Messages API behind `:rawPredict` and
//! `:streamRawPredict`, with `anthropic_version: vertex-2023-10-16` and the model in
//! the URL. Errors of the model come in Anthropic's format; those of the Vertex front
//! end (auth, quota, routing) in Google's.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::vertex::{Vertex, google_error};
use super::{ChatProvider, ChatStream, Decoder, check_capabilities, retry_after, unix_now};
use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ContentPart, Delta, Error,
    ErrorKind, FinishReason, FunctionCall, FunctionCallDelta, Message, Role, ToolCall,
    ToolCallDelta, ToolChoice, ToolChoiceMode, ToolKind, Usage,
};
use crate::config::EndpointConfig;

pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

pub struct Anthropic {
    vertex: Vertex,
}

impl Anthropic {
    pub async fn connect(
        endpoint: EndpointConfig,
        transport: &TransportSettings,
    ) -> Result<Self, Error> {
        Ok(Self {
            vertex: Vertex::connect(endpoint, "anthropic", transport, anthropic_error).await?,
        })
    }
}

impl ChatProvider for Anthropic {
    fn endpoint(&self) -> &EndpointConfig {
        self.vertex.endpoint()
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            let endpoint = self.endpoint();
            check_capabilities(endpoint, request)?;
            let body = to_anthropic(request, endpoint.capabilities().max_output_tokens, false)?;
            let reply: Value = self.vertex.whole("rawPredict", &body).await?;
            Ok(from_anthropic(&reply, &endpoint.model))
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        Box::pin(async move {
            let endpoint = self.endpoint();
            check_capabilities(endpoint, request)?;
            let body = to_anthropic(request, endpoint.capabilities().max_output_tokens, true)?;
            let decoder = AnthropicDecoder {
                id: String::new(),
                model: endpoint.model.clone(),
                created: unix_now(),
                prompt_tokens: 0,
                blocks: Vec::new(),
                calls: 0,
                finish: None,
                done: false,
            };
            self.vertex.stream("streamRawPredict", &body, decoder).await
        })
    }
}

/// Unified request → Anthropic Messages body for Vertex.
pub(crate) fn to_anthropic(
    request: &ChatRequest,
    default_max: u32,
    stream: bool,
) -> Result<Value, Error> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let push = |messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>| match messages.last_mut()
    {
        Some(last) if last["role"] == role => last["content"]
            .as_array_mut()
            .expect("content is an array")
            .extend(blocks),
        _ => messages.push(json!({ "role": role, "content": blocks })),
    };
    for (i, message) in request.messages.iter().enumerate() {
        match message {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                system.push(content.text())
            }
            Message::User { content, .. } => {
                let mut blocks = Vec::new();
                for part in content.parts() {
                    blocks.push(match part {
                        ContentPart::Text { text } => json!({ "type": "text", "text": text }),
                        ContentPart::ImageUrl { image_url } => match image_url.as_data() {
                            Some((media, data)) => json!({ "type": "image", "source": { "type": "base64", "media_type": media, "data": data } }),
                            None => json!({ "type": "image", "source": { "type": "url", "url": image_url.url } }),
                        },
                    });
                }
                push(&mut messages, "user", blocks);
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_ref().map(|c| c.text()).filter(|t| !t.is_empty()) {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                for call in tool_calls.iter().flatten() {
                    let input: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            Error::invalid(
                                &format!("messages[{i}].tool_calls"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    blocks.push(json!({ "type": "tool_use", "id": call.id, "name": call.function.name, "input": input }));
                }
                if blocks.is_empty() {
                    return Err(Error::invalid(
                        &format!("messages[{i}]"),
                        "an assistant message needs content or tool calls",
                    ));
                }
                push(&mut messages, "assistant", blocks);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                push(
                    &mut messages,
                    "user",
                    vec![
                        json!({ "type": "tool_result", "tool_use_id": tool_call_id, "content": content.text() }),
                    ],
                );
            }
        }
    }
    let mut body = json!({
        "anthropic_version": VERTEX_VERSION,
        "messages": messages,
        "max_tokens": request.output_limit().unwrap_or(default_max),
    });
    if stream {
        body["stream"] = json!(true);
    }
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = request.top_p {
        body["top_p"] = json!(p);
    }
    let stop = request.stop_sequences();
    if !stop.is_empty() {
        body["stop_sequences"] = json!(stop);
    }
    if let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) {
        body["tools"] = json!(
            tools
                .iter()
                .map(|t| json!({
                    "name": t.function.name,
                    "description": t.function.description.clone().unwrap_or_default(),
                    "input_schema": t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
                }))
                .collect::<Vec<_>>()
        );
        if let Some(choice) = &request.tool_choice {
            body["tool_choice"] = match choice {
                ToolChoice::Mode(ToolChoiceMode::Auto) => json!({ "type": "auto" }),
                ToolChoice::Mode(ToolChoiceMode::Required) => json!({ "type": "any" }),
                ToolChoice::Mode(ToolChoiceMode::None) => json!({ "type": "none" }),
                ToolChoice::Named { function, .. } => {
                    json!({ "type": "tool", "name": function.name })
                }
            };
        }
    }
    Ok(body)
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn usage(u: &Value, prompt_fallback: u32) -> Usage {
    let get = |k: &str| u.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let cached = get("cache_read_input_tokens");
    // Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt count includes it.
    let prompt = get("input_tokens").unwrap_or(prompt_fallback)
        + cached.unwrap_or(0)
        + get("cache_creation_input_tokens").unwrap_or(0);
    Usage::new(prompt, get("output_tokens").unwrap_or(0), cached)
}

fn from_anthropic(reply: &Value, model: &str) -> ChatResponse {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in reply
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") => calls.push(ToolCall {
                id: block
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                kind: ToolKind::Function,
                function: FunctionCall {
                    name: block
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    arguments: block
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| json!({}))
                        .to_string(),
                },
            }),
            _ => {}
        }
    }
    let reason = reply
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    ChatResponse {
        id: reply
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("msg")
            .to_owned(),
        object: "chat.completion".into(),
        created: unix_now(),
        model: reply
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: (calls.is_empty() || !text.is_empty()).then_some(text),
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            finish_reason: Some(finish_reason(reason)),
            logprobs: None,
        }],
        usage: reply.get("usage").map(|u| usage(u, 0)),
        system_fingerprint: None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    Tool(u32),
    Other,
}

struct AnthropicDecoder {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u32,
    /// What each content block index is.
    blocks: Vec<Block>,
    calls: u32,
    finish: Option<FinishReason>,
    done: bool,
}

impl AnthropicDecoder {
    fn chunk(&self) -> ChatChunk {
        ChatChunk::new(&self.id, &self.model, self.created)
    }
}

impl Decoder for AnthropicDecoder {
    type Event = SseEvent;

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Result<ChatChunk, Error>>) {
        let value: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => {
                return out.push(Err(Error::new(
                    ErrorKind::StreamInterrupted,
                    format!("malformed stream event: {e}"),
                )));
            }
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let message = value.get("message").cloned().unwrap_or(Value::Null);
                self.id = message
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("msg")
                    .to_owned();
                if let Some(m) = message.get("model").and_then(Value::as_str) {
                    self.model = m.to_owned();
                }
                self.prompt_tokens = message
                    .pointer("/usage/input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                out.push(Ok(self.chunk().with_delta(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        tool_calls: None,
                    },
                    None,
                )));
            }
            "content_block_start" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let block = value.get("content_block").cloned().unwrap_or(Value::Null);
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text,
                    Some("tool_use") => {
                        let n = self.calls;
                        self.calls += 1;
                        let delta = ToolCallDelta {
                            index: n,
                            id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                            kind: Some(ToolKind::Function),
                            function: FunctionCallDelta {
                                name: block.get("name").and_then(Value::as_str).map(str::to_owned),
                                arguments: Some(String::new()),
                            },
                        };
                        out.push(Ok(self.chunk().with_delta(
                            Delta {
                                tool_calls: Some(vec![delta]),
                                ..Delta::default()
                            },
                            None,
                        )));
                        Block::Tool(n)
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let delta = value.get("delta").cloned().unwrap_or(Value::Null);
                match (
                    self.blocks.get(index).copied().unwrap_or(Block::Other),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Block::Text, Some("text_delta")) => {
                        let text = delta
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        out.push(Ok(self.chunk().with_delta(
                            Delta {
                                content: Some(text),
                                ..Delta::default()
                            },
                            None,
                        )));
                    }
                    (Block::Tool(n), Some("input_json_delta")) => {
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let call = ToolCallDelta {
                            index: n,
                            id: None,
                            kind: None,
                            function: FunctionCallDelta {
                                name: None,
                                arguments: Some(partial),
                            },
                        };
                        out.push(Ok(self.chunk().with_delta(
                            Delta {
                                tool_calls: Some(vec![call]),
                                ..Delta::default()
                            },
                            None,
                        )));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.finish = Some(finish_reason(reason));
                }
                if let Some(u) = value.get("usage") {
                    let mut usage = usage(u, self.prompt_tokens);
                    if u.get("input_tokens").is_none() {
                        usage = Usage::new(
                            self.prompt_tokens,
                            usage.completion_tokens,
                            usage.prompt_tokens_details.map(|d| d.cached_tokens),
                        );
                    }
                    out.push(Ok(self.chunk().with_delta(
                        Delta::default(),
                        Some(self.finish.unwrap_or(FinishReason::Stop)),
                    )));
                    out.push(Ok(self.chunk().with_usage(usage)));
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let kind = value
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let message = value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("error event in the stream");
                out.push(Err(Error::new(
                    ErrorKind::StreamInterrupted,
                    format!("upstream error mid-stream: {message}"),
                )
                .with_upstream(None, kind)));
            }
            _ => {} // ping, content_block_stop
        }
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// An Anthropic error body, or a Google one from the Vertex front end.
fn anthropic_error(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    provisioned: bool,
) -> Error {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if value.get("type").and_then(Value::as_str) != Some("error") {
        return google_error(status, headers, body, provisioned);
    }
    let kind_field = value
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error")
        .to_owned();
    let kind = match kind_field.as_str() {
        "rate_limit_error" if provisioned => ErrorKind::CapacityExhausted,
        "rate_limit_error" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        "invalid_request_error" if message.contains("prompt is too long") => {
            ErrorKind::ContextLengthExceeded
        }
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" | "permission_error" => ErrorKind::UpstreamAuth,
        "not_found_error" => ErrorKind::NotFound,
        "timeout_error" => ErrorKind::Timeout,
        _ => ErrorKind::UpstreamError,
    };
    Error::new(kind, message)
        .with_upstream(Some(status), Some(kind_field))
        .with_retry_after(retry_after(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Content;

    #[test]
    fn tool_results_become_user_tool_result_blocks() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::system("a"),
                Message::Developer {
                    content: Content::Text("b".into()),
                    name: None,
                },
                Message::user("q"),
                Message::Assistant {
                    content: None,
                    tool_calls: Some(vec![ToolCall {
                        id: "toolu_1".into(),
                        kind: ToolKind::Function,
                        function: FunctionCall {
                            name: "f".into(),
                            arguments: "{}".into(),
                        },
                    }]),
                    name: None,
                    refusal: None,
                },
                Message::Tool {
                    content: Content::Text("42".into()),
                    tool_call_id: "toolu_1".into(),
                },
            ],
            ..ChatRequest::default()
        };
        let body = to_anthropic(&request, 1024, false).unwrap();
        assert_eq!(body["system"], "a\n\nb");
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(body["anthropic_version"], VERTEX_VERSION);
        assert!(body.get("model").is_none());
    }

    #[test]
    fn overload_is_its_own_class_and_google_bodies_fall_through() {
        let h = http::HeaderMap::new();
        assert_eq!(
            anthropic_error(
                529,
                &h,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                false
            )
            .kind,
            ErrorKind::Overloaded
        );
        assert_eq!(
            anthropic_error(
                401,
                &h,
                br#"{"error":{"code":401,"message":"x","status":"UNAUTHENTICATED"}}"#,
                false
            )
            .kind,
            ErrorKind::UpstreamAuth
        );
    }
}
