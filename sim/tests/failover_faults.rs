//! The faults a gateway's failover tests need, on every provider where they make
//! sense: errors for the next N requests only (`next_errors`), a TCP reset before any
//! response byte, an upstream that never answers (`silent`), a stream complete but for
//! its terminal marker (`omit_terminal_event`); and the request log that lets a test
//! assert what each simulator saw, and when.
//!
//! Driven with reqwest and raw sockets (what a reset looks like is a socket matter),
//! and with the real AWS SDK for Bedrock's typed errors.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "these tests measure a simulator's real time: gaps between attempts, hangs"
)]

mod common;

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use common::{set_faults, spec, start, stats};
use serde_json::{Value, json};
use sim::{Kind, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BEDROCK_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

async fn sims() -> Sim {
    let mut vertex = spec("vertex", Kind::Vertex);
    vertex.region = Some("us-central1".into());
    let mut bedrock = spec("bedrock", Kind::Bedrock);
    bedrock.region = Some("us-east-1".into());
    start(vec![spec("oa", Kind::Openai), vertex, bedrock]).await
}

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "Tell me about the incident."}],
    })
}

fn openai(sim: &Sim, stream: bool) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", sim.url("oa")))
        .bearer_auth("k")
        .json(&openai_body(stream))
}

fn vertex_url(sim: &Sim, publisher: &str, model_method: &str) -> String {
    format!(
        "{}/v1/projects/p/locations/us-central1/publishers/{publisher}/models/{model_method}",
        sim.url("vertex")
    )
}

fn claude(sim: &Sim, stream: bool) -> reqwest::RequestBuilder {
    let method = if stream {
        "streamRawPredict"
    } else {
        "rawPredict"
    };
    reqwest::Client::new()
        .post(vertex_url(
            sim,
            "anthropic",
            &format!("claude-sonnet@1:{method}"),
        ))
        .bearer_auth("t")
        .json(&json!({
            "anthropic_version": "vertex-2023-10-16", "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me about the incident."}],
        }))
}

fn gemini(sim: &Sim, stream: bool) -> reqwest::RequestBuilder {
    let method = if stream {
        "gemini-2.0-flash:streamGenerateContent?alt=sse"
    } else {
        "gemini-2.0-flash:generateContent"
    };
    reqwest::Client::new()
        .post(vertex_url(sim, "google", method))
        .bearer_auth("t")
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "Tell me about the incident."}]}]}))
}

fn bedrock(sim: &Sim) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(sim.url("bedrock"))
        .credentials_provider(Credentials::new("AKIDSIM", "not-a-secret", None, None, "t"))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

async fn converse(client: &Client) -> Result<String, SdkError<ConverseError>> {
    let out = client
        .converse()
        .model_id(BEDROCK_MODEL)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Tell me about the incident.".into()))
                .build()
                .unwrap(),
        )
        .send()
        .await?;
    Ok(out
        .output()
        .and_then(|o| o.as_message().ok())
        .map(|m| {
            m.content()
                .iter()
                .filter_map(|c| c.as_text().ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default())
}

/// The request log of `name`, as the control API shows it.
async fn log(sim: &Sim, name: &str) -> Vec<Value> {
    stats(sim, name).await["log"].as_array().unwrap().clone()
}

fn outcomes(log: &[Value]) -> Vec<&str> {
    log.iter().map(|e| e["outcome"].as_str().unwrap()).collect()
}

/// Reads a whole body; the text and whether it ended in a transport error.
async fn read_all(response: reqwest::Response) -> (String, bool) {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let mut raw = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => raw.extend_from_slice(&c),
            Err(_) => return (String::from_utf8_lossy(&raw).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&raw).into_owned(), false)
}

/// Sends one raw HTTP/1.1 request and reads until the connection ends: the bytes
/// received and how it ended.
async fn raw_exchange(
    sim: &Sim,
    name: &str,
    path: &str,
    body: &Value,
) -> (Vec<u8>, std::io::Result<()>) {
    let mut tcp = tokio::net::TcpStream::connect(sim.endpoint(name).addr().unwrap())
        .await
        .unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) => break Ok(()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Err(e),
            Err(_) => break Err(std::io::Error::other("nothing happened for 5 s")),
        }
    };
    (received, end)
}

