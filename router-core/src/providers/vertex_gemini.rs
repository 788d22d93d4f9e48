//! Gemini on Vertex AI: `generateContent` and `streamGenerateContent?alt=sse`, with
//! bearer tokens from google-cloud-auth.
//!
//! Mapping: system/developer messages → `systemInstruction`; user/assistant →
//! `contents` with roles `user`/`model`; tool calls → `functionCall` parts; tool
//! results → `functionResponse` parts (named after the call they answer);
//! `response_format` JSON → `responseMimeType`. Gemini gives function calls no ids,
//! so Crossbar numbers them `call_{n}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::sse::{self, SseEvent};
use super::transport::{self, HttpClient, TransportSettings, UpstreamBody, read_body};
use super::{
    ChatProvider, ChatStream, Decoder, check_capabilities, drive, parse_json, retry_after, unix_now,
};
use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ContentPart, Delta, Error,
    ErrorKind, FinishReason, FunctionCall, FunctionCallDelta, Message, Role, ToolCall,
    ToolCallDelta, ToolChoice, ToolChoiceMode, ToolKind, Usage,
};
use crate::auth;
use crate::config::EndpointConfig;

pub struct Gemini {
    endpoint: EndpointConfig,
    client: HttpClient,
    credentials: Arc<google_cloud_auth::credentials::Credentials>,
}

/// `{base}/v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`.
pub(crate) fn vertex_url(endpoint: &EndpointConfig, publisher: &str, method: &str) -> String {
    let base = endpoint
        .base_url
        .clone()
        .unwrap_or_else(|| match endpoint.region.as_str() {
            "global" => "https://aiplatform.googleapis.com".into(),
            region => format!("https://{region}-aiplatform.googleapis.com"),
        });
    format!(
        "{}/v1/projects/{}/locations/{}/publishers/{publisher}/models/{}:{method}",
        base.trim_end_matches('/'),
        endpoint.project.as_deref().unwrap_or_default(),
        endpoint.region,
        endpoint.model
    )
}

impl Gemini {
    pub async fn connect(
        endpoint: EndpointConfig,
        transport: &TransportSettings,
    ) -> Result<Self, Error> {
        let credentials = auth::gcp_credentials(&endpoint).await?;
        Ok(Self {
            client: HttpClient::new(
                &endpoint,
                &vertex_url(&endpoint, "google", "rawPredict"),
                transport,
            )?,
            endpoint,
            credentials,
        })
    }

