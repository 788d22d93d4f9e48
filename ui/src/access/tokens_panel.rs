use leptos::prelude::*;
use router_core::admin::{AdminTokenInfo, CreateTokenRequest, Role};

use super::new_secret::NewSecret;
use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::refetch;
use crate::context::session::use_session;
use crate::logic::access::{EXPIRY_CHOICES, Standing, expires_at, expiry};
use crate::platform;

/// Admin tokens: the list, the create form, revoke (confirmed inline).
#[component]
pub fn TokensPanel() -> impl IntoView {
    let session = use_session();
    let tokens = RwSignal::new(None::<Result<Vec<AdminTokenInfo>, ApiError>>);
    let reload = RwSignal::new(0u32);
    let name = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_owned());
    let lifetime = RwSignal::new(EXPIRY_CHOICES[0].0.to_owned());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let created = RwSignal::new(None::<String>);
    let confirm = RwSignal::new(None::<String>);

    refetch(
        reload,
        |api| async move { api.tokens().await },
        move |r| tokens.set(Some(r)),
    );

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(api) = session.api_now() else {
            return;
        };
        let Some(role) = Role::parse(&role.get_untracked()) else {
            return;
        };
        let request = CreateTokenRequest {
            name: name.get_untracked().trim().to_owned(),
            role,
            expires_at_ms: expires_at(&lifetime.get_untracked(), platform::now_ms() as i64),
        };
        busy.set(true);
        error.set(None);
        created.set(None);
        leptos::task::spawn_local(async move {
            match api.create_token(&request).await {
                Ok(c) => {
                    created.set(Some(c.token));
                    name.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) => {
                    session.report(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    let revoke = move |id: String| {
        if confirm.get_untracked().as_deref() != Some(id.as_str()) {
            confirm.set(Some(id));
            return;
        }
        let Some(api) = session.api_now() else {
            return;
        };
        confirm.set(None);
        leptos::task::spawn_local(async move {
            if let Err(e) = api.revoke_token(&id).await {
                session.report(&e);
                error.set(Some(e));
            }
            reload.update(|n| *n += 1);
        });
    };

    let row = move |t: AdminTokenInfo| {
        let now = platform::now_ms() as i64;
        let standing = Standing::of(t.revoked, t.expires_at_ms, now);
        let id = t.id.clone();
        let confirming = {
            let id = id.clone();
            move || confirm.get().as_deref() == Some(id.as_str())
        };
        let confirming_label = confirming.clone();
        view! {
            <tr data-token-id=t.id.clone() data-standing=standing.as_str()>
                <td>{t.name.clone()}</td>
                <td><span class="tag">{t.role.as_str()}</span></td>
                <td class="nowrap">{platform::local_datetime(t.created_at_ms)}</td>
                <td class="nowrap">{expiry(t.expires_at_ms, now)}</td>
                <td><span class=format!("standing standing-{}", standing.as_str())>{standing.as_str()}</span></td>
                <td>
                    {(standing == Standing::Active)
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="small danger token-revoke"
                                    class:selected=confirming
                                    on:click=move |_| revoke(id.clone())
                                >
                                    {move || if confirming_label() { "Confirm revoke" } else { "Revoke" }}
                                </button>
                            }
                        })}
                </td>
            </tr>
        }
    };

    view! {
        <section class="panel" id="tokens-panel">
            <div class="panel-head">
                <h3>"Admin tokens"</h3>
                <span class="muted">"A revoked token is refused at once; an expired one from its expiry on."</span>
            </div>
            <form class="inline-form" on:submit=create>
                <label>
                    "Holder"
                    <input id="token-name" type="text" placeholder="alice, ci-bot…" required bind:value=name />
                </label>
                <label>
                    "Role"
                    <select id="token-role" on:change=move |ev| role.set(event_target_value(&ev))>
                        {Role::ALL
                            .into_iter()
                            .map(|r| {
                                view! {
                                    <option value=r.as_str() selected=move || role.get() == r.as_str()>
                                        {r.as_str()}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label>
                    "Expires"
                    <select id="token-expiry" on:change=move |ev| lifetime.set(event_target_value(&ev))>
                        {EXPIRY_CHOICES
                            .into_iter()
                            .map(|(label, _)| {
                                view! {
                                    <option value=label selected=move || lifetime.get() == label>
                                        {if label == "never" { "never".to_owned() } else { format!("in {label}") }}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button id="token-create" type="submit" class="primary" disabled=move || busy.get()>
                    "Create token"
                </button>
            </form>
            {move || {
                created
                    .get()
                    .map(|secret| {
                        view! {
                            <NewSecret
                                id="new-token-secret"
                                what="admin token"
                                secret=secret
                                on_done=move || created.set(None)
                            />
                        }
                    })
            }}
            {move || error.get().map(|e| view! { <div id="token-error"><ErrorBox error=e /></div> })}
            {move || match tokens.get() {
                None => view! { <p class="placeholder">"Loading the tokens…"</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(list)) if list.is_empty() => {
                    view! { <p class="placeholder">"No tokens."</p> }.into_any()
                }
                Some(Ok(list)) => {
                    view! {
                        <table class="grid" id="tokens-table">
                            <thead>
                                <tr>
                                    <th>"holder"</th>
                                    <th>"role"</th>
                                    <th>"created"</th>
                                    <th>"expires"</th>
                                    <th>"state"</th>
                                    <th></th>
                                </tr>
                            </thead>
                            <tbody>{list.into_iter().rev().map(row).collect_view()}</tbody>
                        </table>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}
