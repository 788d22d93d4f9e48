//! The failover table (README, "Failure handling by default"), one test per row: the
//! real `crossbar` binary in front of simulated clouds, the primary misbehaving and
//! the backup healthy, **with default settings** — the configuration has endpoints, a
//! binding, a team and its key, and nothing else (a row that is about a setting says
//! so). Each row runs as a whole request and as a stream where both make sense, each
//! against its own simulators and server, at the same time.
//!
//! Every test asserts both sides: what the client received (status, text,
//! `finish_reason`, `[DONE]`, usage, the `x-crossbar-*` headers) and what each
//! simulator saw (its request log: how many attempts, their outcomes, the gaps
//! between them). Ledger rows are read from the SQLite file the server writes;
//! metrics from `/metrics`, as a scraper would.
//!
//! Real time is spent only where the row is about time (a `Retry-After`, a timeout,
//! an idle stream, an outage); those rows take as long as the default they prove.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the real binary is driven over real sockets in real time"
)]

mod common;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use common::{Harness, Upstream, header, start, start_with};
use futures_util::StreamExt;
use router_core::config::Pricing;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sim::Seen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Stream,
}

/// A chat request for `summarize`: `prompt` as the user message, at most `max_tokens`
/// out; a stream asks for usage.
fn ask_body(mode: Mode, prompt: &str, max_tokens: u32) -> Value {
    let mut body = json!({
        "model": "summarize",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    });
    if mode == Mode::Stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// What the client received, whole or streamed.
#[derive(Debug, Default)]
struct Got {
    status: u16,
    endpoint: String,
    attempts: u32,
    request_id: String,
    /// The answer's text (a stream's deltas joined).
    text: String,
    finish: Option<String>,
    model: Option<String>,
    usage: Value,
    /// The error body (whole, or a stream refused before its first token), or a
    /// stream's error event.
    error: Value,
    // Streams only:
    /// It ended with `data: [DONE]`.
    done: bool,
    /// SSE comment lines (`: x-crossbar-continued ...`).
    comments: Vec<String>,
    /// Distinct chunk ids, chunks with a role, chunks with a finish reason.
    ids: usize,
    roles: usize,
    finishes: usize,
    /// Every `data:` payload, and when each event arrived.
    data: Vec<String>,
    arrivals: Vec<Duration>,
    raw: String,
    elapsed: Duration,
}

impl Got {
    fn completion_tokens(&self) -> u64 {
        self.usage["completion_tokens"].as_u64().unwrap_or(0)
    }

    fn prompt_tokens(&self) -> u64 {
        self.usage["prompt_tokens"].as_u64().unwrap_or(0)
    }
}

/// Sends `body` through the gateway and reads the whole answer.
async fn ask(h: &Harness, body: Value) -> Got {
    let stream = body["stream"] == true;
    let started = Instant::now();
    let r = h.chat(body).await;
    let mut got = Got {
        status: r.status().as_u16(),
        endpoint: header(&r, "x-crossbar-endpoint").to_owned(),
        attempts: header(&r, "x-crossbar-attempts").parse().unwrap_or(0),
        request_id: header(&r, "x-request-id").to_owned(),
        ..Got::default()
    };
    if !stream || got.status != 200 {
        let body: Value = r.json().await.unwrap();
        got.elapsed = started.elapsed();
        got.error = body["error"].clone();
        got.text = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        got.finish = body["choices"][0]["finish_reason"]
            .as_str()
            .map(str::to_owned);
        got.model = body["model"].as_str().map(str::to_owned);
        got.usage = body["usage"].clone();
        return got;
    }
    let mut bytes = r.bytes_stream();
    let mut pending = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.expect("the stream broke at the transport");
        let text = String::from_utf8(chunk.to_vec()).unwrap();
        got.raw.push_str(&text);
        pending.push_str(&text);
        while let Some(end) = pending.find("\n\n") {
            events.push((pending[..end].to_owned(), started.elapsed()));
            pending.drain(..end + 2);
        }
    }
    got.elapsed = started.elapsed();
    assert!(
        pending.is_empty(),
        "a partial event at the end: {pending:?}"
    );
    let mut ids = HashSet::new();
    for (event, at) in events {
        for line in event.lines() {
            if let Some(comment) = line.strip_prefix(": ") {
                got.comments.push(comment.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                got.data.push(data.to_owned());
                got.arrivals.push(at);
                if data == "[DONE]" {
                    got.done = true;
                    continue;
                }
                assert!(!got.done, "data after [DONE]: {}", got.raw);
                let chunk: Value = serde_json::from_str(data)
                    .unwrap_or_else(|e| panic!("malformed data reached the client ({e}): {data}"));
                if chunk.get("error").is_some() {
                    got.error = chunk["error"].clone();
                    continue;
                }
                assert_eq!(chunk["object"], "chat.completion.chunk", "{data}");
                ids.insert(chunk["id"].as_str().unwrap().to_owned());
                got.model = chunk["model"].as_str().map(str::to_owned);
                for choice in chunk["choices"].as_array().unwrap() {
                    if choice["delta"]["role"].is_string() {
                        got.roles += 1;
                    }
                    if let Some(t) = choice["delta"]["content"].as_str() {
                        got.text.push_str(t);
                    }
                    if let Some(f) = choice["finish_reason"].as_str() {
                        got.finishes += 1;
                        got.finish = Some(f.to_owned());
                    }
                }
                if !chunk["usage"].is_null() {
                    got.usage = chunk["usage"].clone();
                }
            } else {
                panic!("an unexpected SSE line: {line:?} in {}", got.raw);
            }
        }
    }
    got.ids = ids.len();
    got
}

/// A clean answer: 200, text, a finish reason, usage; for a stream, one stream (one
/// id, one role, one finish reason, usage last) that ends with `[DONE]` and no error.
fn assert_answered(got: &Got, mode: Mode) {
    assert_eq!(got.status, 200, "{mode:?}: {got:#?}");
    assert!(got.error.is_null(), "{mode:?}: {got:#?}");
    assert!(!got.text.is_empty(), "{mode:?}: {got:#?}");
    assert!(
        matches!(got.finish.as_deref(), Some("stop" | "length")),
        "{mode:?}: {got:#?}"
    );
    assert!(got.completion_tokens() > 0, "{mode:?}: {got:#?}");
    if mode == Mode::Stream {
        assert!(got.done, "{mode:?}: no [DONE]: {}", got.raw);
        assert_eq!(
            (got.ids, got.roles, got.finishes),
            (1, 1, 1),
            "{mode:?}: one stream, one turn, one finish: {}",
            got.raw
        );
        assert_eq!(
            got.data.last().map(String::as_str),
            Some("[DONE]"),
            "{}",
            got.raw
        );
    }
}

fn outcomes(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.outcome.as_str()).collect()
}