    async fn post(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<http::Response<UpstreamBody>, Error> {
        let headers = auth::gcp_headers(&self.credentials).await?;
        let uri = transport::uri(
            &self.endpoint,
            &vertex_url(&self.endpoint, "google", method),
        )?;
        self.client
            .post_json(&self.endpoint, uri, headers, body)
            .await
    }

    fn tag(&self, e: Error) -> Error {
        e.at(self.endpoint.provider.as_str(), &self.endpoint.name)
    }
}

impl ChatProvider for Gemini {
    fn endpoint(&self) -> &EndpointConfig {
        &self.endpoint
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            check_capabilities(&self.endpoint, request)?;
            let body = to_gemini(request)?;
            let response = self
                .post("generateContent", &body)
                .await
                .map_err(|e| self.tag(e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = read_body(&self.endpoint, response)
                .await
                .map_err(|e| self.tag(e))?;
            if !status.is_success() {
                return Err(self.tag(google_error(
                    status.as_u16(),
                    &headers,
                    &bytes,
                    self.endpoint.is_provisioned(),
                )));
            }
            let reply: Value = parse_json(&bytes).map_err(|e| self.tag(e))?;
            from_gemini(&reply, &self.endpoint.model).map_err(|e| self.tag(e))
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        Box::pin(async move {
            check_capabilities(&self.endpoint, request)?;
            let body = to_gemini(request)?;
            let response = self
                .post("streamGenerateContent?alt=sse", &body)
                .await
                .map_err(|e| self.tag(e))?;
            let status = response.status();
            if !status.is_success() {
                let headers = response.headers().clone();
                let bytes = read_body(&self.endpoint, response)
                    .await
                    .map_err(|e| self.tag(e))?;
                return Err(self.tag(google_error(
                    status.as_u16(),
                    &headers,
                    &bytes,
                    self.endpoint.is_provisioned(),
                )));
            }
            let events = sse::events(
                response,
                Duration::from_millis(self.endpoint.timeouts.stream_idle_ms),
            );
            let decoder = GeminiDecoder::new(&self.endpoint.model);
            Ok(drive(events, decoder, &self.endpoint))
        })
    }
}

/// Unified request → Gemini `GenerateContentRequest`.
pub(crate) fn to_gemini(request: &ChatRequest) -> Result<Value, Error> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    let push = |contents: &mut Vec<Value>, role: &str, parts: Vec<Value>| match contents.last_mut()
    {
        Some(last) if last["role"] == role => last["parts"]
            .as_array_mut()
            .expect("parts is an array")
            .extend(parts),
        _ => contents.push(json!({ "role": role, "parts": parts })),
    };
    for (i, message) in request.messages.iter().enumerate() {
        match message {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                system.push(json!({ "text": content.text() }))
            }
            Message::User { content, .. } => {
                let mut parts = Vec::new();
                for (j, part) in content.parts().into_iter().enumerate() {
                    parts.push(match part {
                        ContentPart::Text { text } => json!({ "text": text }),
                        ContentPart::ImageUrl { image_url } => match image_url.as_data() {
                            Some((mime, data)) => json!({ "inlineData": { "mimeType": mime, "data": data } }),
                            None if image_url.url.starts_with("gs://") || image_url.url.starts_with("https://") => {
                                json!({ "fileData": { "mimeType": guess_image_mime(&image_url.url), "fileUri": image_url.url } })
                            }
                            None => return Err(Error::invalid(&format!("messages[{i}].content[{j}].image_url"), "images must be data:, gs:// or https:// URLs")),
                        },
                    });
                }
                push(&mut contents, "user", parts);
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(text) = content.as_ref().map(|c| c.text()).filter(|t| !t.is_empty()) {
                    parts.push(json!({ "text": text }));
                }
                for call in tool_calls.iter().flatten() {
                    let args: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            Error::invalid(
                                &format!("messages[{i}].tool_calls"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    call_names.insert(call.id.clone(), call.function.name.clone());
                    parts.push(
                        json!({ "functionCall": { "name": call.function.name, "args": args } }),
                    );
                }
                if parts.is_empty() {
                    return Err(Error::invalid(
                        &format!("messages[{i}]"),
                        "an assistant message needs content or tool calls",
                    ));
                }
                push(&mut contents, "model", parts);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = call_names.get(tool_call_id).ok_or_else(|| {
                    Error::invalid(
                        &format!("messages[{i}].tool_call_id"),
                        format!("no earlier tool call has id `{tool_call_id}`"),
                    )
                })?;
                let text = content.text();
                let response = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({ "content": text }));
                push(
                    &mut contents,
                    "user",
                    vec![json!({ "functionResponse": { "name": name, "response": response } })],
                );
            }
        }
    }
    let mut body = json!({ "contents": contents });
    if !system.is_empty() {
        body["systemInstruction"] = json!({ "parts": system });
    }
    let mut config = serde_json::Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            config.insert(k.to_owned(), v);
        }
    };
    set("temperature", request.temperature.map(Value::from));
    set("topP", request.top_p.map(Value::from));
    set("maxOutputTokens", request.output_limit().map(Value::from));
    set("seed", request.seed.map(Value::from));
    set("presencePenalty", request.presence_penalty.map(Value::from));
    set(
        "frequencyPenalty",
        request.frequency_penalty.map(Value::from),
    );
    let stop = request.stop_sequences();
    set("stopSequences", (!stop.is_empty()).then(|| json!(stop)));
    if request.wants_json() {
        set("responseMimeType", Some(json!("application/json")));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    if let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) {
        let declarations: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut d = json!({ "name": t.function.name, "description": t.function.description.clone().unwrap_or_default() });
                if let Some(p) = &t.function.parameters {
                    d["parameters"] = p.clone();
                }
                d
            })
            .collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
        let mode = match &request.tool_choice {
            None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => json!({ "mode": "AUTO" }),
            Some(ToolChoice::Mode(ToolChoiceMode::None)) => json!({ "mode": "NONE" }),
            Some(ToolChoice::Mode(ToolChoiceMode::Required)) => json!({ "mode": "ANY" }),
            Some(ToolChoice::Named { function, .. }) => {
                json!({ "mode": "ANY", "allowedFunctionNames": [function.name] })
            }
        };
        body["toolConfig"] = json!({ "functionCallingConfig": mode });
    }
    Ok(body)
}

