//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), encoded by
//! the `prometheus-client` crate.
//!
//! The hot path does not feed this module: each request adds to plain sums in
//! [`crate::live::MetricTotals`] under one short lock. A scrape copies those sums
//! and the endpoints' health into a [`ScrapedMetrics`], which `prometheus-client` encodes
//! as a collector. Building families at scrape time is what lets each family carry
//! exactly the labels that identify its series, with every series once:
//!
//! | family | labels |
//! |---|---|
//! | `crossbar_requests_total`, `crossbar_cost_total` | feature, variant, endpoint, outcome |
//! | `crossbar_tokens_total` | feature, variant, endpoint, direction (`prompt`, `completion`) |
//! | `crossbar_spilled_total`, `crossbar_fallbacks_total` (served requests) | feature, variant, endpoint |
//! | `crossbar_stream_continuations_total`, `crossbar_stream_chunks_skipped_total` | feature, variant, endpoint |
//! | `crossbar_breaker_transitions_total` | endpoint, to |
//! | `crossbar_breaker_state` | endpoint, provider, region |
//! | `crossbar_endpoint_latency_seconds`, `crossbar_endpoint_ttft_seconds` | endpoint, quantile |
//! | other `crossbar_endpoint_*`, `crossbar_breaker_admission_ratio`, `crossbar_capacity_utilisation_ratio` | endpoint |
//! | `crossbar_ledger_records_total` | fate |
//! | `crossbar_config_version`, `crossbar_ledger_queued` | none |
//!
//! Series of one family are written together, in label order. Labels are
//! low-cardinality by design: names from the configuration and the normalised
//! outcome class. Cost is the marginal (on-demand) cost as a float; exact figures
//! are the admin spend API's.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use router_core::admin::{EndpointHealth, LedgerStats, StateName};
use rust_decimal::prelude::ToPrimitive;

use crate::AppState;
use crate::live::RequestTotals;

pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    match render_text(&state) {
        Ok(text) => {
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(err) => {
            tracing::error!(%err, "cannot encode /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response()
        }
    }
}

/// The exposition text, as of now.
pub fn render_text(state: &AppState) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapedMetrics::take(state)));
    let mut out = String::with_capacity(16 * 1024);
    encode(&mut out, &registry)?;
    Ok(out)
}

/// `(feature, variant, endpoint)`.
type RouteKey = (String, String, String);

/// What one scrape reports: a copy taken at scrape time, grouped by the labels of
/// each family (sums over what a family's labels do not tell apart).
#[derive(Debug, Default)]
pub struct ScrapedMetrics {
    config_version: i64,
    /// `(feature, variant, endpoint, outcome)` → totals.
    requests: BTreeMap<(String, String, String, String), RequestTotals>,
    /// Per route: tokens `[prompt, completion]` (every outcome).
    tokens: BTreeMap<RouteKey, [u64; 2]>,
    /// Per route, served requests only: `(spilled, fallbacks)`.
    served: BTreeMap<RouteKey, (u64, u64)>,
    /// Per route (every outcome): `(continuations, skipped chunks)` of streams.
    streams: BTreeMap<RouteKey, (u64, u64)>,
    transitions: BTreeMap<(String, String), u64>,
    health: Vec<EndpointHealth>,
    ledger: LedgerStats,
}

