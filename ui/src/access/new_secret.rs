use leptos::prelude::*;

/// A token or key just created: shown this once, with what it is for. `id` names the
/// box (`new-token-secret`, `new-key-secret`); the value is in `#{id}-value`.
#[component]
pub fn NewSecret(
    id: &'static str,
    what: &'static str,
    secret: String,
    on_done: impl Fn() + 'static,
) -> impl IntoView {
    let value_id = format!("{id}-value");
    view! {
        <div class="success-box new-secret" id=id role="status">
            <p>{format!("New {what}: copy it now. It is shown only this once; the router keeps only its hash.")}</p>
            <code class="secret" id=value_id>{secret}</code>
            <div class="actions">
                <button type="button" class="small" on:click=move |_| on_done()>
                    "I have copied it"
                </button>
            </div>
        </div>
    }
}
