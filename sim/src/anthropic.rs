//! Claude on Vertex: the Anthropic Messages API behind `:rawPredict` /
//! `:streamRawPredict`, written from Anthropic's and Vertex's documentation.
//!
//! The body is a Messages request without `model` (the URL names it) and with an
//! `anthropic_version`: Vertex's documented `vertex-2023-10-16`, or a later dated
//! version, with or without the `vertex-` prefix (today's Anthropic SDK sends its own
//! API version, e.g. `2026-10-21`); see [`supported_version`]. Model errors use
//! Anthropic's `{"type":"error","error":{"type","message"}}` (overload is HTTP 529); the
//! Vertex front end's own errors (auth, routing, deadline, outage) use Google's format.
//!
//! A final assistant message is a prefill, which the reply continues
//! ([`crate::model`]'s continuation rule) — refused, as Anthropic does, when it ends
//! in whitespace, and altogether under `prefill = "reject"`.

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::endpoint::{Endpoint, SimError, StreamDialect, sse, unanswered};
use crate::faults::{ErrorClass, Faults, Prefill};
use crate::google;
use crate::model::{Completion, Finish, Output, Prompt, Tool, ToolChoice};

pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The oldest dated API version accepted (Anthropic's first, `2023-06-01`).
const OLDEST_VERSION: &str = "2023-06-01";

/// Anthropic's answer to a prefill that ends in whitespace.
pub const TRAILING_WHITESPACE: &str =
    "messages: final assistant content cannot end with trailing whitespace";

/// What a model that does not take prefills answers (`prefill = "reject"`).
pub const PREFILL_REFUSED: &str = "This model does not support assistant message prefill. The conversation must end with a user message.";

/// Is `version` an `anthropic_version` Claude on Vertex accepts: `vertex-YYYY-MM-DD`
/// or `YYYY-MM-DD`, a real date no older than Anthropic's first API version? Later
/// versions than the documented `vertex-2023-10-16` are what current SDKs send.
pub fn supported_version(version: &str) -> bool {
    let date = version.strip_prefix("vertex-").unwrap_or(version);
    let bytes = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_digit);
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return false;
    }
    let month: u32 = date[5..7].parse().unwrap_or(0);
    let day: u32 = date[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day) && date >= OLDEST_VERSION
}

/// Does a Messages request end with a prefill: a final assistant message of text (a
/// final `tool_use` is not one), after at least one user message?
pub fn ends_with_prefill(request: &Map<String, Value>) -> bool {
    let Some(last) = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| m.len() > 1)
        .and_then(|m| m.last())
    else {
        return false;
    };
    last.get("role").and_then(Value::as_str) == Some("assistant")
        && match last.get("content") {
            Some(Value::Array(blocks)) => blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("text")),
            Some(Value::String(_)) => true,
            _ => false,
        }
}

pub async fn handle(
    ep: &Arc<Endpoint>,
    faults: Faults,
    model: &str,
    request: &Map<String, Value>,
    stream: bool,
) -> Result<Response, SimError> {
    let prompt = to_prompt(model, request)?;
    if prompt.prefill.is_some() && faults.prefill == Prefill::Reject {
        return Err(SimError::bad_param("messages", PREFILL_REFUSED));
    }
    let meta = Meta {
        id: format!(
            "msg_vrtx_{}",
            ep.next_id(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                24
            )
        ),
        tool_id: format!(
            "toolu_vrtx_{}",
            ep.next_id(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                24
            )
        ),
        model: model.to_owned(),
    };
    let m = meta.clone();
    ep.reply(
        faults,
        &prompt,
        stream,
        move |c, _: Duration| whole(c, &m),
        |completion| Stream { completion, meta },
    )
    .await
}

