//! The Anthropic Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! An unchanged Anthropic client (base URL and key changed) names a feature as its
//! `model`; the gateway key comes as `x-api-key` or `Authorization: Bearer`, and
//! `anthropic-version` is accepted whatever its value (and not required).
//!
//! **Request → unified.** `system` (a string or text blocks, joined by a blank line)
//! is a system message; each message's text and image blocks (base64 or URL) become
//! its content; `tool_use` blocks of an assistant message its tool calls (`input` as
//! JSON arguments); `tool_result` blocks of a user message become `tool` messages, in
//! order, before the rest of that message (an `is_error` result's text starts with
//! `Error: `); plain-text documents (`text` and `content` sources) become text (after
//! their title and context). `tools` are function tools (`input_schema` their
//! parameters), `tool_choice` `auto | any | tool | none` maps to `auto | required |
//! the named function | none` (`disable_parallel_tool_use` to `parallel_tool_calls:
//! false`), `stop_sequences`, `max_tokens` (required, as Anthropic requires it),
//! `temperature` and `top_p` carry over, `output_config.format` (a JSON schema) is the
//! unified JSON-schema response format, and `metadata.user_id` is the request's
//! `user`: the experiments' sticky key.
//!
//! **Refused, never silently dropped** (`invalid_request_error`, naming the field):
//! PDF documents (base64, URL or file: the unified request carries text and images
//! only, and no adapter could pass a PDF on), images and documents inside a
//! `tool_result` (the adapters carry tool results as text), Files API sources,
//! server tools (web search, code execution, ...), `top_k` (the unified request has
//! no such field yet, so no endpoint would get it), extended `thinking`,
//! `output_config.effort`, `inference_geo` (Crossbar's data boundaries decide where a
//! request runs), `container`, `mcp_servers` and `context_management`. Unknown fields
//! are refused as Anthropic refuses them. Prompt-caching `cache_control` marks,
//! `service_tier` and `speed` are accepted and not forwarded: an answer is the same
//! without them.
//!
//! **Unified → response.** A `message` with `text` and `tool_use` blocks; the finish
//! reason as `stop_reason` (`stop` → `end_turn`, `length` → `max_tokens`, `tool_calls`
//! → `tool_use`, `content_filter` → `refusal`; the unified answer does not say which
//! stop sequence matched, so a stop sequence reads as `end_turn` with `stop_sequence:
//! null`); usage as `input_tokens` (cached tokens apart, as `cache_read_input_tokens`)
//! and `output_tokens`. `model` is the model that answered, as on the chat route.
//!
//! **Streams** are Anthropic's event sequence: `message_start` (input tokens are not
//! known yet: 0), `ping`, then per block `content_block_start`,
//! `content_block_delta` (`text_delta` or `input_json_delta`), `content_block_stop`,
//! then `message_delta` with the stop reason and the whole usage (input tokens
//! included, which the SDKs take as the final count), `message_stop`. A `ping` goes
//! out after every 10 s of silence. A continued stream ends with the
//! `: x-crossbar-continued ...` SSE comments before `message_stop`; a stream that
//! fails after its first token and cannot be continued ends with `event: error`.
//!
//! **Errors** are Anthropic's shape, `{"type": "error", "error": {"type", "message"},
//! "request_id"}`, with the normalised class also in `error.code`; [`anthropic_error`]
//! maps the class to Anthropic's type and status. The response's `request-id` header
//! (which the SDKs read) is Crossbar's request id.
//!
//! **count_tokens** is an estimate, marked as one (`"estimated": true` and
//! `x-crossbar-token-count: estimate`): no provider adapter has a count-tokens call
//! today, so nothing upstream is asked. It checks the key and the feature, and counts
//! a quarter of the characters of every text, tool call, tool result and tool
//! definition, plus 1,600 per image (Anthropic's figure for a full-size image, an
//! upper bound). It is not rate-limited and not recorded in the ledger: it costs
//! nothing upstream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use router_core::api::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Dialect, Error, ErrorKind,
    FinishReason, FunctionCall, FunctionDefinition, FunctionName, ImageUrl, Message,
    ResponseFormat, Stop, StreamOptions, ToolCall, ToolChoice as ChatToolChoice, ToolChoiceMode,
    ToolDefinition, ToolKind, Usage,
};
use router_core::routing::engine::stream::StreamReport;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    StreamWriter, TextOrBlocks, arguments_object, continued, event_stream, object_id, sse_event,
};
use crate::AppState;
use crate::gateway::{
    Admitted, GatewayError, Routed, admit, json_response, parse_body, route, route_headers,
    sticky_key,
};

