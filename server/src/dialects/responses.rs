//! The OpenAI Responses API, stateless: `POST /v1/responses`.
//!
//! An unchanged OpenAI client (`client.responses.create(...)`, base URL and key
//! changed) names a feature as its `model`; the key is `Authorization: Bearer`.
//!
//! **Request → unified.** `instructions` is a system message first; `input` is a
//! string (one user message) or items: `message` items (with or without `"type"`;
//! roles `user`, `system`, `developer`, `assistant`; `input_text` and `input_image`
//! parts, an image by URL or data URL, and an assistant's `output_text` / `refusal`
//! parts — so a client can send back what it got), `function_call` items (the tool
//! calls of the assistant turn they follow) and `function_call_output` items (`tool`
//! messages). `tools` of type `function` are function tools; `tool_choice` `none |
//! auto | required | {"type": "function", "name"}` carries over, as do
//! `parallel_tool_calls`, `temperature`, `top_p` and `max_output_tokens` (as
//! `max_completion_tokens`); `text.format` `text | json_object | json_schema` is the
//! unified `response_format` (a JSON schema with its `name`, `schema`, `strict`,
//! `description`); `user` (else `safety_identifier`, else `x-crossbar-user`) is the
//! sticky key.
//!
//! **Stateless.** Crossbar keeps no responses: `store: true`, `previous_response_id`,
//! `conversation`, `background: true` and `item_reference` items are refused with
//! `unsupported_parameter` (so is anything the unified request cannot carry: other
//! tool types, `reasoning`, `include`, `prompt`, `top_logprobs`, `max_tool_calls`,
//! `text.verbosity`, `truncation: "auto"`, file inputs, reasoning items). A client
//! keeps the conversation itself and sends it as `input` (its previous output items
//! included). Responses say `"store": false`. Prompt-cache keys and `service_tier`
//! are accepted and not forwarded. Unknown fields are refused.
//!
//! **Unified → response.** A `response` object with `output` items: a `message`
//! (`output_text`, or `refusal`) and one `function_call` per tool call (`call_id` the
//! model's call id); `status` `completed`, or `incomplete` with `incomplete_details`
//! (`max_output_tokens` for a length finish, `content_filter`); `usage` with
//! `input_tokens` (and cached), `output_tokens` and `total_tokens`. Ids derive from
//! Crossbar's request id (`resp_<id>`, items `msg_<id>_<n>`, `fc_<id>_<n>`).
//!
//! **Streams** are the typed event sequence, each with its `sequence_number`:
//! `response.created`, `response.in_progress`, per item `response.output_item.added`,
//! (messages) `response.content_part.added`, `response.output_text.delta`...,
//! `response.output_text.done`, `response.content_part.done`, (calls)
//! `response.function_call_arguments.delta`..., `.done`, then
//! `response.output_item.done`; last `response.completed` (or `response.incomplete`)
//! with the whole response and its usage. A continued stream carries the
//! `: x-crossbar-continued ...` SSE comments before that last event; a stream that
//! fails after its first token and cannot be continued ends with an `error` event
//! and `response.failed`.
//!
//! **Errors** are OpenAI's shape, as on the chat route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use router_core::api::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Dialect, Error, FinishReason,
    FunctionCall, FunctionDefinition, FunctionName, ImageUrl, Message, ResponseFormat,
    StreamOptions, ToolCall, ToolChoice, ToolChoiceMode, ToolDefinition, ToolKind, Usage,
};
use router_core::routing::engine::stream::StreamReport;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    StreamWriter, TextOrBlocks, continued, event_stream, object_id, sse_event, unix_seconds,
};
use crate::AppState;
use crate::gateway::{
    Admitted, GatewayError, Routed, admit, json_response, parse_body, route, route_headers,
    sticky_key,
};

/// The Responses route.
pub const RESPONSES: &str = "/v1/responses";

// ---------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------

/// `POST /v1/responses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<TextOrBlocks<Item>>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub truncation: Option<String>,
    #[serde(default)]
    pub include: Option<Vec<Value>>,
    #[serde(default)]
    pub background: Option<bool>,
    // Accepted, not forwarded: hints that do not change an answer.
    #[serde(default)]
    pub stream_options: Option<Value>,
    #[serde(default)]
    pub prompt_cache_key: Option<Value>,
    #[serde(default)]
    pub prompt_cache_retention: Option<Value>,
    #[serde(default)]
    pub prompt_cache_options: Option<Value>,
    #[serde(default)]
    pub service_tier: Option<Value>,
    // Refused when set.
    #[serde(default)]
    pub conversation: Option<Value>,
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub max_tool_calls: Option<Value>,
    #[serde(default)]
    pub top_logprobs: Option<Value>,
    #[serde(default)]
    pub context_management: Option<Value>,
}

