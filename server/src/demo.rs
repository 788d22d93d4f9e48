//! `crossbar demo`: the whole product on one machine, with no cloud account.
//!
//! - Simulated clouds (the `sim` crate, in process, each on its own port): Bedrock in
//!   us-east-1 (provisioned, with an on-demand sibling), us-west-2 and eu-central-1;
//!   Vertex (Gemini and Claude) in us-central1 and europe-west4; Azure OpenAI in
//!   eastus; and the identity services that make authentication secretless: the AWS
//!   SDK takes its credentials from a container-credentials endpoint, the Vertex
//!   adapters exchange a workload-identity token at a simulated STS.
//! - The router with a realistic configuration: `summarize` (provisioned first, then
//!   backups), `recap` (an A/B experiment, Claude vs Gemini), `search-answer` (a
//!   tight TTFT threshold), `extract` (bound to the EU).
//! - Live traffic through the real gateway with a daily rhythm (a "day" lasts
//!   `--day-seconds`), and scripted incidents on a loop — a latency spike, an outage, a
//!   throttle storm — so breakers trip and recover where people can see it.
//! - The console, and one token per role, printed at start.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the demo drives live traffic and scripted incidents in real time"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use router_core::admin::Role;
use router_core::config::{
    AuthConfig, AzureDeployment, BreakerParams, Capacity, EndpointConfig, ExperimentConfig,
    FeatureConfig, Pricing, Provider, RouterConfig, TeamConfig, Thresholds, VariantConfig,
};
use rust_decimal::Decimal;
use serde_json::json;
use sim::{AuthMode, Sim, SimConfig};

use crate::file::ConfigFile;
use crate::{Options, Server, shutdown_signal};

/// The simulated clouds: the same file `crossbar-sim` serves (`sim/demo.toml`), with
/// every port chosen at start.
const SIM_CONFIG: &str = include_str!("../../sim/demo.toml");

/// Environment variable holding the demo's Azure OpenAI key (set by the demo itself),
/// under the default `--key-env-prefix`.
const AZURE_KEY_ENV: &str = "CROSSBAR_KEY_DEMO_AZURE";

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the router (gateway, admin API, console) listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The built console.
    #[arg(long, env = "CROSSBAR_UI_DIR", default_value = "ui/dist")]
    pub ui_dir: PathBuf,
    /// Serve only the APIs.
    #[arg(long)]
    pub no_console: bool,
    /// Keep state in this SQLite file (default: in memory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The simulators' control API (fault injection for everyone).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sim_control: SocketAddr,
    /// Average requests per second of demo traffic (0: none).
    #[arg(long, default_value_t = 6.0)]
    pub rps: f64,
    /// How long a simulated day lasts: traffic follows a daily rhythm.
    #[arg(long, default_value_t = 600)]
    pub day_seconds: u64,
    /// No scripted incidents.
    #[arg(long)]
    pub no_incidents: bool,
    /// Seconds between the starts of two incident cycles.
    #[arg(long, default_value_t = 240)]
    pub incident_cycle_seconds: u64,
    /// Days of synthetic past traffic written to the ledger at start, so the spend
    /// view has a history (0: none).
    #[arg(long, default_value_t = 3)]
    pub history_days: u32,
}

static IDENTITY_PORT: OnceLock<u16> = OnceLock::new();

/// Points the cloud SDKs at the simulated identity services. Must run before any
/// thread is started: the environment is process-wide.
pub fn prepare_environment(_args: &DemoArgs) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(47130);
    let _ = IDENTITY_PORT.set(port);
    let key = format!("demo-{:016x}", fastrand::u64(..));
    // Empty AWS config files: no profile on this machine leaks into the demo.
    let aws_dir = std::env::temp_dir().join(format!("crossbar-demo-aws-{}", std::process::id()));
    let empty = aws_dir.join("empty");
    let _ = std::fs::create_dir_all(&aws_dir).and_then(|()| std::fs::write(&empty, ""));
    // SAFETY: called from `main` before the runtime (or any other thread) starts.
    unsafe {
        sim::identity::use_container_credentials(
            &format!("http://127.0.0.1:{port}/creds"),
            &empty,
            None,
        );
        std::env::set_var(AZURE_KEY_ENV, key);
    }
}

