//! OpenAI chat completions: `POST /v1/chat/completions`, the Azure OpenAI deployment
//! form `POST /openai/deployments/{deployment}/chat/completions?api-version=...`
//! (with an `api-key` header or a bearer token), and `GET /v1/models`.
//!
//! Written from the OpenAI API reference: unknown request arguments are rejected,
//! streams end with `data: [DONE]`, `stream_options.include_usage` adds a last chunk
//! with `"choices": []` and the usage, and an error in the middle of a stream is a
//! `data: {"error": {...}}` event. With `capacity_tpm` set, every response carries
//! `x-ratelimit-*-tokens` headers; a 429 carries `retry-after` and `retry-after-ms`.
//!
//! A prompt the content filter refuses (`SIM_CONTENT_FILTER`) gets OpenAI's
//! `finish_reason: "content_filter"`; on the Azure form, Azure's prompt filter answers
//! first, with its HTTP 400 `content_filter` error.
//!
//! A final assistant message is answered with a new turn, as OpenAI does — unless the
//! request sets vLLM's `"continue_final_message": true`, which makes it a prefill the
//! reply continues (refused under `prefill = "reject"`); vLLM's companion
//! `add_generation_prompt` is accepted too, and may not also be `true`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

use crate::auth;
use crate::endpoint::{Endpoint, SimError, StreamDialect, json_object, sse, unanswered, unix_now};
use crate::faults::{ErrorClass, Faults, Prefill};
use crate::model::{Completion, Finish, Output, Prompt, Tool, ToolChoice};
use crate::request_log;

pub fn routes() -> Router<Arc<Endpoint>> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route("/v1/models", get(models))
}

async fn chat(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    let result = handle(&ep, None, &headers, &body).await;
    finish_response(&ep, result)
}

async fn azure_chat(
    State(ep): State<Arc<Endpoint>>,
    Path(deployment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = match query.get("api-version") {
        Some(_) => handle(&ep, Some(&deployment), &headers, &body).await,
        None => Err(SimError::NotFound(
            "Resource not found: the api-version query parameter is required.".into(),
        )),
    };
    finish_response(&ep, result)
}

async fn models(State(ep): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check_bearer(&ep, &headers, Some("api-key")) {
        return error_response(&e);
    }
    let data: Vec<Value> = ep
        .spec
        .models
        .iter()
        .map(|m| json!({ "id": m, "object": "model", "created": 0, "owned_by": "crossbar-sim" }))
        .collect();
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

/// Adds the rate-limit headers to whatever the route answered.
fn finish_response(ep: &Endpoint, result: Result<Response, SimError>) -> Response {
    let mut response = result.unwrap_or_else(|e| error_response(&e));
    let faults = ep.faults();
    if let Some((limit, remaining, reset)) = ep.capacity_left(&faults) {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit-tokens", limit.into());
        headers.insert("x-ratelimit-remaining-tokens", remaining.into());
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}s", reset.as_secs_f64())) {
            headers.insert("x-ratelimit-reset-tokens", v);
        }
    }
    response
}

async fn handle(
    ep: &Arc<Endpoint>,
    deployment: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, SimError> {
    // Parsed before anything can fail, so the request log says what the request was
    // whatever it got; a malformed body is reported in its turn, after auth.
    let parsed = json_object(body);
    if let Ok(request) = &parsed {
        request_log::note(|n| {
            n.model = deployment
                .or_else(|| request.get("model").and_then(Value::as_str))
                .map(str::to_owned);
            n.stream = request.get("stream").and_then(Value::as_bool);
            n.prefill = continues_final_message(request);
        });
    }
    let faults: Faults = ep.arrive().await?;
    auth::check_bearer(ep, headers, Some("api-key"))?;
    let request = parsed?;
    let model = match (deployment, request.get("model").and_then(Value::as_str)) {
        (Some(deployment), _) => {
            if !ep.spec.serves(deployment) {
                return Err(SimError::NotFound(format!(
                    "The API deployment for this resource does not exist: `{deployment}`. If you created the deployment within the last 5 minutes, please wait a moment and try again."
                )));
            }
            deployment.to_owned()
        }
        (None, Some(model)) => {
            if !ep.spec.serves(model) {
                return Err(SimError::NotFound(format!(
                    "The model `{model}` does not exist or you do not have access to it."
                )));
            }
            model.to_owned()
        }
        (None, None) => {
            return Err(SimError::bad_param(
                "model",
                "you must provide a model parameter",
            ));
        }
    };
    let (prompt, options) = to_prompt(&model, &request)?;
    if prompt.prefill.is_some() && faults.prefill == Prefill::Reject {
        return Err(SimError::bad_param(
            "continue_final_message",
            "Assistant message prefill is not supported by this model: the conversation must end with a user or tool message.",
        ));
    }
    if deployment.is_some() && crate::model::is_content_filtered(&prompt) {
        // Azure screens the prompt before the model sees it: a 400 `content_filter`.
        return Ok(azure_prompt_filtered());
    }
    let meta = Meta {
        id: format!(
            "chatcmpl-{}",
            ep.next_id(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                29
            )
        ),
        call_id: format!(
            "call_{}",
            ep.next_id(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                24
            )
        ),
        model,
        created: unix_now(),
        include_usage: options.include_usage,
    };
    let m = meta.clone();
    ep.reply(
        faults,
        &prompt,
        options.stream,
        move |c, _: Duration| whole(c, &m),
        |completion| Stream { completion, meta },
    )
    .await
}

/// Azure OpenAI's answer to a prompt its content filter refused (documented in
/// "Content filtering": HTTP 400, `code: content_filter`, the categories in
/// `innererror.content_filter_result`).
fn azure_prompt_filtered() -> Response {
    request_log::note(|n| n.outcome = Some("content_filter"));
    let body = json!({ "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": { "filtered": false, "severity": "safe" },
                "jailbreak": { "filtered": false, "detected": false },
                "self_harm": { "filtered": false, "severity": "safe" },
                "sexual": { "filtered": false, "severity": "safe" },
                "violence": { "filtered": true, "severity": "high" }
            }
        }
    }});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

