use leptos::prelude::*;
use router_core::admin::FailedRequest;

use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::refetch;
use crate::platform;

#[component]
pub fn FailuresPage() -> impl IntoView {
    let failed = RwSignal::new(None::<Result<Vec<FailedRequest>, ApiError>>);
    let reload = RwSignal::new(0u32);
    let request_id = RwSignal::new(String::new());

    refetch(
        reload,
        move |api| {
            let id = request_id.get_untracked().trim().to_owned();
            async move {
                api.failed_requests(100, (!id.is_empty()).then_some(id.as_str()))
                    .await
            }
        },
        move |r| failed.set(Some(r)),
    );

    view! {
        <div class="page failures" id="failures-page">
            <header class="page-head">
                <h2>"Failed requests"</h2>
                <form
                    class="inline-form"
                    on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        reload.update(|n| *n += 1);
                    }
                >
                    <input
                        id="failures-request-id"
                        type="search"
                        class="small"
                        placeholder="x-request-id (empty: the newest 100)"
                        bind:value=request_id
                    />
                    <button type="submit" class="small ghost">"↻ look up"</button>
                </form>
                <span class="muted">
                    "What each endpoint said, credentials redacted. Clients got only the class and a safe message."
                </span>
            </header>
            <section class="panel">
                {move || match failed.get() {
                    None => view! { <p class="placeholder">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                    Some(Ok(list)) if list.is_empty() => {
                        view! { <p class="placeholder" id="failures-none">"No failed requests."</p> }
                            .into_any()
                    }
                    Some(Ok(list)) => {
                        view! {
                            <table class="grid" id="failures-table">
                                <thead>
                                    <tr>
                                        <th>"when"</th>
                                        <th>"request"</th>
                                        <th>"feature"</th>
                                        <th>"team"</th>
                                        <th>"client got"</th>
                                        <th>"attempts"</th>
                                    </tr>
                                </thead>
                                <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                            </table>
                        }
                            .into_any()
                    }
                }}
            </section>
        </div>
    }
}

fn row(r: FailedRequest) -> impl IntoView {
    view! {
        <tr data-request-id=r.request_id.clone()>
            <td class="nowrap">{platform::local_datetime(r.at_ms)}</td>
            <td><code class="small-text">{r.request_id.clone()}</code></td>
            <td>{r.feature.clone()} " " <span class="muted">{r.variant.clone()}</span></td>
            <td>{r.team.clone()}</td>
            <td class="nowrap"><code>{r.outcome.clone()}</code> " " <span class="muted">{r.status}</span></td>
            <td>
                <ol class="attempts">
                    {r.attempts
                        .into_iter()
                        .map(|a| {
                            let status = a.upstream_status.map(|s| format!(" · HTTP {s}")).unwrap_or_default();
                            view! {
                                <li data-attempt-endpoint=a.endpoint.clone()>
                                    <strong>{a.endpoint.clone()}</strong>
                                    ": "
                                    <code>{a.outcome.clone()}</code>
                                    <span class="muted">
                                        {format!(" · {:.0} ms{status}{}", a.latency_ms, if a.retry { " · retry" } else { "" })}
                                    </span>
                                    {a.detail.map(|d| view! { <div class="attempt-detail">{d}</div> })}
                                </li>
                            }
                        })
                        .collect_view()}
                </ol>
            </td>
        </tr>
    }
}
