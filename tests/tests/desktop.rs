//! The console in the desktop app: `crossbar-desktop` (Tauri, WebKitGTK) in a virtual
//! X display, driven by WebKitWebDriver. The wasm must mount in the native window; a
//! WebDriver screenshot, a screenshot of the whole X display and one of the window
//! titled "Crossbar" (which also proves the native title) are kept.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use crossbar_e2e::process::{ChildGuard, free_port, run_bounded};
use crossbar_e2e::webdriver::WebDriver;
use crossbar_e2e::{STARTUP_TIMEOUT, assert_console_mounted, paths};
use serde_json::json;

#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn console_mounts_in_desktop_window() -> anyhow::Result<()> {
    let desktop = paths::binary("CROSSBAR_DESKTOP_BIN", "crossbar-desktop")?;

    // `-displayfd 1`: Xvfb picks a free display itself and prints its number.
    let (mut xvfb, mut stdout) = ChildGuard::spawn_reading_stdout(
        "desktop-xvfb",
        Command::new("Xvfb").args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ]),
    )?;
    let number = stdout.wait_for(&mut xvfb, STARTUP_TIMEOUT, "the display number", |l| {
        l.trim().parse::<u32>().is_ok()
    })?;
    let display = format!(":{}", number.trim());

    // The app inherits this environment from WebKitWebDriver, which starts it.
    let port = free_port()?;
    let mut driver = ChildGuard::spawn(
        "desktop-webkitwebdriver",
        Command::new("WebKitWebDriver")
            .arg(format!("--port={port}"))
            .env("DISPLAY", &display)
            // Without it the webview refuses automation and session creation hangs.
            .env("TAURI_WEBVIEW_AUTOMATION", "true")
            // No accessibility bus on a bare X server: do not wait for one.
            .env("NO_AT_BRIDGE", "1"),
    )?;
    let webdriver = WebDriver::new(format!("http://127.0.0.1:{port}"))?;
    webdriver.wait_ready(&mut driver, STARTUP_TIMEOUT)?;

    let session = webdriver
        .new_session(json!({ "webkitgtk:browserOptions": { "binary": desktop, "args": [] } }))
        .with_context(|| driver.log_excerpt())?;

    assert_console_mounted(&session, "the desktop window").with_context(|| driver.log_excerpt())?;

    // WebKitGTK answers DOM queries before it paints: let the mounted console reach the
    // screen first.
    session.wait_for_paint()?;
    let shot = paths::save_png("placeholder-desktop.png", &session.screenshot()?)?;
    println!("screenshot: {}", shot.display());

    // What a person would see on that display: the native window, not just the page.
    session.wait_for_paint()?;
    let screen = paths::screenshot("placeholder-desktop-screen.png")?;
    run_bounded(
        "desktop-import",
        Command::new("import")
            .args(["-window", "root"])
            .arg(&screen)
            .env("DISPLAY", &display),
        Duration::from_secs(30),
    )?;
    paths::check_png(&screen)?;
    println!("screenshot: {}", screen.display());

    // ImageMagick finds a window by name: this fails unless the native window is titled
    // "Crossbar" (the page's own title is "Crossbar console").
    let window = paths::screenshot("placeholder-desktop-window.png")?;
    run_bounded(
        "desktop-import-window",
        Command::new("import")
            .args(["-window", "Crossbar"])
            .arg(&window)
            .env("DISPLAY", &display),
        // `import` reports an unknown window, then hangs: keep this short.
        Duration::from_secs(15),
    )
    .context("no X window titled \"Crossbar\"")?;
    paths::check_png(&window)?;
    Ok(())
}
