//! One conformance suite, written once and run against every adapter paired with its
//! simulator (real HTTP, the real AWS SDK, real google-cloud-auth token flows): the
//! same assertions for Bedrock, Gemini on Vertex, Claude on Vertex and OpenAI.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the adapters are timed from outside, against real simulators over real sockets"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use router_core::api::{
    ChatChunk, ChatRequest, Content, Error, ErrorKind, FinishReason, FunctionDefinition, Message,
    ToolChoice, ToolChoiceMode, ToolDefinition, ToolKind,
};
use router_core::config::{AuthConfig, EndpointConfig, Provider};
use router_core::providers::{self, ChatProvider, TransportSettings};
use serde_json::{Value, json};
use sim::model::count_tokens;
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    OpenAi,
    Bedrock,
    Gemini,
    Anthropic,
}

struct Fixture {
    sim: Sim,
    provider: Arc<dyn ChatProvider>,
    target: Target,
}

/// Static AWS credentials for the Bedrock cases, set once before any test reads the
/// environment: every test calls this first, and `Once` holds the others back meanwhile.
fn init_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCONFORMANCE");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "conformance-secret-not-real");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_BEARER_TOKEN_BEDROCK");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/crossbar-conformance");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/crossbar-conformance",
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("CONFORMANCE_OPENAI_KEY", "sk-conformance-not-real");
    });
}

/// A workload-identity-federation credentials file pointing at the simulated STS.
fn wif_file(identity_url: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "crossbar-conformance-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("oidc-token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.test.sig").unwrap();
    let config = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{identity_url}/v1/token"),
        "credential_source": { "file": token.to_str().unwrap() },
    });
    let path = dir.join("wif.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn fixture(
    target: Target,
    sim_edit: impl FnOnce(&mut EndpointSpec),
    endpoint_edit: impl FnOnce(&mut EndpointConfig),
) -> Fixture {
    init_env();
    let (kind, provider, model, region) = match target {
        Target::OpenAi => (Kind::Openai, Provider::Openai, "gpt-4o-mini", "eastus"),
        Target::Bedrock => (
            Kind::Bedrock,
            Provider::Bedrock,
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us-east-1",
        ),
        Target::Gemini => (
            Kind::Vertex,
            Provider::VertexGemini,
            "gemini-2.0-flash-001",
            "europe-west4",
        ),
        Target::Anthropic => (
            Kind::Vertex,
            Provider::VertexAnthropic,
            "claude-3-5-sonnet-v2@20241022",
            "europe-west4",
        ),
    };
    let mut upstream = EndpointSpec::new("upstream", kind);
    upstream.region = Some(region.into());
    upstream.auth = match kind {
        Kind::Vertex => AuthMode::Issued,
        Kind::Bedrock => AuthMode::Signed,
        _ => AuthMode::Present,
    };
    sim_edit(&mut upstream);
    let sim = Sim::start(SimConfig {
        seed: 11,
        control: None,
        endpoints: vec![upstream, EndpointSpec::new("identity", Kind::Identity)],
    })
    .await
    .unwrap();

    let mut endpoint = EndpointConfig::new("ep-under-test", provider, model, region);
    endpoint.base_url = Some(sim.url("upstream"));
    endpoint.auth = match kind {
        Kind::Vertex => {
            endpoint.project = Some("crossbar-test".into());
            AuthConfig::GcpCredentialsFile {
                path: wif_file(&sim.url("identity")),
            }
        }
        Kind::Openai => AuthConfig::ApiKeyEnv {
            env: "CONFORMANCE_OPENAI_KEY".into(),
        },
        _ => AuthConfig::Default,
    };
    endpoint.timeouts.request_ms = 10_000;
    endpoint_edit(&mut endpoint);
    let provider = providers::connect(&endpoint, &TransportSettings::default())
        .await
        .unwrap();
    Fixture {
        sim,
        provider,
        target,
    }
}

async fn basic(target: Target) -> Fixture {
    fixture(target, |_| {}, |_| {}).await
}

async fn set_faults(f: &Fixture, patch: Value) {
    let ep = f.sim.endpoint("upstream");
    ep.set_faults(ep.faults().patched(&patch).unwrap());
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "feature".into(),
        messages,
        ..ChatRequest::default()
    }
}