fn sim_config(args: &DemoArgs) -> anyhow::Result<SimConfig> {
    let mut config: SimConfig = toml::from_str(SIM_CONFIG).context("parsing sim/demo.toml")?;
    config.control = Some(args.sim_control);
    for e in &mut config.endpoints {
        e.listen = if e.name == "identity" {
            SocketAddr::from(([127, 0, 0, 1], *IDENTITY_PORT.get().unwrap_or(&0)))
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        // Credentials must come from the simulated identity services: the demo is
        // secretless end to end.
        if matches!(e.kind, sim::Kind::Bedrock | sim::Kind::Vertex) {
            e.auth = AuthMode::Issued;
        }
    }
    Ok(config)
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("a decimal literal")
}

/// The demo's routing configuration, pointing at the simulators.
pub fn router_config(sim: &Sim, wif_file: &str) -> RouterConfig {
    let bedrock = |name: &str, sim_name: &str, model: &str, region: &str| {
        let mut e = EndpointConfig::new(name, Provider::Bedrock, model, region);
        e.base_url = Some(sim.url(sim_name));
        e.pricing = Pricing {
            input_per_million: d("3.00"),
            output_per_million: d("15.00"),
            cached_input_per_million: Some(d("0.30")),
            hourly: None,
        };
        e.timeouts.request_ms = 30_000;
        e
    };
    let vertex = |name: &str, sim_name: &str, provider: Provider, model: &str, region: &str| {
        let mut e = EndpointConfig::new(name, provider, model, region);
        e.base_url = Some(sim.url(sim_name));
        e.project = Some("crossbar-demo".into());
        e.auth = AuthConfig::GcpCredentialsFile {
            path: wif_file.to_owned(),
        };
        e.pricing = match provider {
            Provider::VertexGemini => Pricing {
                input_per_million: d("0.10"),
                output_per_million: d("0.40"),
                ..Pricing::default()
            },
            _ => Pricing {
                input_per_million: d("3.00"),
                output_per_million: d("15.00"),
                ..Pricing::default()
            },
        };
        e.timeouts.request_ms = 30_000;
        e
    };
    let mut provisioned = bedrock(
        "bedrock-use1-provisioned",
        "bedrock-us-east-1-provisioned",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/crossbar-sonnet",
        "us-east-1",
    );
    // Below what daytime traffic needs: peaks spill to the on-demand sibling.
    provisioned.capacity = Capacity::Provisioned {
        tokens_per_minute: 12_000,
        spill_to: Some("bedrock-use1".into()),
    };
    provisioned.pricing = Pricing {
        hourly: Some(d("39.60")),
        ..Pricing::default()
    };
    let mut azure = EndpointConfig::new("azure-eastus", Provider::Openai, "gpt-4o-mini", "eastus");
    azure.base_url = Some(sim.url("azure-openai-eastus"));
    azure.azure = Some(AzureDeployment {
        deployment: "gpt-4o-mini".into(),
        api_version: "2024-10-21".into(),
    });
    azure.auth = AuthConfig::ApiKeyEnv {
        env: AZURE_KEY_ENV.into(),
    };
    azure.pricing = Pricing {
        input_per_million: d("0.15"),
        output_per_million: d("0.60"),
        cached_input_per_million: Some(d("0.075")),
        hourly: None,
    };
    let endpoints = vec![
        provisioned,
        bedrock(
            "bedrock-use1",
            "bedrock-us-east-1",
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us-east-1",
        ),
        bedrock(
            "bedrock-usw2",
            "bedrock-us-west-2",
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us-west-2",
        ),
        bedrock(
            "bedrock-euc1",
            "bedrock-eu-central-1",
            "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "eu-central-1",
        ),
        vertex(
            "gemini-us",
            "vertex-us-central1",
            Provider::VertexGemini,
            "gemini-2.0-flash-001",
            "us-central1",
        ),
        vertex(
            "claude-us",
            "vertex-us-central1",
            Provider::VertexAnthropic,
            "claude-3-5-sonnet-v2@20241022",
            "us-central1",
        ),
        vertex(
            "gemini-eu",
            "vertex-europe-west4",
            Provider::VertexGemini,
            "gemini-2.0-flash-001",
            "europe-west4",
        ),
        vertex(
            "claude-eu",
            "vertex-europe-west4",
            Provider::VertexAnthropic,
            "claude-3-5-sonnet-v2@20241022",
            "europe-west4",
        ),
        azure,
    ];
    let feature = |name: &str, description: &str, owner: &str, binding: &[&str]| FeatureConfig {
        description: description.into(),
        owner: Some(owner.into()),
        deadline_ms: 30_000,
        ..FeatureConfig::new(name, binding)
    };
    let features = vec![
        FeatureConfig {
            thresholds: Thresholds {
                ttft_p90_ms: Some(1_500),
                latency_p90_ms: Some(12_000),
                error_rate: Some(0.3),
            },
            ..feature(
                "summarize",
                "Document summaries: provisioned Claude first, spilling to on-demand, then backups.",
                "docs",
                &["bedrock-use1-provisioned", "bedrock-usw2", "claude-us"],
            )
        },
        FeatureConfig {
            experiment: Some(ExperimentConfig {
                id: "recap-claude-vs-gemini".into(),
                variants: vec![
                    VariantConfig {
                        name: "claude".into(),
                        percent: 50.0,
                        binding: vec!["claude-us".into(), "bedrock-usw2".into()],
                    },
                    VariantConfig {
                        name: "gemini".into(),
                        percent: 50.0,
                        binding: vec!["gemini-us".into(), "azure-eastus".into()],
                    },
                ],
            }),
            thresholds: Thresholds {
                ttft_p90_ms: Some(1_500),
                ..Thresholds::default()
            },
            ..feature(
                "recap",
                "Meeting recaps: an A/B experiment between Claude and Gemini, sticky per user.",
                "meetings",
                &["claude-us", "gemini-us"],
            )
        },
        FeatureConfig {
            thresholds: Thresholds {
                ttft_p90_ms: Some(1_000),
                latency_p90_ms: Some(6_000),
                error_rate: Some(0.25),
            },
            ..feature(
                "search-answer",
                "Answers on the search page: fast first tokens matter most.",
                "search",
                &["azure-eastus", "gemini-us", "bedrock-use1"],
            )
        },
        FeatureConfig {
            geographies: vec!["eu".into()],
            thresholds: Thresholds {
                ttft_p90_ms: Some(2_000),
                ..Thresholds::default()
            },
            ..feature(
                "extract",
                "Field extraction from EU customer documents: never leaves the EU.",
                "compliance",
                &["bedrock-euc1", "claude-eu", "gemini-eu"],
            )
        },
    ];
    let teams = ["docs", "meetings", "search", "compliance"]
        .into_iter()
        .map(|t| TeamConfig {
            name: t.into(),
            requests_per_minute: None,
            tokens_per_minute: None,
        })
        .collect();
    let mut config = RouterConfig {
        endpoints,
        features,
        teams,
        ..RouterConfig::default()
    };
    // Quick to trip and to recover, so a demo viewer sees the whole cycle.
    config.breaker.defaults = BreakerParams {
        window_s: Some(20),
        min_requests: Some(8),
        open_ms: Some(10_000),
        max_open_ms: Some(60_000),
        stage_ms: Some(4_000),
        stage_min_requests: Some(3),
        ..BreakerParams::default()
    };
    config
}

/// The demo's credentials directory (`--credentials-dir`): the federation file lives
/// here.
fn credentials_dir() -> PathBuf {
    std::env::temp_dir().join(format!("crossbar-demo-{}", std::process::id()))
}

/// A workload-identity-federation credentials file pointing at the simulated STS.
fn write_wif_file(identity_url: &str) -> anyhow::Result<String> {
    let dir = credentials_dir();
    std::fs::create_dir_all(&dir)?;
    let token = dir.join("oidc-token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.demo-workload.sig")?;
    let config = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/demo/providers/k8s",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{identity_url}/v1/token"),
        "credential_source": {"file": token.to_string_lossy()},
    });
    let path = dir.join("wif.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path.to_string_lossy().into_owned())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let sim = Sim::start(sim_config(&args)?)
        .await
        .context("starting the simulated clouds")?;
    let wif = write_wif_file(&sim.url("identity"))?;
    let config = router_config(&sim, &wif);
    let server = Server::start(Options {
        listen: args.listen,
        ui_dir: (!args.no_console).then(|| args.ui_dir.clone()),
        db: args.db.clone(),
        config: Some(ConfigFile {
            path: PathBuf::from("(demo)"),
            router: config,
            gateway_keys: Vec::new(),
            admin_tokens: Vec::new(),
        }),
        publish_file: true,
        bootstrap_admin_token: None,
        workers: 0,
        upstream_http1_when_idle: false,
        // The simulated clouds listen on plain http:// on this machine, and the
        // federation file is the demo's own.
        security: crate::policy::Security {
            credentials: crate::policy::CredentialPolicy {
                credentials_dir: Some(credentials_dir()),
                allow_plain_http_credentials: true,
                ..crate::policy::CredentialPolicy::default()
            },
            cors_origins: Vec::new(),
        },
        limits: crate::limits::Limits::default(),
    })
    .await?;
    let addr = server.local_addr()?;
    let base = format!("http://{addr}");
    let store = server.state.store.clone();

    let mut tokens = Vec::new();
    for role in Role::ALL {
        let (_, token) = store
            .create_admin_token(&format!("demo-{}", role.as_str()), role)
            .await?;
        tokens.push((role, token));
    }
    let mut keys = Vec::new();
    for team in ["docs", "meetings", "search", "compliance"] {
        let (_, key) = store
            .create_gateway_key(team, &format!("{team}-demo"), None)
            .await?;
        keys.push((team, key));
    }
    server.state.keys.reload().await?;

    println!("crossbar demo: listening on {base}/");
    if !args.no_console {
        println!("crossbar demo: console at {base}/");
    }
    for (role, token) in &tokens {
        println!("crossbar demo: token {} {token}", role.as_str());
    }
    for (team, key) in &keys {
        println!("crossbar demo: key {team} {key}");
    }
    if let Some(control) = sim.control_url() {
        println!("crossbar demo: simulators at {control}/_sim/endpoints");
    }
    let search_key = &keys
        .iter()
        .find(|(t, _)| *t == "search")
        .expect("search key")
        .1;
    println!(
        "crossbar demo: try  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {search_key}' \
         -H 'content-type: application/json' -d '{{\"model\":\"search-answer\",\"messages\":[{{\"role\":\"user\",\"content\":\"What is Crossbar?\"}}]}}'"
    );
    println!("crossbar demo: ready");

    let mut tasks = Vec::new();
    if args.history_days > 0 {
        let state = server.state.clone();
        let days = args.history_days;
        tasks.push(tokio::spawn(async move {
            let written = backfill(&state, days).await;
            println!("crossbar demo: history: {written} past requests over {days} day(s) written to the ledger");
        }));
    }
    if args.rps > 0.0 {
        tasks.push(tokio::spawn(traffic(
            base.clone(),
            keys.clone(),
            args.rps,
            args.day_seconds,
        )));
    }
    if !args.no_incidents {
        tasks.push(tokio::spawn(incidents(
            sim_handles(&sim),
            args.incident_cycle_seconds,
        )));
    }
    server.run(shutdown_signal()).await?;
    for t in tasks {
        t.abort();
    }
    sim.shutdown().await;
    Ok(())
}