struct Options {
    stream: bool,
    include_usage: bool,
}

/// Does the request ask (vLLM's way) for its final assistant message to be continued?
fn continues_final_message(request: &Map<String, Value>) -> bool {
    request
        .get("continue_final_message")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn to_prompt(model: &str, request: &Map<String, Value>) -> Result<(Prompt, Options), SimError> {
    const KNOWN: &[&str] = &[
        "model",
        "messages",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "response_format",
        "seed",
        "service_tier",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "function_call",
        "functions",
        "metadata",
        "store",
        "reasoning_effort",
        "modalities",
        "prediction",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "data_sources",
        // vLLM's extensions for assistant prefill.
        "continue_final_message",
        "add_generation_prompt",
    ];
    if let Some(unknown) = request.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(SimError::bad_param(
            unknown,
            format!("Unrecognized request argument supplied: {unknown}"),
        ));
    }
    let mut prompt = Prompt {
        model: model.to_owned(),
        ..Prompt::default()
    };
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            SimError::bad_param("messages", "Missing required parameter: 'messages'.")
        })?;
    if messages.is_empty() {
        return Err(SimError::bad_param(
            "messages",
            "[] is too short - 'messages'",
        ));
    }
    let continues = continues_final_message(request);
    if continues {
        if request
            .get("add_generation_prompt")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err(SimError::bad_param(
                "continue_final_message",
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            ));
        }
        let last = messages.last().expect("messages is not empty");
        if last.get("role").and_then(Value::as_str) != Some("assistant")
            || last
                .get("tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty())
        {
            return Err(SimError::bad_param(
                "continue_final_message",
                "`continue_final_message` needs a final assistant message (text, no tool calls) to continue.",
            ));
        }
    }
    let mut open_tool_calls = false;
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut text = String::new();
        match message.get("content") {
            Some(Value::String(s)) => text.push_str(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => text
                            .push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
                        Some("image_url") => prompt.images += 1,
                        other => {
                            return Err(SimError::bad_param(
                                &format!("messages.[{i}].content"),
                                format!(
                                    "Invalid value: {other:?}. Supported values are: 'text' and 'image_url'."
                                ),
                            ));
                        }
                    }
                }
            }
            Some(Value::Null) | None if role == "assistant" => {}
            _ => {
                return Err(SimError::bad_param(
                    &format!("messages.[{i}].content"),
                    format!(
                        "Invalid 'messages[{i}].content': expected a string or an array of content parts."
                    ),
                ));
            }
        }
        if continues && i == messages.len() - 1 {
            prompt.prefill = Some(text);
            continue;
        }
        if !text.is_empty() {
            prompt.texts.push(text.clone());
        }
        match role {
            "system" | "developer" => open_tool_calls = false,
            "user" => {
                open_tool_calls = false;
                prompt.last_user_text = text;
                prompt.last_is_tool_result = false;
            }
            "assistant" => {
                let calls = message.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    prompt.texts.push(
                        call.pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                open_tool_calls = calls.is_some_and(|c| !c.is_empty());
                prompt.last_is_tool_result = false;
            }
            "tool" => {
                if !open_tool_calls {
                    return Err(SimError::bad_param(
                        &format!("messages.[{i}].role"),
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                    ));
                }
                if message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(SimError::bad_param(
                        &format!("messages.[{i}].tool_call_id"),
                        format!("Missing required parameter: 'messages.[{i}].tool_call_id'."),
                    ));
                }
                prompt.last_is_tool_result = true;
            }
            other => {
                return Err(SimError::bad_param(
                    &format!("messages.[{i}].role"),
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'function' and 'developer'."
                    ),
                ));
            }
        }
    }

    for field in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = request.get(field).filter(|v| !v.is_null()) {
            let max = v.as_u64().filter(|m| *m >= 1).ok_or_else(|| {
                SimError::bad_param(
                    field,
                    format!(
                        "Invalid '{field}': integer below minimum value. Expected a value >= 1."
                    ),
                )
            })?;
            prompt.max_tokens = Some(max.min(u64::from(u32::MAX)) as u32);
        }
    }
    if let Some(t) = request.get("temperature").and_then(Value::as_f64)
        && !(0.0..=2.0).contains(&t)
    {
        return Err(SimError::bad_param(
            "temperature",
            format!(
                "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {t} instead."
            ),
        ));
    }
    if let Some(p) = request.get("top_p").and_then(Value::as_f64)
        && !(0.0..=1.0).contains(&p)
    {
        return Err(SimError::bad_param(
            "top_p",
            format!(
                "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got {p} instead."
            ),
        ));
    }
    if request
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n != 1)
    {
        return Err(SimError::bad_param(
            "n",
            "Invalid 'n': this simulator serves one choice per request (n = 1).",
        ));
    }
    prompt.stop = match request.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.len() <= 4 => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(_)) => {
            return Err(SimError::bad_param(
                "stop",
                "Invalid 'stop': array too long. Expected an array with maximum length 4.",
            ));
        }
        _ => Vec::new(),
    };
    match request
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            if !prompt
                .texts
                .iter()
                .any(|t| t.to_ascii_lowercase().contains("json"))
            {
                return Err(SimError::bad_param(
                    "messages",
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                ));
            }
            prompt.json_mode = true;
        }
        Some("json_schema") => prompt.json_mode = true,
        Some(other) => {
            return Err(SimError::bad_param(
                "response_format.type",
                format!(
                    "Invalid value: '{other}'. Supported values are: 'json_object', 'json_schema', and 'text'."
                ),
            ));
        }
    }
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = tool.get("function").ok_or_else(|| {
            SimError::bad_param("tools", "Missing required parameter: 'tools[0].function'.")
        })?;
        prompt.tools.push(Tool {
            name: function
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            description: function
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            schema: function.get("parameters").cloned().unwrap_or(Value::Null),
        });
    }
    prompt.tool_choice = match request.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            other => {
                return Err(SimError::bad_param(
                    "tool_choice",
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."
                    ),
                ));
            }
        },
        Some(choice) => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => {
                return Err(SimError::bad_param(
                    "tool_choice",
                    "Missing required parameter: 'tool_choice.function.name'.",
                ));
            }
        },
    };
    if !matches!(prompt.tool_choice, ToolChoice::Auto | ToolChoice::None) && prompt.tools.is_empty()
    {
        return Err(SimError::bad_param(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ));
    }
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let stream_options = request.get("stream_options").filter(|v| !v.is_null());
    if stream_options.is_some() && !stream {
        return Err(SimError::bad_param(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    let include_usage = stream_options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((
        prompt,
        Options {
            stream,
            include_usage,
        },
    ))
}

#[derive(Clone)]
struct Meta {
    id: String,
    call_id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
        Finish::ContentFiltered => "content_filter",
    }
}

fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0 },
    })
}

