use leptos::prelude::*;
use router_core::admin::Action;

use super::keys_panel::KeysPanel;
use super::tokens_panel::TokensPanel;
use crate::context::session::use_session;

#[component]
pub fn AccessPage() -> impl IntoView {
    let session = use_session();
    let tokens = move || session.may(Action::ManageTokens);
    let keys = move || session.may(Action::ManageKeys);
    view! {
        <div class="page access">
            <header class="page-head">
                <h2>"Access"</h2>
                <span class="muted">
                    "Who may call this router: admin tokens (the console and the admin API) and gateway keys (applications)."
                </span>
            </header>
            <Show when=tokens>
                <TokensPanel />
            </Show>
            <Show when=keys>
                <KeysPanel />
            </Show>
            <Show when=move || !tokens() && !keys()>
                <section class="panel">
                    <p class="placeholder" id="access-forbidden">
                        "Your role may not manage tokens or keys: ask an admin."
                    </p>
                </section>
            </Show>
        </div>
    }
}
