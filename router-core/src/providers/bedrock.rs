//! AWS Bedrock through `aws-sdk-bedrockruntime` (Converse and ConverseStream), with
//! the SDK's own retries turned off: the router owns retries and failover.
//!
//! Mapping: system/developer messages → `system` blocks; consecutive messages of one
//! Bedrock role merge (Bedrock requires user/assistant alternation); tool results are
//! `toolResult` blocks of a user message; images must be inline (`data:` URLs).

use std::time::Duration;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, ConverseOutput,
    ConverseStreamOutput, ImageBlock, ImageFormat, ImageSource, InferenceConfiguration,
    Message as BedrockMessage, SpecificToolChoice, StopReason, SystemContentBlock, TokenUsage,
    Tool, ToolChoice as BedrockToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Blob, Document, Number};
use base64::Engine;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{
    ChatProvider, ChatStream, Decoded, Decoder, check_capabilities, drive, token_count, unix_now,
};
use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ContentPart, Delta, Error,
    ErrorKind, FinishReason, FunctionCall, FunctionCallDelta, Message, Role, ToolCall,
    ToolCallDelta, ToolChoice, ToolChoiceMode, ToolKind, Usage,
};
use crate::auth;
use crate::config::EndpointConfig;

pub struct Bedrock {
    endpoint: EndpointConfig,
    client: Client,
}

impl Bedrock {
    pub async fn connect(endpoint: EndpointConfig) -> Result<Self, Error> {
        let shared = auth::aws_config(&endpoint).await?;
        let mut config = aws_sdk_bedrockruntime::config::Builder::from(&shared)
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_bedrockruntime::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(endpoint.timeouts.connect_ms))
                    .build(),
            );
        if let Some(url) = &endpoint.base_url {
            config = config.endpoint_url(url);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            endpoint,
        })
    }

    async fn bounded<T, E>(
        &self,
        call: impl Future<
            Output = Result<T, SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>>,
        >,
    ) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match tokio::time::timeout(
            Duration::from_millis(self.endpoint.timeouts.request_ms),
            call,
        )
        .await
        {
            Ok(result) => result.map_err(|e| sdk_error(&e, self.endpoint.is_provisioned())),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "no response within {} ms",
                    self.endpoint.timeouts.request_ms
                ),
            )),
        }
    }
}

impl ChatProvider for Bedrock {
    fn endpoint(&self) -> &EndpointConfig {
        &self.endpoint
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            check_capabilities(&self.endpoint, request)?;
            let parts = to_converse(request)?;
            let call = self
                .client
                .converse()
                .model_id(&self.endpoint.model)
                .set_messages(Some(parts.messages))
                .set_system(parts.system)
                .set_inference_config(parts.inference)
                .set_tool_config(parts.tools)
                .send();
            let out = self.bounded(call).await?;
            let (content, calls) = match out.output() {
                Some(ConverseOutput::Message(m)) => message_output(m),
                _ => (String::new(), Vec::new()),
            };
            let usage = out.usage().map(usage_of);
            Ok(ChatResponse {
                id: format!("chatcmpl-bedrock-{}", unix_now()),
                object: "chat.completion".into(),
                created: unix_now(),
                model: self.endpoint.model.clone(),
                choices: vec![Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: Role::Assistant,
                        content: (calls.is_empty() || !content.is_empty()).then_some(content),
                        tool_calls: (!calls.is_empty()).then_some(calls),
                        refusal: None,
                    },
                    finish_reason: Some(finish_reason(out.stop_reason())),
                    logprobs: None,
                }],
                usage,
                system_fingerprint: None,
            })
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        Box::pin(async move {
            check_capabilities(&self.endpoint, request)?;
            let parts = to_converse(request)?;
            let call = self
                .client
                .converse_stream()
                .model_id(&self.endpoint.model)
                .set_messages(Some(parts.messages))
                .set_system(parts.system)
                .set_inference_config(parts.inference)
                .set_tool_config(parts.tools)
                .send();
            let out = self.bounded(call).await?;
            let idle = Duration::from_millis(self.endpoint.timeouts.stream_idle_ms);
            let events =
                futures_util::stream::unfold(Some(out.stream), move |receiver| async move {
                    let mut receiver = receiver?;
                    match tokio::time::timeout(idle, receiver.recv()).await {
                        Err(_) => Some((
                            Err(Error::new(
                                ErrorKind::StreamInterrupted,
                                format!("no data for {} ms", idle.as_millis()),
                            )),
                            None,
                        )),
                        Ok(Ok(Some(event))) => Some((Ok(event), Some(receiver))),
                        Ok(Ok(None)) => None,
                        Ok(Err(e)) => {
                            let cause = sdk_error(&e, false);
                            let error = Error::new(
                                ErrorKind::StreamInterrupted,
                                format!("the stream failed: {}", cause.message),
                            )
                            .with_upstream(cause.upstream_status, cause.upstream_code);
                            Some((Err(error), None))
                        }
                    }
                });
            let decoder = BedrockDecoder {
                id: format!("chatcmpl-bedrock-{}", unix_now()),
                model: self.endpoint.model.clone(),
                created: unix_now(),
                calls: 0,
                tool_block: None,
                stopped: false,
            };
            Ok(drive(events, decoder))
        })
    }
}