/// The Messages route.
pub const MESSAGES: &str = "/v1/messages";
/// The token-counting route.
pub const COUNT_TOKENS: &str = "/v1/messages/count_tokens";

const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_TOKEN_COUNT: HeaderName = HeaderName::from_static("x-crossbar-token-count");

/// A keep-alive `ping` after this much silence on a stream.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Tokens counted for one image by the count_tokens estimate.
const IMAGE_TOKENS: u64 = 1_600;

// ---------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------

/// `POST /v1/messages` (and the count_tokens body, which is the same without
/// `max_tokens`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    pub model: String,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub system: Option<TextOrBlocks<Block>>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub thinking: Option<Value>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    // Accepted, not forwarded: hints that do not change an answer.
    #[serde(default)]
    pub cache_control: Option<Value>,
    #[serde(default)]
    pub service_tier: Option<Value>,
    #[serde(default)]
    pub speed: Option<Value>,
    // Refused when set.
    #[serde(default)]
    pub inference_geo: Option<Value>,
    #[serde(default)]
    pub container: Option<Value>,
    #[serde(default)]
    pub mcp_servers: Option<Value>,
    #[serde(default)]
    pub context_management: Option<Value>,
    #[serde(default)]
    pub diagnostics: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct InputMessage {
    pub role: Role,
    pub content: TextOrBlocks<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// A content block. Fields not listed (`cache_control`, `citations`, ...) are
/// accepted and not forwarded.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    Document {
        source: DocumentSource,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        context: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextOrBlocks<Block>>,
        #[serde(default)]
        is_error: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
    File { file_id: String },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    Base64 {
        media_type: String,
        #[allow(dead_code, reason = "refused: read to say so")]
        data: String,
    },
    Text {
        data: String,
    },
    Url {
        #[allow(dead_code, reason = "refused: read to say so")]
        url: String,
    },
    Content {
        content: TextOrBlocks<Block>,
    },
    File {
        #[allow(dead_code, reason = "refused: read to say so")]
        file_id: String,
    },
}

/// A tool definition: a client tool (`type` absent or `custom`) with its
/// `input_schema`, or a server tool (any other `type`), which is refused.
#[derive(Debug, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    None,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OutputConfig {
    #[serde(default)]
    pub effort: Option<Value>,
    #[serde(default)]
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputFormat {
    JsonSchema { schema: Value },
}

// ---------------------------------------------------------------------------
// Request → unified
// ---------------------------------------------------------------------------

fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::unsupported(param, message)
}

