//! The admin API under `/admin/v1/`: configuration and its versions, publishing,
//! rollback, feature edits, breaker overrides, live health, the event stream, spend,
//! the audit log, feedback and keys. Bearer tokens with roles; the console hides what
//! a role may not do, and every route refuses it regardless.
//!
//! The routes are declared once, in [`ROUTES`]: each with its method, path, the
//! [`Action`] a caller's role must allow, and its handler with what the handler's
//! types cannot say about it. [`router`] builds from it both the axum routes (each
//! behind its guard, the one role check) and the OpenAPI document, so the routes,
//! the checks and the document cannot drift apart.
//!
//! What each file owns:
//! - `mod.rs`: the route table and the router's assembly;
//! - [`error`]: [`AdminError`], the one error type, and its JSON shape;
//! - [`auth`]: token authentication, the guard (the role check) and `whoami`;
//! - [`extract`]: the JSON body, query and path extractors, with errors in our shape;
//! - [`openapi`]: what the document says beyond the handlers' types, and why aide;
//! - one module per resource, each with its handlers: [`config`] (the active
//!   configuration, versions, validate, publish, rollback), [`features`] (a feature's
//!   edit, live traffic per feature), [`endpoints`] (health, breaker overrides,
//!   breaker events), [`events`] (the server-sent event stream), [`spend`] (JSON and
//!   CSV), [`audit`], [`feedback`], [`keys`] (gateway keys), [`tokens`] (admin tokens),
//!   [`requests`] (failed requests with their upstream detail).

mod audit;
mod auth;
mod config;
mod endpoints;
mod error;
mod events;
mod extract;
mod features;
mod feedback;
mod keys;
pub mod openapi;
mod requests;
mod spend;
#[cfg(test)]
mod tests;
mod tokens;

use std::sync::Arc;

use aide::axum::ApiRouter;
use aide::axum::routing::{ApiMethodRouter, delete_with, get_with, post_with, put_with};
use aide::openapi::OpenApi;
use axum::Json;
use axum::http::Method;
use axum::routing::get;
use router_core::admin::Action;

pub use error::{AdminError, AdminErrorBody};
pub use events::live_snapshot;
pub use extract::{AdminJson, AdminPath, AdminQuery};

/// The operator's credential policy, which the publish paths apply (`lib.rs` puts it
/// in every admin request's extensions).
pub type Policy = axum::Extension<Arc<crate::policy::CredentialPolicy>>;

use crate::AppState;
use openapi::{conflict, invalid_config, not_found, unavailable};

/// Where [`router`] is nested (`lib.rs`), and so the prefix of the document's paths.
pub const PREFIX: &str = "/admin/v1";

/// One admin route: its method and path, the action its guard requires, where its
/// guard reads the token, and its handler with its documentation.
pub struct AdminRoute {
    pub method: Method,
    pub path: &'static str,
    pub action: Action,
    /// The guard also takes the token as `?access_token=` (percent-decoded): only the
    /// event stream, which `EventSource` opens without headers.
    pub token_in_query: bool,
    pub handler: fn() -> ApiMethodRouter<Arc<AppState>>,
}