fn guess_image_mime(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else {
        "image/jpeg"
    }
}

fn finish_reason(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn usage(metadata: &Value) -> Option<Usage> {
    let prompt = metadata.get("promptTokenCount")?.as_u64()? as u32;
    let completion = metadata
        .get("candidatesTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    let cached = metadata
        .get("cachedContentTokenCount")
        .and_then(Value::as_u64)
        .map(|c| c as u32);
    Some(Usage::new(prompt, completion, cached))
}

fn function_call(call: &Value, n: usize) -> ToolCall {
    ToolCall {
        id: format!("call_{n}"),
        kind: ToolKind::Function,
        function: FunctionCall {
            name: call
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            arguments: call
                .get("args")
                .cloned()
                .unwrap_or_else(|| json!({}))
                .to_string(),
        },
    }
}

fn from_gemini(reply: &Value, model: &str) -> Result<ChatResponse, Error> {
    if let Some(reason) = reply
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Err(Error::new(
            ErrorKind::ContentFiltered,
            format!("the prompt was blocked: {reason}"),
        )
        .with_upstream(None, Some(reason.to_owned())));
    }
    let candidate = reply
        .pointer("/candidates/0")
        .ok_or_else(|| Error::new(ErrorKind::UpstreamError, "the response has no candidates"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            calls.push(function_call(call, calls.len()));
        }
    }
    let reason = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("STOP");
    let finish = finish_reason(reason, !calls.is_empty());
    Ok(ChatResponse {
        id: reply
            .get("responseId")
            .and_then(Value::as_str)
            .map_or_else(|| "gen-vertex".to_owned(), |id| format!("chatcmpl-{id}")),
        object: "chat.completion".into(),
        created: unix_now(),
        model: reply
            .get("modelVersion")
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
            finish_reason: Some(finish),
            logprobs: None,
        }],
        usage: reply.get("usageMetadata").and_then(usage),
        system_fingerprint: None,
    })
}

struct GeminiDecoder {
    id: String,
    model: String,
    created: u64,
    started: bool,
    calls: usize,
    done: bool,
}

impl GeminiDecoder {
    fn new(model: &str) -> Self {
        Self {
            id: "gen-vertex".into(),
            model: model.to_owned(),
            created: unix_now(),
            started: false,
            calls: 0,
            done: false,
        }
    }

    fn chunk(&self) -> ChatChunk {
        ChatChunk::new(&self.id, &self.model, self.created)
    }
}

