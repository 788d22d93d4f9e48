//! The harness of the end-to-end tests (`e2e.rs`, `failover.rs`): the real `crossbar`
//! binary on port 0, in front of in-process simulated endpoints, driven from outside
//! over HTTP. Each harness has its own simulators, server process and database file.
//!
//! Endpoints are OpenAI-compatible by default ([`start`]); [`start_with`] takes any
//! mix of [`Upstream`]s — OpenAI, an Azure OpenAI deployment, Claude on Vertex (which
//! authenticates secretlessly, by workload identity federation against a simulated
//! identity service). The configuration is what the test builds and nothing else:
//! every routing setting it does not set is the feature's default.

#![allow(
    dead_code,
    reason = "each test file uses the part of the harness it needs"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use router_core::config::{
    AuthConfig, AzureDeployment, EndpointConfig, FeatureConfig, Pricing, Provider, RouterConfig,
    TeamConfig,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use server::store::sha256_hex;
use sim::{AuthMode, EndpointSpec, Kind, Seen, Sim, SimConfig};

pub const ROLES: [&str; 4] = ["viewer", "operator", "experimenter", "admin"];

/// The team every test key belongs to.
pub const TEAM: &str = "search";

pub struct Harness {
    pub sim: Sim,
    pub child: Child,
    pub base: String,
    pub key: String,
    pub tokens: HashMap<&'static str, String>,
    pub http: reqwest::Client,
    pub dir: tempdir::Dir,
}

pub mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "crossbar-e2e-{name}-{}-{:x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Kills the child on drop unless disarmed.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn disarm(mut self) -> Child {
        self.0.take().expect("armed")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn price() -> Pricing {
    Pricing {
        input_per_million: Decimal::from_str("2.50").unwrap(),
        output_per_million: Decimal::from_str("10.00").unwrap(),
        cached_input_per_million: None,
        hourly: None,
    }
}

/// What a simulated endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// OpenAI chat completions (`/v1/chat/completions`).
    Openai,
    /// An Azure OpenAI deployment (`/openai/deployments/{model}/...`).
    Azure,
    /// Claude on Vertex AI (`:rawPredict`, `:streamRawPredict`).
    VertexClaude,
}

/// One simulated endpoint and the Crossbar endpoint in front of it (same name).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub speaks: Speaks,
    pub model: String,
    pub region: String,
    /// The simulator's context window (its own default when `None`).
    pub sim_context_window: Option<u32>,
}

impl Upstream {
    /// `gpt-4o-mini` on an OpenAI-compatible endpoint, in `europe-west4` when the
    /// name starts with `eu`, else in `eastus`.
    pub fn openai(name: &str) -> Self {
        let region = if name.starts_with("eu") {
            "europe-west4"
        } else {
            "eastus"
        };
        Self {
            name: name.into(),
            speaks: Speaks::Openai,
            model: "gpt-4o-mini".into(),
            region: region.into(),
            sim_context_window: None,
        }
    }

    /// An Azure OpenAI deployment named `gpt-4o` in `eastus`.
    pub fn azure(name: &str) -> Self {
        Self {
            speaks: Speaks::Azure,
            model: "gpt-4o".into(),
            ..Self::openai(name)
        }
    }

    /// Claude Sonnet on Vertex AI in `region`.
    pub fn vertex_claude(name: &str, region: &str) -> Self {
        Self {
            name: name.into(),
            speaks: Speaks::VertexClaude,
            model: "claude-sonnet-4@20250514".into(),
            region: region.into(),
            sim_context_window: None,
        }
    }

    pub fn model(mut self, model: &str) -> Self {
        self.model = model.into();
        self
    }

    pub fn sim_context_window(mut self, tokens: u32) -> Self {
        self.sim_context_window = Some(tokens);
        self
    }
}

/// Simulated OpenAI endpoints `names`, one feature `summarize` bound to them in
/// order, and `edit` to shape the rest.
pub async fn start(test: &str, names: &[&str], edit: impl FnOnce(&mut RouterConfig)) -> Harness {
    let upstreams = names.iter().map(|n| Upstream::openai(n)).collect();
    start_with(test, upstreams, edit).await
}

