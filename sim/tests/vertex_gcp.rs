//! Vertex AI simulators driven over HTTP (reqwest) with tokens from the real
//! `google-cloud-auth` workload-identity-federation flow against the simulated STS and
//! IAM credentials services: Gemini and Claude-on-Vertex, whole and streamed, and
//! their errors.

mod common;

use common::{set_faults, spec, start, stats};
use google_cloud_auth::credentials::CacheableResource;
use http::HeaderMap;
use serde_json::{Value, json};
use sim::model::count_tokens;
use sim::{AuthMode, Kind, Sim};

const SA: &str = "router@crossbar-prod.iam.gserviceaccount.com";

async fn vertex_sim(auth: AuthMode) -> Sim {
    let mut vertex = spec("vertex", Kind::Vertex);
    vertex.auth = auth;
    vertex.region = Some("europe-west4".into());
    vertex.models = vec![
        "gemini-2.0-flash-001".into(),
        "claude-3-5-sonnet-v2@20241022".into(),
    ];
    start(vec![spec("identity", Kind::Identity), vertex]).await
}

fn gemini_url(sim: &Sim, method: &str) -> String {
    format!(
        "{}/v1/projects/crossbar-prod/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:{method}",
        sim.url("vertex")
    )
}

fn claude_url(sim: &Sim, method: &str) -> String {
    format!(
        "{}/v1/projects/crossbar-prod/locations/europe-west4/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022:{method}",
        sim.url("vertex")
    )
}

/// Bearer headers from google-cloud-auth's external-account (WIF) credentials with
/// service-account impersonation, all pointed at the simulated identity endpoint.
async fn wif_headers(sim: &Sim, dir: &std::path::Path) -> HeaderMap {
    let token_file = dir.join("oidc-token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.pod-oidc-token.sig").unwrap();
    let identity = sim.url("identity");
    let config = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/crossbar/providers/eks",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{identity}/v1/token"),
        "service_account_impersonation_url": format!("{identity}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"),
        "credential_source": { "file": token_file.to_str().unwrap() },
    });
    let credentials = google_cloud_auth::credentials::external_account::Builder::new(config)
        .build()
        .unwrap();
    match credentials.headers(http::Extensions::new()).await.unwrap() {
        CacheableResource::New { data, .. } => data,
        CacheableResource::NotModified => panic!("no headers on the first call"),
    }
}

/// Splits an SSE body into (event, data) pairs.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let mut name = None;
            let mut data = String::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn workload_identity_federation_with_impersonation_reaches_gemini() {
    let sim = vertex_sim(AuthMode::Issued).await;
    let dir = tempdir();
    let headers = wif_headers(&sim, &dir).await;
    let auth = headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("Bearer ya29.sim-"));

    let body =
        json!({"contents": [{"role": "user", "parts": [{"text": "Summarise the EU launch."}]}]});
    let response = reqwest::Client::new()
        .post(gemini_url(&sim, "generateContent"))
        .headers(headers)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    let text = reply["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        reply["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap() as u32,
        count_tokens(text)
    );
    assert_eq!(
        reply["usageMetadata"]["promptTokenCount"].as_u64().unwrap() as u32,
        count_tokens("Summarise the EU launch.")
    );

    // The token the call used came from impersonation, which required the STS token.
    let vertex = stats(&sim, "vertex").await;
    assert_eq!(
        vertex["credentials"][format!("gcp-impersonated:{SA} via gcp-sts")],
        1,
        "{vertex}"
    );
    let identity = stats(&sim, "identity").await;
    assert_eq!(identity["credentials"]["issued:gcp-sts"], 1);

    // A token the identity service never issued is refused in Google's format.
    let response = reqwest::Client::new()
        .post(gemini_url(&sim, "generateContent"))
        .bearer_auth("ya29.forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn gemini_streams_the_same_reply_over_sse() {
    let sim = vertex_sim(AuthMode::Present).await;
    let http = reqwest::Client::new();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Recap the quarter."}]}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 512},
    });
    let whole: Value = http
        .post(gemini_url(&sim, "generateContent"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = whole["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(whole["candidates"][0]["finishReason"], "STOP");

    let response = http
        .post(format!(
            "{}?alt=sse",
            gemini_url(&sim, "streamGenerateContent")
        ))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    let chunks: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, expected);
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap() as u32,
        count_tokens(&expected)
    );
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["candidates"][0].get("finishReason").is_none())
    );
    assert!(!events.iter().any(|(_, d)| d == "[DONE]"));

    // Without alt=sse the stream is one JSON array.
    let array: Value = http
        .post(gemini_url(&sim, "streamGenerateContent"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        array[0]["candidates"][0]["content"]["parts"][0]["text"],
        expected.as_str()
    );
}

