use leptos::prelude::*;
use router_core::config::Problem;

/// The validation problems of one field, shown next to it.
#[component]
pub fn FieldProblems(#[prop(into)] problems: Signal<Vec<Problem>>) -> impl IntoView {
    move || {
        let list = problems.get();
        (!list.is_empty()).then(|| {
            view! {
                <ul class="field-problems">
                    {list
                        .into_iter()
                        .map(|p| view! { <li title=p.path.clone()>{p.message}</li> })
                        .collect_view()}
                </ul>
            }
        })
    }
}
