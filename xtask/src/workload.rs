//! The benchmark's workload, which `cargo xtask bench` measures and `cargo xtask pgo`
//! trains on: the simulated upstream (`crossbar-sim serve`), the gateway configured
//! in front of it (`crossbar serve`), the load generator (`crossbar-sim load`), and
//! the child processes they run as. Kept apart from both commands so that each
//! depends on it and neither on the other.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The gateway key of the benchmark's team (not a secret: the gateway runs on
/// loopback for one run).
pub(crate) const KEY: &str = "cb-bench-key-not-secret";

/// A child process, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub(crate) struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so the server drains and flushes like in production.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 10 s: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command`, returns it and the first stdout line `wanted` accepts.
pub(crate) fn start(
    name: &'static str,
    command: Command,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<(Proc, String)> {
    let (proc, mut lines) = start_reading(name, command, wanted)?;
    Ok((proc, lines.pop().expect("the wanted line")))
}

/// Starts `command`, returns it and its stdout lines up to and including the first
/// one `wanted` accepts.
pub(crate) fn start_reading(
    name: &'static str,
    mut command: Command,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<(Proc, Vec<String>)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let proc = Proc { child, name };
    let mut read = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = wanted(&line);
                read.push(line);
                if done {
                    break;
                }
            }
            _ => bail!("{name} exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((proc, read))
}

/// Starts `crossbar serve` on a free port with `config` and a new ledger at `db`,
/// reaching its endpoint as `how` says, and returns it with its base URL. `command`
/// runs the binary (directly, or valgrind with the binary as its first argument).
pub(crate) fn start_gateway(
    name: &'static str,
    mut command: Command,
    config: &Path,
    db: &Path,
    how: Upstream,
) -> anyhow::Result<(Proc, String)> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(PathBuf::from(format!("{}{suffix}", db.display())));
    }
    command
        .args([
            "serve",
            "--no-console",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .arg("--db")
        .arg(db)
        .env("CROSSBAR_LOG", "warn")
        // The flag below says it, whatever the caller's environment says.
        .env_remove("CROSSBAR_UPSTREAM_HTTP1_WHEN_IDLE");
    match how {
        Upstream::Shipped => {
            command.arg("--upstream-http1-when-idle");
        }
        Upstream::H2cOnly => {}
    }
    let (gateway, line) = start(name, command, |l| l.starts_with("crossbar: listening on "))?;
    let base = line
        .trim_start_matches("crossbar: listening on ")
        .trim_end_matches('/')
        .to_owned();
    Ok((gateway, base))
}

/// The upstream: one simulated OpenAI endpoint (h2c or HTTP/1.1 on one port), no
/// faults, no auth. Returns it and its base URL.
pub(crate) fn start_sim(sim_bin: &Path, work: &Path) -> anyhow::Result<(Proc, String)> {
    let sim_config = work.join("sim.toml");
    std::fs::write(
        &sim_config,
        "seed = 1\n[[endpoint]]\nname = \"bench\"\nkind = \"openai\"\nlisten = \"127.0.0.1:0\"\nauth = \"none\"\n",
    )?;
    let (sim, line) = start(
        "crossbar-sim",
        {
            let mut c = Command::new(sim_bin);
            c.args(["serve", "--config"])
                .arg(&sim_config)
                .env("RUST_LOG", "warn");
            c
        },
        |l| l.contains("endpoint bench"),
    )?;
    Ok((sim, address_after_at(&line)))
}

/// The address a `crossbar-sim` line ends with (`… at http://127.0.0.1:PORT`).
pub(crate) fn address_after_at(line: &str) -> String {
    line.rsplit(" at ").next().unwrap_or(line).trim().to_owned()
}

/// How the benchmark's gateway reaches its endpoint: a transport setting of
/// `crossbar serve`, not of the configuration.
#[derive(Clone, Copy)]
pub(crate) enum Upstream {
    /// The configuration measured: h2c, and HTTP/1.1 for a request that finds its
    /// serving thread with nothing else in flight (`--upstream-http1-when-idle`).
    Shipped,
    /// h2c for every request.
    H2cOnly,
}

/// The gateway's config for the benchmarks: feature `bench` on the simulated OpenAI
/// endpoint at `upstream`, over h2c, team `bench` with the key [`KEY`].
pub(crate) fn write_gateway_config(work: &Path, upstream: &str) -> anyhow::Result<PathBuf> {
    let config = work.join("crossbar.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[endpoints]]
name = "bench"
provider = "openai"
model = "gpt-4o-mini"
region = "eastus"
geography = "us"
base_url = "{upstream}"
auth = {{ method = "none" }}
http2_prior_knowledge = true
timeouts = {{ request_ms = 120000, stream_idle_ms = 120000 }}
pricing = {{ input_per_million = "0.15", output_per_million = "0.60" }}

[[features]]
name = "bench"
binding = ["bench"]
deadline_ms = 120000

[[teams]]
name = "bench"

[[gateway_keys]]
team = "bench"
name = "bench"
sha256 = "{}"
"#,
            sha256_hex(KEY)?
        ),
    )?;
    Ok(config)
}