/// Milliseconds between consecutive arrivals.
fn gaps(seen: &[Seen]) -> Vec<f64> {
    seen.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect()
}

/// Runs a row as a whole request and as a stream at once, each against its own
/// simulators and server.
async fn both<F: Future<Output = ()>>(row: impl Fn(Mode) -> F) {
    tokio::join!(row(Mode::Whole), row(Mode::Stream));
}

fn name(test: &str, mode: Mode) -> String {
    format!("{test}-{mode:?}").to_lowercase()
}

/// Row: 429 with `Retry-After: 2`, once → the answer; the retry waits about the
/// header's time (it fits the 60 s deadline), not sooner.
#[tokio::test]
async fn row_429_with_retry_after_once_is_retried_after_the_asked_wait() {
    both(|mode| async move {
        let h = start(&name("retry-after", mode), &["primary", "backup"], |_| {}).await;
        h.faults(
            "primary",
            json!({"next_errors": ["throttle"], "retry_after_s": 2}),
        );
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 2),
            "{mode:?}"
        );
        assert!(
            got.elapsed >= Duration::from_millis(1_900),
            "{mode:?}: {got:#?}"
        );

        let seen = h.seen("primary");
        assert_eq!(outcomes(&seen), ["throttle", "ok"], "{mode:?}: {seen:#?}");
        assert_eq!(seen[0].status, Some(429));
        assert!(seen.iter().all(|s| s.stream == (mode == Mode::Stream)));
        let gap = gaps(&seen)[0];
        assert!(
            (1_900.0..3_000.0).contains(&gap),
            "{mode:?}: the retry came {gap} ms after a `Retry-After: 2`"
        );
        assert!(h.seen("backup").is_empty(), "{mode:?}");
    })
    .await;
}

/// Row: 429 without `Retry-After`, persistent → the backup's answer after a bounded
/// number of attempts, each retry after a real, growing, jittered backoff (200 ms
/// then 400 ms with equal jitter: at least 100 then 200 ms), never ~0 s.
#[tokio::test]
async fn row_persistent_429_without_retry_after_backs_off_then_fails_over() {
    both(|mode| async move {
        let h = start(&name("throttled", mode), &["primary", "backup"], |_| {}).await;
        h.faults(
            "primary",
            json!({"errors": {"throttle": 1.0}, "retry_after_s": 0}),
        );
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("backup", 4),
            "{mode:?}"
        );

        let seen = h.seen("primary");
        assert_eq!(
            outcomes(&seen),
            ["throttle", "throttle", "throttle"],
            "{mode:?}: the first attempt and two retries: {seen:#?}"
        );
        assert!(seen.iter().all(|s| s.status == Some(429)));
        let g = gaps(&seen);
        assert!(
            (95.0..450.0).contains(&g[0]) && (195.0..700.0).contains(&g[1]),
            "{mode:?}: backoffs of {g:?} ms: 100–200 ms, then 200–400 ms"
        );
        let backup = h.seen("backup");
        assert_eq!(outcomes(&backup), ["ok"], "{mode:?}");
        let moved = backup[0].at_ms - seen[2].at_ms;
        assert!(
            moved < 500.0,
            "{mode:?}: the backup was asked {moved} ms after the last refusal"
        );
        assert!(got.elapsed < Duration::from_secs(2), "{mode:?}: {got:#?}");
    })
    .await;
}

