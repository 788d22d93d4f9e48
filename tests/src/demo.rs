//! `crossbar demo` under test: started on a free port, its printed URLs, tokens and
//! keys parsed, plus small blocking HTTP helpers for the three APIs the tests speak
//! besides the console: the gateway, the admin API and the simulators' fault API.
//!
//! What the demo prints, in this order (the tests rely on it):
//!
//! ```text
//! crossbar demo: listening on http://ADDR/
//! crossbar demo: console at http://ADDR/
//! crossbar demo: token <role> <token>        (viewer, operator, experimenter, admin)
//! crossbar demo: key <team> <key>            (docs, meetings, search, compliance)
//! crossbar demo: simulators at http://HOST:PORT/_sim/endpoints
//! crossbar demo: try ...
//! crossbar demo: ready
//! ```

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::Method;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::STARTUP_TIMEOUT;
use crate::paths;
use crate::process::ChildGuard;

const PREFIX: &str = "crossbar demo: ";

/// The router's endpoint names in the demo configuration (`server/src/demo.rs`).
pub const ENDPOINTS: [&str; 9] = [
    "bedrock-use1-provisioned",
    "bedrock-use1",
    "bedrock-usw2",
    "bedrock-euc1",
    "gemini-us",
    "claude-us",
    "gemini-eu",
    "claude-eu",
    "azure-eastus",
];

/// The demo's features and the team whose key calls each.
pub const FEATURES: [(&str, &str); 4] = [
    ("summarize", "docs"),
    ("recap", "meetings"),
    ("search-answer", "search"),
    ("extract", "compliance"),
];

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Average requests per second of the demo's own traffic (0: none, so what the
    /// router sees is only what the test sends).
    pub rps: f64,
    /// Scripted incidents (they start 40 s in; most tests are shorter than that).
    pub incidents: bool,
    /// Days of synthetic history the demo writes to the ledger at start (the spend
    /// view's past); 0 keeps the machine quiet for timing-sensitive tests.
    pub history_days: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            rps: 0.0,
            incidents: false,
            history_days: 0,
        }
    }
}

impl DemoOptions {
    /// Something for the overview and the spend view to show: background traffic
    /// (4 requests a second) and a day of past traffic.
    pub fn with_traffic_and_history() -> Self {
        Self {
            rps: 4.0,
            history_days: 1,
            ..Self::default()
        }
    }
}

/// A running `crossbar demo`; killed on drop.
pub struct Demo {
    /// `http://127.0.0.1:PORT` (no trailing slash): gateway, admin API and console.
    pub url: String,
    /// The simulators' control API, `http://127.0.0.1:PORT` (no trailing slash).
    pub sim_control: String,
    tokens: HashMap<String, String>,
    keys: HashMap<String, String>,
    http: Client,
    process: ChildGuard,
}

