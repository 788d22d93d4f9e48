use leptos::prelude::*;
use router_core::config::FeatureConfig;

use crate::components::{StateBadge, breaker_signals};
use crate::context::live::use_live;

/// The feature's binding (primary, then backups) or each variant's, with every
/// endpoint's live breaker state.
#[component]
pub fn BindingView(#[prop(into)] feature: Signal<Option<FeatureConfig>>) -> impl IntoView {
    move || {
        let f = feature.get()?;
        let mut lists: Vec<(String, Vec<String>)> = Vec::new();
        if !f.binding.is_empty() {
            let label = if f.experiment.is_some() {
                "feature binding (outside the experiment)"
            } else {
                "primary, then backups"
            };
            lists.push((label.to_owned(), f.binding.clone()));
        }
        if let Some(e) = &f.experiment {
            for v in &e.variants {
                lists.push((
                    format!(
                        "variant {} · {}",
                        v.name,
                        crate::logic::format::percent(v.percent)
                    ),
                    v.binding.clone(),
                ));
            }
        }
        Some(view! {
            <section class="panel">
                <header class="panel-head">
                    <h3>"Binding"</h3>
                    <span class="muted">
                        {if f.geographies.is_empty() {
                            "no data boundary".to_owned()
                        } else {
                            format!("data boundary: {}", f.geographies.join(", "))
                        }}
                    </span>
                </header>
                {lists
                    .into_iter()
                    .map(|(label, binding)| {
                        view! {
                            <div class="binding-view">
                                <h4>{label}</h4>
                                <ol class="binding-list">
                                    {binding.into_iter().enumerate().map(|(i, ep)| view! { <BoundEndpoint index=i name=ep /> }).collect_view()}
                                </ol>
                            </div>
                        }
                    })
                    .collect_view()}
            </section>
        })
    }
}

#[component]
pub fn BoundEndpoint(index: usize, name: String) -> impl IntoView {
    let live = use_live();
    let n = name.clone();
    let ep = Memo::new(move |_| live.endpoint(&n));
    let (state, forced) = breaker_signals(ep);
    let role = if index == 0 {
        "primary".to_owned()
    } else {
        format!("backup {index}")
    };
    view! {
        <li class="bound" data-binding-endpoint=name.clone()>
            <span class="role-label">{role}</span>
            <strong>{name.clone()}</strong>
            {move || {
                ep.with(|e| match e {
                    Some(e) => view! {
                        <span class="muted">{format!("{} · {}", e.provider, e.region)}</span>
                    }
                        .into_any(),
                    None => view! { <span class="muted">"no live data"</span> }.into_any(),
                })
            }}
            {move || ep.with(|e| e.is_some()).then(|| view! { <StateBadge state=state forced=forced /> })}
        </li>
    }
}