/// An input item. Which fields apply depends on `type` (a message without one is a
/// message); fields of other item types and unknown ones (`id`, `status`,
/// `annotations`, ... of items a client sends back) are ignored.
#[derive(Debug, Deserialize)]
pub struct Item {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<TextOrBlocks<Part>>,
    #[serde(default)]
    pub call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
    #[serde(default)]
    pub output: Option<TextOrBlocks<Part>>,
}

/// A content part of a message item or a function call's output.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    #[serde(default)]
    pub format: Option<TextFormat>,
    #[serde(default)]
    pub verbosity: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default)]
        strict: Option<bool>,
        #[serde(default)]
        description: Option<String>,
    },
}

impl TextFormat {
    fn to_json(&self) -> Value {
        match self {
            Self::Text => json!({"type": "text"}),
            Self::JsonObject => json!({"type": "json_object"}),
            Self::JsonSchema {
                name,
                schema,
                strict,
                description,
            } => json!({"type": "json_schema", "name": name, "schema": schema,
                "strict": strict, "description": description}),
        }
    }
}

// ---------------------------------------------------------------------------
// Request → unified
// ---------------------------------------------------------------------------

/// What a response echoes of its request.
#[derive(Debug, Clone)]
pub struct Echo {
    instructions: Option<String>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u32>,
    format: Value,
    metadata: Map<String, Value>,
    user: Option<String>,
    created_at: u64,
}

fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::unsupported(param, message)
}

/// `request` as the unified request, and what the response echoes of it.
pub fn to_chat(request: ResponsesRequest) -> Result<(ChatRequest, Echo), Error> {
    let stateless = "Crossbar's Responses API is stateless: it keeps no responses; send the whole conversation as `input` (with `store` false or absent)";
    if request.store == Some(true) {
        return Err(unsupported(
            "store",
            format!("store: true is not supported: {stateless}"),
        ));
    }
    if request.previous_response_id.is_some() {
        return Err(unsupported(
            "previous_response_id",
            format!("previous_response_id is not supported: {stateless}"),
        ));
    }
    if request.conversation.is_some() {
        return Err(unsupported(
            "conversation",
            format!("conversations are not supported: {stateless}"),
        ));
    }
    if request.background == Some(true) {
        return Err(unsupported(
            "background",
            format!("background responses are not supported: {stateless}"),
        ));
    }
    let refused = [
        (
            "prompt",
            request.prompt.is_some(),
            "stored prompts are not supported",
        ),
        (
            "reasoning",
            request.reasoning.is_some(),
            "reasoning settings are not supported: the unified request cannot carry them",
        ),
        (
            "max_tool_calls",
            request.max_tool_calls.is_some(),
            "max_tool_calls is not supported",
        ),
        (
            "top_logprobs",
            request.top_logprobs.is_some(),
            "logprobs are not supported on this route",
        ),
        (
            "context_management",
            request.context_management.is_some(),
            "context_management is not supported",
        ),
        (
            "include",
            request.include.as_ref().is_some_and(|i| !i.is_empty()),
            "include is not supported: there is nothing extra to include",
        ),
        (
            "truncation",
            request
                .truncation
                .as_deref()
                .is_some_and(|t| t != "disabled"),
            "truncation is not supported: only \"disabled\"",
        ),
    ];
    if let Some((param, _, message)) = refused.into_iter().find(|(_, set, _)| *set) {
        return Err(unsupported(param, message));
    }
    let format = match request.text {
        Some(text) => {
            if text.verbosity.is_some() {
                return Err(unsupported(
                    "text.verbosity",
                    "text.verbosity is not supported",
                ));
            }
            text.format
        }
        None => None,
    };

    let mut messages = Vec::new();
    if let Some(instructions) = &request.instructions {
        messages.push(Message::system(instructions.clone()));
    }
    match request.input {
        None => {}
        Some(TextOrBlocks::Text(text)) => messages.push(Message::user(text)),
        Some(TextOrBlocks::Blocks(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                input_item(item, i, &mut messages)?;
            }
        }
    }
    if !messages
        .iter()
        .any(|m| !matches!(m, Message::System { .. }))
    {
        return Err(Error::invalid("input", "input must not be empty"));
    }

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
    let tool_choice = request.tool_choice.as_ref().map(tool_choice).transpose()?;
    let response_format = match &format {
        None | Some(TextFormat::Text) => None,
        Some(TextFormat::JsonObject) => Some(ResponseFormat::JsonObject),
        Some(TextFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        }) => {
            let mut json_schema = json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                json_schema["strict"] = json!(strict);
            }
            if let Some(description) = description {
                json_schema["description"] = json!(description);
            }
            Some(ResponseFormat::JsonSchema { json_schema })
        }
    };
    let echo = Echo {
        instructions: request.instructions,
        tools: tools
            .iter()
            .flatten()
            .map(|t| {
                json!({"type": "function", "name": t.function.name,
                    "description": t.function.description,
                    "parameters": t.function.parameters, "strict": t.function.strict})
            })
            .collect(),
        tool_choice: request.tool_choice.unwrap_or_else(|| json!("auto")),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.max_output_tokens,
        format: format
            .as_ref()
            .map_or_else(|| json!({"type": "text"}), TextFormat::to_json),
        metadata: request.metadata.unwrap_or_default(),
        user: request.user.clone(),
        created_at: unix_seconds(),
    };
    let stream = request.stream.unwrap_or(false);
    let chat = ChatRequest {
        model: request.model,
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        max_completion_tokens: request.max_output_tokens,
        user: request.user.or(request.safety_identifier),
        response_format,
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        stream: Some(stream),
        // The usage `response.completed` reports.
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        ..ChatRequest::default()
    };
    Ok((chat, echo))
}

