//! One simulated endpoint at run time: its faults, counters, capacity window and the
//! pieces every provider shares (admission, pacing, the streaming driver).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{EndpointSpec, Kind};
use crate::faults::{ErrorClass, Faults, Outage};
use crate::model::{Completion, Fnv, Prompt, SplitMix};
use crate::request_log::{self, RequestLog, Seen};

/// What went wrong with a request, before each provider renders it in its own format.
#[derive(Debug, Clone, PartialEq)]
pub enum SimError {
    /// An injected failure (`errors.*`, `outage = "unavailable"`).
    Injected {
        class: ErrorClass,
        retry_after_s: f64,
    },
    /// Provisioned capacity (`capacity_tpm`) exceeded.
    Capacity {
        retry_after_s: f64,
        limit_tpm: u64,
    },
    /// The request is malformed or breaks the provider's rules.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    ContextLength {
        prompt_tokens: u32,
        limit: u32,
    },
    /// No or malformed credentials.
    Unauthenticated(String),
    /// Credentials present but not accepted (wrong region/service, not issued here).
    Forbidden(String),
    /// Unknown model, deployment or route.
    NotFound(String),
}

impl SimError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    /// The `retry-after` to advertise, if any, in seconds (fractions allowed); none
    /// when the setting is zero.
    pub fn retry_after(&self) -> Option<f64> {
        match self {
            Self::Injected {
                class: ErrorClass::Throttle | ErrorClass::Overloaded,
                retry_after_s,
            }
            | Self::Capacity { retry_after_s, .. } => {
                // Zero: the error does not say when to come back.
                (*retry_after_s > 0.0).then_some(*retry_after_s)
            }
            _ => None,
        }
    }

    /// `retry-after` in whole seconds, as HTTP's delta-seconds must be: rounded up, so
    /// a client that honours it never comes back early.
    pub fn retry_after_whole_s(&self) -> Option<u64> {
        self.retry_after().map(|s| s.ceil() as u64)
    }

    /// The request log's name for this outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Injected { class, .. } => class.as_str(),
            Self::Capacity { .. } => "capacity",
            Self::BadRequest { .. } => "bad_request",
            Self::ContextLength { .. } => "context_length",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
        }
    }
}

/// A request the endpoint does not answer: the marker its handler returns instead of
/// a response, acted on by the endpoint's middleware (which holds the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Close the connection with a TCP RST.
    Reset,
    /// Send nothing, ever.
    Silent,
}

/// The first step of rendering any error: records its class in the request log and,
/// for the classes that are not answers (`reset`, `silent`), returns the marker
/// response the middleware turns into a reset or a silence.
pub fn unanswered(e: &SimError) -> Option<Response> {
    request_log::note(|n| n.outcome = Some(e.outcome()));
    let marker = match e {
        SimError::Injected {
            class: ErrorClass::Reset,
            ..
        } => Unanswered::Reset,
        SimError::Injected {
            class: ErrorClass::Silent,
            ..
        } => Unanswered::Silent,
        _ => return None,
    };
    let mut response = Response::default();
    response.extensions_mut().insert(marker);
    Some(response)
}

/// Counters of one endpoint, readable over the control API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub streaming_requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Responses by HTTP status (provider routes only, not the control API).
    pub statuses: BTreeMap<u16, u64>,
    /// Faults that fired, by name (`throttle`, `capacity`, `cut`, `malformed`, ...).
    pub injected: BTreeMap<String, u64>,
    pub auth_rejected: u64,
    /// Requests by credential *identifier* (an AWS access key id, or which identity
    /// flow issued a bearer token); secrets and token values are never recorded.
    pub credentials: BTreeMap<String, u64>,
}

/// Credentials handed out by identity endpoints, so other endpoints can check them.
#[derive(Debug, Default)]
pub struct Registry {
    issued: Mutex<HashMap<String, Issued>>,
}

#[derive(Debug, Clone)]
pub struct Issued {
    /// Which flow issued it (`aws-container`, `gcp-sts`, ...): safe to show.
    pub label: String,
    /// For AWS credentials: the session token that must accompany the key id.
    pub session_token: Option<String>,
    /// For AWS credentials: the secret access key (kept only so tests can check that
    /// no secret ever reaches a log).
    pub secret: Option<String>,
}

impl Registry {
    pub fn insert(&self, key: String, issued: Issued) {
        self.issued.lock().unwrap().insert(key, issued);
    }
    pub fn get(&self, key: &str) -> Option<Issued> {
        self.issued.lock().unwrap().get(key).cloned()
    }