fn to_prompt(model: &str, request: &Map<String, Value>) -> Result<Prompt, SimError> {
    const KNOWN: &[&str] = &[
        "anthropic_version",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
    ];
    if let Some(unknown) = request.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(SimError::bad_param(
            unknown,
            format!("{unknown}: Extra inputs are not permitted"),
        ));
    }
    match request.get("anthropic_version").and_then(Value::as_str) {
        Some(version) if supported_version(version) => {}
        Some(other) => {
            return Err(SimError::bad_param(
                "anthropic_version",
                format!(
                    "anthropic_version: unsupported version `{other}`, use `{VERTEX_VERSION}` or a later dated version"
                ),
            ));
        }
        None => {
            return Err(SimError::bad_param(
                "anthropic_version",
                "anthropic_version: Field required",
            ));
        }
    }
    let max_tokens = request
        .get("max_tokens")
        .ok_or_else(|| SimError::bad_param("max_tokens", "max_tokens: Field required"))?
        .as_u64()
        .filter(|m| *m >= 1)
        .ok_or_else(|| {
            SimError::bad_param(
                "max_tokens",
                "max_tokens: Input should be greater than or equal to 1",
            )
        })?;
    let mut prompt = Prompt {
        model: model.to_owned(),
        max_tokens: Some(max_tokens.min(u64::from(u32::MAX)) as u32),
        ..Prompt::default()
    };

    match request.get("system") {
        Some(Value::String(s)) => prompt.texts.push(s.clone()),
        Some(Value::Array(blocks)) => prompt.texts.extend(
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .map(str::to_owned),
        ),
        _ => {}
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            SimError::bad_param("messages", "messages: at least one message is required")
        })?;
    let prefill_at = ends_with_prefill(request).then(|| messages.len() - 1);
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if prefill_at == Some(i) {
            prompt.prefill = Some(prefill_text(message));
            continue;
        }
        if role != "user" && role != "assistant" {
            return Err(SimError::bad_param(
                &format!("messages.{i}.role"),
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
            ));
        }
        if i == 0 && role != "user" {
            return Err(SimError::bad_param(
                "messages",
                "messages: first message must use the \"user\" role",
            ));
        }
        let mut text = String::new();
        let mut tool_result = false;
        match message.get("content") {
            Some(Value::String(s)) => {
                prompt.texts.push(s.clone());
                text.push_str(s);
            }
            Some(Value::Array(blocks)) if !blocks.is_empty() => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let t = block
                                .get("text")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            prompt.texts.push(t.to_owned());
                            text.push_str(t);
                        }
                        Some("image") | Some("document") => prompt.images += 1,
                        Some("tool_use") => prompt
                            .texts
                            .push(block.get("input").map(Value::to_string).unwrap_or_default()),
                        Some("tool_result") => {
                            tool_result = true;
                            match block.get("content") {
                                Some(Value::String(s)) => prompt.texts.push(s.clone()),
                                Some(Value::Array(items)) => prompt.texts.extend(
                                    items
                                        .iter()
                                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                                        .map(str::to_owned),
                                ),
                                _ => {}
                            }
                        }
                        other => {
                            return Err(SimError::bad_param(
                                &format!("messages.{i}.content"),
                                format!(
                                    "messages.{i}.content: unsupported content block type {other:?}"
                                ),
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(SimError::bad_param(
                    &format!("messages.{i}.content"),
                    format!("messages.{i}: all messages must have non-empty content"),
                ));
            }
        }
        if role == "user" {
            if !text.is_empty() || !tool_result {
                prompt.last_user_text = text;
            }
            prompt.last_is_tool_result = tool_result;
        } else {
            prompt.last_is_tool_result = false;
        }
    }
    // An empty final assistant message is allowed (the answer from its start).
    if prompt
        .prefill
        .as_ref()
        .is_some_and(|p| p.ends_with(char::is_whitespace))
    {
        return Err(SimError::bad_param("messages", TRAILING_WHITESPACE));
    }
    if let Some(t) = request.get("temperature").and_then(Value::as_f64)
        && !(0.0..=1.0).contains(&t)
    {
        return Err(SimError::bad_param(
            "temperature",
            "temperature: Input should be less than or equal to 1",
        ));
    }
    prompt.stop = request
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for (i, tool) in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        // Anthropic's input_schema is JSON Schema with `"type": "object"`, exactly (not
        // Vertex Gemini's upper-case `OBJECT`).
        match tool.pointer("/input_schema/type") {
            Some(Value::String(t)) if t == "object" => {}
            Some(_) => {
                return Err(SimError::bad_param(
                    &format!("tools.{i}.input_schema.type"),
                    format!("tools.{i}.custom.input_schema.type: Input should be 'object'"),
                ));
            }
            None => {
                return Err(SimError::bad_param(
                    &format!("tools.{i}.input_schema"),
                    format!("tools.{i}.custom.input_schema.type: Field required"),
                ));
            }
        }
        prompt.tools.push(Tool {
            name: tool
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            description: tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            schema: tool.get("input_schema").cloned().unwrap_or(Value::Null),
        });
    }
    if let Some(choice) = request.get("tool_choice") {
        prompt.tool_choice = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Any,
            Some("none") => ToolChoice::None,
            Some("tool") => ToolChoice::Named(
                choice
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            _ => {
                return Err(SimError::bad_param(
                    "tool_choice",
                    "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
                ));
            }
        };
    }
    Ok(prompt)
}

