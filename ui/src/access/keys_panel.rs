use leptos::prelude::*;
use router_core::admin::{CreateKeyRequest, GatewayKeyInfo};

use super::new_secret::NewSecret;
use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::refetch;
use crate::context::session::use_session;
use crate::logic::access::{EXPIRY_CHOICES, Standing, expires_at, expiry};
use crate::platform;

/// Gateway keys: the list, the create form (a team of the active configuration),
/// revoke (confirmed inline).
#[component]
pub fn KeysPanel() -> impl IntoView {
    let session = use_session();
    let keys = RwSignal::new(None::<Result<Vec<GatewayKeyInfo>, ApiError>>);
    let teams = RwSignal::new(Vec::<String>::new());
    let reload = RwSignal::new(0u32);
    let team = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let rpm = RwSignal::new(String::new());
    let lifetime = RwSignal::new(EXPIRY_CHOICES[0].0.to_owned());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let created = RwSignal::new(None::<String>);
    let confirm = RwSignal::new(None::<String>);

    refetch(
        reload,
        |api| async move { api.keys().await },
        move |r| keys.set(Some(r)),
    );
    refetch(
        reload,
        |api| async move { api.config().await },
        move |r| {
            if let Ok(v) = r {
                let names: Vec<String> = v.config.teams.iter().map(|t| t.name.clone()).collect();
                if team.get_untracked().is_empty()
                    && let Some(first) = names.first()
                {
                    team.set(first.clone());
                }
                teams.set(names);
            }
        },
    );

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(api) = session.api_now() else {
            return;
        };
        let limit = rpm.get_untracked().trim().to_owned();
        let requests_per_minute = if limit.is_empty() {
            None
        } else {
            match limit.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    error.set(Some(ApiError::Decode(
                        "the request limit is a positive whole number per minute (or empty: none)"
                            .into(),
                    )));
                    return;
                }
            }
        };
        let request = CreateKeyRequest {
            team: team.get_untracked(),
            name: name.get_untracked().trim().to_owned(),
            requests_per_minute,
            expires_at_ms: expires_at(&lifetime.get_untracked(), platform::now_ms() as i64),
        };
        busy.set(true);
        error.set(None);
        created.set(None);
        leptos::task::spawn_local(async move {
            match api.create_key(&request).await {
                Ok(c) => {
                    created.set(Some(c.key));
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
            if let Err(e) = api.revoke_key(&id).await {
                session.report(&e);
                error.set(Some(e));
            }
            reload.update(|n| *n += 1);
        });
    };

    let row = move |k: GatewayKeyInfo| {
        let now = platform::now_ms() as i64;
        let standing = Standing::of(k.revoked, k.expires_at_ms, now);
        let id = k.id.clone();
        let confirming = {
            let id = id.clone();
            move || confirm.get().as_deref() == Some(id.as_str())
        };
        let confirming_label = confirming.clone();
        view! {
            <tr data-key-id=k.id.clone() data-standing=standing.as_str()>
                <td>{k.name.clone()}</td>
                <td>{k.team.clone()}</td>
                <td class="num">{k.requests_per_minute.map(|n| format!("{n}/min")).unwrap_or_else(|| "—".into())}</td>
                <td class="nowrap">{platform::local_datetime(k.created_at_ms)}</td>
                <td class="nowrap">{expiry(k.expires_at_ms, now)}</td>
                <td><span class=format!("standing standing-{}", standing.as_str())>{standing.as_str()}</span></td>
                <td>
                    {(standing == Standing::Active)
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="small danger key-revoke"
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
        <section class="panel" id="keys-panel">
            <div class="panel-head">
                <h3>"Gateway keys"</h3>
                <span class="muted">"Applications call the gateway with these; each belongs to a team."</span>
            </div>
            <form class="inline-form" on:submit=create>
                <label>
                    "Team"
                    <select id="key-team" on:change=move |ev| team.set(event_target_value(&ev))>
                        {move || {
                            teams
                                .get()
                                .into_iter()
                                .map(|t| {
                                    let (value, label) = (t.clone(), t.clone());
                                    view! {
                                        <option value=t selected=move || team.get() == value>
                                            {label}
                                        </option>
                                    }
                                })
                                .collect_view()
                        }}
                    </select>
                </label>
                <label>
                    "Name"
                    <input id="key-name" type="text" placeholder="search-prod" required bind:value=name />
                </label>
                <label>
                    "Requests per minute"
                    <input id="key-rpm" type="number" min="1" placeholder="no limit" bind:value=rpm />
                </label>
                <label>
                    "Expires"
                    <select id="key-expiry" on:change=move |ev| lifetime.set(event_target_value(&ev))>
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
                <button id="key-create" type="submit" class="primary" disabled=move || busy.get() || teams.with(Vec::is_empty)>
                    "Create key"
                </button>
            </form>
            {move || {
                created
                    .get()
                    .map(|secret| {
                        view! {
                            <NewSecret
                                id="new-key-secret"
                                what="gateway key"
                                secret=secret
                                on_done=move || created.set(None)
                            />
                        }
                    })
            }}
            {move || error.get().map(|e| view! { <div id="key-error"><ErrorBox error=e /></div> })}
            {move || match keys.get() {
                None => view! { <p class="placeholder">"Loading the keys…"</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(list)) if list.is_empty() => {
                    view! { <p class="placeholder">"No keys."</p> }.into_any()
                }
                Some(Ok(list)) => {
                    view! {
                        <table class="grid" id="keys-table">
                            <thead>
                                <tr>
                                    <th>"name"</th>
                                    <th>"team"</th>
                                    <th class="num">"limit"</th>
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