fn function_tool(tool: Tool, i: usize) -> Result<ToolDefinition, Error> {
    if tool.kind != "function" {
        return Err(unsupported(
            &format!("tools[{i}].type"),
            format!(
                "`{}` tools are not supported: Crossbar routes to model endpoints; declare function tools",
                tool.kind
            ),
        ));
    }
    let Some(name) = tool.name else {
        return Err(Error::invalid(
            &format!("tools[{i}].name"),
            "a function tool needs a name",
        ));
    };
    Ok(ToolDefinition {
        kind: ToolKind::Function,
        function: FunctionDefinition {
            name,
            description: tool.description,
            parameters: tool.parameters,
            strict: tool.strict,
        },
    })
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, Error> {
    let mode = |m| Ok(ToolChoice::Mode(m));
    match choice {
        Value::String(s) if s == "none" => mode(ToolChoiceMode::None),
        Value::String(s) if s == "auto" => mode(ToolChoiceMode::Auto),
        Value::String(s) if s == "required" => mode(ToolChoiceMode::Required),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let Some(name) = o.get("name").and_then(Value::as_str) else {
                return Err(Error::invalid(
                    "tool_choice.name",
                    "name the function to call",
                ));
            };
            Ok(ToolChoice::Named {
                r#type: ToolKind::Function,
                function: FunctionName {
                    name: name.to_owned(),
                },
            })
        }
        other => Err(unsupported(
            "tool_choice",
            format!("tool_choice {other} is not supported: use none, auto, required or a function"),
        )),
    }
}

