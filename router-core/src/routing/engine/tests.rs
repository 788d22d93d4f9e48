//! The engine on a paused clock, against scripted adapters: every wait is a timer,
//! so a 30-second outage or a 10-second TTFT timeout takes no real time and always
//! goes the same way. (`router-core/tests/routing.rs` runs the engine over real
//! HTTP against the simulators; here the adapters are in memory.)

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use super::{Answer, Engine, EngineParts, RequestContext, Served, Unserved};
use crate::admin::{Override, StateName};
use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, Delta, Error, ErrorKind,
    FinishReason, Message, Role, Usage,
};
use crate::config::{
    AuthConfig, BreakerParams, Config, EndpointConfig, FeatureConfig, Provider, RouterConfig,
};
use crate::providers::{ChatProvider, ChatStream};
use crate::routing::clock::{Clock, TokioClock};
use crate::telemetry::record::MemorySink;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// What a scripted endpoint does with one request.
#[derive(Clone, Debug)]
enum Act {
    /// Answers after a delay (whole: the response; stream: the first chunk, then
    /// the rest at once).
    Answer(Duration),
    /// Fails with this error after a delay.
    Fail(Duration, Error),
    /// Says nothing, ever.
    Hang,
    /// Streams: the first token, then fails with this error.
    CutAfterFirst(Error),
    /// Streams: the first token, then nothing, ever.
    StallAfterFirst,
    /// Streams: a tool call's first fragment, then fails with this error.
    ToolCallCut(Error),
    /// Refuses a prefill (a trailing assistant message to continue) with a 400;
    /// answers anything else.
    RefusePrefill,
    /// Unavailable until this clock time, then answers.
    DownUntil(Duration),
}

/// An in-memory adapter that plays its script, one act per request (the last act
/// repeats), and remembers when each request came.
struct Scripted {
    config: EndpointConfig,
    script: Mutex<VecDeque<Act>>,
    calls: Mutex<Vec<Duration>>,
    /// The streamed requests it got.
    requests: Mutex<Vec<ChatRequest>>,
    clock: TokioClock,
}

impl Scripted {
    async fn wait(&self, d: Duration) {
        self.clock.sleep_until(self.clock.now() + d).await;
    }

    fn next_act(&self) -> Act {
        self.calls.lock().push(self.clock.now());
        let mut script = self.script.lock();
        if script.len() > 1 {
            script.pop_front().expect("a script")
        } else {
            script
                .front()
                .cloned()
                .unwrap_or(Act::Answer(Duration::ZERO))
        }
    }

    fn response(&self) -> ChatResponse {
        ChatResponse {
            id: "r".into(),
            object: "chat.completion".into(),
            created: 0,
            model: self.config.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: Some(format!("answer from {}", self.config.name)),
                    tool_calls: None,
                    refusal: None,
                },
                finish_reason: Some(FinishReason::Stop),
                logprobs: None,
            }],
            usage: Some(Usage::new(10, 5, None)),
            system_fingerprint: None,
        }
    }

    fn chunk(&self, text: &str) -> ChatChunk {
        ChatChunk::new("c", &self.config.model, 0).with_delta(
            Delta {
                content: Some(text.into()),
                ..Delta::default()
            },
            None,
        )
    }
}

impl ChatProvider for Scripted {
    fn endpoint(&self) -> &EndpointConfig {
        &self.config
    }

