use leptos::prelude::*;
use router_core::admin::{Action, ConfigVersionSummary, PublishResult, RollbackRequest};

use super::version_detail::VersionDetail;
use crate::api::ApiError;
use crate::components::{ChangeList, ErrorBox};
use crate::context::refetch;
use crate::context::session::use_session;
use crate::platform;

#[component]
pub fn HistoryPage() -> impl IntoView {
    let session = use_session();
    let versions = RwSignal::new(None::<Result<Vec<ConfigVersionSummary>, ApiError>>);
    let reload = RwSignal::new(0u32);
    let selected = RwSignal::new(None::<i64>);
    let confirm = RwSignal::new(None::<i64>);
    let message = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let result = RwSignal::new(None::<Result<PublishResult, ApiError>>);

    refetch(
        reload,
        |api| async move { api.versions(50).await },
        move |r| versions.set(Some(r)),
    );
    let active_version = Memo::new(move |_| {
        versions.with(|v| match v {
            Some(Ok(list)) => list.iter().find(|v| v.active).map(|v| v.version),
            _ => None,
        })
    });
    let may_rollback = move || session.may(Action::Rollback);

    let roll_back = move |to: i64| {
        // The active version is what the rollback is based on: until the list has
        // loaded there is none, and nothing to roll back from.
        let (Some(api), Some(base_version)) = (session.api_now(), active_version.get_untracked())
        else {
            return;
        };
        let text = message.get_untracked().trim().to_owned();
        let request = RollbackRequest {
            to_version: to,
            base_version,
            message: if text.is_empty() {
                format!("Roll back to version {to}")
            } else {
                text
            },
        };
        busy.set(true);
        result.set(None);
        leptos::task::spawn_local(async move {
            let r = api.rollback(&request).await;
            match &r {
                Ok(_) => {
                    confirm.set(None);
                    message.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) => session.report(e),
            }
            result.set(Some(r));
            busy.set(false);
        });
    };

    let row = move |v: ConfigVersionSummary| {
        let n = v.version;
        let origin = match (v.restored_from, v.parent) {
            (Some(r), _) => format!("restores v{r}"),
            (None, Some(p)) => format!("from v{p}"),
            (None, None) => String::new(),
        };
        view! {
            <tr data-version=n class:active-row=v.active class:selected=move || selected.get() == Some(n)>
                <td class="num"><strong>{format!("v{n}")}</strong></td>
                <td class="nowrap">{platform::local_datetime(v.created_at_ms)}</td>
                <td>{v.author.clone()}</td>
                <td class="message">{v.message.clone()}</td>
                <td class="muted nowrap">{origin}</td>
                <td>
                    <div class="row-actions">
                    {v.active.then(|| view! { <span class="tag ok">"active"</span> })}
                    <button
                        type="button"
                        class="small ghost"
                        id=format!("view-version-{n}")
                        on:click=move |_| selected.set(if selected.get_untracked() == Some(n) { None } else { Some(n) })
                    >
                        {move || if selected.get() == Some(n) { "Hide" } else { "View" }}
                    </button>
                    {(!v.active && may_rollback())
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="small"
                                    id=format!("rollback-button-{n}")
                                    disabled=move || busy.get()
                                    on:click=move |_| {
                                        result.set(None);
                                        confirm.set(Some(n));
                                    }
                                >
                                    "Roll back to this"
                                </button>
                            }
                        })}
                    </div>
                </td>
            </tr>
            {move || {
                (confirm.get() == Some(n))
                    .then(|| {
                        view! {
                            <tr class="confirm-row">
                                <td colspan="6">
                                    <form
                                        class="confirm"
                                        on:submit=move |ev| {
                                            ev.prevent_default();
                                            roll_back(n);
                                        }
                                    >
                                        <span>
                                            {format!(
                                                "Roll back to version {n}? Its configuration is published again as a new version; nothing is deleted.",
                                            )}
                                        </span>
                                        <input
                                            id="rollback-message"
                                            type="text"
                                            placeholder=format!("Roll back to version {n}")
                                            bind:value=message
                                        />
                                        <button id="rollback-confirm" type="submit" class="small danger" disabled=move || busy.get()>
                                            {move || if busy.get() { "Rolling back…" } else { "Confirm roll back" }}
                                        </button>
                                        <button type="button" class="small ghost" on:click=move |_| confirm.set(None)>
                                            "Cancel"
                                        </button>
                                    </form>
                                </td>
                            </tr>
                        }
                    })
            }}
        }
    };

    view! {
        <div class="page history">
            <header class="page-head">
                <h2>"Version history"</h2>
                <span class="muted">
                    {move || active_version.get().map(|v| format!("active: version {v}"))}
                </span>
            </header>
            <div id="rollback-result" aria-live="polite">
                {move || {
                    result
                        .get()
                        .map(|r| match r {
                            Ok(r) => view! {
                                <div class="success-box">
                                    <p>{format!("Rolled back: published as version {}.", r.version)}</p>
                                    <ChangeList changes=r.changes />
                                </div>
                            }
                                .into_any(),
                            Err(e) => view! { <ErrorBox error=e /> }.into_any(),
                        })
                }}
            </div>
            <div class="history-grid" class:with-detail=move || selected.get().is_some()>
                <section class="panel">
                    {move || match versions.get() {
                        None => view! { <p class="placeholder">"Loading versions…"</p> }.into_any(),
                        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                        Some(Ok(list)) => view! {
                            <table class="grid" id="versions">
                                <thead>
                                    <tr>
                                        <th class="num">"version"</th>
                                        <th>"published"</th>
                                        <th>"author"</th>
                                        <th>"message"</th>
                                        <th></th>
                                        <th></th>
                                    </tr>
                                </thead>
                                <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                            </table>
                        }
                            .into_any(),
                    }}
                </section>
                {move || {
                    selected
                        .get()
                        .map(|v| view! { <VersionDetail version=v active=active_version.get() /> })
                }}
            </div>
        </div>
    }
}
