//! The real `crossbar` binary on port 0, in front of simulated OpenAI-compatible
//! endpoints, driven from outside: an independent OpenAI client (`async-openai`) and
//! raw HTTP. Each test starts its own simulators and server (own database file).

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the real binary is driven over real sockets in real time"
)]

mod common;

use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use common::{Harness, ROLES, header, price, user_message};
use futures_util::StreamExt;
use router_core::config::{
    BreakerParams, Capacity, ExperimentConfig, Pricing, RouterConfig, VariantConfig,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

async fn start(test: &str, names: &[&str], edit: impl FnOnce(&mut RouterConfig)) -> Harness {
    start_with(test, names, edit, &[]).await
}

/// As [`start`], with more `crossbar serve` arguments.
async fn start_with(
    test: &str,
    names: &[&str],
    edit: impl FnOnce(&mut RouterConfig),
    args: &[&str],
) -> Harness {
    let upstreams = names.iter().map(|n| common::Upstream::openai(n)).collect();
    common::start_with_args(test, upstreams, args, |c| {
        for e in &mut c.endpoints {
            e.timeouts.request_ms = 5_000;
        }
        edit(c);
    })
    .await
}

#[tokio::test]
async fn an_unchanged_openai_client_gets_chat_and_streams_with_usage() {
    let h = start("client", &["primary", "backup"], |_| {}).await;
    let client = h.openai();
    let message = || {
        ChatCompletionRequestUserMessageArgs::default()
            .content("Summarise the incident report.")
            .build()
            .unwrap()
            .into()
    };
    let request = CreateChatCompletionRequestArgs::default()
        .model("summarize")
        .messages([message()])
        .max_tokens(40u32)
        .build()
        .unwrap();
    let reply = client.chat().create(request).await.unwrap();
    assert!(
        !reply.choices[0]
            .message
            .content
            .as_deref()
            .unwrap_or("")
            .is_empty()
    );
    let usage = reply.usage.unwrap();
    assert!(
        usage.prompt_tokens > 0
            && usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    );

    let request = CreateChatCompletionRequestArgs::default()
        .model("summarize")
        .messages([message()])
        .max_tokens(40u32)
        .stream(true)
        .stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        })
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let (mut text, mut last_usage) = (String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for c in &chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
        }
        if chunk.usage.is_some() {
            last_usage = chunk.usage;
        }
    }
    assert!(!text.is_empty());
    assert!(last_usage.expect("usage comes last").completion_tokens > 0);

    // The routing headers, on raw HTTP.
    let r = h.chat(user_message("hello")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-crossbar-endpoint"), "primary");
    assert_eq!(header(&r, "x-crossbar-provider"), "openai");
    assert_eq!(header(&r, "x-crossbar-variant"), "default");
    assert_eq!(header(&r, "x-crossbar-attempts"), "1");
    assert!(header(&r, "x-request-id").starts_with("req_"));
}

