//! `cargo xtask demo [ARGS...]`: setup, build, then `crossbar demo` until Ctrl-C.
//!
//! `crossbar demo` is the product's own demo (simulated clouds, router, console, live
//! traffic with scripted incidents; see `server/src/demo.rs`): this only makes sure it
//! is built and points it at the built console. Extra arguments go to it, e.g.
//! `cargo xtask demo --listen 0.0.0.0:8080 --rps 20`.

use std::process::Command;

use anyhow::bail;

use crate::build::build;
use crate::setup::setup;
use crate::workspace::{Workspace, display, step};

pub fn demo(ws: &Workspace, args: &[String]) -> anyhow::Result<()> {
    setup(ws)?;
    let built = build(ws)?;
    step("demo: crossbar demo (Ctrl-C stops it)", || {
        let mut command = Command::new(&built.crossbar);
        command
            .arg("demo")
            .arg("--ui-dir")
            .arg(&built.ui_dist)
            .args(args)
            .current_dir(&ws.root);
        eprintln!("$ {}", display(&command));
        // Ctrl-C reaches the whole foreground process group: `crossbar demo` shuts
        // down gracefully on it; xtask only waits for that to finish.
        // SAFETY: ignoring a signal touches no memory.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
        let status = command.status()?;
        if !status.success() && status.code() != Some(130) && status.code().is_some() {
            bail!("crossbar demo exited with {status}");
        }
        Ok(())
    })
}
