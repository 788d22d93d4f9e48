//! The unified API: OpenAI chat-completions requests, responses and stream chunks,
//! and the one error taxonomy every provider's failures are normalised into.
//!
//! Everything here is plain data (serde), compiled for native and wasm alike, so the
//! console and the server share it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The client API a request came in by: all of them are translated into the one
/// unified request the engine routes.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI chat completions (`/v1/chat/completions`).
    #[default]
    Chat,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Self::Chat, Self::Messages, Self::Responses];

    /// The dialect named `name` (`chat`, `messages`, `responses`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Messages => "messages",
            Self::Responses => "responses",
        }
    }
}

/// Liveness answer shared by the server's `/healthz` and the console's connection check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// `POST /v1/chat/completions`. `model` names a Crossbar *feature* at the gateway; an
/// adapter receives it already resolved to its endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The end user: Crossbar's sticky key for experiments, forwarded where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Set by the engine, never by a client: the last message is an assistant
    /// prefill the model must continue (a stream continued on a backup). Adapters
    /// whose API needs to be told (vLLM's `continue_final_message`) say so.
    #[serde(skip)]
    pub continue_final_message: bool,
}

impl ChatRequest {
    /// Characters of text in the prompt (every message): the basis of token estimates.
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(Message::text_len).sum()
    }

    /// The prompt's text, one message per line (stored only when an operator turns
    /// `privacy.store_text` on).
    pub fn prompt_text(&self) -> String {
        self.messages
            .iter()
            .filter_map(Message::text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The output limit, whichever of the two OpenAI spellings was used.
    pub fn output_limit(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn wants_json(&self) -> bool {
        matches!(
            self.response_format,
            Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
        )
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: Value },
}

/// Serialised with `role` as the tag. Deserialised by hand (see the impl below):
/// serde's derived internally tagged enums buffer every message into an intermediate
/// tree before choosing the variant, which doubled the parsing cost of large prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    System {
        content: Content,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Developer {
        content: Content,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    User {
        content: Content,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Self::User {
            content: Content::Text(text.into()),
            name: None,
        }
    }

    pub fn system(text: impl Into<String>) -> Self {
        Self::System {
            content: Content::Text(text.into()),
            name: None,
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self::Assistant {
            content: Some(Content::Text(text.into())),
            tool_calls: None,
            name: None,
            refusal: None,
        }
    }

    /// The message's text content, if it has any.
    pub fn content(&self) -> Option<&Content> {
        match self {
            Self::System { content, .. }
            | Self::Developer { content, .. }
            | Self::User { content, .. }
            | Self::Tool { content, .. } => Some(content),
            Self::Assistant { content, .. } => content.as_ref(),
        }
    }

    /// Characters of text in the message.
    pub fn text_len(&self) -> usize {
        self.content().map_or(0, Content::text_len)
    }

    /// The message's text.
    pub fn text(&self) -> Option<String> {
        self.content().map(Content::text)
    }
}

/// Message content: a string, or typed parts. Deserialised by hand: a string or an
/// array decides the variant directly (serde's untagged enums buffer and retry).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of all text parts, joined.
    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The length in bytes of [`Self::text`], without building it.
    pub fn text_len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => text.len(),
                    _ => 0,
                })
                .sum(),
        }
    }

    pub fn parts(&self) -> Vec<ContentPart> {
        match self {
            Self::Text(t) => vec![ContentPart::Text { text: t.clone() }],
            Self::Parts(p) => p.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;

        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum RoleTag {
            System,
            Developer,
            User,
            Assistant,
            Tool,
        }
        /// Every field any role has; which apply is decided by `role`. Fields of other
        /// roles (and unknown ones) are ignored, as the derived form did.
        #[derive(Deserialize)]
        struct Raw {
            role: RoleTag,
            #[serde(default)]
            content: Option<Content>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            tool_calls: Option<Vec<ToolCall>>,
            #[serde(default)]
            tool_call_id: Option<String>,
            #[serde(default)]
            refusal: Option<String>,
        }
        let raw = Raw::deserialize(d)?;
        let content = |c: Option<Content>| c.ok_or_else(|| D::Error::missing_field("content"));
        Ok(match raw.role {
            RoleTag::System => Message::System {
                content: content(raw.content)?,
                name: raw.name,
            },
            RoleTag::Developer => Message::Developer {
                content: content(raw.content)?,
                name: raw.name,
            },
            RoleTag::User => Message::User {
                content: content(raw.content)?,
                name: raw.name,
            },
            RoleTag::Assistant => Message::Assistant {
                content: raw.content,
                tool_calls: raw.tool_calls,
                name: raw.name,
                refusal: raw.refusal,
            },
            RoleTag::Tool => Message::Tool {
                content: content(raw.content)?,
                tool_call_id: raw
                    .tool_call_id
                    .ok_or_else(|| D::Error::missing_field("tool_call_id"))?,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `data:image/png;base64,...` or a URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// `(media type, base64 data)` of a `data:` URL.
    pub fn as_data(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media, data) = rest.split_once(";base64,")?;
        Some((media, data))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    #[serde(rename = "type")]
    pub kind: ToolKind,
    pub function: FunctionDefinition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    #[default]
    Function,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(ToolChoiceMode),
    Named {
        r#type: ToolKind,
        function: FunctionName,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

// ---------------------------------------------------------------------------
// Responses and stream chunks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl ChatResponse {
    /// The first choice's text ("" when it has none).
    pub fn text(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: Option<FinishReason>,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: Role,
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl Usage {
    /// The total saturates: the counts come from upstreams, and two near `u32::MAX`
    /// must not overflow.
    pub fn new(prompt: u32, completion: u32, cached: Option<u32>) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: cached
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

/// One `chat.completion.chunk`. Every provider's stream becomes the same sequence:
/// a role chunk, content / tool-call deltas, a chunk with the finish reason, and a
/// last chunk with `choices: []` and the usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolKind>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatChunk {
    pub fn new(id: &str, model: &str, created: u64) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: None,
        }
    }

    /// This chunk with one choice carrying `delta` (and maybe a finish reason).
    pub fn with_delta(mut self, delta: Delta, finish_reason: Option<FinishReason>) -> Self {
        self.choices = vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason,
        }];
        self
    }

    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.choices = Vec::new();
        self.usage = Some(usage);
        self
    }

    /// Does this chunk carry generated output (text or a tool call)?
    pub fn has_output(&self) -> bool {
        self.choices.iter().any(|c| {
            c.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                || c.delta.tool_calls.is_some()
        })
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What failed, in one vocabulary whatever the cloud. The string form is the
/// OpenAI error `code` the gateway returns, and the metric label.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Request-rate or token-rate limit of an on-demand endpoint.
    RateLimited,
    /// A provisioned endpoint is at its capacity ceiling.
    CapacityExhausted,
    /// The model is temporarily overloaded (Anthropic 529, OpenAI "engine overloaded").
    Overloaded,
    /// The endpoint is down or unreachable.
    Unavailable,
    /// The upstream failed with a server error (5xx).
    UpstreamError,
    /// No answer within the deadline (upstream 408/504, or our own timeout).
    Timeout,
    ContextLengthExceeded,
    ContentFiltered,
    InvalidRequest,
    /// The target endpoint cannot do what the request asks (tools, images, ...).
    UnsupportedParameter,
    /// The cloud rejected Crossbar's credentials, or they could not be obtained.
    UpstreamAuth,
    NotFound,
    /// A stream ended abnormally after it started (cut, malformed, error event,
    /// missing terminal event).
    StreamInterrupted,
    /// A bug or unexpected state inside Crossbar.
    Internal,
    /// No endpoint of the feature may serve the request: its data boundary leaves
    /// none, or every one inside it is unavailable (breakers open).
    NoEligibleEndpoint,
    /// The calling key or team is over its request or token rate limit.
    QuotaExceeded,
    /// The gateway key is missing, unknown or revoked.
    Unauthorized,
    /// The key is valid but may not do this (admin roles).
    Forbidden,
    /// The request's own body is too large.
    PayloadTooLarge,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 19] = [
        Self::RateLimited,
        Self::CapacityExhausted,
        Self::Overloaded,
        Self::Unavailable,
        Self::UpstreamError,
        Self::Timeout,
        Self::ContextLengthExceeded,
        Self::ContentFiltered,
        Self::InvalidRequest,
        Self::UnsupportedParameter,
        Self::UpstreamAuth,
        Self::NotFound,
        Self::StreamInterrupted,
        Self::Internal,
        Self::NoEligibleEndpoint,
        Self::QuotaExceeded,
        Self::Unauthorized,
        Self::Forbidden,
        Self::PayloadTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::CapacityExhausted => "capacity_exhausted",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::ContextLengthExceeded => "context_length_exceeded",
            Self::ContentFiltered => "content_filtered",
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedParameter => "unsupported_parameter",
            Self::UpstreamAuth => "upstream_auth",
            Self::NotFound => "not_found",
            Self::StreamInterrupted => "stream_interrupted",
            Self::Internal => "internal",
            Self::NoEligibleEndpoint => "no_eligible_endpoint",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::PayloadTooLarge => "payload_too_large",
        }
    }

    /// Who is at fault for this kind of failure.
    pub fn fault(self) -> Fault {
        match self {
            Self::ContextLengthExceeded
            | Self::ContentFiltered
            | Self::InvalidRequest
            | Self::UnsupportedParameter
            | Self::NotFound
            | Self::QuotaExceeded
            | Self::Unauthorized
            | Self::Forbidden
            | Self::PayloadTooLarge => Fault::Client,
            Self::Internal | Self::NoEligibleEndpoint => Fault::Gateway,
            _ => Fault::Upstream,
        }
    }

    /// Whether trying again (here or elsewhere) can help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::CapacityExhausted
                | Self::Overloaded
                | Self::Unavailable
                | Self::UpstreamError
                | Self::Timeout
                | Self::StreamInterrupted
        )
    }

    /// The HTTP status the gateway answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::RateLimited | Self::CapacityExhausted | Self::QuotaExceeded => 429,
            Self::Overloaded | Self::Unavailable | Self::NoEligibleEndpoint => 503,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::PayloadTooLarge => 413,
            Self::UpstreamError | Self::StreamInterrupted | Self::UpstreamAuth => 502,
            Self::Timeout => 504,
            Self::ContextLengthExceeded
            | Self::ContentFiltered
            | Self::InvalidRequest
            | Self::UnsupportedParameter => 400,
            Self::NotFound => 404,
            Self::Internal => 500,
        }
    }

    /// What a client is told about a failure of this kind when the only other text
    /// there is came from an upstream's body (which can carry masked key suffixes,
    /// role ARNs, internal addresses): the class, in words, and nothing the cloud said.
    pub fn safe_message(self) -> &'static str {
        match self {
            Self::RateLimited => "the upstream endpoint is rate limiting requests; retry later",
            Self::CapacityExhausted => "the provisioned capacity is exhausted; retry later",
            Self::Overloaded => "the model is overloaded; retry later",
            Self::Unavailable => "the upstream endpoint is unavailable",
            Self::UpstreamError => "the upstream endpoint failed to answer",
            Self::Timeout => "the upstream endpoint did not answer in time",
            Self::ContextLengthExceeded => "the request does not fit the model's context window",
            Self::ContentFiltered => {
                "the provider's content filter refused the request or its answer"
            }
            Self::InvalidRequest => "the upstream endpoint refused the request as invalid",
            Self::UnsupportedParameter => {
                "the endpoint does not support a parameter of the request"
            }
            Self::UpstreamAuth => "the gateway could not authenticate to the upstream endpoint",
            Self::NotFound => "the upstream endpoint does not know the model or deployment",
            Self::StreamInterrupted => "the upstream stream was interrupted",
            Self::Internal => "an internal error occurred in the gateway",
            Self::NoEligibleEndpoint => "no endpoint may serve this request",
            Self::QuotaExceeded => "the key or team is over its limit",
            Self::Unauthorized => "the gateway key is missing, unknown or revoked",
            Self::Forbidden => "this key may not do this",
            Self::PayloadTooLarge => "the request body is too large",
        }
    }

    /// The kind named `s` (its [`Self::as_str`]).
    pub fn parse(s: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The OpenAI error `type` field.
    pub fn openai_type(self) -> &'static str {
        match self.fault() {
            Fault::Client => match self {
                Self::QuotaExceeded => "rate_limit_error",
                Self::Unauthorized => "authentication_error",
                Self::Forbidden => "permission_error",
                _ => "invalid_request_error",
            },
            Fault::Upstream | Fault::Gateway => match self {
                Self::RateLimited | Self::CapacityExhausted => "rate_limit_error",
                _ => "server_error",
            },
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The request itself is wrong: retrying or failing over cannot help.
    Client,
    /// The cloud failed.
    Upstream,
    /// Crossbar failed.
    Gateway,
}

/// A normalised failure: what, who is at fault, whether to retry, and the upstream
/// details for diagnosis. Never carries a credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// How long the upstream asked us to wait, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "duration_ms")]
    pub retry_after: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            retry_after: None,
            provider: None,
            endpoint: None,
            upstream_status: None,
            upstream_code: None,
        }
    }

    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedParameter, message).with_param(param)
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn with_upstream(mut self, status: Option<u16>, code: Option<String>) -> Self {
        self.upstream_status = status;
        self.upstream_code = code;
        self
    }

    pub fn at(mut self, provider: &str, endpoint: &str) -> Self {
        self.provider.get_or_insert_with(|| provider.to_owned());
        self.endpoint.get_or_insert_with(|| endpoint.to_owned());
        self
    }

    pub fn fault(&self) -> Fault {
        self.kind.fault()
    }

    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }

    /// The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_openai_json(&self) -> Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind.openai_type(),
                "param": self.param,
                "code": self.kind.as_str(),
            }
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " (endpoint {endpoint}")?;
            if let Some(status) = self.upstream_status {
                write!(f, ", upstream {status}")?;
            }
            if let Some(code) = &self.upstream_code {
                write!(f, " {code}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_requests_round_trip() {
        let body = json!({
            "model": "summarize",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "stop": ["END"],
            "max_completion_tokens": 100,
            "response_format": {"type": "json_object"},
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-1",
        });
        let request: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(request.output_limit(), Some(100));
        assert_eq!(request.stop_sequences(), ["END"]);
        assert!(request.wants_json() && request.include_usage() && request.is_stream());
        let Message::User { content, .. } = &request.messages[1] else {
            panic!()
        };
        let ContentPart::ImageUrl { image_url } = &content.parts()[1] else {
            panic!()
        };
        assert_eq!(image_url.as_data(), Some(("image/png", "AAAA")));
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
        assert_eq!(
            serde_json::from_value::<ToolChoice>(json!("required")).unwrap(),
            ToolChoice::Mode(ToolChoiceMode::Required)
        );
    }

    #[test]
    fn messages_parse_by_role_and_say_what_is_missing() {
        let m: Message = serde_json::from_value(json!({"role": "user", "content": "hi"})).unwrap();
        assert_eq!(m, Message::user("hi"));
        let m: Message =
            serde_json::from_value(json!({"role": "assistant", "content": null, "refusal": "no"}))
                .unwrap();
        assert!(matches!(
            m,
            Message::Assistant {
                content: None,
                refusal: Some(_),
                ..
            }
        ));
        let e = serde_json::from_value::<Message>(json!({"role": "tool", "content": "42"}))
            .unwrap_err();
        assert!(e.to_string().contains("tool_call_id"), "{e}");
        let e = serde_json::from_value::<Message>(json!({"role": "user"})).unwrap_err();
        assert!(e.to_string().contains("content"), "{e}");
        let e = serde_json::from_value::<Message>(json!({"role": "robot", "content": "x"}))
            .unwrap_err();
        assert!(e.to_string().contains("robot"), "{e}");
        let e =
            serde_json::from_value::<Message>(json!({"role": "user", "content": 7})).unwrap_err();
        assert!(e.to_string().contains("a string or an array"), "{e}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<ChatRequest>(
            json!({"model": "m", "messages": [], "temprature": 1}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("temprature"));
    }

    #[test]
    fn every_error_kind_has_a_consistent_fault_status_and_retry() {
        for kind in ErrorKind::ALL {
            let status = kind.http_status();
            match kind.fault() {
                Fault::Client => {
                    assert!((400..500).contains(&status) && !kind.retryable(), "{kind}")
                }
                Fault::Upstream | Fault::Gateway => assert!(status >= 429, "{kind}"),
            }
            let parsed: ErrorKind = serde_json::from_value(json!(kind.as_str())).unwrap();
            assert_eq!(parsed, kind);
        }
    }

    #[test]
    fn a_usage_total_saturates_instead_of_overflowing() {
        let usage = Usage::new(u32::MAX, 5, None);
        assert_eq!(usage.total_tokens, u32::MAX);
        assert_eq!(Usage::new(2, 3, None).total_tokens, 5);
    }

    #[test]
    fn errors_render_as_openai_json() {
        let e = Error::unsupported("tools", "endpoint x cannot call tools").at("bedrock", "x");
        let body = e.to_openai_json();
        assert_eq!(body["error"]["code"], "unsupported_parameter");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "tools");
        assert_eq!(
            e.to_string(),
            "unsupported_parameter: endpoint x cannot call tools (endpoint x)"
        );
    }
}
