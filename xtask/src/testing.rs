//! `cargo xtask test`: the whole suite, as CI runs it.
//!
//! First the formatting check and the lints (clippy, warnings denied), then every crate's unit and integration tests (the desktop shell has none; the
//! console's pure logic runs natively on its own), then the end-to-end tests, which are
//! `#[ignore]`d in a plain `cargo test` because they need the built binaries, a browser
//! and an X server. Both suites run even if the first fails, so one run reports
//! everything; cargo's own `test result:` lines stay visible for CI.

use crate::build::build;
use crate::setup::setup;
use crate::workspace::{Workspace, run, step};

pub fn test(ws: &Workspace) -> anyhow::Result<()> {
    setup(ws)?;
    let built = build(ws)?;

    let mut failed = Vec::new();
    let format = step("test: formatting (cargo fmt --check)", || {
        run(&mut ws.cargo(["fmt", "--all", "--", "--check"]))
    });
    if let Err(err) = format {
        eprintln!("{err:#}");
        failed.push("formatting");
    }
    // The workspace's lints (Cargo.toml's [workspace.lints], clippy.toml's clock
    // bans), every crate and target, warnings as errors.
    let lints = step(
        "test: lints (cargo clippy --workspace --all-targets)",
        || {
            run(&mut ws.cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    );
    if let Err(err) = lints {
        eprintln!("{err:#}");
        failed.push("lints");
    }
    let unit = step("test: unit and integration tests", || {
        run(&mut ws.cargo([
            "test",
            "--workspace",
            "--exclude",
            "ui",
            "--exclude",
            "crossbar-desktop",
        ]))
    });
    if let Err(err) = unit {
        eprintln!("{err:#}");
        failed.push("unit and integration tests");
    }
    // The console's pure logic (percentages, diffs, formatting, grouping, the spend
    // chart) runs natively too: its crate is an rlib as well as the wasm cdylib.
    let console = step("test: console logic (native)", || {
        run(&mut ws.cargo(["test", "-p", "ui", "--lib"]))
    });
    if let Err(err) = console {
        eprintln!("{err:#}");
        failed.push("console logic tests");
    }

    let e2e = step("test: end-to-end tests (browser, desktop)", || {
        let mut command = ws.cargo([
            "test",
            "-p",
            "crossbar-e2e",
            "--tests",
            "--",
            "--include-ignored",
        ]);
        command
            .env("CROSSBAR_BIN", &built.crossbar)
            .env("CROSSBAR_DESKTOP_BIN", &built.crossbar_desktop)
            .env("CROSSBAR_UI_DIST", &built.ui_dist)
            .env("CROSSBAR_ARTIFACTS", ws.root.join("artifacts"));
        run(&mut command)
    });
    if let Err(err) = e2e {
        eprintln!("{err:#}");
        failed.push("end-to-end tests");
    }

    if failed.is_empty() {
        eprintln!(
            "all tests passed; screenshots in {}",
            ws.root.join("artifacts/screenshots").display()
        );
        Ok(())
    } else {
        anyhow::bail!("failed: {}", failed.join(", "))
    }
}
