use leptos::prelude::*;
use router_core::admin::Override;
use router_core::admin::OverrideRequest;

use crate::api::ApiError;
use crate::context::live::use_live;
use crate::context::session::use_session;

fn mode_label(mode: Override) -> &'static str {
    match mode {
        Override::Auto => "auto",
        Override::ForceOpen => "force open",
        Override::ForceClosed => "force closed",
    }
}

fn mode_key(mode: Override) -> &'static str {
    match mode {
        Override::Auto => "auto",
        Override::ForceOpen => "force_open",
        Override::ForceClosed => "force_closed",
    }
}

/// Force open / force closed / auto, each asking for a reason (it goes to the audit
/// log and the breaker's reason). Shown to roles with the `override` permission.
#[component]
pub fn OverrideControl(name: String, #[prop(into)] current: Signal<Override>) -> impl IntoView {
    let session = use_session();
    let live = use_live();
    let pending = RwSignal::new(None::<Override>);
    let reason = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let name = StoredValue::new(name);

    let apply = move || {
        let Some(mode) = pending.get_untracked() else {
            return;
        };
        let text = reason.get_untracked().trim().to_owned();
        if text.is_empty() {
            return;
        }
        let Some(api) = session.api_now() else {
            return;
        };
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let request = OverrideRequest { mode, reason: text };
            match api.set_override(&name.get_value(), &request).await {
                Ok(health) => {
                    live.put_endpoint(health);
                    pending.set(None);
                    reason.set(String::new());
                }
                Err(e) => {
                    session.report(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    view! {
        <div class="override">
            <div class="override-buttons">
                {[Override::ForceOpen, Override::ForceClosed, Override::Auto]
                    .into_iter()
                    .map(|mode| {
                        view! {
                            <button
                                type="button"
                                class="small"
                                class:danger=mode == Override::ForceOpen
                                data-override=mode_key(mode)
                                disabled=move || current.get() == mode || busy.get()
                                class:selected=move || pending.get() == Some(mode)
                                on:click=move |_| {
                                    error.set(None);
                                    pending.set(if pending.get_untracked() == Some(mode) { None } else { Some(mode) });
                                }
                            >
                                {mode_label(mode)}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            {move || {
                pending
                    .get()
                    .map(|mode| {
                        view! {
                            <form
                                class="override-form"
                                on:submit=move |ev| {
                                    ev.prevent_default();
                                    apply();
                                }
                            >
                                <input
                                    class="override-reason"
                                    type="text"
                                    required
                                    placeholder=format!("Reason to {} {}", mode_label(mode), name.get_value())
                                    bind:value=reason
                                />
                                <button
                                    type="submit"
                                    class="small primary override-apply"
                                    disabled=move || busy.get() || reason.get().trim().is_empty()
                                >
                                    {move || if busy.get() { "Applying…" } else { "Apply" }}
                                </button>
                                <button type="button" class="small ghost" on:click=move |_| pending.set(None)>
                                    "Cancel"
                                </button>
                            </form>
                        }
                    })
            }}
            {move || error.get().map(|e| view! { <p class="error small-text">{e.to_string()}</p> })}
        </div>
    }
}