    fn chat<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        let act = self.next_act();
        Box::pin(async move {
            match act {
                Act::Answer(after) => {
                    self.wait(after).await;
                    Ok(self.response())
                }
                Act::Fail(after, e) => {
                    self.wait(after).await;
                    Err(e)
                }
                Act::CutAfterFirst(e) | Act::ToolCallCut(e) => Err(e),
                Act::StallAfterFirst | Act::Hang => std::future::pending().await,
                Act::RefusePrefill => Ok(self.response()),
                Act::DownUntil(until) if self.clock.now() < until => {
                    Err(err(ErrorKind::Unavailable))
                }
                Act::DownUntil(_) => Ok(self.response()),
            }
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatStream, Error>> {
        let act = self.next_act();
        self.requests.lock().push(request.clone());
        Box::pin(async move {
            let first = self.chunk("Hello");
            let answer = |first: ChatChunk| {
                let mut last = self.chunk(" world");
                last.choices[0].finish_reason = Some(FinishReason::Stop);
                let mut usage = ChatChunk::new("c", &self.config.model, 0);
                usage.usage = Some(Usage::new(10, 2, None));
                vec![Ok(first), Ok(last), Ok(usage)]
            };
            let rest: Vec<Result<ChatChunk, Error>> = match act {
                Act::Answer(after) => {
                    self.wait(after).await;
                    answer(first)
                }
                Act::RefusePrefill if request.continue_final_message => {
                    return Err(err(ErrorKind::InvalidRequest));
                }
                Act::RefusePrefill => answer(first),
                Act::DownUntil(until) if self.clock.now() < until => {
                    return Err(err(ErrorKind::Unavailable));
                }
                Act::DownUntil(_) => answer(first),
                Act::CutAfterFirst(e) => vec![Ok(first), Err(e)],
                Act::ToolCallCut(e) => {
                    let call = ChatChunk::new("c", &self.config.model, 0).with_delta(
                        Delta {
                            tool_calls: Some(vec![crate::api::ToolCallDelta {
                                index: 0,
                                id: Some("call_1".into()),
                                kind: None,
                                function: crate::api::FunctionCallDelta::default(),
                            }]),
                            ..Delta::default()
                        },
                        None,
                    );
                    vec![Ok(call), Err(e)]
                }
                Act::StallAfterFirst => {
                    let stalled = futures_util::stream::iter([Ok(first)])
                        .chain(futures_util::stream::pending());
                    return Ok(ChatStream::new(stalled));
                }
                Act::Fail(after, e) => {
                    self.wait(after).await;
                    return Err(e);
                }
                Act::Hang => std::future::pending().await,
            };
            Ok(ChatStream::new(futures_util::stream::iter(rest)))
        })
    }
}

struct Rig {
    engine: Engine,
    sink: Arc<MemorySink>,
    endpoints: Vec<Arc<Scripted>>,
}

impl Rig {
    /// Endpoints `names`, bound in that order to the feature `f`, each with its
    /// script; `edit` shapes the configuration.
    fn new(scripts: &[(&str, Vec<Act>)], edit: impl FnOnce(&mut RouterConfig)) -> Rig {
        let names: Vec<&str> = scripts.iter().map(|(n, _)| *n).collect();
        let mut raw = RouterConfig {
            endpoints: names
                .iter()
                .map(|n| {
                    let mut e = EndpointConfig::new(n, Provider::Openai, "m", "eastus");
                    e.base_url = Some("http://127.0.0.1:9".into());
                    e.auth = AuthConfig::None;
                    e
                })
                .collect(),
            features: vec![FeatureConfig::new("f", &names)],
            ..RouterConfig::default()
        };
        edit(&mut raw);
        let config = Config::validate(raw).expect("a valid configuration");
        let clock = TokioClock::new();
        let endpoints: Vec<Arc<Scripted>> = config
            .endpoints()
            .iter()
            .map(|e| {
                let script = scripts
                    .iter()
                    .find(|(n, _)| *n == e.config.name)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                Arc::new(Scripted {
                    config: e.config.clone(),
                    script: Mutex::new(script.into()),
                    calls: Mutex::default(),
                    requests: Mutex::default(),
                    clock,
                })
            })
            .collect();
        let sink = Arc::new(MemorySink::default());
        let providers = endpoints
            .iter()
            .map(|e| e.clone() as Arc<dyn ChatProvider>)
            .collect();
        let parts = EngineParts {
            clock: Arc::new(clock),
            seed: 42,
            ..EngineParts::default()
        };
        let engine = Engine::with_providers(config, 1, providers, sink.clone(), parts);
        Rig {
            engine,
            sink,
            endpoints,
        }
    }

    async fn wait(&self, d: Duration) {
        let clock = self.engine.clock();
        clock.sleep_until(clock.now() + d).await;
    }

    fn calls(&self, name: &str) -> Vec<Duration> {
        self.endpoints
            .iter()
            .find(|e| e.config.name == name)
            .map(|e| e.calls.lock().clone())
            .unwrap_or_default()
    }

    async fn whole(&self, user: &str) -> Result<Served, Unserved> {
        self.engine.run(&ctx(user), Arc::new(request(false))).await
    }

    async fn stream(&self, user: &str) -> Result<Served, Unserved> {
        self.engine.run(&ctx(user), Arc::new(request(true))).await
    }

    fn state(&self, name: &str) -> StateName {
        self.engine
            .health()
            .into_iter()
            .find(|h| h.name == name)
            .map(|h| h.breaker.state)
            .expect("an endpoint")
    }

    fn outcomes(&self) -> Vec<String> {
        self.sink
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.outcome.clone())
            .collect()
    }
}

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "f".into(),
        messages: vec![Message::user("Summarise the meeting")],
        max_tokens: Some(40),
        stream: stream.then_some(true),
        ..ChatRequest::default()
    }
}

