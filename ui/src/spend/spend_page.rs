use leptos::prelude::*;
use router_core::admin::{SpendGroup, SpendReport};

use super::chart;
use super::spend_table::SpendTable;
use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::live::use_live;
use crate::context::session::use_session;
use crate::logic::format;
use crate::logic::spend::{self, DAY_MS, Preset};
use crate::platform::{self, download};

fn preset_key(p: Preset) -> &'static str {
    match p {
        Preset::LastHour => "hour",
        Preset::LastDay => "day",
        Preset::LastWeek => "week",
        Preset::Custom => "custom",
    }
}

fn group_label(g: SpendGroup) -> &'static str {
    match g {
        SpendGroup::Feature => "feature",
        SpendGroup::Team => "team",
        SpendGroup::Endpoint => "endpoint",
        SpendGroup::Cloud => "cloud",
        SpendGroup::Variant => "variant",
    }
}

fn file_stem(report: &SpendReport) -> String {
    let day = |ms: i64| platform::local_datetime(ms)[..16].replace([' ', ':'], "-");
    format!(
        "crossbar-spend-by-{}-{}-to-{}",
        report.group_by.as_str(),
        day(report.from_ms),
        day(report.to_ms)
    )
}

/// Axis labels: times of day within two days, dates beyond.
fn x_label(from_ms: i64, to_ms: i64) -> impl Fn(i64) -> String {
    move |ms| {
        let full = platform::local_datetime(ms);
        if to_ms - from_ms <= 2 * DAY_MS {
            full[11..16].to_owned()
        } else {
            full[5..16].to_owned()
        }
    }
}