/// Row: 500 once → the answer, after one retry on the same endpoint.
#[tokio::test]
async fn row_500_once_is_retried_once_on_the_same_endpoint() {
    both(|mode| async move {
        let h = start(&name("500-once", mode), &["primary", "backup"], |_| {}).await;
        h.faults("primary", json!({"next_errors": ["server_error"]}));
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 2),
            "{mode:?}"
        );
        let seen = h.seen("primary");
        assert_eq!(outcomes(&seen), ["server_error", "ok"], "{mode:?}");
        assert_eq!(seen[0].status, Some(500));
        let gap = gaps(&seen)[0];
        assert!(
            (95.0..450.0).contains(&gap),
            "{mode:?}: retried after {gap} ms"
        );
        assert!(h.seen("backup").is_empty(), "{mode:?}");
    })
    .await;
}

/// Row: 503, persistent → the backup's answer within the retry budget: two retries
/// of the primary, then the backup; and in a storm, the budget (20 % of recent
/// requests plus 10 a second) caps the retries instead of doubling the load.
#[tokio::test]
async fn row_persistent_503_reaches_the_backup_within_the_retry_budget() {
    both(|mode| async move {
        let h = start(&name("503", mode), &["primary", "backup"], |_| {}).await;
        h.faults("primary", json!({"outage": "unavailable"}));
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("backup", 4),
            "{mode:?}"
        );
        let seen = h.seen("primary");
        assert_eq!(outcomes(&seen), ["unavailable"; 3], "{mode:?}: {seen:#?}");
        assert!(seen.iter().all(|s| s.status == Some(503)));
        let g = gaps(&seen);
        assert!(g.iter().all(|g| *g >= 95.0), "{mode:?}: backoffs {g:?}");
        assert_eq!(outcomes(&h.seen("backup")), ["ok"], "{mode:?}");
        assert!(got.elapsed < Duration::from_secs(2), "{mode:?}: {got:#?}");
        if mode == Mode::Stream {
            return;
        }
        // A storm: 40 requests at once against the failing primary. Without a
        // budget each would be tried three times there (120); the budget allows
        // 40 × 20 % plus the floor of 10 a second.
        h.sim.endpoint("primary").reset_stats();
        h.sim.endpoint("backup").reset_stats();
        let storm: Vec<_> = (0..40)
            .map(|i| ask(&h, ask_body(mode, &format!("Storm request {i}."), 10)))
            .collect();
        let answers = futures_util::future::join_all(storm).await;
        assert!(
            answers
                .iter()
                .all(|a| a.status == 200 && a.endpoint == "backup"),
            "every request of the storm answered by the backup"
        );
        let tried = h.seen("primary").len();
        assert!(
            tried <= 40 + 30,
            "the primary got {tried} attempts for 40 requests: retries were not capped"
        );
        assert_eq!(h.seen("backup").len(), 40);
    })
    .await;
}

/// Row: a TCP reset before any response byte → the answer (a retry of the same
/// endpoint: a reset is a blip, like a 5xx).
#[tokio::test]
async fn row_tcp_reset_before_headers_is_answered() {
    both(|mode| async move {
        let h = start(&name("reset", mode), &["primary", "backup"], |_| {}).await;
        h.faults("primary", json!({"next_errors": ["reset"]}));
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 2),
            "{mode:?}"
        );
        let seen = h.seen("primary");
        assert_eq!(outcomes(&seen), ["reset", "ok"], "{mode:?}");
        assert_eq!(
            seen[0].status, None,
            "nothing was answered before the reset"
        );
        assert!(gaps(&seen)[0] >= 95.0, "{mode:?}: {seen:#?}");
        assert!(h.seen("backup").is_empty(), "{mode:?}");
    })
    .await;
}

/// Row: no response at all (connection open, nothing sent) → the backup's answer
/// well before the client's own timeout: a whole attempt is left after 10 s + 20 ms
/// per requested token (10.6 s for 30), a stream after the 10 s TTFT limit — not the
/// 60 s deadline; and the silent endpoint is not asked again.
#[tokio::test]
async fn row_a_silent_primary_is_left_after_the_default_first_byte_timeout() {
    both(|mode| async move {
        let h = start(&name("silent", mode), &["primary", "backup"], |_| {}).await;
        h.faults("primary", json!({"outage": "silent"}));
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("backup", 2),
            "{mode:?}"
        );
        let limit = match mode {
            Mode::Whole => 10_600.0,
            Mode::Stream => 10_000.0,
        };
        let seen = h.seen("primary");
        assert_eq!(
            outcomes(&seen),
            ["silent"],
            "{mode:?}: timed out, not retried"
        );
        let backup = h.seen("backup");
        assert_eq!(outcomes(&backup), ["ok"], "{mode:?}");
        let waited = backup[0].at_ms - seen[0].at_ms;
        assert!(
            (limit - 300.0..limit + 1_500.0).contains(&waited),
            "{mode:?}: moved on after {waited} ms (limit {limit})"
        );
        assert!(
            got.elapsed > Duration::from_secs(5) && got.elapsed < Duration::from_secs(15),
            "{mode:?}: answered after {:?}: in the 5–15 s range, far from the 60 s deadline",
            got.elapsed
        );
    })
    .await;
}