impl ScrapedMetrics {
    pub fn take(state: &AppState) -> ScrapedMetrics {
        let mut scrape = ScrapedMetrics {
            config_version: state.engine.snapshot().version,
            health: state.engine.health(),
            ledger: state.ledger.stats(),
            ..ScrapedMetrics::default()
        };
        state.live.with_totals(|totals| {
            for ((feature, variant, endpoint, outcome), t) in totals.requests() {
                let route = (feature.to_owned(), variant.to_owned(), endpoint.to_owned());
                let tokens = scrape.tokens.entry(route.clone()).or_default();
                tokens[0] += t.prompt_tokens;
                tokens[1] += t.completion_tokens;
                let streams = scrape.streams.entry(route.clone()).or_default();
                streams.0 += t.continuations;
                streams.1 += t.skipped_chunks;
                if outcome == "ok" {
                    let served = scrape.served.entry(route).or_default();
                    served.0 += t.spilled;
                    served.1 += t.fallbacks;
                }
                let key = (
                    feature.to_owned(),
                    variant.to_owned(),
                    endpoint.to_owned(),
                    outcome.to_owned(),
                );
                let sum = scrape.requests.entry(key).or_default();
                sum.count += t.count;
                sum.prompt_tokens += t.prompt_tokens;
                sum.completion_tokens += t.completion_tokens;
                sum.cost += t.cost;
                sum.latency_ms_sum += t.latency_ms_sum;
                sum.spilled += t.spilled;
                sum.fallbacks += t.fallbacks;
            }
            scrape.transitions = totals.transitions.clone();
        });
        scrape
    }
}

/// One family: its descriptor, then each series.
fn family<M: EncodeMetric, L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

/// A family without labels: one sample.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    metric: M,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

