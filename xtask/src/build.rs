//! `cargo xtask build`: everything the demo and the end-to-end tests run.
//!
//! Order matters: the desktop app embeds `ui/dist` at compile time, so the console is
//! bundled first. `ui/dist` is only rewritten where a file changed, so an unchanged
//! console does not make cargo rebuild the desktop app.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::setup::wasm_bindgen_cli;
use crate::workspace::{Workspace, run, step};

/// Hand-written files of the console, copied next to what `wasm-bindgen` generates.
const UI_STATIC_FILES: [&str; 3] = ["index.html", "boot.js", "style.css"];

/// What the build produced.
pub struct Built {
    pub crossbar: PathBuf,
    /// The simulators and load generator, for `xtask bench` and people.
    #[allow(dead_code)]
    pub crossbar_sim: PathBuf,
    pub crossbar_desktop: PathBuf,
    pub ui_dist: PathBuf,
}

pub fn build(ws: &Workspace) -> anyhow::Result<Built> {
    step("build: console (wasm)", || {
        run(&mut ws.cargo(["build", "-p", "ui", "--target", "wasm32-unknown-unknown"]))
    })?;
    step("build: console bundle (wasm-bindgen → ui/dist)", || {
        bundle_console(ws)
    })?;
    step("build: crossbar and crossbar-sim", || {
        run(&mut ws.cargo(["build", "-p", "server", "-p", "sim", "--bins"]))
    })?;
    step("build: desktop app", || {
        run(&mut ws.cargo(["build", "-p", "crossbar-desktop"]))
    })?;
    Ok(Built {
        crossbar: ws.debug_binary("crossbar"),
        crossbar_sim: ws.debug_binary("crossbar-sim"),
        crossbar_desktop: ws.debug_binary("crossbar-desktop"),
        ui_dist: ws.ui_dist(),
    })
}

/// Generates the JS glue into a staging directory, adds the static files, and syncs
/// the result into `ui/dist`.
fn bundle_console(ws: &Workspace) -> anyhow::Result<()> {
    let wasm_bindgen = wasm_bindgen_cli(ws)?;
    let wasm = ws.target_dir.join("wasm32-unknown-unknown/debug/ui.wasm");
    let staging = ws.target_dir.join("ui-dist-staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    run(Command::new(&wasm_bindgen)
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&staging)
        .arg(&wasm))?;
    for file in UI_STATIC_FILES {
        let from = ws.root.join("ui").join(file);
        std::fs::copy(&from, staging.join(file))
            .with_context(|| format!("cannot copy {}", from.display()))?;
    }
    let changed = sync_dir(&staging, &ws.ui_dist())?;
    eprintln!("ui/dist: {changed} file(s) updated");
    Ok(())
}

/// Makes `to` hold exactly the files of `from` (flat), writing only those that differ.
/// Returns how many files were written or removed.
fn sync_dir(from: &Path, to: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut changed = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let content = std::fs::read(entry.path())?;
        if std::fs::read(&target).ok().as_deref() != Some(content.as_slice()) {
            std::fs::write(&target, &content)
                .with_context(|| format!("cannot write {}", target.display()))?;
            changed += 1;
        }
    }
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        if !from.join(entry.file_name()).exists() {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_dir_writes_only_differences_and_removes_stale_files() {
        let base = std::env::temp_dir().join(format!("xtask-sync-{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(from.join("same.txt"), "same").unwrap();
        std::fs::write(from.join("new.txt"), "new").unwrap();
        std::fs::write(to.join("same.txt"), "same").unwrap();
        std::fs::write(to.join("stale.txt"), "stale").unwrap();

        assert_eq!(sync_dir(&from, &to).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(to.join("new.txt")).unwrap(), "new");
        assert!(!to.join("stale.txt").exists());
        assert_eq!(
            sync_dir(&from, &to).unwrap(),
            0,
            "a second sync changes nothing"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