#[tokio::test]
async fn a_down_primary_fails_over_to_the_backup() {
    let h = start("failover", &["primary", "backup"], |c| {
        c.retry.max_retries = 0
    })
    .await;
    h.faults("primary", json!({"outage": "refuse"}));
    let r = h.chat(user_message("hello")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-crossbar-endpoint"), "backup");
    assert_eq!(header(&r, "x-crossbar-attempts"), "2");
}

#[tokio::test]
async fn a_ttft_spike_trips_the_breaker_which_recovers_through_the_ramp() {
    let h = start("breaker", &["primary", "backup"], |c| {
        c.features[0].thresholds.ttft_p90_ms = Some(200);
        c.features[0].ttft_timeout_ms = Some(3_000);
        c.breaker.defaults = BreakerParams {
            min_requests: Some(4),
            window_s: Some(5),
            open_ms: Some(600),
            stage_ms: Some(200),
            stage_min_requests: Some(2),
            ramp_percent: Some(vec![50.0, 100.0]),
            ..BreakerParams::default()
        };
    })
    .await;
    h.faults("primary", json!({"ttft_ms": 500}));
    let stream = |i: usize| {
        json!({"model": "summarize", "stream": true, "user": format!("u{i}"),
               "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    };
    for i in 0..10 {
        let _ = h.chat(stream(i)).await.text().await;
        if h.breaker_state("primary").await == "open" {
            break;
        }
    }
    assert_eq!(h.breaker_state("primary").await, "open");
    let r = h.chat(stream(100)).await;
    assert_eq!(
        header(&r, "x-crossbar-endpoint"),
        "backup",
        "traffic left the slow endpoint"
    );
    let _ = r.text().await;

    h.faults("primary", json!({"ttft_ms": 0}));
    let mut states = Vec::new();
    for i in 0..300 {
        let _ = h.chat(stream(1000 + i)).await.text().await;
        let s = h.breaker_state("primary").await;
        if states.last() != Some(&s) {
            states.push(s.clone());
        }
        if s == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("closed"),
        "{states:?}"
    );
    assert!(
        states.contains(&"ramp".to_owned()),
        "recovered through the ramp: {states:?}"
    );
    let (_, events) = h
        .admin(
            "viewer",
            reqwest::Method::GET,
            "/breaker-events?limit=50",
            None,
        )
        .await;
    let trip = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["transition"]["to"] == "open")
        .expect("the trip is recorded");
    assert_eq!(trip["transition"]["reason"]["signal"], "ttft_p90");
    assert_eq!(trip["transition"]["reason"]["threshold"], 200.0);
}

/// How many of 60 sticky users land in variant `a`.
async fn split(h: &Harness) -> usize {
    let mut a = 0;
    for i in 0..60 {
        let mut body = user_message("x");
        body["user"] = json!(format!("user-{i}"));
        let r = h.chat(body).await;
        a += usize::from(header(&r, "x-crossbar-variant") == "a");
    }
    a
}

#[tokio::test]
async fn an_ab_change_published_through_the_admin_api_reaches_traffic_and_rolls_back() {
    let h = start("ab", &["a-ep", "b-ep"], |c| {
        c.features[0].experiment = Some(ExperimentConfig {
            id: "exp".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 50.0,
                    binding: vec!["a-ep".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 50.0,
                    binding: vec!["b-ep".into()],
                },
            ],
        });
    })
    .await;
    let before = split(&h).await;
    assert!((15..=45).contains(&before), "about half in a: {before}");

    let (_, active) = h
        .admin("viewer", reqwest::Method::GET, "/config", None)
        .await;
    let base = active["version"].as_i64().unwrap();
    let edit = json!({
        "binding": [],
        "experiment": {"id": "exp", "variants": [
            {"name": "a", "percent": 100.0, "binding": ["a-ep"]},
            {"name": "b", "percent": 0.0, "binding": ["b-ep"]}]},
        "base_version": base,
        "message": "all in on a"
    });
    let (status, body) = h.edit_summarize("viewer", edit.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, result) = h.edit_summarize("experimenter", edit.clone()).await;
    assert_eq!(status, 200, "{result}");
    let published = result["version"].as_i64().unwrap();
    assert_eq!(published, base + 1);
    assert_eq!(
        split(&h).await,
        60,
        "the new split is live without a restart"
    );

    // A stale edit is refused and changes nothing.
    let (status, body) = h.edit_summarize("experimenter", edit).await;
    assert_eq!(
        (status, body["current_version"].as_i64()),
        (409, Some(published))
    );

    let (status, result) = h
        .admin_post(
            "experimenter",
            "/config/rollback",
            json!({"to_version": base, "base_version": published}),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    let after = split(&h).await;
    assert_eq!(
        after, before,
        "sticky assignment: the same users land where they were"
    );
    let (_, audit) = h
        .admin("viewer", reqwest::Method::GET, "/audit", None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.starts_with(&["rollback", "edit_feature"]),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_eu_bound_feature_is_never_served_outside_the_eu_even_with_every_eu_endpoint_down() {
    let h = start("boundary", &["eu-a", "eu-b", "us-a"], |c| {
        c.features[0].binding = vec!["eu-a".into(), "eu-b".into()];
        c.features[0].geographies = vec!["eu".into()];
        c.retry.max_retries = 0;
    })
    .await;
    h.faults("eu-a", json!({"outage": "refuse"}));
    h.faults("eu-b", json!({"outage": "unavailable"}));
    for _ in 0..10 {
        let r = h.chat(user_message("personal data")).await;
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
    }
    assert_eq!(h.answered("us-a"), 0);
}

#[tokio::test]
async fn a_burst_spills_from_provisioned_to_on_demand_with_no_request_dropped() {
    let h = start("spill", &["prov", "ondemand"], |c| {
        c.endpoints[0].capacity = Capacity::Provisioned {
            tokens_per_minute: 1_500,
            spill_to: Some("ondemand".into()),
        };
        c.endpoints[0].pricing = Pricing {
            hourly: Some(Decimal::from(10)),
            ..Pricing::default()
        };
        c.features[0].binding = vec!["prov".into()];
    })
    .await;
    h.faults("prov", json!({"capacity_tpm": 1_000}));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = h.http.clone();
        let url = format!("{}/v1/chat/completions", h.base);
        let key = h.key.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"model": "summarize", "user": format!("u{i}"),
                    "messages": [{"role": "user", "content": "Summarise the quarterly numbers in detail"}],
                    "max_tokens": 30}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut spilled = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status(), 200, "no request dropped at the ceiling");
        spilled += usize::from(header(&r, "x-crossbar-spilled") == "true");
    }
    assert!(spilled > 0 && h.answered("ondemand") > 0);
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_error_in_the_openai_shape() {
    let h = start("bad", &["primary"], |_| {}).await;
    let url = format!("{}/v1/chat/completions", h.base);
    let post = |body: Vec<u8>, key: Option<&str>| {
        let mut r = h
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let key = Some(h.key.as_str());
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), key, 400, "invalid_request"),
        ("a field of the wrong type", br#"{"model":"summarize","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#.to_vec(), key, 400, "invalid_request"),
        ("an unknown field", br#"{"model":"summarize","messages":[{"role":"user","content":"x"}],"temprature":1}"#.to_vec(), key, 400, "invalid_request"),
        ("no messages", br#"{"model":"summarize","messages":[]}"#.to_vec(), key, 400, "invalid_request"),
        ("an unknown feature", br#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(), key, 404, "not_found"),
        ("an oversized body", format!(r#"{{"model":"summarize","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(5 << 20)).into_bytes(), key, 413, "payload_too_large"),
        ("a missing key", br#"{"model":"summarize","messages":[{"role":"user","content":"x"}]}"#.to_vec(), None, 401, "unauthorized"),
        ("a bad key", br#"{"model":"summarize","messages":[{"role":"user","content":"x"}]}"#.to_vec(), Some("cb-nope"), 401, "unauthorized"),
    ];
    for (what, body, key, status, code) in cases {
        let r = post(body, key).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert!(body["error"]["type"].is_string(), "{what}");
    }
    // The wrong-type case names the field.
    let r = post(
        br#"{"model":"summarize","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#
            .to_vec(),
        Some(&h.key),
    )
    .await
    .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["param"],
        "temperature"
    );
    // A body in several chunks (no Content-Length) is joined; one past the limit in
    // chunks is refused like the declared one.
    let chunked = |parts: Vec<Vec<u8>>| {
        let stream = futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
        h.http
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth(&h.key)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
    };
    let whole = br#"{"model":"summarize","messages":[{"role":"user","content":"in three parts"}]}"#;
    let parts = vec![
        whole[..10].to_vec(),
        whole[10..30].to_vec(),
        whole[30..].to_vec(),
    ];
    let r = chunked(parts).await.unwrap();
    assert_eq!(r.status(), 200);
    let padding = vec![b' '; 1 << 20];
    let r = chunked(vec![padding; 6]).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    // The wrong method on a gateway route: 405 in the same shape, saying what is allowed.
    for (method, path, allowed) in [
        (reqwest::Method::GET, "/v1/chat/completions", "POST"),
        (reqwest::Method::PUT, "/v1/models", "GET,HEAD"),
    ] {
        let r = h
            .http
            .request(method.clone(), format!("{}{path}", h.base))
            .bearer_auth(&h.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allowed, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(method.as_str()),
            "{body}"
        );
    }
    // Nothing was lost: the server still answers.
    assert_eq!(h.chat(user_message("still there?")).await.status(), 200);
}

#[tokio::test]
async fn every_admin_route_enforces_its_role() {
    let h = start("roles", &["primary"], |_| {}).await;
    let (status, doc) = h
        .admin("viewer", reqwest::Method::GET, "/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{}", paths.len());
    let may = |role: &str, permission: &str| match permission {
        "read" => true,
        "override" | "feedback" => matches!(role, "operator" | "admin"),
        "edit_feature" | "rollback" => matches!(role, "experimenter" | "admin"),
        _ => role == "admin",
    };
    let mut checked = 0;
    for (path, ops) in paths {
        let path = path
            .trim_start_matches("/admin/v1")
            .replace("{version}", "1")
            .replace("{name}", "primary")
            .replace("{id}", "nope");
        for (method, op) in ops.as_object().unwrap() {
            let permission = op["x-crossbar-permission"].as_str().unwrap();
            let method = reqwest::Method::from_str(&method.to_uppercase()).unwrap();
            if path == "/events" {
                continue; // a stream: checked below
            }
            // No token at all: 401 everywhere.
            let r = h
                .http
                .request(method.clone(), format!("{}/admin/v1{path}", h.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} {path} without a token");
            for role in ROLES {
                // An empty JSON body: allowed callers get past the role check and fail
                // on the body (400/404/422), refused ones get 403 first.
                let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE)
                    .then(|| json!({}));
                let (status, resp) = h.admin(role, method.clone(), &path, body).await;
                if may(role, permission) {
                    assert_ne!(status, 403, "{role} may {method} {path}: {resp}");
                } else {
                    assert_eq!(status, 403, "{role} may not {method} {path}: {resp}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 18, "{checked}");
    let r = h
        .http
        .get(format!(
            "{}/admin/v1/events?access_token={}",
            h.base, h.tokens["viewer"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let r = h
        .http
        .get(format!("{}/admin/v1/events?access_token=nope", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_ledgers_spend_for_a_feature_equals_the_sum_of_its_requests_token_costs() {
    let h = start("spend", &["primary"], |_| {}).await;
    let p = price();
    let mut expected = Decimal::ZERO;
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Spend reads per-minute rollups: whole minutes, from the one this test starts in.
    let from = from - from % 60_000;
    for i in 0..25 {
        let r = h
            .chat(user_message(&format!("Summarise item {i} of the backlog")))
            .await;
        let body: Value = r.json().await.unwrap();
        let usage = &body["usage"];
        expected += (Decimal::from(usage["prompt_tokens"].as_u64().unwrap()) * p.input_per_million
            + Decimal::from(usage["completion_tokens"].as_u64().unwrap()) * p.output_per_million)
            / Decimal::from(1_000_000);
    }
    // The ledger is written in batches off the hot path: wait for it to catch up.
    let mut report = Value::Null;
    for _ in 0..50 {
        let to = from + 3_600_000;
        let (_, r) = h
            .admin(
                "viewer",
                reqwest::Method::GET,
                &format!("/spend?from_ms={from}&to_ms={to}&group_by=feature"),
                None,
            )
            .await;
        report = r;
        if report["rows"][0]["requests"] == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = &report["rows"][0];
    assert_eq!(
        (row["key"].as_str(), row["requests"].as_u64()),
        (Some("summarize"), Some(25)),
        "{report}"
    );
    let on_demand = Decimal::from_str(row["on_demand"].as_str().unwrap()).unwrap();
    assert_eq!(
        on_demand,
        expected.normalize(),
        "spend is exact, in decimals"
    );
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("crossbar_requests_total{feature=\"summarize\",variant=\"default\",endpoint=\"primary\",outcome=\"ok\"} 25"), "{metrics}");
    assert!(metrics.contains("crossbar_ledger_records_total{fate=\"dropped\"} 0"));
}

#[tokio::test]
async fn a_stream_cut_after_its_first_tokens_is_continued_on_the_backup() {
    let h = start("continued", &["primary", "backup"], |_| {}).await;
    h.faults("primary", json!({"cut_after_tokens": 3}));
    let r = h
        .chat(json!({"model": "summarize", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 50}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-crossbar-endpoint"),
        "primary",
        "committed there"
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "one clean end: {text}");
    assert!(!text.contains("\"error\""), "{text}");
    assert!(
        text.contains(": x-crossbar-continued from=primary to=backup method=instruction"),
        "{text}"
    );
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let ids: std::collections::HashSet<&str> =
        chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one stream for the client: {ids:?}");
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_string())
        .count();
    assert_eq!(roles, 1, "one assistant turn");
    let finishes = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .count();
    assert_eq!(finishes, 1);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 3, "{usage}");
    assert_eq!(h.answered("backup"), 1);
}

#[tokio::test]
async fn a_failure_after_the_first_token_ends_the_stream_with_an_error_event_when_continuation_is_off()
 {
    let h = start("midstream", &["primary", "backup"], |c| {
        c.features[0].continue_streams = false;
    })
    .await;
    h.faults("primary", json!({"cut_after_tokens": 3}));
    let r = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 50}))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let last = events.last().unwrap();
    assert!(last.starts_with("data: {\"error\""), "{text}");
    assert!(last.contains("stream_interrupted"), "{last}");
    assert!(
        !text.contains("[DONE]"),
        "never a clean end after a failure"
    );
    assert!(events.len() > 2, "tokens were streamed before the failure");
    assert_eq!(h.answered("backup"), 0);
}

#[tokio::test]
async fn feedback_on_a_request_reaches_its_endpoints_breaker() {
    let h = start("feedback", &["primary"], |_| {}).await;
    let r = h.chat(user_message("rate me")).await;
    let request_id = header(&r, "x-request-id").to_owned();
    assert_eq!(r.status(), 200);
    let body = json!({"request_id": request_id, "positive": false});
    // The ledger is written off the hot path: the request becomes known within moments.
    let mut status = 0;
    for _ in 0..50 {
        (status, _) = h.admin_post("operator", "/feedback", body.clone()).await;
        if status != 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 204);
    let (_, endpoints) = h
        .admin("viewer", reqwest::Method::GET, "/endpoints", None)
        .await;
    assert_eq!(endpoints[0]["stats"]["feedback_down"], 1, "{endpoints}");
    let (status, body) = h
        .admin_post(
            "operator",
            "/feedback",
            json!({"request_id": "req_nope", "positive": true}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn shutdown_drains_open_streams_and_flushes_the_ledger() {
    let mut h = start("drain", &["primary"], |_| {}).await;
    h.faults("primary", json!({"tokens_per_second": 20}));
    let r = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 30}))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    // SIGTERM while the stream is open: it must finish, then the process exits.
    unsafe {
        libc::kill(h.child.id() as i32, libc::SIGTERM);
    }
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("data: [DONE]"),
        "the open stream completed"
    );
    let status = tokio::task::spawn_blocking({
        let mut child = std::mem::replace(
            &mut h.child,
            std::process::Command::new("true").spawn().unwrap(),
        );
        move || child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    let store = server::store::Store::open(&h.dir.0.join("crossbar.db"))
        .await
        .unwrap();
    assert_eq!(
        store.ledger_count().await.unwrap(),
        1,
        "the stream's record was flushed"
    );
}

/// The allocator's tuning reaches mimalloc by its own variable names: a server
/// started without them restarts itself with them (mimalloc prints its options when
/// `MIMALLOC_VERBOSE` is set), and an operator's own value wins.
#[test]
fn the_server_runs_with_the_allocator_tuned_and_an_operators_setting_kept() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crossbar"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-console"])
        .env("MIMALLOC_VERBOSE", "1")
        .env("MIMALLOC_PURGE_DELAY", "7")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MIMALLOC_PAGE_COMMIT_ON_DEMAND")
        .env_remove("CROSSBAR_CONFIG")
        .env_remove("CROSSBAR_DB")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The last value mimalloc printed for an option is the one it runs with.
    let option = |name: &str| {
        stderr
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(&format!("option '{name}': ")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("mimalloc printed no `{name}`:\n{stderr}"))
            .to_owned()
    };
    assert_eq!(option("arena_eager_commit"), "0");
    assert_eq!(option("page_commit_on_demand"), "1");
    assert_eq!(option("purge_delay"), "7", "the operator's value");
    assert!(
        stderr.contains("the store has no configuration yet"),
        "then it went on as usual: {stderr}"
    );
}

#[tokio::test]
async fn a_malformed_chunk_mid_stream_is_skipped_counted_and_never_reaches_the_client() {
    let h = start("malformed", &["primary"], |_| {}).await;
    h.faults("primary", json!({"malformed_after_tokens": 3}));
    let r = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 50}))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data != "[DONE]" {
            let chunk: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
            assert_eq!(chunk["object"], "chat.completion.chunk", "{data}");
        }
    }
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "crossbar_stream_chunks_skipped_total{feature=\"summarize\",variant=\"default\",endpoint=\"primary\"} 1"
        ),
        "{metrics}"
    );
}

/// An upstream that answers every request with `status` and `body`, like a cloud
/// whose error text says too much. Returns its base URL.
async fn leaky_upstream(status: &'static str, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request head and its body (by Content-Length), then answer.
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Clouds' error bodies carry masked key suffixes, role ARNs and internal addresses:
/// a client gets the class and a safe message; the detail stays in the ledger's
/// attempt records (and the log) for operators.
#[tokio::test]
async fn upstream_error_text_never_reaches_the_client_but_stays_in_the_ledger() {
    const LEAKY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-proj-****************wxyz. Assumed role arn:aws:iam::123456789012:role/crossbar-prod via http://10.20.30.40:8443","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let upstream = leaky_upstream("401 Unauthorized", LEAKY).await;
    let h = start("sanitize", &["leaky"], |c| {
        c.endpoints[0].base_url = Some(upstream.clone());
        c.retry.max_retries = 0;
    })
    .await;
    let secrets = ["sk-proj", "wxyz", "arn:aws", "123456789012", "10.20.30.40"];
    let r = h.chat(user_message("hello")).await;
    assert_eq!(r.status(), 502);
    let request_id = header(&r, "x-request-id").to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth", "{body}");
    let text = body.to_string();
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret} reached the client: {text}"
        );
    }
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("leaky") && m.contains("upstream_auth")),
        "which endpoint failed, by class: {body}"
    );
    // Streaming: the same.
    let mut stream = user_message("hello");
    stream["stream"] = json!(true);
    let r = h.chat(stream).await;
    let text = r.text().await.unwrap();
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret} reached the client: {text}"
        );
    }

    // The operator's view: the ledger's attempt keeps what the upstream said.
    let store = server::store::Store::open(&h.dir.0.join("crossbar.db"))
        .await
        .unwrap();
    let mut record = None;
    for _ in 0..100 {
        record = store.ledger_record(&request_id).await.unwrap();
        if record.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = record.expect("the failed request is in the ledger");
    let detail = record.attempts[0].message.clone().unwrap_or_default();
    assert!(detail.contains("arn:aws:iam::123456789012"), "{detail}");
    // ... and the admin API (the console's failed-requests view) shows it, with the
    // credential redacted.
    let (status, failed) = h
        .admin(
            "viewer",
            reqwest::Method::GET,
            &format!("/requests/failed?request_id={request_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{failed}");
    let attempt = &failed[0]["attempts"][0];
    assert_eq!(
        (failed[0]["outcome"].as_str(), attempt["endpoint"].as_str()),
        (Some("upstream_auth"), Some("leaky"))
    );
    let shown = attempt["detail"].as_str().unwrap_or_default();
    assert!(
        shown.contains("arn:aws:iam::123456789012") && !shown.contains("sk-proj"),
        "{shown}"
    );
    let (_, recent) = h
        .admin("viewer", reqwest::Method::GET, "/requests/failed", None)
        .await;
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["request_id"] == request_id.as_str()),
        "{recent}"
    );
}

