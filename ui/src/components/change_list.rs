use leptos::prelude::*;
use router_core::admin::Change;

use crate::logic::format::change_value;

/// Changed paths, each `before → after` (an edit's diff, a publish result, an audit
/// entry).
#[component]
pub fn ChangeList(
    changes: Vec<Change>,
    #[prop(optional, into)] empty: Option<String>,
) -> impl IntoView {
    if changes.is_empty() {
        return view! { <p class="muted small-text">{empty.unwrap_or_else(|| "No changes.".into())}</p> }
            .into_any();
    }
    view! {
        <table class="changes">
            <tbody>
                {changes
                    .into_iter()
                    .map(|c| {
                        view! {
                            <tr data-change-path=c.path.clone()>
                                <td class="path"><code>{c.path.clone()}</code></td>
                                <td class="before"><code>{change_value(c.before.as_ref())}</code></td>
                                <td class="arrow">"→"</td>
                                <td class="after"><code>{change_value(c.after.as_ref())}</code></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
