use leptos::prelude::*;

use crate::context::session::use_session;
use crate::platform::desktop;
use crate::platform::storage::{self, Profile};

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[component]
pub fn SignIn() -> impl IntoView {
    let session = use_session();
    let desktop = session.desktop;

    let profiles = RwSignal::new(if desktop {
        storage::profiles()
    } else {
        Vec::new()
    });
    let last = storage::last_profile()
        .and_then(|n| profiles.get_untracked().into_iter().find(|p| p.name == n));
    let name = RwSignal::new(last.as_ref().map(|p| p.name.clone()).unwrap_or_default());
    let url = RwSignal::new(
        last.as_ref()
            .map(|p| p.url.clone())
            .unwrap_or_else(|| DEFAULT_URL.to_owned()),
    );
    // Tokens are not in the profiles: a remembered one comes from the OS keychain.
    let token = RwSignal::new(String::new());
    let remember = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // Fills in the token the keychain remembers for `profile`, if any.
    let fill_remembered = move |profile: String| {
        leptos::task::spawn_local(async move {
            if let Ok(Some(saved)) = desktop::keychain::get(&profile).await
                && name.get_untracked() == profile
            {
                token.set(saved);
                remember.set(true);
            }
        });
    };
    if desktop && let Some(p) = &last {
        fill_remembered(p.name.clone());
    }

    let choose = move |chosen: String| {
        token.set(String::new());
        remember.set(false);
        if let Some(p) =
            profiles.with_untracked(|all| all.iter().find(|p| p.name == chosen).cloned())
        {
            name.set(p.name.clone());
            url.set(p.url);
            fill_remembered(p.name);
        } else {
            name.set(String::new());
            url.set(DEFAULT_URL.to_owned());
        }
        error.set(None);
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let token_value = token.get_untracked().trim().to_owned();
        if token_value.is_empty() {
            error.set(Some("Enter an admin token.".into()));
            return;
        }
        let url_value = url.get_untracked().trim().to_owned();
        if desktop && !(url_value.starts_with("http://") || url_value.starts_with("https://")) {
            error.set(Some(
                "The router URL must start with http:// or https://.".into(),
            ));
            return;
        }
        let profile = desktop.then(|| {
            let n = name.get_untracked().trim().to_owned();
            if n.is_empty() { url_value.clone() } else { n }
        });
        let remember_value = remember.get_untracked();
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(e) = session
                .sign_in(&url_value, &token_value, profile, remember_value)
                .await
            {
                let message = if e.is_unauthorized() {
                    format!(
                        "That token was not accepted: the router answered 401 unauthorized. {e}"
                    )
                } else {
                    e.to_string()
                };
                error.set(Some(message));
            }
            busy.set(false);
        });
    };

    let delete = move |_| {
        let n = name.get_untracked();
        storage::delete_profile(&n);
        profiles.set(storage::profiles());
        choose(String::new());
        leptos::task::spawn_local(async move {
            let _ = desktop::keychain::delete(&n).await;
        });
    };

    view! {
        <section class="signin panel">
            <h2>"Sign in"</h2>
            <p class="muted">
                {if desktop {
                    "Connect to a Crossbar router with an admin token. The token decides your role: viewer, operator, experimenter or admin."
                } else {
                    "Sign in to this router's console with an admin token. The token decides your role: viewer, operator, experimenter or admin."
                }}
            </p>
            {move || session.notice.get().map(|n| view! { <p class="notice-box">{n}</p> })}
            <form on:submit=submit class="form">
                {desktop
                    .then(|| {
                        view! {
                            <label>
                                "Saved connection"
                                <select
                                    id="signin-profile-select"
                                    on:change=move |ev| choose(event_target_value(&ev))
                                >
                                    <option value="" selected=move || name.get().is_empty()>
                                        "New connection…"
                                    </option>
                                    {move || {
                                        profiles
                                            .get()
                                            .into_iter()
                                            .map(|p: Profile| {
                                                let n = p.name.clone();
                                                let selected = move || name.get() == n;
                                                view! {
                                                    <option value=p.name.clone() selected=selected>
                                                        {format!("{} — {}", p.name, p.url)}
                                                    </option>
                                                }
                                            })
                                            .collect_view()
                                    }}
                                </select>
                            </label>
                            <label>
                                "Connection name"
                                <input
                                    id="signin-profile"
                                    type="text"
                                    placeholder="prod-eu"
                                    bind:value=name
                                />
                            </label>
                            <label>
                                "Router URL"
                                <input
                                    id="signin-url"
                                    type="url"
                                    placeholder=DEFAULT_URL
                                    required
                                    bind:value=url
                                />
                            </label>
                        }
                    })}
                <label>
                    "Admin token"
                    <input
                        id="signin-token"
                        type="password"
                        autocomplete="current-password"
                        placeholder="cba-…"
                        bind:value=token
                    />
                </label>
                <label class="inline">
                    <input id="signin-remember" type="checkbox" bind:checked=remember />
                    {if desktop { "Remember the token in the OS keychain" } else { "Remember me on this browser" }}
                </label>
                <p class="hint">
                    {if desktop {
                        "Connections (name and URL) are saved in this app. A remembered token is kept in the OS keychain, never in the app's storage; otherwise it is forgotten when the window closes. Delete a connection to forget both."
                    } else {
                        "Unticked, the token is kept in this tab only and forgotten when the tab closes. Ticked, this browser keeps it until you sign out: only on a device that is yours."
                    }}
                </p>
                <div class="actions">
                    <button
                        id="signin-submit"
                        type="submit"
                        class="primary"
                        disabled=move || busy.get() || session.restoring.get()
                    >
                        {move || {
                            if busy.get() || session.restoring.get() { "Signing in…" } else { "Sign in" }
                        }}
                    </button>
                    {desktop
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="ghost"
                                    disabled=move || {
                                        let n = name.get();
                                        !profiles.with(|all| all.iter().any(|p| p.name == n))
                                    }
                                    on:click=delete
                                >
                                    "Delete saved connection"
                                </button>
                            }
                        })}
                </div>
                {move || {
                    error.get().map(|e| view! { <p id="signin-error" class="error" role="alert">{e}</p> })
                }}
            </form>
        </section>
    }
}
