use leptos::prelude::*;

use crate::api::ApiError;

/// An API error as people read it, with the validation problems listed.
#[component]
pub fn ErrorBox(error: ApiError) -> impl IntoView {
    let problems = error.problems().to_vec();
    view! {
        <div class="error-box" role="alert">
            <p>{error.to_string()}</p>
            {(!problems.is_empty())
                .then(|| {
                    view! {
                        <ul class="problems">
                            {problems
                                .into_iter()
                                .map(|p| view! { <li><code>{p.path}</code>": "{p.message}</li> })
                                .collect_view()}
                        </ul>
                    }
                })}
        </div>
    }
}
