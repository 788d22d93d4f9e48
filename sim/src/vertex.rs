//! GCP Vertex AI: publisher models under
//! `POST /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`.
//!
//! - `google` models (Gemini): `generateContent`, `streamGenerateContent` (`?alt=sse`
//!   for server-sent events; without it a JSON array), written from the Vertex
//!   GenerateContent reference;
//! - `anthropic` models (Claude on Vertex): `rawPredict`, `streamRawPredict`, in
//!   [`crate::anthropic`].
//!
//! Errors of the Vertex front end (auth, routing, quota, deadline) use Google's
//! `{"error":{"code","message","status"}}` body ([`crate::google`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::anthropic;
use crate::auth;
use crate::endpoint::{Endpoint, SimError, StreamDialect, json_object, rfc3339, sse, unix_now};
use crate::faults::{ErrorClass, Prefill};
use crate::google;
use crate::model::{Completion, Finish, Output, Prompt, Tool, ToolChoice};
use crate::request_log;

pub fn routes() -> Router<Arc<Endpoint>> {
    Router::new()
        .route("/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model_method}", post(predict))
        .route("/v1beta1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model_method}", post(predict))
}

async fn predict(
    State(ep): State<Arc<Endpoint>>,
    Path((_project, location, publisher, model_method)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, method) = model_method.rsplit_once(':').unwrap_or((&model_method, ""));
    let route = match (publisher.as_str(), method) {
        ("google", "generateContent") => Route::Gemini {
            stream: false,
            sse: false,
        },
        ("google", "streamGenerateContent") => Route::Gemini {
            stream: true,
            sse: query.get("alt").is_some_and(|a| a == "sse"),
        },
        ("anthropic", "rawPredict") => Route::Anthropic { stream: false },
        ("anthropic", "streamRawPredict") => Route::Anthropic { stream: true },
        _ => {
            let e = SimError::NotFound(format!(
                "Publisher model `projects/{_project}/locations/{location}/publishers/{publisher}/models/{model}` does not support method `{method}`."
            ));
            return google::error_response(&e);
        }
    };
    // Parsed before anything can fail, so the request log says what the request was
    // whatever it got; a malformed body is reported in its turn, after auth.
    let parsed = json_object(&body);
    request_log::note(|n| {
        n.model = Some(model.to_owned());
        n.stream = Some(route.stream());
        n.prefill = parsed.as_ref().is_ok_and(|r| match route {
            Route::Anthropic { .. } => anthropic::ends_with_prefill(r),
            Route::Gemini { .. } => ends_with_model_turn(r),
        });
    });
    let result = async {
        let faults = ep.arrive().await?;
        auth::check_bearer(&ep, &headers, None)?;
        if ep.spec.region.as_deref().is_some_and(|r| r != location) {
            return Err(SimError::bad_param("location", format!("Location `{location}` is not served by this endpoint; use the regional endpoint for it.")));
        }
        if !ep.spec.serves(model) {
            return Err(SimError::NotFound(format!(
                "Publisher Model `projects/{_project}/locations/{location}/publishers/{publisher}/models/{model}` not found."
            )));
        }
        let request = parsed?;
        match route {
            Route::Gemini { stream, sse } => gemini(&ep, faults, model, &request, stream, sse).await,
            Route::Anthropic { stream } => anthropic::handle(&ep, faults, model, &request, stream).await,
        }
    }
    .await;
    result.unwrap_or_else(|e| match route {
        Route::Anthropic { .. } => anthropic::error_response(&e),
        Route::Gemini { .. } => google::error_response(&e),
    })
}

#[derive(Clone, Copy)]
enum Route {
    Gemini { stream: bool, sse: bool },
    Anthropic { stream: bool },
}

impl Route {
    fn stream(self) -> bool {
        match self {
            Self::Gemini { stream, .. } | Self::Anthropic { stream } => stream,
        }
    }
}

/// Does a GenerateContent request end with a `model` turn? Gemini has no documented
/// prefill: such a request is answered with a new turn, or refused under
/// `prefill = "reject"`; the request log records it as a prefill either way.
fn ends_with_model_turn(request: &Map<String, Value>) -> bool {
    request
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(|c| c.get("role"))
        .and_then(Value::as_str)
        == Some("model")
}

/// A field of a Google API JSON object by its lowerCamelCase name, or by the
/// snake_case original, which Google's JSON parser accepts too (the Gen AI SDK sends
/// `parameters_json_schema`, for one).
fn field<'a>(object: &'a Value, camel: &str) -> Option<&'a Value> {
    object.get(camel).or_else(|| object.get(snake_case(camel)))
}

