//! Crossbar's operations console (Leptos, client-side rendered, wasm).
//!
//! The same bundle is served by `crossbar serve` (same origin: the admin API is at
//! `/admin/v1`) and embedded in the desktop app (`src-tauri/`, which asks for a router
//! URL), so everything here must work in both Chromium and WebKitGTK.
//!
//! Layout:
//! - [`api`]: the typed admin API client (`Result<T, ApiError>`, router-core's types);
//! - [`context`]: the session (who, which router) and the live event stream;
//! - [`logic`]: pure functions (formatting, grouping, split rebalancing,
//!   spend series, the desktop status level), unit-tested natively;
//! - [`platform`]: browser and desktop glue (storage, Tauri bridge, downloads);
//! - one folder per page: [`signin`], [`overview`], [`features`], [`spend`],
//!   [`history`], [`audit`], [`failures`] (failed requests with their upstream
//!   detail), [`access`] (admin tokens, gateway keys); shared widgets in
//!   [`components`];
//! - [`app`]: the shell (top bar, navigation, connection banner).
//!
//! Selectors the end-to-end tests rely on are listed in `ui/README.md`.

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod components;
pub mod context;
pub mod failures;
pub mod features;
pub mod history;
pub mod logic;
pub mod overview;
pub mod platform;
pub mod signin;
pub mod spend;

/// The id of the element that exists only once the wasm has mounted.
/// The end-to-end tests wait for it; keep it stable.
pub const READY_ID: &str = "app-ready";

/// Entry point, run by the generated JS as soon as the module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    // `index.html` shows a static "starting" notice until the wasm runs; drop it.
    if let Some(boot) = leptos::prelude::document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(app::App);
}