fn ctx(user: &str) -> RequestContext {
    RequestContext {
        request_id: format!("req-{user}"),
        team: "t".into(),
        key_id: "k".into(),
        sticky_key: Some(user.into()),
        ..RequestContext::default()
    }
}

fn err(kind: ErrorKind) -> Error {
    Error::new(kind, format!("scripted {kind}"))
}

fn throttled(after: Duration) -> Error {
    err(ErrorKind::RateLimited).with_retry_after(Some(after))
}

fn served_by(served: &Served) -> &str {
    served.route.endpoint.as_deref().unwrap_or_default()
}

async fn drain(served: Served) -> (Vec<ChatChunk>, Option<Error>) {
    drain_keep(served, &Arc::new(parking_lot::Mutex::new(None))).await
}

/// Reads a stream to its end, keeping its report.
async fn drain_keep(
    served: Served,
    report: &Arc<parking_lot::Mutex<Option<super::stream::StreamReport>>>,
) -> (Vec<ChatChunk>, Option<Error>) {
    let Answer::Stream(mut stream) = served.answer else {
        panic!("a stream was asked for");
    };
    let mut chunks = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(c) => chunks.push(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    *report.lock() = Some(stream.report());
    (chunks, error)
}

#[tokio::test(start_paused = true)]
async fn a_whole_answer_is_recorded_once_when_its_completion_is_dropped() {
    let rig = Rig::new(&[("primary", vec![Act::Answer(20 * MS)])], |_| {});
    let served = rig.whole("u").await.unwrap();
    let Answer::Whole(completion) = served.answer else {
        panic!("a whole answer");
    };
    assert_eq!(completion.response().text(), "answer from primary");
    assert!(rig.outcomes().is_empty(), "not accounted while held");
    drop(completion);
    assert_eq!(rig.outcomes(), ["ok"]);
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].latency_ms, 20.0, "clock time, exactly");
    assert_eq!(records[0].completion_tokens, 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_primary_fails_over_to_the_backup() {
    let rig = Rig::new(
        &[
            (
                "primary",
                vec![Act::Fail(Duration::ZERO, err(ErrorKind::UpstreamAuth))],
            ),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let served = rig.whole("u").await.unwrap();
    assert_eq!(served_by(&served), "backup");
    assert_eq!((served.route.attempts, served.route.fallback_depth), (2, 1));
    drop(served);
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].attempts[0].outcome, "upstream_auth");
    assert_eq!(
        records[0].attempts[0].message.as_deref(),
        Some("scripted upstream_auth")
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_upstream_s_retry_after() {
    let rig = Rig::new(
        &[
            (
                "primary",
                vec![Act::Fail(Duration::ZERO, throttled(2 * S)), Act::Answer(MS)],
            ),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let served = rig.whole("u").await.unwrap();
    assert_eq!(served_by(&served), "primary", "the retry succeeded");
    let calls = rig.calls("primary");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1] - calls[0], 2 * S, "not sooner than asked");
    assert!(rig.calls("backup").is_empty());
}

#[tokio::test(start_paused = true)]
async fn persistent_throttling_backs_off_then_moves_to_the_backup() {
    let rig = Rig::new(
        &[
            (
                "primary",
                vec![Act::Fail(Duration::ZERO, err(ErrorKind::RateLimited))],
            ),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let served = rig.whole("u").await.unwrap();
    assert_eq!(served_by(&served), "backup");
    let calls = rig.calls("primary");
    let max_retries = RouterConfig::default().retry.max_retries as usize;
    assert_eq!(calls.len(), 1 + max_retries, "bounded");
    let base = Duration::from_millis(RouterConfig::default().retry.backoff_base_ms);
    for (n, gap) in calls.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let exp = base * (1 << n);
        assert!(
            gap >= exp / 2 && gap <= exp,
            "retry {n} waited {gap:?}, expected within [{:?}, {exp:?}]",
            exp / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_endpoint_is_timed_out_and_not_asked_again() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Hang]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |raw| raw.features[0].attempt_timeout_ms = Some(8_000),
    );
    let clock = rig.engine.clock();
    let before = clock.now();
    let served = rig.whole("u").await.unwrap();
    assert_eq!(served_by(&served), "backup");
    assert_eq!(
        rig.calls("primary").len(),
        1,
        "no retry of a silent endpoint"
    );
    assert_eq!(clock.now() - before, 8 * S + MS);
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_token_fails_over_before_anything_is_sent() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(20 * S)]),
            ("backup", vec![Act::Answer(100 * MS)]),
        ],
        |raw| raw.features[0].ttft_timeout_ms = Some(5_000),
    );
    let served = rig.stream("u").await.unwrap();
    assert_eq!(served_by(&served), "backup");
    let (chunks, error) = drain(served).await;
    assert!(error.is_none());
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(text, "Hello world");
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].attempts[0].outcome, "timeout");
    assert_eq!(records[0].attempts[0].ttft_ms, Some(5_000.0));
}