/// Row: the first token after 20 s → the answer, from the backup, by the default
/// TTFT limit (10 s) for a stream, and the default attempt limit (10.6 s) for a whole
/// request that would take 20 s.
#[tokio::test]
async fn row_first_token_after_20s_loses_to_the_backup_by_the_default_ttft_limit() {
    both(|mode| async move {
        let h = start(&name("ttft", mode), &["primary", "backup"], |_| {}).await;
        h.faults("primary", json!({"ttft_ms": 20_000}));
        let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("backup", 2),
            "{mode:?}"
        );
        assert!(
            got.elapsed >= Duration::from_millis(9_900) && got.elapsed < Duration::from_secs(13),
            "{mode:?}: answered after {:?}",
            got.elapsed
        );
        let seen = h.seen("primary");
        assert_eq!(seen.len(), 1, "{mode:?}: not asked again: {seen:#?}");
        assert_eq!(seen[0].stream, mode == Mode::Stream);
        let backup = h.seen("backup");
        assert_eq!(outcomes(&backup), ["ok"], "{mode:?}");
        let waited = backup[0].at_ms - seen[0].at_ms;
        assert!(
            (9_700.0..12_000.0).contains(&waited),
            "{mode:?}: moved on after {waited} ms"
        );
    })
    .await;
}

/// A prompt whose answer is `tokens` tokens or longer, found by asking a healthy
/// binding (then forgotten by the simulators); returns it with its answer.
async fn prompt_answered_with(h: &Harness, tokens: u32) -> (String, Got) {
    for i in 0..300 {
        let prompt = format!("Tell me the whole story of incident {i}.");
        let got = ask(h, ask_body(Mode::Stream, &prompt, tokens)).await;
        assert_answered(&got, Mode::Stream);
        if got.completion_tokens() == u64::from(tokens) {
            h.forget_seen();
            return (prompt, got);
        }
    }
    panic!("no prompt found with an answer of {tokens} tokens");
}

/// The first `n` tokens of `text`, as the simulators count them (a run of ASCII
/// letters and digits, or one other character; whitespace belongs to the next token):
/// what a client has seen after `n` streamed tokens.
fn first_tokens(text: &str, n: usize) -> &str {
    let mut count = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let end_of_previous = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        if count == n {
            return &text[..end_of_previous];
        }
        if bytes[i].is_ascii_alphanumeric() {
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
        } else {
            i += text[i..].chars().next().unwrap().len_utf8();
        }
        count += 1;
    }
    text
}

/// Row: a stream cut after 40 of its 60 tokens → the whole answer: continued on the
/// backup, one uninterrupted stream for the client with its `finish_reason` and
/// `[DONE]`. With defaults an OpenAI backup continues by instruction (its API has no
/// prefill); Claude (here on Vertex, in another region) continues by prefill, and then
/// the client's text is exactly the answer an unbroken stream gets. (A whole request
/// has no stream to cut: a connection dropped before its answer is the reset row.)
#[tokio::test]
async fn row_a_stream_cut_after_40_of_60_tokens_is_continued_into_one_answer() {
    let by_instruction = async {
        let h = start("cut-openai", &["primary", "backup"], |_| {}).await;
        let (prompt, reference) = prompt_answered_with(&h, 60).await;
        h.faults("primary", json!({"cut_after_tokens": 40}));
        let got = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
        assert_answered(&got, Mode::Stream);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 1),
            "committed at the primary"
        );
        assert!(
            got.text.starts_with(first_tokens(&reference.text, 40)),
            "the primary's 40 tokens first: {:?} vs {:?}",
            got.text,
            reference.text
        );
        assert!(got.text.len() > first_tokens(&reference.text, 40).len());
        assert_eq!(
            got.comments,
            ["x-crossbar-continued from=primary to=backup method=instruction after_tokens=40"]
        );
        // The usage is Crossbar's estimate here (the cut part never had the
        // provider's count): present, and at least the answer's length.
        assert!(
            got.prompt_tokens() >= 1 && got.completion_tokens() >= 60,
            "{:?}",
            got.usage
        );
        let primary = h.seen("primary");
        assert_eq!(primary.len(), 1);
        assert_eq!(primary[0].stream_end.as_deref(), Some("cut"));
        let backup = h.seen("backup");
        assert_eq!(outcomes(&backup), ["ok"]);
        assert!(backup[0].stream && !backup[0].prefill);
        let after = backup[0].at_ms - primary[0].ended_ms.unwrap();
        assert!(after < 1_000.0, "continued {after} ms after the cut");
        let record = h.ledger(&got.request_id).await;
        assert_eq!((record.outcome.as_str(), record.continuations), ("ok", 1));
        assert!(record.usage_estimated);

        // An unchanged OpenAI client reads it as one stream, with no error.
        let request = CreateChatCompletionRequestArgs::default()
            .model("summarize")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content(prompt.as_str())
                .build()
                .unwrap()
                .into()])
            .max_tokens(60u32)
            .stream(true)
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            })
            .build()
            .unwrap();
        let mut stream = h.openai().chat().create_stream(request).await.unwrap();
        let (mut text, mut finish, mut ids) = (String::new(), None, HashSet::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("the client saw no error");
            ids.insert(chunk.id.clone());
            for c in &chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
                finish = c.finish_reason.or(finish);
            }
        }
        assert_eq!(ids.len(), 1);
        assert!(finish.is_some());
        assert!(text.starts_with(first_tokens(&reference.text, 40)));
        assert_eq!(h.seen("backup").len(), 2);
    };
    let by_prefill = async {
        let h = start_with(
            "cut-claude",
            vec![
                Upstream::vertex_claude("primary", "us-east5"),
                Upstream::vertex_claude("backup", "europe-west1"),
            ],
            |_| {},
        )
        .await;
        let (prompt, reference) = prompt_answered_with(&h, 60).await;
        h.faults("primary", json!({"cut_after_tokens": 40}));
        let got = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
        assert_answered(&got, Mode::Stream);
        assert_eq!(got.text, reference.text, "the whole answer, exactly");
        assert_eq!(got.finish, reference.finish);
        assert_eq!(
            got.comments,
            ["x-crossbar-continued from=primary to=backup method=prefill after_tokens=40"]
        );
        // One answer to one prompt: the 40 tokens the client saw from the primary
        // and the backup's 20, to the prompt as the primary counted it.
        assert_eq!(
            (got.prompt_tokens(), got.completion_tokens()),
            (reference.prompt_tokens(), reference.completion_tokens()),
            "{:?} vs {:?}",
            got.usage,
            reference.usage
        );
        let primary = h.seen("primary");
        assert_eq!(primary[0].stream_end.as_deref(), Some("cut"));
        let backup = h.seen("backup");
        assert_eq!(outcomes(&backup), ["ok"]);
        assert!(backup[0].prefill, "{backup:#?}");
    };
    tokio::join!(by_instruction, by_prefill);
}

