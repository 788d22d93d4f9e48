//! `crossbar-desktop`: the Crossbar console in a native window.
//!
//! A thin Tauri 2 shell: the window shows the very console bundle the server serves
//! (`ui/dist`, embedded at compile time and served from `tauri://localhost`), so the web
//! and desktop consoles cannot drift apart. The console talks to a Crossbar router over
//! its admin API like any other client (the router URL and token come from the
//! console's sign-in, kept as connection profiles).
//!
//! What the shell adds is what only a native app can do, as two commands the console
//! invokes:
//! - `notify {title, body}`: a native notification (a breaker opened);
//! - `set_status {level, summary}`: the overall state (ok / degraded / down), shown in
//!   the window title and the tray icon's tooltip and menu.
//!
//! End-to-end tests drive it through WebKitWebDriver: with
//! `TAURI_WEBVIEW_AUTOMATION=true` the webview accepts automation sessions.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::sync::Mutex;

use tauri::menu::{Menu, MenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, State};

const TITLE: &str = "Crossbar";

/// The tray icon, when the desktop has a tray (a bare X server has none: the app
/// works without it).
struct Tray {
    icon: Mutex<Option<TrayIcon>>,
    status_item: Mutex<Option<MenuItem<tauri::Wry>>>,
}

/// A breaker opened: tell the person at the desk, even if the window is hidden.
/// Async, so a slow notification service never blocks the window's thread.
#[tauri::command]
async fn notify(app: AppHandle, title: String, body: String) {
    eprintln!("crossbar-desktop: notification: {title}: {body}");
    let shown = notify_rust::Notification::new()
        .appname(TITLE)
        .summary(&title)
        .body(&body)
        .timeout(notify_rust::Timeout::Milliseconds(8_000))
        .show();
    if let Err(err) = shown {
        // No notification daemon (a CI machine, a bare X session): keep the alert
        // visible in the window title instead of losing it.
        eprintln!("crossbar-desktop: no notification service ({err}); showing it in the title");
        if let Some(window) = app.get_webview_window("main") {
            let _ = window.set_title(&format!("{TITLE} — {title}"));
        }
    }
}

/// The overall state changed: window title, tray tooltip and the tray menu's status line.
#[tauri::command]
fn set_status(app: AppHandle, tray: State<'_, Tray>, level: String, summary: String) {
    let label = match level.as_str() {
        "ok" => "all endpoints healthy",
        "degraded" => "degraded",
        "down" => "router unreachable",
        _ => "status unknown",
    };
    let text = if summary.is_empty() {
        format!("{TITLE} — {label}")
    } else if level == "ok" {
        // The console's summary already says it ("all 9 endpoints healthy").
        format!("{TITLE} — {summary}")
    } else {
        format!("{TITLE} — {label}: {summary}")
    };
    eprintln!("crossbar-desktop: status {level}: {summary}");
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.set_title(&text);
    }
    if let Some(icon) = tray.icon.lock().expect("tray lock").as_ref() {
        let _ = icon.set_tooltip(Some(&text));
    }
    if let Some(item) = tray.status_item.lock().expect("tray lock").as_ref() {
        let _ = item.set_text(&text);
    }
}

fn build_tray(app: &tauri::App) -> tauri::Result<(TrayIcon, MenuItem<tauri::Wry>)> {
    let status = MenuItem::with_id(
        app,
        "status",
        format!("{TITLE} — connecting"),
        false,
        None::<&str>,
    )?;
    let show = MenuItem::with_id(app, "show", "Show the console", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&status, &show, &quit])?;
    let mut builder = TrayIconBuilder::with_id("crossbar")
        .tooltip(TITLE)
        .menu(&menu)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => {
                if let Some(w) = app.get_webview_window("main") {
                    let _ = w.show();
                    let _ = w.set_focus();
                }
            }
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    Ok((builder.build(app)?, status))
}

fn main() {
    tauri::Builder::default()
        .manage(Tray {
            icon: Mutex::new(None),
            status_item: Mutex::new(None),
        })
        .setup(|app| {
            match build_tray(app) {
                Ok((icon, status)) => {
                    let tray = app.state::<Tray>();
                    *tray.icon.lock().expect("tray lock") = Some(icon);
                    *tray.status_item.lock().expect("tray lock") = Some(status);
                }
                Err(err) => {
                    eprintln!("crossbar-desktop: no tray icon ({err}); status stays in the title")
                }
            }
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![notify, set_status])
        .run(tauri::generate_context!())
        .expect("the Crossbar desktop app failed to start");
}
