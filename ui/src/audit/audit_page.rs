use leptos::prelude::*;
use router_core::admin::AuditEntry;

use crate::api::ApiError;
use crate::components::{ChangeList, ErrorBox};
use crate::context::refetch;
use crate::platform;

#[component]
pub fn AuditPage() -> impl IntoView {
    let entries = RwSignal::new(None::<Result<Vec<AuditEntry>, ApiError>>);
    let reload = RwSignal::new(0u32);
    let filter = RwSignal::new(String::new());

    refetch(
        reload,
        |api| async move { api.audit(100).await },
        move |r| entries.set(Some(r)),
    );

    view! {
        <div class="page audit">
            <header class="page-head">
                <h2>"Audit log"</h2>
                <input
                    id="audit-filter"
                    type="search"
                    class="small"
                    placeholder="Filter: actor, action, target…"
                    bind:value=filter
                />
                <button type="button" class="small ghost" on:click=move |_| reload.update(|n| *n += 1)>
                    "↻ refresh"
                </button>
                <span class="muted">"last 100 entries"</span>
            </header>
            <section class="panel">
                {move || match entries.get() {
                    None => view! { <p class="placeholder">"Loading the audit log…"</p> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                    Some(Ok(list)) => {
                        let f = filter.get().to_lowercase();
                        let shown: Vec<AuditEntry> = list
                            .into_iter()
                            .filter(|e| {
                                f.is_empty()
                                    || [&e.actor, &e.role, &e.action, &e.target, &e.message]
                                        .iter()
                                        .any(|s| s.to_lowercase().contains(&f))
                            })
                            .collect();
                        if shown.is_empty() {
                            return view! { <p class="placeholder">"No entries."</p> }.into_any();
                        }
                        view! {
                            <table class="grid" id="audit-table">
                                <thead>
                                    <tr>
                                        <th>"when"</th>
                                        <th>"who"</th>
                                        <th>"action"</th>
                                        <th>"target"</th>
                                        <th class="num">"version"</th>
                                        <th>"message"</th>
                                        <th>"changes"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {shown.into_iter().map(|e| view! { <AuditRow entry=e /> }).collect_view()}
                                </tbody>
                            </table>
                        }
                            .into_any()
                    }
                }}
            </section>
        </div>
    }
}

#[component]
fn AuditRow(entry: AuditEntry) -> impl IntoView {
    let n = entry.changes.len();
    let changes = entry.changes.clone();
    view! {
        <tr data-audit-id=entry.id>
            <td class="nowrap">{platform::local_datetime(entry.at_ms)}</td>
            <td>{entry.actor.clone()} " " <span class="tag">{entry.role.clone()}</span></td>
            <td><code>{entry.action.clone()}</code></td>
            <td>{entry.target.clone()}</td>
            <td class="num">{entry.version.map(|v| format!("v{v}"))}</td>
            <td class="message">{entry.message.clone()}</td>
            <td>
                {if n == 0 {
                    view! { <span class="muted">"—"</span> }.into_any()
                } else {
                    view! {
                        <details>
                            <summary>{format!("{n} change{}", if n == 1 { "" } else { "s" })}</summary>
                            <ChangeList changes=changes />
                        </details>
                    }
                        .into_any()
                }}
            </td>
        </tr>
    }
}