/// Raises this process's open-file limit to its hard limit (the child inherits it).
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

fn addr(h: &Harness) -> String {
    h.base.trim_start_matches("http://").to_owned()
}

/// Whether `socket` is closed by the server within `within`: it reads end-of-file
/// (or a reset), not a timeout.
fn closed_within(socket: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

async fn healthz(h: &Harness) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/healthz", h.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// 2,000 sockets that connect and say nothing: the server keeps answering
/// `/healthz`, and closes every one of them once the header-read timeout has passed
/// (they used to stay open for ever, and enough of them exhausted the process's
/// file descriptors).
#[tokio::test]
async fn silent_sockets_are_closed_and_health_checks_keep_answering() {
    let fds = raise_fd_limit();
    assert!(
        fds >= 5_000,
        "the test needs 5,000 file descriptors, has {fds}"
    );
    let h = start_with(
        "silent",
        &["primary"],
        |_| {},
        &["--header-read-timeout", "3s"],
    )
    .await;
    let target = addr(&h);
    let opened = std::time::Instant::now();
    let mut sockets = tokio::task::spawn_blocking(move || {
        (0..2_000)
            .map(|_| std::net::TcpStream::connect(&target).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            healthz(&h).await,
            200,
            "/healthz under 2,000 silent sockets"
        );
    }
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = opened + Duration::from_secs(20);
        let mut closed = 0;
        for s in &mut sockets {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            closed += usize::from(closed_within(s, left.max(Duration::from_millis(1))));
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 2_000, "every silent socket was closed within 20 s");
    assert_eq!(healthz(&h).await, 200);
}

/// Past the per-address cap a new connection is answered a 503 and closed at once;
/// when one closes, there is room again.
#[tokio::test]
async fn a_connection_past_the_per_address_cap_gets_a_503_and_is_closed() {
    let h = start_with(
        "cap",
        &["primary"],
        |_| {},
        &["--max-connections-per-ip", "3"],
    )
    .await;
    let target = addr(&h);
    let (held, refused) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let held: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(&target).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = std::net::TcpStream::connect(&target).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = extra.read_to_string(&mut answer);
        (held, answer)
    })
    .await
    .unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("\"code\":\"unavailable\""),
        "{refused}"
    );
    assert_ne!(healthz(&h).await, 200, "still full");
    drop(held);
    let mut answered = 0;
    for _ in 0..50 {
        answered = healthz(&h).await;
        if answered == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered, 200, "room again once the held connections closed");
}

