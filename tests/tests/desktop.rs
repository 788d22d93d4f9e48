//! The console in the desktop app, against the whole product: `crossbar demo` on a
//! free port, `crossbar-desktop` (Tauri, WebKitGTK) in a virtual X display, driven by
//! WebKitWebDriver. The window's page is `tauri://localhost`; it must reach the demo's
//! router at `http://127.0.0.1:PORT` (admin API over fetch, live stream over
//! EventSource) once a person has typed its URL and a token.
//!
//! Screenshots: `desktop-overview.png`, `desktop-editor.png`, `desktop-spend.png`
//! (WebDriver, the page), `desktop-screen.png` (the whole X display) and
//! `desktop-window.png` (the native window found by its title "Crossbar").

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "end-to-end tests wait for real processes, browsers and windows"
)]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use crossbar_e2e::console::{self, UI_TIMEOUT};
use crossbar_e2e::demo::{self, Demo, DemoOptions};
use crossbar_e2e::process::{ChildGuard, TempDir, free_port, run_bounded, wait_until};
use crossbar_e2e::webdriver::{Session, WebDriver};
use crossbar_e2e::{STARTUP_TIMEOUT, assert_console_mounted, paths, serial};
use serde_json::{Value, json};

fn save_screenshot(session: &Session<'_>, file: &str) -> anyhow::Result<()> {
    // WebKitGTK answers DOM queries before it paints: let the page reach the screen.
    session.wait_for_paint()?;
    let shot = paths::save_png(file, &session.screenshot()?)?;
    println!("screenshot: {}", shot.display());
    Ok(())
}

/// Captures an X window (`root` or a window name) with ImageMagick's `import`.
fn import_window(display: &str, window: &str, file: &str) -> anyhow::Result<()> {
    let path = paths::screenshot(file)?;
    run_bounded(
        &format!("desktop-import-{}", file.trim_end_matches(".png")),
        Command::new("import")
            .args(["-window", window])
            .arg(&path)
            .env("DISPLAY", display),
        // `import` reports an unknown window, then hangs: keep this short.
        Duration::from_secs(20),
    )
    .with_context(|| format!("cannot capture the X window {window:?}"))?;
    paths::check_png(&path)?;
    println!("screenshot: {}", path.display());
    Ok(())
}

/// The native window's title, asked of Tauri from the page (the `core:default`
/// capability allows reading it).
fn native_title(session: &Session<'_>) -> anyhow::Result<String> {
    let title = session.execute_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI_INTERNALS__
           .invoke('plugin:window|title', { label: 'main' })
           .then((t) => done({ ok: t }), (e) => done({ err: String(e) }));",
    )?;
    match (&title["ok"], &title["err"]) {
        (Value::String(t), _) => Ok(t.clone()),
        (_, err) => anyhow::bail!("Tauri did not give the window title: {err}"),
    }
}

#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn desktop_console_connects_to_a_running_router() -> anyhow::Result<()> {
    let _serial = serial();
    let desktop = paths::binary("CROSSBAR_DESKTOP_BIN", "crossbar-desktop")?;
    let demo = Demo::start("desktop-demo", &DemoOptions::with_traffic_and_history())?;

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

    // The app keeps its connection profiles (tokens included) in WebKit's local
    // storage under $XDG_DATA_HOME: a throw-away one, so the test neither restores a
    // sign-in left by an earlier run nor leaves its tokens in the real home.
    let home = TempDir::new("desktop-xdg")?;
    let xdg = |sub: &str| -> anyhow::Result<std::path::PathBuf> {
        let dir = home.path().join(sub);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    };
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
            .env("NO_AT_BRIDGE", "1")
            .env("XDG_DATA_HOME", xdg("data")?)
            .env("XDG_CONFIG_HOME", xdg("config")?)
            .env("XDG_CACHE_HOME", xdg("cache")?),
    )?;
    let webdriver = WebDriver::new(format!("http://127.0.0.1:{port}"))?;
    webdriver.wait_ready(&mut driver, STARTUP_TIMEOUT)?;

    let session = webdriver
        .new_session(json!({ "webkitgtk:browserOptions": { "binary": desktop, "args": [] } }))
        .with_context(|| driver.log_excerpt())?;
    assert_console_mounted(&session, "the desktop window").with_context(|| driver.log_excerpt())?;

    // Before signing in the window carries the plain product name. The X server gets
    // the window's pixels after the page paints them.
    session.wait_for_paint()?;
    import_window(&display, "Crossbar", "desktop-window.png")
        .context("no X window titled \"Crossbar\"")?;

    // The window's page runs under the app's Content-Security-Policy: an injected
    // inline script does not run.
    let ran = session.execute(
        "window.__crossbarInline = false;
         const s = document.createElement('script');
         s.textContent = 'window.__crossbarInline = true;';
         document.head.appendChild(s);
         return window.__crossbarInline === true;",
        json!([]),
    )?;
    ensure!(
        ran == Value::Bool(false),
        "an injected inline script ran in the desktop window"
    );

    // A person types the router's URL and an admin token, and asks the app to remember
    // it; the desktop app asks for the URL because its own page is not served by any
    // router.
    session.click_on("#signin-remember", UI_TIMEOUT)?;
    console::sign_in(&session, Some(&demo.url), demo.token("admin"), "admin")
        .with_context(|| driver.log_excerpt())?;
    // The token is never in the app's storage: the OS keychain has it, or — with no
    // keychain on this machine (no Secret Service under a bare X server) — the window
    // keeps it for the session and says so.
    let local = session.execute(
        "return JSON.stringify(Object.assign({}, localStorage));",
        json!([]),
    )?;
    let local = local.as_str().unwrap_or_default();
    ensure!(
        local.contains("crossbar.profiles") && !local.contains(demo.token("admin")),
        "the desktop app's local storage: {local}"
    );
    if let Some(warning) = session.find("#session-warning")? {
        let text = session.text(&warning)?;
        ensure!(
            text.contains("keychain"),
            "unexpected sign-in warning: {text}"
        );
        println!("no OS keychain here: {text}");
    } else {
        println!("the token was saved in the OS keychain");
    }
    console::wait_for_overview(&session, &demo::ENDPOINTS).with_context(|| {
        format!(
            "the desktop console signed in but shows no live overview; {}",
            driver.log_excerpt()
        )
    })?;
    // The console told the shell how the router is doing: the native title says so.
    let title = wait_until(
        UI_TIMEOUT,
        "the native title to show the router's status",
        || {
            let title = native_title(&session)?;
            Ok(title.starts_with("Crossbar — ").then_some(title))
        },
    )?;
    println!("native window title: {title}");
    save_screenshot(&session, "desktop-overview.png")?;

    console::open_feature(&session, "recap")?;
    session
        .wait_for("#feature-editor", UI_TIMEOUT)
        .context("an admin gets no feature editor in the desktop app")?;
    save_screenshot(&session, "desktop-editor.png")?;

    // Some cost to show: every feature once.
    for (feature, team) in demo::FEATURES {
        let served = demo.chat_burst(team, feature, &format!("desktop-{feature}"), 4, 4)?;
        ensure!(
            served.iter().all(|s| s.status == 200),
            "{feature} requests failed: {served:?}"
        );
    }
    console::open_spend(&session)?;
    save_screenshot(&session, "desktop-spend.png")?;

    // What a person would see on that display: the native window, not just the page.
    session.wait_for_paint()?;
    import_window(&display, "root", "desktop-screen.png")?;
    Ok(())
}
