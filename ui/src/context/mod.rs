//! Shared state, one context module per shared resource: the session (who, which
//! router) and the live event stream.

pub mod live;
pub mod session;

use std::future::Future;

use leptos::prelude::*;

use crate::api::{Api, ApiError};

/// Fetches with `fetch` now, and again whenever a new configuration version is
/// published, the live stream reconnects, or `reload` is bumped. A failure is
/// reported to the session (a 401 signs out) before `done` receives the result.
pub fn refetch<T, Fut>(
    reload: RwSignal<u32>,
    fetch: impl Fn(Api) -> Fut + 'static,
    done: impl Fn(Result<T, ApiError>) + Copy + 'static,
) where
    T: 'static,
    Fut: Future<Output = Result<T, ApiError>> + 'static,
{
    let session = session::use_session();
    let live = live::use_live();
    Effect::new(move |_| {
        live.config_version.track();
        live.epoch.track();
        reload.track();
        let Some(api) = session.api_now() else {
            return;
        };
        let pending = fetch(api);
        leptos::task::spawn_local(async move {
            let result = pending.await;
            if let Err(e) = &result {
                session.report(e);
            }
            done(result);
        });
    });
}
