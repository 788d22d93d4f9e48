//! Every fault knob observably changes what a client sees, the control API refuses
//! bad settings without changing anything, and the load generator reports what the
//! simulator did. Driven with plain reqwest against the OpenAI surface (the simplest
//! wire), plus the process-wide control API.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "these tests measure a simulator's real latency and pacing"
)]

mod common;

use std::time::{Duration, Instant};

use common::{set_faults, spec, start, stats};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sim::load::{self, LoadSpec, Mode};
use sim::{Kind, Sim};

async fn sim() -> Sim {
    start(vec![spec("oa", Kind::Openai), spec("other", Kind::Openai)]).await
}

fn chat(sim: &Sim, stream: bool) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(format!("{}/v1/chat/completions", sim.url("oa"))).bearer_auth("k").json(&json!({
        "model": "m", "stream": stream, "messages": [{"role": "user", "content": "Tell me about the incident."}],
    }))
}

/// Reads a stream; returns its data lines and whether the body ended with an error.
async fn read_stream(response: reqwest::Response) -> (Vec<String>, bool) {
    let mut body = response.bytes_stream();
    let mut raw = Vec::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => raw.extend_from_slice(&c),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    (
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect(),
        failed,
    )
}

fn content_chunks(lines: &[String]) -> usize {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count()
}

#[tokio::test]
async fn latency_ttft_and_token_rate_shape_the_timing() {
    let sim = sim().await;
    let started = Instant::now();
    chat(&sim, false)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let baseline = started.elapsed();

    set_faults(&sim, "oa", json!({"latency_ms": 300})).await;
    let started = Instant::now();
    let response = chat(&sim, true).send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "headers came before the added latency"
    );
    drop(response);

    set_faults(&sim, "oa", json!({"latency_ms": 0, "ttft_ms": 400})).await;
    let started = Instant::now();
    let response = chat(&sim, true).send().await.unwrap();
    let headers_at = started.elapsed();
    let mut body = response.bytes_stream();
    let mut first_token_at = None;
    let mut raw = String::new();
    while let Some(chunk) = body.next().await {
        raw.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_token_at.is_none()
            && raw.contains("\"content\":\"")
            && raw.matches("\"content\":").count() > 1
        {
            first_token_at = Some(started.elapsed());
        }
    }
    assert!(
        headers_at < Duration::from_millis(300),
        "headers should not wait for the first token: {headers_at:?}"
    );
    assert!(
        first_token_at.unwrap() >= Duration::from_millis(400),
        "{first_token_at:?}"
    );

    set_faults(
        &sim,
        "oa",
        json!({"ttft_ms": 0, "tokens_per_second": 100.0}),
    )
    .await;
    let started = Instant::now();
    let reply: Value = chat(&sim, false)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = reply["usage"]["completion_tokens"].as_u64().unwrap();
    let expected = Duration::from_millis((tokens - 1) * 10);
    assert!(
        started.elapsed() >= expected,
        "{tokens} tokens at 100/s took {:?}",
        started.elapsed()
    );
    assert!(
        baseline < expected,
        "the baseline ({baseline:?}) must be faster for this test to mean anything"
    );
}

#[tokio::test]
async fn error_rates_inject_each_class_with_retry_after() {
    let sim = sim().await;
    set_faults(
        &sim,
        "oa",
        json!({"errors": {"throttle": 1.0}, "retry_after_s": 3}),
    )
    .await;
    let response = chat(&sim, false).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.headers()["retry-after-ms"], "3000");

    set_faults(
        &sim,
        "oa",
        json!({"errors": {"throttle": 0.0, "server_error": 1.0}}),
    )
    .await;
    assert_eq!(chat(&sim, false).send().await.unwrap().status(), 500);
    set_faults(
        &sim,
        "oa",
        json!({"errors": {"server_error": 0.0, "overloaded": 1.0}}),
    )
    .await;
    assert_eq!(chat(&sim, true).send().await.unwrap().status(), 503);

    // A timeout hangs first: a client with a shorter deadline sees its own timeout.
    set_faults(
        &sim,
        "oa",
        json!({"errors": {"overloaded": 0.0, "timeout": 1.0}, "timeout_after_ms": 2000}),
    )
    .await;
    let err = chat(&sim, false)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    set_faults(&sim, "oa", json!({"timeout_after_ms": 50})).await;
    assert_eq!(chat(&sim, false).send().await.unwrap().status(), 408);

    set_faults(
        &sim,
        "oa",
        json!({"errors": {"timeout": 0.0, "throttle": 0.25}}),
    )
    .await;
    let mut throttled = 0;
    for _ in 0..200 {
        if chat(&sim, false).send().await.unwrap().status() == 429 {
            throttled += 1;
        }
    }
    assert!(
        (30..=75).contains(&throttled),
        "25% of 200 requests, got {throttled}"
    );
    let s = stats(&sim, "oa").await;
    assert_eq!(s["injected"]["throttle"].as_u64().unwrap(), 1 + throttled);
    assert_eq!(s["statuses"]["429"].as_u64().unwrap(), 1 + throttled);
}

