//! Load generator for OpenAI-compatible chat completions (the Crossbar gateway, or a
//! simulated OpenAI endpoint directly).
//!
//! Open loop (`rate`): requests start on a fixed schedule whatever the latency, as
//! real traffic does, so a slow server builds a queue instead of hiding it. Closed
//! loop (`concurrency`): N workers each send their next request when the previous one
//! ends. Both stop at `duration` or after `max_requests`, whichever comes first, and
//! every request has a timeout, so a run always ends.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Full URL of the chat completions route.
    pub url: String,
    /// The feature (through Crossbar) or model (directly) to ask for.
    pub model: String,
    pub api_key: Option<String>,
    pub stream: bool,
    pub mode: Mode,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub max_tokens: Option<u32>,
    pub prompt: String,
    /// Requests cycle through this many distinct `user` values (sticky A/B keys).
    pub users: u32,
    pub timeout: Duration,
    /// h2c (HTTP/2 with prior knowledge) instead of HTTP/1.1.
    pub http2_prior_knowledge: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Open loop: this many requests per second.
    Rate(f64),
    /// Closed loop: this many requests in flight.
    Concurrency(usize),
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub requests: u64,
    pub ok: u64,
    /// Failures by class: `http_429`, `timeout`, `transport`, `stream_error`, ...
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub achieved_rps: f64,
    pub latency: Percentiles,
    /// Time to first content token (streaming runs only).
    pub ttft: Option<Percentiles>,
    /// The longest wait between two content chunks of each stream (streaming runs
    /// only): a gateway's continuation after a cut shows here.
    pub stream_gap: Option<Percentiles>,
    pub completion_tokens: u64,
    /// Open loop only: ticks skipped because too many requests were already in flight.
    pub skipped: u64,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    ttfts: Vec<Duration>,
    gaps: Vec<Duration>,
    completion_tokens: u64,
    skipped: u64,
}

struct Reply {
    latency: Duration,
    ttft: Option<Duration>,
    /// The longest wait between two content chunks (streams).
    gap: Option<Duration>,
    completion_tokens: u64,
    error: Option<String>,
}

/// Most requests an open-loop run keeps in flight before it skips ticks.
const MAX_IN_FLIGHT: usize = 4096;

pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(spec.users > 0, "users must be at least 1");
    let mut client = reqwest::Client::builder()
        .timeout(spec.timeout)
        .tcp_nodelay(true);
    if spec.http2_prior_knowledge {
        client = client.http2_prior_knowledge();
    }
    let client = client.build()?;
    let spec = Arc::new(spec);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + spec.duration;
    let limit = spec.max_requests.unwrap_or(u64::MAX);

    match spec.mode {
        Mode::Rate(rate) => {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "rate must be a positive number of requests per second"
            );
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::new();
            let mut sent = 0u64;
            while sent < limit {
                let tick = ticks.tick().await;
                if tick >= deadline {
                    break;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tally.lock().await.skipped += 1;
                    continue;
                };
                let (client, spec, tally) = (client.clone(), spec.clone(), tally.clone());
                let n = sent;
                tasks.push(tokio::spawn(async move {
                    let outcome = one_request(&client, &spec, n).await;
                    record(&tally, outcome).await;
                    drop(slot);
                }));
                sent += 1;
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        Mode::Concurrency(workers) => {
            anyhow::ensure!(workers > 0, "concurrency must be at least 1");
            let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let (client, spec, tally, next) =
                    (client.clone(), spec.clone(), tally.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= limit || Instant::now() >= deadline {
                            break;
                        }
                        let outcome = one_request(&client, &spec, n).await;
                        record(&tally, outcome).await;
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().await);
    Ok(LoadReport {
        requests: tally.requests,
        ok: tally.ok,
        errors: tally.errors,
        elapsed_s: elapsed.as_secs_f64(),
        achieved_rps: tally.requests as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Percentiles::of(tally.latencies),
        ttft: spec.stream.then(|| Percentiles::of(tally.ttfts)),
        stream_gap: spec.stream.then(|| Percentiles::of(tally.gaps)),
        completion_tokens: tally.completion_tokens,
        skipped: tally.skipped,
    })
}

async fn record(tally: &Mutex<Tally>, outcome: Reply) {
    let mut t = tally.lock().await;
    t.requests += 1;
    match outcome.error {
        None => {
            t.ok += 1;
            t.latencies.push(outcome.latency);
            t.ttfts.extend(outcome.ttft);
            t.gaps.extend(outcome.gap);
            t.completion_tokens += outcome.completion_tokens;
        }
        Some(class) => *t.errors.entry(class).or_default() += 1,
    }
}

fn request_body(spec: &LoadSpec, n: u64) -> Value {
    let mut body = json!({
        "model": spec.model,
        "messages": [{ "role": "user", "content": format!("{} (request {n})", spec.prompt) }],
        "user": format!("load-user-{}", n % u64::from(spec.users)),
        "stream": spec.stream,
    });
    if spec.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if let Some(max) = spec.max_tokens {
        body["max_tokens"] = json!(max);
    }
    body
}

async fn one_request(client: &reqwest::Client, spec: &LoadSpec, n: u64) -> Reply {
    let started = Instant::now();
    let mut request = client.post(&spec.url).json(&request_body(spec, n));
    if let Some(key) = &spec.api_key {
        request = request.bearer_auth(key);
    }
    let fail = |class: String| Reply {
        latency: started.elapsed(),
        ttft: None,
        gap: None,
        completion_tokens: 0,
        error: Some(class),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return fail("timeout".into()),
        Err(_) => return fail("transport".into()),
    };
    let status = response.status();
    if !status.is_success() {
        let code = response.json::<Value>().await.ok().and_then(|v| {
            v.pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return fail(match code {
            Some(code) => format!("http_{}:{code}", status.as_u16()),
            None => format!("http_{}", status.as_u16()),
        });
    }
    if !spec.stream {
        return match response.json::<Value>().await {
            Ok(body) => Reply {
                latency: started.elapsed(),
                ttft: None,
                gap: None,
                completion_tokens: body
                    .pointer("/usage/completion_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                error: None,
            },
            Err(e) if e.is_timeout() => fail("timeout".into()),
            Err(_) => fail("malformed_body".into()),
        };
    }

    let mut ttft = None;
    let mut last_content: Option<Instant> = None;
    let mut gap = Duration::ZERO;
    let mut tokens = 0;
    let mut done = false;
    let mut buffer = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if e.is_timeout() => return fail("timeout".into()),
            Err(_) => return fail("stream_cut".into()),
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&buffer) {
            let event: Vec<u8> = buffer.drain(..end).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let Ok(value) = serde_json::from_str::<Value>(data) else {
                    return fail("malformed_chunk".into());
                };
                if value.get("error").is_some() {
                    return fail("stream_error".into());
                }
                let delta = value.pointer("/choices/0/delta");
                let has_content = delta.is_some_and(|d| {
                    d.get("content")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !c.is_empty())
                        || d.get("tool_calls").is_some()
                });
                if has_content && ttft.is_none() {
                    ttft = Some(started.elapsed());
                }
                if has_content {
                    let now = Instant::now();
                    if let Some(last) = last_content {
                        gap = gap.max(now - last);
                    }
                    last_content = Some(now);
                }
                if let Some(n) = value
                    .pointer("/usage/completion_tokens")
                    .and_then(Value::as_u64)
                {
                    tokens = n;
                }
            }
        }
    }
    if !done {
        return fail("stream_incomplete".into());
    }
    Reply {
        latency: started.elapsed(),
        ttft,
        gap: Some(gap),
        completion_tokens: tokens,
        error: None,
    }
}

/// End (exclusive) of the first complete SSE event in `buf`, blank line included.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests     {} in {:.1} s ({:.1}/s), ok {}",
            self.requests, self.elapsed_s, self.achieved_rps, self.ok
        )?;
        if self.errors.is_empty() {
            writeln!(f, "errors       none")?;
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(f, "errors       {}", list.join(", "))?;
        }
        let row = |f: &mut fmt::Formatter<'_>, name: &str, p: &Percentiles| {
            writeln!(
                f,
                "{name:<12} p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
                p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            )
        };
        row(f, "latency", &self.latency)?;
        if let Some(ttft) = &self.ttft {
            row(f, "ttft", ttft)?;
        }
        if let Some(gap) = &self.stream_gap {
            row(f, "max gap", gap)?;
        }
        writeln!(f, "tokens out   {}", self.completion_tokens)?;
        if self.skipped > 0 {
            writeln!(
                f,
                "skipped      {} ticks (more than {MAX_IN_FLIGHT} in flight)",
                self.skipped
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(
            (p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }

    #[test]
    fn sse_events_end_at_a_blank_line() {
        assert_eq!(find_event_end(b"data: x\n\ndata: y"), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}