impl Collector for ScrapedMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};

        single(
            &mut e,
            "crossbar_config_version",
            "The configuration version serving.",
            Gauge,
            ConstGauge::new(self.config_version),
        )?;

        family(
            &mut e,
            "crossbar_requests",
            "Client requests by feature, variant, serving endpoint and outcome (ok or the normalised error class).",
            Counter,
            self.requests
                .iter()
                .map(|(k, t)| (by_request(k), counter(t.count))),
        )?;
        family(
            &mut e,
            "crossbar_tokens",
            "Tokens by feature, variant, endpoint and direction.",
            Counter,
            self.tokens
                .iter()
                .flat_map(|(route, [prompt, completion])| {
                    let [f, v, ep] = by_route(route);
                    [
                        ([f, v, ep, ("direction", "prompt")], counter(*prompt)),
                        (
                            [f, v, ep, ("direction", "completion")],
                            counter(*completion),
                        ),
                    ]
                }),
        )?;
        family(
            &mut e,
            "crossbar_cost",
            "Marginal (on-demand) cost in the pricing currency (exact figures: the admin spend API).",
            Counter,
            self.requests.iter().map(|(k, t)| {
                (
                    by_request(k),
                    ConstCounter::new(t.cost.to_f64().unwrap_or(0.0)),
                )
            }),
        )?;
        family(
            &mut e,
            "crossbar_spilled",
            "Served requests answered by an on-demand sibling because provisioned capacity was full.",
            Counter,
            self.served
                .iter()
                .map(|(route, (spilled, _))| (by_route(route), counter(*spilled))),
        )?;
        family(
            &mut e,
            "crossbar_fallbacks",
            "Served requests answered by a backup rather than the primary.",
            Counter,
            self.served
                .iter()
                .map(|(route, (_, fallbacks))| (by_route(route), counter(*fallbacks))),
        )?;
        family(
            &mut e,
            "crossbar_stream_continuations",
            "Streams that broke after their first token and went on at another endpoint (by the endpoint that finished them).",
            Counter,
            self.streams
                .iter()
                .map(|(route, (continued, _))| (by_route(route), counter(*continued))),
        )?;
        family(
            &mut e,
            "crossbar_stream_chunks_skipped",
            "Malformed upstream stream events skipped (never sent to the client).",
            Counter,
            self.streams
                .iter()
                .map(|(route, (_, skipped))| (by_route(route), counter(*skipped))),
        )?;
        family(
            &mut e,
            "crossbar_breaker_transitions",
            "Breaker transitions by endpoint and the state entered.",
            Counter,
            self.transitions.iter().map(|((endpoint, to), n)| {
                (
                    [("endpoint", endpoint.as_str()), ("to", to.as_str())],
                    counter(*n),
                )
            }),
        )?;

        let endpoint = |h: &EndpointHealth| [("endpoint", h.name.clone())];
        family(
            &mut e,
            "crossbar_breaker_state",
            "Breaker state: 0 closed, 1 ramp (partial open), 2 open.",
            Gauge,
            self.health.iter().map(|h| {
                let state = match h.breaker.state {
                    StateName::Closed => 0,
                    StateName::Ramp => 1,
                    StateName::Open => 2,
                };
                (
                    [
                        ("endpoint", h.name.as_str()),
                        ("provider", h.provider.as_str()),
                        ("region", h.region.as_str()),
                    ],
                    ConstGauge::new(state as i64),
                )
            }),
        )?;
        family(
            &mut e,
            "crossbar_breaker_admission_ratio",
            "Share of the endpoint's normal traffic its breaker admits.",
            Gauge,
            self.health
                .iter()
                .map(|h| (endpoint(h), gauge(h.breaker.admission))),
        )?;
        family(
            &mut e,
            "crossbar_endpoint_in_flight",
            "Upstream attempts in flight.",
            Gauge,
            self.health
                .iter()
                .map(|h| (endpoint(h), ConstGauge::new(h.in_flight))),
        )?;
        family(
            &mut e,
            "crossbar_endpoint_window_requests",
            "Attempts in the breaker's sliding window.",
            Gauge,
            self.health
                .iter()
                .map(|h| (endpoint(h), ConstGauge::new(h.stats.requests))),
        )?;
        family(
            &mut e,
            "crossbar_endpoint_error_ratio",
            "Failed share of judged attempts in the window.",
            Gauge,
            self.health
                .iter()
                .map(|h| (endpoint(h), gauge(h.stats.error_rate()))),
        )?;
        for (name, help, quantiles) in [
            (
                "crossbar_endpoint_latency_seconds",
                "Latency percentiles over the breaker window.",
                quantiles(&self.health, |s| {
                    [s.latency_p50_ms, s.latency_p90_ms, s.latency_p99_ms]
                }),
            ),
            (
                "crossbar_endpoint_ttft_seconds",
                "Time-to-first-token percentiles over the breaker window.",
                quantiles(&self.health, |s| {
                    [s.ttft_p50_ms, s.ttft_p90_ms, s.ttft_p99_ms]
                }),
            ),
        ] {
            family(&mut e, name, help, Gauge, quantiles)?;
        }
        family(
            &mut e,
            "crossbar_capacity_utilisation_ratio",
            "Provisioned endpoints: share of the tokens-per-minute ceiling used.",
            Gauge,
            self.health
                .iter()
                .filter_map(|h| Some((endpoint(h), gauge(h.capacity_utilisation?)))),
        )?;
        family(
            &mut e,
            "crossbar_ledger_records",
            "Usage-ledger records by fate: received, written, dropped (must stay 0).",
            Counter,
            [
                ("received", self.ledger.received),
                ("written", self.ledger.written),
                ("dropped", self.ledger.dropped),
            ]
            .map(|(fate, n)| ([("fate", fate)], counter(n))),
        )?;
        single(
            &mut e,
            "crossbar_ledger_queued",
            "Usage-ledger records waiting to be written.",
            Gauge,
            ConstGauge::new(self.ledger.queued),
        )
    }
}