fn weather_tool() -> Vec<ToolDefinition> {
    vec![ToolDefinition {
        kind: ToolKind::Function,
        function: FunctionDefinition {
            name: "get_weather".into(),
            description: Some("Current weather for a city".into()),
            parameters: Some(
                json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            ),
            strict: None,
        },
    }]
}

async fn collect(
    f: &Fixture,
    request: &ChatRequest,
) -> (Vec<ChatChunk>, Option<Error>, Option<Duration>) {
    // The adapter is timed from outside, as the engine times it.
    let started = tokio::time::Instant::now();
    let mut stream = f.provider.chat_stream(request).await.unwrap();
    let mut chunks = Vec::new();
    let mut error = None;
    let mut ttft = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(c) => {
                if ttft.is_none() && c.has_output() {
                    ttft = Some(started.elapsed());
                }
                chunks.push(c);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(
        stream.next().await.is_none(),
        "{:?}: items after the end",
        f.target
    );
    (chunks, error, ttft)
}

fn streamed_text(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.clone())
        .collect()
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

async fn plain_chat(t: Target) {
    let f = basic(t).await;
    let reply = f
        .provider
        .chat(&request(vec![Message::user("Summarise the quarter.")]))
        .await
        .unwrap();
    let text = reply.text().to_owned();
    assert!(!text.is_empty(), "{t:?}");
    assert_eq!(
        reply.choices[0].finish_reason,
        Some(FinishReason::Stop),
        "{t:?}"
    );
    let usage = reply.usage.unwrap();
    assert_eq!(
        usage.prompt_tokens,
        count_tokens("Summarise the quarter."),
        "{t:?}"
    );
    assert_eq!(usage.completion_tokens, count_tokens(&text), "{t:?}");
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
}

async fn system_prompt_and_multi_turn(t: Target) {
    let f = basic(t).await;
    let messages = vec![
        Message::system("You are terse."),
        Message::user("Hi there."),
        Message::assistant("Hello."),
        Message::user("Recap please."),
    ];
    let reply = f.provider.chat(&request(messages)).await.unwrap();
    let expected: u32 = ["You are terse.", "Hi there.", "Hello.", "Recap please."]
        .iter()
        .map(|s| count_tokens(s))
        .sum();
    assert_eq!(reply.usage.unwrap().prompt_tokens, expected, "{t:?}");
    assert!(!reply.text().is_empty());
}

async fn tool_call_round_trip(t: Target) {
    let f = basic(t).await;
    let mut req = request(vec![Message::user("What is the weather in Lisbon?")]);
    req.tools = Some(weather_tool());
    req.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::Required));
    let reply = f.provider.chat(&req).await.unwrap();
    assert_eq!(
        reply.choices[0].finish_reason,
        Some(FinishReason::ToolCalls),
        "{t:?}"
    );
    let call = reply.choices[0]
        .message
        .tool_calls
        .as_ref()
        .expect("tool calls")[0]
        .clone();
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert!(args["city"].is_string(), "{t:?}: {args}");
    assert!(!call.id.is_empty());

    req.messages.push(Message::Assistant {
        content: None,
        tool_calls: Some(vec![call.clone()]),
        name: None,
        refusal: None,
    });
    req.messages.push(Message::Tool {
        content: Content::Text("{\"temp_c\": 21}".into()),
        tool_call_id: call.id.clone(),
    });
    req.tool_choice = None;
    let reply = f.provider.chat(&req).await.unwrap();
    assert_eq!(
        reply.choices[0].finish_reason,
        Some(FinishReason::Stop),
        "{t:?}"
    );
    assert!(!reply.text().is_empty());
}

async fn image_input(t: Target) {
    let f = basic(t).await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let content = Content::Parts(vec![
        router_core::api::ContentPart::Text {
            text: "Describe the chart.".into(),
        },
        router_core::api::ContentPart::ImageUrl {
            image_url: router_core::api::ImageUrl {
                url: format!("data:image/png;base64,{png}"),
                detail: None,
            },
        },
    ]);
    let reply = f
        .provider
        .chat(&request(vec![Message::User {
            content,
            name: None,
        }]))
        .await
        .unwrap();
    // The simulators charge a fixed 85 tokens per image they received.
    assert_eq!(
        reply.usage.unwrap().prompt_tokens,
        count_tokens("Describe the chart.") + sim::model::IMAGE_TOKENS,
        "{t:?}"
    );
}