/// [`field`] of the request object itself.
fn map_field<'a>(object: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    object.get(camel).or_else(|| object.get(&snake_case(camel)))
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn gemini(
    ep: &Arc<Endpoint>,
    faults: crate::faults::Faults,
    model: &str,
    request: &Map<String, Value>,
    stream: bool,
    sse: bool,
) -> Result<Response, SimError> {
    let prompt = gemini_prompt(model, request)?;
    if faults.prefill == Prefill::Reject && ends_with_model_turn(request) {
        return Err(SimError::bad_param(
            "contents",
            "Please ensure that the conversation ends with a user turn: this model does not continue a model turn (prefill).",
        ));
    }
    let response_id = ep.next_id(
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        22,
    );
    let meta = Meta {
        model: model.to_owned(),
        response_id,
        create_time: rfc3339(unix_now()),
    };
    if stream && !sse {
        // Without `alt=sse` the stream is one JSON array of responses.
        let m = meta.clone();
        let response = ep
            .reply(
                faults,
                &prompt,
                false,
                move |c, _| json!([gemini_whole(c, &m)]),
                |c| GeminiStream {
                    completion: c,
                    meta: meta.clone(),
                    arguments: String::new(),
                },
            )
            .await?;
        return Ok(response);
    }
    let m = meta.clone();
    ep.reply(
        faults,
        &prompt,
        stream,
        move |c, _: Duration| gemini_whole(c, &m),
        |c| GeminiStream {
            completion: c,
            meta,
            arguments: String::new(),
        },
    )
    .await
}

fn gemini_prompt(model: &str, request: &Map<String, Value>) -> Result<Prompt, SimError> {
    const KNOWN: &[&str] = &[
        "contents",
        "systemInstruction",
        "generationConfig",
        "tools",
        "toolConfig",
        "safetySettings",
        "cachedContent",
        "labels",
        "model",
    ];
    if let Some(unknown) = request.keys().find(|k| {
        !KNOWN
            .iter()
            .any(|known| known == k || snake_case(known) == **k)
    }) {
        return Err(SimError::bad_request(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        )));
    }
    let mut prompt = Prompt {
        model: model.to_owned(),
        ..Prompt::default()
    };
    for part in map_field(request, "systemInstruction")
        .and_then(|s| s.get("parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            prompt.texts.push(text.to_owned());
        }
    }
    let contents = request
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            SimError::bad_param(
                "contents",
                "Unable to submit request because it has an empty contents field.",
            )
        })?;
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(role, "user" | "model" | "function") {
            return Err(SimError::bad_param(
                &format!("contents[{i}].role"),
                format!("Please use a valid role: user, model. Got `{role}` at contents[{i}]."),
            ));
        }
        let parts = content.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty()).ok_or_else(|| {
            SimError::bad_param(&format!("contents[{i}].parts"), "Unable to submit request because it must have at least one parts field, which describes the prompt input.")
        })?;
        let mut text = String::new();
        let mut tool_result = false;
        for part in parts {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                prompt.texts.push(t.to_owned());
                text.push_str(t);
            } else if field(part, "inlineData").is_some() || field(part, "fileData").is_some() {
                prompt.images += 1;
            } else if let Some(call) = field(part, "functionCall") {
                prompt
                    .texts
                    .push(call.get("args").map(Value::to_string).unwrap_or_default());
            } else if let Some(response) = field(part, "functionResponse") {
                tool_result = true;
                prompt.texts.push(
                    response
                        .get("response")
                        .map(Value::to_string)
                        .unwrap_or_default(),
                );
            }
        }
        if role != "model" {
            if !text.is_empty() || !tool_result {
                prompt.last_user_text = text;
            }
            prompt.last_is_tool_result = tool_result;
        } else {
            prompt.last_is_tool_result = false;
        }
    }
    if let Some(config) = map_field(request, "generationConfig") {
        if let Some(max) = field(config, "maxOutputTokens") {
            let max = max.as_u64().filter(|m| *m >= 1).ok_or_else(|| {
                SimError::bad_param(
                    "generationConfig.max_output_tokens",
                    "Unable to submit request because it has a maxOutputTokens value less than 1.",
                )
            })?;
            prompt.max_tokens = Some(max.min(u64::from(u32::MAX)) as u32);
        }
        if let Some(t) = config.get("temperature").and_then(Value::as_f64)
            && !(0.0..=2.0).contains(&t)
        {
            return Err(SimError::bad_param(
                "generationConfig.temperature",
                format!(
                    "Unable to submit request because it has a temperature value of {t} but the supported range is from 0 (inclusive) to 2.0001 (exclusive)."
                ),
            ));
        }
        if let Some(p) = field(config, "topP").and_then(Value::as_f64)
            && !(0.0..=1.0).contains(&p)
        {
            return Err(SimError::bad_param(
                "generationConfig.top_p",
                format!(
                    "Unable to submit request because it has a topP value of {p} but the supported range is from 0 (exclusive) to 1.0001 (exclusive)."
                ),
            ));
        }
        if field(config, "candidateCount")
            .and_then(Value::as_u64)
            .is_some_and(|n| n != 1)
        {
            return Err(SimError::bad_param(
                "generationConfig.candidate_count",
                "Only one candidate can be specified in the current model.",
            ));
        }
        match field(config, "responseMimeType").and_then(Value::as_str) {
            None | Some("text/plain") => {}
            Some("application/json") => prompt.json_mode = true,
            Some(other) => {
                return Err(SimError::bad_param(
                    "generationConfig.response_mime_type",
                    format!(
                        "Unsupported mime type: {other}. Allowed mimetypes are text/plain, application/json."
                    ),
                ));
            }
        }
        prompt.stop = field(config, "stopSequences")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
    }
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for f in field(tool, "functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            prompt.tools.push(Tool {
                name: f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                // `parameters` is Vertex's OpenAPI subset (types upper or lower case);
                // `parametersJsonSchema` plain JSON Schema (what the Gen AI SDK sends
                // for a Python function): either describes the arguments.
                schema: field(f, "parameters")
                    .or_else(|| field(f, "parametersJsonSchema"))
                    .cloned()
                    .unwrap_or(Value::Null),
            });
        }
    }
    if let Some(calling) =
        map_field(request, "toolConfig").and_then(|t| field(t, "functionCallingConfig"))
    {
        let allowed: Vec<&str> = field(calling, "allowedFunctionNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        prompt.tool_choice = match calling
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("AUTO")
        {
            "AUTO" | "MODE_UNSPECIFIED" => ToolChoice::Auto,
            "NONE" => ToolChoice::None,
            "ANY" if allowed.len() == 1 => ToolChoice::Named(allowed[0].to_owned()),
            "ANY" => ToolChoice::Any,
            other => {
                return Err(SimError::bad_param(
                    "tool_config.function_calling_config.mode",
                    format!("Invalid value \"{other}\" for function calling mode."),
                ));
            }
        };
    }
    Ok(prompt)
}