/// A kept-alive connection with no request in flight is closed after the idle
/// timeout; one whose request body stalls gets a 400 after the body-read timeout.
#[tokio::test]
async fn idle_connections_are_closed_and_a_stalled_body_times_out() {
    let h = start_with(
        "idle",
        &["primary"],
        |_| {},
        &[
            "--idle-timeout",
            "1s",
            "--header-read-timeout",
            "30s",
            "--body-read-timeout",
            "1s",
        ],
    )
    .await;
    let (target, key) = (addr(&h), h.key.clone());
    let (idle_closed, stalled) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut idle = std::net::TcpStream::connect(&target).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1024];
        let n = idle.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let idle_closed = closed_within(&mut idle, Duration::from_secs(4));

        let mut slow = std::net::TcpStream::connect(&target).unwrap();
        write!(
            slow,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"model\": "
        )
        .unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer);
        (idle_closed, String::from_utf8_lossy(&answer).into_owned())
    })
    .await
    .unwrap();
    assert!(idle_closed, "the idle connection was closed");
    assert!(stalled.starts_with("HTTP/1.1 400"), "{stalled}");
}

/// SIGTERM with a console's event stream open, a connection that never sent a
/// request and an upstream stream that does not end for minutes: the server stops
/// within the drain deadline (it used to wait for ever), the event stream ends, the
/// cut stream is in the ledger.
#[tokio::test]
async fn shutdown_ends_within_the_drain_deadline_whatever_is_open() {
    let mut h = start_with(
        "drain-cut",
        &["primary"],
        |_| {},
        &["--drain-timeout", "2s"],
    )
    .await;
    h.faults("primary", json!({"tokens_per_second": 1}));
    let endless = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 1000}))
        .await;
    assert_eq!(endless.status(), 200);
    let mut endless = endless.bytes_stream();
    endless.next().await.unwrap().unwrap();
    let events = h
        .http
        .get(format!(
            "{}/admin/v1/events?access_token={}",
            h.base, h.tokens["viewer"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut events = events.bytes_stream();
    events.next().await.unwrap().unwrap();
    let _silent = std::net::TcpStream::connect(addr(&h)).unwrap();

    let asked = std::time::Instant::now();
    unsafe {
        libc::kill(h.child.id() as i32, libc::SIGTERM);
    }
    let events_ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await;
    assert!(events_ended.is_ok(), "the event stream ended");
    let endless_ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = endless.next().await {}
    })
    .await;
    assert!(endless_ended.is_ok(), "the endless stream was cut");
    let mut child = std::mem::replace(&mut h.child, Command::new("true").spawn().unwrap());
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    let status = status.expect("the server exited within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() >= Duration::from_millis(1_500),
        "it waited for the drain deadline first"
    );
    let store = server::store::Store::open(&h.dir.0.join("crossbar.db"))
        .await
        .unwrap();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, completion_tokens FROM usage_ledger")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "cancelled", "{rows:?}");
    assert!(rows[0].1 > 0, "what was streamed is billed: {rows:?}");
}