/// `request` as the unified request (streaming or not by its `stream`).
pub fn to_chat(request: MessagesRequest) -> Result<ChatRequest, Error> {
    let refused: [(&str, bool, &str); 6] = [
        (
            "top_k",
            request.top_k.is_some(),
            "top_k is not supported: the unified request Crossbar routes has no top_k, so no endpoint would receive it; use temperature or top_p",
        ),
        (
            "inference_geo",
            request.inference_geo.is_some(),
            "inference_geo is not supported: the feature's data boundary decides where a request runs",
        ),
        (
            "container",
            request.container.is_some(),
            "containers (server-side code execution) are not supported",
        ),
        (
            "mcp_servers",
            request.mcp_servers.is_some(),
            "mcp_servers is not supported: declare client tools instead",
        ),
        (
            "context_management",
            request.context_management.is_some(),
            "context_management is not supported",
        ),
        (
            "diagnostics",
            request.diagnostics.is_some(),
            "diagnostics is not supported: Crossbar keeps no previous messages",
        ),
    ];
    if let Some((param, _, message)) = refused.into_iter().find(|(_, set, _)| *set) {
        return Err(unsupported(param, message));
    }
    if let Some(thinking) = &request.thinking
        && thinking.get("type").and_then(Value::as_str) != Some("disabled")
    {
        return Err(unsupported(
            "thinking",
            "extended thinking is not supported: the unified request cannot carry it; omit `thinking` or set it to {\"type\": \"disabled\"}",
        ));
    }
    let mut response_format = None;
    if let Some(config) = request.output_config {
        if config.effort.is_some() {
            return Err(unsupported(
                "output_config.effort",
                "output_config.effort is not supported",
            ));
        }
        if let Some(OutputFormat::JsonSchema { schema }) = config.format {
            response_format = Some(ResponseFormat::JsonSchema {
                json_schema: json!({"name": "output", "schema": schema, "strict": true}),
            });
        }
    }

    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let text = match system {
            TextOrBlocks::Text(text) => text,
            TextOrBlocks::Blocks(blocks) => {
                let mut texts = Vec::with_capacity(blocks.len());
                for (j, block) in blocks.into_iter().enumerate() {
                    match block {
                        Block::Text { text } => texts.push(text),
                        _ => {
                            return Err(Error::invalid(
                                &format!("system[{j}]"),
                                "system blocks must be text blocks",
                            ));
                        }
                    }
                }
                texts.join("\n\n")
            }
        };
        messages.push(Message::system(text));
    }
    for (i, message) in request.messages.into_iter().enumerate() {
        match message.role {
            Role::User => user_turn(message.content, i, &mut messages)?,
            Role::Assistant => messages.push(assistant_turn(message.content, i)?),
        }
    }

    let mut parallel_tool_calls = None;
    let tool_choice = request.tool_choice.map(|choice| {
        let (choice, serial) = match choice {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (
                ChatToolChoice::Mode(ToolChoiceMode::Auto),
                disable_parallel_tool_use,
            ),
            ToolChoice::Any {
                disable_parallel_tool_use,
            } => (
                ChatToolChoice::Mode(ToolChoiceMode::Required),
                disable_parallel_tool_use,
            ),
            ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                ChatToolChoice::Named {
                    r#type: ToolKind::Function,
                    function: FunctionName { name },
                },
                disable_parallel_tool_use,
            ),
            ToolChoice::None => (ChatToolChoice::Mode(ToolChoiceMode::None), false),
        };
        if serial {
            parallel_tool_calls = Some(false);
        }
        choice
    });
    // An empty list is no tools (some APIs refuse `tools: []`).
    let tools = request
        .tools
        .filter(|tools| !tools.is_empty())
        .map(|tools| {
            tools
                .into_iter()
                .enumerate()
                .map(|(i, tool)| function_tool(tool, i))
                .collect::<Result<Vec<_>, Error>>()
        })
        .transpose()?;
    let user = request.metadata.and_then(|m| m.user_id);
    let stream = request.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: request.model,
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        max_tokens: request.max_tokens,
        stop: request
            .stop_sequences
            .filter(|s| !s.is_empty())
            .map(Stop::Many),
        user,
        response_format,
        tools,
        tool_choice,
        parallel_tool_calls,
        stream: Some(stream),
        // The usage the `message_delta` event reports.
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        ..ChatRequest::default()
    })
}

fn function_tool(tool: Tool, i: usize) -> Result<ToolDefinition, Error> {
    if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
        return Err(unsupported(
            &format!("tools[{i}]"),
            format!(
                "server tool `{kind}` is not supported: Crossbar routes to model endpoints; declare client tools (name, input_schema)"
            ),
        ));
    }
    let Some(schema) = tool.input_schema else {
        return Err(Error::invalid(
            &format!("tools[{i}].input_schema"),
            "input_schema: Field required",
        ));
    };
    Ok(ToolDefinition {
        kind: ToolKind::Function,
        function: FunctionDefinition {
            name: tool.name,
            description: tool.description,
            parameters: Some(schema),
            strict: tool.strict,
        },
    })
}

/// A user turn: its tool results as `tool` messages, in order, then the rest of it as
/// one user message.
fn user_turn(
    content: TextOrBlocks<Block>,
    i: usize,
    messages: &mut Vec<Message>,
) -> Result<(), Error> {
    let blocks = match content {
        TextOrBlocks::Text(text) => {
            messages.push(Message::user(text));
            return Ok(());
        }
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut text = tool_result_text(content, &at)?;
                if is_error {
                    text.insert_str(0, "Error: ");
                }
                messages.push(Message::Tool {
                    content: Content::Text(text),
                    tool_call_id: tool_use_id,
                });
            }
            Block::ToolUse { .. } => {
                return Err(Error::invalid(
                    &at,
                    "tool_use blocks belong in assistant messages",
                ));
            }
            other => content_part(other, &at, &mut parts)?,
        }
    }
    if !parts.is_empty() {
        messages.push(Message::User {
            content: as_content(parts),
            name: None,
        });
    }
    Ok(())
}