/// The simulated endpoints `upstreams`, a Crossbar endpoint of the same name in front
/// of each (only what reaching it needs: provider, model, region, URL, credentials,
/// the test price), one feature `summarize` bound to them in order, one team and its
/// gateway key, one admin token per role; then `edit` shapes the configuration.
pub async fn start_with(
    test: &str,
    upstreams: Vec<Upstream>,
    edit: impl FnOnce(&mut RouterConfig),
) -> Harness {
    start_with_args(test, upstreams, &[], edit).await
}

/// As [`start_with`], with more `crossbar serve` arguments.
pub async fn start_with_args(
    test: &str,
    upstreams: Vec<Upstream>,
    args: &[&str],
    edit: impl FnOnce(&mut RouterConfig),
) -> Harness {
    let vertex = upstreams.iter().any(|u| u.speaks == Speaks::VertexClaude);
    let mut specs: Vec<EndpointSpec> = upstreams
        .iter()
        .map(|u| {
            let kind = match u.speaks {
                Speaks::Openai | Speaks::Azure => Kind::Openai,
                Speaks::VertexClaude => Kind::Vertex,
            };
            let mut spec = EndpointSpec::new(&u.name, kind);
            spec.auth = AuthMode::None;
            if u.speaks == Speaks::VertexClaude {
                spec.region = Some(u.region.clone());
                spec.auth = AuthMode::Issued;
            }
            if let Some(window) = u.sim_context_window {
                spec.context_window = window;
            }
            spec
        })
        .collect();
    if vertex {
        specs.push(EndpointSpec::new("identity", Kind::Identity));
    }
    let sim = Sim::start(SimConfig {
        seed: 3,
        control: None,
        endpoints: specs,
    })
    .await
    .unwrap();
    let dir = tempdir::Dir::new(test);
    let wif = vertex.then(|| wif_file(&dir.0, &sim.url("identity")));
    let endpoints = upstreams
        .iter()
        .map(|u| {
            let provider = match u.speaks {
                Speaks::Openai | Speaks::Azure => Provider::Openai,
                Speaks::VertexClaude => Provider::VertexAnthropic,
            };
            let mut e = EndpointConfig::new(&u.name, provider, &u.model, &u.region);
            e.base_url = Some(sim.url(&u.name));
            e.auth = AuthConfig::None;
            e.pricing = price();
            match u.speaks {
                Speaks::Openai => {}
                Speaks::Azure => {
                    e.azure = Some(AzureDeployment {
                        deployment: u.model.clone(),
                        api_version: "2024-10-21".into(),
                    });
                }
                Speaks::VertexClaude => {
                    e.project = Some("crossbar-test".into());
                    e.auth = AuthConfig::GcpCredentialsFile {
                        path: wif.clone().unwrap(),
                    };
                }
            }
            e
        })
        .collect();
    let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let mut config = RouterConfig {
        endpoints,
        features: vec![FeatureConfig::new("summarize", &names)],
        teams: vec![TeamConfig {
            name: TEAM.into(),
            requests_per_minute: None,
            tokens_per_minute: None,
        }],
        ..RouterConfig::default()
    };
    edit(&mut config);

    let key = format!("cb-test-{:016x}", fastrand::u64(..));
    let tokens: HashMap<&'static str, String> = ROLES
        .iter()
        .map(|r| (*r, format!("cba-{r}-{:016x}", fastrand::u64(..))))
        .collect();
    let mut file = toml::to_string(&config).unwrap();
    file.push_str(&format!(
        "\n[[gateway_keys]]\nteam = \"{TEAM}\"\nname = \"{TEAM}-test\"\nsha256 = \"{}\"\n",
        sha256_hex(&key)
    ));
    for (role, token) in &tokens {
        file.push_str(&format!(
            "\n[[admin_tokens]]\nname = \"{role}-person\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            sha256_hex(token)
        ));
    }
    let config_path = dir.0.join("crossbar.toml");
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
        .arg(dir.0.join("crossbar.db"))
        // The simulators speak plain http, and the federation file is the test's own.
        .arg("--allow-plain-http-credentials")
        .arg("--credentials-dir")
        .arg(&dir.0)
        .args(args)
        .env("CROSSBAR_LOG", "warn")
        // Several serving threads whatever the machine: connections are handed
        // between them, and shutdown waits for all of them.
        .env("CROSSBAR_WORKERS", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Until the Harness owns it, a guard does: `start` may be abandoned at the
    // await below (a sibling future in a `join!` panicked), and a plain `Child`
    // is not killed on drop — the server would outlive the test holding its pipes.
    let guard = KillOnDrop(Some(child));
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("crossbar printed nothing").unwrap();
        let base = line
            .strip_prefix("crossbar: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim_end_matches('/')
            .to_owned();
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        base
    })
    .await
    .unwrap();
    Harness {
        sim,
        child: guard.disarm(),
        base,
        key,
        tokens,
        http: reqwest::Client::new(),
        dir,
    }
}