fn text_of(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect()
}

fn cut() -> Error {
    err(ErrorKind::StreamInterrupted)
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_after_its_first_token_is_continued_on_the_backup() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::CutAfterFirst(cut())]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let served = rig.stream("u").await.unwrap();
    assert_eq!(served_by(&served), "primary", "committed there");
    let report = Arc::new(parking_lot::Mutex::new(None));
    let (chunks, error) = drain_keep(served, &report).await;
    assert!(error.is_none(), "{error:?}");
    // The backup's scripted answer restarts ("Hello world"): spliced after a space.
    assert_eq!(text_of(&chunks), "Hello Hello world");
    let roles = chunks
        .iter()
        .filter(|c| c.choices.first().is_some_and(|ch| ch.delta.role.is_some()))
        .count();
    assert_eq!(
        roles, 0,
        "the scripted chunks carry no role, and none is added"
    );
    assert!(chunks.iter().all(|c| c.id == chunks[0].id), "one stream id");
    let finish = chunks
        .iter()
        .filter(|c| {
            c.choices
                .first()
                .is_some_and(|ch| ch.finish_reason.is_some())
        })
        .count();
    assert_eq!(finish, 1);
    let usage = chunks.last().unwrap().usage.unwrap();
    assert_eq!(
        usage.completion_tokens,
        1 + 2,
        "the prefix's tokens as the client saw them (one delta) and the backup's — \
         not the prefix's billing estimate (its characters / 4 = 2)"
    );
    let continued = report.lock().clone().unwrap();
    assert_eq!(continued.continuations.len(), 1);
    assert_eq!(continued.continuations[0].from, "primary");
    assert_eq!(continued.continuations[0].to, "backup");
    assert_eq!(continued.continuations[0].after_tokens, 1, "one delta seen");

    // What the backup was asked: the conversation, the prefix, and to go on.
    let asked = rig.endpoints[1].requests.lock()[0].clone();
    assert_eq!(
        asked.max_tokens,
        Some(40 - 1),
        "the output limit shrinks by the tokens the client saw (a delta), not by \
         the billing estimate of its characters (2): that would cut the answer short"
    );
    let last: Vec<String> = asked.messages.iter().filter_map(Message::text).collect();
    assert_eq!(last[last.len() - 2], "Hello");
    assert_eq!(
        last[last.len() - 1],
        crate::routing::continuation::CONTINUE_INSTRUCTION
    );

    // One record, both attempts billed to their own endpoints.
    let records = rig.sink.requests.lock().unwrap();
    let [record] = &records[..] else {
        panic!("one record")
    };
    assert_eq!((record.outcome.as_str(), record.continuations), ("ok", 1));
    assert_eq!(record.endpoint.as_deref(), Some("backup"));
    let a = &record.attempts;
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].endpoint.as_str(), a[0].outcome.as_str()),
        ("primary", "stream_interrupted")
    );
    assert!(
        a[0].usage_estimated && a[0].completion_tokens == 2,
        "{:?}",
        a[0]
    );
    assert_eq!(
        (a[1].endpoint.as_str(), a[1].outcome.as_str()),
        ("backup", "ok")
    );
    assert_eq!(a[1].continuation.as_deref(), Some("instruction"));
    assert_eq!(a[1].completion_tokens, 2);
    assert_eq!(record.completion_tokens, 4);
    assert!(record.usage_estimated);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_is_detected_by_the_idle_timeout_and_continued() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::StallAfterFirst]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |raw| raw.features[0].stream_idle_timeout_ms = Some(3_000),
    );
    let before = rig.engine.clock().now();
    let (chunks, error) = drain(rig.stream("u").await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert!(text_of(&chunks).ends_with("world"));
    assert_eq!(
        rig.engine.clock().now() - before,
        3 * S + MS,
        "3 s of silence, then the backup"
    );
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].attempts[0].outcome, "timeout");
    assert_eq!(
        records[0].attempts.len(),
        2,
        "a stalled endpoint is not asked to continue"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_prefill_is_continued_by_instruction_and_never_shows_the_refusal() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::CutAfterFirst(cut())]),
            ("backup", vec![Act::RefusePrefill]),
        ],
        |raw| {
            raw.endpoints[1].capabilities.continuation = Some(crate::config::Continuation::Prefill)
        },
    );
    let (chunks, error) = drain(rig.stream("u").await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert!(text_of(&chunks).ends_with("world"));
    let asked = rig.endpoints[1].requests.lock().clone();
    assert_eq!(asked.len(), 2);
    assert!(asked[0].continue_final_message, "a prefill first");
    assert!(!asked[1].continue_final_message, "then an instruction");
    let records = rig.sink.requests.lock().unwrap();
    let outcomes: Vec<&str> = records[0]
        .attempts
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["stream_interrupted", "invalid_request", "ok"]);
    assert_eq!(records[0].outcome, "ok");
}

