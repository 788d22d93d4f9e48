use leptos::prelude::*;

use super::{EndpointCard, Timeline};
use crate::context::live::use_live;
use crate::logic::format;
use crate::logic::group::{self, CloudGroup, RegionGroup, StateCounts};

#[component]
pub fn OverviewPage() -> impl IntoView {
    let live = use_live();
    let groups = Memo::new(move |_| {
        live.endpoints
            .with(|e| e.as_ref().map(|e| group::by_cloud(e)))
    });

    view! {
        <div class="page overview">
            <Summary />
            <div class="overview-grid">
                <div class="clouds">
                    {move || match groups.get() {
                        None => {
                            view! { <p class="placeholder">"Loading the endpoints' health…"</p> }
                                .into_any()
                        }
                        Some(g) if g.is_empty() => {
                            view! {
                                <p class="placeholder">"No endpoints are configured on this router."</p>
                            }
                                .into_any()
                        }
                        Some(_) => {
                            view! {
                                <For
                                    each=move || groups.get().unwrap_or_default()
                                    key=|c: &CloudGroup| c.clone()
                                    children=move |c: CloudGroup| view! { <Cloud group=c /> }
                                />
                            }
                                .into_any()
                        }
                    }}
                </div>
                <aside class="timeline-col">
                    <Timeline />
                </aside>
            </div>
        </div>
    }
}

/// Counts by state, total traffic, config version, ledger health.
#[component]
fn Summary() -> impl IntoView {
    let live = use_live();
    let counts = Memo::new(move |_| {
        live.endpoints
            .with(|e| StateCounts::of(e.iter().flatten().map(|e| &e.breaker.state)))
    });
    let rps = Memo::new(move |_| {
        live.endpoints.with(|e| {
            e.iter()
                .flatten()
                .map(|e| {
                    if e.stats.window_s > 0.0 {
                        e.stats.requests as f64 / e.stats.window_s
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
    });
    view! {
        <section class="summary-strip">
            <div class="stat">
                <span class="stat-value">{move || counts.get().total()}</span>
                <span class="stat-label">"endpoints"</span>
            </div>
            <div class="stat ok">
                <span class="stat-value">{move || counts.get().closed}</span>
                <span class="stat-label">"closed"</span>
            </div>
            <div class="stat warn" class:dim=move || counts.get().ramp == 0>
                <span class="stat-value">{move || counts.get().ramp}</span>
                <span class="stat-label">"recovering"</span>
            </div>
            <div class="stat bad" class:dim=move || counts.get().open == 0>
                <span class="stat-value">{move || counts.get().open}</span>
                <span class="stat-label">"open"</span>
            </div>
            <div class="stat">
                <span class="stat-value">{move || format::rate(rps.get())}</span>
                <span class="stat-label">"requests (endpoints)"</span>
            </div>
            <div class="stat">
                <span class="stat-value">
                    {move || live.config_version.get().map(|v| format!("v{v}")).unwrap_or_else(|| format::NONE.into())}
                </span>
                <span class="stat-label">"config"</span>
            </div>
            <div
                class="stat"
                class:bad=move || live.ledger.get().is_some_and(|l| l.dropped > 0)
                title="Usage records: queued for the database / dropped (must stay 0)"
            >
                <span class="stat-value">
                    {move || {
                        live.ledger
                            .get()
                            .map(|l| format!("{} / {}", format::int(l.queued), format::int(l.dropped)))
                            .unwrap_or_else(|| format::NONE.into())
                    }}
                </span>
                <span class="stat-label">"ledger queued / dropped"</span>
            </div>
        </section>
    }
}

#[component]
fn Cloud(group: CloudGroup) -> impl IntoView {
    let live = use_live();
    let names: Vec<String> = group
        .regions
        .iter()
        .flat_map(|r| r.endpoints.iter().cloned())
        .collect();
    let counts = move || {
        live.endpoints.with(|e| {
            StateCounts::of(
                e.iter()
                    .flatten()
                    .filter(|e| names.contains(&e.name))
                    .map(|e| &e.breaker.state),
            )
        })
    };
    view! {
        <section class="cloud" data-cloud=group.cloud.clone()>
            <h2 class="cloud-title">
                {group::cloud_label(&group.cloud)}
                <span class="cloud-counts">
                    {move || {
                        let c = counts();
                        let mut parts = vec![format!("{} closed", c.closed)];
                        if c.ramp > 0 {
                            parts.push(format!("{} recovering", c.ramp));
                        }
                        if c.open > 0 {
                            parts.push(format!("{} open", c.open));
                        }
                        parts.join(" · ")
                    }}
                </span>
            </h2>
            <div class="regions">
            {group
                .regions
                .into_iter()
                .map(|r: RegionGroup| {
                    view! {
                        <div class="region">
                            <h3 class="region-title">
                                {r.region.clone()}
                                <span class="geo">{r.geography.clone()}</span>
                            </h3>
                            <div class="cards">
                                {r
                                    .endpoints
                                    .into_iter()
                                    .map(|name| view! { <EndpointCard name=name /> })
                                    .collect_view()}
                            </div>
                        </div>
                    }
                })
                .collect_view()}
            </div>
        </section>
    }
}