/// Writes `days` of synthetic past traffic through the ledger, exactly as live
/// requests are recorded (rows, rollups, costs from the endpoints' prices), so the
/// spend view shows a week's shape on a demo started a minute ago. About 0.4
/// requests per second on average with the daily rhythm; provisioned capacity spills
/// at the daily peak; a few requests fail or fall back.
async fn backfill(state: &crate::AppState, days: u32) -> u64 {
    use router_core::api::Usage;
    use router_core::cost::token_cost;
    use router_core::telemetry::record::{AttemptRecord, RequestRecord};

    const DAY_MS: i64 = 86_400_000;
    let snapshot = state.engine.snapshot();
    let config = snapshot.config.clone();
    let now = crate::unix_ms();
    let start = now - i64::from(days) * DAY_MS;
    let features = [
        ("summarize", "docs", 0.35),
        ("recap", "meetings", 0.25),
        ("search-answer", "search", 0.30),
        ("extract", "compliance", 0.10),
    ];
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut written = 0u64;
    let mut minute = start - start % 60_000;
    while minute < now - 60_000 {
        // The rhythm follows the wall clock (UTC): quiet nights, a peak at lunch.
        let t = (minute.rem_euclid(DAY_MS) as f64) / 1000.0;
        let per_minute = daily_rate(0.4, t, 86_400.0) * 60.0;
        let n = per_minute.floor() as u64 + u64::from(rng.f64() < per_minute.fract());
        for _ in 0..n {
            let mut roll = rng.f64();
            let (feature_name, team, _) = *features
                .iter()
                .find(|(_, _, share)| {
                    roll -= share;
                    roll < 0.0
                })
                .unwrap_or(&features[0]);
            let Some(feature) = config.feature(feature_name) else {
                continue;
            };
            let user = format!("user-{}", rng.u32(..400));
            let variant =
                router_core::routing::select::select_variant(feature, Some(&user), rng.f64());
            // Mostly the primary; now and then a backup; at the daily peak the
            // provisioned primary spills to its on-demand sibling.
            let depth = usize::from(rng.f64() < 0.03 && variant.binding.len() > 1);
            let mut endpoint = config.endpoint(variant.binding[depth]);
            let mut spilled = false;
            if let (Some(sibling), true) = (endpoint.spill_to, per_minute > 30.0 && rng.f64() < 0.3)
            {
                endpoint = config.endpoint(sibling);
                spilled = true;
            }
            let failed = rng.f64() < 0.01;
            let usage = if failed {
                Usage::default()
            } else {
                Usage::new(30 + rng.u32(..800), 40 + rng.u32(..360), None)
            };
            let provisioned = endpoint.config.is_provisioned();
            let stream = rng.f64() < 0.4;
            let latency = 400.0 + rng.f64() * 2_600.0;
            let outcome = if failed { "upstream_error" } else { "ok" };
            let at_ms = minute + rng.i64(0..60_000);
            state.ledger.record(RequestRecord {
                request_id: format!("hist_{at_ms:x}_{:08x}", rng.u32(..)),
                at_ms,
                team: team.into(),
                key_id: format!("demo-{team}"),
                feature: feature_name.into(),
                variant: variant.name.clone(),
                config_version: snapshot.version,
                stream,
                endpoint: Some(endpoint.config.name.clone()),
                provider: Some(endpoint.config.provider.as_str().into()),
                region: Some(endpoint.config.region.clone()),
                geography: Some(endpoint.config.geography.clone()),
                provisioned,
                spilled,
                fallback_depth: depth as u32,
                outcome: outcome.into(),
                status: if failed { 502 } else { 200 },
                latency_ms: latency,
                ttft_ms: stream.then(|| 150.0 + rng.f64() * 450.0),
                prompt_tokens: u64::from(usage.prompt_tokens),
                completion_tokens: u64::from(usage.completion_tokens),
                cached_tokens: 0,
                cost: token_cost(&endpoint.config.pricing, &usage, provisioned),
                attempts: vec![AttemptRecord {
                    endpoint: endpoint.config.name.clone(),
                    outcome: outcome.into(),
                    latency_ms: latency,
                    ttft_ms: None,
                    upstream_status: Some(if failed { 500 } else { 200 }),
                    retry: false,
                    spilled,
                    message: None,
                    ..AttemptRecord::default()
                }],
                prompt_text: None,
                completion_text: None,
                ..RequestRecord::default()
            });
            written += 1;
            // Keep well inside the ledger queue: live traffic shares it.
            while state.ledger.stats().queued > 10_000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        minute += 60_000;
    }
    written
}

/// What the incident script needs of the simulators.
struct SimHandles {
    endpoints: Vec<std::sync::Arc<sim::endpoint::Endpoint>>,
}

fn sim_handles(sim: &Sim) -> SimHandles {
    SimHandles {
        endpoints: sim.endpoints().to_vec(),
    }
}

impl SimHandles {
    fn patch(&self, name: &str, patch: serde_json::Value) {
        if let Some(e) = self.endpoints.iter().find(|e| e.name() == name) {
            match e.faults().patched(&patch) {
                Ok(f) => e.set_faults(f),
                Err(err) => tracing::warn!(endpoint = name, %err, "demo: bad fault patch"),
            }
        }
    }
}

/// Requests per second at `t` seconds into a `day`: quiet nights, a morning ramp,
/// a lunchtime peak, an afternoon plateau.
pub fn daily_rate(average: f64, t: f64, day: f64) -> f64 {
    let phase = (t % day) / day; // 0 = midnight
    let daylight = (std::f64::consts::PI * 2.0 * (phase - 0.25)).sin(); // peaks at 0.5
    let lunch = (-((phase - 0.52) / 0.06).powi(2)).exp() * 0.35;
    // The lunch bump's area is 0.35 × 0.06 × √π ≈ 0.037 of a day: divide it out so
    // the day's mean is `average`.
    (average * (1.0 + 0.6 * daylight + lunch) / 1.037).max(average * 0.1)
}

const PROMPTS: [&str; 6] = [
    "Summarise the attached quarterly report for the leadership team in five bullet points.",
    "Write a recap of today's design review: decisions, owners and open questions.",
    "What is the refund policy for annual plans bought through a reseller?",
    "Extract the invoice number, the VAT id and the total from this document.",
    "Give me a short answer: how do I rotate an API key without downtime?",
    "Condense this support thread into a two-sentence status update for the customer.",
];

async fn traffic(base: String, keys: Vec<(&'static str, String)>, rps: f64, day_seconds: u64) {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let started = tokio::time::Instant::now();
    let features = [
        ("summarize", "docs", 0.35),
        ("recap", "meetings", 0.25),
        ("search-answer", "search", 0.30),
        ("extract", "compliance", 0.10),
    ];
    loop {
        let t = started.elapsed().as_secs_f64();
        let rate = daily_rate(rps, t, day_seconds.max(10) as f64);
        // Poisson arrivals: exponential gaps.
        let gap = -(1.0 - fastrand::f64()).ln() / rate;
        tokio::time::sleep(Duration::from_secs_f64(gap.min(5.0))).await;
        let mut roll = fastrand::f64();
        let (feature, team, _) = *features
            .iter()
            .find(|(_, _, share)| {
                roll -= share;
                roll < 0.0
            })
            .unwrap_or(&features[0]);
        let key = keys
            .iter()
            .find(|(t, _)| *t == team)
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        let stream = fastrand::f64() < 0.4;
        let body = json!({
            "model": feature,
            "messages": [{"role": "user", "content": PROMPTS[fastrand::usize(..PROMPTS.len())]}],
            "max_tokens": 40 + fastrand::u32(..120),
            "user": format!("user-{}", fastrand::u32(..400)),
            "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { json!(null) },
        });
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let sent = client.post(&url).bearer_auth(key).json(&body).send().await;
            if let Ok(response) = sent {
                // Read the whole answer, as a client would (streams included).
                let _ = response.bytes().await;
            }
        });
    }
}

