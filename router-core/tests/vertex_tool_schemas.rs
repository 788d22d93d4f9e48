//! Conformance cases for the two Vertex adapters and the assumptions today's clients
//! broke: function parameters declared with upper-case OpenAPI types (`"OBJECT"`,
//! `"STRING"`, as the Google Gen AI SDK writes them) as well as JSON Schema's lower
//! case, and a function call's arguments that must reach the client as a JSON object.
//! Each adapter runs against its simulator over real HTTP, authenticated by the real
//! google-cloud-auth workload-identity flow against the simulated STS, as in
//! `conformance.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::StreamExt;
use router_core::api::{
    ChatRequest, Content, FinishReason, FunctionDefinition, Message, ToolChoice, ToolChoiceMode,
    ToolDefinition, ToolKind,
};
use router_core::config::{AuthConfig, EndpointConfig, Provider};
use router_core::providers::{self, ChatProvider, TransportSettings};
use serde_json::{Value, json};
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

/// A workload-identity-federation credentials file pointing at the simulated STS.
fn wif_file(identity_url: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "crossbar-vertex-schemas-{}-{}",
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

async fn fixture(provider: Provider, model: &str) -> (Sim, Arc<dyn ChatProvider>) {
    let mut upstream = EndpointSpec::new("upstream", Kind::Vertex);
    upstream.region = Some("europe-west4".into());
    upstream.auth = AuthMode::Issued;
    let sim = Sim::start(SimConfig {
        seed: 11,
        control: None,
        endpoints: vec![upstream, EndpointSpec::new("identity", Kind::Identity)],
    })
    .await
    .unwrap();
    let mut endpoint = EndpointConfig::new("ep-under-test", provider, model, "europe-west4");
    endpoint.base_url = Some(sim.url("upstream"));
    endpoint.project = Some("crossbar-test".into());
    endpoint.auth = AuthConfig::GcpCredentialsFile {
        path: wif_file(&sim.url("identity")),
    };
    endpoint.timeouts.request_ms = 10_000;
    let provider = providers::connect(&endpoint, &TransportSettings::default())
        .await
        .unwrap();
    (sim, provider)
}

fn targets() -> [(Provider, &'static str); 2] {
    [
        (Provider::VertexGemini, "gemini-2.0-flash-001"),
        (Provider::VertexAnthropic, "claude-3-5-sonnet-v2@20241022"),
    ]
}

fn weather_tool(parameters: Value) -> Vec<ToolDefinition> {
    vec![ToolDefinition {
        kind: ToolKind::Function,
        function: FunctionDefinition {
            name: "get_weather".into(),
            description: Some("Current weather for a city".into()),
            parameters: Some(parameters),
            strict: None,
        },
    }]
}

fn upper_case_schema() -> Value {
    json!({
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
        "required": ["city"],
    })
}

fn lower_case_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    })
}

fn forced(parameters: Value) -> ChatRequest {
    ChatRequest {
        model: "feature".into(),
        messages: vec![Message::user("What is the weather in Lisbon?")],
        tools: Some(weather_tool(parameters)),
        tool_choice: Some(ToolChoice::Mode(ToolChoiceMode::Required)),
        ..ChatRequest::default()
    }
}

/// The arguments must be a JSON object shaped by the schema, whatever its case.
fn assert_weather_arguments(arguments: &str, what: &str) {
    let args: Value = serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("{what}: arguments are not JSON ({e}): {arguments}"));
    assert!(args.is_object(), "{what}: {args}");
    assert!(args["city"].is_string(), "{what}: {args}");
    assert!(args["days"].is_u64(), "{what}: {args}");
}

#[tokio::test]
async fn tool_calls_take_upper_and_lower_case_schema_types_and_return_object_arguments() {
    for (provider, model) in targets() {
        let (_sim, adapter) = fixture(provider, model).await;
        for schema in [upper_case_schema(), lower_case_schema()] {
            let what = format!("{provider:?}, {}", schema["type"]);
            let mut request = forced(schema);
            let reply = adapter
                .chat(&request)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(
                reply.choices[0].finish_reason,
                Some(FinishReason::ToolCalls),
                "{what}"
            );
            let call = reply.choices[0].message.tool_calls.as_ref().unwrap()[0].clone();
            assert_eq!(call.function.name, "get_weather");
            assert_weather_arguments(&call.function.arguments, &what);

            // The round trip: the call and its result go back, the model answers.
            request.messages.push(Message::Assistant {
                content: None,
                tool_calls: Some(vec![call.clone()]),
                name: None,
                refusal: None,
            });
            request.messages.push(Message::Tool {
                content: Content::Text("{\"temp_c\": 21}".into()),
                tool_call_id: call.id.clone(),
            });
            request.tool_choice = None;
            let reply = adapter.chat(&request).await.unwrap();
            assert_eq!(
                reply.choices[0].finish_reason,
                Some(FinishReason::Stop),
                "{what}"
            );
            assert!(!reply.text().is_empty(), "{what}");
        }
    }
}

#[tokio::test]
async fn streamed_tool_calls_carry_object_arguments_for_upper_case_schemas() {
    for (provider, model) in targets() {
        let (_sim, adapter) = fixture(provider, model).await;
        let mut stream = adapter
            .chat_stream(&forced(upper_case_schema()))
            .await
            .unwrap();
        let mut arguments = String::new();
        let mut names = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{provider:?}: {e:?}"));
            for choice in &chunk.choices {
                for call in choice.delta.tool_calls.iter().flatten() {
                    names.extend(call.function.name.clone());
                    arguments.push_str(call.function.arguments.as_deref().unwrap_or_default());
                }
            }
        }
        assert_eq!(names, ["get_weather"], "{provider:?}");
        assert_weather_arguments(&arguments, &format!("{provider:?} (stream)"));
    }
}