struct ConverseParts {
    messages: Vec<BedrockMessage>,
    system: Option<Vec<SystemContentBlock>>,
    inference: Option<InferenceConfiguration>,
    tools: Option<ToolConfiguration>,
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("building the Bedrock request: {e}"),
    )
}

fn to_converse(request: &ChatRequest) -> Result<ConverseParts, Error> {
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    let mut push = |role: ConversationRole, blocks: Vec<ContentBlock>| match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    };
    let mut uses_tool_blocks = false;
    for (i, message) in request.messages.iter().enumerate() {
        match message {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                system.push(SystemContentBlock::Text(content.text()))
            }
            Message::User { content, .. } => {
                let mut blocks = Vec::new();
                for (j, part) in content.parts().into_iter().enumerate() {
                    blocks.push(match part {
                        ContentPart::Text { text } => ContentBlock::Text(text),
                        ContentPart::ImageUrl { image_url } => {
                            let param = format!("messages[{i}].content[{j}].image_url");
                            let (media, data) = image_url.as_data().ok_or_else(|| {
                                Error::unsupported(
                                    &param,
                                    "Bedrock takes images inline: send a data: URL",
                                )
                            })?;
                            let format = match media {
                                "image/png" => ImageFormat::Png,
                                "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
                                "image/gif" => ImageFormat::Gif,
                                "image/webp" => ImageFormat::Webp,
                                other => {
                                    return Err(Error::unsupported(
                                        &param,
                                        format!("Bedrock does not take {other} images"),
                                    ));
                                }
                            };
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .map_err(|_| {
                                    Error::invalid(&param, "the image is not valid base64")
                                })?;
                            ContentBlock::Image(
                                ImageBlock::builder()
                                    .format(format)
                                    .source(ImageSource::Bytes(Blob::new(bytes)))
                                    .build()
                                    .map_err(build_error)?,
                            )
                        }
                    });
                }
                push(ConversationRole::User, blocks);
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_ref().map(|c| c.text()).filter(|t| !t.is_empty()) {
                    blocks.push(ContentBlock::Text(text));
                }
                for call in tool_calls.iter().flatten() {
                    uses_tool_blocks = true;
                    let input: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            Error::invalid(
                                &format!("messages[{i}].tool_calls"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    blocks.push(ContentBlock::ToolUse(
                        ToolUseBlock::builder()
                            .tool_use_id(&call.id)
                            .name(&call.function.name)
                            .input(to_document(&input))
                            .build()
                            .map_err(build_error)?,
                    ));
                }
                if blocks.is_empty() {
                    return Err(Error::invalid(
                        &format!("messages[{i}]"),
                        "an assistant message needs content or tool calls",
                    ));
                }
                push(ConversationRole::Assistant, blocks);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                uses_tool_blocks = true;
                let result = ToolResultBlock::builder()
                    .tool_use_id(tool_call_id)
                    .content(ToolResultContentBlock::Text(content.text()))
                    .build()
                    .map_err(build_error)?;
                push(
                    ConversationRole::User,
                    vec![ContentBlock::ToolResult(result)],
                );
            }
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| {
            BedrockMessage::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(build_error)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let stop = request.stop_sequences();
    let inference = (request.output_limit().is_some()
        || request.temperature.is_some()
        || request.top_p.is_some()
        || !stop.is_empty())
    .then(|| {
        InferenceConfiguration::builder()
            .set_max_tokens(
                request
                    .output_limit()
                    .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            )
            .set_temperature(request.temperature.map(|t| t as f32))
            .set_top_p(request.top_p.map(|p| p as f32))
            .set_stop_sequences((!stop.is_empty()).then_some(stop))
            .build()
    });

    let tools = match request.tools.as_ref().filter(|t| !t.is_empty()) {
        None => None,
        Some(_)
            if matches!(
                request.tool_choice,
                Some(ToolChoice::Mode(ToolChoiceMode::None))
            ) =>
        {
            if uses_tool_blocks {
                return Err(Error::unsupported(
                    "tool_choice",
                    "Bedrock cannot forbid tool calls in a conversation that already uses tools",
                ));
            }
            None
        }
        Some(defs) => {
            let mut config = ToolConfiguration::builder();
            for def in defs {
                let schema = def
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object"}));
                let spec = ToolSpecification::builder()
                    .name(&def.function.name)
                    .set_description(def.function.description.clone())
                    .input_schema(ToolInputSchema::Json(to_document(&schema)))
                    .build()
                    .map_err(build_error)?;
                config = config.tools(Tool::ToolSpec(spec));
            }
            config = match &request.tool_choice {
                None | Some(ToolChoice::Mode(ToolChoiceMode::Auto | ToolChoiceMode::None)) => {
                    config.tool_choice(BedrockToolChoice::Auto(AutoToolChoice::builder().build()))
                }
                Some(ToolChoice::Mode(ToolChoiceMode::Required)) => {
                    config.tool_choice(BedrockToolChoice::Any(AnyToolChoice::builder().build()))
                }
                Some(ToolChoice::Named { function, .. }) => {
                    config.tool_choice(BedrockToolChoice::Tool(
                        SpecificToolChoice::builder()
                            .name(&function.name)
                            .build()
                            .map_err(build_error)?,
                    ))
                }
            };
            Some(config.build().map_err(build_error)?)
        }
    };
    if tools.is_none() && uses_tool_blocks {
        return Err(Error::invalid(
            "tools",
            "Bedrock needs the tool definitions when the conversation contains tool calls or results",
        ));
    }
    Ok(ConverseParts {
        messages,
        system: (!system.is_empty()).then_some(system),
        inference,
        tools,
    })
}

fn message_output(message: &BedrockMessage) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.content() {
        match block {
            ContentBlock::Text(t) => text.push_str(t),
            ContentBlock::ToolUse(tool) => calls.push(ToolCall {
                id: tool.tool_use_id().to_owned(),
                kind: ToolKind::Function,
                function: FunctionCall {
                    name: tool.name().to_owned(),
                    arguments: from_document(tool.input()).to_string(),
                },
            }),
            _ => {}
        }
    }
    (text, calls)
}

/// The SDK's token counts (`i32`) in the unified API's terms.
fn usage_of(u: &TokenUsage) -> Usage {
    Usage::new(
        token_count(u.input_tokens()),
        token_count(u.output_tokens()),
        u.cache_read_input_tokens().map(token_count),
    )
}

fn finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::MaxTokens => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

pub(crate) fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or_default()),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect(),
        ),
    }
}