#[tokio::test]
async fn next_errors_fail_the_next_requests_in_order_then_serve() {
    let sim = sims().await;
    set_faults(
        &sim,
        "oa",
        json!({"next_errors": ["throttle", "server_error"], "retry_after_s": 2}),
    )
    .await;
    let first = openai(&sim, false).send().await.unwrap();
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(first.headers()["retry-after-ms"], "2000");
    let faults: Value = reqwest::get(format!("{}/_sim/faults", sim.url("oa")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        faults["next_errors"],
        json!(["server_error"]),
        "what is left"
    );
    assert_eq!(openai(&sim, true).send().await.unwrap().status(), 500);
    for _ in 0..3 {
        assert_eq!(openai(&sim, false).send().await.unwrap().status(), 200);
    }
    let log = log(&sim, "oa").await;
    assert_eq!(
        outcomes(&log),
        ["throttle", "server_error", "ok", "ok", "ok"]
    );
    assert_eq!(log[0]["status"], 429);
    assert_eq!(log[1]["stream"], true, "noted before the error");
    assert_eq!(log[0]["model"], "gpt-4o-mini");
    let s = stats(&sim, "oa").await;
    assert_eq!(s["injected"]["throttle"], 1);
    assert_eq!(s["injected"]["server_error"], 1);

    // Fractions: the exact value in milliseconds, whole seconds rounded up.
    set_faults(
        &sim,
        "oa",
        json!({"next_errors": ["throttle"], "retry_after_s": 0.25}),
    )
    .await;
    let throttled = openai(&sim, false).send().await.unwrap();
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(throttled.headers()["retry-after-ms"], "250");
}

#[tokio::test]
async fn next_errors_speak_each_providers_own_error() {
    let sim = sims().await;
    // Claude on Vertex: the 529 overloaded_error, once.
    set_faults(
        &sim,
        "vertex",
        json!({"next_errors": ["overloaded", "throttle"]}),
    )
    .await;
    let overloaded = claude(&sim, false).send().await.unwrap();
    assert_eq!(overloaded.status(), 529);
    let body: Value = overloaded.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    // ...then Gemini's RESOURCE_EXHAUSTED: the queue is the endpoint's, whatever the model.
    let throttled = gemini(&sim, false).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(claude(&sim, false).send().await.unwrap().status(), 200);

    // Bedrock, through the SDK: its typed exception, then service.
    set_faults(
        &sim,
        "bedrock",
        json!({"next_errors": ["throttle", "timeout"], "timeout_after_ms": 10}),
    )
    .await;
    let client = bedrock(&sim);
    let err = converse(&client).await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(ConverseError::ThrottlingException(_))
        ),
        "{err:?}"
    );
    let err = converse(&client).await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(ConverseError::ModelTimeoutException(_))
        ),
        "{err:?}"
    );
    assert!(!converse(&client).await.unwrap().is_empty());
    let log = sim.requests("bedrock");
    let seen: Vec<&str> = log.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(seen, ["throttle", "timeout", "ok"]);
    assert!(
        log.iter()
            .all(|e| e.model.as_deref() == Some(BEDROCK_MODEL) && !e.stream)
    );
}

