use leptos::prelude::*;
use router_core::admin::{Action, EndpointHealth};
use router_core::admin::{Override, StateName};

use super::override_control::OverrideControl;
use crate::components::{StateBadge, breaker_signals};
use crate::context::live::use_live;
use crate::context::session::use_session;
use crate::logic::format;
use crate::platform;

/// What the state line says: how long, which stage, when the next probe is.
fn state_line(e: &EndpointHealth, age_ms: f64) -> String {
    let b = &e.breaker;
    let elapsed = b.elapsed_ms as i64 + age_ms as i64;
    match b.state {
        StateName::Closed => format!("closed for {}", format::duration(elapsed)),
        StateName::Ramp => {
            let stage = b.stage.map(|s| s + 1).unwrap_or(0);
            let judged = b
                .stage_requests
                .map(|n| format!(" · {n} judged"))
                .unwrap_or_default();
            format!(
                "recovering: stage {stage}/{} · {} admitted{judged} · for {}",
                b.stages,
                format::fraction(b.admission),
                format::duration(elapsed)
            )
        }
        StateName::Open => {
            let probe = match (b.override_mode, b.open_until_ms) {
                (Override::ForceOpen, _) => "held open by an operator".to_owned(),
                (_, Some(until)) => {
                    // Router-clock times: the remaining time at reception, minus since.
                    let at_reception = until as i64 - (b.since_ms + b.elapsed_ms) as i64;
                    format!("probe {}", format::countdown(at_reception - age_ms as i64))
                }
                (_, None) => "no probe scheduled".to_owned(),
            };
            let trip = if b.trips > 0 {
                format!(" · trip {}", b.trips)
            } else {
                String::new()
            };
            format!("open for {} · {probe}{trip}", format::duration(elapsed))
        }
    }
}

fn per_second(e: &EndpointHealth) -> f64 {
    if e.stats.window_s > 0.0 {
        e.stats.requests as f64 / e.stats.window_s
    } else {
        0.0
    }
}

/// Provisioned: the share turned away at the ceiling (spilled to the sibling).
/// On-demand: the share of its traffic that was spill from a full sibling.
fn spill(e: &EndpointHealth) -> (String, String) {
    let s = &e.stats;
    if e.provisioned {
        let all = s.requests + s.spilled_away;
        let v = if all > 0 {
            format::fraction(s.spilled_away as f64 / all as f64)
        } else {
            format::NONE.to_owned()
        };
        let to = e
            .spill_to
            .clone()
            .unwrap_or_else(|| "nowhere (no spill_to)".into());
        (
            v,
            format!("Share of requests turned away at the capacity ceiling and sent to {to}"),
        )
    } else {
        let v = if s.requests > 0 {
            format::fraction(s.spilled as f64 / s.requests as f64)
        } else {
            format::NONE.to_owned()
        };
        (v, "Share of this endpoint's requests served as spill-over for a full provisioned endpoint".into())
    }
}