pub(crate) fn from_document(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(from_document).collect()),
        Document::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

/// An SDK failure, normalised. The SDK picks the typed error from `x-amzn-ErrorType`;
/// its code is what we map.
fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: &SdkError<E, R>,
    provisioned: bool,
) -> Error {
    match error {
        SdkError::TimeoutError(_) => Error::new(ErrorKind::Timeout, "the Bedrock call timed out"),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            Error::new(ErrorKind::Timeout, "connecting to Bedrock timed out")
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            Error::new(ErrorKind::Unavailable, "could not reach Bedrock")
        }
        SdkError::DispatchFailure(_) => Error::new(
            ErrorKind::UpstreamAuth,
            format!("could not send the request: {}", describe(error)),
        ),
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::UpstreamError,
            format!("unreadable Bedrock response: {}", describe(error)),
        ),
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or(code).to_owned();
            let kind = kind_for_code(code, &message, provisioned);
            Error::new(kind, message).with_upstream(None, Some(code.to_owned()))
        }
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::Internal,
            format!("could not build the Bedrock request: {}", describe(error)),
        ),
        _ => Error::new(ErrorKind::UpstreamError, describe(error)),
    }
}

/// Bedrock's documented error codes (HTTP errors in PascalCase, stream exceptions in
/// lowerCamelCase) → the taxonomy. A provisioned endpoint's throttle means its
/// capacity is used up, an on-demand one's a rate limit.
fn kind_for_code(code: &str, message: &str, provisioned: bool) -> ErrorKind {
    let pascal = {
        let mut c = code.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    match pascal.as_str() {
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException"
            if provisioned =>
        {
            ErrorKind::CapacityExhausted
        }
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException" => {
            ErrorKind::RateLimited
        }
        "ModelTimeoutException" => ErrorKind::Timeout,
        "ServiceUnavailableException" | "ModelNotReadyException" => ErrorKind::Unavailable,
        "InternalServerException" | "ModelErrorException" | "ModelStreamErrorException" => {
            ErrorKind::UpstreamError
        }
        "ValidationException" if message.contains("too long") => ErrorKind::ContextLengthExceeded,
        "ValidationException" => ErrorKind::InvalidRequest,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => ErrorKind::UpstreamAuth,
        "ResourceNotFoundException" => ErrorKind::NotFound,
        _ => ErrorKind::UpstreamError,
    }
}