/// The incident script, on a loop: each incident starts, lasts, and is cleared.
async fn incidents(sims: SimHandles, cycle_seconds: u64) {
    let cycle = Duration::from_secs(cycle_seconds.max(60));
    let script: [(u64, u64, &str, &str, serde_json::Value, serde_json::Value); 3] = [
        (
            40,
            50,
            "vertex-us-central1",
            "latency spike: first tokens take 2.5 s on Vertex us-central1",
            json!({"ttft_ms": 2500}),
            json!({"ttft_ms": 220}),
        ),
        (
            110,
            40,
            "bedrock-us-west-2",
            "outage: Bedrock us-west-2 refuses connections",
            json!({"outage": "refuse"}),
            json!({"outage": "none"}),
        ),
        (
            170,
            40,
            "azure-openai-eastus",
            "throttle storm: Azure OpenAI eastus answers 429 to 70 % of requests",
            json!({"errors": {"throttle": 0.7}, "retry_after_s": 1}),
            json!({"errors": {"throttle": 0.0}}),
        ),
    ];
    let mut cycle_start = tokio::time::Instant::now();
    loop {
        for (at, lasts, endpoint, what, start, end) in &script {
            tokio::time::sleep_until(cycle_start + Duration::from_secs(*at)).await;
            println!("crossbar demo: incident: {what} (for {lasts} s)");
            sims.patch(endpoint, start.clone());
            tokio::time::sleep(Duration::from_secs(*lasts)).await;
            sims.patch(endpoint, end.clone());
            println!("crossbar demo: incident over: {endpoint}");
        }
        tokio::time::sleep_until(cycle_start + cycle).await;
        cycle_start += cycle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_rhythm_is_quiet_at_night_and_peaks_at_lunch() {
        let day = 600.0;
        let night = daily_rate(6.0, 0.0, day);
        let morning = daily_rate(6.0, day * 0.35, day);
        let lunch = daily_rate(6.0, day * 0.52, day);
        assert!(
            night < morning && morning < lunch,
            "{night} {morning} {lunch}"
        );
        let mean: f64 = (0..600)
            .map(|s| daily_rate(6.0, f64::from(s), day))
            .sum::<f64>()
            / 600.0;
        assert!((mean - 6.0).abs() < 1.5, "average {mean}");
    }

    #[test]
    fn the_demo_config_is_valid_and_its_eu_feature_stays_in_the_eu() {
        let sim_config: SimConfig = toml::from_str(SIM_CONFIG).unwrap();
        assert!(sim_config.endpoints.iter().any(|e| e.name == "identity"));
        // URLs do not matter for validation: a config built against any base URL.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut sc = sim_config.clone();
            sc.control = None;
            for e in &mut sc.endpoints {
                e.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            }
            let sim = Sim::start(sc).await.unwrap();
            let config = router_config(&sim, "/nonexistent/wif.json");
            let valid = router_core::config::Config::validate(config).unwrap();
            let extract = valid.feature("extract").unwrap();
            for v in &extract.variants {
                for &id in &v.binding {
                    assert_eq!(valid.endpoint(id).config.geography, "eu");
                }
            }
            sim.shutdown().await;
        });
    }
}
