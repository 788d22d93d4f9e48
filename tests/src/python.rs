//! The official Python clients, run from the virtualenv `cargo xtask setup` makes.
//!
//! The venv is `<target dir>/python-venv` (xtask's `setup::python_venv`), found here
//! from this test executable's place in the target directory, as the binaries are
//! ([`crate::paths`]); `$CROSSBAR_PYTHON_VENV` overrides it. The scripts are in
//! `tests/python/`; each prints one `RESULT <json>` line ([`run_script`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::paths::workspace_root;
use crate::process::run_bounded_output;

/// The venv's Python. It must exist.
pub fn python() -> anyhow::Result<PathBuf> {
    let venv = match std::env::var_os("CROSSBAR_PYTHON_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => target_dir()?.join("python-venv"),
    };
    let python = venv.join("bin/python");
    if !python.is_file() {
        bail!(
            "no Python virtualenv at {}: run `cargo xtask setup` (or set CROSSBAR_PYTHON_VENV)",
            venv.display()
        );
    }
    Ok(python)
}

/// The target directory: test executables live in `<target>/<profile>/deps/`.
fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .with_context(|| format!("unexpected test executable location {}", exe.display()))
}

/// A script of `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/python").join(name)
}

/// How long one client script may take (imports alone take a second or two on a
/// loaded 2-core machine).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `tests/python/<name>` with the venv's Python, in an environment of only `env`
/// (plus `PATH` and a scratch `HOME`: nothing from the caller's cloud settings leaks
/// in), and returns the JSON of its `RESULT` line. Its output goes to
/// `artifacts/logs/<log>.log`, quoted if it fails.
pub fn run_script(log: &str, name: &str, env: &[(&str, String)]) -> anyhow::Result<Value> {
    let python = python()?;
    let home = crate::process::TempDir::new("python-home")?;
    let mut command = Command::new(&python);
    command
        .arg(script(name))
        .current_dir(workspace_root().join("tests/python"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = run_bounded_output(log, &mut command, SCRIPT_TIMEOUT)?;
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("{name} printed no RESULT line:\n{output}"))?;
    serde_json::from_str(line).with_context(|| format!("{name}: RESULT is not JSON: {line}"))
}
