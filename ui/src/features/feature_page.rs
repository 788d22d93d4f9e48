use leptos::prelude::*;
use router_core::admin::{Action, ConfigVersion};

use super::binding_view::BindingView;
use super::draft::Draft;
use super::feature_editor::FeatureEditor;
use super::feature_index::FeatureIndex;
use super::feature_live::FeatureLivePanel;
use super::navigation::go_to_feature;
use crate::api::ApiError;
use crate::components::ErrorBox;
use crate::context::refetch;
use crate::context::session::use_session;
use crate::logic::view::View;

/// The active configuration, reloaded when the stream says a version was published
/// and after a reconnection.
fn load_active(active: RwSignal<Option<Result<ConfigVersion, ApiError>>>, reload: RwSignal<u32>) {
    refetch(
        reload,
        |api| async move { api.config().await },
        move |result| {
            // Keep showing the last good version if a reload fails.
            if result.is_ok() || !matches!(active.get_untracked(), Some(Ok(_))) {
                active.set(Some(result));
            }
        },
    );
}

#[derive(Debug, Clone, PartialEq)]
enum PageState {
    Index,
    Loading,
    Failed(ApiError),
    Missing(i64),
    Ready,
}

#[component]
pub fn FeaturePage(name: Option<String>) -> impl IntoView {
    let session = use_session();
    let active = RwSignal::new(None::<Result<ConfigVersion, ApiError>>);
    let reload = RwSignal::new(0u32);
    load_active(active, reload);

    // The version an edit starts from and the edit itself. The base follows the
    // active version while the draft is untouched; once edited it stays put, so a
    // publish names the version the person actually looked at (409 otherwise).
    let base = RwSignal::new(None::<ConfigVersion>);
    let draft = RwSignal::new(None::<Draft>);
    let rebase = RwSignal::new(false);
    let feature = name.clone();
    Effect::new(move |_| {
        let Some(Ok(cv)) = active.get() else {
            return;
        };
        let Some(name) = feature.as_deref() else {
            return;
        };
        let untouched = untrack(|| {
            let b = base.get();
            let d = draft.get();
            match (&b, &d) {
                (Some(b), Some(d)) => b.config.feature(name).map(Draft::of).as_ref() == Some(d),
                _ => true,
            }
        });
        if untouched || rebase.get_untracked() {
            rebase.set(false);
            draft.set(cv.config.feature(name).map(Draft::of));
            base.set(Some(cv));
        }
    });
    let start_over = Callback::new(move |_: ()| {
        rebase.set(true);
        // Re-run the effect with the active version (also when it did not change).
        active.update(|_| {});
    });

    let names = Memo::new(move |_| match active.get() {
        Some(Ok(cv)) => cv.config.features.iter().map(|f| f.name.clone()).collect(),
        _ => Vec::<String>::new(),
    });
    let selected = name.clone().unwrap_or_default();

    // What the page shows changes only between these; the values inside are signals,
    // so a reload (every publish) does not rebuild the editor.
    let feature_cfg = Memo::new({
        let name = name.clone();
        move |_| {
            active.with(|a| match (a, &name) {
                (Some(Ok(cv)), Some(n)) => cv.config.feature(n).cloned(),
                _ => None,
            })
        }
    });
    let state = Memo::new({
        let name = name.clone();
        move |_| match (&name, active.get()) {
            (None, _) => PageState::Index,
            (_, None) => PageState::Loading,
            (_, Some(Err(e))) => PageState::Failed(e),
            (Some(n), Some(Ok(cv))) if cv.config.feature(n).is_none() => {
                PageState::Missing(cv.version)
            }
            _ => PageState::Ready,
        }
    });

    let body = {
        let name = name.clone().unwrap_or_default();
        move || match state.get() {
            PageState::Index => view! { <FeatureIndex active=active /> }.into_any(),
            PageState::Loading => {
                view! { <p class="placeholder">"Loading the configuration…"</p> }.into_any()
            }
            PageState::Failed(e) => view! { <ErrorBox error=e /> }.into_any(),
            PageState::Missing(version) => view! {
                <p class="placeholder">
                    {format!("There is no feature named “{name}” in version {version}.")}
                </p>
            }
            .into_any(),
            PageState::Ready => {
                let may_edit = session.may(Action::EditFeature);
                view! {
                    <div class="feature-grid" class:with-editor=may_edit>
                        <div class="feature-main">
                            <FeatureLivePanel name=name.clone() config=feature_cfg />
                            <BindingView feature=feature_cfg />
                        </div>
                        {may_edit
                            .then(|| {
                                view! {
                                    <FeatureEditor
                                        name=name.clone()
                                        active=active
                                        base=base
                                        draft=draft
                                        start_over=start_over
                                        on_published=Callback::new(move |_: ()| {
                                            rebase.set(true);
                                            reload.update(|n| *n += 1);
                                        })
                                    />
                                }
                            })}
                    </div>
                }
                .into_any()
            }
        }
    };

    view! {
        <div class="page features">
            <header class="page-head">
                <h2>"Features"</h2>
                <label class="inline">
                    "Feature"
                    <select
                        id="feature-select"
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            if v.is_empty() {
                                let _ = window().location().set_hash(&View::Features(None).hash());
                            } else {
                                go_to_feature(&v);
                            }
                        }
                    >
                        <option value="" selected=selected.is_empty()>"All features…"</option>
                        {move || {
                            names
                                .get()
                                .into_iter()
                                .map(|n| {
                                    let is = n == selected;
                                    view! { <option value=n.clone() selected=is>{n.clone()}</option> }
                                })
                                .collect_view()
                        }}
                    </select>
                </label>
                {move || match active.get() {
                    Some(Ok(cv)) => Some(view! { <span class="muted">"active config version " {cv.version}</span> }),
                    _ => None,
                }}
            </header>
            {body}
        </div>
    }
}