/// Text, image and document blocks as unified content parts.
fn content_part(block: Block, at: &str, parts: &mut Vec<ContentPart>) -> Result<(), Error> {
    match block {
        Block::Text { text } => parts.push(ContentPart::Text { text }),
        Block::Image { source } => {
            let url = match source {
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
                ImageSource::Url { url } => url,
                ImageSource::File { .. } => {
                    return Err(unsupported(
                        &format!("{at}.source"),
                        "file sources (the Files API) are not supported: send the image as base64 or a URL",
                    ));
                }
            };
            parts.push(ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail: None },
            });
        }
        Block::Document {
            source,
            title,
            context,
        } => {
            let mut text: String = [title, context]
                .into_iter()
                .flatten()
                .map(|t| t + "\n\n")
                .collect();
            match source {
                DocumentSource::Text { data } => text.push_str(&data),
                DocumentSource::Content { content } => match content {
                    TextOrBlocks::Text(data) => text.push_str(&data),
                    TextOrBlocks::Blocks(blocks) => {
                        for (k, block) in blocks.into_iter().enumerate() {
                            content_part(block, &format!("{at}.source.content[{k}]"), parts)?;
                        }
                    }
                },
                DocumentSource::Base64 { media_type, .. } => {
                    return Err(unsupported(
                        &format!("{at}.source"),
                        format!(
                            "{media_type} documents are not supported: the unified request Crossbar routes carries text and images only; send the document's text (a `text` source)"
                        ),
                    ));
                }
                DocumentSource::Url { .. } | DocumentSource::File { .. } => {
                    return Err(unsupported(
                        &format!("{at}.source"),
                        "PDF documents (URL or file) are not supported: the unified request Crossbar routes carries text and images only; send the document's text (a `text` source)",
                    ));
                }
            }
            if !text.is_empty() {
                parts.push(ContentPart::Text { text });
            }
        }
        Block::ToolUse { .. } | Block::ToolResult { .. } => {
            return Err(Error::invalid(at, "a tool block cannot appear here"));
        }
    }
    Ok(())
}

/// A tool result's text. Images and documents in it are refused: every adapter
/// carries a tool result as text.
fn tool_result_text(content: Option<TextOrBlocks<Block>>, at: &str) -> Result<String, Error> {
    Ok(match content {
        None => String::new(),
        Some(TextOrBlocks::Text(text)) => text,
        Some(TextOrBlocks::Blocks(blocks)) => {
            let mut text = String::new();
            for (k, block) in blocks.into_iter().enumerate() {
                match block {
                    Block::Text { text: t } => text.push_str(&t),
                    _ => {
                        return Err(unsupported(
                            &format!("{at}.content[{k}]"),
                            "only text is supported in a tool_result: the endpoints receive tool results as text",
                        ));
                    }
                }
            }
            text
        }
    })
}

/// An assistant turn: its text, and its tool_use blocks as tool calls.
fn assistant_turn(content: TextOrBlocks<Block>, i: usize) -> Result<Message, Error> {
    let blocks = match content {
        TextOrBlocks::Text(text) => return Ok(Message::assistant(text)),
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text { text: t } => text.push_str(&t),
            Block::ToolUse { id, name, input } => {
                let input = if input.is_null() { json!({}) } else { input };
                calls.push(ToolCall {
                    id,
                    kind: ToolKind::Function,
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                });
            }
            _ => {
                return Err(Error::invalid(
                    &format!("messages[{i}].content[{j}]"),
                    "assistant messages take text and tool_use blocks",
                ));
            }
        }
    }
    Ok(Message::Assistant {
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        name: None,
        refusal: None,
    })
}

/// One text part as plain text (what every adapter takes most simply), else parts.
fn as_content(mut parts: Vec<ContentPart>) -> Content {
    if parts.len() == 1
        && let Some(ContentPart::Text { .. }) = parts.first()
        && let Some(ContentPart::Text { text }) = parts.pop()
    {
        return Content::Text(text);
    }
    Content::Parts(parts)
}

// ---------------------------------------------------------------------------
// Unified → response
// ---------------------------------------------------------------------------

