//! Claude on Vertex AI: the Anthropic Messages API behind `:rawPredict` and
//! `:streamRawPredict`, with `anthropic_version: vertex-2023-10-16` and the model in
//! the URL. Errors of the model come in Anthropic's format; those of the Vertex front
//! end (auth, quota, routing) in Google's. The request body is typed
//! ([`MessagesRequest`]), like Bedrock's and OpenAI's.
//!
//! A tool's `input_schema` must be JSON Schema with `"type": "object"` exactly:
//! parameters declared the Gemini way (upper-case OpenAPI types, `"OBJECT"`), or
//! without a top-level type, are normalised to that ([`input_schema`]), so a client
//! written for one provider still reaches Claude.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::vertex::{Vertex, google_error};
use super::{
    ChatProvider, ChatStream, Decoded, Decoder, check_capabilities, retry_after, token_count,
    unix_now,
};
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
                usage_seen: false,
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

/// The Messages API request body as Vertex takes it: no `model` (the URL names it),
/// `anthropic_version` instead. Borrowed from the client's request where it can be.
#[derive(Debug, Serialize)]
pub(crate) struct MessagesRequest<'a> {
    anthropic_version: &'static str,
    messages: Vec<Turn<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    /// The system and developer messages, joined by a blank line.
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<AnthropicToolChoice<'a>>,
}

/// One message, `user` or `assistant`, as content blocks.
#[derive(Debug, Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<ContentBlock<'a>>,
}

/// One content block, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock<'a> {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: Value,
}

/// `tool_choice`, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicToolChoice<'a> {
    Auto,
    Any,
    None,
    Tool { name: &'a str },
}

/// Adds `blocks` to the conversation: consecutive messages of one role are one turn.
fn push<'a>(messages: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<ContentBlock<'a>>) {
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Turn {
            role,
            content: blocks,
        }),
    }
}

/// Unified request → Anthropic Messages body for Vertex.
pub(crate) fn to_anthropic(
    request: &ChatRequest,
    default_max: u32,
    stream: bool,
) -> Result<MessagesRequest<'_>, Error> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        match message {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                system.push(content.text())
            }
            Message::User { content, .. } => {
                let blocks = content
                    .parts()
                    .into_iter()
                    .map(|part| match part {
                        ContentPart::Text { text } => ContentBlock::Text { text },
                        ContentPart::ImageUrl { image_url } => ContentBlock::Image {
                            source: match image_url.as_data() {
                                Some((media, data)) => ImageSource::Base64 {
                                    media_type: media.to_owned(),
                                    data: data.to_owned(),
                                },
                                None => ImageSource::Url { url: image_url.url },
                            },
                        },
                    })
                    .collect();
                push(&mut messages, "user", blocks);
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_ref().map(|c| c.text()).filter(|t| !t.is_empty()) {
                    blocks.push(ContentBlock::Text { text });
                }
                for call in tool_calls.iter().flatten() {
                    let input: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            Error::invalid(
                                &format!("messages[{i}].tool_calls"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    blocks.push(ContentBlock::ToolUse {
                        id: &call.id,
                        name: &call.function.name,
                        input,
                    });
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
            } => push(
                &mut messages,
                "user",
                vec![ContentBlock::ToolResult {
                    tool_use_id: tool_call_id,
                    content: content.text(),
                }],
            ),
        }
    }
    let tools = request.tools.as_ref().filter(|t| !t.is_empty());
    Ok(MessagesRequest {
        anthropic_version: VERTEX_VERSION,
        messages,
        max_tokens: request.output_limit().unwrap_or(default_max),
        stream: stream.then_some(true),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: request.stop_sequences(),
        tools: tools.map(|tools| {
            tools
                .iter()
                .map(|t| Tool {
                    name: &t.function.name,
                    description: t.function.description.as_deref().unwrap_or_default(),
                    input_schema: input_schema(t.function.parameters.as_ref()),
                })
                .collect()
        }),
        // Only with tools: without them there is nothing to choose.
        tool_choice: tools
            .and(request.tool_choice.as_ref())
            .map(|choice| match choice {
                ToolChoice::Mode(ToolChoiceMode::Auto) => AnthropicToolChoice::Auto,
                ToolChoice::Mode(ToolChoiceMode::Required) => AnthropicToolChoice::Any,
                ToolChoice::Mode(ToolChoiceMode::None) => AnthropicToolChoice::None,
                ToolChoice::Named { function, .. } => AnthropicToolChoice::Tool {
                    name: &function.name,
                },
            }),
    })
}

