//! The routing engine against simulated OpenAI-compatible endpoints over real HTTP:
//! failover, the first-token rule, retries and their budget, spillover, breakers and
//! the data boundary. (The conformance suite covers each provider's wire format; here
//! the provider is incidental, so the simplest one is used.)

use std::sync::Arc;

use futures_util::StreamExt;
use router_core::admin::RouteInfo;
use router_core::admin::{Override, StateName};
use router_core::api::ChatResponse;
use router_core::api::{ChatRequest, ErrorKind, Message, StreamOptions};
use router_core::config::{
    AuthConfig, Capacity, Config, EndpointConfig, FeatureConfig, Provider, RouterConfig,
};
use router_core::routing::engine::{Answer, Engine, RequestContext, RoutedStream, Unserved};
use router_core::telemetry::record::MemorySink;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

struct Rig {
    sim: Sim,
    engine: Engine,
    sink: Arc<MemorySink>,
}

/// A served request's route and its answer.
struct Answered<T> {
    route: RouteInfo,
    value: T,
}

/// A whole completion, accounted (its completion dropped) before it is returned.
async fn chat(
    engine: &Engine,
    ctx: &RequestContext,
    request: &ChatRequest,
) -> Result<Answered<ChatResponse>, Unserved> {
    let mut request = request.clone();
    request.stream = None;
    let served = engine.run(ctx, Arc::new(request)).await?;
    let Answer::Whole(completion) = served.answer else {
        panic!("a whole answer was asked for");
    };
    Ok(Answered {
        route: served.route,
        value: completion.response().clone(),
    })
}

/// A streamed completion, committed to one endpoint.
async fn chat_stream(
    engine: &Engine,
    ctx: &RequestContext,
    request: &ChatRequest,
) -> Result<Answered<RoutedStream>, Unserved> {
    let served = engine.run(ctx, Arc::new(request.clone())).await?;
    let Answer::Stream(stream) = served.answer else {
        panic!("a stream was asked for");
    };
    Ok(Answered {
        route: served.route,
        value: stream,
    })
}

/// Simulated OpenAI endpoints named `names` (regions from the name: `eu-*` is in
/// `europe-west4`, the rest in `eastus`), a router over them, and `edit` to shape the
/// config.
async fn rig(names: &[&str], edit: impl FnOnce(&mut RouterConfig)) -> Rig {
    let sim = Sim::start(SimConfig {
        seed: 7,
        control: None,
        endpoints: names
            .iter()
            .map(|n| {
                let mut spec = EndpointSpec::new(*n, Kind::Openai);
                spec.auth = AuthMode::None;
                // A small window, except for endpoints named `big*`.
                spec.context_window = if n.starts_with("big") { 100_000 } else { 1_000 };
                spec
            })
            .collect(),
    })
    .await
    .unwrap();
    let endpoints = names
        .iter()
        .map(|n| {
            let region = if n.starts_with("eu") {
                "europe-west4"
            } else {
                "eastus"
            };
            let mut e = EndpointConfig::new(n, Provider::Openai, "gpt-4o-mini", region);
            e.base_url = Some(sim.url(n));
            e.auth = AuthConfig::None;
            e.timeouts.request_ms = 5_000;
            e.timeouts.stream_idle_ms = 2_000;
            e
        })
        .collect();
    let mut raw = RouterConfig {
        endpoints,
        features: vec![FeatureConfig::new("summarize", names)],
        ..RouterConfig::default()
    };
    edit(&mut raw);
    let config = Config::validate(raw).unwrap();
    let sink = Arc::new(MemorySink::default());
    let engine = Engine::new(config, 1, sink.clone()).await.unwrap();
    Rig { sim, engine, sink }
}

impl Rig {
    fn faults(&self, endpoint: &str, patch: Value) {
        let ep = self.sim.endpoint(endpoint);
        ep.set_faults(ep.faults().patched(&patch).unwrap());
    }

    /// Every request the endpoint answered, whatever the status.
    fn requests_to(&self, endpoint: &str) -> u64 {
        self.sim.endpoint(endpoint).stats().statuses.values().sum()
    }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: "summarize".into(),
        messages: vec![Message::user(text)],
        max_tokens: Some(40),
        ..ChatRequest::default()
    }
}

fn streaming(text: &str) -> ChatRequest {
    ChatRequest {
        stream: Some(true),
        stream_options: Some(StreamOptions {
            include_usage: true,
        }),
        ..request(text)
    }
}

