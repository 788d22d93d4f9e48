//! Where the binaries under test, the built console and the artifacts are.
//!
//! `cargo xtask test` passes every location explicitly (`CROSSBAR_BIN`,
//! `CROSSBAR_DESKTOP_BIN`, `CROSSBAR_UI_DIST`). Without them the defaults are what
//! `cargo xtask build` produces, found next to this test executable, so
//! `cargo test -p crossbar-e2e -- --include-ignored` works after a build too.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The workspace root (this crate lives in `tests/`). Cargo's run-time
/// `CARGO_MANIFEST_DIR`, not the path compiled in: a target directory shared between
/// checkouts can hold a test executable built from another one.
pub fn workspace_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .parent()
            .expect("tests/ has a parent directory")
            .to_path_buf()
    })
}

/// The profile directory the test executable was built into (`<target>/debug`): test
/// executables live in `<target>/<profile>/deps/`, next to the workspace's binaries.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("unexpected test executable location {}", exe.display()))
}

/// A binary under test: `$env_var`, else `<target>/<profile>/<name>`. It must exist.
pub fn binary(env_var: &str, name: &str) -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(env_var) {
        Some(path) => PathBuf::from(path),
        None => profile_dir()?.join(name),
    };
    if !path.is_file() {
        bail!(
            "`{name}` not found at {}: build it with `cargo xtask build` (or set {env_var})",
            path.display()
        );
    }
    Ok(path)
}

/// The built console: `$CROSSBAR_UI_DIST`, else `ui/dist`. It must hold index.html.
pub fn ui_dist() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("CROSSBAR_UI_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("ui/dist"));
    if !dir.join("index.html").is_file() {
        bail!(
            "no built console in {}: run `cargo xtask build` (or set CROSSBAR_UI_DIST)",
            dir.display()
        );
    }
    Ok(dir)
}

/// `artifacts/` at the workspace root (gitignored), or `$CROSSBAR_ARTIFACTS`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("CROSSBAR_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("artifacts"))
}

/// `artifacts/<sub>/<file>`, creating the directory.
fn artifact(sub: &str, file: &str) -> anyhow::Result<PathBuf> {
    let dir = artifacts_dir().join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(file))
}

/// Where a screenshot goes: `artifacts/screenshots/<file>`.
pub fn screenshot(file: &str) -> anyhow::Result<PathBuf> {
    artifact("screenshots", file)
}

/// Where a child process's output goes: `artifacts/logs/<name>.log`.
pub fn log_file(name: &str) -> anyhow::Result<PathBuf> {
    artifact("logs", &format!("{name}.log"))
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Saves a screenshot as `artifacts/screenshots/<file>` after checking it is a PNG, and
/// returns where it went.
pub fn save_png(file: &str, png: &[u8]) -> anyhow::Result<PathBuf> {
    if !png.starts_with(PNG_MAGIC) {
        bail!("{file}: the screenshot is not a PNG ({} bytes)", png.len());
    }
    let path = screenshot(file)?;
    std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Checks that a file some tool wrote is a non-trivial PNG.
pub fn check_png(path: &Path) -> anyhow::Result<()> {
    let png = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !png.starts_with(PNG_MAGIC) {
        bail!("{} is not a PNG ({} bytes)", path.display(), png.len());
    }
    Ok(())
}