async fn stop_sequence(t: Target) {
    let f = basic(t).await;
    let full = f
        .provider
        .chat(&request(vec![Message::user("hello")]))
        .await
        .unwrap()
        .text()
        .to_owned();
    let stop = format!(" {}", full.split(' ').nth(3).unwrap().trim_end_matches('.'));
    let mut req = request(vec![Message::user("hello")]);
    req.stop = Some(router_core::api::Stop::One(stop.clone()));
    let reply = f.provider.chat(&req).await.unwrap();
    assert_eq!(
        reply.choices[0].finish_reason,
        Some(FinishReason::Stop),
        "{t:?}"
    );
    assert!(
        full.starts_with(reply.text()) && !reply.text().contains(&stop),
        "{t:?}"
    );
    assert!(reply.text().len() < full.len());
}

async fn max_tokens_finish(t: Target) {
    let f = basic(t).await;
    let mut req = request(vec![Message::user("hello")]);
    req.max_tokens = Some(3);
    let reply = f.provider.chat(&req).await.unwrap();
    assert_eq!(
        reply.choices[0].finish_reason,
        Some(FinishReason::Length),
        "{t:?}"
    );
    assert_eq!(reply.usage.unwrap().completion_tokens, 3);
}

async fn streaming_with_usage(t: Target) {
    let f = basic(t).await;
    let whole = f
        .provider
        .chat(&request(vec![Message::user("Recap the week.")]))
        .await
        .unwrap();
    set_faults(&f, json!({"ttft_ms": 120})).await;
    let (chunks, error, ttft) = collect(&f, &request(vec![Message::user("Recap the week.")])).await;
    assert!(error.is_none(), "{t:?}: {error:?}");
    assert_eq!(
        chunks[0].choices[0].delta.role,
        Some(router_core::api::Role::Assistant),
        "{t:?}: role first"
    );
    assert_eq!(streamed_text(&chunks), whole.text(), "{t:?}");
    let finishes: Vec<FinishReason> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect();
    assert_eq!(finishes, [FinishReason::Stop], "{t:?}");
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty(), "{t:?}: usage comes last, alone");
    assert_eq!(last.usage, whole.usage, "{t:?}");
    assert!(
        ttft.unwrap() >= Duration::from_millis(120),
        "{t:?}: {ttft:?}"
    );
}

async fn streaming_tool_call(t: Target) {
    let f = basic(t).await;
    let mut req = request(vec![Message::user("Weather in Oslo?")]);
    req.tools = Some(weather_tool());
    req.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::Required));
    let (chunks, error, _) = collect(&f, &req).await;
    assert!(error.is_none(), "{t:?}: {error:?}");
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .flat_map(|c| c.delta.tool_calls.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        deltas[0].function.name.as_deref(),
        Some("get_weather"),
        "{t:?}"
    );
    assert!(deltas[0].id.is_some());
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d.function.arguments.clone())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&arguments).unwrap()["city"].is_string(),
        "{t:?}: {arguments}"
    );
    let finish = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .find_map(|c| c.finish_reason);
    assert_eq!(finish, Some(FinishReason::ToolCalls), "{t:?}");
}