/// A function's parameters as Anthropic's `input_schema`: JSON Schema whose top level
/// has `"type": "object"`. OpenAPI-style upper-case type names (`"OBJECT"`,
/// `"STRING"`, what Gemini clients declare) are lowered throughout; a missing top-level
/// type is added.
fn input_schema(parameters: Option<&Value>) -> Value {
    let mut schema = match parameters {
        Some(Value::Object(p)) => Value::Object(p.clone()),
        _ => json!({}),
    };
    lower_type_names(&mut schema);
    if schema.get("type").is_none() {
        schema["type"] = json!("object");
    }
    schema
}

const SCHEMA_TYPES: [&str; 7] = [
    "object", "string", "number", "integer", "boolean", "array", "null",
];

/// Lowers every `type` that names a JSON Schema type in another case, in `schema` and
/// in the schemas nested in it (properties, items, combinators, definitions); literal
/// values (`enum`, `const`, `default`...) are left alone.
fn lower_type_names(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "type" => match value {
                Value::Array(types) => types.iter_mut().for_each(lower_type_name),
                name => lower_type_name(name),
            },
            // Maps from names to schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                if let Value::Object(named) = value {
                    named.values_mut().for_each(lower_type_names);
                }
            }
            // A schema, or a list of them.
            "items"
            | "additionalProperties"
            | "not"
            | "contains"
            | "anyOf"
            | "oneOf"
            | "allOf"
            | "prefixItems" => match value {
                Value::Array(schemas) => schemas.iter_mut().for_each(lower_type_names),
                schema => lower_type_names(schema),
            },
            _ => {}
        }
    }
}

fn lower_type_name(name: &mut Value) {
    if let Value::String(name) = name
        && let Some(known) = SCHEMA_TYPES.iter().find(|k| k.eq_ignore_ascii_case(name))
    {
        *name = (*known).to_owned();
    }
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
    let get = |k: &str| u.get(k).and_then(Value::as_u64).map(token_count);
    let cached = get("cache_read_input_tokens");
    // Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt count includes it.
    let prompt = get("input_tokens")
        .unwrap_or(prompt_fallback)
        .saturating_add(cached.unwrap_or(0))
        .saturating_add(get("cache_creation_input_tokens").unwrap_or(0));
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

/// The most content blocks one message may have. Claude numbers them from 0, a text
/// block and a few tool uses each; an index beyond this is not one, and the table of
/// blocks is never grown to an upstream's number.
const MAX_CONTENT_BLOCKS: usize = 1024;

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    Tool(u32),
    Other,
}

