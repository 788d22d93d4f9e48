//! `crossbar-desktop`: the Crossbar console in a native window.
//!
//! A thin Tauri 2 shell: the window shows the very console bundle the server serves
//! (`ui/dist`, embedded at compile time and served from `tauri://localhost`), so the web
//! and desktop consoles cannot drift apart. The console talks to a Crossbar server over
//! its admin API like any other client; this shell adds no commands of its own.
//!
//! End-to-end tests drive it through WebKitWebDriver: with
//! `TAURI_WEBVIEW_AUTOMATION=true` the webview accepts automation sessions.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    tauri::Builder::default()
        .run(tauri::generate_context!())
        .expect("the Crossbar desktop app failed to start");
}