/// Anthropic's `stop_reason` for a unified finish reason.
pub fn stop_reason(finish: Option<FinishReason>) -> &'static str {
    match finish {
        None | Some(FinishReason::Stop) => "end_turn",
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
    }
}

/// Anthropic's usage: input tokens without the cached ones, which are apart.
fn usage_json(usage: Option<&Usage>) -> Value {
    let usage = usage.copied().unwrap_or_default();
    let cached = usage.prompt_tokens_details.map(|d| d.cached_tokens);
    let mut out = json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(cached.unwrap_or(0)),
        "output_tokens": usage.completion_tokens,
    });
    if let Some(cached) = cached {
        out["cache_read_input_tokens"] = json!(cached);
    }
    out
}

/// A whole answer as a Messages `message`.
pub fn to_message(response: &ChatResponse, id: String) -> Value {
    let choice = response.choices.first();
    let mut content = Vec::new();
    if let Some(message) = choice.map(|c| &c.message) {
        if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": text}));
        }
        if let Some(refusal) = message.refusal.as_deref().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": refusal}));
        }
        for call in message.tool_calls.iter().flatten() {
            content.push(json!({
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_object(&call.function.arguments),
            }));
        }
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.finish_reason)),
        "stop_sequence": null,
        "usage": usage_json(response.usage.as_ref()),
    })
}

/// The block a stream has open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text(u32),
    Tool { call: u32, block: u32 },
}

/// Writes a committed stream as Anthropic's events.
pub struct MessagesWriter {
    id: String,
    started: bool,
    next_block: u32,
    open: Option<Open>,
    /// `(tool call index, block index)` of every tool_use block so far.
    tools: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl MessagesWriter {
    pub fn new(id: String) -> Self {
        Self {
            id,
            started: false,
            next_block: 0,
            open: None,
            tools: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn start(&mut self, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        sse_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
        sse_event(out, "ping", &json!({"type": "ping"}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let index = match self.open.take() {
            Some(Open::Text(index) | Open::Tool { block: index, .. }) => index,
            None => return,
        };
        sse_event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<u8>) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        sse_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                let index = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Some(Open::Text(index));
                index
            }
        };
        sse_event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
        );
    }
}

impl StreamWriter for MessagesWriter {
    const KEEP_ALIVE: Option<Duration> = Some(PING_EVERY);

    fn chunk(&mut self, chunk: ChatChunk, out: &mut Vec<u8>) {
        self.start(&chunk.model, out);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            for call in choice.delta.tool_calls.into_iter().flatten() {
                let known = self.tools.iter().find(|(c, _)| *c == call.index);
                let block = match known {
                    Some(&(_, block)) => block,
                    None => {
                        let id = call.id.clone().unwrap_or_else(|| {
                            format!("{}_tool_{}", object_id("toolu", &self.id), call.index)
                        });
                        let block = self.open_block(
                            json!({"type": "tool_use", "id": id,
                                "name": call.function.name.as_deref().unwrap_or_default(),
                                "input": {}}),
                            out,
                        );
                        self.open = Some(Open::Tool {
                            call: call.index,
                            block,
                        });
                        self.tools.push((call.index, block));
                        block
                    }
                };
                if let Some(arguments) = call.function.arguments.filter(|a| !a.is_empty()) {
                    sse_event(
                        out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": block,
                            "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    );
                }
            }
            if let Some(finish) = choice.finish_reason {
                self.finish = Some(finish);
                self.close(out);
            }
        }
    }

    fn failed(&mut self, error: &Error, out: &mut Vec<u8>) {
        sse_event(out, "error", &error_body(error, None));
    }