/// One input item, appended to `messages`.
fn input_item(item: Item, i: usize, messages: &mut Vec<Message>) -> Result<(), Error> {
    let at = format!("input[{i}]");
    match item.kind.as_deref() {
        None | Some("message") => {
            let role = item.role.as_deref().unwrap_or_default();
            let Some(content) = item.content else {
                return Err(Error::invalid(
                    &format!("{at}.content"),
                    "a message needs content",
                ));
            };
            let message = match role {
                "assistant" => {
                    let (text, refusal) = assistant_text(content, &at)?;
                    Message::Assistant {
                        content: (!text.is_empty()).then_some(Content::Text(text)),
                        tool_calls: None,
                        name: None,
                        refusal,
                    }
                }
                "user" => Message::User {
                    content: input_content(content, &at)?,
                    name: None,
                },
                "system" => Message::System {
                    content: input_content(content, &at)?,
                    name: None,
                },
                "developer" => Message::Developer {
                    content: input_content(content, &at)?,
                    name: None,
                },
                other => {
                    return Err(Error::invalid(
                        &format!("{at}.role"),
                        format!("unknown role `{other}`: user, assistant, system or developer"),
                    ));
                }
            };
            messages.push(message);
        }
        Some("function_call") => {
            let (Some(call_id), Some(name)) = (item.call_id, item.name) else {
                return Err(Error::invalid(
                    &at,
                    "a function_call needs call_id and name",
                ));
            };
            let call = ToolCall {
                id: call_id,
                kind: ToolKind::Function,
                function: FunctionCall {
                    name,
                    arguments: item.arguments.unwrap_or_default(),
                },
            };
            // The calls of one assistant turn: after its text, or after each other.
            if let Some(Message::Assistant { tool_calls, .. }) = messages.last_mut() {
                tool_calls.get_or_insert_with(Vec::new).push(call);
            } else {
                messages.push(Message::Assistant {
                    content: None,
                    tool_calls: Some(vec![call]),
                    name: None,
                    refusal: None,
                });
            }
        }
        Some("function_call_output") => {
            let Some(call_id) = item.call_id else {
                return Err(Error::invalid(
                    &format!("{at}.call_id"),
                    "a function_call_output needs call_id",
                ));
            };
            let text = match item.output {
                None => String::new(),
                Some(TextOrBlocks::Text(text)) => text,
                Some(TextOrBlocks::Blocks(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.kind.as_str(), part.text) {
                            ("input_text" | "output_text", Some(t)) => text.push_str(&t),
                            _ => {
                                return Err(unsupported(
                                    &format!("{at}.output[{j}]"),
                                    "only text is supported in a function_call_output: the endpoints receive tool results as text",
                                ));
                            }
                        }
                    }
                    text
                }
            };
            messages.push(Message::Tool {
                content: Content::Text(text),
                tool_call_id: call_id,
            });
        }
        Some("item_reference") => {
            return Err(unsupported(
                &at,
                "item references are not supported: Crossbar's Responses API keeps no items; send the item itself",
            ));
        }
        Some(other) => {
            return Err(unsupported(
                &format!("{at}.type"),
                format!(
                    "`{other}` input items are not supported: send message, function_call and function_call_output items"
                ),
            ));
        }
    }
    Ok(())
}

/// A user, system or developer message's content.
fn input_content(content: TextOrBlocks<Part>, at: &str) -> Result<Content, Error> {
    let parts = match content {
        TextOrBlocks::Text(text) => return Ok(Content::Text(text)),
        TextOrBlocks::Blocks(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match part.kind.as_str() {
            "input_text" | "output_text" => out.push(ContentPart::Text {
                text: part.text.unwrap_or_default(),
            }),
            "input_image" => {
                let Some(url) = part.image_url else {
                    return Err(unsupported(
                        &here,
                        "images by file_id (the Files API) are not supported: send image_url (a URL or a data URL)",
                    ));
                };
                out.push(ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url,
                        detail: part.detail.filter(|d| d != "auto"),
                    },
                });
            }
            other => {
                return Err(unsupported(
                    &format!("{here}.type"),
                    format!("`{other}` content is not supported: send input_text and input_image"),
                ));
            }
        }
    }
    if out.len() == 1
        && let Some(ContentPart::Text { .. }) = out.first()
        && let Some(ContentPart::Text { text }) = out.pop()
    {
        return Ok(Content::Text(text));
    }
    Ok(Content::Parts(out))
}

/// An assistant message's text and refusal.
fn assistant_text(
    content: TextOrBlocks<Part>,
    at: &str,
) -> Result<(String, Option<String>), Error> {
    let parts = match content {
        TextOrBlocks::Text(text) => return Ok((text, None)),
        TextOrBlocks::Blocks(parts) => parts,
    };
    let mut text = String::new();
    let mut refusal = None;
    for (j, part) in parts.into_iter().enumerate() {
        match part.kind.as_str() {
            "output_text" | "input_text" => text.push_str(part.text.as_deref().unwrap_or_default()),
            "refusal" => refusal = part.refusal,
            other => {
                return Err(Error::invalid(
                    &format!("{at}.content[{j}].type"),
                    format!("`{other}` content does not belong in an assistant message"),
                ));
            }
        }
    }
    Ok((text, refusal))
}

// ---------------------------------------------------------------------------
// Unified → response
// ---------------------------------------------------------------------------