async fn every_error_class_is_normalised(t: Target) {
    let f = basic(t).await;
    let overloaded = match t {
        Target::Bedrock => ErrorKind::Unavailable, // Bedrock reports overload as ServiceUnavailableException
        _ => ErrorKind::Overloaded,
    };
    let cases = [
        (json!({"errors": {"throttle": 1.0}}), ErrorKind::RateLimited),
        (
            json!({"errors": {"server_error": 1.0}}),
            ErrorKind::UpstreamError,
        ),
        (
            json!({"errors": {"timeout": 1.0}, "timeout_after_ms": 10}),
            ErrorKind::Timeout,
        ),
        (json!({"errors": {"overloaded": 1.0}}), overloaded),
        (json!({"outage": "unavailable"}), ErrorKind::Unavailable),
        (json!({"capacity_tpm": 1}), ErrorKind::RateLimited),
    ];
    for (faults, expected) in cases {
        set_faults(&f, json!({"errors": {"throttle": 0, "server_error": 0, "timeout": 0, "overloaded": 0}, "outage": "none", "capacity_tpm": null})).await;
        set_faults(&f, faults.clone()).await;
        for stream in [false, true] {
            let mut req = request(vec![Message::user("hello")]);
            req.stream = Some(stream);
            let error = if stream {
                f.provider.chat_stream(&req).await.err()
            } else {
                f.provider.chat(&req).await.err()
            };
            let error = error.unwrap_or_else(|| panic!("{t:?} {faults}: no error"));
            assert_eq!(
                error.kind, expected,
                "{t:?} {faults} stream={stream}: {error}"
            );
            assert!(error.retryable());
            assert!(!error.message.is_empty(), "{t:?} {faults}: no message");
            assert!(
                error.upstream_code.is_some(),
                "{t:?} {faults}: no upstream code"
            );
            // The HTTP adapters keep the status the upstream answered (the AWS SDK
            // reports the error's code only).
            if t != Target::Bedrock {
                assert!(
                    error.upstream_status.is_some_and(|s| s >= 400),
                    "{t:?} {faults}: {:?}",
                    error.upstream_status
                );
            }
            // Which endpoint failed is the engine's to say, for every attempt.
            assert_eq!(
                (error.provider.as_deref(), error.endpoint.as_deref()),
                (None, None),
                "{t:?} {faults}: the adapter tagged its error"
            );
        }
    }
}

async fn client_errors_are_not_retryable(t: Target) {
    let f = fixture(t, |s| s.context_window = 8, |_| {}).await;
    let error = f
        .provider
        .chat(&request(vec![Message::user(
            "one two three four five six seven eight nine ten",
        )]))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::ContextLengthExceeded,
        "{t:?}: {error}"
    );
    assert!(!error.retryable());

    let mut req = request(vec![Message::user("hi")]);
    req.temperature = Some(3.0);
    let error = f.provider.chat(&req).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{t:?}: {error}");
    assert_eq!(error.fault(), router_core::api::Fault::Client);
}

async fn unsupported_parameters_are_refused_by_name(t: Target) {
    let f = fixture(t, |_| {}, |e| e.capabilities.tools = Some(false)).await;
    let mut req = request(vec![Message::user("hi")]);
    req.tools = Some(weather_tool());
    let error = f.provider.chat(&req).await.unwrap_err();
    assert_eq!(
        (error.kind, error.param.as_deref()),
        (ErrorKind::UnsupportedParameter, Some("tools")),
        "{t:?}"
    );
    assert_eq!(
        f.sim.endpoint("upstream").stats().requests,
        0,
        "{t:?}: refused before sending"
    );
}

async fn adapter_timeout(t: Target) {
    let f = fixture(
        t,
        |s| s.faults.latency_ms = 3_000,
        |e| e.timeouts.request_ms = 200,
    )
    .await;
    let started = std::time::Instant::now();
    let error = f
        .provider
        .chat(&request(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout, "{t:?}: {error}");
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{t:?}: {:?}",
        started.elapsed()
    );
}