/// The labels of a request family's series.
fn by_request((f, v, ep, o): &(String, String, String, String)) -> [(&'static str, &str); 4] {
    [
        ("feature", f),
        ("variant", v),
        ("endpoint", ep),
        ("outcome", o),
    ]
}

/// The labels of a route family's series.
fn by_route((f, v, ep): &RouteKey) -> [(&'static str, &str); 3] {
    [("feature", f), ("variant", v), ("endpoint", ep)]
}

/// One percentile of one endpoint: its `endpoint` and `quantile` labels, and seconds.
type QuantileSeries = ([(&'static str, String); 2], ConstGauge<f64>);

/// `(endpoint, quantile)` → seconds, for the percentiles each endpoint has.
fn quantiles(
    health: &[EndpointHealth],
    of: impl Fn(&router_core::admin::WindowStats) -> [Option<f64>; 3],
) -> Vec<QuantileSeries> {
    health
        .iter()
        .flat_map(|h| {
            ["0.5", "0.9", "0.99"]
                .into_iter()
                .zip(of(&h.stats))
                .filter_map(|(q, ms)| {
                    Some((
                        [("endpoint", h.name.clone()), ("quantile", q.to_owned())],
                        gauge(ms? / 1000.0),
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use router_core::config::{
        AuthConfig, EndpointConfig, ExperimentConfig, FeatureConfig, Provider, RouterConfig,
        TeamConfig, VariantConfig,
    };
    use serde_json::json;
    use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};
    use tower::ServiceExt;

    use crate::file::{ConfigFile, KeySeed};
    use crate::store::sha256_hex;
    use crate::{Options, Server};

    const KEY: &str = "cb-metrics-test";

    /// Two simulated endpoints; `summarize` split between variant `a` (primary
    /// `a-ep`, down, backed by `b-ep`) and `b` (`b-ep` alone, failing half of its
    /// requests), so one route has two outcomes and another falls back.
    async fn start() -> (Sim, Server, axum::Router) {
        let sim = Sim::start(SimConfig {
            seed: 7,
            control: None,
            endpoints: ["a-ep", "b-ep"]
                .into_iter()
                .map(|n| {
                    let mut spec = EndpointSpec::new(n, Kind::Openai);
                    spec.auth = AuthMode::None;
                    spec
                })
                .collect(),
        })
        .await
        .unwrap();
        let a = sim.endpoint("a-ep");
        a.set_faults(
            a.faults()
                .patched(&json!({"outage": "unavailable"}))
                .unwrap(),
        );
        let b = sim.endpoint("b-ep");
        b.set_faults(
            b.faults()
                .patched(&json!({"errors": {"server_error": 0.5}}))
                .unwrap(),
        );
        let endpoint = |name: &str| {
            let mut e = EndpointConfig::new(name, Provider::Openai, "gpt-4o-mini", "eastus");
            e.base_url = Some(sim.url(name));
            e.auth = AuthConfig::None;
            e
        };
        let mut summarize = FeatureConfig::new("summarize", &["a-ep", "b-ep"]);
        summarize.experiment = Some(ExperimentConfig {
            id: "ab".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 50.0,
                    binding: vec!["a-ep".into(), "b-ep".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 50.0,
                    binding: vec!["b-ep".into()],
                },
            ],
        });
        let mut router = RouterConfig {
            endpoints: vec![endpoint("a-ep"), endpoint("b-ep")],
            features: vec![summarize],
            teams: vec![TeamConfig {
                name: "search".into(),
                requests_per_minute: None,
                tokens_per_minute: None,
            }],
            ..RouterConfig::default()
        };
        router.retry.max_retries = 0;
        let server = Server::start(Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            ui_dir: None,
            db: None,
            config: Some(ConfigFile {
                path: PathBuf::from("metrics-test.toml"),
                router,
                gateway_keys: vec![KeySeed {
                    team: "search".into(),
                    name: "test".into(),
                    sha256: sha256_hex(KEY),
                    requests_per_minute: None,
                }],
                admin_tokens: Vec::new(),
            }),
            publish_file: false,
            bootstrap_admin_token: None,
            workers: 1,
            upstream_http1_when_idle: false,
            security: crate::policy::Security::default(),
            limits: crate::limits::Limits::default(),
        })
        .await
        .unwrap();
        let app = crate::app(server.state.clone(), None);
        (sim, server, app)
    }

    async fn send(app: &axum::Router, request: Request<Body>) -> (u16, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn metrics_after_traffic_parse_with_every_series_once_and_families_whole() {
        let (_sim, _server, app) = start().await;
        let mut statuses = BTreeSet::new();
        for i in 0..40 {
            let body = json!({"model": "summarize", "user": format!("user-{i}"), "max_tokens": 8,
                "messages": [{"role": "user", "content": "Summarise this."}]});
            let request = Request::post("/v1/chat/completions")
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            statuses.insert(send(&app, request).await.0);
        }
        assert!(
            statuses.contains(&200) && statuses.len() > 1,
            "{statuses:?}"
        );

        let (status, text) =
            send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 200);
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let sample_lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(
            scrape.samples.len(),
            sample_lines,
            "every sample parses:\n{text}"
        );

        // No (name, labels) twice.
        let mut seen = BTreeSet::new();
        for s in &scrape.samples {
            let labels: BTreeMap<&str, &str> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(
                seen.insert((s.metric.clone(), format!("{labels:?}"))),
                "{} {labels:?} twice:\n{text}",
                s.metric
            );
        }

        // Each family: one TYPE line, then its samples together, each with the
        // family's whole label set.
        let mut label_sets: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
        for s in &scrape.samples {
            let mut names: Vec<String> = s.labels.keys().cloned().collect();
            names.sort();
            label_sets
                .entry(s.metric.clone())
                .or_default()
                .insert(names);
        }
        let mut typed = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_owned();
                assert!(!typed.contains(&current), "{current} declared twice");
                typed.push(current.clone());
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "a {name} sample among {current}'s");
            }
        }
        let expect = |family: &str, labels: &[&str]| {
            let sets = label_sets
                .get(family)
                .unwrap_or_else(|| panic!("no {family} sample:\n{text}"));
            let want: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
            assert_eq!(sets, &BTreeSet::from([want]), "{family}'s labels");
        };
        expect("crossbar_config_version", &[]);
        expect(
            "crossbar_requests_total",
            &["endpoint", "feature", "outcome", "variant"],
        );
        expect(
            "crossbar_cost_total",
            &["endpoint", "feature", "outcome", "variant"],
        );
        expect(
            "crossbar_tokens_total",
            &["direction", "endpoint", "feature", "variant"],
        );
        expect(
            "crossbar_spilled_total",
            &["endpoint", "feature", "variant"],
        );
        expect(
            "crossbar_fallbacks_total",
            &["endpoint", "feature", "variant"],
        );
        expect(
            "crossbar_breaker_state",
            &["endpoint", "provider", "region"],
        );
        expect("crossbar_breaker_admission_ratio", &["endpoint"]);
        expect("crossbar_endpoint_in_flight", &["endpoint"]);
        expect("crossbar_endpoint_window_requests", &["endpoint"]);
        expect("crossbar_endpoint_error_ratio", &["endpoint"]);
        expect(
            "crossbar_endpoint_latency_seconds",
            &["endpoint", "quantile"],
        );
        expect("crossbar_ledger_records_total", &["fate"]);
        expect("crossbar_ledger_queued", &[]);

        // The route that both served and failed is one tokens series per direction,
        // and variant `a`'s answers from its backup count as fallbacks.
        let value = |metric: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    _ => f64::NAN,
                })
        };
        let outcomes = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == "crossbar_requests_total"
                    && s.labels.get("variant") == Some("b")
                    && s.labels.get("endpoint") == Some("b-ep")
            })
            .count();
        assert!(outcomes >= 2, "variant b both served and failed:\n{text}");
        let route = [
            ("feature", "summarize"),
            ("variant", "a"),
            ("endpoint", "b-ep"),
        ];
        assert!(
            value("crossbar_fallbacks_total", &route).unwrap() > 0.0,
            "{text}"
        );
        let prompt = [
            ("variant", "b"),
            ("endpoint", "b-ep"),
            ("direction", "prompt"),
        ];
        assert!(
            value("crossbar_tokens_total", &prompt).unwrap() > 0.0,
            "{text}"
        );
    }
}
