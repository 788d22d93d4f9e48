//! Gemini on Vertex AI: `generateContent` and `streamGenerateContent?alt=sse`, with
//! bearer tokens from google-cloud-auth.
//!
//! Mapping: system/developer messages → `systemInstruction`; user/assistant →
//! `contents` with roles `user`/`model`; tool calls → `functionCall` parts; tool
//! results → `functionResponse` parts (named after the call they answer);
//! `response_format` JSON → `responseMimeType`. Gemini gives function calls no ids,
//! so Crossbar numbers them `call_{n}`.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::transport::TransportSettings;
use super::vertex::{Vertex, google_error};
use super::{ChatProvider, ChatStream, Decoder, check_capabilities, unix_now};
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
}