    /// Every secret value handed out: bearer tokens, session tokens, secret keys.
    pub fn secret_values(&self) -> Vec<String> {
        let issued = self.issued.lock().unwrap();
        let mut out = Vec::new();
        for (key, i) in issued.iter() {
            match &i.session_token {
                // An AWS key id is an identifier, not a secret.
                Some(token) => out.push(token.clone()),
                None => out.push(key.clone()),
            }
            out.extend(i.secret.clone());
        }
        out
    }
}

pub struct Endpoint {
    pub spec: EndpointSpec,
    /// Seed of replies (shared by the whole process, so replicas agree).
    pub seed: u64,
    pub registry: Arc<Registry>,
    faults: RwLock<Faults>,
    outage: watch::Sender<Outage>,
    stats: Mutex<Stats>,
    rng: Mutex<SplitMix>,
    window: Mutex<VecDeque<(Instant, u64)>>,
    ids: AtomicU64,
    addr: Mutex<Option<SocketAddr>>,
    /// When the simulator started: the zero of the request log's times.
    epoch: Instant,
    log: Mutex<RequestLog>,
}

impl Endpoint {
    pub fn new(spec: EndpointSpec, seed: u64, registry: Arc<Registry>) -> Arc<Self> {
        Self::started_at(spec, seed, registry, Instant::now())
    }

    /// An endpoint whose request log counts time from `epoch` (the simulator's start,
    /// shared by all its endpoints).
    pub fn started_at(
        spec: EndpointSpec,
        seed: u64,
        registry: Arc<Registry>,
        epoch: Instant,
    ) -> Arc<Self> {
        let mut h = Fnv::new(seed);
        h.write(spec.name.as_bytes());
        let (outage, _) = watch::channel(spec.faults.outage);
        Arc::new(Self {
            faults: RwLock::new(spec.faults.clone()),
            rng: Mutex::new(SplitMix(h.finish())),
            spec,
            seed,
            registry,
            outage,
            stats: Mutex::new(Stats::default()),
            window: Mutex::new(VecDeque::new()),
            ids: AtomicU64::new(0),
            addr: Mutex::new(None),
            epoch,
            log: Mutex::new(RequestLog::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn kind(&self) -> Kind {
        self.spec.kind
    }

    pub fn faults(&self) -> Faults {
        self.faults.read().unwrap().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        let outage = faults.outage;
        *self.faults.write().unwrap() = faults;
        self.outage.send_replace(outage);
    }

    /// Replaces the faults with `change(current)` atomically (no request takes an entry
    /// off `next_errors` in between); on `Err`, changes nothing.
    pub fn update_faults(
        &self,
        change: impl FnOnce(&Faults) -> Result<Faults, String>,
    ) -> Result<Faults, String> {
        let mut faults = self.faults.write().unwrap();
        let new = change(&faults)?;
        *faults = new.clone();
        self.outage.send_replace(new.outage);
        Ok(new)
    }

    pub fn watch_outage(&self) -> watch::Receiver<Outage> {
        self.outage.subscribe()
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }

    /// Zeroes the counters, the capacity window and the request log.
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap() = Stats::default();
        self.window.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
    }

    /// The request log: the last [`request_log::CAPACITY`] requests, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().entries()
    }

    /// Milliseconds since the simulator started (monotonic).
    pub fn since_start_ms(&self) -> f64 {
        Instant::now().duration_since(self.epoch).as_secs_f64() * 1000.0
    }

    /// Starts a request log entry; returns its sequence number.
    pub(crate) fn log_arrival(&self, method: &str, path: &str) -> u64 {
        let at = self.since_start_ms();
        self.log.lock().unwrap().arrive(at, method, path)
    }

    /// Changes request log entry `seq`, if it is still remembered.
    pub(crate) fn log_update(&self, seq: u64, f: impl FnOnce(&mut Seen)) {
        self.log.lock().unwrap().update(seq, f);
    }

    pub fn record(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap());
    }

    pub fn count_injected(&self, what: &str) {
        self.record(|s| *s.injected.entry(what.to_owned()).or_default() += 1);
    }

    pub fn set_addr(&self, addr: SocketAddr) {
        *self.addr.lock().unwrap() = Some(addr);
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap()
    }

    pub fn url(&self) -> String {
        self.addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    }

    /// A fresh id, unique per endpoint and deterministic for the seed.
    pub fn next_id(&self, alphabet: &[u8], len: usize) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut h = Fnv::new(self.seed ^ n);
        h.write(self.spec.name.as_bytes());
        SplitMix(h.finish()).string(alphabet, len)
    }