#[derive(Clone)]
struct Meta {
    model: String,
    response_id: String,
    create_time: String,
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolUse => "STOP",
        Finish::Length => "MAX_TOKENS",
        Finish::ContentFiltered => "SAFETY",
    }
}

fn usage_metadata(c: &Completion) -> Value {
    json!({
        "promptTokenCount": c.prompt_tokens,
        "candidatesTokenCount": c.completion_tokens,
        "totalTokenCount": c.prompt_tokens + c.completion_tokens,
    })
}

fn candidate(c: &Completion, parts: Value) -> Value {
    if c.finish == Finish::ContentFiltered {
        return json!({
            "finishReason": "SAFETY",
            "safetyRatings": [{ "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true }],
        });
    }
    json!({ "content": { "role": "model", "parts": parts }, "finishReason": finish_reason(&c.finish) })
}

fn parts(c: &Completion) -> Value {
    match &c.output {
        Output::Text(text) => json!([{ "text": text }]),
        Output::ToolCall {
            name, arguments, ..
        } => json!([{ "functionCall": { "name": name, "args": arguments } }]),
    }
}

fn gemini_whole(c: &Completion, meta: &Meta) -> Value {
    json!({
        "candidates": [candidate(c, parts(c))],
        "usageMetadata": usage_metadata(c),
        "modelVersion": meta.model,
        "createTime": meta.create_time,
        "responseId": meta.response_id,
    })
}

struct GeminiStream {
    completion: Completion,
    meta: Meta,
    /// Gemini sends a function call whole, so its argument fragments are gathered here.
    arguments: String,
}

impl GeminiStream {
    fn chunk(&self, candidate: Value, usage: Value) -> Bytes {
        let body = json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.meta.model,
            "createTime": self.meta.create_time,
            "responseId": self.meta.response_id,
        });
        sse(None, &body.to_string())
    }
}

impl StreamDialect for GeminiStream {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn piece(&mut self, piece: &str) -> Vec<Bytes> {
        if let Output::ToolCall { .. } = self.completion.output {
            self.arguments.push_str(piece);
            return Vec::new();
        }
        let partial = json!({ "content": { "role": "model", "parts": [{ "text": piece }] } });
        let usage = json!({ "promptTokenCount": self.completion.prompt_tokens, "totalTokenCount": self.completion.prompt_tokens });
        vec![self.chunk(partial, usage)]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let c = &self.completion;
        let last_parts = match &c.output {
            Output::Text(_) => json!([{ "text": "" }]),
            Output::ToolCall { name, .. } => {
                let args: Value = serde_json::from_str(&self.arguments).unwrap_or(Value::Null);
                json!([{ "functionCall": { "name": name, "args": args } }])
            }
        };
        vec![self.chunk(candidate(c, last_parts), usage_metadata(c))]
    }

    fn error(&mut self, class: ErrorClass) -> Vec<Bytes> {
        let (code, status, message) = google::status(&SimError::Injected {
            class,
            retry_after_s: 0.0,
        });
        vec![sse(
            None,
            &json!({ "error": { "code": code.as_u16(), "message": message, "status": status } })
                .to_string(),
        )]
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from_static(
            b"data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"text\n\n",
        )
    }
}
