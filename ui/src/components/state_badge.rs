use leptos::prelude::*;
use router_core::admin::EndpointHealth;
use router_core::admin::{Override, StateName};

/// The breaker state and override of an endpoint's live health, for a
/// [`StateBadge`]: closed and automatic while the endpoint is unknown.
pub fn breaker_signals(ep: Memo<Option<EndpointHealth>>) -> (Signal<StateName>, Signal<Override>) {
    let state = Signal::derive(move || {
        ep.with(|e| e.as_ref().map_or(StateName::Closed, |e| e.breaker.state))
    });
    let forced = Signal::derive(move || {
        ep.with(|e| {
            e.as_ref()
                .map_or(Override::Auto, |e| e.breaker.override_mode)
        })
    });
    (state, forced)
}

/// A breaker state: `closed` (green), `ramp` (amber), `open` (red); marked when an
/// operator forced it. The element carries `data-breaker-state` and its text is
/// exactly the state name (end-to-end tests read it).
#[component]
pub fn StateBadge(
    #[prop(into)] state: Signal<StateName>,
    #[prop(into, optional)] forced: Signal<Override>,
) -> impl IntoView {
    view! {
        <span class="badge-group">
            <span
                class=move || format!("state state-{}", state.get().as_str())
                data-breaker-state=move || state.get().as_str()
            >
                {move || state.get().as_str()}
            </span>
            {move || {
                let label = match forced.get() {
                    Override::Auto => return None,
                    Override::ForceOpen => "forced open",
                    Override::ForceClosed => "forced closed",
                };
                Some(view! { <span class="forced" title="An operator override is in force">{label}</span> })
            }}
        </span>
    }
}