fn usage_json(usage: Option<&Usage>) -> Value {
    let usage = usage.copied().unwrap_or_default();
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    })
}

/// `status` and `incomplete_details` for a finish reason.
fn status(finish: Option<FinishReason>) -> (&'static str, Value) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

impl Echo {
    /// The `response` object.
    fn response(&self, id: &str, model: &str, status: &str, output: Vec<Value>) -> Value {
        json!({
            "id": id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": model,
            "output": output,
            "error": null,
            "incomplete_details": null,
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "text": {"format": self.format},
            "metadata": self.metadata,
            "user": self.user,
            "previous_response_id": null,
            "store": false,
            "background": false,
            "truncation": "disabled",
            "usage": null,
        })
    }
}

fn message_item(id: String, text: &str, refusal: Option<&str>, status: &str) -> Value {
    let mut content = Vec::new();
    if !text.is_empty() || refusal.is_none() {
        content.push(output_text(text));
    }
    if let Some(refusal) = refusal {
        content.push(json!({"type": "refusal", "refusal": refusal}));
    }
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn call_item(id: String, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

/// A whole answer as a `response`.
pub fn to_response(response: &ChatResponse, request_id: &str, echo: &Echo) -> Value {
    let choice = response.choices.first();
    let mut output = Vec::new();
    let item_id = |prefix: &str, n: usize| format!("{}_{n}", object_id(prefix, request_id));
    if let Some(message) = choice.map(|c| &c.message) {
        let text = message.content.as_deref().unwrap_or_default();
        let refusal = message.refusal.as_deref();
        if !text.is_empty() || refusal.is_some() {
            output.push(message_item(
                item_id("msg", output.len()),
                text,
                refusal,
                "completed",
            ));
        }
        for call in message.tool_calls.iter().flatten() {
            output.push(call_item(
                item_id("fc", output.len()),
                &call.id,
                &call.function.name,
                &call.function.arguments,
                "completed",
            ));
        }
    }
    let (status, incomplete) = status(choice.and_then(|c| c.finish_reason));
    let mut body = echo.response(
        &object_id("resp", request_id),
        &response.model,
        status,
        output,
    );
    body["incomplete_details"] = incomplete;
    body["usage"] = usage_json(response.usage.as_ref());
    body["completed_at"] = json!(unix_seconds());
    body
}

/// An output item a stream is writing.
enum OutItem {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl OutItem {
    fn json(&self, status: &str) -> Value {
        match self {
            Self::Message { id, text } => message_item(id.clone(), text, None, status),
            Self::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => call_item(id.clone(), call_id, name, arguments, status),
        }
    }
}

/// Writes a committed stream as the Responses API's typed events.
pub struct ResponsesWriter {
    request_id: String,
    id: String,
    echo: Echo,
    sequence: u64,
    model: String,
    started: bool,
    items: Vec<OutItem>,
    /// The item being written (an index into `items`).
    open: Option<usize>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ResponsesWriter {
    pub fn new(request_id: &str, echo: Echo) -> Self {
        Self {
            request_id: request_id.to_owned(),
            id: object_id("resp", request_id),
            echo,
            sequence: 0,
            model: String::new(),
            started: false,
            items: Vec::new(),
            open: None,
            finish: None,
            usage: None,
        }
    }

    /// Appends the event `name` with `fields`, its `type` and `sequence_number`.
    fn event(&mut self, out: &mut Vec<u8>, name: &str, mut fields: Value) {
        fields["type"] = json!(name);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        sse_event(out, name, &fields);
    }

    fn snapshot(&self, status: &str) -> Value {
        let output = self
            .items
            .iter()
            .map(|i| i.json(status_of_items(status)))
            .collect();
        self.echo.response(&self.id, &self.model, status, output)
    }

    fn start(&mut self, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        model.clone_into(&mut self.model);
        let response = self.snapshot("in_progress");
        self.event(out, "response.created", json!({"response": response}));
        self.event(out, "response.in_progress", json!({"response": response}));
    }

    fn item_id(&self, prefix: &str) -> String {
        format!(
            "{}_{}",
            object_id(prefix, &self.request_id),
            self.items.len()
        )
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        match &self.items[index] {
            OutItem::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                self.event(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.event(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "part": output_text(&text)}),
                );
            }
            OutItem::Call {
                id,
                name,
                arguments,
                ..
            } => {
                let fields = json!({"item_id": id, "output_index": index,
                    "name": name, "arguments": arguments});
                self.event(out, "response.function_call_arguments.done", fields);
            }
        }
        let item = self.items[index].json("completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn add(&mut self, item: OutItem, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.items.len();
        let json = item.json("in_progress");
        self.items.push(item);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": json}),
        );
        index
    }

    fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some(i) if matches!(self.items[i], OutItem::Message { .. }) => i,
            _ => {
                let id = self.item_id("msg");
                let index = self.add(
                    OutItem::Message {
                        id: id.clone(),
                        text: String::new(),
                    },
                    out,
                );
                self.event(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "part": output_text("")}),
                );
                self.open = Some(index);
                index
            }
        };
        let OutItem::Message { id, text } = &mut self.items[index] else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        self.event(
            out,
            "response.output_text.delta",
            json!({"item_id": id,
            "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }
}

/// The status of the items of a response in `status`.
fn status_of_items(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "incomplete" => "incomplete",
        _ => "in_progress",
    }
}

impl StreamWriter for ResponsesWriter {
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
                let known = self
                    .items
                    .iter()
                    .position(|i| matches!(i, OutItem::Call { index, .. } if *index == call.index));
                let index = match known {
                    Some(index) => index,
                    None => {
                        let id = self.item_id("fc");
                        let call_id = call.id.clone().unwrap_or_else(|| format!("call_{id}"));
                        let name = call.function.name.clone().unwrap_or_default();
                        let item = OutItem::Call {
                            id,
                            index: call.index,
                            call_id,
                            name,
                            arguments: String::new(),
                        };
                        let index = self.add(item, out);
                        self.open = Some(index);
                        index
                    }
                };
                let Some(delta) = call.function.arguments.filter(|a| !a.is_empty()) else {
                    continue;
                };
                let OutItem::Call { id, arguments, .. } = &mut self.items[index] else {
                    continue;
                };
                arguments.push_str(&delta);
                let id = id.clone();
                self.event(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": delta}),
                );
            }
            if let Some(finish) = choice.finish_reason {
                self.finish = Some(finish);
            }
        }
    }

    fn failed(&mut self, error: &Error, out: &mut Vec<u8>) {
        let model = String::new();
        self.start(&model, out);
        self.event(
            out,
            "error",
            json!({"code": error.kind.as_str(), "message": error.message,
            "param": error.param}),
        );
        let mut response = self.snapshot("failed");
        response["error"] = json!({"code": error.kind.as_str(), "message": error.message});
        self.event(out, "response.failed", json!({"response": response}));
    }

    fn end(&mut self, report: &StreamReport, out: &mut Vec<u8>) {
        self.start("", out);
        self.close(out);
        let (status, incomplete) = status(self.finish);
        let mut response = self.snapshot(status);
        // Every item was closed: each is complete, whatever the response's status.
        response["output"] = self.items.iter().map(|i| i.json("completed")).collect();
        response["incomplete_details"] = incomplete;
        response["usage"] = usage_json(self.usage.as_ref());
        response["completed_at"] = json!(unix_seconds());
        continued(out, report);
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.event(out, name, json!({"response": response}));
    }
}

