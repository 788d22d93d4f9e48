use leptos::prelude::*;
use router_core::admin::BreakerEvent;

use crate::context::live::use_live;
use crate::logic::format;
use crate::platform;

/// Breaker transitions, newest first: loaded at start (`/breaker-events`, last 24 h),
/// then live from the stream's `breaker` events.
#[component]
pub fn Timeline() -> impl IntoView {
    let live = use_live();
    let filter = RwSignal::new(String::new());
    let names = Memo::new(move |_| {
        let mut n: Vec<String> = live
            .events
            .with(|e| e.iter().map(|e| e.endpoint.clone()).collect());
        n.sort();
        n.dedup();
        n
    });
    let shown = move || {
        let f = filter.get();
        live.events.with(|events| {
            events
                .iter()
                .filter(|e| f.is_empty() || e.endpoint == f)
                .take(150)
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="panel timeline" id="timeline">
            <header class="panel-head">
                <h2>"Incident timeline"</h2>
                <select
                    class="small"
                    title="Show one endpoint's transitions"
                    on:change=move |ev| filter.set(event_target_value(&ev))
                >
                    <option value="">"all endpoints"</option>
                    {move || {
                        names
                            .get()
                            .into_iter()
                            .map(|n| view! { <option value=n.clone()>{n.clone()}</option> })
                            .collect_view()
                    }}
                </select>
            </header>
            {move || {
                let events = shown();
                if events.is_empty() {
                    view! { <p class="placeholder">"No breaker transitions in the last 24 hours."</p> }
                        .into_any()
                } else {
                    view! {
                        <ol class="events">
                            {events.into_iter().map(|e| view! { <EventRow event=e /> }).collect_view()}
                        </ol>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

#[component]
fn EventRow(event: BreakerEvent) -> impl IntoView {
    let t = &event.transition;
    let when = platform::local_when(event.at_ms);
    let stage = t
        .stage
        .map(|s| format!(" stage {}", s + 1))
        .unwrap_or_default();
    view! {
        <li class=format!("event event-{}", t.to.as_str()) data-event-endpoint=event.endpoint.clone()>
            <div class="event-head">
                <time title=platform::local_datetime(event.at_ms)>{when}</time>
                <strong>{event.endpoint.clone()}</strong>
                <span class=format!("state state-{} mini", t.from.as_str())>{t.from.as_str()}</span>
                "→"
                <span class=format!("state state-{} mini", t.to.as_str())>{t.to.as_str()}{stage}</span>
            </div>
            <div class="event-reason">
                <span class="reason-headline">
                    {format::reason_headline(t.reason.signal, t.reason.value, t.reason.threshold)}
                </span>
                <span class="muted">{t.reason.message.clone()}</span>
            </div>
        </li>
    }
}