#[tokio::test(start_paused = true)]
async fn when_nobody_can_continue_the_stream_ends_with_its_own_error() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::CutAfterFirst(cut())]),
            (
                "backup",
                vec![Act::Fail(Duration::ZERO, err(ErrorKind::InvalidRequest))],
            ),
        ],
        |_| {},
    );
    let (chunks, error) = drain(rig.stream("u").await.unwrap()).await;
    assert_eq!(text_of(&chunks), "Hello");
    let error = error.expect("an error event");
    assert_eq!(
        error.kind,
        ErrorKind::StreamInterrupted,
        "not the backup's refusal"
    );
    assert_eq!(rig.outcomes(), ["stream_interrupted"]);
}

#[tokio::test(start_paused = true)]
async fn a_feature_that_turns_continuation_off_gets_the_error_event() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::CutAfterFirst(cut())]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |raw| raw.features[0].continue_streams = false,
    );
    let (chunks, error) = drain(rig.stream("u").await.unwrap()).await;
    assert_eq!(chunks.len(), 1);
    let error = error.unwrap();
    assert_eq!(error.kind, ErrorKind::StreamInterrupted);
    assert_eq!(
        error.endpoint.as_deref(),
        Some("primary"),
        "tagged by the engine"
    );
    assert!(
        rig.calls("backup").is_empty(),
        "no failover after the first token"
    );
    assert_eq!(rig.outcomes(), ["stream_interrupted"]);
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(
        records[0].completion_tokens, 2,
        "what was streamed is billed"
    );
    assert!(records[0].usage_estimated);
}

#[tokio::test(start_paused = true)]
async fn a_broken_tool_call_is_never_continued() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::ToolCallCut(cut())]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let (_, error) = drain(rig.stream("u").await.unwrap()).await;
    assert_eq!(error.unwrap().kind, ErrorKind::StreamInterrupted);
    assert!(rig.calls("backup").is_empty());
}