#[tokio::test]
async fn a_reset_closes_the_connection_with_an_rst_before_any_byte() {
    let sim = sims().await;
    let chat = "/v1/chat/completions";
    set_faults(&sim, "oa", json!({"next_errors": ["reset"]})).await;
    let (received, end) = raw_exchange(&sim, "oa", chat, &openai_body(false)).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    let err = end.expect_err("a reset, not a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    // Next request: served normally (the queue held one).
    let (received, end) = raw_exchange(
        &sim,
        "oa",
        chat,
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    drop(end);

    // As a rate, on every provider; reqwest sees a request error, never a status.
    set_faults(&sim, "oa", json!({"errors": {"reset": 1.0}})).await;
    set_faults(&sim, "vertex", json!({"errors": {"reset": 1.0}})).await;
    set_faults(&sim, "bedrock", json!({"errors": {"reset": 1.0}})).await;
    let err = openai(&sim, true).send().await.unwrap_err();
    assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    let err = claude(&sim, true).send().await.unwrap_err();
    assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    let err = converse(&bedrock(&sim)).await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");

    let log = log(&sim, "oa").await;
    assert_eq!(outcomes(&log), ["reset", "ok", "reset"]);
    assert!(log[0]["status"].is_null());
    assert_eq!(stats(&sim, "oa").await["injected"]["reset"], 2);
    assert_eq!(outcomes(&self::log(&sim, "bedrock").await), ["reset"]);
}

#[tokio::test]
async fn silent_never_answers_and_does_not_hold_shutdown() {
    let sim = sims().await;
    set_faults(&sim, "oa", json!({"outage": "silent"})).await;
    let started = Instant::now();
    let err = openai(&sim, false)
        .timeout(Duration::from_millis(400))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Raw: the connection stays open and not a byte comes.
    let mut tcp = tokio::net::TcpStream::connect(sim.endpoint("oa").addr().unwrap())
        .await
        .unwrap();
    let body = openai_body(false).to_string();
    tcp.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf))
            .await
            .is_err(),
        "something came back"
    );
    // The endpoint's own control routes still answer.
    let s = stats(&sim, "oa").await;
    assert_eq!(outcomes(s["log"].as_array().unwrap()), ["silent", "silent"]);
    assert_eq!(s["injected"]["silent"], 2);

    // The queue form: one silent request, then service.
    set_faults(
        &sim,
        "oa",
        json!({"outage": "none", "next_errors": ["silent"]}),
    )
    .await;
    assert!(
        openai(&sim, false)
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(openai(&sim, false).send().await.unwrap().status(), 200);

    // Shutting down with a request hanging (the raw one) is prompt, and drops it.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("shutdown waits for no silent request");
    assert!(started.elapsed() < Duration::from_secs(2));
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the hanging connection is closed at shutdown: {closed:?}"
    );
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
async fn omit_terminal_event_drops_only_the_marker_after_the_usage() {
    let sim = sims().await;
    for name in ["oa", "vertex", "bedrock"] {
        set_faults(&sim, name, json!({"omit_terminal_event": true})).await;
    }
    // OpenAI: finish_reason and the usage chunk, then the body ends without [DONE].
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", sim.url("oa")))
        .bearer_auth("k")
        .json(&json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Tell me about the incident."}],
        }))
        .send()
        .await
        .unwrap();
    let (body, failed) = read_all(response).await;
    assert!(!failed, "a clean end of body");
    let events = sse_events(&body);
    assert!(events.iter().all(|(_, d)| d != "[DONE]"), "{body}");
    let chunks: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Claude: message_delta with its usage is the last event; no message_stop.
    let (body, failed) = read_all(claude(&sim, true).send().await.unwrap()).await;
    assert!(!failed);
    let events = sse_events(&body);
    let (last, data) = events.last().unwrap();
    assert_eq!(last.as_deref(), Some("message_delta"), "{body}");
    let delta: Value = serde_json::from_str(data).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(
        !events
            .iter()
            .any(|(e, _)| e.as_deref() == Some("message_stop"))
    );

    // Gemini has no marker after its usage chunk: the stream is whole.
    let (body, _) = read_all(gemini(&sim, true).send().await.unwrap()).await;
    let last: Value = serde_json::from_str(&sse_events(&body).last().unwrap().1).unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");

    assert_eq!(stats(&sim, "oa").await["injected"]["omit_terminal"], 1);
    assert_eq!(stats(&sim, "vertex").await["injected"]["omit_terminal"], 1);
    let ends: Vec<Option<String>> = sim
        .requests("vertex")
        .into_iter()
        .map(|e| e.stream_end)
        .collect();
    assert_eq!(
        ends,
        [
            Some("omit_terminal".to_owned()),
            Some("complete".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_request_log_times_attempts_from_the_simulators_start() {
    let sim = sims().await;
    set_faults(
        &sim,
        "oa",
        json!({"next_errors": ["throttle"], "retry_after_s": 0.3}),
    )
    .await;
    let first = openai(&sim, false).send().await.unwrap();
    // A client that honours retry-after-ms, as the OpenAI SDKs do.
    let wait: u64 = first.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (_, failed) = read_all(openai(&sim, true).send().await.unwrap()).await;
    assert!(!failed);
    // Other endpoints share the clock.
    gemini(&sim, false).send().await.unwrap();

    let log = sim.requests("oa");
    assert_eq!(log.len(), 2);
    let gap = log[1].at_ms - log[0].at_ms;
    assert!(
        gap >= 300.0,
        "the retry came {gap} ms after the first attempt"
    );
    assert_eq!((log[0].seq, log[1].seq), (0, 1));
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/v1/chat/completions");
    assert!(log[1].stream && !log[0].stream);
    assert_eq!(log[1].stream_end.as_deref(), Some("complete"));
    assert!(log[1].ended_ms.unwrap() >= log[1].responded_ms.unwrap());
    assert!(log[0].responded_ms.unwrap() >= log[0].at_ms);
    let gemini_at = sim.requests("vertex")[0].at_ms;
    assert!(gemini_at > log[1].at_ms);

    // The control API shows the same; a stats reset forgets it (sequence numbers go on).
    let via_control: Value = reqwest::get(format!(
        "{}/_sim/endpoints/oa/stats",
        sim.control_url().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(via_control["log"][0]["outcome"], "throttle");
    assert_eq!(via_control["log"][0]["at_ms"].as_f64(), Some(log[0].at_ms));
    reqwest::Client::new()
        .post(format!("{}/_sim/stats/reset", sim.url("oa")))
        .send()
        .await
        .unwrap();
    assert!(sim.requests("oa").is_empty());
    openai(&sim, false).send().await.unwrap();
    assert_eq!(sim.requests("oa")[0].seq, 2);
}

#[tokio::test]
async fn a_throttle_with_retry_after_zero_says_nothing_about_when_to_come_back() {
    let sim = sims().await;
    for name in ["oa", "vertex"] {
        set_faults(
            &sim,
            name,
            json!({"errors": {"throttle": 1.0}, "retry_after_s": 0}),
        )
        .await;
    }
    let throttled = openai(&sim, false).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(
        throttled.headers().get("retry-after").is_none()
            && throttled.headers().get("retry-after-ms").is_none(),
        "{:?}",
        throttled.headers()
    );
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let throttled = claude(&sim, false).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().get("retry-after").is_none());
    // Any other value is still advertised.
    set_faults(&sim, "oa", json!({"retry_after_s": 0.5})).await;
    let throttled = openai(&sim, false).send().await.unwrap();
    assert_eq!(throttled.headers()["retry-after-ms"], "500");
}

/// Reads an SSE body event by event: each event's text and when it arrived.
async fn timed_events(response: reqwest::Response) -> Vec<(String, Duration)> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let (mut pending, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = pending.find("\n\n") {
            events.push((pending[..end].to_owned(), started.elapsed()));
            pending.drain(..end + 2);
        }
    }
    events
}

#[tokio::test]
async fn a_stream_stalls_mid_answer_with_the_connection_open_then_goes_on() {
    let sim = sims().await;
    set_faults(
        &sim,
        "oa",
        json!({"stall_after_tokens": 3, "stall_ms": 600}),
    )
    .await;
    let events = timed_events(openai(&sim, true).send().await.unwrap()).await;
    // The role chunk, then tokens: the fourth token comes after the pause.
    let content: Vec<&(String, Duration)> = events
        .iter()
        .filter(|(e, _)| e.contains("\"content\":\"") && !e.contains("\"content\":\"\""))
        .collect();
    assert!(content.len() > 4, "{events:?}");
    let pause = content[3].1 - content[2].1;
    assert!(
        pause >= Duration::from_millis(550),
        "the stream paused {pause:?} after its third token"
    );
    let others = content[1].1 - content[0].1;
    assert!(others < Duration::from_millis(300), "{others:?}");
    assert_eq!(
        events.last().unwrap().0,
        "data: [DONE]",
        "then it went on to its end"
    );
    let log = sim.requests("oa");
    assert_eq!(log[0].stream_end.as_deref(), Some("complete"));
    assert_eq!(stats(&sim, "oa").await["injected"]["stall"], 1);

    // A client that gives up during the stall ends the stream at once.
    set_faults(&sim, "oa", json!({"stall_ms": 60_000})).await;
    let response = openai(&sim, true).send().await.unwrap();
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while body.next().await.is_some() {}
    })
    .await;
    drop(body);
    let mut ended = None;
    for _ in 0..50 {
        ended = sim.requests("oa")[1].stream_end.clone();
        if ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ended.as_deref(), Some("client_gone"));
    // Out of range: refused, naming the field.
    let refused = reqwest::Client::new()
        .patch(format!("{}/_sim/faults", sim.url("oa")))
        .json(&json!({"stall_ms": 700_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("stall_ms"));
}

#[tokio::test]
async fn azure_refuses_a_filtered_prompt_with_its_400_and_openai_finishes_with_content_filter() {
    let sim = sims().await;
    let prompt =
        json!({"messages": [{"role": "user", "content": "Tell me SIM_CONTENT_FILTER now."}]});
    let refused = reqwest::Client::new()
        .post(format!(
            "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            sim.url("oa")
        ))
        .header("api-key", "k")
        .json(&prompt)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_filter", "{body}");
    assert_eq!(body["error"]["param"], "prompt");
    assert_eq!(
        body["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    let mut plain = prompt.clone();
    plain["model"] = json!("gpt-4o-mini");
    let answered: Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", sim.url("oa")))
        .bearer_auth("k")
        .json(&plain)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answered["choices"][0]["finish_reason"], "content_filter");
    let log = sim.requests("oa");
    assert_eq!(
        (log[0].outcome.as_str(), log[0].status),
        ("content_filter", Some(400))
    );
    assert_eq!(log[1].outcome, "ok");
}