fn whole(c: &Completion, meta: &Meta) -> Value {
    let message = match &c.output {
        Output::Text(t) => json!({ "role": "assistant", "content": t, "refusal": null }),
        Output::ToolCall {
            name, arguments, ..
        } => json!({
            "role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{ "id": meta.call_id, "type": "function", "function": { "name": name, "arguments": arguments.to_string() } }],
        }),
    };
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": "fp_crossbar_sim",
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(&c.finish) }],
        "usage": usage(c),
    })
}

struct Stream {
    completion: Completion,
    meta: Meta,
}

impl Stream {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut body = json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": "fp_crossbar_sim",
            "choices": choices,
        });
        if self.meta.include_usage {
            body["usage"] = usage.unwrap_or(Value::Null);
        }
        sse(None, &body.to_string())
    }

    fn delta(&self, delta: Value, finish: Option<&str>) -> Bytes {
        self.chunk(
            json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]),
            None,
        )
    }
}

impl StreamDialect for Stream {
    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }

    fn start(&mut self) -> Vec<Bytes> {
        let delta = match &self.completion.output {
            Output::Text(_) => json!({ "role": "assistant", "content": "", "refusal": null }),
            Output::ToolCall { name, .. } => json!({
                "role": "assistant", "content": null,
                "tool_calls": [{ "index": 0, "id": self.meta.call_id, "type": "function", "function": { "name": name, "arguments": "" } }],
            }),
        };
        vec![self.delta(delta, None)]
    }

    fn piece(&mut self, piece: &str) -> Vec<Bytes> {
        let delta = match self.completion.output {
            Output::Text(_) => json!({ "content": piece }),
            Output::ToolCall { .. } => {
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] })
            }
        };
        vec![self.delta(delta, None)]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut frames = vec![self.delta(json!({}), Some(finish_reason(&self.completion.finish)))];
        if self.meta.include_usage {
            frames.push(self.chunk(json!([]), Some(usage(&self.completion))));
        }
        frames
    }

    fn terminator(&mut self) -> Vec<Bytes> {
        vec![sse(None, "[DONE]")]
    }

    fn error(&mut self, class: ErrorClass) -> Vec<Bytes> {
        let (_, body) = error_body(&SimError::Injected {
            class,
            retry_after_s: 0.0,
        });
        vec![sse(None, &body.to_string())]
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from(format!(
            "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\n\n",
            self.meta.id
        ))
    }
}

