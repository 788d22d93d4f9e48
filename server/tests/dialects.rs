//! The real `crossbar` binary's other dialects, Anthropic Messages (`/v1/messages`)
//! and OpenAI Responses (`/v1/responses`), in front of simulated OpenAI-compatible
//! endpoints, over raw HTTP: the engine's failover and stream continuation reach
//! their clients in each dialect's own events, errors come in each dialect's shape,
//! and the ledger records the dialect. Each test starts its own simulators and
//! server (own database file).

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the real binary is driven over real sockets in real time"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use router_core::config::TeamConfig;
use router_core::config::{AuthConfig, EndpointConfig, FeatureConfig, Provider, RouterConfig};
use serde_json::{Value, json};
use server::store::sha256_hex;
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

struct Harness {
    sim: Sim,
    child: Child,
    base: String,
    key: String,
    http: reqwest::Client,
    dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Simulated OpenAI endpoints `primary` and `backup`, one feature `summarize` bound to
/// them in order, and `edit` to shape the rest.
async fn start(test: &str, edit: impl FnOnce(&mut RouterConfig)) -> Harness {
    let names = ["primary", "backup"];
    let sim = Sim::start(SimConfig {
        seed: 3,
        control: None,
        endpoints: names
            .iter()
            .map(|n| {
                let mut spec = EndpointSpec::new(*n, Kind::Openai);
                spec.auth = AuthMode::None;
                spec
            })
            .collect(),
    })
    .await
    .unwrap();
    let endpoints = names
        .iter()
        .map(|n| {
            let mut e = EndpointConfig::new(n, Provider::Openai, "gpt-4o-mini", "eastus");
            e.base_url = Some(sim.url(n));
            e.auth = AuthConfig::None;
            e.timeouts.request_ms = 5_000;
            e
        })
        .collect();
    let mut config = RouterConfig {
        endpoints,
        features: vec![FeatureConfig::new("summarize", &names)],
        teams: vec![TeamConfig {
            name: "search".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
        }],
        ..RouterConfig::default()
    };
    edit(&mut config);

    let dir = std::env::temp_dir().join(format!(
        "crossbar-dialects-{test}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = format!("cb-test-{:016x}", fastrand::u64(..));
    let mut file = toml::to_string(&config).unwrap();
    file.push_str(&format!(
        "\n[[gateway_keys]]\nteam = \"search\"\nname = \"search-test\"\nsha256 = \"{}\"\n",
        sha256_hex(&key)
    ));
    let config_path = dir.join("crossbar.toml");
    std::fs::write(&config_path, file).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossbar"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-console",
            "--config",
        ])
        .arg(&config_path)
        .arg("--db")
        .arg(dir.join("crossbar.db"))
        .env("CROSSBAR_LOG", "warn")
        .env("CROSSBAR_WORKERS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("crossbar printed nothing").unwrap();
        let base = line
            .strip_prefix("crossbar: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim_end_matches('/')
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        base
    })
    .await
    .unwrap();
    Harness {
        sim,
        child,
        base,
        key,
        http: reqwest::Client::new(),
        dir,
    }
}

impl Harness {
    fn faults(&self, endpoint: &str, patch: Value) {
        let ep = self.sim.endpoint(endpoint);
        ep.set_faults(ep.faults().patched(&patch).unwrap());
    }

    fn answered(&self, endpoint: &str) -> usize {
        self.sim.requests(endpoint).len()
    }

    /// `POST {path}` with the gateway key as a bearer token.
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The ledger's dialect for `request_id`, once the batching writer has written it.
    async fn ledger_dialect(&self, request_id: &str) -> String {
        let store = server::store::Store::open(&self.dir.join("crossbar.db"))
            .await
            .unwrap();
        for _ in 0..100 {
            if let Some(record) = store.ledger_record(request_id).await.unwrap() {
                return record.dialect.as_str().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{request_id} never reached the ledger");
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// `(event, data)` of every SSE event of a body, and its comment lines.
fn parse_events(body: &str) -> (Vec<(String, Value)>, Vec<String>) {
    let mut events = Vec::new();
    let mut comments = Vec::new();
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(": ") {
                comments.push(c.to_owned());
            } else if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(d).unwrap());
            }
        }
        if let (Some(name), Some(data)) = (name, data) {
            assert_eq!(data["type"], name.as_str(), "{block}");
            events.push((name, data));
        }
    }
    (events, comments)
}

fn event_names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn messages_request(stream: bool) -> Value {
    json!({"model": "summarize", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "Tell me a long story"}]})
}

fn responses_request(stream: bool) -> Value {
    json!({"model": "summarize", "max_output_tokens": 50, "stream": stream,
        "input": "Tell me a long story"})
}

/// The text of a Messages stream's text deltas.
fn messages_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect()
}