struct AnthropicDecoder {
    /// `message_delta` brought the usage.
    usage_seen: bool,
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

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Decoded>) {
        let value: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => return out.push(Decoded::Malformed(format!("not JSON: {e}"))),
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
                    .map_or(0, token_count);
                out.push(Decoded::Chunk(self.chunk().with_delta(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        tool_calls: None,
                    },
                    None,
                )));
            }
            "content_block_start" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some(index) = usize::try_from(index)
                    .ok()
                    .filter(|&i| i < MAX_CONTENT_BLOCKS)
                else {
                    return out.push(Decoded::Failed(Error::new(
                        ErrorKind::StreamInterrupted,
                        format!(
                            "content block {index}: a message has at most \
                             {MAX_CONTENT_BLOCKS} blocks"
                        ),
                    )));
                };
                let block = value.get("content_block").cloned().unwrap_or(Value::Null);
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text,
                    Some("tool_use") => {
                        let n = self.calls;
                        self.calls = self.calls.saturating_add(1);
                        let delta = ToolCallDelta {
                            index: n,
                            id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                            kind: Some(ToolKind::Function),
                            function: FunctionCallDelta {
                                name: block.get("name").and_then(Value::as_str).map(str::to_owned),
                                arguments: Some(String::new()),
                            },
                        };
                        out.push(Decoded::Chunk(self.chunk().with_delta(
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
                // `index` is below MAX_CONTENT_BLOCKS: the table stays small.
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = value.get("delta").cloned().unwrap_or(Value::Null);
                let block = usize::try_from(index)
                    .ok()
                    .and_then(|i| self.blocks.get(i).copied());
                match (
                    block.unwrap_or(Block::Other),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Block::Text, Some("text_delta")) => {
                        let text = delta
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        out.push(Decoded::Chunk(self.chunk().with_delta(
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
                        out.push(Decoded::Chunk(self.chunk().with_delta(
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
                    out.push(Decoded::Chunk(self.chunk().with_delta(
                        Delta::default(),
                        Some(self.finish.unwrap_or(FinishReason::Stop)),
                    )));
                    out.push(Decoded::Chunk(self.chunk().with_usage(usage)));
                    self.usage_seen = true;
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
                out.push(Decoded::Failed(
                    Error::new(
                        ErrorKind::StreamInterrupted,
                        format!("upstream error mid-stream: {message}"),
                    )
                    .with_upstream(None, kind),
                ));
            }
            _ => {} // ping, content_block_stop
        }
    }

    /// At `message_stop`, or once `message_delta` gave the stop reason and usage:
    /// the answer is whole even if the stream ends before `message_stop`.
    fn finished(&self) -> bool {
        self.done || self.finish.is_some() && self.usage_seen
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
    use serde_json::json;

    #[test]
    fn input_schemas_are_json_schema_objects_whatever_case_the_client_used() {
        let gemini_style = json!({
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING", "enum": ["OBJECT", "Lisbon"]},
                "type": {"type": "String", "default": {"type": "KEPT"}},
                "days": {"type": ["INTEGER", "NULL"]},
                "stops": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"at": {"type": "NUMBER"}}}},
                "any": {"anyOf": [{"type": "BOOLEAN"}, {"type": "STRING"}]},
            },
            "required": ["city"],
        });
        assert_eq!(
            input_schema(Some(&gemini_style)),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "enum": ["OBJECT", "Lisbon"]},
                    "type": {"type": "string", "default": {"type": "KEPT"}},
                    "days": {"type": ["integer", "null"]},
                    "stops": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "number"}}}},
                    "any": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
                },
                "required": ["city"],
            })
        );
        let json_schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        assert_eq!(input_schema(Some(&json_schema)), json_schema);
        assert_eq!(
            input_schema(Some(&json!({"properties": {}}))),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(input_schema(None), json!({"type": "object"}));
    }

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
        let body = serde_json::to_value(to_anthropic(&request, 1024, false).unwrap()).unwrap();
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

    /// The wire body, field by field, for a request that uses every mapped feature;
    /// and a plain one that carries nothing optional.
    #[test]
    fn the_wire_body_is_a_messages_request_for_vertex() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "feature",
            "messages": [
                {"role": "system", "content": "a"},
                {"role": "developer", "content": "b"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.webp"}}
                ]},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "fx", "arguments": "{\"c\":\"EUR\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"rate\":1.08}"},
                {"role": "user", "content": "thanks"}
            ],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": ["END", "STOP"],
            "tools": [
                {"type": "function", "function": {"name": "fx", "description": "rates", "parameters": {"type": "object", "properties": {}}}},
                {"type": "function", "function": {"name": "now"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "fx"}}
        }))
        .unwrap();
        let expected = json!({
            "anthropic_version": "vertex-2023-10-16",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.webp"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "c1", "name": "fx", "input": {"c": "EUR"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "{\"rate\":1.08}"},
                    {"type": "text", "text": "thanks"}
                ]}
            ],
            "max_tokens": 100,
            "stream": true,
            "system": "a\n\nb",
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END", "STOP"],
            "tools": [
                {"name": "fx", "description": "rates", "input_schema": {"type": "object", "properties": {}}},
                {"name": "now", "description": "", "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "tool", "name": "fx"}
        });
        assert_eq!(
            serde_json::to_value(to_anthropic(&request, 1024, true).unwrap()).unwrap(),
            expected
        );

        let plain = ChatRequest {
            model: "feature".into(),
            messages: vec![Message::user("hi")],
            ..ChatRequest::default()
        };
        assert_eq!(
            serde_json::to_value(to_anthropic(&plain, 1024, false).unwrap()).unwrap(),
            json!({
                "anthropic_version": "vertex-2023-10-16",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "max_tokens": 1024
            })
        );
    }

    #[test]
    fn tool_choice_modes_map_to_anthropic_choice_types_and_need_tools() {
        for (choice, kind) in [
            (json!("auto"), "auto"),
            (json!("none"), "none"),
            (json!("required"), "any"),
        ] {
            let mut request: ChatRequest = serde_json::from_value(json!({
                "model": "feature",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "fx"}}],
                "tool_choice": choice
            }))
            .unwrap();
            let body = serde_json::to_value(to_anthropic(&request, 1024, false).unwrap()).unwrap();
            assert_eq!(body["tool_choice"], json!({"type": kind}), "{choice}");
            request.tools = None;
            let body = serde_json::to_value(to_anthropic(&request, 1024, false).unwrap()).unwrap();
            assert!(body.get("tool_choice").is_none(), "{choice}: {body}");
        }
    }

    fn decoder() -> AnthropicDecoder {
        AnthropicDecoder {
            usage_seen: false,
            id: String::new(),
            model: "claude".into(),
            created: 0,
            prompt_tokens: 0,
            blocks: Vec::new(),
            calls: 0,
            finish: None,
            done: false,
        }
    }

    fn decode(decoder: &mut AnthropicDecoder, event: Value) -> Vec<Result<ChatChunk, Error>> {
        let mut out = Vec::new();
        let event = SseEvent {
            event: None,
            data: event.to_string(),
        };
        decoder.decode(event, &mut out);
        out.into_iter().filter_map(Decoded::into_result).collect()
    }

    /// The table of blocks is indexed by the upstream's numbers: one past the bound
    /// (4 billion would have asked for 32 GB) interrupts the stream instead.
    #[test]
    fn a_content_block_index_past_the_bound_is_refused_without_allocating() {
        let mut d = decoder();
        let start = |index: u64| {
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}})
        };
        let out = decode(&mut d, start(0));
        assert!(out.iter().all(Result::is_ok));
        let out = decode(
            &mut d,
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "hi"}}),
        );
        assert_eq!(
            out[0].as_ref().unwrap().choices[0].delta.content.as_deref(),
            Some("hi")
        );
        for index in [MAX_CONTENT_BLOCKS as u64, 4_000_000_000, u64::MAX] {
            let out = decode(&mut d, start(index));
            assert!(
                matches!(out.as_slice(), [Err(e)] if e.kind == ErrorKind::StreamInterrupted),
                "{index}: {out:?}"
            );
            // A delta for it is no block's: ignored, never a panic.
            let delta = json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": "x"}});
            assert!(decode(&mut d, delta).is_empty());
        }
        assert!(
            d.blocks.capacity() <= MAX_CONTENT_BLOCKS,
            "{}",
            d.blocks.capacity()
        );
    }

    /// Token counts are the upstream's numbers: beyond `u32` they saturate, and the
    /// prompt (input + cache reads + cache writes) and the total never overflow.
    #[test]
    fn token_counts_beyond_u32_saturate_and_their_sums_do_not_overflow() {
        let max = u32::MAX;
        let u = usage(
            &json!({"input_tokens": 5_000_000_000u64, "output_tokens": 7, "cache_read_input_tokens": 10}),
            0,
        );
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (max, 7, max)
        );
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 10);
        let u = usage(
            &json!({"input_tokens": max, "cache_read_input_tokens": 1,
                    "cache_creation_input_tokens": 1, "output_tokens": max}),
            0,
        );
        assert_eq!((u.prompt_tokens, u.total_tokens), (max, max));

        // The prompt count of message_start, carried to the last chunk.
        let mut d = decoder();
        decode(
            &mut d,
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5_000_000_000u64}}}),
        );
        let out = decode(
            &mut d,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        );
        let usage = out.last().unwrap().as_ref().unwrap().usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (max, 3));
    }
}