/// A workload-identity-federation credentials file (an OIDC token exchanged at the
/// simulated Google STS): how a pod on another cloud reaches Vertex with no key.
fn wif_file(dir: &std::path::Path, identity_url: &str) -> String {
    let token = dir.join("oidc-token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e2e.sig").unwrap();
    let config = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/ci",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{identity_url}/v1/token"),
        "credential_source": { "file": token.to_str().unwrap() },
    });
    let path = dir.join("wif.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

impl Harness {
    pub fn faults(&self, endpoint: &str, patch: Value) {
        let ep = self.sim.endpoint(endpoint);
        ep.set_faults(ep.faults().patched(&patch).unwrap());
    }

    pub fn answered(&self, endpoint: &str) -> u64 {
        self.sim.endpoint(endpoint).stats().statuses.values().sum()
    }

    /// What simulated endpoint `name` saw, oldest first.
    pub fn seen(&self, endpoint: &str) -> Vec<Seen> {
        self.sim.requests(endpoint)
    }

    /// Forgets what every simulated endpoint saw (a reference request, say).
    pub fn forget_seen(&self) {
        for ep in self.sim.endpoints() {
            ep.reset_stats();
        }
    }

    pub fn openai(&self) -> Client<OpenAIConfig> {
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(format!("{}/v1", self.base))
                .with_api_key(&self.key),
        )
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The ledger row of `request_id`, read from the SQLite file the server writes
    /// (off its hot path, in batches: this waits up to 5 s for it).
    pub async fn ledger(&self, request_id: &str) -> router_core::telemetry::record::RequestRecord {
        let store = server::store::Store::open(&self.dir.0.join("crossbar.db"))
            .await
            .unwrap();
        for _ in 0..100 {
            if let Some(record) = store.ledger_record(request_id).await.unwrap() {
                store.close().await;
                return record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no ledger row for {request_id} after 5 s");
    }

    pub async fn admin(
        &self,
        role: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.tokens[role]);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `POST /admin/v1{path}` with `body`, as `role`.
    pub async fn admin_post(&self, role: &str, path: &str, body: Value) -> (u16, Value) {
        self.admin(role, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// `PUT /admin/v1/features/summarize` with `edit`, as `role`.
    pub async fn edit_summarize(&self, role: &str, edit: Value) -> (u16, Value) {
        self.admin(
            role,
            reqwest::Method::PUT,
            "/features/summarize",
            Some(edit),
        )
        .await
    }

    pub async fn breaker_state(&self, endpoint: &str) -> String {
        let (_, endpoints) = self
            .admin("viewer", reqwest::Method::GET, "/endpoints", None)
            .await;
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == endpoint)
            .map(|e| e["breaker"]["state"].as_str().unwrap().to_owned())
            .unwrap()
    }
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

pub fn user_message(text: &str) -> Value {
    json!({"model": "summarize", "messages": [{"role": "user", "content": text}], "max_tokens": 30})
}
