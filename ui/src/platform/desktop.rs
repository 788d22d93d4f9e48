//! The desktop shell (Tauri 2): detection and the commands the console calls.
//!
//! Calls go through `window.__TAURI_INTERNALS__.invoke(cmd, args)` dynamically, so the
//! bundle needs no Tauri JavaScript package and a browser simply skips them. The
//! notifications and status are conveniences whose errors are ignored ([`invoke`]);
//! the OS keychain's answers are awaited and reported ([`call`], [`keychain`]).

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

/// `invoke(cmd, args)`, awaited: the command's answer, or its error as text (no
/// Tauri bridge, a command the shell lacks, a command that failed).
pub async fn call(cmd: &str, args: &serde_json::Value) -> Result<JsValue, String> {
    let internals = internals().ok_or("not running in the desktop app")?;
    let invoke = js_sys::Reflect::get(&internals, &"invoke".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("the desktop app's bridge has no invoke")?;
    let args = js_sys::JSON::parse(&args.to_string()).map_err(|e| crate::api::js_message(&e))?;
    let promise = invoke
        .call2(&internals, &JsValue::from_str(cmd), &args)
        .map_err(|e| crate::api::js_message(&e))?
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| "invoke did not return a promise".to_owned())?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| crate::api::js_message(&e))
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

/// The OS keychain (the shell's `keychain_*` commands, backed by the `keyring`
/// crate: Keychain on macOS, Credential Manager on Windows, the Secret Service on
/// Linux), where the desktop app keeps a remembered connection's token.
pub mod keychain {
    use serde_json::json;

    /// The token saved for `profile`, if any.
    pub async fn get(profile: &str) -> Result<Option<String>, String> {
        let answer = super::call("keychain_get", &json!({ "profile": profile })).await?;
        Ok(answer.as_string().filter(|t| !t.is_empty()))
    }

    /// Saves `token` for `profile`, replacing any.
    pub async fn set(profile: &str, token: &str) -> Result<(), String> {
        super::call(
            "keychain_set",
            &json!({ "profile": profile, "token": token }),
        )
        .await
        .map(|_| ())
    }

    /// Forgets `profile`'s token (nothing saved is fine).
    pub async fn delete(profile: &str) -> Result<(), String> {
        super::call("keychain_delete", &json!({ "profile": profile }))
            .await
            .map(|_| ())
    }
}
