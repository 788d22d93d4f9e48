//! The `crossbar serve` binary alone, in front of whatever the test points it at (the
//! simulators, usually), with a gateway key minted through its admin API.
//!
//! The binary is `$CROSSBAR_BIN`, else `crossbar` next to this test executable (what
//! `cargo xtask build` and `cargo build -p server --bins` produce).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::STARTUP_TIMEOUT;
use crate::paths::binary;
use crate::process::{ChildGuard, TempDir};

/// A running `crossbar serve`, killed on drop.
pub struct Gateway {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// A gateway key of the team the gateway was started for.
    pub key: String,
    admin_token: String,
    child: ChildGuard,
    _dir: TempDir,
}

/// A token nobody can guess, without a random-number crate: std's per-process random
/// hash keys, mixed with the time.
fn secret(prefix: &str) -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{:016x}{:016x}",
        state.hash_one(now),
        state.hash_one(std::process::id())
    )
}

impl Gateway {
    /// Serves `config` (a Crossbar TOML configuration without keys) on a free port,
    /// waits until it listens, and mints a gateway key for `team` through the admin
    /// API. `name` names its log, `artifacts/logs/<name>.log`.
    pub fn start(name: &str, config: &str, team: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("gateway")?;
        let path = dir.path().join("crossbar.toml");
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let admin_token = secret("cba-e2e");
        let bin = binary("CROSSBAR_BIN", "crossbar")?;
        let (mut child, mut stdout) = ChildGuard::spawn_reading_stdout(
            name,
            Command::new(bin)
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--no-console",
                    "--config",
                ])
                .arg(&path)
                .arg("--db")
                .arg(dir.path().join("crossbar.db"))
                .env("CROSSBAR_ADMIN_TOKEN", &admin_token)
                .env("CROSSBAR_LOG", "warn"),
        )?;
        let line = stdout.wait_for(
            &mut child,
            STARTUP_TIMEOUT,
            "`crossbar: listening on`",
            |l| l.starts_with("crossbar: listening on "),
        )?;
        let url = line
            .trim_start_matches("crossbar: listening on ")
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let mut gateway = Self {
            url,
            key: String::new(),
            admin_token,
            child,
            _dir: dir,
        };
        gateway.key = gateway.create_key(team, "e2e")?;
        Ok(gateway)
    }

    /// Mints a gateway key for `team` (admin API); returns the key.
    pub fn create_key(&self, team: &str, name: &str) -> anyhow::Result<String> {
        let created = self.admin_post("/keys", &json!({"team": team, "name": name}))?;
        created["key"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no key in {created}"))
    }

    /// `POST /admin/v1{path}` as admin.
    pub fn admin_post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = client()?
            .post(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()?;
        let status = response.status();
        let body: Value = response.json()?;
        if !status.is_success() {
            bail!("POST /admin/v1{path}: {status} {body}");
        }
        Ok(body)
    }

    /// `GET /admin/v1{path}` as admin.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        let response = client()?
            .get(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(&self.admin_token)
            .send()?;
        let status = response.status();
        let body: Value = response.json()?;
        if !status.is_success() {
            bail!("GET /admin/v1{path}: {status} {body}");
        }
        Ok(body)
    }

    /// Fails, quoting the log, if the gateway has died.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.child.check_running()
    }
}

fn client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}