    /// A value from the endpoint's deterministic random sequence.
    pub fn roll(&self) -> f64 {
        self.rng.lock().unwrap().unit()
    }

    pub fn random_string(&self, alphabet: &[u8], len: usize) -> String {
        self.rng.lock().unwrap().string(alphabet, len)
    }

    /// First stage of every provider request: added latency, then the outage (503 or
    /// silence), then the head of the `next_errors` queue, taken off it.
    pub async fn arrive(&self) -> Result<Faults, SimError> {
        let latency = self.faults.read().unwrap().latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        // The common case, nothing to take off the queue, only reads the settings.
        {
            let current = self.faults.read().unwrap();
            if matches!(current.outage, Outage::None | Outage::Refuse)
                && current.next_errors.is_empty()
            {
                return Ok(current.clone());
            }
        }
        let (faults, once) = {
            let mut current = self.faults.write().unwrap();
            let once = match current.outage {
                Outage::Unavailable => Some(ErrorClass::Unavailable),
                Outage::Silent => Some(ErrorClass::Silent),
                Outage::None | Outage::Refuse if !current.next_errors.is_empty() => {
                    Some(current.next_errors.remove(0))
                }
                Outage::None | Outage::Refuse => None,
            };
            (current.clone(), once)
        };
        match once {
            Some(class) => Err(self.inject(&faults, class).await),
            None => Ok(faults),
        }
    }

    /// An injected failure of `class`: counted, and for `timeout` after its hang.
    async fn inject(&self, faults: &Faults, class: ErrorClass) -> SimError {
        self.count_injected(class.as_str());
        if class == ErrorClass::Timeout {
            tokio::time::sleep(Duration::from_millis(faults.timeout_after_ms)).await;
        }
        SimError::Injected {
            class,
            retry_after_s: faults.retry_after_s,
        }
    }

