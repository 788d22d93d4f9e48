//! The desktop shell (Tauri 2): detection and the two commands the console calls.
//!
//! Calls go through `window.__TAURI_INTERNALS__.invoke(cmd, args)` dynamically, so the
//! bundle needs no Tauri JavaScript package and a browser simply skips them. Errors
//! (no Tauri, a command the shell lacks) are ignored: these are conveniences.

use wasm_bindgen::{JsCast, JsValue};

fn internals() -> Option<JsValue> {
    let window = web_sys::window()?;
    js_sys::Reflect::get(&window, &"__TAURI_INTERNALS__".into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Whether the page runs inside the desktop app: the Tauri bridge is there, or the
/// page's origin is Tauri's (`tauri://localhost`, `http(s)://tauri.localhost`).
pub fn is_desktop() -> bool {
    if internals().is_some() {
        return true;
    }
    let Some(location) = web_sys::window().map(|w| w.location()) else {
        return false;
    };
    location.protocol().is_ok_and(|p| p == "tauri:")
        || location.hostname().is_ok_and(|h| h == "tauri.localhost")
}

/// `invoke(cmd, args)`, fire and forget.
pub fn invoke(cmd: &str, args: &serde_json::Value) {
    let Some(internals) = internals() else {
        return;
    };
    let Ok(invoke) = js_sys::Reflect::get(&internals, &"invoke".into()) else {
        return;
    };
    let Ok(invoke) = invoke.dyn_into::<js_sys::Function>() else {
        return;
    };
    let Ok(args) = js_sys::JSON::parse(&args.to_string()) else {
        return;
    };
    if let Ok(result) = invoke.call2(&internals, &JsValue::from_str(cmd), &args)
        && let Ok(promise) = result.dyn_into::<js_sys::Promise>()
    {
        // Await it only to swallow a rejection instead of logging an "uncaught (in
        // promise)" error.
        leptos::task::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        });
    }
}

/// A desktop notification (a breaker opened).
pub fn notify(title: &str, body: &str) {
    invoke(
        "notify",
        &serde_json::json!({ "title": title, "body": body }),
    );
}

/// The tray/title status: `ok`, `degraded` or `down`.
pub fn set_status(level: &str, summary: &str) {
    invoke(
        "set_status",
        &serde_json::json!({ "level": level, "summary": summary }),
    );
}