    fn end(&mut self, report: &StreamReport, out: &mut Vec<u8>) {
        self.start("", out);
        self.close(out);
        sse_event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish), "stop_sequence": null},
                "usage": usage_json(self.usage.as_ref())}),
        );
        continued(out, report);
        sse_event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn idle(&mut self, out: &mut Vec<u8>) {
        if self.started {
            sse_event(out, "ping", &json!({"type": "ping"}));
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Anthropic's error type and HTTP status for a normalised class, from Anthropic's
/// error documentation (and the status → exception mapping of its SDKs): the client
/// raises `RateLimitError` on a 429, `OverloadedError` on a 529, and so on.
pub fn anthropic_error(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered
        | ErrorKind::UnsupportedParameter => (400, "invalid_request_error"),
        ErrorKind::Unauthorized => (401, "authentication_error"),
        ErrorKind::Forbidden => (403, "permission_error"),
        ErrorKind::NotFound => (404, "not_found_error"),
        ErrorKind::PayloadTooLarge => (413, "request_too_large"),
        ErrorKind::RateLimited | ErrorKind::CapacityExhausted | ErrorKind::QuotaExceeded => {
            (429, "rate_limit_error")
        }
        // Anthropic's answer when it has no capacity for a request: nothing could
        // take this one either.
        ErrorKind::Overloaded | ErrorKind::Unavailable | ErrorKind::NoEligibleEndpoint => {
            (529, "overloaded_error")
        }
        ErrorKind::Timeout => (504, "timeout_error"),
        ErrorKind::UpstreamError
        | ErrorKind::StreamInterrupted
        | ErrorKind::UpstreamAuth
        | ErrorKind::Internal => (500, "api_error"),
    }
}

/// `{"type": "error", "error": {"type", "message", "code"}, "request_id"}`: the
/// message names the offending field first, as Anthropic's do.
pub fn error_body(error: &Error, request_id: Option<&str>) -> Value {
    let (_, kind) = anthropic_error(error.kind);
    let message = match &error.param {
        Some(param) if !error.message.starts_with(param.as_str()) => {
            format!("{param}: {}", error.message)
        }
        _ => error.message.clone(),
    };
    let mut body = json!({
        "type": "error",
        "error": {"type": kind, "message": message, "code": error.kind.as_str()},
    });
    if let Some(id) = request_id {
        body["request_id"] = json!(id);
    }
    body
}

/// An error response in Anthropic's shape, with the same `retry-after` and route
/// headers as the chat route's.
pub fn error_response(error: GatewayError, request_id: &str) -> Response {
    let (status, _) = anthropic_error(error.error.kind);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let public = crate::gateway::public_error_logged(request_id, &error.error);
    let mut response = (status, axum::Json(error_body(&public, Some(request_id)))).into_response();
    error.headers(response.headers_mut());
    response
}

/// Anthropic's `request-id` header: Crossbar's request id.
fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

// ---------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------

/// `POST /v1/messages`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let id = crate::stack::request_id_of(&parts.headers);
    let response = match handle(&state, &parts.headers, body, &id).await {
        Ok(response) => response,
        Err(e) => error_response(e, &id),
    };
    with_request_id(response, &id)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    id: &str,
) -> Result<Response, GatewayError> {
    let Admitted { key, raw } = admit(state, headers, body, Dialect::Messages).await?;
    let wire: MessagesRequest = parse_body(&raw)?;
    if wire.max_tokens.is_none() {
        return Err(Error::invalid("max_tokens", "Field required").into());
    }
    if wire.messages.is_empty() {
        return Err(Error::invalid("messages", "at least one message is required").into());
    }
    let request = to_chat(wire)?;
    let sticky = sticky_key(request.user.as_deref(), headers);
    let request = Arc::new(request);
    let routed = route(
        state,
        &key,
        id,
        Dialect::Messages,
        raw.len(),
        sticky,
        &request,
    )
    .await?;
    let message_id = object_id("msg", id);
    let mut response = match routed.answer {
        Routed::Stream(stream) => event_stream(stream, MessagesWriter::new(message_id), id),
        Routed::Whole(whole) => {
            let response = json_response(&to_message(whole.response(), message_id));
            whole.settle();
            response
        }
    };
    route_headers(response.headers_mut(), &routed.route);
    Ok(response)
}

/// `POST /v1/messages/count_tokens`: an estimate (see the module's documentation).
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let id = crate::stack::request_id_of(&parts.headers);
    let response = match count(&state, &parts.headers, body).await {
        Ok(response) => response,
        Err(e) => error_response(e, &id),
    };
    with_request_id(response, &id)
}

async fn count(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let Admitted { raw, .. } = admit(state, headers, body, Dialect::Messages).await?;
    let wire: MessagesRequest = parse_body(&raw)?;
    let request = to_chat(wire)?;
    if state
        .engine
        .snapshot()
        .config
        .feature(&request.model)
        .is_none()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "unknown feature `{}`: `model` names a Crossbar feature (GET /v1/models lists them)",
                request.model
            ),
        )
        .with_param("model")
        .into());
    }
    let mut response = json_response(&json!({
        "input_tokens": estimate_input_tokens(&request),
        "estimated": true,
    }));
    response
        .headers_mut()
        .insert(X_TOKEN_COUNT, HeaderValue::from_static("estimate"));
    Ok(response)
}