fn sha256_hex(input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("sha256sum")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// A run of `crossbar-sim load` (closed loop) against `url`.
pub(crate) struct Load<'a> {
    pub(crate) sim: &'a Path,
    pub(crate) url: String,
    pub(crate) model: &'a str,
    pub(crate) key: Option<&'a str>,
    /// HTTP/2 from the first byte (`--http2-prior-knowledge`), as the gateway speaks
    /// to its upstream.
    pub(crate) h2c: bool,
}

impl<'a> Load<'a> {
    /// Straight to the simulated endpoint at `base`, over HTTP/1.1.
    pub(crate) fn direct(sim: &'a Path, base: &str) -> Self {
        Load {
            sim,
            url: format!("{base}/v1/chat/completions"),
            model: "gpt-4o-mini",
            key: None,
            h2c: false,
        }
    }

    /// Through a gateway at `base` running [`write_gateway_config`]'s config.
    pub(crate) fn gateway(sim: &'a Path, base: &str) -> Self {
        Load {
            sim,
            url: format!("{base}/v1/chat/completions"),
            model: "bench",
            key: Some(KEY),
            h2c: false,
        }
    }

    pub(crate) fn run(
        &self,
        concurrency: usize,
        requests: Option<u64>,
        duration: &str,
        stream: bool,
        max_tokens: u32,
    ) -> anyhow::Result<Value> {
        let mut command = Command::new(self.sim);
        command.args(["load", "--json", "--url", &self.url, "--model", self.model]);
        command.args([
            "--concurrency",
            &concurrency.to_string(),
            "--duration",
            duration,
        ]);
        command.args([
            "--max-tokens",
            &max_tokens.to_string(),
            "--timeout",
            "120s",
            "--users",
            "1000",
        ]);
        if let Some(n) = requests {
            command.args(["--requests", &n.to_string()]);
        }
        if stream {
            command.arg("--stream");
        }
        if self.h2c {
            command.arg("--http2-prior-knowledge");
        }
        if let Some(key) = self.key {
            command.env("CROSSBAR_API_KEY", key);
        }
        let out = command
            .stderr(Stdio::inherit())
            .output()
            .context("crossbar-sim load")?;
        if !out.status.success() {
            bail!("crossbar-sim load failed");
        }
        let report: Value =
            serde_json::from_slice(&out.stdout).context("load report is not JSON")?;
        let errors = report["errors"]
            .as_object()
            .map_or(0, |e| e.values().filter_map(Value::as_u64).sum::<u64>());
        if errors > 0 {
            eprintln!("warning: {errors} errors in this run: {}", report["errors"]);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_reading_returns_the_lines_up_to_the_wanted_one() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo 'crossbar demo: key docs k1'; echo other; echo 'crossbar demo: ready'; echo after",
        ]);
        let (_proc, lines) = start_reading("sh", command, |l| l == "crossbar demo: ready").unwrap();
        assert_eq!(
            lines,
            [
                "crossbar demo: key docs k1",
                "other",
                "crossbar demo: ready"
            ]
        );

        let mut command = Command::new("sh");
        command.args(["-c", "echo never; exit 3"]);
        let err = start("sh", command, |l| l == "ready").err().unwrap();
        assert!(
            err.to_string().contains("exited before it was ready"),
            "{err}"
        );
    }
}
