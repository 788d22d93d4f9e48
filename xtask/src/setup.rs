//! `cargo xtask setup`: install what is missing, and only that.
//!
//! Everything comes from the ordinary channels — apt, rustup, `cargo install`, pip —
//! nothing is downloaded by hand. Run again, it only checks (a few hundred ms).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::workspace::{Workspace, cargo_installed_tool, output, run, step};

/// Debian packages: WebKitGTK/GTK and friends to build the Tauri app, then what the
/// end-to-end tests drive (Chromium + chromedriver, Xvfb, WebKitWebDriver, ImageMagick's
/// `import`), a font so screenshots have text, and Python's `venv` module (Debian
/// ships it apart from `python3`) for the official Python clients' virtualenv.
pub const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "libwebkit2gtk-4.1-dev",
    "libgtk-3-dev",
    "librsvg2-dev",
    "libayatana-appindicator3-dev",
    "libxdo-dev",
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    "chromium",
    "chromium-driver",
    "imagemagick",
    "fonts-dejavu-core",
    "python3-venv",
];

/// The pinned official Python clients the end-to-end tests run against the
/// simulators, relative to the workspace root.
pub const PYTHON_REQUIREMENTS: &str = "tests/python/requirements.txt";

/// The virtualenv they are installed in: `<target dir>/python-venv`, where the
/// end-to-end tests look for it (`tests/src/python.rs`), and which CI's cached target
/// directory keeps between runs.
pub fn python_venv(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("python-venv")
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";

pub fn setup(ws: &Workspace) -> anyhow::Result<()> {
    step("setup: system packages", apt_packages)?;
    step("setup: rust target wasm32-unknown-unknown", wasm_target)?;
    step("setup: rustfmt and clippy", rustfmt_and_clippy)?;
    step("setup: wasm-bindgen CLI", || wasm_bindgen_cli(ws).map(drop))?;
    step("setup: official Python clients (virtualenv)", || {
        python_clients(ws)
    })?;
    Ok(())
}

/// Makes sure [`python_venv`] holds exactly [`PYTHON_REQUIREMENTS`]: a copy of the
/// requirements file inside the venv stamps what was installed, so a second run only
/// compares two files and asks the venv's Python for its version. When the file has
/// changed (or the venv is missing or broken), the venv is made afresh, so a pin that
/// was dropped does not linger. The base interpreter is `$CROSSBAR_PYTHON`, else
/// `python3` on PATH.
fn python_clients(ws: &Workspace) -> anyhow::Result<()> {
    let requirements_path = ws.root.join(PYTHON_REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_path)
        .with_context(|| format!("cannot read {}", requirements_path.display()))?;
    let venv = python_venv(ws);
    let python = venv.join("bin/python");
    let stamp = venv.join("crossbar-requirements.txt");
    let installed = std::fs::read_to_string(&stamp).ok();
    if installed.as_deref() == Some(requirements.as_str())
        && let Some(version) = output(Command::new(&python).arg("--version"))
    {
        eprintln!(
            "the Python clients are installed ({}, {})",
            version.trim(),
            venv.display()
        );
        return Ok(());
    }
    if venv.exists() {
        eprintln!(
            "{} changed since {} was made (or the venv is broken): making it afresh",
            PYTHON_REQUIREMENTS,
            venv.display()
        );
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    let base = std::env::var_os("CROSSBAR_PYTHON").unwrap_or_else(|| "python3".into());
    run(Command::new(&base).args(["-m", "venv"]).arg(&venv)).with_context(|| {
        format!(
            "cannot create a virtualenv with {}: is Python 3 installed, with its venv module \
             (Debian: python3-venv)?",
            base.to_string_lossy()
        )
    })?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "-r",
        ])
        .arg(&requirements_path))
    .context("cannot install the Python clients (is PyPI reachable?)")?;
    // Written last: an interrupted install is redone next time.
    std::fs::write(&stamp, &requirements)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

fn apt_packages() -> anyhow::Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        eprintln!(
            "not a Debian system: make sure the equivalents of these are installed: {}",
            APT_PACKAGES.join(" ")
        );
        return Ok(());
    }
    apt_install(APT_PACKAGES)
}

/// Installs those of `packages` that dpkg does not report as installed.
fn apt_install(packages: &[&'static str]) -> anyhow::Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        eprintln!("all {} packages are installed", packages.len());
        return Ok(());
    }
    let list = missing.join(" ");
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages: {list}\ninstall them as root, then run this again:\n  \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    eprintln!("installing: {list}");
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still_missing = missing_packages(packages);
    if !still_missing.is_empty() {
        bail!(
            "apt-get finished but these are still not installed: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}

/// The packages of `packages` that dpkg does not report as installed.
fn missing_packages(packages: &[&'static str]) -> Vec<&'static str> {
    // One dpkg-query for all; unknown packages go to stderr and are simply not listed.
    let listed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package}\t${Status}\n"])
        .args(packages)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let installed: BTreeSet<&str> = listed
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| *status == "install ok installed")
        .map(|(package, _)| package.split(':').next().unwrap_or(package))
        .collect();
    packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

fn wasm_target() -> anyhow::Result<()> {
    // The sysroot check works with or without rustup.
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))
        .context("cannot run `rustc --print sysroot`")?;
    if Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        eprintln!("{WASM_TARGET} is installed");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
        .context("cannot add the wasm32 target: is the toolchain managed by rustup?")
}

/// `llvm-profdata` from rustup's `llvm-tools` component, added if missing: what
/// `xtask pgo` merges its training profiles with. It must be the toolchain's own
/// LLVM, whose profile format rustc reads. Only `xtask pgo` and `xtask bench` need
/// it, so `setup` (and with it CI) does not fetch it.
pub fn llvm_profdata() -> anyhow::Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))
        .context("cannot run `rustc --print sysroot`")?;
    let path = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host_triple()?)
        .join("bin/llvm-profdata");
    if !path.is_file() {
        run(Command::new("rustup").args(["component", "add", "llvm-tools"])).context(
            "cannot add llvm-tools (llvm-profdata): is the toolchain managed by rustup?",
        )?;
    }
    anyhow::ensure!(path.is_file(), "no llvm-profdata at {}", path.display());
    Ok(path)
}