/// One endpoint: `[data-endpoint=NAME]`, with a `[data-breaker-state]` child.
#[component]
pub fn EndpointCard(name: String) -> impl IntoView {
    let live = use_live();
    let session = use_session();
    let ep = Memo::new({
        let name = name.clone();
        move |_| live.endpoint(&name)
    });
    let (state, forced) = breaker_signals(ep);
    let age = move || live.now_ms.get() - live.received_ms.get();
    // Text of one field, or a dash while the endpoint is unknown.
    let text = move |f: fn(&EndpointHealth) -> String| {
        move || ep.with(|e| e.as_ref().map(f).unwrap_or_else(|| format::NONE.to_owned()))
    };
    let may_override = move || session.may(Action::Override);
    let card_name = name.clone();

    view! {
        <article
            class=move || format!("card endpoint state-border-{}", state.get().as_str())
            data-endpoint=name.clone()
        >
            <header class="endpoint-head">
                <div class="endpoint-name">
                    <strong>{name.clone()}</strong>
                    {move || ep.with(|e| e.as_ref().is_some_and(|e| e.provisioned)).then(|| view! { <span class="tag">"provisioned"</span> })}
                </div>
                <StateBadge state=state forced=forced />
            </header>
            <p class="endpoint-model muted">
                {text(|e| e.model.clone())} " · " {text(|e| e.region.clone())}
            </p>
            <p class="state-line">
                {move || ep.with(|e| e.as_ref().map(|e| state_line(e, age())))}
                <span class="reason-since muted">
                    {move || {
                        ep.with(|e| {
                            e.as_ref()
                                .map(|e| {
                                    let since = live.received_ms.get() - e.breaker.elapsed_ms as f64;
                                    format!(" · since {}", platform::local_when(since as i64))
                                })
                        })
                    }}
                </span>
            </p>
            {move || {
                ep.with(|e| {
                    e.as_ref()
                        .filter(|e| e.breaker.state == StateName::Ramp)
                        .map(|e| {
                            let width = format!("{:.0}%", e.breaker.admission * 100.0);
                            view! {
                                <div class="ramp-bar" title="Share of requests admitted">
                                    <div class="ramp-fill" style:width=width></div>
                                </div>
                            }
                        })
                })
            }}
            <div class="reason" title="What put the breaker in this state">
                <span class="reason-headline">
                    {text(|e| {
                        let r = &e.breaker.reason;
                        format::reason_headline(r.signal, r.value, r.threshold)
                    })}
                </span>
                {move || {
                    ep.with(|e| {
                        let e = e.as_ref()?;
                        let r = &e.breaker.reason;
                        // "started" under "started" says nothing twice.
                        let headline = format::reason_headline(r.signal, r.value, r.threshold);
                        (!r.message.is_empty() && !r.message.eq_ignore_ascii_case(&headline))
                            .then(|| view! { <span class="reason-message">{r.message.clone()}</span> })
                    })
                }}
            </div>
            <dl class="metrics">
                <div>
                    <dt>"TTFT p50 / p90"</dt>
                    <dd>{text(|e| format::ms_list(&[e.stats.ttft_p50_ms, e.stats.ttft_p90_ms]))}</dd>
                </div>
                <div class="wide">
                    <dt>"latency p50 / p90 / p99"</dt>
                    <dd>
                        {text(|e| {
                            let s = &e.stats;
                            format::ms_list(&[s.latency_p50_ms, s.latency_p90_ms, s.latency_p99_ms])
                        })}
                    </dd>
                </div>
                <div>
                    <dt>"requests"</dt>
                    <dd>{text(|e| format::rate(per_second(e)))}</dd>
                </div>
                <div>
                    <dt>"errors"</dt>
                    <dd class:bad=move || ep.with(|e| e.as_ref().is_some_and(|e| e.stats.error_rate() > 0.05))>
                        {text(|e| format::fraction(e.stats.error_rate()))}
                    </dd>
                </div>
                <div>
                    <dt>"throttled"</dt>
                    <dd>{text(|e| format::fraction(e.stats.throttle_rate()))}</dd>
                </div>
                <div title=move || ep.with(|e| e.as_ref().map(|e| spill(e).1))>
                    <dt>"spill"</dt>
                    <dd>{text(|e| spill(e).0)}</dd>
                </div>
                <div>
                    <dt>"in flight"</dt>
                    <dd>{text(|e| format::int(e.in_flight))}</dd>
                </div>
            </dl>
            {move || {
                ep.with(|e| {
                    let u = e.as_ref()?.capacity_utilisation?;
                    let width = format!("{:.0}%", (u * 100.0).clamp(0.0, 100.0));
                    let bar_class = if u > 0.9 { "capacity-bar hot" } else { "capacity-bar" };
                    Some(
                        view! {
                            <div class="capacity" title="Share of the provisioned tokens-per-minute ceiling in use">
                                <span class="muted">"capacity"</span>
                                <div class=bar_class>
                                    <div class="capacity-fill" style:width=width></div>
                                </div>
                                <span>{format::fraction(u)}</span>
                            </div>
                        },
                    )
                })
            }}
            <div class="kinds">
                {move || {
                    ep.with(|e| {
                        e.as_ref()
                            .map(|e| {
                                e.stats
                                    .errors_by_kind
                                    .iter()
                                    .filter(|(_, n)| **n > 0)
                                    .map(|(k, n)| {
                                        view! {
                                            <span class="chip" title=k.clone()>
                                                {format::error_kind(k)} " " <b>{*n}</b>
                                            </span>
                                        }
                                    })
                                    .collect_view()
                            })
                    })
                }}
            </div>
            {move || may_override().then(|| view! { <OverrideControl name=card_name.clone() current=forced /> })}
        </article>
    }
}