/// Row: a stream that stalls for 30 s mid-answer → the stall is detected by the
/// default idle timeout (5 s) and the answer continued on the backup as above; the
/// process stays healthy and serves on.
#[tokio::test]
async fn row_a_stream_stalled_mid_answer_is_continued_after_the_idle_timeout() {
    let h = start("stall", &["primary", "backup"], |_| {}).await;
    let (prompt, reference) = prompt_answered_with(&h, 60).await;
    h.faults(
        "primary",
        json!({"stall_after_tokens": 20, "stall_ms": 30_000}),
    );
    let got = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
    assert_answered(&got, Mode::Stream);
    assert_eq!((got.endpoint.as_str(), got.attempts), ("primary", 1));
    assert!(got.text.starts_with(first_tokens(&reference.text, 20)));
    assert_eq!(
        got.comments,
        ["x-crossbar-continued from=primary to=backup method=instruction after_tokens=20"]
    );
    // The silence the client lived through: the idle timeout, not the 30 s stall.
    let longest = got.arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= Duration::from_millis(4_900) && longest < Duration::from_millis(7_000),
        "the longest silence was {longest:?}"
    );
    assert!(got.elapsed < Duration::from_secs(10), "{:?}", got.elapsed);
    let backup = h.seen("backup");
    assert_eq!(outcomes(&backup), ["ok"]);
    // The stalled upstream stream was let go (not left hanging for 30 s).
    let mut ended = None;
    for _ in 0..50 {
        ended = h.seen("primary")[0].stream_end.clone();
        if ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ended.as_deref(), Some("client_gone"));
    let record = h.ledger(&got.request_id).await;
    assert_eq!((record.outcome.as_str(), record.continuations), ("ok", 1));
    assert_eq!(
        record.attempts[0].outcome, "timeout",
        "{:?}",
        record.attempts
    );

    // Healthy, and serving: the next request at once, at the primary.
    h.faults("primary", json!({"stall_after_tokens": null}));
    for path in ["/healthz", "/readyz"] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let next = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
    assert_answered(&next, Mode::Stream);
    assert_eq!(next.endpoint, "primary");
    assert!(next.elapsed < Duration::from_secs(2));
}

