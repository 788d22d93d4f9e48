use leptos::prelude::*;
use router_core::config::{ExperimentConfig, Problem, Problems, VariantConfig};

use super::binding_editor::{BindingEditor, EndpointChoice};
use crate::components::FieldProblems;
use crate::context::live::use_live;
use crate::logic::{format, percent};

/// An experiment's variant percentages (number input + slider each; editing one moves
/// the last other variant so the total stays 100) and each variant's binding.
#[component]
pub fn SplitEditor(
    feature: String,
    /// `features.NAME.experiment`.
    path: String,
    #[prop(into)] experiment: Signal<ExperimentConfig>,
    on_change: Callback<ExperimentConfig>,
    #[prop(into)] choices: Signal<Vec<EndpointChoice>>,
    #[prop(into)] problems: Signal<Vec<Problem>>,
) -> impl IntoView {
    let live = use_live();
    let path = StoredValue::new(path);
    let names = Memo::new(move |_| {
        experiment.with(|e| {
            e.variants
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
        })
    });
    let percents =
        move || experiment.with(|e| e.variants.iter().map(|v| v.percent).collect::<Vec<_>>());
    let set_percent = move |k: usize, value: f64| {
        let mut e = experiment.get_untracked();
        let next = percent::rebalance(
            &e.variants.iter().map(|v| v.percent).collect::<Vec<_>>(),
            k,
            value,
        );
        for (v, p) in e.variants.iter_mut().zip(next) {
            v.percent = p;
        }
        on_change.run(e);
    };
    let sum_problems = Signal::derive(move || {
        let p = format!("{}.variants", path.get_value());
        problems.with(|all| {
            all.iter()
                .filter(|x| x.path == p)
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let observed = move |variant: &str| {
        live.feature(&feature)
            .and_then(|f| f.variants.into_iter().find(|v| v.name == variant))
            .map(|v| v.observed_percent)
    };
    let observed = StoredValue::new(observed);

    let row = move |(k, name): (usize, String)| {
        let vpath = format!("{}.variants.{name}", path.get_value());
        let percent_path = format!("{vpath}.percent");
        let binding_path = format!("{vpath}.binding");
        // A binding with a problem is shown open, so the problem is seen.
        let binding_bad = {
            let at = binding_path.clone();
            Signal::derive(move || {
                problems.with(|all| Problems(all.clone()).under(&at).next().is_some())
            })
        };
        let percent_problems = Signal::derive(move || {
            problems.with(|all| {
                Problems(all.clone())
                    .under(&percent_path)
                    .cloned()
                    .collect::<Vec<_>>()
            })
        });
        // A memo: typing "33." must not be rewritten to "33" by an unchanged value.
        let value = Memo::new(move |_| {
            experiment.with(|e| e.variants.get(k).map(|v| v.percent).unwrap_or(0.0))
        });
        let binding = Signal::derive(move || {
            experiment.with(|e| {
                e.variants
                    .get(k)
                    .map(|v| v.binding.clone())
                    .unwrap_or_default()
            })
        });
        let set_binding = Callback::new(move |b: Vec<String>| {
            let mut e = experiment.get_untracked();
            if let Some(v) = e.variants.get_mut(k) {
                v.binding = b;
            }
            on_change.run(e);
        });
        let on_input = move |ev: leptos::ev::Event| {
            if let Ok(v) = event_target_value(&ev).trim().parse::<f64>() {
                set_percent(k, v);
            }
        };
        let obs_name = name.clone();
        let remove = move |_| {
            let mut e = experiment.get_untracked();
            if e.variants.len() > 1 && k < e.variants.len() {
                let next =
                    percent::remove(&e.variants.iter().map(|v| v.percent).collect::<Vec<_>>(), k);
                e.variants.remove(k);
                for (v, p) in e.variants.iter_mut().zip(next) {
                    v.percent = p;
                }
                on_change.run(e);
            }
        };
        view! {
            <div class="variant" data-variant-row=name.clone()>
                <div class="variant-line">
                    <strong class="variant-name">{name.clone()}</strong>
                    <button
                        type="button"
                        class="small icon danger variant-remove"
                        data-remove-variant=name.clone()
                        title="Remove this variant (its share goes to the last remaining one)"
                        disabled=move || names.with(|n| n.len() <= 1)
                        on:click=remove
                    >
                        "✕"
                    </button>
                    <input
                        type="number"
                        class="percent-input"
                        min="0"
                        max="100"
                        step="any"
                        data-variant=name.clone()
                        aria-label=format!("Percentage of variant {name}")
                        prop:value=move || format::number(value.get())
                        on:input=on_input
                    />
                    <span class="unit">"%"</span>
                    <input
                        type="range"
                        class="percent-range"
                        min="0"
                        max="100"
                        step="1"
                        data-variant-range=name.clone()
                        aria-label=format!("Slider for variant {name}")
                        prop:value=move || value.get().to_string()
                        on:input=on_input
                    />
                    <span class="observed muted" title="Observed share of the feature's traffic in the live window">
                        {move || {
                            observed
                                .with_value(|f| f(&obs_name))
                                .map(|o| format!("observed {}", format::percent(o)))
                        }}
                    </span>
                </div>
                <FieldProblems problems=percent_problems />
                <details class="variant-binding" prop:open=move || binding_bad.get()>
                    <summary>{move || format!("binding: {}", binding.get().join(" → "))}</summary>
                    <BindingEditor
                        path=binding_path.clone()
                        binding=binding
                        on_change=set_binding
                        choices=choices
                        problems=problems
                    />
                </details>
            </div>
        }
    };
    let rows = move || names.get().into_iter().enumerate().collect::<Vec<_>>();
    // A new variant starts at 0 % with no binding: the validator asks for one before
    // it can be published, and its share is then moved over with the inputs.
    let new_name = RwSignal::new(String::new());
    let add = move |_| {
        let name = new_name.get_untracked().trim().to_owned();
        if name.is_empty() {
            return;
        }
        let mut e = experiment.get_untracked();
        e.variants.push(VariantConfig {
            name,
            percent: 0.0,
            binding: Vec::new(),
        });
        on_change.run(e);
        new_name.set(String::new());
    };

    view! {
        <div class="split-editor">
            <div class="split-head">
                <span class="muted">{move || format!("experiment {}", experiment.with(|e| e.id.clone()))}</span>
                <span
                    id="split-sum"
                    class=move || if percent::sums_to_100(&percents()) { "sum ok" } else { "sum bad" }
                >
                    {move || {
                        let p = percents();
                        if percent::sums_to_100(&p) {
                            "sum: 100 ✓".to_owned()
                        } else {
                            format!("sum: {} ✗ (must be 100)", format::number(percent::total(&p)))
                        }
                    }}
                </span>
            </div>
            <FieldProblems problems=sum_problems />
            <For
                each=rows
                key=|(k, name): &(usize, String)| (*k, name.clone())
                children=row
            />
            <div class="variant-add">
                <input
                    id="new-variant-name"
                    type="text"
                    placeholder="new variant name"
                    bind:value=new_name
                />
                <button id="add-variant" type="button" on:click=add>
                    "Add variant"
                </button>
            </div>
        </div>
    }
}