fn ctx(user: &str) -> RequestContext {
    RequestContext {
        request_id: format!("req-{user}"),
        team: "search".into(),
        key_id: "key-1".into(),
        sticky_key: Some(user.into()),
        ..RequestContext::default()
    }
}

#[tokio::test]
async fn fails_over_to_the_backup_when_the_primary_is_down() {
    let rig = rig(&["primary", "backup"], |_| {}).await;
    rig.faults("primary", json!({"outage": "refuse"}));
    let served = chat(&rig.engine, &ctx("u1"), &request("Summarise the meeting"))
        .await
        .unwrap();
    assert_eq!(served.route.endpoint.as_deref(), Some("backup"));
    assert_eq!(served.route.fallback_depth, 1);
    assert!(served.route.attempts >= 2);
    assert!(!served.value.text().is_empty());
    let records = rig.sink.requests.lock().unwrap();
    let record = records.last().unwrap();
    assert_eq!(
        (record.outcome.as_str(), record.endpoint.as_deref()),
        ("ok", Some("backup"))
    );
    assert_eq!(record.attempts[0].outcome, "unavailable");
}

#[tokio::test]
async fn a_whole_answer_is_accounted_once_with_its_tokens_and_cost() {
    let rig = rig(&["primary"], |c| {
        c.endpoints[0].pricing.input_per_million = Decimal::from(3);
        c.endpoints[0].pricing.output_per_million = Decimal::from(15);
    })
    .await;
    let served = chat(&rig.engine, &ctx("u1"), &request("Summarise the meeting"))
        .await
        .unwrap();
    assert_eq!(served.route.attempts, 1);
    assert_eq!(rig.engine.health()[0].in_flight, 0);
    assert_eq!(rig.engine.health()[0].stats.successes, 1);
    let records = rig.sink.requests.lock().unwrap();
    let [record] = &records[..] else {
        panic!("one record, got {}", records.len())
    };
    let usage = served.value.usage.unwrap();
    assert_eq!(record.outcome, "ok");
    assert_eq!(record.request_id, "req-u1");
    assert_eq!(record.completion_tokens, u64::from(usage.completion_tokens));
    let cost = (Decimal::from(usage.prompt_tokens) * Decimal::from(3)
        + Decimal::from(usage.completion_tokens) * Decimal::from(15))
        / Decimal::from(1_000_000);
    assert_eq!(record.cost, cost);
    assert_eq!(record.attempts.len(), 1);
}