/// The text of a Responses stream's text deltas.
fn responses_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn messages_streams_fail_over_before_the_first_token_and_continue_after_it() {
    let h = start("messages-continue", |_| {}).await;

    // Broken before its first token: the backup serves, the client sees one clean
    // stream.
    h.faults("primary", json!({"cut_after_tokens": 0}));
    let r = h.post("/v1/messages", &messages_request(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-crossbar-endpoint"), "backup");
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let id = header(&r, "x-request-id").to_owned();
    assert_eq!(
        header(&r, "request-id"),
        id,
        "Anthropic's request-id header"
    );
    let (events, comments) = parse_events(&r.text().await.unwrap());
    let names = event_names(&events);
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[1], "ping");
    assert!(
        names.ends_with(&["content_block_stop", "message_delta", "message_stop"]),
        "{names:?}"
    );
    assert!(
        !names.contains(&"error") && comments.is_empty(),
        "{names:?}"
    );
    assert_eq!(
        events[0].1["message"]["id"],
        format!("msg_{}", &id["req_".len()..])
    );
    assert!(!messages_text(&events).is_empty());
    assert_eq!(h.ledger_dialect(&id).await, "messages");

    // Broken after its first tokens: continued on the backup; one message, one end,
    // the continuation said in an SSE comment before `message_stop`.
    h.faults("primary", json!({"cut_after_tokens": 3}));
    let backup_before = h.answered("backup");
    let r = h.post("/v1/messages", &messages_request(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-crossbar-endpoint"),
        "primary",
        "committed there"
    );
    let body = r.text().await.unwrap();
    let (events, comments) = parse_events(&body);
    let names = event_names(&events);
    assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1);
    assert_eq!(names.iter().filter(|n| **n == "message_stop").count(), 1);
    assert_eq!(names.last(), Some(&"message_stop"), "{body}");
    assert!(!names.contains(&"error"), "{body}");
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("x-crossbar-continued from=primary to=backup")),
        "{body}"
    );
    let continued = body.find(": x-crossbar-continued").unwrap();
    assert!(continued < body.find("event: message_stop").unwrap());
    let delta = &events[names.len() - 2].1;
    assert_eq!(delta["type"], "message_delta");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 3,
        "the whole answer's usage: {delta}"
    );
    assert!(
        messages_text(&events).split_whitespace().count() > 3,
        "more than the prefix: {body}"
    );
    assert_eq!(h.answered("backup"), backup_before + 1);
}

#[tokio::test]
async fn messages_a_stream_broken_after_its_first_token_without_continuation_ends_with_event_error()
{
    let h = start("messages-error", |c| c.features[0].continue_streams = false).await;
    h.faults("primary", json!({"cut_after_tokens": 3}));
    let r = h.post("/v1/messages", &messages_request(true)).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let (events, _) = parse_events(&body);
    let names = event_names(&events);
    let (last, error) = events.last().unwrap();
    assert_eq!(last, "error", "{body}");
    assert_eq!(error["error"]["type"], "api_error");
    assert_eq!(error["error"]["code"], "stream_interrupted");
    assert!(
        !names.contains(&"message_stop"),
        "never a clean end: {body}"
    );
    assert!(
        !messages_text(&events).is_empty(),
        "text came before the failure"
    );
    assert_eq!(h.answered("backup"), 0);
}

#[tokio::test]
async fn responses_streams_fail_over_before_the_first_token_and_continue_after_it() {
    let h = start("responses-continue", |_| {}).await;

    h.faults("primary", json!({"cut_after_tokens": 0}));
    let r = h.post("/v1/responses", &responses_request(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-crossbar-endpoint"), "backup");
    let id = header(&r, "x-request-id").to_owned();
    let (events, comments) = parse_events(&r.text().await.unwrap());
    let names = event_names(&events);
    assert_eq!(names[..2], ["response.created", "response.in_progress"]);
    assert!(
        matches!(
            *names.last().unwrap(),
            "response.completed" | "response.incomplete"
        ),
        "{names:?}"
    );
    assert!(
        !names.contains(&"error") && comments.is_empty(),
        "{names:?}"
    );
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64);
    }
    let last = &events.last().unwrap().1["response"];
    assert_eq!(last["id"], format!("resp_{}", &id["req_".len()..]));
    assert_eq!(
        last["output"][0]["content"][0]["text"].as_str().unwrap(),
        responses_text(&events)
    );
    assert_eq!(h.ledger_dialect(&id).await, "responses");

    h.faults("primary", json!({"cut_after_tokens": 3}));
    let backup_before = h.answered("backup");
    let r = h.post("/v1/responses", &responses_request(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-crossbar-endpoint"),
        "primary",
        "committed there"
    );
    let body = r.text().await.unwrap();
    let (events, comments) = parse_events(&body);
    let names = event_names(&events);
    assert_eq!(
        names.iter().filter(|n| **n == "response.created").count(),
        1
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "response.output_item.added")
            .count(),
        1,
        "one message: {body}"
    );
    assert!(
        !names.contains(&"error") && !names.contains(&"response.failed"),
        "{body}"
    );
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("x-crossbar-continued from=primary to=backup")),
        "{body}"
    );
    let last = &events.last().unwrap().1["response"];
    assert_eq!(
        last["output"][0]["content"][0]["text"].as_str().unwrap(),
        responses_text(&events),
        "the final response holds exactly what was streamed"
    );
    assert!(
        last["usage"]["output_tokens"].as_u64().unwrap() > 3,
        "{last}"
    );
    assert_eq!(h.answered("backup"), backup_before + 1);
}