#[tokio::test(start_paused = true)]
async fn json_output_is_never_continued() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::CutAfterFirst(cut())]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let mut request = request(true);
    request.response_format = Some(crate::api::ResponseFormat::JsonObject);
    let served = rig.engine.run(&ctx("u"), Arc::new(request)).await.unwrap();
    let (_, error) = drain(served).await;
    assert_eq!(error.unwrap().kind, ErrorKind::StreamInterrupted);
    assert!(rig.calls("backup").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stream_the_client_leaves_is_recorded_as_cancelled() {
    let rig = Rig::new(&[("primary", vec![Act::Answer(MS)])], |_| {});
    let served = rig.stream("u").await.unwrap();
    drop(served);
    assert_eq!(rig.outcomes(), ["cancelled"]);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_final() {
    let rig = Rig::new(
        &[
            (
                "primary",
                vec![Act::Fail(Duration::ZERO, err(ErrorKind::ContentFiltered))],
            ),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    let unserved = rig.whole("u").await.err().unwrap();
    assert_eq!(unserved.error.kind, ErrorKind::ContentFiltered);
    assert_eq!(unserved.error.endpoint.as_deref(), Some("primary"));
    assert_eq!(rig.calls("primary").len(), 1);
    assert!(rig.calls("backup").is_empty());
    assert_eq!(rig.outcomes(), ["content_filtered"]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_request_with_every_attempt_listed() {
    let rig = Rig::new(
        &[
            (
                "primary",
                vec![Act::Fail(2 * S, err(ErrorKind::UpstreamError))],
            ),
            ("backup", vec![Act::Hang]),
        ],
        |raw| raw.features[0].deadline_ms = 5_000,
    );
    let unserved = rig.whole("u").await.err().unwrap();
    assert_eq!(unserved.error.kind, ErrorKind::Timeout);
    assert!(
        unserved.error.message.contains("primary: upstream_error"),
        "{}",
        unserved.error.message
    );
    assert_eq!(rig.engine.clock().now(), 5 * S);
}

#[tokio::test(start_paused = true)]
async fn a_ttft_spike_trips_the_breaker_and_it_recovers_through_the_ramp() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(400 * MS)]),
            ("backup", vec![Act::Answer(10 * MS)]),
        ],
        |raw| {
            raw.features[0].thresholds.ttft_p90_ms = Some(150);
            raw.features[0].ttft_timeout_ms = Some(2_000);
            raw.breaker.defaults = BreakerParams {
                min_requests: Some(5),
                window_s: Some(5),
                open_ms: Some(400),
                stage_ms: Some(150),
                stage_min_requests: Some(2),
                ramp_percent: Some(vec![50.0, 100.0]),
                ..BreakerParams::default()
            };
        },
    );
    for i in 0..8 {
        let (_, error) = drain(rig.stream(&format!("u{i}")).await.unwrap()).await;
        assert!(error.is_none());
        if rig.state("primary") == StateName::Open {
            break;
        }
    }
    assert_eq!(
        rig.state("primary"),
        StateName::Open,
        "slow first tokens open it"
    );
    let served = rig.stream("after").await.unwrap();
    assert_eq!(served_by(&served), "backup", "open: traffic leaves");
    drop(served);

    // The spike ends; after the open period the ramp admits traffic again, stage by
    // stage, and closes.
    *rig.endpoints[0].script.lock() = vec![Act::Answer(10 * MS)].into();
    rig.wait(450 * MS).await;
    rig.engine.tick();
    assert_eq!(rig.state("primary"), StateName::Ramp);
    for i in 0..200 {
        drain(rig.stream(&format!("r{i}")).await.unwrap()).await;
        rig.engine.tick();
        if rig.state("primary") == StateName::Closed {
            break;
        }
        rig.wait(10 * MS).await;
    }
    assert_eq!(
        rig.state("primary"),
        StateName::Closed,
        "a healthy ramp closes it"
    );
    let events = rig.sink.breakers.lock().unwrap();
    let path: Vec<(StateName, StateName)> = events
        .iter()
        .filter(|e| e.endpoint == "primary")
        .map(|e| (e.transition.from, e.transition.to))
        .collect();
    assert_eq!(path.first(), Some(&(StateName::Closed, StateName::Open)));
    assert_eq!(path.last().map(|p| p.1), Some(StateName::Closed));
    let trip = &events[0].transition.reason;
    assert!(
        trip.value > trip.threshold && trip.threshold == 150.0,
        "{trip:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_forced_open_breaker_sends_every_request_to_the_backup() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(MS)]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    rig.engine
        .set_override("primary", Override::ForceOpen, "incident 42".into())
        .unwrap();
    for i in 0..10 {
        assert_eq!(
            served_by(&rig.whole(&format!("u{i}")).await.unwrap()),
            "backup"
        );
    }
    assert!(rig.calls("primary").is_empty());
}

/// Two engines with the same seed, given the same requests, make the same choices:
/// randomness is injected like time.
#[tokio::test(start_paused = true)]
async fn engines_with_the_same_seed_make_the_same_choices() {
    let choices = || async {
        let rig = Rig::new(
            &[("a", vec![Act::Answer(MS)]), ("b", vec![Act::Answer(MS)])],
            |raw| raw.breaker.defaults.ramp_percent = Some(vec![50.0, 100.0]),
        );
        rig.engine
            .set_override("a", Override::ForceOpen, "drain".into())
            .unwrap();
        rig.engine
            .set_override("a", Override::Auto, "back".into())
            .unwrap();
        let mut served = Vec::new();
        for _ in 0..40 {
            // No sticky key: the dice decide the ramp's admission.
            let mut c = ctx("");
            c.sticky_key = None;
            let s = rig.engine.run(&c, Arc::new(request(false))).await.unwrap();
            served.push(served_by(&s).to_owned());
        }
        served
    };
    let first = choices().await;
    assert_eq!(first, choices().await);
    let to_a = first.iter().filter(|s| *s == "a").count();
    assert!((8..=32).contains(&to_a), "about half: {to_a} of 40");
}

/// The primary is down for 60 s, then healthy; a request comes every 4 s. Every
/// one is answered (by the backup while the primary is down), and traffic goes back
/// to the primary within seconds of its recovery: health probes end the open
/// period early, and the ramp admits thin traffic instead of starving.
#[tokio::test(start_paused = true)]
async fn after_an_outage_thin_traffic_returns_to_the_primary_soon_after_it_recovers() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::DownUntil(60 * S)]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    // What the server's background tasks do: breaker ticks and health probes.
    let engine = rig.engine.clone();
    let background = tokio::spawn(async move {
        loop {
            engine.tick();
            engine.probe().await;
            let clock = engine.clock();
            clock.sleep_until(clock.now() + S).await;
        }
    });
    let mut served = Vec::new();
    for i in 0..20u32 {
        let at = Duration::from_secs(4 * u64::from(i));
        let clock = rig.engine.clock();
        clock.sleep_until(at).await;
        let s = rig
            .whole(&format!("u{i}"))
            .await
            .expect("every request is answered");
        served.push((at, served_by(&s).to_owned()));
    }
    background.abort();
    let back: Vec<Duration> = served
        .iter()
        .filter(|(at, by)| *at >= 60 * S && by == "primary")
        .map(|(at, _)| *at)
        .collect();
    assert!(
        back.first().is_some_and(|t| *t <= 68 * S),
        "back on the primary within 8 s of its recovery: {served:?}"
    );
    assert_eq!(back.len(), 4, "and it stays there: {served:?}");
}