#[tokio::test]
async fn with_continuation_off_a_stream_never_fails_over_after_its_first_token() {
    let rig = rig(&["primary", "backup"], |raw| {
        raw.features[0].continue_streams = false;
    })
    .await;
    rig.faults("primary", json!({"cut_after_tokens": 3}));
    let served = chat_stream(&rig.engine, &ctx("u1"), &streaming("Tell me a long story"))
        .await
        .unwrap();
    assert_eq!(served.route.endpoint.as_deref(), Some("primary"));
    let mut stream = served.value;
    let (mut text, mut error) = (String::new(), None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                for c in &chunk.choices {
                    text.push_str(c.delta.content.as_deref().unwrap_or_default());
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(!text.is_empty(), "the first tokens reached the client");
    assert_eq!(
        error.expect("the cut is reported").kind,
        ErrorKind::StreamInterrupted
    );
    drop(stream);
    assert_eq!(
        rig.requests_to("backup"),
        0,
        "no failover after the first token"
    );
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records.last().unwrap().outcome, "stream_interrupted");
}

#[tokio::test]
async fn a_slow_first_token_fails_over_before_anything_is_sent() {
    let rig = rig(&["primary", "backup"], |raw| {
        raw.features[0].ttft_timeout_ms = Some(300);
    })
    .await;
    rig.faults("primary", json!({"ttft_ms": 3000}));
    let served = chat_stream(&rig.engine, &ctx("u1"), &streaming("hello"))
        .await
        .unwrap();
    assert_eq!(served.route.endpoint.as_deref(), Some("backup"));
    let chunks: Vec<_> = served.value.collect().await;
    assert!(chunks.iter().all(Result::is_ok));
    assert!(
        chunks.last().unwrap().as_ref().unwrap().usage.is_some(),
        "usage last"
    );
}

#[tokio::test]
async fn client_errors_are_neither_retried_nor_failed_over() {
    let rig = rig(&["primary", "backup"], |_| {}).await;
    // Over the simulator's 1,000-token context window: the upstream's 400.
    let failure = chat(&rig.engine, &ctx("u1"), &request(&"word ".repeat(1_500)))
        .await
        .err()
        .unwrap();
    assert_eq!(failure.error.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(
        (rig.requests_to("primary"), rig.requests_to("backup")),
        (1, 0)
    );
}

#[tokio::test]
async fn retries_back_off_and_stop_when_the_budget_is_exhausted() {
    // A generous budget: the primary is retried max_retries times, then the backup.
    let rig_ok = rig(&["primary", "backup"], |raw| {
        raw.retry.max_retries = 2;
        raw.retry.backoff_base_ms = 1;
    })
    .await;
    rig_ok.faults("primary", json!({"errors": {"server_error": 1.0}}));
    let served = chat(&rig_ok.engine, &ctx("u1"), &request("x"))
        .await
        .unwrap();
    assert_eq!(served.route.endpoint.as_deref(), Some("backup"));
    assert_eq!(rig_ok.requests_to("primary"), 3, "one try and two retries");

    // No budget: no retries at all, straight to the backup.
    let rig_dry = rig(&["primary", "backup"], |raw| {
        raw.retry.max_retries = 2;
        raw.retry.backoff_base_ms = 1;
        raw.retry.budget_ratio = 0.0;
        raw.retry.budget_min_per_s = 0;
    })
    .await;
    rig_dry.faults("primary", json!({"errors": {"server_error": 1.0}}));
    for i in 0..5 {
        chat(&rig_dry.engine, &ctx(&format!("u{i}")), &request("x"))
            .await
            .unwrap();
    }
    assert_eq!(
        rig_dry.requests_to("primary"),
        5,
        "an exhausted budget allows no retry"
    );
}

#[tokio::test]
async fn when_every_endpoint_fails_the_error_names_each_attempt() {
    let rig = rig(&["primary", "backup"], |raw| raw.retry.max_retries = 0).await;
    rig.faults("primary", json!({"outage": "unavailable"}));
    rig.faults("backup", json!({"errors": {"server_error": 1.0}}));
    let failure = chat(&rig.engine, &ctx("u1"), &request("x"))
        .await
        .err()
        .unwrap();
    let message = &failure.error.message;
    assert!(
        message.contains("primary: unavailable") && message.contains("backup: upstream_error"),
        "{message}"
    );
    assert_eq!(failure.route.attempts, 2);
}

#[tokio::test]
async fn the_data_boundary_holds_even_with_every_eu_endpoint_down() {
    let rig = rig(&["eu-a", "eu-b", "us-a"], |raw| {
        raw.features[0].binding = vec!["eu-a".into(), "eu-b".into()];
        raw.features[0].geographies = vec!["eu".into()];
        raw.retry.max_retries = 0;
    })
    .await;
    rig.faults("eu-a", json!({"outage": "refuse"}));
    rig.faults("eu-b", json!({"outage": "unavailable"}));
    for i in 0..10 {
        let failure = chat(&rig.engine, &ctx(&format!("u{i}")), &request("x"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(failure.error.kind, ErrorKind::Unavailable),
            "{:?}",
            failure.error
        );
    }
    assert_eq!(rig.requests_to("us-a"), 0);
}

#[tokio::test]
async fn a_full_provisioned_endpoint_spills_to_on_demand_without_dropping_a_request() {
    let rig = rig(&["prov", "ondemand"], |raw| {
        raw.endpoints[0].capacity = Capacity::Provisioned {
            tokens_per_minute: 2_000,
            spill_to: Some("ondemand".into()),
        };
        raw.features[0].binding = vec!["prov".into()];
    })
    .await;
    // The simulator's own ceiling is lower than what Crossbar believes: both the
    // pre-emptive spill (Crossbar's count) and the reactive one (the provider's 429)
    // are exercised.
    rig.faults("prov", json!({"capacity_tpm": 1_000}));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let engine = rig.engine.clone();
        tasks.push(tokio::spawn(async move {
            chat(
                &engine,
                &ctx(&format!("u{i}")),
                &request("Summarise this quarterly report in detail"),
            )
            .await
        }));
    }
    let mut spilled = 0;
    for t in tasks {
        let served = t
            .await
            .unwrap()
            .map_err(|f| f.error)
            .expect("no request is dropped");
        spilled += usize::from(served.route.spilled);
    }
    assert!(spilled > 0, "the burst spilled");
    assert!(rig.sim.endpoint("ondemand").stats().requests > 0);
    let records = rig.sink.requests.lock().unwrap();
    assert!(records.iter().all(|r| r.outcome == "ok"));
    assert!(
        records.iter().any(|r| r.provisioned && !r.spilled),
        "provisioned capacity is used first"
    );
}

#[tokio::test]
async fn a_forced_open_breaker_sends_traffic_away_and_ramps_back_when_released() {
    let rig = rig(&["primary", "backup"], |raw| {
        raw.breaker.defaults.ramp_percent = Some(vec![25.0, 100.0]);
    })
    .await;
    rig.engine
        .set_override("primary", Override::ForceOpen, "incident 42".into())
        .unwrap();
    for i in 0..10 {
        let served = chat(&rig.engine, &ctx(&format!("u{i}")), &request("x"))
            .await
            .unwrap();
        assert_eq!(served.route.endpoint.as_deref(), Some("backup"));
    }
    assert_eq!(rig.requests_to("primary"), 0);
    // Released: not all at once, through the ramp's first stage (25 %).
    rig.engine
        .set_override("primary", Override::Auto, "resolved".into())
        .unwrap();
    let primary = rig
        .engine
        .health()
        .into_iter()
        .find(|h| h.name == "primary")
        .unwrap();
    assert_eq!(primary.breaker.state, StateName::Ramp);
    let mut to_primary = 0;
    for i in 0..80 {
        let served = chat(&rig.engine, &ctx(&format!("r{i}")), &request("x"))
            .await
            .unwrap();
        to_primary += usize::from(served.route.endpoint.as_deref() == Some("primary"));
    }
    assert!(
        (5..=40).contains(&to_primary),
        "about a quarter: {to_primary} of 80"
    );
}

#[tokio::test]
async fn a_publish_takes_effect_for_the_next_request_and_keeps_breaker_state() {
    let rig = rig(&["primary", "backup"], |_| {}).await;
    rig.engine
        .set_override("backup", Override::ForceOpen, "drill".into())
        .unwrap();
    let mut raw = rig.engine.snapshot().config.raw().clone();
    raw.features[0].binding = vec!["backup".into(), "primary".into()];
    rig.engine
        .publish(Config::validate(raw).unwrap(), 2)
        .await
        .unwrap();
    let served = chat(&rig.engine, &ctx("u1"), &request("x")).await.unwrap();
    assert_eq!(served.route.config_version, 2);
    assert_eq!(
        served.route.endpoint.as_deref(),
        Some("primary"),
        "backup is still forced open"
    );
}

#[tokio::test]
async fn an_unknown_feature_is_a_clear_not_found() {
    let rig = rig(&["primary"], |_| {}).await;
    let mut r = request("x");
    r.model = "nope".into();
    let failure = chat(&rig.engine, &ctx("u1"), &r).await.err().unwrap();
    assert_eq!(
        (failure.error.kind, failure.error.param.as_deref()),
        (ErrorKind::NotFound, Some("model"))
    );
    assert!(failure.error.message.contains("/v1/models"));
}

#[tokio::test]
async fn a_context_overflow_falls_back_to_a_larger_window_only_when_enabled() {
    let small_window = |raw: &mut RouterConfig| {
        raw.endpoints[0].capabilities.context_window = Some(1_000);
        raw.endpoints[0].capabilities.max_output_tokens = Some(500);
    };
    let long = request(&"word ".repeat(1_500));

    let rig_off = rig(&["small", "big"], small_window).await;
    let failure = chat(&rig_off.engine, &ctx("u1"), &long)
        .await
        .err()
        .unwrap();
    assert_eq!(failure.error.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(
        rig_off.requests_to("big"),
        0,
        "a client error is final by default"
    );

    let rig_on = rig(&["small", "big"], |raw| {
        small_window(raw);
        raw.features[0].context_fallback = true;
    })
    .await;
    let served = chat(&rig_on.engine, &ctx("u1"), &long).await.unwrap();
    assert_eq!(served.route.endpoint.as_deref(), Some("big"));
    assert_eq!(served.route.attempts, 2);
}

#[tokio::test]
async fn a_malformed_chunk_mid_stream_is_skipped_and_recorded() {
    let rig = rig(&["primary"], |_| {}).await;
    rig.faults("primary", json!({"malformed_after_tokens": 3}));
    let served = chat_stream(&rig.engine, &ctx("u1"), &streaming("Tell me a story"))
        .await
        .unwrap();
    let items: Vec<_> = served.value.collect().await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let records = rig.sink.requests.lock().unwrap();
    assert_eq!(records[0].outcome, "ok");
    assert_eq!(records[0].skipped_chunks, 1);
}
