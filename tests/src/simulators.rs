//! The simulated clouds alone: the `crossbar-sim` binary serving a TOML config, and
//! blocking helpers for its control API (faults, stats, the request log).
//!
//! The binary is `$CROSSBAR_SIM_BIN`, else `crossbar-sim` next to this test executable
//! (what `cargo xtask build` and `cargo build -p sim --bins` produce).

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::STARTUP_TIMEOUT;
use crate::paths::binary;
use crate::process::{ChildGuard, TempDir};

/// A running `crossbar-sim serve`, killed on drop.
pub struct Simulators {
    child: ChildGuard,
    urls: HashMap<String, String>,
    control: String,
    _dir: TempDir,
}

impl Simulators {
    /// Serves `config` (a `crossbar-sim` TOML config whose listeners use port 0) and
    /// waits for it to say it is ready. `name` names its log, `artifacts/logs/<name>.log`.
    pub fn start(name: &str, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("sim")?;
        let path = dir.path().join("sim.toml");
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let bin = binary("CROSSBAR_SIM_BIN", "crossbar-sim")?;
        let (mut child, mut stdout) = ChildGuard::spawn_reading_stdout(
            name,
            Command::new(bin)
                .args(["serve", "--config"])
                .arg(&path)
                .env("RUST_LOG", "info"),
        )?;
        let mut urls = HashMap::new();
        let mut control = None;
        loop {
            let line =
                stdout.wait_for(&mut child, STARTUP_TIMEOUT, "`crossbar-sim: ready`", |l| {
                    l.starts_with("crossbar-sim: ")
                })?;
            let line = line.trim_start_matches("crossbar-sim: ");
            if line == "ready" {
                break;
            }
            // `endpoint NAME (KIND) at URL` and `control at URL`.
            if let Some(rest) = line.strip_prefix("endpoint ")
                && let Some((name, url)) = rest
                    .split_once(' ')
                    .and_then(|(name, rest)| Some((name, rest.split_once(" at ")?.1)))
            {
                urls.insert(name.to_owned(), url.to_owned());
            } else if let Some(url) = line.strip_prefix("control at ") {
                control = Some(url.to_owned());
            }
        }
        let control =
            control.context("crossbar-sim printed no control URL: give the config a `control`")?;
        Ok(Self {
            child,
            urls,
            control,
            _dir: dir,
        })
    }

    /// `http://HOST:PORT` of endpoint `name`.
    pub fn url(&self, name: &str) -> &str {
        self.urls
            .get(name)
            .unwrap_or_else(|| panic!("no simulated endpoint named {name}"))
    }

    /// Fails, quoting the log, if the simulator process has died.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.child.check_running()
    }

    /// PATCHes endpoint `name`'s faults through the control API; returns the result.
    pub fn set_faults(&self, name: &str, patch: &Value) -> anyhow::Result<Value> {
        let response = reqwest::blocking::Client::new()
            .patch(format!("{}/_sim/endpoints/{name}/faults", self.control))
            .json(patch)
            .send()?;
        let status = response.status();
        let body: Value = response.json()?;
        if !status.is_success() {
            bail!("setting faults {patch} on {name}: {status} {body}");
        }
        Ok(body)
    }

    /// Endpoint `name`'s stats: counters, and `log`, what it saw.
    pub fn stats(&self, name: &str) -> anyhow::Result<Value> {
        let response =
            reqwest::blocking::get(format!("{}/_sim/endpoints/{name}/stats", self.control))?;
        if !response.status().is_success() {
            bail!("stats of {name}: {}", response.status());
        }
        Ok(response.json()?)
    }

    /// Endpoint `name`'s request log, oldest first.
    pub fn requests(&self, name: &str) -> anyhow::Result<Vec<Value>> {
        let stats = self.stats(name)?;
        stats["log"]
            .as_array()
            .cloned()
            .with_context(|| format!("no request log in the stats of {name}: {stats}"))
    }
}
