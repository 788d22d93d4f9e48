//! The hot path of a routing decision, measured: `cargo bench -p router-core --bench routing`.
//!
//! - `decide`: one whole decision on the live router — snapshot load, feature lookup,
//!   sticky variant hash, candidate plan with the boundary filter, a capacity check on a
//!   provisioned endpoint and a breaker admission per candidate (each behind its
//!   mutex). Target: ≤ 2 µs.
//! - `select_variant`: the sticky hash alone.
//! - `breaker_record`: recording one attempt into an endpoint's breaker (sliding window,
//!   histograms, trip checks).
//! - `histogram_record`: one latency sample.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use router_core::config::{
    AuthConfig, Capacity, Config, EndpointConfig, ExperimentConfig, FeatureConfig, Provider,
    RouterConfig, Thresholds, VariantConfig,
};
use router_core::providers;
use router_core::routing::breaker::{Breaker, BreakerSettings};
use router_core::routing::engine::{Engine, EngineParts};
use router_core::routing::select::select_variant;
use router_core::telemetry::histogram::LatencyHistogram;
use router_core::telemetry::record::NullSink;
use router_core::telemetry::window::{Outcome, Sample};

fn config() -> Config {
    let endpoint = |name: &str, region: &str| {
        let mut e = EndpointConfig::new(name, Provider::Openai, "gpt-4o-mini", region);
        e.base_url = Some("http://127.0.0.1:9".into());
        e.auth = AuthConfig::None;
        e
    };
    let mut prov = endpoint("prov", "eastus");
    prov.capacity = Capacity::Provisioned {
        tokens_per_minute: 1_000_000_000,
        spill_to: Some("ondemand".into()),
    };
    let raw = RouterConfig {
        endpoints: vec![
            prov,
            endpoint("ondemand", "eastus"),
            endpoint("west", "westus"),
            endpoint("central", "centralus"),
        ],
        features: vec![FeatureConfig {
            geographies: vec!["us".into()],
            thresholds: Thresholds {
                ttft_p90_ms: Some(1_500),
                latency_p90_ms: Some(8_000),
                error_rate: Some(0.3),
            },
            experiment: Some(ExperimentConfig {
                id: "exp".into(),
                variants: vec![
                    VariantConfig {
                        name: "a".into(),
                        percent: 50.0,
                        binding: vec!["prov".into(), "west".into(), "central".into()],
                    },
                    VariantConfig {
                        name: "b".into(),
                        percent: 50.0,
                        binding: vec!["west".into(), "prov".into(), "central".into()],
                    },
                ],
            }),
            ..FeatureConfig::new("summarize", &[])
        }],
        ..RouterConfig::default()
    };
    Config::validate(raw).expect("valid")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = config();
    let router = rt.block_on(async {
        let mut adapters = Vec::new();
        for e in config.endpoints() {
            adapters.push(
                providers::connect(&e.config, &providers::TransportSettings::default())
                    .await
                    .unwrap(),
            );
        }
        Engine::with_providers(
            config.clone(),
            1,
            adapters,
            Arc::new(NullSink),
            EngineParts::default(),
        )
    });
    let _guard = rt.enter();
    let users: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let mut i = 0usize;
    c.bench_function("decide", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(router.decide("summarize", Some(&users[i]), 400).unwrap());
        })
    });
    let feature = config.feature("summarize").unwrap();
    c.bench_function("select_variant", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(select_variant(feature, Some(&users[i]), 0.5));
        })
    });
    let settings = BreakerSettings {
        ttft_p90: Some(Duration::from_millis(1_500)),
        latency_p90: Some(Duration::from_millis(8_000)),
        ..BreakerSettings::default()
    };
    let mut breaker = Breaker::new(settings, Duration::ZERO);
    let mut now = Duration::ZERO;
    c.bench_function("breaker_record", |b| {
        b.iter(|| {
            now += Duration::from_micros(300);
            let sample = Sample {
                outcome: Outcome::Success,
                latency: Duration::from_millis(420 + (now.as_micros() % 97) as u64),
                ttft: Some(Duration::from_millis(180)),
                tokens: 300,
                spilled: false,
            };
            black_box(breaker.record(now, &sample));
        })
    });
    let mut h = LatencyHistogram::new();
    let mut v = 1u64;
    c.bench_function("histogram_record", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(Duration::from_micros(black_box(v >> 44)));
        })
    });
}

criterion_group!(routing, benches);
criterion_main!(routing);