/// A second signal stops the server at once, without waiting out the drain
/// deadline, and what it cut is still in the ledger.
#[tokio::test]
async fn a_second_signal_stops_at_once_and_flushes_the_ledger() {
    let mut h = start_with(
        "drain-twice",
        &["primary"],
        |_| {},
        &["--drain-timeout", "60s"],
    )
    .await;
    h.faults("primary", json!({"tokens_per_second": 1}));
    let endless = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 1000}))
        .await;
    let mut endless = endless.bytes_stream();
    endless.next().await.unwrap().unwrap();
    let pid = h.child.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(h.child.try_wait().unwrap().is_none(), "still draining");
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let mut child = std::mem::replace(&mut h.child, Command::new("true").spawn().unwrap());
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..50 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    assert!(
        status
            .expect("exited within 5 s of the second signal")
            .success()
    );
    let store = server::store::Store::open(&h.dir.0.join("crossbar.db"))
        .await
        .unwrap();
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM usage_ledger")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(outcome, "cancelled");
}

/// A stream that outlives its feature's maximum duration ends with an
/// `upstream_error` event and no `[DONE]` (an upstream that never finishes used to
/// hold the stream open for as long as it liked).
#[tokio::test]
async fn a_stream_past_its_features_maximum_duration_ends_with_an_upstream_error() {
    let h = start("max-stream", &["primary"], |c| {
        c.features[0].max_stream_ms = Some(1_500);
    })
    .await;
    h.faults("primary", json!({"tokens_per_second": 2}));
    let started = std::time::Instant::now();
    let r = h
        .chat(json!({"model": "summarize", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 1000}))
        .await;
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("the stream ended")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let last = text.lines().rfind(|l| l.starts_with("data: ")).unwrap();
    let error: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(error["error"]["code"], "upstream_error", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// An HTTP/2 peer that stops answering PINGs — gone without a FIN, say — is
/// disconnected after the keep-alive interval and as long again, even with a
/// stream open (there was no HTTP/2 keep-alive: such a connection stayed for ever).
#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_disconnected() {
    let h = start_with(
        "h2-ping",
        &["primary"],
        |_| {},
        &["--http2-keep-alive", "1s"],
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(addr(&h)).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let mut connection = Box::pin(connection);
    let request = axum::http::Request::get(format!(
        "{}/admin/v1/events?access_token={}",
        h.base, h.tokens["viewer"]
    ))
    .body(())
    .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::select! {
        response = response => response.unwrap(),
        ended = &mut connection => panic!("the connection ended first: {ended:?}"),
    };
    assert_eq!(response.status(), 200);
    // The connection is no longer driven: the server's PINGs go unanswered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut connection).await;
    assert!(ended.is_ok(), "the server closed the connection");
}
