use leptos::prelude::*;
use router_core::admin::ConfigVersion;

use crate::api::ApiError;
use crate::components::{ChangeList, ErrorBox};
use crate::context::session::use_session;
use crate::platform;
use router_core::config::diff::config_changes;

/// One version: what restoring it would change against the active version, and its
/// whole configuration.
#[component]
pub fn VersionDetail(version: i64, active: Option<i64>) -> impl IntoView {
    let session = use_session();
    let loaded = RwSignal::new(None::<Result<(ConfigVersion, Option<ConfigVersion>), ApiError>>);
    if let Some(api) = session.api_now() {
        leptos::task::spawn_local(async move {
            let this = api.version(version).await;
            let current = match active {
                Some(a) if a != version => api.version(a).await.map(Some),
                _ => Ok(None),
            };
            let r = this.and_then(|t| current.map(|c| (t, c)));
            if let Err(e) = &r {
                session.report(e);
            }
            loaded.set(Some(r));
        });
    }
    view! {
        <section class="panel version-detail" id="version-detail">
            {move || match loaded.get() {
                None => view! { <p class="placeholder">{format!("Loading version {version}…")}</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok((v, current))) => {
                    let json = serde_json::to_string_pretty(&v.config).unwrap_or_default();
                    let diff = current.as_ref().map(|c| (c.version, config_changes(&c.config, &v.config)));
                    view! {
                        <header class="panel-head">
                            <h3>{format!("Version {}", v.version)}</h3>
                            <span class="muted">
                                {format!("{} · {}", v.author, platform::local_datetime(v.created_at_ms))}
                            </span>
                        </header>
                        <p>{v.message.clone()}</p>
                        {match diff {
                            Some((a, Ok(d))) => view! {
                                <h4>{format!("Rolling back from version {a} to this would change")}</h4>
                                <ChangeList changes=d empty="Nothing: it is identical to the active configuration." />
                            }
                                .into_any(),
                            Some((_, Err(e))) => view! {
                                <p class="error small-text">{format!("cannot compare with the active version: {e}")}</p>
                            }
                                .into_any(),
                            None => view! { <p class="muted">"This is the active version."</p> }.into_any(),
                        }}
                        <details>
                            <summary>"Whole configuration (JSON)"</summary>
                            <pre class="json">{json}</pre>
                        </details>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}
