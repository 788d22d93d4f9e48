//! The console in a real browser: `crossbar serve` on a free port, headless Chromium
//! through chromedriver, the wasm must mount, and a screenshot is kept.

use std::process::Command;

use anyhow::{Context, ensure};
use crossbar_e2e::process::{ChildGuard, TempDir, free_port};
use crossbar_e2e::webdriver::WebDriver;
use crossbar_e2e::{STARTUP_TIMEOUT, assert_console_mounted, paths};
use serde_json::{Value, json};

const ADDRESS_LINE: &str = "crossbar: console at ";

/// Flags Chromium needs on a headless, offline CI machine (see NOTES.md).
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
];

#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn console_mounts_in_headless_chromium() -> anyhow::Result<()> {
    let crossbar = paths::binary("CROSSBAR_BIN", "crossbar")?;
    let ui_dist = paths::ui_dist()?;
    let chromium =
        std::env::var("CROSSBAR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let chromedriver =
        std::env::var("CROSSBAR_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());

    // Drop order is the reverse of this: session, driver, profile, server.
    let (mut server, mut stdout) = ChildGuard::spawn_reading_stdout(
        "browser-crossbar",
        Command::new(&crossbar)
            .args(["serve", "--listen", "127.0.0.1:0", "--ui-dir"])
            .arg(&ui_dist),
    )?;
    let line = stdout.wait_for(&mut server, STARTUP_TIMEOUT, "the console address", |l| {
        l.starts_with(ADDRESS_LINE)
    })?;
    let console_url = line[ADDRESS_LINE.len()..].trim().to_owned();

    // The server half of the contract, before spending a browser on it.
    let health: Value = reqwest::blocking::get(format!("{console_url}healthz"))?
        .error_for_status()?
        .json()?;
    ensure!(
        health["status"] == "ok",
        "unexpected /healthz answer: {health}"
    );

    let profile = TempDir::new("chromium-profile")?;
    let port = free_port()?;
    let mut driver = ChildGuard::spawn(
        "browser-chromedriver",
        Command::new(&chromedriver).arg(format!("--port={port}")),
    )?;
    let webdriver = WebDriver::new(format!("http://127.0.0.1:{port}"))?;
    webdriver.wait_ready(&mut driver, STARTUP_TIMEOUT)?;

    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let session = webdriver
        .new_session(json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }))
        .with_context(|| driver.log_excerpt())?;

    session.navigate(&console_url)?;
    assert_console_mounted(&session, "Chromium")?;

    session.wait_for_paint()?;
    let shot = paths::save_png("placeholder-browser.png", &session.screenshot()?)?;
    println!("screenshot: {}", shot.display());
    Ok(())
}
