use leptos::prelude::*;
use router_core::admin::FeatureLive;
use router_core::config::FeatureConfig;

use crate::context::live::use_live;
use crate::logic::format;

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        format::NONE.to_owned()
    } else {
        format::fraction(part as f64 / whole as f64)
    }
}

/// How the console names a client API (`router_core::api::Dialect`).
fn dialect_label(dialect: &str) -> String {
    match dialect {
        "chat" => "OpenAI chat".to_owned(),
        "messages" => "Anthropic messages".to_owned(),
        "responses" => "OpenAI responses".to_owned(),
        other => other.to_owned(),
    }
}

/// The route a client API comes in by.
fn dialect_route(dialect: &str) -> &'static str {
    match dialect {
        "chat" => "POST /v1/chat/completions",
        "messages" => "POST /v1/messages",
        "responses" => "POST /v1/responses",
        _ => "",
    }
}

/// A feature's live traffic over the stream's window: what users see.
#[component]
pub fn FeatureLivePanel(
    name: String,
    #[prop(into)] config: Signal<Option<FeatureConfig>>,
) -> impl IntoView {
    let live = use_live();
    let fl = Memo::new(move |_| live.feature(&name));
    let stat = move |f: fn(&FeatureLive) -> String| {
        move || fl.with(|l| l.as_ref().map(f).unwrap_or_else(|| format::NONE.to_owned()))
    };

    view! {
        <section class="panel" id="feature-live">
            <header class="panel-head">
                <h3>"Live"</h3>
                <span class="muted">
                    {move || {
                        config
                            .get()
                            .map(|c| {
                                let mut parts = Vec::new();
                                if let Some(o) = c.owner {
                                    parts.push(format!("owner {o}"));
                                }
                                if let Some(e) = c.experiment {
                                    parts.push(format!("experiment {}", e.id));
                                }
                                if !c.description.is_empty() {
                                    parts.push(c.description);
                                }
                                parts.join(" · ")
                            })
                    }}
                </span>
                <span class="muted">{stat(|l| format!("last {} s", l.window_s))}</span>
            </header>
            <div class="stats-row">
                <div class="stat">
                    <span class="stat-value">{stat(|l| format::int(l.requests))}</span>
                    <span class="stat-label">"requests"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| share(l.errors, l.requests))}</span>
                    <span class="stat-label">"failed for users"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| format::ms(l.latency_p50_ms))}</span>
                    <span class="stat-label">"p50"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| format::ms(l.latency_p90_ms))}</span>
                    <span class="stat-label">"p90"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| format::ms(l.ttft_p90_ms))}</span>
                    <span class="stat-label">"TTFT p90"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| share(l.spilled, l.requests))}</span>
                    <span class="stat-label">"spilled"</span>
                </div>
                <div class="stat" title="Streams that broke after their first token and were continued on another endpoint">
                    <span class="stat-value" id="feature-continuations">{stat(|l| format::int(l.continuations))}</span>
                    <span class="stat-label">"continued"</span>
                </div>
                <div class="stat">
                    <span class="stat-value">{stat(|l| format::money(&l.cost))}</span>
                    <span class="stat-label">"marginal cost"</span>
                </div>
            </div>
            {move || {
                let l = fl.get();
                let Some(l) = l else {
                    return view! { <p class="placeholder">"No live traffic reported for this feature yet."</p> }.into_any();
                };
                view! {
                    <div class="live-columns">
                        <div>
                            <h4>"Split: configured vs observed"</h4>
                            {if l.variants.is_empty() {
                                view! { <p class="muted small-text">"No experiment: all traffic uses the binding."</p> }.into_any()
                            } else {
                                view! {
                                    <table class="grid compact" id="variant-split">
                                        <thead>
                                            <tr>
                                                <th>"variant"</th>
                                                <th class="num">"configured"</th>
                                                <th class="num">"observed"</th>
                                                <th></th>
                                                <th class="num">"requests"</th>
                                                <th class="num">"errors"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {l.variants
                                                .iter()
                                                .map(|v| {
                                                    let conf = format!("{:.1}%", v.configured_percent.clamp(0.0, 100.0));
                                                    let obs = format!("{:.1}%", v.observed_percent.clamp(0.0, 100.0));
                                                    view! {
                                                        <tr data-live-variant=v.name.clone()>
                                                            <td>{v.name.clone()}</td>
                                                            <td class="num">{format::percent(v.configured_percent)}</td>
                                                            <td class="num">{format::percent(v.observed_percent)}</td>
                                                            <td class="bars">
                                                                <div class="bar configured" style:width=conf></div>
                                                                <div class="bar observed" style:width=obs></div>
                                                            </td>
                                                            <td class="num">{format::int(v.requests)}</td>
                                                            <td class="num">{share(v.errors, v.requests)}</td>
                                                        </tr>
                                                    }
                                                })
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                }
                                    .into_any()
                            }}
                        </div>
                        <div class="live-lower">
                        <div>
                            <h4>"Served at fallback depth"</h4>
                            <FallbackDepth depths=l.fallback_depth.clone() />
                            <h4>"Errors users saw, by class"</h4>
                            <div class="kinds">
                                {if l.errors_by_kind.values().all(|n| *n == 0) {
                                    view! { <span class="muted small-text">"none"</span> }.into_any()
                                } else {
                                    l.errors_by_kind
                                        .iter()
                                        .filter(|(_, n)| **n > 0)
                                        .map(|(k, n)| view! { <span class="chip">{format::error_kind(k)} " " <b>{*n}</b></span> })
                                        .collect_view()
                                        .into_any()
                                }}
                            </div>
                            <h4>"Requests by API"</h4>
                            <div class="kinds" id="feature-dialects">
                                {if l.dialects.values().all(|n| *n == 0) {
                                    view! { <span class="muted small-text">"none"</span> }.into_any()
                                } else {
                                    l.dialects
                                        .iter()
                                        .filter(|(_, n)| **n > 0)
                                        .map(|(d, n)| view! {
                                            <span class="chip" data-dialect=d.clone() title=dialect_route(d)>
                                                {dialect_label(d)} " " <b>{*n}</b>
                                            </span>
                                        })
                                        .collect_view()
                                        .into_any()
                                }}
                            </div>
                        </div>
                        </div>
                    </div>
                }
                    .into_any()
            }}
        </section>
    }
}

#[component]
fn FallbackDepth(depths: Vec<u64>) -> impl IntoView {
    let total: u64 = depths.iter().sum();
    if total == 0 {
        return view! { <p class="muted small-text">"no requests served"</p> }.into_any();
    }
    view! {
        <ul class="depths" id="fallback-depth">
            {depths
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let label = if i == 0 { "primary".to_owned() } else { format!("backup {i}") };
                    let width = format!("{:.1}%", n as f64 * 100.0 / total as f64);
                    let deep = i > 0;
                    view! {
                        <li>
                            <span class="depth-label">{label}</span>
                            <div class="depth-bar"><div class="depth-fill" class:deep=deep style:width=width></div></div>
                            <span class="depth-value">{share(n, total)} " · " {format::int(n)}</span>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::api::Dialect;

    #[test]
    fn every_dialect_has_a_label_and_a_route() {
        for dialect in Dialect::ALL {
            assert_ne!(dialect_label(dialect.as_str()), dialect.as_str());
            assert!(dialect_route(dialect.as_str()).starts_with("POST /v1/"));
        }
    }
}