impl Demo {
    /// Starts `crossbar demo --listen 127.0.0.1:0 --ui-dir <dist>` and waits for
    /// `ready`. `name` names its log (`artifacts/logs/<name>.log`).
    pub fn start(name: &str, options: &DemoOptions) -> anyhow::Result<Self> {
        let crossbar = paths::binary("CROSSBAR_BIN", "crossbar")?;
        let ui_dist = paths::ui_dist()?;
        let mut command = Command::new(&crossbar);
        command
            .args(["demo", "--listen", "127.0.0.1:0", "--ui-dir"])
            .arg(&ui_dist)
            .args(["--rps", &options.rps.to_string()])
            .args(["--history-days", &options.history_days.to_string()]);
        if !options.incidents {
            command.arg("--no-incidents");
        }
        // After `ready` the reader thread keeps copying stdout (incidents) to the log.
        let (mut process, mut stdout) = ChildGuard::spawn_reading_stdout(name, &mut command)?;

        let mut url = None;
        let mut sim_control = None;
        let mut tokens = HashMap::new();
        let mut keys = HashMap::new();
        let mut ready = false;
        while !ready {
            let line = stdout.wait_for(
                &mut process,
                STARTUP_TIMEOUT,
                "`crossbar demo: ready`",
                |l| l.starts_with(PREFIX),
            )?;
            let rest = &line[PREFIX.len()..];
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                ["listening", "on", address] => {
                    url = Some(address.trim_end_matches('/').to_owned())
                }
                ["token", role, token] => {
                    tokens.insert((*role).to_owned(), (*token).to_owned());
                }
                ["key", team, key] => {
                    keys.insert((*team).to_owned(), (*key).to_owned());
                }
                ["simulators", "at", list] => {
                    let base = list
                        .strip_suffix("/_sim/endpoints")
                        .with_context(|| format!("unexpected simulators line: {line}"))?;
                    sim_control = Some(base.to_owned());
                }
                ["ready"] => ready = true,
                _ => {}
            }
        }
        let missing =
            |what: &str| format!("the demo never printed {what}; {}", process.log_excerpt());
        let url = url.with_context(|| missing("its address"))?;
        let sim_control = sim_control.with_context(|| missing("the simulators' address"))?;
        for role in ["viewer", "operator", "experimenter", "admin"] {
            ensure!(
                tokens.contains_key(role),
                missing(&format!("a {role} token"))
            );
        }
        for (_, team) in FEATURES {
            ensure!(
                keys.contains_key(team),
                missing(&format!("a key for {team}"))
            );
        }
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self {
            url,
            sim_control,
            tokens,
            keys,
            http,
            process,
        })
    }

    /// The console's address, as a person would type it.
    pub fn console_url(&self) -> String {
        format!("{}/", self.url)
    }

    /// The admin token printed for `role`.
    pub fn token(&self, role: &str) -> &str {
        self.tokens
            .get(role)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the demo printed no {role} token"))
    }

    /// The gateway key printed for `team`.
    pub fn key(&self, team: &str) -> &str {
        self.keys
            .get(team)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the demo printed no key for {team}"))
    }

    /// Fails, quoting the demo's log, if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }

    /// The last lines of the demo's log, for failure messages.
    pub fn log_excerpt(&self) -> String {
        self.process.log_excerpt()
    }

    // --- admin API -------------------------------------------------------------

    /// An admin API call: `(status, JSON body)` whatever the status (`null` for an
    /// empty body).
    pub fn admin(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/admin/v1{path}", self.url);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().with_context(|| format!("{method} {url}"))?;
        read_json(response).with_context(|| format!("{method} {url}"))
    }

    /// `GET /admin/v1{path}`, which must succeed.
    pub fn admin_get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.admin(token, Method::GET, path, None)?;
        if !(200..300).contains(&status) {
            bail!("GET /admin/v1{path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// The active configuration version (`GET /admin/v1/config`).
    pub fn active_config(&self) -> anyhow::Result<Value> {
        self.admin_get(self.token("admin"), "/config")
    }

    /// The configured percentages of a feature's experiment in `config_version`
    /// (a `GET /config` answer), by variant name.
    pub fn configured_split(
        config_version: &Value,
        feature: &str,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        let features = config_version["config"]["features"]
            .as_array()
            .with_context(|| format!("no features in the config: {config_version}"))?;
        let found = features
            .iter()
            .find(|f| f["name"] == feature)
            .with_context(|| format!("no feature {feature} in the active config"))?;
        let variants = found["experiment"]["variants"]
            .as_array()
            .with_context(|| format!("{feature} runs no experiment: {found}"))?;
        variants
            .iter()
            .map(|v| {
                let name = v["name"].as_str().context("a variant without a name")?;
                let percent = v["percent"]
                    .as_f64()
                    .context("a variant without a percent")?;
                Ok((name.to_owned(), percent))
            })
            .collect()
    }

    /// The observed share (percent) of each variant of `feature` in the live window
    /// (`GET /admin/v1/features/live`), with the number of requests it is based on.
    pub fn observed_split(&self, feature: &str) -> anyhow::Result<(u64, Vec<(String, f64)>)> {
        let live = self.admin_get(self.token("admin"), "/features/live")?;
        let entry = live
            .as_array()
            .and_then(|all| all.iter().find(|f| f["feature"] == feature))
            .with_context(|| format!("no live entry for {feature}: {live}"))?;
        let requests = entry["requests"].as_u64().unwrap_or(0);
        let variants = entry["variants"]
            .as_array()
            .with_context(|| format!("no variants in {entry}"))?
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    v["observed_percent"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        Ok((requests, variants))
    }

    /// The breaker state of a router endpoint as the admin API reports it.
    pub fn breaker_state(&self, endpoint: &str) -> anyhow::Result<String> {
        let all = self.admin_get(self.token("admin"), "/endpoints")?;
        let found = all
            .as_array()
            .and_then(|all| all.iter().find(|e| e["name"] == endpoint))
            .with_context(|| format!("no endpoint {endpoint} in /endpoints"))?;
        found["breaker"]["state"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no breaker state for {endpoint}: {found}"))
    }

    // --- gateway ---------------------------------------------------------------

    /// One non-streaming chat completion for `feature` with `team`'s key, `user` as
    /// the sticky key. Returns the status and the `x-crossbar-*` headers that say how
    /// it was served (`endpoint`, `variant`, `attempts`).
    pub fn chat(&self, team: &str, feature: &str, user: &str) -> anyhow::Result<Served> {
        let url = format!("{}/v1/chat/completions", self.url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.key(team))
            .json(&json!({
                "model": feature,
                "messages": [{"role": "user", "content": "Say something short about routing."}],
                "max_tokens": 16,
                "user": user,
            }))
            .send()
            .with_context(|| format!("POST {url} ({feature})"))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let served = Served {
            status: response.status().as_u16(),
            endpoint: header("x-crossbar-endpoint"),
            variant: header("x-crossbar-variant"),
        };
        // Read the whole answer, as a client would.
        let _ = response.bytes();
        Ok(served)
    }

    /// One chat completion for `feature` with any gateway `key`: the status.
    pub fn chat_with_key(&self, key: &str, feature: &str) -> anyhow::Result<u16> {
        let url = format!("{}/v1/chat/completions", self.url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(key)
            .json(&json!({
                "model": feature,
                "messages": [{"role": "user", "content": "Say something short about keys."}],
                "max_tokens": 8,
            }))
            .send()
            .with_context(|| format!("POST {url} ({feature})"))?;
        let status = response.status().as_u16();
        let _ = response.bytes();
        Ok(status)
    }

    /// Sends `count` requests for `feature` from `threads` clients at once, user ids
    /// `{user_prefix}-0` .. `-{count-1}`, and returns how each was served.
    pub fn chat_burst(
        &self,
        team: &str,
        feature: &str,
        user_prefix: &str,
        count: usize,
        threads: usize,
    ) -> anyhow::Result<Vec<Served>> {
        let next = AtomicUsize::new(0);
        let results = std::sync::Mutex::new(Vec::with_capacity(count));
        thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let served = self.chat(team, feature, &format!("{user_prefix}-{i}"));
                        results.lock().expect("results lock").push(served);
                    }
                });
            }
        });
        results
            .into_inner()
            .expect("results lock")
            .into_iter()
            .collect()
    }

    // --- simulators ------------------------------------------------------------

    /// Patches a simulated endpoint's faults (a JSON merge patch, e.g.
    /// `{"outage": "refuse"}`; `{"outage": "none"}` clears it).
    pub fn set_faults(&self, sim_endpoint: &str, patch: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/_sim/endpoints/{sim_endpoint}/faults", self.sim_control);
        let response = self
            .http
            .patch(&url)
            .json(patch)
            .send()
            .with_context(|| format!("PATCH {url}"))?;
        let (status, body) = read_json(response).with_context(|| format!("PATCH {url}"))?;
        if !(200..300).contains(&status) {
            bail!("PATCH {url} {patch} answered {status}: {body}");
        }
        Ok(body)
    }
}