/// Row: one malformed chunk mid-stream → skipped and counted (the metric, the
/// ledger's `skipped_chunks`); the rest of the stream is delivered, and nothing
/// malformed reaches the client (`ask` parses every `data:` it gets).
#[tokio::test]
async fn row_one_malformed_chunk_is_skipped_counted_and_never_sent() {
    let h = start("malformed", &["primary", "backup"], |_| {}).await;
    let (prompt, reference) = prompt_answered_with(&h, 60).await;
    h.faults("primary", json!({"malformed_after_tokens": 30}));
    let got = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
    assert_answered(&got, Mode::Stream);
    assert_eq!(got.text, reference.text, "the whole answer, nothing lost");
    assert_eq!(got.usage, reference.usage);
    assert_eq!((got.endpoint.as_str(), got.attempts), ("primary", 1));
    assert!(
        got.comments.is_empty(),
        "not a continuation: {:?}",
        got.comments
    );
    assert!(h.seen("backup").is_empty());
    assert_eq!(h.seen("primary")[0].stream_end.as_deref(), Some("complete"));
    assert_eq!(h.sim.endpoint("primary").stats().injected["malformed"], 1);
    let record = h.ledger(&got.request_id).await;
    assert_eq!((record.outcome.as_str(), record.skipped_chunks), ("ok", 1));
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(
            "crossbar_stream_chunks_skipped_total{feature=\"summarize\",variant=\"default\",endpoint=\"primary\"} 1"
        ),
        "{metrics}"
    );
}

/// Row: a stream that ends without `[DONE]` (Claude: without `message_stop`) but
/// with its `finish_reason` and usage → finalised at once as a success, with the
/// usage; the client gets its `[DONE]`.
#[tokio::test]
async fn row_a_stream_ending_without_its_terminal_marker_is_a_prompt_success() {
    let row = |upstreams: Vec<Upstream>, test: &'static str| async move {
        let h = start_with(test, upstreams, |_| {}).await;
        let (prompt, reference) = prompt_answered_with(&h, 40).await;
        h.faults("primary", json!({"omit_terminal_event": true}));
        let got = ask(&h, ask_body(Mode::Stream, &prompt, 40)).await;
        assert_answered(&got, Mode::Stream);
        assert_eq!(got.text, reference.text, "{test}");
        assert_eq!(got.usage, reference.usage, "{test}");
        assert_eq!((got.endpoint.as_str(), got.attempts), ("primary", 1));
        assert!(got.comments.is_empty(), "{test}: {:?}", got.comments);
        assert!(
            got.elapsed < Duration::from_secs(2),
            "{test}: finalised after {:?}, not after an idle timeout",
            got.elapsed
        );
        assert_eq!(
            h.seen("primary")[0].stream_end.as_deref(),
            Some("omit_terminal"),
            "{test}"
        );
        assert!(h.seen("backup").is_empty(), "{test}");
        let record = h.ledger(&got.request_id).await;
        assert_eq!(record.outcome, "ok", "{test}");
        assert!(!record.usage_estimated, "{test}: the provider's usage");
        assert_eq!(record.completion_tokens, got.completion_tokens(), "{test}");
    };
    tokio::join!(
        row(
            vec![Upstream::openai("primary"), Upstream::openai("backup")],
            "no-done-openai"
        ),
        row(
            vec![
                Upstream::vertex_claude("primary", "us-east5"),
                Upstream::vertex_claude("backup", "europe-west1"),
            ],
            "no-stop-claude"
        ),
    );
}

/// A prompt of about 120 tokens.
fn long_prompt() -> String {
    "Please summarise the following quarterly report in detail. ".repeat(15)
}

/// Row: 400 context length exceeded → no retry on the same endpoint; with the
/// feature's `context_fallback` (off by default) the later candidates with a larger
/// window are tried (here Claude on Vertex, 200k tokens against gpt-4o-mini's 128k);
/// without it, a clear error.
#[tokio::test]
async fn row_a_context_overflow_is_not_retried_and_falls_back_only_where_configured() {
    both(|mode| async move {
        let upstreams = || {
            vec![
                Upstream::openai("primary").sim_context_window(50),
                Upstream::vertex_claude("backup", "us-east5"),
            ]
        };
        let h = start_with(&name("context-default", mode), upstreams(), |_| {}).await;
        let got = ask(&h, ask_body(mode, &long_prompt(), 30)).await;
        assert_eq!(got.status, 400, "{mode:?}: {got:#?}");
        assert_eq!(got.error["code"], "context_length_exceeded", "{mode:?}");
        // The class is the reason; the upstream's own text stays in the operator's
        // log (issue 18: clients get a safe message, never the upstream's words).
        let message = got.error["message"].as_str().unwrap();
        assert!(
            message.contains("context window"),
            "{mode:?}: {}",
            got.error
        );
        assert!(
            !message.contains("maximum context length"),
            "{mode:?}: the upstream's text leaked: {}",
            got.error
        );
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 1),
            "{mode:?}"
        );
        assert_eq!(outcomes(&h.seen("primary")), ["context_length"], "{mode:?}");
        assert!(h.seen("backup").is_empty(), "{mode:?}");

        let h = start_with(&name("context-fallback", mode), upstreams(), |c| {
            c.features[0].context_fallback = true;
        })
        .await;
        let got = ask(&h, ask_body(mode, &long_prompt(), 30)).await;
        assert_answered(&got, mode);
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("backup", 2),
            "{mode:?}"
        );
        assert_eq!(outcomes(&h.seen("primary")), ["context_length"], "{mode:?}");
        assert_eq!(outcomes(&h.seen("backup")), ["ok"], "{mode:?}");
    })
    .await;
}