fn rollout(percent: f64) -> crate::config::RolloutConfig {
    crate::config::RolloutConfig {
        id: "to-eu".into(),
        target: vec!["target".into()],
        percent,
        variant: None,
    }
}

/// A rollout moves its share of users (sticky, by the hash), and widening a stage
/// only adds users: nobody moved at 25 % goes back at 50 %.
#[tokio::test(start_paused = true)]
async fn a_rollout_moves_its_share_of_users_and_widening_only_adds_users() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(MS)]),
            ("target", vec![Act::Answer(MS)]),
        ],
        |raw| {
            raw.features[0].binding = vec!["primary".into()];
            raw.features[0].rollout = Some(rollout(25.0));
        },
    );
    let users: Vec<String> = (0..4000).map(|i| format!("user-{i}")).collect();
    let moved = |engine: &Engine| -> Vec<bool> {
        users
            .iter()
            .map(|u| {
                let d = engine.decide("f", Some(u), 10).unwrap();
                let arm = d.arm.expect("a rollout is on");
                assert_eq!(arm.rollout, "to-eu");
                let first = d.candidates[0].endpoint;
                assert_eq!(first == 1, arm.candidate, "the candidate arm is the target");
                arm.candidate
            })
            .collect()
    };
    let at_25 = moved(&rig.engine);
    let share = at_25.iter().filter(|m| **m).count() as f64 / users.len() as f64;
    assert!((share - 0.25).abs() < 0.03, "{share}");
    assert_eq!(at_25, moved(&rig.engine), "sticky per user");
    let mut raw = rig.engine.snapshot().config.raw().clone();
    raw.features[0].rollout = Some(rollout(50.0));
    rig.engine.activate(
        super::Prepared {
            config: Config::validate(raw).unwrap(),
            providers: rig
                .endpoints
                .iter()
                .map(|e| e.clone() as Arc<dyn ChatProvider>)
                .collect(),
        },
        2,
    );
    let at_50 = moved(&rig.engine);
    assert!(
        at_25
            .iter()
            .zip(&at_50)
            .all(|(before, after)| !before || *after),
        "a user moved stays moved"
    );
    let share = at_50.iter().filter(|m| **m).count() as f64 / users.len() as f64;
    assert!((share - 0.5).abs() < 0.03, "{share}");
    // Recorded with its arm.
    drop(rig.whole("user-1").await.unwrap());
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].rollout.as_deref(), Some("to-eu"));
    assert!(matches!(
        records[0].rollout_arm.as_deref(),
        Some("candidate" | "incumbent")
    ));
}