#[tokio::test]
async fn gemini_function_calling() {
    let sim = vertex_sim(AuthMode::Present).await;
    let tools = json!([{"functionDeclarations": [{"name": "get_fx_rate", "description": "FX rate",
        "parameters": {"type": "object", "properties": {"currency": {"type": "string"}}}}]}]);
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Use get_fx_rate for EUR"}]}], "tools": tools});
    let reply: Value = reqwest::Client::new()
        .post(gemini_url(&sim, "generateContent"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = &reply["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_fx_rate");
    assert!(call["args"]["currency"].is_string());
    let body = json!({"tools": tools, "contents": [
        {"role": "user", "parts": [{"text": "Use get_fx_rate for EUR"}]},
        {"role": "model", "parts": [{"functionCall": call}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_fx_rate", "response": {"rate": 1.08}}}]},
    ]});
    let reply: Value = reqwest::Client::new()
        .post(gemini_url(&sim, "generateContent"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        reply["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{reply}"
    );
}

#[tokio::test]
async fn gemini_errors_use_google_status_codes() {
    let sim = vertex_sim(AuthMode::Present).await;
    let http = reqwest::Client::new();
    let ok_body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let cases = [
        (
            json!({"errors": {"throttle": 1.0}}),
            ok_body.clone(),
            429,
            "RESOURCE_EXHAUSTED",
        ),
        (
            json!({"errors": {"server_error": 1.0}}),
            ok_body.clone(),
            500,
            "INTERNAL",
        ),
        (
            json!({"errors": {"timeout": 1.0}, "timeout_after_ms": 5}),
            ok_body.clone(),
            504,
            "DEADLINE_EXCEEDED",
        ),
        (
            json!({"errors": {"overloaded": 1.0}}),
            ok_body.clone(),
            503,
            "UNAVAILABLE",
        ),
        (
            json!({"outage": "unavailable"}),
            ok_body.clone(),
            503,
            "UNAVAILABLE",
        ),
        (json!({}), json!({"contents": []}), 400, "INVALID_ARGUMENT"),
        (
            json!({}),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfg": {}}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            json!({}),
            json!({"contents": [{"role": "robot", "parts": [{"text": "hi"}]}]}),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (faults, body, status, google_status) in cases {
        set_faults(&sim, "vertex", json!({"errors": {"throttle": 0, "server_error": 0, "timeout": 0, "overloaded": 0}, "outage": "none"})).await;
        set_faults(&sim, "vertex", faults.clone()).await;
        let response = http
            .post(gemini_url(&sim, "generateContent"))
            .bearer_auth("t")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{faults} {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["status"], google_status, "{faults} {body}");
        assert_eq!(error["error"]["code"], status);
    }
    let response = http
        .post(gemini_url(&sim, "generateContent"))
        .json(&ok_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let wrong_region = gemini_url(&sim, "generateContent").replace("europe-west4", "us-central1");
    assert_eq!(
        http.post(wrong_region)
            .bearer_auth("t")
            .json(&ok_body)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn claude_on_vertex_raw_predict_and_stream() {
    let sim = vertex_sim(AuthMode::Present).await;
    let http = reqwest::Client::new();
    let body = json!({
        "anthropic_version": "vertex-2023-10-16", "max_tokens": 256, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise the call."}]}],
    });
    let whole: Value = http
        .post(claude_url(&sim, "rawPredict"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["type"], "message");
    assert_eq!(whole["stop_reason"], "end_turn");
    let text = whole["content"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(
        whole["usage"]["output_tokens"].as_u64().unwrap() as u32,
        count_tokens(&text)
    );
    assert_eq!(
        whole["usage"]["input_tokens"].as_u64().unwrap() as u32,
        count_tokens("Be brief.") + count_tokens("Summarise the call.")
    );

    let streamed = http
        .post(claude_url(&sim, "streamRawPredict"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&streamed);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let mut streamed_text = String::new();
    for (name, data) in &events {
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["type"], name.as_deref().unwrap());
        if name.as_deref() == Some("content_block_delta") {
            streamed_text.push_str(data["delta"]["text"].as_str().unwrap());
        }
        if name.as_deref() == Some("message_delta") {
            assert_eq!(
                data["usage"]["output_tokens"].as_u64().unwrap() as u32,
                count_tokens(&text)
            );
            assert_eq!(data["delta"]["stop_reason"], "end_turn");
        }
    }
    assert_eq!(streamed_text, text);
}

#[tokio::test]
async fn claude_on_vertex_errors() {
    let sim = vertex_sim(AuthMode::Present).await;
    let http = reqwest::Client::new();
    let body = json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let post = |b: Value| {
        http.post(claude_url(&sim, "rawPredict"))
            .bearer_auth("t")
            .json(&b)
            .send()
    };

    set_faults(&sim, "vertex", json!({"errors": {"overloaded": 1.0}})).await;
    let response = post(body.clone()).await.unwrap();
    assert_eq!(response.status().as_u16(), 529);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["type"],
        "overloaded_error"
    );
    set_faults(
        &sim,
        "vertex",
        json!({"errors": {"overloaded": 0.0, "throttle": 1.0}, "retry_after_s": 7}),
    )
    .await;
    let response = post(body.clone()).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    set_faults(&sim, "vertex", json!({"errors": {"throttle": 0.0}})).await;

    let mut no_version = body.clone();
    no_version
        .as_object_mut()
        .unwrap()
        .remove("anthropic_version");
    let mut with_model = body.clone();
    with_model["model"] = json!("claude-3-5-sonnet");
    let mut no_max = body.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    for bad in [no_version, with_model, no_max] {
        let response = post(bad.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{bad}");
    }

    set_faults(
        &sim,
        "vertex",
        json!({"stream_error_after_tokens": 1, "stream_error": "overloaded"}),
    )
    .await;
    let streamed = http
        .post(claude_url(&sim, "streamRawPredict"))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&streamed);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["error"]["type"],
        "overloaded_error"
    );
}

#[tokio::test]
async fn metadata_server_requires_its_flavor_header() {
    let sim = vertex_sim(AuthMode::Issued).await;
    let url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        sim.url("identity")
    );
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
    let token: Value = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "Bearer");
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let response = http
        .post(gemini_url(&sim, "generateContent"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crossbar-sim-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