/// The text of a final assistant message: its string, or its text blocks joined.
fn prefill_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[derive(Clone)]
struct Meta {
    id: String,
    tool_id: String,
    model: String,
}

fn stop_reason(finish: &Finish) -> (&'static str, Value) {
    match finish {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", json!(s)),
        Finish::ToolUse => ("tool_use", Value::Null),
        Finish::ContentFiltered => ("refusal", Value::Null),
    }
}

fn whole(c: &Completion, meta: &Meta) -> Value {
    let content = match &c.output {
        Output::Text(t) if c.finish == Finish::ContentFiltered && t.is_empty() => json!([]),
        Output::Text(t) => json!([{ "type": "text", "text": t }]),
        Output::ToolCall {
            name, arguments, ..
        } => json!([{ "type": "tool_use", "id": meta.tool_id, "name": name, "input": arguments }]),
    };
    let (reason, sequence) = stop_reason(&c.finish);
    json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": { "input_tokens": c.prompt_tokens, "output_tokens": c.completion_tokens },
    })
}

struct Stream {
    completion: Completion,
    meta: Meta,
}

fn event(kind: &str, data: Value) -> Bytes {
    sse(Some(kind), &data.to_string())
}

impl StreamDialect for Stream {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn start(&mut self) -> Vec<Bytes> {
        let message = json!({
            "id": self.meta.id, "type": "message", "role": "assistant", "model": self.meta.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": self.completion.prompt_tokens, "output_tokens": 1 },
        });
        let block = match &self.completion.output {
            Output::Text(_) => json!({ "type": "text", "text": "" }),
            Output::ToolCall { name, .. } => {
                json!({ "type": "tool_use", "id": self.meta.tool_id, "name": name, "input": {} })
            }
        };
        vec![
            event(
                "message_start",
                json!({ "type": "message_start", "message": message }),
            ),
            event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": block }),
            ),
            event("ping", json!({ "type": "ping" })),
        ]
    }

    fn piece(&mut self, piece: &str) -> Vec<Bytes> {
        let delta = match self.completion.output {
            Output::Text(_) => json!({ "type": "text_delta", "text": piece }),
            Output::ToolCall { .. } => json!({ "type": "input_json_delta", "partial_json": piece }),
        };
        vec![event(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": delta }),
        )]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let (reason, sequence) = stop_reason(&self.completion.finish);
        vec![
            event(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 0 }),
            ),
            event(
                "message_delta",
                json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": reason, "stop_sequence": sequence },
                    "usage": { "output_tokens": self.completion.completion_tokens },
                }),
            ),
        ]
    }

    fn terminator(&mut self) -> Vec<Bytes> {
        vec![event("message_stop", json!({ "type": "message_stop" }))]
    }

    fn error(&mut self, class: ErrorClass) -> Vec<Bytes> {
        let (_, kind, message) = anthropic_status(&SimError::Injected {
            class,
            retry_after_s: 0.0,
        })
        .unwrap_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error".into(),
        ));
        vec![event(
            "error",
            json!({ "type": "error", "error": { "type": kind, "message": message } }),
        )]
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from_static(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n")
    }
}

/// Errors the model API itself answers; `None` for those of the Vertex front end.
fn anthropic_status(e: &SimError) -> Option<(StatusCode, &'static str, String)> {
    Some(match e {
        SimError::Injected {
            class: ErrorClass::Throttle,
            ..
        }
        | SimError::Capacity { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit.".into(),
        ),
        SimError::Injected {
            class: ErrorClass::ServerError,
            ..
        } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error".into(),
        ),
        SimError::Injected {
            class: ErrorClass::Overloaded,
            ..
        } => (
            StatusCode::from_u16(529).expect("529 is a valid status"),
            "overloaded_error",
            "Overloaded".into(),
        ),
        SimError::ContextLength {
            prompt_tokens,
            limit,
        } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("prompt is too long: {prompt_tokens} tokens > {limit} maximum"),
        ),
        SimError::BadRequest { message, .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.clone(),
        ),
        _ => return None,
    })
}

pub fn error_response(e: &SimError) -> Response {
    if let Some(unanswered) = unanswered(e) {
        return unanswered;
    }
    let Some((status, kind, message)) = anthropic_status(e) else {
        return google::error_response(e);
    };
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after_whole_s() {
        response.headers_mut().insert("retry-after", secs.into());
    }
    response
}