#[tokio::test]
async fn refuse_outage_closes_the_port_and_control_brings_it_back() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", sim.url("oa"));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    assert!(
        client
            .post(&url)
            .bearer_auth("k")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    set_faults(&sim, "oa", json!({"outage": "refuse"})).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The pooled keep-alive connection was dropped, and a new one is refused.
    let err = client
        .post(&url)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let err = reqwest::Client::new()
        .post(&url)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Other endpoints are unaffected.
    assert!(
        reqwest::get(format!("{}/_sim", sim.url("other")))
            .await
            .unwrap()
            .status()
            .is_success()
    );

    let control = sim.control_url().unwrap();
    let restored = client
        .patch(format!("{control}/_sim/endpoints/oa/faults"))
        .json(&json!({"outage": "none"}))
        .send()
        .await
        .unwrap();
    assert!(restored.status().is_success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "same port serves again");

    set_faults(&sim, "oa", json!({"outage": "unavailable"})).await;
    assert_eq!(
        client
            .post(&url)
            .bearer_auth("k")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test]
async fn capacity_throttles_beyond_tokens_per_minute_with_rate_limit_headers() {
    let sim = sim().await;
    set_faults(&sim, "oa", json!({"capacity_tpm": 200})).await;
    let mut remaining = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = chat(&sim, false).send().await.unwrap();
        statuses.push(response.status().as_u16());
        remaining.push(
            response.headers()["x-ratelimit-remaining-tokens"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "200");
    }
    let first_429 = statuses
        .iter()
        .position(|s| *s == 429)
        .expect("capacity throttles");
    assert!(first_429 >= 2, "{statuses:?}");
    assert!(
        statuses[first_429..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    assert!(remaining.windows(2).all(|w| w[1] <= w[0]), "{remaining:?}");
    let s = stats(&sim, "oa").await;
    assert!(s["prompt_tokens"].as_u64().unwrap() + s["completion_tokens"].as_u64().unwrap() <= 200);
    assert_eq!(
        s["injected"]["capacity"].as_u64().unwrap(),
        (10 - first_429) as u64
    );
}

#[tokio::test]
async fn stream_faults_cut_end_early_corrupt_or_error() {
    let sim = sim().await;
    let (lines, failed) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    assert!(!failed && lines.last().map(String::as_str) == Some("[DONE]"));

    set_faults(&sim, "oa", json!({"cut_after_tokens": 3})).await;
    let (lines, failed) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    assert!(failed, "a cut is a transport error, not a clean end");
    assert_eq!(content_chunks(&lines), 3);
    assert!(!lines.iter().any(|l| l == "[DONE]"));

    set_faults(
        &sim,
        "oa",
        json!({"cut_after_tokens": null, "end_stream_after_tokens": 4}),
    )
    .await;
    let (lines, failed) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    assert!(!failed);
    assert_eq!(content_chunks(&lines), 4);
    assert!(
        !lines
            .iter()
            .any(|l| l == "[DONE]" || l.contains("finish_reason\":\"stop"))
    );

    set_faults(
        &sim,
        "oa",
        json!({"end_stream_after_tokens": null, "malformed_after_tokens": 2}),
    )
    .await;
    let (lines, _) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| *l != "[DONE]" && serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert_eq!(bad.len(), 1, "{lines:?}");

    set_faults(&sim, "oa", json!({"malformed_after_tokens": null, "stream_error_after_tokens": 1, "stream_error": "throttle"})).await;
    let (lines, _) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "rate_limit_exceeded");
    assert_eq!(content_chunks(&lines), 1);
}

#[tokio::test]
async fn control_api_rejects_bad_settings_and_changes_nothing() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let faults_url = format!("{}/_sim/faults", sim.url("oa"));
    set_faults(&sim, "oa", json!({"ttft_ms": 120})).await;
    let before: Value = client
        .get(&faults_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    for bad in [
        "{not json",
        r#"{"ttft_ms": "slow"}"#,
        r#"{"errors": {"throttle": 1.5}}"#,
        r#"{"unknown_knob": 1}"#,
        r#"[1, 2]"#,
        r#"{"stream_error": "unavailable"}"#,
    ] {
        for method in [reqwest::Method::PATCH, reqwest::Method::PUT] {
            let response = client
                .request(method.clone(), &faults_url)
                .body(bad)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{method} {bad}");
            let error: Value = response.json().await.unwrap();
            assert!(!error["error"].as_str().unwrap().is_empty());
        }
    }
    let after: Value = client
        .get(&faults_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before, after);

    // PUT replaces: fields not given return to their defaults.
    let put: Value = client
        .put(&faults_url)
        .json(&json!({"latency_ms": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (put["latency_ms"].as_u64(), put["ttft_ms"].as_u64()),
        (Some(5), Some(0))
    );

    let control = sim.control_url().unwrap();
    let list: Value = client
        .get(format!("{control}/_sim/endpoints"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        client
            .get(format!("{control}/_sim/endpoints/nope/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let via_control: Value = client
        .get(format!("{control}/_sim/endpoints/oa/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_control["latency_ms"], 5);
}

#[tokio::test]
async fn stats_count_requests_tokens_and_statuses_and_reset() {
    let sim = sim().await;
    let reply: Value = chat(&sim, false)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (lines, _) = read_stream(chat(&sim, true).send().await.unwrap()).await;
    assert!(!lines.is_empty());
    let bad = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", sim.url("oa")))
        .bearer_auth("k")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    let s = stats(&sim, "oa").await;
    assert_eq!(s["requests"], 2);
    assert_eq!(s["streaming_requests"], 1);
    assert_eq!(s["statuses"]["200"], 2);
    assert_eq!(s["statuses"]["400"], 1);
    assert_eq!(
        s["prompt_tokens"].as_u64().unwrap(),
        2 * reply["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    let reset: Value = reqwest::Client::new()
        .post(format!("{}/_sim/stats/reset", sim.url("oa")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["requests"], 0);
}

#[tokio::test]
async fn same_seed_same_answers_across_processes() {
    let (a, b) = (sim().await, sim().await);
    let ra: Value = chat(&a, false).send().await.unwrap().json().await.unwrap();
    let rb: Value = chat(&b, false).send().await.unwrap().json().await.unwrap();
    assert_eq!(ra["choices"], rb["choices"]);
    assert_eq!(ra["usage"], rb["usage"]);
}

#[tokio::test]
async fn load_generator_reports_latency_ttft_and_errors() {
    let sim = sim().await;
    set_faults(&sim, "oa", json!({"ttft_ms": 20})).await;
    let spec = LoadSpec {
        url: format!("{}/v1/chat/completions", sim.url("oa")),
        model: "m".into(),
        api_key: Some("k".into()),
        stream: true,
        mode: Mode::Concurrency(4),
        duration: Duration::from_secs(20),
        max_requests: Some(40),
        max_tokens: None,
        prompt: "hello".into(),
        users: 10,
        timeout: Duration::from_secs(10),
        http2_prior_knowledge: false,
    };
    let report = load::run(spec.clone()).await.unwrap();
    assert_eq!((report.requests, report.ok), (40, 40), "{report}");
    let ttft = report.ttft.as_ref().unwrap();
    assert!(ttft.p50_ms >= 20.0 && ttft.count == 40, "{report}");
    assert!(report.latency.p99_ms >= report.latency.p50_ms);
    assert!(report.completion_tokens > 40 * 10);

    // The same over h2c, which the simulator serves on the same port (that the flag
    // really speaks h2c is the next test's).
    let report = load::run(LoadSpec {
        http2_prior_knowledge: true,
        ..spec.clone()
    })
    .await
    .unwrap();
    assert_eq!((report.requests, report.ok), (40, 40), "{report}");
    assert!(report.ttft.as_ref().unwrap().p50_ms >= 20.0, "{report}");

    set_faults(&sim, "oa", json!({"errors": {"throttle": 1.0}})).await;
    let report = load::run(LoadSpec {
        mode: Mode::Rate(200.0),
        max_requests: Some(20),
        stream: false,
        ..spec
    })
    .await
    .unwrap();
    assert_eq!(report.requests, 20);
    assert_eq!(
        report.errors.get("http_429:rate_limit_exceeded"),
        Some(&20),
        "{report}"
    );
}

#[tokio::test]
async fn load_generator_speaks_h2c_from_the_first_byte_when_asked() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    let first_bytes = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        tcp.read_exact(&mut preface).await.unwrap();
        preface
    });
    let report = load::run(LoadSpec {
        url,
        model: "m".into(),
        api_key: None,
        stream: false,
        mode: Mode::Concurrency(1),
        duration: Duration::from_secs(10),
        max_requests: Some(1),
        max_tokens: None,
        prompt: "hello".into(),
        users: 1,
        timeout: Duration::from_secs(2),
        http2_prior_knowledge: true,
    })
    .await
    .unwrap();
    // HTTP/2's connection preface (RFC 9113 §3.4), not an HTTP/1.1 request line.
    assert_eq!(
        &first_bytes.await.unwrap(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    );
    assert_eq!((report.requests, report.ok), (1, 0), "{report}");
}
