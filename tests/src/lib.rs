//! Helpers for Crossbar's end-to-end tests.
//!
//! The tests run the real, separately built binaries (`crossbar`, `crossbar-desktop`)
//! and drive them from outside, the way people and CI use them: over HTTP, through a
//! W3C WebDriver session (headless Chromium via chromedriver; the Tauri window via
//! WebKitWebDriver under Xvfb), and with X11 screenshots.
//!
//! What they run against is the whole product on one machine: `crossbar demo`
//! ([`demo::Demo`]: router, simulated clouds, console, one token per role and one
//! gateway key per team, all parsed from what it prints), which the tests also call
//! directly — the gateway to make traffic, the admin API to check what the console
//! did, the simulators' fault API to break a cloud.
//!
//! - [`demo`]: start the demo, its tokens and keys; blocking helpers for the gateway,
//!   the admin API and the simulators (a [`demo::FaultGuard`] undoes a fault even when
//!   the test fails);
//! - [`chromium`]: chromedriver with the system Chromium, headless and offline;
//! - [`console`]: what a person does in the console (sign in, the overview, a
//!   feature, the spend view) over its stable selectors (`ui/README.md`), shared by
//!   the browser and desktop tests;
//! - [`webdriver`]: a small W3C WebDriver client (sessions, navigation, elements,
//!   clicks and typing, scripts, screenshots) over blocking `reqwest`;
//! - [`simulators`], [`python`]: the `crossbar-sim` binary alone, and the official
//!   Python clients (from the virtualenv `cargo xtask setup` makes) run against it;
//! - [`gateway`]: `crossbar serve` alone, in front of the simulators, with a key minted
//!   through its admin API (the official clients of the other dialects run against it);
//! - [`process`], [`paths`]: child processes, bounded waits, where things are.
//!
//! Three rules keep them from hanging, leaking or tripping over each other on a
//! 2-core CI machine:
//! - every child process is owned by a [`process::ChildGuard`], which kills its whole
//!   process group on drop (a driver's browser or app goes with it);
//! - every wait is bounded ([`process::wait_until`]) and fails with a message saying
//!   what did not happen, plus the tail of the process's log (`artifacts/logs/`) or
//!   the page's text;
//! - each GUI test starts its own demo and browser (or app), and [`serial`] runs the
//!   tests of one binary one at a time, so what one test publishes or breaks cannot
//!   reach another.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "end-to-end tests wait for real processes, browsers and windows"
)]

pub mod chromium;
pub mod console;
pub mod demo;
pub mod gateway;
pub mod paths;
pub mod process;
pub mod python;
pub mod simulators;
pub mod webdriver;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Runs the GUI tests of one test binary one at a time, whatever `--test-threads`
/// says: two browsers, two demos and a wasm debug build at once on 2 cores make
/// every timeout a coin toss. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one still runs.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The element the console renders only once its wasm has mounted (`ui::READY_ID`).
pub const READY_SELECTOR: &str = "#app-ready";

/// The text the console shows in [`READY_SELECTOR`]. The workspace shares one version,
/// so this crate's version is `router_core::VERSION`, which the console displays.
pub fn expected_ready_text() -> String {
    format!(
        "Console ready · WebAssembly · router-core v{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// How long a process may take to start listening or print its first line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the console may take from navigation to mounted wasm (a debug build on a
/// loaded 2-core machine is slow, but not this slow).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for the console's wasm to mount in `session`, then checks what a person sees
/// first: the ready badge, the page title, the heading, and that the static boot notice
/// is gone. `what` names the surface ("Chromium", "the desktop window") in failures.
pub fn assert_console_mounted(session: &webdriver::Session<'_>, what: &str) -> anyhow::Result<()> {
    use anyhow::{Context, ensure};
    let text = session
        .wait_for_text(READY_SELECTOR, MOUNT_TIMEOUT)
        .with_context(|| format!("the console's wasm never mounted in {what}"))?;
    ensure!(
        text.trim() == expected_ready_text(),
        "unexpected ready text: {text:?}"
    );
    ensure!(
        session.title()? == "Crossbar console",
        "unexpected page title"
    );
    // The wasm entry point removes the static "starting" notice before mounting.
    ensure!(
        session.find("#boot")?.is_none(),
        "the static boot notice is still there"
    );
    let header = session.find("h1")?.context("no <h1> on the console page")?;
    ensure!(
        session.text(&header)? == "Crossbar console",
        "unexpected heading"
    );
    Ok(())
}
