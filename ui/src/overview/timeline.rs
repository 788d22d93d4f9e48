use leptos::prelude::*;
use router_core::admin::{BreakerEvent, ContinuationEvent};

use crate::context::live::use_live;
use crate::logic::format;
use crate::platform;

/// Breaker transitions, newest first: loaded at start (`/breaker-events`, last 24 h),
/// then live from the stream's `breaker` events; and the recent stream
/// continuations (a stream that broke after its first token and went on elsewhere),
/// from the live snapshot.
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
        let mut rows: Vec<Row> = live.events.with(|events| {
            events
                .iter()
                .filter(|e| f.is_empty() || e.endpoint == f)
                .take(150)
                .cloned()
                .map(Row::Breaker)
                .collect()
        });
        live.continuations.with(|c| {
            rows.extend(
                c.iter()
                    .filter(|c| f.is_empty() || c.from == f || c.to == f)
                    .cloned()
                    .map(Row::Continued),
            )
        });
        rows.sort_by_key(|r| std::cmp::Reverse(r.at_ms()));
        rows.truncate(150);
        rows
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
                            {events
                                .into_iter()
                                .map(|row| match row {
                                    Row::Breaker(e) => view! { <EventRow event=e /> }.into_any(),
                                    Row::Continued(c) => view! { <ContinuedRow event=c /> }.into_any(),
                                })
                                .collect_view()}
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

/// A row of the timeline.
#[derive(Clone)]
enum Row {
    Breaker(BreakerEvent),
    Continued(ContinuationEvent),
}

impl Row {
    fn at_ms(&self) -> i64 {
        match self {
            Self::Breaker(e) => e.at_ms,
            Self::Continued(c) => c.at_ms,
        }
    }
}

#[component]
fn ContinuedRow(event: ContinuationEvent) -> impl IntoView {
    let when = platform::local_when(event.at_ms);
    view! {
        <li class="event event-continued" data-event-endpoint=event.from.clone()>
            <div class="event-head">
                <time title=platform::local_datetime(event.at_ms)>{when}</time>
                <strong>{event.feature.clone()}</strong>
                <span class="muted">"stream continued"</span>
                <strong>{event.from.clone()}</strong>
                "→"
                <strong>{event.to.clone()}</strong>
            </div>
            <div class="event-reason">
                <span class="muted">
                    {format!(
                        "broke after its first tokens; finished by {} ({}), request {}",
                        event.to, event.method, event.request_id
                    )}
                </span>
            </div>
        </li>
    }
}
