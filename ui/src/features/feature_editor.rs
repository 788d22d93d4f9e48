use leptos::prelude::*;
use router_core::admin::{ConfigVersion, FeatureEdit, PublishResult};
use router_core::config::{ExperimentConfig, Problem, Problems, VariantConfig};

use super::binding_editor::{BindingEditor, EndpointChoice};
use super::draft::{self, Draft, feature_path};
use super::split_editor::SplitEditor;
use crate::api::ApiError;
use crate::components::{ChangeList, ErrorBox, FieldProblems};
use crate::context::session::use_session;

/// Edits a feature's binding and experiment split against the version the edit
/// started from (`base`); validates every keystroke with the server's rules; shows
/// the diff; publishes with `base_version`, so a concurrent publish is refused (409)
/// instead of overwritten. A refused publish leaves the form as it was.
#[component]
pub fn FeatureEditor(
    name: String,
    active: RwSignal<Option<Result<ConfigVersion, ApiError>>>,
    base: RwSignal<Option<ConfigVersion>>,
    draft: RwSignal<Option<Draft>>,
    /// Drops the edit and starts again from the active version.
    start_over: Callback<()>,
    /// After a successful publish (the page rebases on the new version).
    on_published: Callback<()>,
) -> impl IntoView {
    let session = use_session();
    let name = StoredValue::new(name);
    let message = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let result = RwSignal::new(None::<Result<PublishResult, ApiError>>);
    // Problems the server reported on the last publish (until the next edit).
    let server_problems = RwSignal::new(Vec::<Problem>::new());

    let edited = Memo::new(move |_| {
        let b = base.get()?;
        let d = draft.get()?;
        Some(d.apply(&b.config, &name.get_value()))
    });
    let local_problems =
        Memo::new(move |_| edited.with(|c| c.as_ref().map(draft::problems).unwrap_or_default()));
    let problems = Signal::derive(move || {
        let mut all = local_problems.get();
        for p in server_problems.get() {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    });
    let changes = Memo::new(move |_| {
        let b = base.get();
        edited.with(|e| match (b, e) {
            (Some(b), Some(e)) => draft::changes(&b.config, e),
            _ => Ok(Vec::new()),
        })
    });
    // Nothing to publish: no change, or the diff could not be made.
    let unchanged = move || changes.with(|c| c.as_ref().map_or(true, Vec::is_empty));
    let choices = Memo::new(move |_| {
        base.with(|b| {
            b.iter()
                .flat_map(|b| b.config.endpoints.iter())
                .map(|e| EndpointChoice {
                    name: e.name.clone(),
                    detail: format!("{} · {} · {}", e.provider.as_str(), e.region, e.model),
                })
                .collect::<Vec<_>>()
        })
    });
    let update = move |f: Box<dyn FnOnce(&mut Draft)>| {
        let Some(mut d) = draft.get_untracked() else {
            return;
        };
        let before = d.clone();
        f(&mut d);
        if d != before {
            server_problems.set(Vec::new());
            draft.set(Some(d));
        }
    };

    let feature_key = feature_path(&name.get_value());
    let binding_path = format!("{feature_key}.binding");
    let experiment_path = format!("{feature_key}.experiment");
    let other_problems = Signal::derive({
        let (b, e) = (binding_path.clone(), experiment_path.clone());
        move || {
            let all = Problems(problems.get());
            let shown: Vec<&Problem> = all.under(&b).chain(all.under(&e)).collect();
            all.0
                .iter()
                .filter(|p| !shown.contains(p))
                .cloned()
                .collect::<Vec<_>>()
        }
    });
    let binding = Signal::derive(move || {
        draft.with(|d| d.as_ref().map(|d| d.binding.clone()).unwrap_or_default())
    });
    let has_experiment =
        Memo::new(move |_| draft.with(|d| d.as_ref().is_some_and(|d| d.experiment.is_some())));
    let experiment = Signal::derive(move || {
        draft
            .with(|d| d.as_ref().and_then(|d| d.experiment.clone()))
            .unwrap_or_else(|| router_core::config::ExperimentConfig {
                id: String::new(),
                variants: Vec::new(),
            })
    });

    let newer = move || {
        let b = base.with(|b| b.as_ref().map(|b| b.version))?;
        match active.get() {
            Some(Ok(a)) if a.version != b => Some((b, a.version, a.author)),
            _ => None,
        }
    };
    let can_publish = move || {
        !busy.get()
            && !unchanged()
            && local_problems.with(Vec::is_empty)
            && draft.with(Option::is_some)
    };

    let publish = move || {
        let (Some(api), Some(b), Some(d)) = (
            session.api_now(),
            base.get_untracked(),
            draft.get_untracked(),
        ) else {
            return;
        };
        let edit = FeatureEdit {
            binding: d.binding,
            experiment: d.experiment,
            base_version: b.version,
            message: message.get_untracked().trim().to_owned(),
        };
        busy.set(true);
        result.set(None);
        leptos::task::spawn_local(async move {
            let r = api.edit_feature(&name.get_value(), &edit).await;
            match &r {
                Ok(_) => {
                    message.set(String::new());
                    server_problems.set(Vec::new());
                    on_published.run(());
                }
                Err(e) => {
                    session.report(e);
                    server_problems.set(e.problems().to_vec());
                }
            }
            result.set(Some(r));
            busy.set(false);
        });
    };

    view! {
        <section class="panel editor" id="feature-editor">
            <header class="panel-head">
                <h3>"Edit"</h3>
                <span class="muted">
                    {move || base.with(|b| b.as_ref().map(|b| format!("from version {}", b.version)))}
                </span>
            </header>
            {move || {
                newer()
                    .map(|(from, now, author)| {
                        view! {
                            <div class="notice-box" id="newer-version">
                                {format!(
                                    "Version {now} (by {author}) was published after you started editing from version {from}: publishing this edit will be refused. ",
                                )}
                                <button type="button" class="small" on:click=move |_| start_over.run(())>
                                    {format!("Discard my edit and start from version {now}")}
                                </button>
                            </div>
                        }
                    })
            }}
            <h4>"Binding"</h4>
            <p class="hint">
                {move || if has_experiment.get() {
                    "Outside the experiment (what the feature returns to if the experiment is removed); may be empty."
                } else {
                    "Primary first, then backups in the order they are tried."
                }}
            </p>
            <BindingEditor
                path=binding_path.clone()
                binding=binding
                on_change=Callback::new(move |b: Vec<String>| update(Box::new(move |d| d.binding = b)))
                choices=choices
                problems=problems
            />
            <h4>"Experiment split"</h4>
            {move || {
                if has_experiment.get() {
                    view! {
                        <SplitEditor
                            feature=name.get_value()
                            path=experiment_path.clone()
                            experiment=experiment
                            on_change=Callback::new(move |e| update(Box::new(move |d| d.experiment = Some(e))))
                            choices=choices
                            problems=problems
                        />
                        <button
                            id="end-experiment"
                            type="button"
                            class="small"
                            title="Serve the feature's own binding again (it must not be empty)"
                            on:click=move |_| update(Box::new(|d| d.experiment = None))
                        >
                            "End the experiment"
                        </button>
                    }
                        .into_any()
                } else {
                    view! {
                        <p class="muted small-text">"This feature runs no experiment."</p>
                        <button
                            id="start-experiment"
                            type="button"
                            class="small"
                            title="Split traffic between the current binding (control, 100 %) and a new variant (0 %)"
                            on:click=move |_| {
                                let feature = name.get_value();
                                update(Box::new(move |d| {
                                    d.experiment = Some(ExperimentConfig {
                                        id: format!("{feature}-experiment"),
                                        variants: vec![
                                            VariantConfig {
                                                name: "control".into(),
                                                percent: 100.0,
                                                binding: d.binding.clone(),
                                            },
                                            VariantConfig {
                                                name: "treatment".into(),
                                                percent: 0.0,
                                                binding: Vec::new(),
                                            },
                                        ],
                                    });
                                }))
                            }
                        >
                            "Start an experiment"
                        </button>
                    }
                        .into_any()
                }
            }}
            {move || {
                let others = other_problems.get();
                (!others.is_empty())
                    .then(|| {
                        view! {
                            <div class="other-problems">
                                <h4>"Other problems in this configuration"</h4>
                                <FieldProblems problems=Signal::derive(move || others.clone()) />
                            </div>
                        }
                    })
            }}
            <h4>"Changes"</h4>
            <div id="edit-diff">
                {move || match changes.get() {
                    Ok(changes) => view! { <ChangeList changes=changes empty="No changes yet: the edit equals the active version." /> }.into_any(),
                    Err(e) => view! { <p class="error small-text">{e}</p> }.into_any(),
                }}
            </div>
            <div class="publish-row">
                <input
                    id="publish-message"
                    type="text"
                    placeholder="Why? (shown in the history and the audit log)"
                    bind:value=message
                />
                <button
                    id="publish-button"
                    type="button"
                    class="primary"
                    disabled=move || !can_publish()
                    title=move || {
                        if !local_problems.with(Vec::is_empty) {
                            "Fix the problems first"
                        } else if unchanged() {
                            "Nothing to publish"
                        } else {
                            "Publish as a new version"
                        }
                    }
                    on:click=move |_| publish()
                >
                    {move || if busy.get() { "Publishing…" } else { "Publish" }}
                </button>
                <button
                    type="button"
                    class="ghost"
                    disabled=move || busy.get() || unchanged()
                    on:click=move |_| {
                        result.set(None);
                        server_problems.set(Vec::new());
                        start_over.run(());
                    }
                >
                    "Discard"
                </button>
            </div>
            <div id="publish-result" aria-live="polite">
                {move || {
                    result
                        .get()
                        .map(|r| match r {
                            Ok(r) => view! {
                                <div class="success-box">
                                    <p>{format!("Published version {}.", r.version)}</p>
                                    <ChangeList changes=r.changes />
                                </div>
                            }
                                .into_any(),
                            Err(e) => {
                                let conflict = e.code() == Some("conflict");
                                view! {
                                    <ErrorBox error=e />
                                    {conflict.then(|| view! {
                                        <button type="button" class="small" on:click=move |_| start_over.run(())>
                                            "Discard my edit and start from the active version"
                                        </button>
                                    })}
                                }
                                    .into_any()
                            }
                        })
                }}
            </div>
        </section>
    }
}
