//! `crossbar-desktop`: the Crossbar console in a native window.
//!
//! A thin Tauri 2 shell: the window shows the very console bundle the server serves
//! (`ui/dist`, embedded at compile time and served from `tauri://localhost`), so the web
//! and desktop consoles cannot drift apart. The console talks to a Crossbar router over
//! its admin API like any other client (the router URL and token come from the
//! console's sign-in, kept as connection profiles).
//!
//! What the shell adds is what only a native app can do, as commands the console
//! invokes:
//! - `notify {title, body}`: a native notification (a breaker opened);
//! - `set_status {level, summary}`: the overall state (ok / degraded / down), shown in
//!   the window title and the tray icon's tooltip and menu;
//! - `keychain_get {profile}`, `keychain_set {profile, token}`,
//!   `keychain_delete {profile}`: a connection's remembered admin token in the OS
//!   keychain (the `keyring` crate), never in the webview's storage. Where there is no
//!   keychain (a Linux desktop without a Secret Service, a CI machine) they fail fast
//!   with a message saying so, and the console keeps the token for the session only.
//!
//! The window's page runs under a Content-Security-Policy (`tauri.conf.json`): its
//! own scripts and wasm only, connections to the routers people sign in to (any
//! http(s) URL) and to Tauri's IPC.
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

/// The keychain service under which the console's tokens are saved, one entry per
/// connection profile.
const KEYCHAIN_SERVICE: &str = "dev.crossbar.console";

/// How long a keychain call may take: a desktop bus that never answers must not hang
/// the sign-in.
const KEYCHAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `op` on the entry of `profile`, off the window's thread and bounded in time;
/// every failure is a message for the person.
async fn keychain<T: Send + 'static>(
    profile: String,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<T, String> {
    if profile.is_empty() {
        return Err("a remembered token needs a connection name".into());
    }
    let (done, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = keyring::Entry::new(KEYCHAIN_SERVICE, &profile).and_then(|entry| op(&entry));
        let _ = done.send(result);
    });
    let answer =
        tauri::async_runtime::spawn_blocking(move || answer.recv_timeout(KEYCHAIN_TIMEOUT))
            .await
            .map_err(|e| format!("the keychain call failed: {e}"))?;
    match answer {
        Ok(result) => result.map_err(|e| match e {
            keyring::Error::NoDefaultStore => match keyring::Entry::store_status() {
                Err(why) => format!(
                    "there is no OS keychain here (on Linux a Secret Service, such as GNOME Keyring \
                     or KWallet, must be running: {why})"
                ),
                Ok(()) => "there is no OS keychain here".to_owned(),
            },
            other => format!("the OS keychain refused: {other}"),
        }),
        Err(_) => Err("the OS keychain did not answer in time".into()),
    }
}

/// The token remembered for `profile`, if any.
#[tauri::command]
async fn keychain_get(profile: String) -> Result<Option<String>, String> {
    keychain(profile, |entry| match entry.get_password() {
        Ok(token) => Ok(Some(token)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e),
    })
    .await
}

/// Remembers `token` for `profile` (replacing any).
#[tauri::command]
async fn keychain_set(profile: String, token: String) -> Result<(), String> {
    keychain(profile, move |entry| entry.set_password(&token)).await
}

/// Forgets `profile`'s token; nothing remembered is fine.
#[tauri::command]
async fn keychain_delete(profile: String) -> Result<(), String> {
    keychain(profile, |entry| match entry.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(e),
    })
    .await
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
        .invoke_handler(tauri::generate_handler![
            notify,
            set_status,
            keychain_get,
            keychain_set,
            keychain_delete
        ])
        .run(tauri::generate_context!())
        .expect("the Crossbar desktop app failed to start");
}
