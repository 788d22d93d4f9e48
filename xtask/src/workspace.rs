//! Where things are, and the small helpers every task uses: timed steps and commands
//! that fail loudly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

pub struct Workspace {
    pub root: PathBuf,
    /// Cargo's target directory, as cargo itself resolves it (CARGO_TARGET_DIR,
    /// `build.target-dir`, or `<root>/target`).
    pub target_dir: PathBuf,
}

impl Workspace {
    pub fn locate() -> anyhow::Result<Self> {
        // At run time, not the path compiled in: a target directory shared between
        // checkouts can hold an xtask built from another one.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let root = manifest_dir
            .parent()
            .context("xtask/ has no parent")?
            .to_path_buf();
        let output = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(&root)
            .output()
            .context("cannot run `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
            .context("`cargo metadata` printed something that is not JSON")?;
        let target_dir = metadata["target_directory"]
            .as_str()
            .context("`cargo metadata` has no target_directory")?
            .into();
        Ok(Self { root, target_dir })
    }

    /// `<target>/debug/<name>`: where `cargo build` puts a binary.
    pub fn debug_binary(&self, name: &str) -> PathBuf {
        self.target_dir.join("debug").join(name)
    }

    pub fn ui_dist(&self) -> PathBuf {
        self.root.join("ui/dist")
    }

    /// A `cargo` command run from the workspace root.
    pub fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = cargo();
        command.args(args).current_dir(&self.root);
        command
    }
}

/// The cargo that runs us (`$CARGO`), so a pinned toolchain stays pinned.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `f` as a named step, printing its name and how long it took.
pub fn step<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    eprintln!("==> {name}");
    let start = Instant::now();
    let result = f();
    let secs = start.elapsed().as_secs_f64();
    match &result {
        Ok(_) => eprintln!("<== {name}: done in {secs:.1} s"),
        Err(_) => eprintln!("<== {name}: FAILED after {secs:.1} s"),
    }
    result.with_context(|| format!("step `{name}` failed"))
}

/// Runs a command to completion, its output going to ours; fails unless it succeeds.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = display(command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout, or `None` if it cannot run or fails.
pub fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The command line, for messages.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tool cargo installs: `$CARGO_HOME/bin/<name>` (default `~/.cargo/bin`) if it is
/// there, since a fresh shell may not have that directory on PATH yet; else PATH.
pub fn cargo_installed_tool(name: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    cargo_home
        .map(|home| home.join("bin").join(name))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| name.into())
}
