//! What today's official clients send, accepted: the Anthropic SDK's Vertex client
//! sends its own dated API version as `anthropic_version`; the Google Gen AI SDK
//! declares function parameters with upper-case OpenAPI types (`"OBJECT"`,
//! `"STRING"`), or a Python function's JSON Schema as `parameters_json_schema`
//! (snake case), and expects `functionCall.args` to be an object. (The Python clients
//! themselves run against the simulators in the end-to-end crate, `tests/`.)

mod common;

use common::{spec, start};
use serde_json::{Value, json};
use sim::{Kind, Sim};

async fn vertex() -> Sim {
    let mut vertex = spec("vertex", Kind::Vertex);
    vertex.region = Some("us-central1".into());
    start(vec![vertex]).await
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn url(sim: &Sim, publisher: &str, model_method: &str) -> String {
    format!(
        "{}/v1beta1/projects/p/locations/us-central1/publishers/{publisher}/models/{model_method}",
        sim.url("vertex")
    )
}

#[tokio::test]
async fn claude_on_vertex_accepts_the_dated_versions_current_sdks_send() {
    let sim = vertex().await;
    let claude = url(&sim, "anthropic", "claude-sonnet-4@20250514:rawPredict");
    for version in [
        "vertex-2023-10-16",
        "2026-10-21",
        "vertex-2025-01-01",
        "2023-06-01",
    ] {
        let (status, body) = post(
            claude.clone(),
            json!({"anthropic_version": version, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{version}: {body}");
    }
    for version in [
        "latest",
        "2022-12-31",
        "vertex-2023-13-01",
        "2026-10-21-beta",
        "",
    ] {
        let (status, body) = post(
            claude.clone(),
            json!({"anthropic_version": version, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 400, "{version}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn claude_tools_need_json_schema_object_types() {
    let sim = vertex().await;
    let claude = url(&sim, "anthropic", "claude-sonnet-4@20250514:rawPredict");
    let request = |schema: Value| {
        json!({
            "anthropic_version": "vertex-2023-10-16", "max_tokens": 200,
            "messages": [{"role": "user", "content": "weather in Lisbon"}],
            "tools": [{"name": "get_weather", "input_schema": schema}],
            "tool_choice": {"type": "any"},
        })
    };
    let (status, body) = post(
        claude.clone(),
        request(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["content"][0]["input"]["city"].is_string(), "{body}");
    let (status, body) = post(
        claude,
        request(json!({"type": "OBJECT", "properties": {"city": {"type": "STRING"}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input_schema.type"),
        "{body}"
    );
}

#[tokio::test]
async fn gemini_function_calls_have_object_args_for_upper_case_schemas() {
    let sim = vertex().await;
    let gemini = |method: &str| url(&sim, "google", &format!("gemini-2.5-flash:{method}"));
    // As the Gen AI SDK sends a types.Schema declaration.
    let declared = json!({
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Lisbon?"}]}],
        "tools": [{"functionDeclarations": [{
            "name": "get_weather", "description": "Weather",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}}, "required": ["city"]},
        }]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    });
    let (status, body) = post(gemini("generateContent"), declared.clone()).await;
    assert_eq!(status, 200, "{body}");
    let args = &body["candidates"][0]["content"]["parts"][0]["functionCall"]["args"];
    assert!(args["city"].is_string(), "{body}");
    assert!(args["days"].is_u64(), "{body}");

    let streamed = reqwest::Client::new()
        .post(gemini("streamGenerateContent?alt=sse"))
        .bearer_auth("t")
        .json(&declared)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(
        streamed
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        &last["candidates"][0]["content"]["parts"][0]["functionCall"]["args"],
        args
    );

    // As it sends a Python function: snake-case `parameters_json_schema`, JSON Schema
    // types; and snake-case top-level fields, which Google's JSON parser accepts.
    let (status, body) = post(
        gemini("generateContent"),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "What is the weather in Lisbon? use get_weather"}]}],
            "tools": [{"functionDeclarations": [{
                "name": "get_weather", "description": "Weather",
                "parameters_json_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "response_json_schema": {"type": "string"},
            }]}],
            "generation_config": {"max_output_tokens": 100},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let args = &body["candidates"][0]["content"]["parts"][0]["functionCall"]["args"];
    assert!(args["city"].is_string(), "{body}");

    // A function without parameters still gets an object.
    let (_, body) = post(
        gemini("generateContent"),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "now?"}]}],
            "tools": [{"functionDeclarations": [{"name": "now"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        }),
    )
    .await;
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["functionCall"]["args"],
        json!({})
    );
}