// ---------------------------------------------------------------------------
// The route
// ---------------------------------------------------------------------------

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let id = crate::stack::request_id_of(&parts.headers);
    match handle(&state, &parts.headers, body, &id).await {
        Ok(response) => response,
        Err(e) => {
            e.log_detail(&id);
            e.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    id: &str,
) -> Result<Response, GatewayError> {
    let Admitted { key, raw } = admit(state, headers, body, Dialect::Responses).await?;
    let wire: ResponsesRequest = parse_body(&raw)?;
    let (request, echo) = to_chat(wire)?;
    let sticky = sticky_key(request.user.as_deref(), headers);
    let request = Arc::new(request);
    let routed = route(
        state,
        &key,
        id,
        Dialect::Responses,
        raw.len(),
        sticky,
        &request,
    )
    .await?;
    let mut response = match routed.answer {
        Routed::Stream(stream) => event_stream(stream, ResponsesWriter::new(id, echo), id),
        Routed::Whole(whole) => {
            let response = json_response(&to_response(whole.response(), id, &echo));
            whole.settle();
            response
        }
    };
    route_headers(response.headers_mut(), &routed.route);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::api::{ChunkChoice, Delta, ErrorKind, FunctionCallDelta, ToolCallDelta};

    fn parse(body: Value) -> Result<(ChatRequest, Echo), Error> {
        let wire: ResponsesRequest = parse_body(body.to_string().as_bytes())?;
        to_chat(wire)
    }

    #[test]
    fn items_instructions_tools_and_a_schema_translate() {
        let (request, echo) = parse(json!({
            "model": "summarize",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "What is the weather?"},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}", "id": "fc_1"},
                {"type": "function_call_output", "call_id": "call_1", "output": "12 C"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "And this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                ]},
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 64,
            "user": "u-1",
        }))
        .unwrap();
        assert_eq!(request.messages[0], Message::system("Be brief."));
        assert_eq!(request.messages[1], Message::user("What is the weather?"));
        let Message::Assistant {
            content,
            tool_calls: Some(calls),
            ..
        } = &request.messages[2]
        else {
            panic!("{:?}", request.messages[2])
        };
        assert_eq!(content, &Some(Content::Text("Checking.".into())));
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.name.as_str()),
            ("call_1", "weather")
        );
        assert_eq!(
            request.messages[3],
            Message::Tool {
                content: Content::Text("12 C".into()),
                tool_call_id: "call_1".into()
            }
        );
        let Message::User {
            content: Content::Parts(parts),
            ..
        } = &request.messages[4]
        else {
            panic!()
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(request.output_limit(), Some(64));
        assert!(request.wants_json());
        assert_eq!(request.user.as_deref(), Some("u-1"));
        assert!(matches!(
            request.tool_choice,
            Some(ToolChoice::Named { .. })
        ));
        assert_eq!(echo.tools[0]["name"], "weather");
        assert_eq!(echo.format["name"], "answer");
    }

    #[test]
    fn state_and_what_cannot_be_carried_are_refused() {
        let with = |extra: Value| {
            let mut body = json!({"model": "f", "input": "hi"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            parse(body).map(|_| ()).unwrap_err()
        };
        for (extra, param) in [
            (json!({"store": true}), "store"),
            (
                json!({"previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"reasoning": {"effort": "high"}}), "reasoning"),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
        ] {
            let e = with(extra.clone());
            assert_eq!(e.kind, ErrorKind::UnsupportedParameter, "{extra}");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
        }
        assert!(parse(json!({"model": "f", "input": "hi", "store": false})).is_ok());
        assert_eq!(with(json!({"input": []})).param.as_deref(), Some("input"));
    }

    fn chunk(delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "gpt".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
        }
    }

    fn events(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| e.starts_with("event: "))
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], &name["event: ".len()..]);
                data
            })
            .collect()
    }

    #[test]
    fn a_stream_is_the_typed_event_sequence_with_sequence_numbers() {
        let (_, echo) = parse(json!({"model": "f", "input": "hi"})).unwrap();
        let mut w = ResponsesWriter::new("req_00ff", echo);
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
        w.chunk(
            chunk(
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 0,
                        id: Some("call_9".into()),
                        kind: None,
                        function: FunctionCallDelta {
                            name: Some("f".into()),
                            arguments: Some("{}".into()),
                        },
                    }]),
                    ..Delta::default()
                },
                Some(FinishReason::ToolCalls),
            ),
            &mut out,
        );
        w.chunk(
            chunk(Delta::default(), None).with_usage(Usage::new(5, 3, None)),
            &mut out,
        );
        w.end(&StreamReport::default(), &mut out);
        let events = events(&out);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], n as u64);
        }
        let done = &events.last().unwrap()["response"];
        assert_eq!(done["id"], "resp_00ff");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["call_id"], "call_9");
        assert_eq!(done["usage"]["total_tokens"], 8);
    }

    #[test]
    fn a_failure_after_the_first_token_is_an_error_event_and_response_failed() {
        let (_, echo) = parse(json!({"model": "f", "input": "hi"})).unwrap();
        let mut w = ResponsesWriter::new("req_1", echo);
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
        let n = events.len();
        assert_eq!(events[n - 2]["type"], "error");
        assert_eq!(events[n - 2]["code"], "stream_interrupted");
        assert_eq!(events[n - 1]["type"], "response.failed");
        assert_eq!(
            events[n - 1]["response"]["error"]["code"],
            "stream_interrupted"
        );
    }
}
