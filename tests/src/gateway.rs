//! `crossbar serve` alone, in front of simulators: the binary (`$CROSSBAR_BIN`, else
//! `crossbar` next to this test executable) with a configuration file the test
//! writes, its own database, on a port of its choosing, and one gateway key.

use std::process::Command;

use anyhow::Context;

use crate::STARTUP_TIMEOUT;
use crate::paths::binary;
use crate::process::{ChildGuard, TempDir};

/// The gateway key every [`Gateway`] accepts, for the team `clients`.
pub const GATEWAY_KEY: &str = "cb-e2e-python-clients-through-crossbar";
/// Its SHA-256, as a configuration file seeds it (`printf %s KEY | sha256sum`).
const GATEWAY_KEY_SHA256: &str = "fbb1483d6b1849a0f88c0ff40d046d7781d4d1348787bef74bf10a5316d2f088";

/// A running `crossbar serve`, killed on drop.
pub struct Gateway {
    child: ChildGuard,
    url: String,
    _dir: TempDir,
}

impl Gateway {
    /// Serves `config` (endpoints and features, in the configuration file's TOML; the
    /// team `clients` and [`GATEWAY_KEY`] are added) on a free port, and waits until
    /// it listens. `name` names its log, `artifacts/logs/<name>.log`.
    pub fn start(name: &str, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("crossbar")?;
        let path = dir.path().join("crossbar.toml");
        let config = format!(
            "{config}\n\n[[teams]]\nname = \"clients\"\n\n[[gateway_keys]]\nteam = \"clients\"\nname = \"clients-key\"\nsha256 = \"{GATEWAY_KEY_SHA256}\"\n"
        );
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
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
                .env("CROSSBAR_LOG", "info"),
        )?;
        let line = stdout.wait_for(
            &mut child,
            STARTUP_TIMEOUT,
            "`crossbar: listening on URL`",
            |l| l.starts_with("crossbar: listening on "),
        )?;
        let url = line
            .trim_start_matches("crossbar: listening on ")
            .trim()
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            child,
            url,
            _dir: dir,
        })
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fails, quoting the log, if the process has died.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.child.check_running()
    }
}
