//! Gemini on Vertex AI: `generateContent` and `streamGenerateContent?alt=sse`, with
//! bearer tokens from google-cloud-auth.
//!
//! Mapping: system/developer messages → `systemInstruction`; user/assistant →
//! `contents` with roles `user`/`model`; tool calls → `functionCall` parts; tool
//! results → `functionResponse` parts (named after the call they answer);
//! `response_format` JSON → `responseMimeType`. Gemini gives function calls no ids,
//! so Crossbar numbers them `call_{n}`. The request body is typed
//! ([`GenerateContentRequest`]), like Bedrock's and OpenAI's.
//!
//! Function parameters are passed as the client declared them: Vertex reads JSON
//! Schema's lower-case types and its own upper-case OpenAPI ones (`"OBJECT"`) alike. A
//! call's `args` is an object (a `Struct`); one that is not — a JSON-encoded string
//! from a non-conforming upstream, say — is decoded if it holds an object and refused
//! as an upstream error otherwise, never handed to the client as arguments it cannot
//! parse ([`function_call`]).

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::vertex::{Vertex, google_error};
use super::{
    ChatProvider, ChatStream, Decoded, Decoder, check_capabilities, token_count, unix_now,
};
use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ContentPart, Delta, Error,
    ErrorKind, FinishReason, FunctionCall, FunctionCallDelta, Message, Role, ToolCall,
    ToolCallDelta, ToolChoice, ToolChoiceMode, ToolKind, Usage,
};
use crate::config::EndpointConfig;

pub struct Gemini {
    vertex: Vertex,
}

impl Gemini {
    pub async fn connect(
        endpoint: EndpointConfig,
        transport: &TransportSettings,
    ) -> Result<Self, Error> {
        Ok(Self {
            vertex: Vertex::connect(endpoint, "google", transport, google_error).await?,
        })
    }
}

impl ChatProvider for Gemini {
    fn endpoint(&self) -> &EndpointConfig {
        self.vertex.endpoint()
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            check_capabilities(self.endpoint(), request)?;
            let body = to_gemini(request)?;
            let reply: Value = self.vertex.whole("generateContent", &body).await?;
            from_gemini(&reply, &self.endpoint().model)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        Box::pin(async move {
            check_capabilities(self.endpoint(), request)?;
            let body = to_gemini(request)?;
            let decoder = GeminiDecoder::new(&self.endpoint().model);
            self.vertex
                .stream("streamGenerateContent?alt=sse", &body, decoder)
                .await
        })
    }
}

/// The `GenerateContentRequest` body (Vertex AI reference), as much of it as the
/// unified API maps to. Borrowed from the client's request where it can be.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentRequest<'a> {
    contents: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<GenerationConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[Tool<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
}

/// One turn of the conversation, `user` or `model` (a `Content` in Gemini's terms).
#[derive(Debug, Serialize)]
struct Turn<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

/// One part of a turn: `{"text": …}`, `{"inlineData": …}`, ….
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    Text(String),
    InlineData(InlineData),
    FileData(FileData),
    FunctionCall(FunctionCallPart<'a>),
    FunctionResponse(FunctionResponsePart<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InlineData {
    mime_type: String,
    data: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileData {
    mime_type: &'static str,
    file_uri: String,
}

#[derive(Debug, Serialize)]
struct FunctionCallPart<'a> {
    name: &'a str,
    args: Value,
}

#[derive(Debug, Serialize)]
struct FunctionResponsePart<'a> {
    name: &'a str,
    /// The tool's result: its JSON object, or `{"content": text}`.
    response: Value,
}

#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tool<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Debug, Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

/// Adds `parts` to the conversation: consecutive messages of one role are one turn.
fn push<'a>(contents: &mut Vec<Turn<'a>>, role: &'static str, parts: Vec<Part<'a>>) {
    match contents.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => contents.push(Turn { role, parts }),
    }
}

