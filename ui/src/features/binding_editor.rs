use leptos::prelude::*;
use router_core::config::{Problem, Problems};

use super::binding_view::BoundEndpoint;
use crate::components::FieldProblems;

/// One change to a binding.
type Edit = Box<dyn FnOnce(&mut Vec<String>)>;

/// The endpoints a binding may name (from the configuration being edited).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointChoice {
    pub name: String,
    pub detail: String,
}

/// Edits one binding: reorder with up/down, remove, add from the configured
/// endpoints. Problems at `path` (the whole list) and at `path[k]` (one entry) are
/// shown where they belong.
#[component]
pub fn BindingEditor(
    path: String,
    #[prop(into)] binding: Signal<Vec<String>>,
    on_change: Callback<Vec<String>>,
    #[prop(into)] choices: Signal<Vec<EndpointChoice>>,
    #[prop(into)] problems: Signal<Vec<Problem>>,
) -> impl IntoView {
    let adding = RwSignal::new(String::new());
    let path = StoredValue::new(path);
    let edit = move |f: Edit| {
        let mut b = binding.get_untracked();
        f(&mut b);
        on_change.run(b);
    };
    let list_problems = Signal::derive(move || {
        let p = path.get_value();
        problems.with(|all| {
            all.iter()
                .filter(|x| x.path == p)
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let available = move || {
        let bound = binding.get();
        choices
            .get()
            .into_iter()
            .filter(|c| !bound.contains(&c.name))
            .collect::<Vec<_>>()
    };

    view! {
        <div class="binding-editor" data-binding-path=path.get_value()>
            <ol class="binding-rows">
                {move || {
                    let list = binding.get();
                    let n = list.len();
                    list.into_iter()
                        .enumerate()
                        .map(|(k, name)| {
                            let at = format!("{}[{k}]", path.get_value());
                            let row_problems = Signal::derive(move || {
                                problems.with(|all| Problems(all.clone()).under(&at).cloned().collect::<Vec<_>>())
                            });
                            view! {
                                <li class="binding-row" data-binding-row=k>
                                    <BoundEndpoint index=k name=name.clone() />
                                    <span class="row-buttons">
                                        <button
                                            type="button"
                                            class="small icon binding-up"
                                            title="Move up"
                                            disabled=k == 0
                                            on:click=move |_| edit(Box::new(move |b| b.swap(k, k - 1)))
                                        >
                                            "↑"
                                        </button>
                                        <button
                                            type="button"
                                            class="small icon binding-down"
                                            title="Move down"
                                            disabled=k + 1 == n
                                            on:click=move |_| edit(Box::new(move |b| b.swap(k, k + 1)))
                                        >
                                            "↓"
                                        </button>
                                        <button
                                            type="button"
                                            class="small icon danger binding-remove"
                                            title="Remove"
                                            on:click=move |_| edit(Box::new(move |b| { b.remove(k); }))
                                        >
                                            "✕"
                                        </button>
                                    </span>
                                    <FieldProblems problems=row_problems />
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ol>
            <FieldProblems problems=list_problems />
            <div class="binding-add-row">
                <select
                    class="small binding-add-select"
                    on:change=move |ev| adding.set(event_target_value(&ev))
                    prop:value=move || adding.get()
                >
                    <option value="">"Add an endpoint…"</option>
                    {move || {
                        available()
                            .into_iter()
                            .map(|c| view! { <option value=c.name.clone()>{format!("{} — {}", c.name, c.detail)}</option> })
                            .collect_view()
                    }}
                </select>
                <button
                    type="button"
                    class="small binding-add"
                    disabled=move || adding.get().is_empty()
                    on:click=move |_| {
                        let name = adding.get_untracked();
                        if !name.is_empty() {
                            edit(Box::new(move |b| b.push(name)));
                            adding.set(String::new());
                        }
                    }
                >
                    "Add"
                </button>
            </div>
        </div>
    }
}