/// Row: 400 content filter (Azure OpenAI's prompt filter) → no retry, no failover:
/// `content_filtered` reaches the client, and the backup never sees the prompt.
#[tokio::test]
async fn row_a_content_filter_refusal_is_neither_retried_nor_failed_over() {
    both(|mode| async move {
        let h = start_with(
            &name("filtered", mode),
            vec![Upstream::azure("primary"), Upstream::openai("backup")],
            |_| {},
        )
        .await;
        let got = ask(
            &h,
            ask_body(mode, "Describe SIM_CONTENT_FILTER in detail.", 30),
        )
        .await;
        assert_eq!(got.status, 400, "{mode:?}: {got:#?}");
        assert_eq!(got.error["code"], "content_filtered", "{mode:?}: {got:#?}");
        let message = got.error["message"].as_str().unwrap();
        assert!(
            message.contains("content filter"),
            "{mode:?}: {}",
            got.error
        );
        assert!(
            !message.contains("content management policy"),
            "{mode:?}: the upstream's text leaked: {}",
            got.error
        );
        assert_eq!(
            (got.endpoint.as_str(), got.attempts),
            ("primary", 1),
            "{mode:?}"
        );
        let seen = h.seen("primary");
        assert_eq!(outcomes(&seen), ["content_filter"], "{mode:?}");
        assert_eq!(seen[0].status, Some(400));
        assert!(h.seen("backup").is_empty(), "{mode:?}");
    })
    .await;
}

/// Row: a stream cut, and the backup (Claude, whose default continuation is a
/// prefill) rejects assistant prefill → the continuation is asked again by a method
/// the backup supports (instruction), and the backup's prefill 400 never reaches the
/// client nor masks the real error.
#[tokio::test]
async fn row_a_cut_stream_whose_backup_rejects_prefill_is_continued_by_instruction() {
    let h = start_with(
        "prefill-rejected",
        vec![
            Upstream::openai("primary"),
            Upstream::vertex_claude("backup", "us-east5"),
        ],
        |_| {},
    )
    .await;
    let (prompt, reference) = prompt_answered_with(&h, 60).await;
    h.faults("primary", json!({"cut_after_tokens": 25}));
    h.faults("backup", json!({"prefill": "reject"}));
    let got = ask(&h, ask_body(Mode::Stream, &prompt, 60)).await;
    assert_answered(&got, Mode::Stream);
    assert!(got.text.starts_with(first_tokens(&reference.text, 25)));
    assert_eq!(
        got.comments,
        ["x-crossbar-continued from=primary to=backup method=instruction after_tokens=25"]
    );
    assert!(
        !got.raw.contains("prefill") && !got.raw.contains("invalid_request"),
        "the backup's refusal stays inside: {}",
        got.raw
    );
    let backup = h.seen("backup");
    assert_eq!(outcomes(&backup), ["bad_request", "ok"], "{backup:#?}");
    assert_eq!(backup[0].status, Some(400));
    assert!(backup[0].prefill && !backup[1].prefill, "{backup:#?}");
    let record = h.ledger(&got.request_id).await;
    assert_eq!(record.outcome, "ok");
    let methods: Vec<(&str, Option<&str>)> = record
        .attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.continuation.as_deref()))
        .collect();
    assert_eq!(
        methods,
        [
            ("stream_interrupted", None),
            ("invalid_request", Some("prefill")),
            ("ok", Some("instruction"))
        ],
        "{:?}",
        record.attempts
    );
}

/// Row: the primary down, then healthy, at low traffic (a request every 2 s, whole
/// and streamed in turn) → every request served during the outage, and traffic back
/// at the primary soon after it recovers. The outage is 60 s with a request
/// every ~4 s; this one is 16 s at one every 2 s, which already reaches the breaker's
/// second, doubled open period (20 s, from ~14 s): the test checks that traffic came
/// back within a few seconds of recovery because a health probe succeeded, not
/// because the open period ran out — the same mechanism that ends any open period
/// after a longer outage, only with a shorter wait. And at one request every 2 s
/// (well under the ramp's 5 requests per stage) the ramp still admits each one.
#[tokio::test]
async fn row_a_recovered_primary_gets_traffic_back_soon_at_low_traffic() {
    const OUTAGE: Duration = Duration::from_secs(16);
    const EVERY: Duration = Duration::from_secs(2);
    const REQUESTS: u32 = 13;
    let h = start("outage", &["primary", "backup"], |_| {}).await;
    h.faults("primary", json!({"outage": "refuse"}));
    let started = Instant::now();
    let mut recovered_at = None;
    let mut served = Vec::new();
    for i in 0..REQUESTS {
        let due = EVERY * i;
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if recovered_at.is_none() && started.elapsed() >= OUTAGE {
            h.faults("primary", json!({"outage": "none"}));
            recovered_at = Some(started.elapsed());
        }
        let mode = if i % 2 == 0 {
            Mode::Whole
        } else {
            Mode::Stream
        };
        let at = started.elapsed();
        let got = ask(&h, ask_body(mode, &format!("Status update {i}."), 20)).await;
        assert_answered(&got, mode);
        served.push((at, got.endpoint.clone()));
    }
    let recovered_at = recovered_at.unwrap();
    let during: Vec<&String> = served
        .iter()
        .filter(|(at, _)| *at < recovered_at)
        .map(|(_, e)| e)
        .collect();
    assert!(
        during.iter().all(|e| *e == "backup"),
        "served by the backup during the outage: {served:?}"
    );
    let back = served
        .iter()
        .find(|(at, e)| *at >= recovered_at && e == "primary")
        .unwrap_or_else(|| panic!("traffic never came back to the primary: {served:?}"));
    let after = back.0 - recovered_at;
    assert!(
        after <= Duration::from_secs(8),
        "the first request back at the primary came {after:?} after it recovered: {served:?}"
    );
    assert!(
        served
            .iter()
            .filter(|(at, _)| *at > back.0)
            .all(|(_, e)| e == "primary"),
        "and the rest stayed there, at one request every {EVERY:?}: {served:?}"
    );
    // What brought it back, as the console's timeline shows it.
    let (_, events) = h
        .admin(
            "viewer",
            reqwest::Method::GET,
            "/breaker-events?limit=50",
            None,
        )
        .await;
    let signals: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["transition"]["to"].as_str().unwrap(),
                e["transition"]["reason"]["signal"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        signals.iter().rev().find(|(to, _)| *to == "ramp"),
        Some(&("ramp", "probe_succeeded")),
        "a health probe ended the last open period: {signals:?}"
    );
}