/// How the gateway served one request.
#[derive(Debug, Clone)]
pub struct Served {
    pub status: u16,
    /// `x-crossbar-endpoint`.
    pub endpoint: String,
    /// `x-crossbar-variant`.
    pub variant: String,
}

fn read_json(response: Response) -> anyhow::Result<(u16, Value)> {
    let status = response.status().as_u16();
    let text = response.text().context("cannot read the answer")?;
    if text.trim().is_empty() {
        return Ok((status, Value::Null));
    }
    let body = serde_json::from_str(&text).with_context(|| {
        format!(
            "HTTP {status}, not JSON: {}",
            text.chars().take(300).collect::<String>()
        )
    })?;
    Ok((status, body))
}

/// Undoes a simulator fault when dropped, so a failing test does not leave an
/// endpoint broken for whatever runs next against the same demo.
pub struct FaultGuard<'a> {
    demo: &'a Demo,
    sim_endpoint: String,
    clear: Value,
    cleared: bool,
}

impl<'a> FaultGuard<'a> {
    /// Applies `fault` to `sim_endpoint` now and `clear` on drop.
    pub fn set(
        demo: &'a Demo,
        sim_endpoint: &str,
        fault: Value,
        clear: Value,
    ) -> anyhow::Result<Self> {
        demo.set_faults(sim_endpoint, &fault)?;
        Ok(Self {
            demo,
            sim_endpoint: sim_endpoint.to_owned(),
            clear,
            cleared: false,
        })
    }

    /// Clears the fault now, reporting a failure.
    pub fn clear(mut self) -> anyhow::Result<()> {
        self.cleared = true;
        self.demo
            .set_faults(&self.sim_endpoint, &self.clear)
            .map(drop)
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        if !self.cleared {
            let _ = self.demo.set_faults(&self.sim_endpoint, &self.clear);
        }
    }
}