/// The count_tokens estimate: a quarter of the characters of every text, tool call,
/// tool result and tool definition, plus [`IMAGE_TOKENS`] per image.
pub fn estimate_input_tokens(request: &ChatRequest) -> u64 {
    let mut chars = 0usize;
    let mut images = 0u64;
    for message in &request.messages {
        match message.content() {
            Some(Content::Text(text)) => chars += text.len(),
            Some(Content::Parts(parts)) => {
                for part in parts {
                    match part {
                        ContentPart::Text { text } => chars += text.len(),
                        ContentPart::ImageUrl { .. } => images += 1,
                    }
                }
            }
            None => {}
        }
        if let Message::Assistant {
            tool_calls: Some(calls),
            ..
        } = message
        {
            chars += calls
                .iter()
                .map(|c| c.function.name.len() + c.function.arguments.len())
                .sum::<usize>();
        }
    }
    for tool in request.tools.iter().flatten() {
        chars += serde_json::to_string(&tool.function).map_or(0, |s| s.len());
    }
    (chars as u64).div_ceil(4) + images * IMAGE_TOKENS
}

/// A Messages route called with another method: Anthropic's 405 shape.
pub async fn method_not_allowed(method: axum::http::Method, headers: HeaderMap) -> Response {
    let id = crate::stack::request_id_of(&headers);
    let error = Error::new(
        ErrorKind::InvalidRequest,
        format!("{method} is not allowed on this route"),
    );
    let mut response = error_response(error.into(), &id);
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    with_request_id(response, &id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::api::{ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};

    fn parse(body: Value) -> Result<ChatRequest, Error> {
        let wire: MessagesRequest = parse_body(body.to_string().as_bytes())?;
        to_chat(wire)
    }

    #[test]
    fn a_conversation_with_tools_images_and_documents_translates() {
        let request = parse(json!({
            "model": "summarize",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "u-7"},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": "the notes"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "12 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                ]},
            ],
            "tools": [{"name": "weather", "description": "the weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        }))
        .unwrap();
        assert_eq!(request.user.as_deref(), Some("u-7"));
        assert_eq!(request.max_tokens, Some(100));
        assert_eq!(request.stop_sequences(), ["END"]);
        assert_eq!(
            request.messages[0],
            Message::system("Be brief.\n\nBe kind.")
        );
        let Message::User {
            content: Content::Parts(parts),
            ..
        } = &request.messages[1]
        else {
            panic!("{:?}", request.messages[1])
        };
        assert_eq!(parts.len(), 4);
        let ContentPart::ImageUrl { image_url } = &parts[1] else {
            panic!()
        };
        assert_eq!(image_url.as_data(), Some(("image/png", "AAAA")));
        assert_eq!(
            parts[3],
            ContentPart::Text {
                text: "Notes\n\nthe notes".into()
            }
        );
        let Message::Assistant {
            content,
            tool_calls: Some(calls),
            ..
        } = &request.messages[2]
        else {
            panic!()
        };
        assert_eq!(content, &Some(Content::Text("Let me check.".into())));
        assert_eq!(calls[0].function.arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(
            request.messages[3],
            Message::Tool {
                content: Content::Text("12 C".into()),
                tool_call_id: "toolu_1".into()
            }
        );
        assert_eq!(request.messages[4], Message::user("And tomorrow?"));
        assert_eq!(
            request.tool_choice,
            Some(ChatToolChoice::Mode(ToolChoiceMode::Required))
        );
        assert_eq!(request.parallel_tool_calls, Some(false));
        assert_eq!(request.tools.as_ref().unwrap()[0].function.name, "weather");
        assert!(!request.is_stream());
    }

    #[test]
    fn what_cannot_be_carried_is_refused_naming_the_field() {
        let base = |extra: Value| {
            let mut body = json!({"model": "f", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            parse(body).unwrap_err()
        };
        let pdf = parse(json!({"model": "f", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]}]}))
        .unwrap_err();
        assert_eq!(pdf.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(pdf.param.as_deref(), Some("messages[0].content[0].source"));
        assert!(pdf.message.contains("application/pdf"), "{pdf:?}");
        assert_eq!(anthropic_error(pdf.kind), (400, "invalid_request_error"));
        assert_eq!(base(json!({"top_k": 5})).param.as_deref(), Some("top_k"));
        assert_eq!(
            base(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}}))
                .param
                .as_deref(),
            Some("thinking")
        );
        assert_eq!(
            base(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}))
                .param
                .as_deref(),
            Some("tools[0]")
        );
        let unknown = base(json!({"temprature": 1}));
        assert!(unknown.message.contains("temprature"), "{unknown:?}");
        // Allowed: thinking disabled, caching marks.
        parse(json!({"model": "f", "max_tokens": 10, "thinking": {"type": "disabled"},
            "cache_control": {"type": "ephemeral"}, "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap();
    }

    #[test]
    fn errors_take_anthropics_types_and_statuses() {
        for (kind, status, kind_name) in [
            (ErrorKind::RateLimited, 429, "rate_limit_error"),
            (ErrorKind::QuotaExceeded, 429, "rate_limit_error"),
            (ErrorKind::Overloaded, 529, "overloaded_error"),
            (ErrorKind::Unauthorized, 401, "authentication_error"),
            (ErrorKind::NotFound, 404, "not_found_error"),
            (ErrorKind::PayloadTooLarge, 413, "request_too_large"),
            (ErrorKind::Timeout, 504, "timeout_error"),
            (ErrorKind::UpstreamError, 500, "api_error"),
        ] {
            assert_eq!(anthropic_error(kind), (status, kind_name), "{kind}");
        }
        let body = error_body(
            &Error::invalid("max_tokens", "Field required"),
            Some("req_1"),
        );
        assert_eq!(
            body,
            json!({"type": "error", "request_id": "req_1", "error": {
                "type": "invalid_request_error", "message": "max_tokens: Field required", "code": "invalid_request"}})
        );
    }

    fn chunk(delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "claude".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
        }
    }

    /// `(event, data)` of every SSE event written.
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| e.starts_with("event: "))
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name["event: ".len()..].to_owned(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_stream_of_text_then_a_tool_call_is_anthropics_event_sequence() {
        let mut w = MessagesWriter::new("msg_1".into());
        let mut out = Vec::new();
        w.chunk(
            chunk(
                Delta {
                    content: Some("Hel".into()),
                    ..Delta::default()
                },
                None,
            ),
            &mut out,
        );
        w.chunk(
            chunk(
                Delta {
                    content: Some("lo".into()),
                    ..Delta::default()
                },
                None,
            ),
            &mut out,
        );
        let call = |id: Option<&str>, name: Option<&str>, args: &str| Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index: 0,
                id: id.map(str::to_owned),
                kind: None,
                function: FunctionCallDelta {
                    name: name.map(str::to_owned),
                    arguments: Some(args.to_owned()),
                },
            }]),
            ..Delta::default()
        };
        w.chunk(
            chunk(call(Some("toolu_9"), Some("weather"), ""), None),
            &mut out,
        );
        w.chunk(chunk(call(None, None, "{\"city\":"), None), &mut out);
        w.chunk(
            chunk(call(None, None, "\"Oslo\"}"), Some(FinishReason::ToolCalls)),
            &mut out,
        );
        let mut usage = chunk(Delta::default(), None).with_usage(Usage::new(20, 7, None));
        usage.model = "claude".into();
        w.chunk(usage, &mut out);
        w.end(&StreamReport::default(), &mut out);
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].1["message"]["model"], "claude");
        assert_eq!(
            events[6].1["content_block"],
            json!({"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}})
        );
        assert_eq!(events[6].1["index"], 1);
        assert_eq!(events[8].1["delta"]["partial_json"], "\"Oslo\"}");
        assert_eq!(events[10].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            events[10].1["usage"],
            json!({"input_tokens": 20, "output_tokens": 7})
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str());
        }
    }

    #[test]
    fn a_failure_after_the_first_token_is_an_error_event() {
        let mut w = MessagesWriter::new("msg_1".into());
        let mut out = Vec::new();
        w.chunk(
            chunk(
                Delta {
                    content: Some("Hi".into()),
                    ..Delta::default()
                },
                None,
            ),
            &mut out,
        );
        w.failed(&Error::new(ErrorKind::StreamInterrupted, "cut"), &mut out);
        let events = events(&out);
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "api_error");
        assert_eq!(data["error"]["code"], "stream_interrupted");
    }
}
