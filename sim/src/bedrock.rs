//! AWS Bedrock runtime: `POST /model/{modelId}/converse` and `/converse-stream`.
//!
//! Written from the Bedrock API reference. Model ids arrive percent-encoded (ARNs of
//! provisioned models, `us.`/`eu.` inference profiles) and are decoded by the router.
//! Errors carry their type in `x-amzn-ErrorType` (the SDK reads it from there) and a
//! JSON `{"message"}` body; the stream is AWS event-stream framing, with exceptions
//! in the middle of a stream sent as `:message-type = exception` frames.
//!
//! A final assistant message is a prefill the reply continues (Anthropic's rule, applied
//! to every model here): refused when it ends in whitespace, and altogether under
//! `prefill = "reject"`, both as `ValidationException`s. Bedrock streams end with the
//! `metadata` event that carries the usage, so `omit_terminal_event` has nothing to drop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::anthropic;
use crate::auth;
use crate::endpoint::{Endpoint, SimError, StreamDialect, json_object, unanswered};
use crate::eventstream;
use crate::faults::{ErrorClass, Prefill};
use crate::model::{Completion, Finish, Output, Prompt, Tool, ToolChoice};
use crate::request_log;

pub fn routes() -> Router<Arc<Endpoint>> {
    Router::new()
        .route("/model/{model_id}/converse", post(converse))
        .route("/model/{model_id}/converse-stream", post(converse_stream))
}

async fn converse(
    State(ep): State<Arc<Endpoint>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&ep, &model, &headers, &body, false)
        .await
        .unwrap_or_else(|e| error_response(&ep, &e))
}

async fn converse_stream(
    State(ep): State<Arc<Endpoint>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&ep, &model, &headers, &body, true)
        .await
        .unwrap_or_else(|e| error_response(&ep, &e))
}

async fn handle(
    ep: &Arc<Endpoint>,
    model: &str,
    headers: &HeaderMap,
    body: &[u8],
    stream: bool,
) -> Result<Response, SimError> {
    // Parsed before anything can fail, so the request log says what the request was
    // whatever it got; a malformed body is reported in its turn.
    let parsed = json_object(body);
    request_log::note(|n| {
        n.model = Some(model.to_owned());
        n.stream = Some(stream);
        n.prefill = parsed.as_ref().is_ok_and(ends_with_prefill);
    });
    let faults = ep.arrive().await?;
    auth::check_sigv4(ep, headers, "bedrock")?;
    if !ep.spec.serves(model) {
        return Err(SimError::bad_request(
            "The provided model identifier is invalid.",
        ));
    }
    let request = parsed?;
    let prompt = to_prompt(model, &request)?;
    if prompt.prefill.is_some() && faults.prefill == Prefill::Reject {
        return Err(SimError::bad_request(anthropic::PREFILL_REFUSED));
    }
    let tool_id = format!("tooluse_{}", ep.next_id(ID_ALPHABET, 22));
    let id = tool_id.clone();
    let response = ep
        .reply(
            faults,
            &prompt,
            stream,
            |c, elapsed| whole(c, &id, elapsed),
            |c| Stream {
                completion: c,
                tool_id,
                started: Instant::now(),
            },
        )
        .await?;
    Ok(with_request_id(ep, response))
}