/// Row: the primary answers 503, the backup answers → the response names the
/// backup's model (and endpoint) with the backup's usage, and the failed attempts
/// are billed nothing: the team pays exactly the backup's price for its tokens.
#[tokio::test]
async fn row_a_backup_answer_names_the_backup_and_failed_attempts_bill_nothing() {
    let backup_price = Pricing {
        input_per_million: Decimal::from_str("5.00").unwrap(),
        output_per_million: Decimal::from_str("20.00").unwrap(),
        cached_input_per_million: None,
        hourly: None,
    };
    both(|mode| {
        let backup_price = backup_price.clone();
        async move {
            let h = start_with(
                &name("billed", mode),
                vec![
                    Upstream::openai("primary"),
                    Upstream::openai("backup").model("gpt-4o"),
                ],
                |c| c.endpoints[1].pricing = backup_price.clone(),
            )
            .await;
            h.faults("primary", json!({"outage": "unavailable"}));
            let got = ask(&h, ask_body(mode, "Summarise the incident.", 30)).await;
            assert_answered(&got, mode);
            assert_eq!(
                (got.endpoint.as_str(), got.attempts),
                ("backup", 4),
                "{mode:?}"
            );
            assert_eq!(got.model.as_deref(), Some("gpt-4o"), "{mode:?}: {got:#?}");
            let stats = h.sim.endpoint("backup").stats();
            assert_eq!(
                (got.prompt_tokens(), got.completion_tokens()),
                (stats.prompt_tokens, stats.completion_tokens),
                "{mode:?}: the usage is the backup's own"
            );
            assert_eq!(h.sim.endpoint("primary").stats().prompt_tokens, 0);

            let expected = (Decimal::from(got.prompt_tokens()) * backup_price.input_per_million
                + Decimal::from(got.completion_tokens()) * backup_price.output_per_million)
                / Decimal::from(1_000_000);
            let record = h.ledger(&got.request_id).await;
            assert_eq!(record.endpoint.as_deref(), Some("backup"), "{mode:?}");
            assert_eq!(record.cost, expected, "{mode:?}");
            let billed: Vec<(&str, &str, Decimal, u64)> = record
                .attempts
                .iter()
                .map(|a| {
                    (
                        a.endpoint.as_str(),
                        a.outcome.as_str(),
                        a.cost,
                        a.prompt_tokens + a.completion_tokens,
                    )
                })
                .collect();
            assert_eq!(billed.len(), 4, "{mode:?}: {billed:?}");
            assert!(
                billed[..3]
                    .iter()
                    .all(|b| *b == ("primary", "unavailable", Decimal::ZERO, 0)),
                "{mode:?}: failed attempts bill nothing: {billed:?}"
            );
            assert_eq!(billed[3].2, expected, "{mode:?}");

            // The spend report, as the platform lead reads it.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let from = now - now % 60_000 - 60_000;
            let to = now + 3_600_000;
            for (group, key, cost) in [
                ("team", "search", expected),
                ("endpoint", "primary", Decimal::ZERO),
                ("endpoint", "backup", expected),
            ] {
                let (status, report) = h
                    .admin(
                        "viewer",
                        reqwest::Method::GET,
                        &format!("/spend?from_ms={from}&to_ms={to}&group_by={group}"),
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{report}");
                let spent = report["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["key"] == key)
                    .map_or(Decimal::ZERO, |r| {
                        Decimal::from_str(r["on_demand"].as_str().unwrap()).unwrap()
                    });
                assert_eq!(spent, cost.normalize(), "{mode:?}: {group} {key}: {report}");
            }
        }
    })
    .await;
}