impl Decoder for GeminiDecoder {
    type Event = SseEvent;

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Result<ChatChunk, Error>>) {
        let value: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => {
                return out.push(Err(Error::new(
                    ErrorKind::StreamInterrupted,
                    format!("malformed stream chunk: {e}"),
                )));
            }
        };
        if let Some(error) = value.get("error") {
            let status = error
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error event in the stream");
            return out.push(Err(Error::new(
                ErrorKind::StreamInterrupted,
                format!("upstream error mid-stream: {message}"),
            )
            .with_upstream(None, status)));
        }
        if !self.started {
            self.started = true;
            if let Some(id) = value.get("responseId").and_then(Value::as_str) {
                self.id = format!("chatcmpl-{id}");
            }
            out.push(Ok(self.chunk().with_delta(
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                None,
            )));
        }
        let candidate = value
            .pointer("/candidates/0")
            .cloned()
            .unwrap_or(Value::Null);
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = part
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                out.push(Ok(self.chunk().with_delta(
                    Delta {
                        content: Some(text.to_owned()),
                        ..Delta::default()
                    },
                    None,
                )));
            }
            if let Some(call) = part.get("functionCall") {
                let call = function_call(call, self.calls);
                let delta = ToolCallDelta {
                    index: self.calls as u32,
                    id: Some(call.id),
                    kind: Some(ToolKind::Function),
                    function: FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(call.function.arguments),
                    },
                };
                self.calls += 1;
                out.push(Ok(self.chunk().with_delta(
                    Delta {
                        tool_calls: Some(vec![delta]),
                        ..Delta::default()
                    },
                    None,
                )));
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.done = true;
            out.push(Ok(self.chunk().with_delta(
                Delta::default(),
                Some(finish_reason(reason, self.calls > 0)),
            )));
            if let Some(usage) = value.get("usageMetadata").and_then(usage) {
                out.push(Ok(self.chunk().with_usage(usage)));
            }
        }
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// A Google API error (`{"error":{"code","message","status"}}`), normalised.
pub(crate) fn google_error(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    provisioned: bool,
) -> Error {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let google_status = value
        .pointer("/error/status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let field = value
        .pointer("/error/details/0/fieldViolations/0/field")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = match (status, google_status.as_deref().unwrap_or_default()) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") if provisioned => ErrorKind::CapacityExhausted,
        (429, _) | (_, "RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
        (_, "DEADLINE_EXCEEDED") | (504, _) => ErrorKind::Timeout,
        (503, _) | (_, "UNAVAILABLE") if message.to_ascii_lowercase().contains("overloaded") => {
            ErrorKind::Overloaded
        }
        (503, _) | (_, "UNAVAILABLE") => ErrorKind::Unavailable,
        (400, _) | (_, "INVALID_ARGUMENT")
            if message.contains("exceeds the maximum number of tokens") =>
        {
            ErrorKind::ContextLengthExceeded
        }
        (400, _) | (_, "INVALID_ARGUMENT" | "FAILED_PRECONDITION") => ErrorKind::InvalidRequest,
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorKind::UpstreamAuth,
        (404, _) | (_, "NOT_FOUND") => ErrorKind::NotFound,
        _ => ErrorKind::UpstreamError,
    };
    let mut e = Error::new(kind, message)
        .with_upstream(Some(status), google_status)
        .with_retry_after(retry_after(headers));
    if kind.fault() == crate::api::Fault::Client {
        e.param = field;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Content, FunctionDefinition, ToolDefinition};

    #[test]
    fn tool_results_are_named_after_their_call_and_roles_merge() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::system("sys"),
                Message::user("What is the FX rate?"),
                Message::Assistant {
                    content: None,
                    tool_calls: Some(vec![ToolCall {
                        id: "call_0".into(),
                        kind: ToolKind::Function,
                        function: FunctionCall {
                            name: "fx".into(),
                            arguments: r#"{"c":"EUR"}"#.into(),
                        },
                    }]),
                    name: None,
                    refusal: None,
                },
                Message::Tool {
                    content: Content::Text(r#"{"rate":1.08}"#.into()),
                    tool_call_id: "call_0".into(),
                },
                Message::user("thanks"),
            ],
            tools: Some(vec![ToolDefinition {
                kind: ToolKind::Function,
                function: FunctionDefinition {
                    name: "fx".into(),
                    description: None,
                    parameters: None,
                    strict: None,
                },
            }]),
            ..ChatRequest::default()
        };
        let body = to_gemini(&request).unwrap();
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "sys");
        assert_eq!(body["contents"].as_array().unwrap().len(), 3);
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"]["name"],
            "fx"
        );
        assert_eq!(body["contents"][2]["parts"][1]["text"], "thanks");
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
    }

    #[test]
    fn google_errors_map_to_the_taxonomy() {
        let h = http::HeaderMap::new();
        let e = google_error(429, &h, br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}"#, false);
        assert_eq!(
            (e.kind, e.upstream_code.as_deref()),
            (ErrorKind::RateLimited, Some("RESOURCE_EXHAUSTED"))
        );
        let e = google_error(400, &h, br#"{"error":{"code":400,"message":"The input token count (9) exceeds the maximum number of tokens allowed (5).","status":"INVALID_ARGUMENT"}}"#, false);
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(
            google_error(503, &h, b"", false).kind,
            ErrorKind::Unavailable
        );
    }
}