/// Does a Converse request end with a prefill: a final assistant message of text only,
/// after at least one user message?
fn ends_with_prefill(request: &serde_json::Map<String, Value>) -> bool {
    let Some(last) = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| m.len() > 1)
        .and_then(|m| m.last())
    else {
        return false;
    };
    last.get("role").and_then(Value::as_str) == Some("assistant")
        && last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().all(|b| b.get("text").is_some()))
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn with_request_id(ep: &Endpoint, mut response: Response) -> Response {
    let id = ep.next_id(b"0123456789abcdef", 32);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    );
    if let Ok(v) = id.parse() {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// Converse request → provider-neutral prompt, with Bedrock's validation rules.
fn to_prompt(model: &str, request: &serde_json::Map<String, Value>) -> Result<Prompt, SimError> {
    const KNOWN: &[&str] = &[
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
    ];
    if let Some(unknown) = request.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(SimError::bad_request(format!(
            "Malformed input request: extraneous key [{unknown}] is not permitted"
        )));
    }
    let mut prompt = Prompt {
        model: model.to_owned(),
        ..Prompt::default()
    };
    for block in request
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            prompt.texts.push(text.to_owned());
        }
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| SimError::bad_request("A conversation must start with a user message. Try again with a conversation that starts with a user message."))?;
    let mut uses_tools = false;
    let mut previous_role = "";
    let prefill_at = ends_with_prefill(request).then(|| messages.len() - 1);
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(SimError::bad_request(format!(
                "Malformed input request: messages.{i}.role must be one of [user, assistant]"
            )));
        }
        if i == 0 && role != "user" {
            return Err(SimError::bad_request(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        if role == previous_role {
            return Err(SimError::bad_request(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
        previous_role = role;
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| SimError::bad_request(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")))?;
        if prefill_at == Some(i) {
            let prefill: String = content
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if prefill.ends_with(char::is_whitespace) {
                return Err(SimError::bad_request(format!(
                    "The model returned the following errors: {}",
                    anthropic::TRAILING_WHITESPACE
                )));
            }
            prompt.prefill = Some(prefill);
            continue;
        }
        let mut user_text = String::new();
        let mut tool_result = false;
        for block in content {
            if let Some(text) = block.get("text").and_then(Value::as_str) {
                prompt.texts.push(text.to_owned());
                user_text.push_str(text);
            } else if block.get("image").is_some() {
                prompt.images += 1;
            } else if let Some(tool_use) = block.get("toolUse") {
                uses_tools = true;
                prompt.texts.push(
                    tool_use
                        .get("input")
                        .map(Value::to_string)
                        .unwrap_or_default(),
                );
            } else if let Some(result) = block.get("toolResult") {
                uses_tools = true;
                tool_result = true;
                for item in result
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match (item.get("text"), item.get("json")) {
                        (Some(Value::String(t)), _) => prompt.texts.push(t.clone()),
                        (_, Some(json)) => prompt.texts.push(json.to_string()),
                        _ => {}
                    }
                }
            }
        }
        if role == "user" {
            prompt.last_user_text = user_text;
            prompt.last_is_tool_result = tool_result;
        } else {
            prompt.last_is_tool_result = false;
        }
    }
    if let Some(config) = request.get("inferenceConfig") {
        if let Some(max) = config.get("maxTokens") {
            let max = max.as_u64().filter(|m| *m >= 1).ok_or_else(|| {
                SimError::bad_request("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")
            })?;
            prompt.max_tokens = Some(max.min(u64::from(u32::MAX)) as u32);
        }
        for (field, value) in [
            ("temperature", config.get("temperature")),
            ("topP", config.get("topP")),
        ] {
            if let Some(v) = value.and_then(Value::as_f64)
                && !(0.0..=1.0).contains(&v)
            {
                return Err(SimError::bad_request(format!(
                    "1 validation error detected: Value '{v}' at 'inferenceConfig.{field}' failed to satisfy constraint: Member must have value less than or equal to 1"
                )));
            }
        }
        prompt.stop = config
            .get("stopSequences")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
    }

    match request.get("toolConfig") {
        Some(tool_config) => {
            let tools = tool_config.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()).ok_or_else(|| {
                SimError::bad_request("1 validation error detected: Value at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1")
            })?;
            for tool in tools {
                let spec = tool.get("toolSpec").ok_or_else(|| {
                    SimError::bad_request(
                        "Malformed input request: toolConfig.tools[].toolSpec is required",
                    )
                })?;
                prompt.tools.push(Tool {
                    name: spec
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    description: spec
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    schema: spec
                        .pointer("/inputSchema/json")
                        .cloned()
                        .unwrap_or(Value::Null),
                });
            }
            prompt.tool_choice = match tool_config.get("toolChoice") {
                Some(choice) if choice.get("any").is_some() => ToolChoice::Any,
                Some(choice) => match choice.pointer("/tool/name").and_then(Value::as_str) {
                    Some(name) if prompt.tools.iter().any(|t| t.name == name) => {
                        ToolChoice::Named(name.to_owned())
                    }
                    Some(name) => {
                        return Err(SimError::bad_request(format!(
                            "The tool {name} in toolChoice is not defined in toolConfig.tools."
                        )));
                    }
                    None => ToolChoice::Auto,
                },
                None => ToolChoice::Auto,
            };
        }
        None if uses_tools => {
            return Err(SimError::bad_request(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ));
        }
        None => {}
    }
    Ok(prompt)
}

fn stop_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::StopSequence(_) => "stop_sequence",
        Finish::ToolUse => "tool_use",
        Finish::ContentFiltered => "content_filtered",
    }
}

fn usage(c: &Completion) -> Value {
    json!({
        "inputTokens": c.prompt_tokens,
        "outputTokens": c.completion_tokens,
        "totalTokens": c.prompt_tokens + c.completion_tokens,
    })
}

fn whole(c: &Completion, tool_id: &str, elapsed: Duration) -> Value {
    let content = match &c.output {
        Output::Text(text) => json!([{ "text": text }]),
        Output::ToolCall {
            name, arguments, ..
        } => json!([{ "toolUse": { "toolUseId": tool_id, "name": name, "input": arguments } }]),
    };
    let mut body = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop_reason(&c.finish),
        "usage": usage(c),
        "metrics": { "latencyMs": elapsed.as_millis() as u64 },
    });
    if let Finish::StopSequence(s) = &c.finish {
        body["additionalModelResponseFields"] = json!({ "stop_sequence": s });
    }
    body
}