#[component]
pub fn SpendPage() -> impl IntoView {
    let session = use_session();
    let live = use_live();
    let preset = RwSignal::new(Preset::LastDay);
    let group = RwSignal::new(SpendGroup::Feature);
    let now = platform::now_ms() as i64;
    let range = RwSignal::new(Preset::LastDay.range(now).expect("not custom"));
    let offset = platform::tz_offset_minutes(now);
    let custom_from = RwSignal::new(format::datetime_local_input(now - DAY_MS, offset));
    let custom_to = RwSignal::new(format::datetime_local_input(now, offset));
    let custom_error = RwSignal::new(None::<String>);
    let report = RwSignal::new(None::<Result<SpendReport, ApiError>>);
    let loading = RwSignal::new(false);
    let download_error = RwSignal::new(None::<String>);

    // Load whenever the range or grouping changes (and after a reconnection).
    Effect::new(move |_| {
        let (from, to) = range.get();
        let g = group.get();
        live.epoch.track();
        let Some(api) = session.api_now() else {
            return;
        };
        loading.set(true);
        leptos::task::spawn_local(async move {
            let r = api.spend(from, to, g).await;
            if let Err(e) = &r {
                session.report(e);
            }
            // Ignore an answer for a range that is no longer asked for.
            if range.get_untracked() == (from, to) && group.get_untracked() == g {
                report.set(Some(r));
                loading.set(false);
            }
        });
    });

    let choose = move |p: Preset| {
        preset.set(p);
        if let Some(r) = p.range(platform::now_ms() as i64) {
            range.set(r);
        }
    };
    let apply_custom = move || {
        let now = platform::now_ms() as i64;
        let offset = platform::tz_offset_minutes(now);
        match (
            format::parse_datetime_local(&custom_from.get_untracked(), offset),
            format::parse_datetime_local(&custom_to.get_untracked(), offset),
        ) {
            (Some(from), Some(to)) if from < to => {
                custom_error.set(None);
                range.set((from, to));
            }
            (Some(_), Some(_)) => custom_error.set(Some("“From” must be before “to”.".into())),
            _ => custom_error.set(Some("Enter both dates.".into())),
        }
    };

    let svg = Memo::new(move |_| {
        report.with(|r| match r {
            Some(Ok(r)) => {
                let stacked = spend::stack(&r.series, r.from_ms, r.to_ms, r.bucket_ms);
                Some(chart::render(&stacked, &x_label(r.from_ms, r.to_ms)))
            }
            _ => None,
        })
    });
    let loaded = move || report.with(|r| matches!(r, Some(Ok(_))));

    let download_svg = move |_| {
        download_error.set(None);
        let (Some(Ok(svg)), Some(Ok(r))) = (svg.get_untracked(), report.get_untracked()) else {
            return;
        };
        if let Err(e) =
            download::save_text(&svg, "image/svg+xml", &format!("{}.svg", file_stem(&r)))
        {
            download_error.set(Some(e));
        }
    };
    let download_png = move |_| {
        download_error.set(None);
        let (Some(Ok(svg)), Some(Ok(r))) = (svg.get_untracked(), report.get_untracked()) else {
            return;
        };
        let result = download::save_svg_as_png(
            &svg,
            chart::WIDTH,
            chart::HEIGHT,
            2.0,
            chart::BACKGROUND,
            &format!("{}.png", file_stem(&r)),
            move |e| download_error.set(Some(e)),
        );
        if let Err(e) = result {
            download_error.set(Some(e));
        }
    };
    let download_csv = move |_| {
        download_error.set(None);
        let (Some(api), Some(Ok(r))) = (session.api_now(), report.get_untracked()) else {
            return;
        };
        leptos::task::spawn_local(async move {
            match api.spend_csv(r.from_ms, r.to_ms, r.group_by).await {
                Ok(blob) => {
                    if let Err(e) = download::save_blob(&blob, &format!("{}.csv", file_stem(&r))) {
                        download_error.set(Some(e));
                    }
                }
                Err(e) => {
                    session.report(&e);
                    download_error.set(Some(e.to_string()));
                }
            }
        });
    };

    view! {
        <div class="page spend">
            <header class="page-head">
                <h2>"Spend"</h2>
                <div class="segmented" role="group" aria-label="Range">
                    {Preset::ALL
                        .into_iter()
                        .map(|p| {
                            view! {
                                <button
                                    type="button"
                                    data-preset=preset_key(p)
                                    class:selected=move || preset.get() == p
                                    on:click=move |_| choose(p)
                                >
                                    {p.label()}
                                </button>
                            }
                        })
                        .collect_view()}
                </div>
                {move || {
                    (preset.get() == Preset::Custom)
                        .then(|| {
                            view! {
                                <form
                                    class="custom-range"
                                    on:submit=move |ev| {
                                        ev.prevent_default();
                                        apply_custom();
                                    }
                                >
                                    <label class="inline">
                                        "from"
                                        <input
                                            id="spend-from"
                                            type="datetime-local"
                                            bind:value=custom_from
                                        />
                                    </label>
                                    <label class="inline">
                                        "to"
                                        <input
                                            id="spend-to"
                                            type="datetime-local"
                                            bind:value=custom_to
                                        />
                                    </label>
                                    <button id="spend-apply" type="submit" class="small">"Apply"</button>
                                    {move || custom_error.get().map(|e| view! { <span class="error small-text">{e}</span> })}
                                </form>
                            }
                        })
                }}
                <label class="inline">
                    "group by"
                    <select
                        id="spend-group"
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            if let Some(g) = SpendGroup::ALL.into_iter().find(|g| g.as_str() == v) {
                                group.set(g);
                            }
                        }
                    >
                        {SpendGroup::ALL
                            .into_iter()
                            .map(|g| {
                                view! {
                                    <option value=g.as_str() selected=move || group.get() == g>
                                        {group_label(g)}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button type="button" class="small ghost" title="Reload" on:click=move |_| {
                    let p = preset.get_untracked();
                    if p == Preset::Custom { apply_custom() } else { choose(p) }
                }>
                    "↻ refresh"
                </button>
                <span class="muted">
                    {move || if loading.get() { "loading…".to_owned() } else {
                        let (from, to) = range.get();
                        format!("{} → {}", platform::local_datetime(from), platform::local_datetime(to))
                    }}
                </span>
            </header>
            {move || {
                report.get().map(|r| match r {
                    Err(e) => view! { <ErrorBox error=e /> }.into_any(),
                    Ok(r) => {
                        let provisioned: rust_decimal::Decimal = r.rows.iter().map(|x| x.provisioned).sum();
                        let on_demand: rust_decimal::Decimal = r.rows.iter().map(|x| x.on_demand).sum();
                        view! {
                            <section class="summary-strip">
                                <div class="stat">
                                    <span class="stat-value">{format::money(&r.total)}</span>
                                    <span class="stat-label">"total"</span>
                                </div>
                                <div class="stat">
                                    <span class="stat-value">{format::money(&on_demand)}</span>
                                    <span class="stat-label">"on-demand"</span>
                                </div>
                                <div class="stat">
                                    <span class="stat-value">{format::money(&provisioned)}</span>
                                    <span class="stat-label">"provisioned (attributed)"</span>
                                </div>
                                <div class="stat">
                                    <span class="stat-value">{format::money(&r.unattributed_provisioned)}</span>
                                    <span class="stat-label">"provisioned (unused)"</span>
                                </div>
                                <div class="stat">
                                    <span class="stat-value">{format::int(r.rows.iter().map(|x| x.requests).sum())}</span>
                                    <span class="stat-label">"requests"</span>
                                </div>
                            </section>
                        }
                            .into_any()
                    }
                })
            }}
            <section class="panel">
                <header class="panel-head">
                    <h3>"On-demand spend over time"</h3>
                    <div class="downloads">
                        <button id="download-svg" type="button" class="small" disabled=move || !loaded() on:click=download_svg>
                            "SVG"
                        </button>
                        <button id="download-png" type="button" class="small" disabled=move || !loaded() on:click=download_png>
                            "PNG"
                        </button>
                        <button id="download-csv" type="button" class="small" disabled=move || !loaded() on:click=download_csv>
                            "CSV"
                        </button>
                    </div>
                </header>
                {move || download_error.get().map(|e| view! { <p class="error small-text" id="download-error">{e}</p> })}
                {move || match svg.get() {
                    Some(Ok(svg)) => view! { <div id="spend-chart" class="chart" inner_html=svg></div> }.into_any(),
                    Some(Err(e)) => view! { <div id="spend-chart" class="chart"><p class="error">{e}</p></div> }.into_any(),
                    None => view! { <div id="spend-chart" class="chart"><p class="placeholder">"Loading…"</p></div> }.into_any(),
                }}
                <p class="hint">
                    "The chart stacks marginal on-demand cost per bucket; provisioned capacity is a fixed hourly cost, attributed in the table."
                </p>
            </section>
            <section class="panel">
                {move || {
                    report.get().and_then(Result::ok).map(|r| view! { <SpendTable report=r /> })
                }}
            </section>
        </div>
    }
}