/// Unified request → Gemini `GenerateContentRequest`.
pub(crate) fn to_gemini(request: &ChatRequest) -> Result<GenerateContentRequest<'_>, Error> {
    let mut system = Vec::new();
    let mut contents: Vec<Turn<'_>> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, message) in request.messages.iter().enumerate() {
        match message {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                system.push(Part::Text(content.text()))
            }
            Message::User { content, .. } => {
                let mut parts = Vec::new();
                for (j, part) in content.parts().into_iter().enumerate() {
                    parts.push(match part {
                        ContentPart::Text { text } => Part::Text(text),
                        ContentPart::ImageUrl { image_url } => match image_url.as_data() {
                            Some((mime, data)) => Part::InlineData(InlineData {
                                mime_type: mime.to_owned(),
                                data: data.to_owned(),
                            }),
                            None if image_url.url.starts_with("gs://")
                                || image_url.url.starts_with("https://") =>
                            {
                                Part::FileData(FileData {
                                    mime_type: guess_image_mime(&image_url.url),
                                    file_uri: image_url.url,
                                })
                            }
                            None => {
                                return Err(Error::invalid(
                                    &format!("messages[{i}].content[{j}].image_url"),
                                    "images must be data:, gs:// or https:// URLs",
                                ));
                            }
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
                    parts.push(Part::Text(text));
                }
                for call in tool_calls.iter().flatten() {
                    let args: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            Error::invalid(
                                &format!("messages[{i}].tool_calls"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    call_names.insert(&call.id, &call.function.name);
                    parts.push(Part::FunctionCall(FunctionCallPart {
                        name: &call.function.name,
                        args,
                    }));
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
                let name = *call_names.get(tool_call_id.as_str()).ok_or_else(|| {
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
                    vec![Part::FunctionResponse(FunctionResponsePart {
                        name,
                        response,
                    })],
                );
            }
        }
    }
    let config = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.output_limit(),
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        stop_sequences: request.stop_sequences(),
        response_mime_type: request.wants_json().then_some("application/json"),
    };
    let (tools, tool_config) = match request.tools.as_ref().filter(|t| !t.is_empty()) {
        None => (None, None),
        Some(tools) => {
            let declarations = tools
                .iter()
                .map(|t| FunctionDeclaration {
                    name: &t.function.name,
                    description: t.function.description.as_deref().unwrap_or_default(),
                    parameters: t.function.parameters.as_ref(),
                })
                .collect();
            let (mode, allowed_function_names) = match &request.tool_choice {
                None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => ("AUTO", None),
                Some(ToolChoice::Mode(ToolChoiceMode::None)) => ("NONE", None),
                Some(ToolChoice::Mode(ToolChoiceMode::Required)) => ("ANY", None),
                Some(ToolChoice::Named { function, .. }) => ("ANY", Some([function.name.as_str()])),
            };
            (
                Some([Tool {
                    function_declarations: declarations,
                }]),
                Some(ToolConfig {
                    function_calling_config: FunctionCallingConfig {
                        mode,
                        allowed_function_names,
                    },
                }),
            )
        }
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(SystemInstruction { parts: system }),
        generation_config: (config != GenerationConfig::default()).then_some(config),
        tools,
        tool_config,
    })
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
    let count = |name: &str| metadata.get(name).and_then(Value::as_u64).map(token_count);
    let prompt = count("promptTokenCount")?;
    let completion = count("candidatesTokenCount").unwrap_or(0);
    Some(Usage::new(
        prompt,
        completion,
        count("cachedContentTokenCount"),
    ))
}

/// A function call, numbered `call_{n}` (Gemini gives calls no ids). Its arguments
/// are `args` as JSON text: an object, or `{}` when absent; an object sent as a JSON
/// string is decoded; anything else is the upstream's error.
fn function_call(call: &Value, n: impl std::fmt::Display) -> Result<ToolCall, Error> {
    let name = call
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let arguments = match call.get("args") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(args @ Value::Object(_)) => args.to_string(),
        Some(Value::String(text))
            if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) =>
        {
            text.clone()
        }
        Some(other) => {
            return Err(Error::new(
                ErrorKind::UpstreamError,
                format!("function call `{name}`: args must be an object, got {other}"),
            ));
        }
    };
    Ok(ToolCall {
        id: format!("call_{n}"),
        kind: ToolKind::Function,
        function: FunctionCall { name, arguments },
    })
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
            calls.push(function_call(call, calls.len())?);
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
    calls: u32,
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

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Decoded>) {
        let value: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => return out.push(Decoded::Malformed(format!("not JSON: {e}"))),
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
            return out.push(Decoded::Failed(
                Error::new(
                    ErrorKind::StreamInterrupted,
                    format!("upstream error mid-stream: {message}"),
                )
                .with_upstream(None, status),
            ));
        }
        if !self.started {
            self.started = true;
            if let Some(id) = value.get("responseId").and_then(Value::as_str) {
                self.id = format!("chatcmpl-{id}");
            }
            out.push(Decoded::Chunk(self.chunk().with_delta(
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
                out.push(Decoded::Chunk(self.chunk().with_delta(
                    Delta {
                        content: Some(text.to_owned()),
                        ..Delta::default()
                    },
                    None,
                )));
            }
            if let Some(call) = part.get("functionCall") {
                let call = match function_call(call, self.calls) {
                    Ok(call) => call,
                    Err(e) => return out.push(Decoded::Failed(e)),
                };
                let delta = ToolCallDelta {
                    index: self.calls,
                    id: Some(call.id),
                    kind: Some(ToolKind::Function),
                    function: FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(call.function.arguments),
                    },
                };
                self.calls = self.calls.saturating_add(1);
                out.push(Decoded::Chunk(self.chunk().with_delta(
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
            out.push(Decoded::Chunk(self.chunk().with_delta(
                Delta::default(),
                Some(finish_reason(reason, self.calls > 0)),
            )));
            if let Some(usage) = value.get("usageMetadata").and_then(usage) {
                out.push(Decoded::Chunk(self.chunk().with_usage(usage)));
            }
        }
    }

    fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Content, FunctionDefinition, ToolDefinition};

    #[test]
    fn function_call_args_must_be_an_object() {
        let call = |args: Value| function_call(&json!({"name": "f", "args": args}), 0);
        assert_eq!(
            call(json!({"city": "Lisbon"})).unwrap().function.arguments,
            r#"{"city":"Lisbon"}"#
        );
        assert_eq!(
            call(json!(r#"{"city": "Lisbon"}"#))
                .unwrap()
                .function
                .arguments,
            r#"{"city": "Lisbon"}"#
        );
        assert_eq!(call(Value::Null).unwrap().function.arguments, "{}");
        for bad in [json!("brief"), json!([1]), json!(3)] {
            let err = call(bad.clone()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::UpstreamError, "{bad}");
        }
    }

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
        let body = serde_json::to_value(to_gemini(&request).unwrap()).unwrap();
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "sys");
        assert_eq!(body["contents"].as_array().unwrap().len(), 3);
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"]["name"],
            "fx"
        );
        assert_eq!(body["contents"][2]["parts"][1]["text"], "thanks");
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
    }

    /// The wire body, field by field, for a request that uses every mapped feature;
    /// and a plain one that carries nothing optional.
    #[test]
    fn the_wire_body_is_the_documented_generate_content_request() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "feature",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "cite sources"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.webp"}},
                    {"type": "image_url", "image_url": {"url": "gs://b/c.jpg"}}
                ]},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "fx", "arguments": "{\"c\":\"EUR\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "now", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"rate\":1.08}"},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"},
                {"role": "user", "content": "thanks"}
            ],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "seed": 7,
            "presence_penalty": 0.1, "frequency_penalty": 0.2, "stop": ["END", "STOP"],
            "response_format": {"type": "json_object"},
            "tools": [
                {"type": "function", "function": {"name": "fx", "description": "rates", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "now"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "fx"}}
        }))
        .unwrap();
        let expected = json!({
            "contents": [
                {"role": "user", "parts": [
                    {"text": "look"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "https://x/y.webp"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/c.jpg"}}
                ]},
                {"role": "model", "parts": [
                    {"text": "checking"},
                    {"functionCall": {"name": "fx", "args": {"c": "EUR"}}},
                    {"functionCall": {"name": "now", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "fx", "response": {"rate": 1.08}}},
                    {"functionResponse": {"name": "now", "response": {"content": "noon"}}},
                    {"text": "thanks"}
                ]}
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "cite sources"}]},
            "generationConfig": {
                "temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "seed": 7,
                "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "stopSequences": ["END", "STOP"], "responseMimeType": "application/json"
            },
            "tools": [{"functionDeclarations": [
                {"name": "fx", "description": "rates", "parameters": {"type": "object"}},
                {"name": "now", "description": ""}
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["fx"]}}
        });
        assert_eq!(
            serde_json::to_value(to_gemini(&request).unwrap()).unwrap(),
            expected
        );

        let plain = ChatRequest {
            model: "feature".into(),
            messages: vec![Message::user("hi")],
            ..ChatRequest::default()
        };
        assert_eq!(
            serde_json::to_value(to_gemini(&plain).unwrap()).unwrap(),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
    }

    #[test]
    fn tool_choice_modes_map_to_function_calling_modes() {
        for (choice, mode) in [
            (json!("auto"), "AUTO"),
            (json!("none"), "NONE"),
            (json!("required"), "ANY"),
        ] {
            let request: ChatRequest = serde_json::from_value(json!({
                "model": "feature",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "fx"}}],
                "tool_choice": choice
            }))
            .unwrap();
            let body = serde_json::to_value(to_gemini(&request).unwrap()).unwrap();
            assert_eq!(
                body["toolConfig"],
                json!({"functionCallingConfig": {"mode": mode}}),
                "{choice}"
            );
        }
    }

    #[test]
    fn token_counts_beyond_u32_saturate() {
        let u = usage(&json!({
            "promptTokenCount": 5_000_000_000u64,
            "candidatesTokenCount": 5_000_000_000u64,
            "cachedContentTokenCount": 5_000_000_000u64
        }))
        .unwrap();
        let max = u32::MAX;
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (max, max, max)
        );
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, max);
    }
}