    /// Last stage before replying: the context window, provisioned capacity, then one
    /// roll of the injected error rates. `tokens` is what the request will consume.
    pub async fn admit(
        &self,
        faults: &Faults,
        prompt_tokens: u32,
        tokens: u64,
        streaming: bool,
    ) -> Result<(), SimError> {
        if prompt_tokens > self.spec.context_window {
            return Err(SimError::ContextLength {
                prompt_tokens,
                limit: self.spec.context_window,
            });
        }
        if let Some(limit) = faults.capacity_tpm {
            let now = Instant::now();
            let mut window = self.window.lock().unwrap();
            while window
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(60))
            {
                window.pop_front();
            }
            let used: u64 = window.iter().map(|(_, n)| n).sum();
            if used + tokens > limit {
                drop(window);
                self.count_injected("capacity");
                return Err(SimError::Capacity {
                    retry_after_s: faults.retry_after_s,
                    limit_tpm: limit,
                });
            }
            window.push_back((now, tokens));
        }
        let roll = self.roll();
        let class = faults
            .errors
            .classes()
            .into_iter()
            .scan(0.0, |acc, (class, rate)| {
                *acc += rate;
                Some((class, *acc))
            })
            .find(|(_, upto)| roll < *upto)
            .map(|(class, _)| class);
        if let Some(class) = class {
            return Err(self.inject(faults, class).await);
        }
        self.record(|s| {
            s.requests += 1;
            s.streaming_requests += u64::from(streaming);
            s.prompt_tokens += u64::from(prompt_tokens);
            s.completion_tokens += tokens - u64::from(prompt_tokens);
        });
        Ok(())
    }

    /// The remaining-capacity figures for rate-limit headers: (limit, remaining, reset).
    pub fn capacity_left(&self, faults: &Faults) -> Option<(u64, u64, Duration)> {
        let limit = faults.capacity_tpm?;
        let now = Instant::now();
        let window = self.window.lock().unwrap();
        let used: u64 = window
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < Duration::from_secs(60))
            .map(|(_, n)| n)
            .sum();
        let reset = window.front().map_or(Duration::ZERO, |(t, _)| {
            Duration::from_secs(60).saturating_sub(now.duration_since(*t))
        });
        Some((limit, limit.saturating_sub(used), reset))
    }

    /// How long a non-streaming reply of `tokens` tokens takes after admission.
    pub async fn generate_delay(&self, faults: &Faults, tokens: u32) {
        let delay = Duration::from_millis(faults.ttft_ms)
            + token_interval(faults) * tokens.saturating_sub(1);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

impl Endpoint {
    /// The shared tail of every completion route: generate the reply, admit it
    /// (context window, capacity, injected errors), then answer it whole after the
    /// generation time, or stream it through `dialect`.
    pub async fn reply<D: StreamDialect>(
        self: &Arc<Self>,
        faults: Faults,
        prompt: &Prompt,
        stream: bool,
        whole: impl FnOnce(&Completion, Duration) -> serde_json::Value,
        dialect: impl FnOnce(Completion) -> D,
    ) -> Result<Response, SimError> {
        let completion = crate::model::generate(self.seed, prompt);
        let tokens = u64::from(completion.prompt_tokens) + u64::from(completion.completion_tokens);
        self.admit(&faults, completion.prompt_tokens, tokens, stream)
            .await?;
        if stream {
            let pieces = completion.stream_pieces();
            let dialect = dialect(completion);
            let content_type = dialect.content_type();
            let log = request_log::current_seq();
            let body = stream_body(self.clone(), faults, pieces, dialect, log);
            return Ok((
                [
                    (http::header::CONTENT_TYPE, content_type),
                    (http::header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response());
        }
        let started = Instant::now();
        self.generate_delay(&faults, completion.completion_tokens)
            .await;
        Ok(axum::Json(whole(&completion, started.elapsed())).into_response())
    }
}

fn token_interval(faults: &Faults) -> Duration {
    faults
        .tokens_per_second
        .map_or(Duration::ZERO, |tps| Duration::from_secs_f64(1.0 / tps))
}

/// How each provider frames its stream; the driver decides *when* to call it.
pub trait StreamDialect: Send + 'static {
    /// The stream's media type.
    fn content_type(&self) -> &'static str;
    /// Events sent with the headers (message start, role chunk...).
    fn start(&mut self) -> Vec<Bytes>;
    /// One token of text, or one fragment of tool-call arguments.
    fn piece(&mut self, piece: &str) -> Vec<Bytes>;
    /// The events that end the reply: stop reason, usage.
    fn finish(&mut self) -> Vec<Bytes>;
    /// The marker after them that says the stream is over (`[DONE]`, `message_stop`),
    /// for the providers that have one.
    fn terminator(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
    /// The provider's in-stream error event.
    fn error(&mut self, class: ErrorClass) -> Vec<Bytes>;
    /// A chunk or frame the client cannot parse.
    fn malformed(&mut self) -> Bytes;
}

type Chunk = Result<Bytes, std::io::Error>;

/// Streams `pieces` through `dialect`, paced and shaped by `faults`; records how the
/// stream ended in request log entry `log`.
pub fn stream_body(
    ep: Arc<Endpoint>,
    faults: Faults,
    pieces: Vec<String>,
    dialect: impl StreamDialect,
    log: Option<u64>,
) -> Body {
    let (tx, rx) = mpsc::channel::<Chunk>(32);
    tokio::spawn(async move {
        let end = drive_stream(&ep, &faults, &pieces, dialect, &tx).await;
        if let Some(seq) = log {
            let at = ep.since_start_ms();
            ep.log_update(seq, |e| {
                e.stream_end = Some(end.into());
                e.ended_ms = Some(at);
            });
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }))
}

/// Sends the stream; returns how it ended (the request log's `stream_end`).
async fn drive_stream(
    ep: &Endpoint,
    faults: &Faults,
    pieces: &[String],
    mut dialect: impl StreamDialect,
    tx: &mpsc::Sender<Chunk>,
) -> &'static str {
    const GONE: &str = "client_gone";
    let start = Instant::now();
    let mut first = start + Duration::from_millis(faults.ttft_ms);
    let interval = token_interval(faults);
    let send_all = |frames: Vec<Bytes>| async move {
        for frame in frames {
            tx.send(Ok(frame)).await.map_err(|_| ())?;
        }
        Ok::<(), ()>(())
    };
    if send_all(dialect.start()).await.is_err() {
        return GONE;
    }
    // A fault set at or past the end still fires, so "after N tokens" is exact for any
    // reply: each is checked before piece N, or after the last piece if N is beyond it.
    let n = pieces.len() as u32;
    for sent in 0..=n {
        let due = |at: Option<u32>| at.is_some_and(|at| at == sent || (sent == n && at > n));
        if due(faults.cut_after_tokens) {
            cut(ep, tx).await;
            return "cut";
        }
        if due(faults.end_stream_after_tokens) {
            ep.count_injected("end_stream");
            return "end_stream";
        }
        if due(faults.stream_error_after_tokens) {
            ep.count_injected("stream_error");
            let _ = send_all(dialect.error(faults.stream_error)).await;
            return "stream_error";
        }
        if due(faults.stall_after_tokens) {
            ep.count_injected("stall");
            // The connection stays open and silent; a client that gives up ends it.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(faults.stall_ms)) => {}
                () = tx.closed() => return GONE,
            }
            // The pace resumes after the pause, rather than catching up in a burst.
            first += Duration::from_millis(faults.stall_ms);
        }
        let Some(piece) = pieces.get(sent as usize) else {
            break;
        };
        if faults.malformed_after_tokens == Some(sent) {
            ep.count_injected("malformed");
            if tx.send(Ok(dialect.malformed())).await.is_err() {
                return GONE;
            }
        }
        tokio::time::sleep_until(first + interval * sent).await;
        if send_all(dialect.piece(piece)).await.is_err() {
            return GONE;
        }
    }
    if pieces.is_empty() {
        tokio::time::sleep_until(first).await;
    }
    if send_all(dialect.finish()).await.is_err() {
        return GONE;
    }
    let terminator = dialect.terminator();
    if faults.omit_terminal_event && !terminator.is_empty() {
        ep.count_injected("omit_terminal");
        return "omit_terminal";
    }
    if send_all(terminator).await.is_err() {
        return GONE;
    }
    "complete"
}

/// Drops the connection mid-body. The pause first lets the server flush what was
/// already sent, so the client sees exactly the tokens before the cut.
async fn cut(ep: &Endpoint, tx: &mpsc::Sender<Chunk>) {
    ep.count_injected("cut");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tx
        .send(Err(std::io::Error::other("stream cut by fault injection")))
        .await;
}

/// The request body as a JSON object, or the client's error.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, SimError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(SimError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(SimError::bad_request(format!(
            "Malformed JSON in request body: {e}"
        ))),
    }
}