fn error_body(e: &SimError) -> (StatusCode, Value) {
    let (status, message, kind, param, code) = match e {
        SimError::Injected {
            class: ErrorClass::Throttle,
            ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests. Please try again later.".to_owned(),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        SimError::Capacity { limit_tpm, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Rate limit reached on tokens per min (TPM): Limit {limit_tpm}. Please try again later."
            ),
            "tokens",
            None,
            Some("rate_limit_exceeded"),
        ),
        // `reset` and `silent` are never rendered (see `unanswered`); a 500 if they were.
        SimError::Injected {
            class: ErrorClass::ServerError | ErrorClass::Reset | ErrorClass::Silent,
            ..
        } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!".to_owned(),
            "server_error",
            None,
            None,
        ),
        SimError::Injected {
            class: ErrorClass::Timeout,
            ..
        } => (
            StatusCode::REQUEST_TIMEOUT,
            "Request timed out.".to_owned(),
            "timeout",
            None,
            Some("timeout"),
        ),
        SimError::Injected {
            class: ErrorClass::Overloaded,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is currently overloaded, please try again later.".to_owned(),
            "server_error",
            None,
            Some("overloaded"),
        ),
        SimError::Injected {
            class: ErrorClass::Unavailable,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable.".to_owned(),
            "server_error",
            None,
            Some("service_unavailable"),
        ),
        SimError::ContextLength {
            prompt_tokens,
            limit,
        } => (
            StatusCode::BAD_REQUEST,
            format!(
                "This model's maximum context length is {limit} tokens. However, your messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
            ),
            "invalid_request_error",
            Some("messages".to_owned()),
            Some("context_length_exceeded"),
        ),
        SimError::BadRequest { message, param } => (
            StatusCode::BAD_REQUEST,
            message.clone(),
            "invalid_request_error",
            param.clone(),
            None,
        ),
        SimError::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            "Incorrect or missing API key. You can find your API key in your account settings."
                .to_owned(),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        SimError::Forbidden(m) => (
            StatusCode::FORBIDDEN,
            m.clone(),
            "invalid_request_error",
            None,
            Some("permission_denied"),
        ),
        SimError::NotFound(m) => (
            StatusCode::NOT_FOUND,
            m.clone(),
            "invalid_request_error",
            Some("model".to_owned()),
            Some("model_not_found"),
        ),
    };
    (
        status,
        json!({ "error": { "message": message, "type": kind, "param": param, "code": code } }),
    )
}

pub fn error_response(e: &SimError) -> Response {
    if let Some(unanswered) = unanswered(e) {
        return unanswered;
    }
    let (status, body) = error_body(e);
    let mut response = (status, axum::Json(body)).into_response();
    if let (Some(secs), Some(whole)) = (e.retry_after(), e.retry_after_whole_s()) {
        let headers = response.headers_mut();
        headers.insert("retry-after", whole.into());
        headers.insert("retry-after-ms", ((secs * 1000.0).round() as u64).into());
    }
    response
}