struct Stream {
    completion: Completion,
    tool_id: String,
    started: Instant,
}

impl StreamDialect for Stream {
    fn content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn start(&mut self) -> Vec<Bytes> {
        let mut frames = vec![eventstream::event(
            "messageStart",
            br#"{"role":"assistant"}"#,
        )];
        if let Output::ToolCall { name, .. } = &self.completion.output {
            let start = json!({ "contentBlockIndex": 0, "start": { "toolUse": { "toolUseId": self.tool_id, "name": name } } });
            frames.push(eventstream::event(
                "contentBlockStart",
                start.to_string().as_bytes(),
            ));
        }
        frames
    }

    fn piece(&mut self, piece: &str) -> Vec<Bytes> {
        let delta = match self.completion.output {
            Output::Text(_) => json!({ "contentBlockIndex": 0, "delta": { "text": piece } }),
            Output::ToolCall { .. } => {
                json!({ "contentBlockIndex": 0, "delta": { "toolUse": { "input": piece } } })
            }
        };
        vec![eventstream::event(
            "contentBlockDelta",
            delta.to_string().as_bytes(),
        )]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let c = &self.completion;
        let mut stop = json!({ "stopReason": stop_reason(&c.finish) });
        if let Finish::StopSequence(s) = &c.finish {
            stop["additionalModelResponseFields"] = json!({ "stop_sequence": s });
        }
        let metadata = json!({ "usage": usage(c), "metrics": { "latencyMs": self.started.elapsed().as_millis() as u64 } });
        vec![
            eventstream::event("contentBlockStop", br#"{"contentBlockIndex":0}"#),
            eventstream::event("messageStop", stop.to_string().as_bytes()),
            eventstream::event("metadata", metadata.to_string().as_bytes()),
        ]
    }

    fn error(&mut self, class: ErrorClass) -> Vec<Bytes> {
        let (kind, message) = match class {
            ErrorClass::Throttle => (
                "throttlingException",
                "Too many requests, please wait before trying again.",
            ),
            ErrorClass::ServerError => (
                "internalServerException",
                "The server encountered an internal error.",
            ),
            ErrorClass::Timeout => ("modelStreamErrorException", "Model stream timed out."),
            ErrorClass::Overloaded
            | ErrorClass::Unavailable
            | ErrorClass::Reset
            | ErrorClass::Silent => (
                "serviceUnavailableException",
                "Bedrock is unable to process your request.",
            ),
        };
        vec![eventstream::exception(
            kind,
            json!({ "message": message }).to_string().as_bytes(),
        )]
    }

    fn malformed(&mut self) -> Bytes {
        eventstream::corrupted(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"?"}}"#,
        )
    }
}

/// A `SimError` as Bedrock says it: status, `x-amzn-ErrorType`, `{"message"}`.
pub fn error_response(ep: &Endpoint, e: &SimError) -> Response {
    if let Some(unanswered) = unanswered(e) {
        return unanswered;
    }
    let (status, kind, message) = match e {
        SimError::Injected {
            class: ErrorClass::Throttle,
            ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.".to_owned(),
        ),
        SimError::Capacity { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many tokens, please wait before trying again.".to_owned(),
        ),
        // `reset` and `silent` are never rendered (see `unanswered`); a 500 if they were.
        SimError::Injected {
            class: ErrorClass::ServerError | ErrorClass::Reset | ErrorClass::Silent,
            ..
        } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The server encountered an internal error while processing the request.".to_owned(),
        ),
        SimError::Injected {
            class: ErrorClass::Timeout,
            ..
        } => (
            StatusCode::REQUEST_TIMEOUT,
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.".to_owned(),
        ),
        SimError::Injected {
            class: ErrorClass::Overloaded,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.".to_owned(),
        ),
        SimError::Injected {
            class: ErrorClass::Unavailable,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "The service is currently unavailable.".to_owned(),
        ),
        SimError::ContextLength { .. } => (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "Input is too long for requested model.".to_owned(),
        ),
        SimError::BadRequest { message, .. } => (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            message.clone(),
        ),
        SimError::Unauthenticated(m) => (
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            m.clone(),
        ),
        SimError::Forbidden(m) => (StatusCode::FORBIDDEN, "AccessDeniedException", m.clone()),
        SimError::NotFound(m) => (
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            m.clone(),
        ),
    };
    let error_type = format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    let response = (
        status,
        [
            ("x-amzn-errortype", error_type),
            ("content-type", "application/json".to_owned()),
        ],
        json!({ "message": message }).to_string(),
    );
    with_request_id(ep, response.into_response())
}