/// Server-sent-event framing: `event:` (optional) and `data:` lines.
pub fn sse(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC timestamp, `secs` after the Unix epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::ErrorRates;

    fn endpoint(faults: Faults) -> Arc<Endpoint> {
        let mut spec = EndpointSpec::new("e", Kind::Openai);
        spec.faults = faults;
        Endpoint::new(spec, 1, Arc::default())
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600 + 3_723), "2026-11-22T01:02:03Z");
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_throttles_past_the_limit_and_recovers_after_a_minute() {
        let ep = endpoint(Faults {
            capacity_tpm: Some(100),
            ..Faults::default()
        });
        let f = ep.faults();
        ep.admit(&f, 10, 60, false).await.unwrap();
        assert!(matches!(
            ep.admit(&f, 10, 60, false).await,
            Err(SimError::Capacity { limit_tpm: 100, .. })
        ));
        ep.admit(&f, 10, 40, false).await.unwrap();
        let (limit, remaining, _) = ep.capacity_left(&f).unwrap();
        assert_eq!((limit, remaining), (100, 0));
        tokio::time::advance(Duration::from_secs(60)).await;
        ep.admit(&f, 10, 60, false).await.unwrap();
        assert_eq!(ep.stats().injected["capacity"], 1);
        assert_eq!(ep.stats().requests, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn error_rates_fire_in_proportion() {
        let ep = endpoint(Faults {
            errors: ErrorRates {
                throttle: 0.3,
                server_error: 0.2,
                ..Default::default()
            },
            ..Faults::default()
        });
        let f = ep.faults();
        let mut throttled = 0;
        let mut failed = 0;
        for _ in 0..2000 {
            match ep.admit(&f, 1, 2, false).await {
                Err(SimError::Injected {
                    class: ErrorClass::Throttle,
                    ..
                }) => throttled += 1,
                Err(SimError::Injected {
                    class: ErrorClass::ServerError,
                    ..
                }) => failed += 1,
                Ok(()) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!((500..700).contains(&throttled), "{throttled}");
        assert!((320..480).contains(&failed), "{failed}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_rolls_the_same_faults() {
        let faults = Faults {
            errors: ErrorRates {
                throttle: 0.5,
                ..Default::default()
            },
            ..Faults::default()
        };
        let (a, b) = (endpoint(faults.clone()), endpoint(faults.clone()));
        for _ in 0..50 {
            assert_eq!(
                a.admit(&faults, 1, 1, false).await,
                b.admit(&faults, 1, 1, false).await
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prompts_beyond_the_context_window_are_refused() {
        let mut spec = EndpointSpec::new("e", Kind::Openai);
        spec.context_window = 10;
        let ep = Endpoint::new(spec, 1, Arc::default());
        let err = ep
            .admit(&Faults::default(), 11, 20, false)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SimError::ContextLength {
                prompt_tokens: 11,
                limit: 10
            }
        );
    }
}