/// Every admin route.
pub static ROUTES: &[AdminRoute] = &[
    AdminRoute {
        method: Method::GET,
        path: "/whoami",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(auth::whoami, |op| {
                op.summary("Who the token belongs to, its role and what it may do.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/config",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(config::active, |op| {
                op.summary("The active configuration version.")
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/config",
        action: Action::Publish,
        token_in_query: false,
        handler: || {
            post_with(config::publish, |op| {
                op.summary("Publish a whole configuration as a new version (validated, audited, live at once).")
                    .with(conflict)
                    .with(invalid_config)
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/config/validate",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            post_with(config::validate, |op| {
                op.summary(
                    "Validate a configuration with the rules a publish applies; the problems are in the answer, not an error.",
                )
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/config/rollback",
        action: Action::Rollback,
        token_in_query: false,
        handler: || {
            post_with(config::rollback, |op| {
                op.summary("Republish an earlier version as a new version.")
                    .with(|op| not_found(op, "No version has the number `to_version`."))
                    .with(conflict)
                    .with(invalid_config)
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/config/versions",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(config::versions, |op| {
                op.summary("Configuration versions, newest first.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/config/versions/{version}",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(config::version, |op| {
                op.summary("One configuration version.")
                    .with(|op| not_found(op, "No version has this number."))
            })
        },
    },
    AdminRoute {
        method: Method::PUT,
        path: "/features/{name}",
        action: Action::EditFeature,
        token_in_query: false,
        handler: || {
            put_with(features::edit, |op| {
                op.summary("Set a feature's binding and experiment, as a new version.")
                    .with(|op| not_found(op, "No feature has this name."))
                    .with(conflict)
                    .with(invalid_config)
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/features/live",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(features::live, |op| {
                op.summary("Per-feature traffic of the last minute: observed split, fallback depth, errors.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/endpoints",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(endpoints::health, |op| {
                op.summary(
                    "Live health of every endpoint: breaker state and reason, percentiles, errors, spill.",
                )
            })
        },
    },
    AdminRoute {
        method: Method::PUT,
        path: "/endpoints/{name}/breaker",
        action: Action::Override,
        token_in_query: false,
        handler: || {
            put_with(endpoints::set_breaker, |op| {
                op.summary(
                    "Force a breaker open or closed, or hand it back to the signals (`auto`).",
                )
                .with(|op| not_found(op, "No endpoint has this name."))
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/breaker-events",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(endpoints::breaker_events, |op| {
                op.summary("Breaker transitions, newest first.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/events",
        action: Action::Read,
        // EventSource cannot send headers. Nowhere else: a token in a URL ends up in
        // proxies' logs and browser history.
        token_in_query: true,
        handler: || {
            get_with(events::stream, |op| {
                op.summary(
                    "Server-sent events: `snapshot` (a LiveSnapshot) every second, `breaker` (a BreakerEvent), \
                     `config` ({version}). Takes the token as `access_token` too (EventSource sends no headers).",
                )
                .with(events::document_access_token)
                .with(|op| {
                    unavailable(
                        op,
                        "As many event streams are open as the server serves (`--max-event-streams`).",
                    )
                })
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/spend",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(spend::report, |op| {
                op.summary("Spend over [`from_ms`, `to_ms`), grouped by `group_by`.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/spend.csv",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(spend::csv, |op| {
                op.summary("The spend report as a CSV download.")
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/requests/failed",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(requests::failed, |op| {
                op.summary(
                    "Failed requests, newest first, with what each attempt's endpoint said (credentials redacted): \
                     the detail the gateway's client did not get.",
                )
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/audit",
        action: Action::Read,
        token_in_query: false,
        handler: || {
            get_with(audit::entries, |op| {
                op.summary("The audit log, newest first.")
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/feedback",
        action: Action::Feedback,
        token_in_query: false,
        handler: || {
            post_with(feedback::record, |op| {
                op.summary(
                    "Thumbs up or down for a served request; feeds the serving endpoint's breaker.",
                )
                .with(|op| {
                    not_found(
                        op,
                        "No served request has this id (yet: the ledger is written in batches).",
                    )
                })
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/keys",
        action: Action::ManageKeys,
        token_in_query: false,
        handler: || {
            get_with(keys::list, |op| {
                op.summary("Gateway keys (never the keys themselves).")
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/keys",
        action: Action::ManageKeys,
        token_in_query: false,
        handler: || {
            post_with(keys::create, |op| {
                op.summary("Create a gateway key for a team; the key is in this answer only.")
            })
        },
    },
    AdminRoute {
        method: Method::DELETE,
        path: "/keys/{id}",
        action: Action::ManageKeys,
        token_in_query: false,
        handler: || {
            delete_with(keys::revoke, |op| {
                op.summary("Revoke a gateway key (refused at once on this router, within seconds on the others).")
                    .with(|op| not_found(op, "No key has this id."))
            })
        },
    },
    AdminRoute {
        method: Method::GET,
        path: "/tokens",
        action: Action::ManageTokens,
        token_in_query: false,
        handler: || {
            get_with(tokens::list, |op| {
                op.summary("Admin API tokens, revoked and expired ones included (never the tokens themselves).")
            })
        },
    },
    AdminRoute {
        method: Method::POST,
        path: "/tokens",
        action: Action::ManageTokens,
        token_in_query: false,
        handler: || {
            post_with(tokens::create, |op| {
                op.summary("Create an admin API token with a role and an optional expiry; the token is in this answer only.")
            })
        },
    },
    AdminRoute {
        method: Method::DELETE,
        path: "/tokens/{id}",
        action: Action::ManageTokens,
        token_in_query: false,
        handler: || {
            delete_with(tokens::revoke, |op| {
                op.summary("Revoke an admin API token (refused at once on this router, within seconds on the others).")
                    .with(|op| not_found(op, "No token has this id."))
            })
        },
    },
];

/// The admin router, to nest under [`PREFIX`]: each route behind its guard, the
/// OpenAPI document at `/openapi.json` (no token needed), and a 404 in our shape for
/// anything else.
pub fn router(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    let (router, document) = assemble(Some(&state));
    let document = Arc::new(serde_json::to_value(document).unwrap_or_else(|err| {
        tracing::error!(%err, "cannot serialise the admin API's OpenAPI document");
        serde_json::Value::Null
    }));
    router
        .route("/openapi.json", get(move || async move { Json(document) }))
        .fallback(|| async { AdminError::not_found("no such admin route") })
}

/// The routes of [`ROUTES`] and their document; behind their guards when `state` is
/// given (the document is the same either way).
fn assemble(state: Option<&Arc<AppState>>) -> (axum::Router<Arc<AppState>>, OpenApi) {
    let mut api = ApiRouter::new();
    for route in ROUTES {
        let mut methods = (route.handler)();
        if let Some(state) = state {
            methods = methods.route_layer(axum::middleware::from_fn_with_state(
                auth::Guarded {
                    state: state.clone(),
                    action: route.action,
                    token_in_query: route.token_in_query,
                },
                auth::guard,
            ));
        }
        api = api.api_route(route.path, methods);
    }
    let mut document = OpenApi::default();
    let router = api.finish_api_with(&mut document, |doc| openapi::describe(doc, ROUTES));
    (router, document)
}