#[tokio::test(start_paused = true)]
async fn a_drill_takes_its_target_out_without_touching_its_breaker() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(MS)]),
            ("backup", vec![Act::Answer(MS)]),
        ],
        |_| {},
    );
    rig.engine
        .set_drills(vec![crate::routing::drill::DrillRule {
            id: "dr-1".into(),
            target: crate::routing::drill::DrillTarget::Endpoint("primary".into()),
            fraction: 1.0,
            until_ms: i64::MAX,
        }]);
    for i in 0..5 {
        assert_eq!(
            served_by(&rig.whole(&format!("u{i}")).await.unwrap()),
            "backup"
        );
    }
    assert!(rig.calls("primary").is_empty());
    let primary = rig
        .engine
        .health()
        .into_iter()
        .find(|h| h.name == "primary")
        .unwrap();
    assert_eq!(primary.breaker.state, StateName::Closed);
    assert_eq!(
        primary.stats.requests, 0,
        "the breaker saw nothing of the drill"
    );
    assert!(
        rig.sink
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.drill.as_deref() == Some("dr-1"))
    );
    // Over: back to the primary.
    rig.engine.set_drills(Vec::new());
    assert_eq!(served_by(&rig.whole("after").await.unwrap()), "primary");
}

fn shadow(sample: f64) -> crate::config::ShadowConfig {
    crate::config::ShadowConfig {
        id: "cheaper".into(),
        candidate: vec!["cand".into()],
        sample_percent: sample,
        cohort_percent: None,
        from_ms: None,
        until_ms: None,
        judge_ttft: false,
    }
}

/// The client's answer does not wait for its shadow: a slow candidate changes
/// nothing the client sees; the comparison comes when both are in, and the
/// shadow's cost is migration cost.
#[tokio::test(start_paused = true)]
async fn a_shadow_runs_off_the_clients_path_and_is_compared_when_both_answered() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(10 * MS)]),
            ("cand", vec![Act::Answer(5 * S)]),
        ],
        |raw| {
            raw.features[0].binding = vec!["primary".into()];
            raw.features[0].shadows = vec![shadow(100.0)];
        },
    );
    let clock = rig.engine.clock();
    let before = clock.now();
    let served = rig.whole("u").await.unwrap();
    assert_eq!(
        clock.now() - before,
        10 * MS,
        "the client waited for nobody"
    );
    assert_eq!(served_by(&served), "primary");
    drop(served);
    rig.wait(6 * S).await;
    let comparisons = rig.sink.shadows.lock().unwrap().clone();
    let [c] = &comparisons[..] else {
        panic!("one comparison: {comparisons:?}")
    };
    assert_eq!((c.shadow.as_str(), c.feature.as_str()), ("cheaper", "f"));
    assert_eq!(c.request_id, "req-u");
    assert_eq!(c.incumbent.endpoint.as_deref(), Some("primary"));
    assert_eq!(c.candidate.endpoint.as_deref(), Some("cand"));
    assert!(c.incumbent.ok && c.candidate.ok);
    assert!(
        c.candidate.latency_ms >= 5_000.0 && c.incumbent.latency_ms < 100.0,
        "{c:?}"
    );
    // The scripted answers differ only in the endpoint's name: similar, not equal.
    let similarity = c.similarity.unwrap();
    assert!(similarity > 0.5 && similarity < 1.0, "{similarity}");
    let records = rig.sink.requests.lock().unwrap();
    let shadow = records
        .iter()
        .find(|r| r.shadow.is_some())
        .expect("the shadow's record");
    assert_eq!(shadow.team, super::MIGRATION_TEAM);
    assert_eq!(shadow.endpoint.as_deref(), Some("cand"));
    let client = records.iter().find(|r| r.shadow.is_none()).unwrap();
    assert_eq!(client.team, "t");
}

#[tokio::test(start_paused = true)]
async fn a_shadow_is_shed_when_its_candidate_is_unavailable_or_over_the_cap() {
    let rig = Rig::new(
        &[
            ("primary", vec![Act::Answer(MS)]),
            ("cand", vec![Act::Hang]),
        ],
        |raw| {
            raw.features[0].binding = vec!["primary".into()];
            raw.features[0].shadows = vec![shadow(100.0)];
        },
    );
    rig.engine
        .set_override("cand", Override::ForceOpen, "drain".into())
        .unwrap();
    drop(rig.whole("u1").await.unwrap());
    rig.wait(MS).await;
    assert!(
        rig.calls("cand").is_empty(),
        "an open candidate gets no shadow"
    );
    assert_eq!(rig.engine.shadow_stats().1, 1);
    rig.engine
        .set_override("cand", Override::ForceClosed, "back".into())
        .unwrap();
    // The cap (64 by default): the hanging candidate holds every permit.
    for i in 0..70 {
        drop(rig.whole(&format!("v{i}")).await.unwrap());
        rig.wait(MS).await;
    }
    assert_eq!(rig.calls("cand").len(), 64);
    assert_eq!(rig.engine.shadow_stats(), (64, 1 + 6));
}