/// The error and its sources, for messages. The SDK's errors name steps (e.g. "failed
/// to load credentials"), never credential values.
fn describe(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

struct BedrockDecoder {
    id: String,
    model: String,
    created: u64,
    calls: u32,
    /// The tool-call index of the content block being streamed, if it is a tool use.
    tool_block: Option<(i32, u32)>,
    stopped: bool,
}

impl BedrockDecoder {
    fn chunk(&self) -> ChatChunk {
        ChatChunk::new(&self.id, &self.model, self.created)
    }
}

impl Decoder for BedrockDecoder {
    type Event = ConverseStreamOutput;

    fn decode(&mut self, event: ConverseStreamOutput, out: &mut Vec<Decoded>) {
        match event {
            ConverseStreamOutput::MessageStart(_) => {
                out.push(Decoded::Chunk(self.chunk().with_delta(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        tool_calls: None,
                    },
                    None,
                )));
            }
            ConverseStreamOutput::ContentBlockStart(start) => {
                if let Some(tool) = start.start().and_then(|s| s.as_tool_use().ok()) {
                    let n = self.calls;
                    self.calls = self.calls.saturating_add(1);
                    self.tool_block = Some((start.content_block_index(), n));
                    let delta = ToolCallDelta {
                        index: n,
                        id: Some(tool.tool_use_id().to_owned()),
                        kind: Some(ToolKind::Function),
                        function: FunctionCallDelta {
                            name: Some(tool.name().to_owned()),
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
                }
            }
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                match delta.delta() {
                    Some(aws_sdk_bedrockruntime::types::ContentBlockDelta::Text(text)) => {
                        out.push(Decoded::Chunk(self.chunk().with_delta(
                            Delta {
                                content: Some(text.clone()),
                                ..Delta::default()
                            },
                            None,
                        )));
                    }
                    Some(aws_sdk_bedrockruntime::types::ContentBlockDelta::ToolUse(tool)) => {
                        let index = match self.tool_block {
                        Some((block, n)) if block == delta.content_block_index() => n,
                        _ => return out.push(Decoded::Failed(Error::new(ErrorKind::StreamInterrupted, "a tool-use delta arrived for a block that did not start as a tool use"))),
                    };
                        let call = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: FunctionCallDelta {
                                name: None,
                                arguments: Some(tool.input().to_owned()),
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
            ConverseStreamOutput::ContentBlockStop(_) => self.tool_block = None,
            ConverseStreamOutput::MessageStop(stop) => {
                self.stopped = true;
                out.push(Decoded::Chunk(self.chunk().with_delta(
                    Delta::default(),
                    Some(finish_reason(stop.stop_reason())),
                )));
            }
            ConverseStreamOutput::Metadata(metadata) => {
                if let Some(u) = metadata.usage() {
                    out.push(Decoded::Chunk(self.chunk().with_usage(usage_of(u))));
                }
            }
            _ => {}
        }
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_documented_error_code_maps() {
        let cases = [
            ("ThrottlingException", false, ErrorKind::RateLimited),
            ("ThrottlingException", true, ErrorKind::CapacityExhausted),
            ("throttlingException", false, ErrorKind::RateLimited),
            (
                "ServiceQuotaExceededException",
                false,
                ErrorKind::RateLimited,
            ),
            ("ModelNotReadyException", false, ErrorKind::Unavailable),
            ("ModelTimeoutException", false, ErrorKind::Timeout),
            ("ModelErrorException", false, ErrorKind::UpstreamError),
            ("InternalServerException", false, ErrorKind::UpstreamError),
            ("internalServerException", false, ErrorKind::UpstreamError),
            ("modelStreamErrorException", false, ErrorKind::UpstreamError),
            ("ServiceUnavailableException", false, ErrorKind::Unavailable),
            ("serviceUnavailableException", false, ErrorKind::Unavailable),
            ("ValidationException", false, ErrorKind::InvalidRequest),
            ("AccessDeniedException", false, ErrorKind::UpstreamAuth),
            (
                "UnrecognizedClientException",
                false,
                ErrorKind::UpstreamAuth,
            ),
            ("ExpiredTokenException", false, ErrorKind::UpstreamAuth),
            ("ResourceNotFoundException", false, ErrorKind::NotFound),
            ("SomethingNew", false, ErrorKind::UpstreamError),
        ];
        for (code, provisioned, kind) in cases {
            assert_eq!(kind_for_code(code, "m", provisioned), kind, "{code}");
        }
        assert_eq!(
            kind_for_code(
                "ValidationException",
                "Input is too long for requested model.",
                false
            ),
            ErrorKind::ContextLengthExceeded
        );
    }

    #[test]
    fn documents_round_trip_json() {
        let v = json!({"a": [1, -2, 2.5, true, null, "s"], "b": {"c": {}}});
        assert_eq!(from_document(&to_document(&v)), v);
    }

    #[test]
    fn consecutive_roles_merge_and_system_is_separate() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::system("s"),
                Message::user("a"),
                Message::user("b"),
                Message::assistant("c"),
                Message::user("d"),
            ],
            max_tokens: Some(10),
            ..ChatRequest::default()
        };
        let parts = to_converse(&request).unwrap();
        assert_eq!(parts.messages.len(), 3);
        assert_eq!(parts.messages[0].content().len(), 2);
        assert_eq!(parts.system.unwrap().len(), 1);
        assert_eq!(parts.inference.unwrap().max_tokens(), Some(10));
    }

    #[test]
    fn remote_images_are_refused_with_the_parameter() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::User {
                content: crate::api::Content::Parts(vec![ContentPart::ImageUrl {
                    image_url: crate::api::ImageUrl {
                        url: "https://x/y.png".into(),
                        detail: None,
                    },
                }]),
                name: None,
            }],
            ..ChatRequest::default()
        };
        let Err(e) = to_converse(&request) else {
            panic!("accepted a remote image")
        };
        assert_eq!(
            (e.kind, e.param.as_deref()),
            (
                ErrorKind::UnsupportedParameter,
                Some("messages[0].content[0].image_url")
            )
        );
    }

    /// The SDK's counts are `i32`: a negative one is zero, not four billion.
    #[test]
    fn token_counts_from_the_sdk_are_never_wrapped() {
        use aws_sdk_bedrockruntime::types::TokenUsage;
        let u = usage_of(
            &TokenUsage::builder()
                .input_tokens(-1)
                .output_tokens(i32::MAX)
                .total_tokens(0)
                .cache_read_input_tokens(-5)
                .build()
                .unwrap(),
        );
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (0, i32::MAX as u32, i32::MAX as u32)
        );
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 0);
    }
}