/// The Debian package with BOLT's `llvm-bolt` and `merge-fdata`: LLVM 19, from Debian
/// 12's main archive (what `xtask pgo` was measured with). BOLT rewrites a linked
/// binary, so its LLVM need not be rustc's.
const BOLT_PACKAGE: &str = "bolt-19";

/// The directory with `llvm-bolt` and `merge-fdata`, which `xtask pgo` lays the
/// profile-guided binary out with: on `PATH`, or the newest `/usr/lib/llvm-*/bin`;
/// otherwise [`BOLT_PACKAGE`] is installed (as root, on Debian). Like
/// [`llvm_profdata`], only `xtask pgo` and `xtask bench` need it.
pub fn llvm_bolt() -> anyhow::Result<PathBuf> {
    let has_both =
        |dir: &Path| dir.join("llvm-bolt").is_file() && dir.join("merge-fdata").is_file();
    let find = || {
        let on_path = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("llvm-")?
                    .parse()
                    .ok()?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        on_path
            .into_iter()
            .chain(versioned.into_iter().map(|(_, dir)| dir))
            .find(|dir| has_both(dir))
    };
    if let Some(dir) = find() {
        return Ok(dir);
    }
    if !Path::new("/usr/bin/dpkg-query").exists() {
        bail!(
            "no llvm-bolt and merge-fdata found (on PATH or in /usr/lib/llvm-*/bin): install LLVM's BOLT"
        );
    }
    apt_install(&[BOLT_PACKAGE])?;
    find().with_context(|| {
        format!("{BOLT_PACKAGE} is installed but has no llvm-bolt and merge-fdata")
    })
}

/// The target triple rustc builds for by default (`host:` of `rustc -vV`).
pub fn host_triple() -> anyhow::Result<String> {
    let version = output(Command::new("rustc").arg("-vV")).context("cannot run `rustc -vV`")?;
    version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` names no host")
}

/// `cargo fmt` and `cargo clippy`, which `xtask test` runs as checks (neither is in
/// rustup's minimal profile).
fn rustfmt_and_clippy() -> anyhow::Result<()> {
    for (command, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if output(Command::new("cargo").args([command, "--version"])).is_some() {
            eprintln!("{component} is installed");
            continue;
        }
        run(Command::new("rustup").args(["component", "add", component])).with_context(|| {
            format!("cannot add {component}: is the toolchain managed by rustup?")
        })?;
    }
    Ok(())
}

/// The `wasm-bindgen` version in Cargo.lock: the CLI must match it exactly.
pub fn locked_wasm_bindgen_version(ws: &Workspace) -> anyhow::Result<String> {
    let lock_path = ws.root.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .with_context(|| format!("cannot read {}", lock_path.display()))?;
    let mut versions = BTreeSet::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == r#"name = "wasm-bindgen""#
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix(r#"version = ""#))
        {
            versions.insert(version.trim_end_matches('"').to_owned());
        }
    }
    match versions.len() {
        1 => Ok(versions.pop_first().expect("one version")),
        0 => bail!("Cargo.lock has no wasm-bindgen: does ui/ still depend on it?"),
        _ => bail!(
            "Cargo.lock has several wasm-bindgen versions ({versions:?}): pin one in ui/Cargo.toml"
        ),
    }
}

/// Makes sure the `wasm-bindgen` CLI matches Cargo.lock, installing it if not, and
/// returns its path.
pub fn wasm_bindgen_cli(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let wanted = locked_wasm_bindgen_version(ws)?;
    let tool = cargo_installed_tool("wasm-bindgen");
    let installed = output(Command::new(&tool).arg("--version"));
    // `wasm-bindgen --version` prints `wasm-bindgen 0.2.x`.
    if installed.as_deref().map(str::trim) == Some(format!("wasm-bindgen {wanted}").as_str()) {
        eprintln!("wasm-bindgen {wanted} is installed ({})", tool.display());
        return Ok(tool);
    }
    eprintln!(
        "wasm-bindgen {wanted} is needed, found {} (this compiles it: a few minutes)",
        installed.as_deref().map(str::trim).unwrap_or("none")
    );
    // No --locked: the CLI's own lockfile names a crate version crates.io no longer serves.
    run(&mut ws.cargo(["install", "wasm-bindgen-cli", "--version", &wanted]))?;
    let tool = cargo_installed_tool("wasm-bindgen");
    let installed = output(Command::new(&tool).arg("--version")).unwrap_or_default();
    if installed.trim() != format!("wasm-bindgen {wanted}") {
        bail!(
            "installed wasm-bindgen-cli {wanted}, but `{}` reports {:?}",
            tool.display(),
            installed.trim()
        );
    }
    Ok(tool)
}