#[tokio::test]
async fn responses_a_stream_broken_after_its_first_token_without_continuation_ends_with_error_and_failed()
 {
    let h = start("responses-error", |c| {
        c.features[0].continue_streams = false
    })
    .await;
    h.faults("primary", json!({"cut_after_tokens": 3}));
    let r = h.post("/v1/responses", &responses_request(true)).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let (events, _) = parse_events(&body);
    let names = event_names(&events);
    assert!(names.ends_with(&["error", "response.failed"]), "{body}");
    let error = &events[names.len() - 2].1;
    assert_eq!(error["code"], "stream_interrupted");
    let failed = &events.last().unwrap().1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "stream_interrupted");
    assert!(!names.contains(&"response.completed"), "never a clean end");
    assert!(
        !responses_text(&events).is_empty(),
        "text came before the failure"
    );
    assert_eq!(h.answered("backup"), 0);
}

#[tokio::test]
async fn each_dialect_answers_whole_requests_and_errors_in_its_own_shape() {
    let h = start("shapes", |_| {}).await;

    // Whole answers.
    let r = h.post("/v1/messages", &messages_request(false)).await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-request-id").to_owned();
    let message: Value = r.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["type"], "text");
    assert!(message["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(h.ledger_dialect(&id).await, "messages");
    let r = h.post("/v1/responses", &responses_request(false)).await;
    assert_eq!(r.status(), 200);
    let response: Value = r.json().await.unwrap();
    assert_eq!(response["object"], "response");
    assert_eq!(response["store"], false);
    assert_eq!(response["output"][0]["type"], "message");
    // The chat route still records its own dialect.
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "summarize", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-request-id").to_owned();
    assert_eq!(h.ledger_dialect(&id).await, "chat");

    // The Anthropic key header, any anthropic-version.
    let r = h
        .http
        .post(format!("{}/v1/messages", h.base))
        .header("x-api-key", &h.key)
        .header("anthropic-version", "1999-01-01")
        .json(&messages_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}`.
    let anthropic = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let request_id = header(&r, "request-id").to_owned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["request_id"], request_id.as_str(), "{body}");
        (
            status,
            body["error"]["type"].as_str().unwrap().to_owned(),
            body,
        )
    };
    let no_key = h
        .http
        .post(format!("{}/v1/messages", h.base))
        .json(&messages_request(false))
        .send()
        .await
        .unwrap();
    let (status, kind, body) = anthropic(no_key).await;
    assert_eq!(
        (status, kind.as_str()),
        (401, "authentication_error"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-api-key")
    );
    let (status, kind, body) = anthropic(
        h.post(
            "/v1/messages",
            &json!({"model": "summarize", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert_eq!(body["error"]["message"], "max_tokens: Field required");
    let (status, kind, _) = anthropic(
        h.post("/v1/messages", &json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .await,
    )
    .await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));
    let huge = "x".repeat(server::gateway::MAX_BODY_BYTES + 1);
    let (status, kind, _) = anthropic(
        h.post("/v1/messages", &json!({"model": "summarize", "max_tokens": 5, "messages": [{"role": "user", "content": huge}]}))
            .await,
    )
    .await;
    assert_eq!((status, kind.as_str()), (413, "request_too_large"));
    let get = h
        .http
        .get(format!("{}/v1/messages", h.base))
        .send()
        .await
        .unwrap();
    let (status, kind, _) = anthropic(get).await;
    assert_eq!((status, kind.as_str()), (405, "invalid_request_error"));
    // count_tokens: an estimate, marked.
    let r = h
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "summarize", "messages": [{"role": "user", "content": "Tell me a long story"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-crossbar-token-count"), "estimate");
    let count: Value = r.json().await.unwrap();
    assert_eq!(count, json!({"input_tokens": 5, "estimated": true}));
    // Every endpoint down: nothing could take it, Anthropic's 529.
    h.faults("primary", json!({"outage": "unavailable"}));
    h.faults("backup", json!({"outage": "unavailable"}));
    let (status, kind, body) =
        anthropic(h.post("/v1/messages", &messages_request(false)).await).await;
    assert_eq!((status, kind.as_str()), (529, "overloaded_error"), "{body}");

    // The Responses API: OpenAI's error shape, the normalised class in `code`.
    let r = h
        .post(
            "/v1/responses",
            &json!({"model": "summarize", "input": "hi", "previous_response_id": "resp_1"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert_eq!(body["error"]["param"], "previous_response_id");
    let r = h
        .http
        .post(format!("{}/v1/responses", h.base))
        .json(&responses_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}
