use leptos::prelude::*;
use router_core::admin::ConfigVersion;

use super::navigation::go_to_feature;
use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::live::use_live;
use crate::logic::format;

/// Every feature with its live traffic; a row opens the feature.
#[component]
pub fn FeatureIndex(active: RwSignal<Option<Result<ConfigVersion, ApiError>>>) -> impl IntoView {
    let live = use_live();
    move || {
        match active.get() {
        None => view! { <p class="placeholder">"Loading the configuration…"</p> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok(cv)) if cv.config.features.is_empty() => {
            view! { <p class="placeholder">"No features are configured."</p> }.into_any()
        }
        Some(Ok(cv)) => view! {
            <section class="panel">
                <table class="grid clickable" id="feature-index">
                    <thead>
                        <tr>
                            <th>"feature"</th>
                            <th>"owner"</th>
                            <th>"binding / experiment"</th>
                            <th class="num">"requests"</th>
                            <th class="num">"user errors"</th>
                            <th class="num">"p50"</th>
                            <th class="num">"p90"</th>
                            <th class="num">"cost (window)"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {cv.config
                            .features
                            .into_iter()
                            .map(|f| {
                                let name = f.name.clone();
                                let n = name.clone();
                                let fl = move || live.feature(&n);
                                let shape = match &f.experiment {
                                    Some(e) => format!(
                                        "experiment {} · {}",
                                        e.id,
                                        e.variants
                                            .iter()
                                            .map(|v| format!("{} {}", v.name, format::percent(v.percent)))
                                            .collect::<Vec<_>>()
                                            .join(" / ")
                                    ),
                                    None => f.binding.join(" → "),
                                };
                                let go = name.clone();
                                view! {
                                    <tr data-feature=name.clone() on:click=move |_| go_to_feature(&go)>
                                        <td><a href=format!("#/features/{name}")>{name.clone()}</a></td>
                                        <td>{f.owner.clone().unwrap_or_default()}</td>
                                        <td class="muted">{shape}</td>
                                        <td class="num">{let fl = fl.clone(); move || fl().map(|l| format::int(l.requests))}</td>
                                        <td class="num">
                                            {let fl = fl.clone(); move || fl().map(|l| {
                                                if l.requests == 0 { format::NONE.to_owned() } else { format::fraction(l.errors as f64 / l.requests as f64) }
                                            })}
                                        </td>
                                        <td class="num">{let fl = fl.clone(); move || fl().map(|l| format::ms(l.latency_p50_ms))}</td>
                                        <td class="num">{let fl = fl.clone(); move || fl().map(|l| format::ms(l.latency_p90_ms))}</td>
                                        <td class="num">{move || fl().map(|l| format::money(&l.cost))}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </section>
        }
        .into_any(),
    }
    }
}
