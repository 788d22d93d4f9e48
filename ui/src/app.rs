//! The shell: top bar (navigation, connection status, role), the connection banner,
//! the page for the current view, and the status line with the ready marker.

use leptos::prelude::*;
use router_core::admin::Action;

use crate::READY_ID;
use crate::access::AccessPage;
use crate::api::Api;
use crate::audit::AuditPage;
use crate::context::live::{Link, provide_live, use_live};
use crate::context::session::{provide_session, use_session};
use crate::failures::FailuresPage;
use crate::features::FeaturePage;
use crate::history::HistoryPage;
use crate::logic::format;
use crate::logic::view::View;
use crate::overview::OverviewPage;
use crate::signin::SignIn;
use crate::spend::SpendPage;

#[component]
pub fn App() -> impl IntoView {
    let session = provide_session();
    // Rebuilt only when the connection itself changes (sign in, sign out, switch).
    let api = Memo::new(move |_| session.api());
    view! {
        {move || match api.get() {
            Some(api) => view! { <Console api=api /> }.into_any(),
            None => {
                view! {
                    <header class="topbar">
                        <Brand />
                    </header>
                    <main class="content narrow">
                        <SignIn />
                    </main>
                }
                    .into_any()
            }
        }}
        <footer class="statusline">
            <p id=READY_ID class="ready" data-ready="true">
                <span class="dot" aria-hidden="true"></span>
                "Console ready · WebAssembly · router-core v"
                {router_core::VERSION}
            </p>
            <span class="muted">
                {move || {
                    session
                        .api()
                        .map(|a| {
                            if a.base().is_empty() {
                                "this router".to_owned()
                            } else {
                                a.base().to_owned()
                            }
                        })
                }}
            </span>
        </footer>
    }
}

#[component]
fn Brand() -> impl IntoView {
    view! {
        <div class="brand">
            <span class="logo" aria-hidden="true">"X"</span>
            <h1 class="brand-name">"Crossbar console"</h1>
        </div>
    }
}

fn current_view() -> View {
    View::from_hash(&location_hash().map(|h| format!("#{h}")).unwrap_or_default())
}

/// The signed-in console: owns the live stream for as long as it is shown.
#[component]
fn Console(api: Api) -> impl IntoView {
    let session = use_session();
    let live = provide_live(api, session);
    let view = RwSignal::new(current_view());
    let listener = window_event_listener(leptos::ev::hashchange, move |_| view.set(current_view()));
    on_cleanup(move || listener.remove());

    let section = Memo::new(move |_| view.with(|v| v.section()));
    let feature = Memo::new(move |_| match view.get() {
        View::Features(name) => name,
        _ => None,
    });
    let who = Memo::new(move |_| session.conn.with(|c| c.as_ref().map(|c| c.who.clone())));

    let nav =
        move |id: &'static str, key: &'static str, href: &'static str, label: &'static str| {
            view! {
                <a id=id href=href class:active=move || section.get() == key>
                    {label}
                </a>
            }
        };

    view! {
        <header class="topbar">
            <Brand />
            <nav class="nav">
                {nav("nav-overview", "overview", "#/overview", "Overview")}
                {nav("nav-features", "features", "#/features", "Features")}
                {nav("nav-spend", "spend", "#/spend", "Spend")}
                {nav("nav-history", "history", "#/history", "History")}
                {nav("nav-failures", "failures", "#/failures", "Failures")}
                {nav("nav-audit", "audit", "#/audit", "Audit")}
                <Show when=move || {
                    session.may(Action::ManageTokens) || session.may(Action::ManageKeys)
                }>{nav("nav-access", "access", "#/access", "Access")}</Show>
            </nav>
            <div class="topbar-right">
                <span
                    id="connection-status"
                    class=move || format!("link link-{}", live.link.get().label())
                    title="The live event stream from the router"
                >
                    {move || live.link.get().label()}
                </span>
                <span class="who">{move || who.get().map(|w| w.name)}</span>
                <span id="role-badge" class="role" title=move || permissions_title(&who.get())>
                    {move || who.get().map(|w| w.role.as_str())}
                </span>
                <button id="sign-out" class="ghost small" on:click=move |_| session.sign_out(None)>
                    "Sign out"
                </button>
            </div>
        </header>
        <ConnectionBanner />
        {move || {
            session
                .warning
                .get()
                .map(|w| {
                    view! {
                        <div class="banner banner-error" role="status" id="session-warning">
                            <span>{w}</span>
                            <button class="ghost small" on:click=move |_| session.warning.set(None)>
                                "Dismiss"
                            </button>
                        </div>
                    }
                })
        }}
        <main class="content" class:stale=move || live.link.get() == Link::Reconnecting>
            {move || match section.get() {
                "features" => view! { <FeaturePage name=feature.get() /> }.into_any(),
                "spend" => view! { <SpendPage /> }.into_any(),
                "history" => view! { <HistoryPage /> }.into_any(),
                "audit" => view! { <AuditPage /> }.into_any(),
                "failures" => view! { <FailuresPage /> }.into_any(),
                "access" => view! { <AccessPage /> }.into_any(),
                _ => view! { <OverviewPage /> }.into_any(),
            }}
        </main>
    }
}

fn permissions_title(who: &Option<router_core::admin::WhoAmI>) -> String {
    let Some(who) = who else {
        return String::new();
    };
    let names: Vec<&str> = who
        .permissions
        .iter()
        .map(|a| match a {
            Action::Read => "read",
            Action::Override => "override",
            Action::Feedback => "feedback",
            Action::EditFeature => "edit features",
            Action::Rollback => "roll back",
            Action::Publish => "publish",
            Action::ManageKeys => "manage gateway keys",
            Action::ManageTokens => "manage admin tokens",
        })
        .collect();
    format!("May: {}", names.join(", "))
}

/// "Connection lost — reconnecting…" while the stream is down; load errors too.
#[component]
fn ConnectionBanner() -> impl IntoView {
    let live = use_live();
    move || {
        let link = live.link.get();
        let error = live.load_error.get();
        if link == Link::Reconnecting {
            let since =
                move || format::duration((live.now_ms.get() - live.received_ms.get()) as i64);
            Some(
                view! {
                    <div class="banner banner-lost" role="status" id="connection-banner">
                        <strong>"connection lost — reconnecting…"</strong>
                        <span>
                            " The data below is the last received, " {since} " ago; it is greyed until the router answers again."
                        </span>
                    </div>
                }
                    .into_any(),
            )
        } else {
            error.map(|e| {
                view! {
                    <div class="banner banner-error" role="status">
                        <strong>"Could not load the router's current state. "</strong>
                        <span>{e.to_string()}</span>
                    </div>
                }
                .into_any()
            })
        }
    }
}