async fn refused_connections_are_unavailable(t: Target) {
    let f = basic(t).await;
    set_faults(&f, json!({"outage": "refuse"})).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let error = f
        .provider
        .chat(&request(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{t:?}: {error}");
}

/// One malformed event in the middle of an SSE stream is skipped and counted; the
/// rest of the answer arrives, whole, and nothing malformed does.
async fn a_malformed_event_is_skipped_and_counted(t: Target) {
    if t == Target::Bedrock {
        return;
    }
    let f = basic(t).await;
    let request = request(vec![Message::user("hello")]);
    let whole = f.provider.chat(&request).await.unwrap();
    set_faults(&f, json!({"malformed_after_tokens": 3})).await;
    let mut stream = f.provider.chat_stream(&request).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        chunks.push(item.unwrap_or_else(|e| panic!("{t:?}: {e}")));
    }
    assert_eq!(stream.skipped(), 1, "{t:?}");
    assert_eq!(
        streamed_text(&chunks),
        whole.text(),
        "{t:?}: the whole answer"
    );
}

async fn broken_streams_are_interrupted_never_clean(t: Target) {
    let f = basic(t).await;
    // A malformed event in an SSE stream is skipped (the next test); the AWS SDK
    // cannot read past a malformed event-stream frame, so for Bedrock it breaks the
    // stream.
    let malformed = (t == Target::Bedrock).then(|| json!({"malformed_after_tokens": 3}));
    for faults in [
        Some(json!({"cut_after_tokens": 3})),
        malformed,
        Some(json!({"stream_error_after_tokens": 3, "stream_error": "overloaded"})),
        Some(json!({"end_stream_after_tokens": 3})),
    ]
    .into_iter()
    .flatten()
    {
        set_faults(&f, json!({"cut_after_tokens": null, "malformed_after_tokens": null, "stream_error_after_tokens": null, "end_stream_after_tokens": null})).await;
        set_faults(&f, faults.clone()).await;
        let (chunks, error, _) = collect(&f, &request(vec![Message::user("hello")])).await;
        let error = error.unwrap_or_else(|| panic!("{t:?} {faults}: the stream ended cleanly"));
        assert_eq!(
            error.kind,
            ErrorKind::StreamInterrupted,
            "{t:?} {faults}: {error}"
        );
        assert_eq!(
            (error.provider.as_deref(), error.endpoint.as_deref()),
            (None, None),
            "{t:?} {faults}: the adapter tagged its error"
        );
        // An error the upstream sent is reported as that, never as a chunk we could
        // not read.
        if faults.get("stream_error_after_tokens").is_some() {
            assert!(
                !error.message.contains("malformed"),
                "{t:?} {faults}: {error}"
            );
        }
        let tokens = count_tokens(&streamed_text(&chunks));
        assert!(
            tokens <= 4,
            "{t:?} {faults}: {tokens} tokens before the error"
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.choices.iter().all(|c| c.finish_reason.is_none())),
            "{t:?} {faults}: no finish before an interruption"
        );
    }
}

macro_rules! conformance {
    ($($target:ident => $module:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[tokio::test] async fn plain_chat() { super::plain_chat(Target::$target).await }
            #[tokio::test] async fn system_prompt_and_multi_turn() { super::system_prompt_and_multi_turn(Target::$target).await }
            #[tokio::test] async fn tool_call_round_trip() { super::tool_call_round_trip(Target::$target).await }
            #[tokio::test] async fn image_input() { super::image_input(Target::$target).await }
            #[tokio::test] async fn stop_sequence() { super::stop_sequence(Target::$target).await }
            #[tokio::test] async fn max_tokens_finish() { super::max_tokens_finish(Target::$target).await }
            #[tokio::test] async fn streaming_with_usage() { super::streaming_with_usage(Target::$target).await }
            #[tokio::test] async fn streaming_tool_call() { super::streaming_tool_call(Target::$target).await }
            #[tokio::test] async fn every_error_class_is_normalised() { super::every_error_class_is_normalised(Target::$target).await }
            #[tokio::test] async fn client_errors_are_not_retryable() { super::client_errors_are_not_retryable(Target::$target).await }
            #[tokio::test] async fn unsupported_parameters_are_refused_by_name() { super::unsupported_parameters_are_refused_by_name(Target::$target).await }
            #[tokio::test] async fn adapter_timeout() { super::adapter_timeout(Target::$target).await }
            #[tokio::test] async fn refused_connections_are_unavailable() { super::refused_connections_are_unavailable(Target::$target).await }
            #[tokio::test] async fn broken_streams_are_interrupted_never_clean() { super::broken_streams_are_interrupted_never_clean(Target::$target).await }
            #[tokio::test] async fn a_malformed_event_is_skipped_and_counted() { super::a_malformed_event_is_skipped_and_counted(Target::$target).await }
        }
    )*};
}

conformance!(OpenAi => openai, Bedrock => bedrock, Gemini => vertex_gemini, Anthropic => vertex_anthropic);
