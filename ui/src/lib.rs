//! Crossbar's operations console (Leptos, client-side rendered, wasm).
//!
//! The same bundle is served by `crossbar serve` and embedded in the desktop app
//! (`src-tauri/`), so everything here must work in both Chromium and WebKitGTK.
//!
//! For now this is the placeholder shell: it proves the wasm toolchain end to end (the
//! page only says "Console ready" once this code has mounted, which the end-to-end tests
//! assert) and that `router-core`'s shared types compile to wasm. The live dashboard
//! arrives with the server's admin API.

use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

/// The id of the element that exists only once the wasm has mounted.
/// The end-to-end tests wait for it; keep it stable.
pub const READY_ID: &str = "app-ready";

/// Entry point, run by the generated JS as soon as the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    // `index.html` shows a static "starting" notice until the wasm runs; drop it.
    if let Some(boot) = document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(App);
}

/// What the console will show, each arriving with its own issue.
const UPCOMING: [(&str, &str); 4] = [
    (
        "Live traffic",
        "Latency (TTFT, p50/p90/p99) and errors by class, per cloud, endpoint and feature.",
    ),
    (
        "Breakers",
        "Endpoint health at a glance; force a breaker open or closed during an incident.",
    ),
    (
        "Experiments",
        "A/B splits and bindings per feature, with one-click rollback.",
    ),
    (
        "Spend",
        "Cost per feature, team and cloud; provisioned versus on-demand use.",
    ),
];

#[component]
fn App() -> impl IntoView {
    view! {
        <header class="topbar">
            <div class="brand">
                <span class="logo" aria-hidden="true">"X"</span>
                <span class="brand-name">"Crossbar"</span>
            </div>
            <span class="version">"router-core v" {router_core::VERSION}</span>
        </header>
        <main class="content">
            <section class="hero">
                <h1>"Crossbar console"</h1>
                <p class="lede">
                    "Multi-cloud LLM routing: one OpenAI-compatible API in front of Bedrock, "
                    "Vertex AI and OpenAI-compatible endpoints."
                </p>
                <p class="notice">
                    "This is a placeholder: the live dashboard arrives with the server's admin API."
                </p>
                <p id=READY_ID class="ready" data-ready="true">
                    <span class="dot" aria-hidden="true"></span>
                    "Console ready · WebAssembly · router-core v"
                    {router_core::VERSION}
                </p>
            </section>
            <section class="cards">
                {UPCOMING
                    .into_iter()
                    .map(|(title, text)| {
                        view! {
                            <article class="card">
                                <h2>{title}</h2>
                                <p>{text}</p>
                                <span class="soon">"coming soon"</span>
                            </article>
                        }
                    })
                    .collect_view()}
            </section>
        </main>
    }
}
