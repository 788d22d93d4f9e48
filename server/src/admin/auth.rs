//! Who is calling, and whether they may: admin token authentication and the admin
//! API's one role check.
//!
//! The check is [`guard`], a middleware that the route table puts in front of every
//! route with that route's [`Action`] (`mod.rs`): it runs before the handler and
//! before the body is read, answering 401 without a valid token and 403 when the
//! token's role may not do the action. Handlers never check roles: a handler that
//! runs has been allowed, and [`Caller`] only tells it who the caller is.

use std::sync::Arc;

use aide::OperationInput;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use router_core::admin::{Action, Role};

use super::AdminError;
use crate::AppState;
use crate::gateway::bearer;
use crate::keys::AdminIdentity;

/// The caller of an admin route, as the route's guard authenticated it.
pub struct Caller(pub AdminIdentity);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // Every route is assembled behind its guard, which leaves the identity here; a
        // handler without one was reached some other way and serves nothing.
        parts
            .extensions
            .get::<AdminIdentity>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| AdminError::internal("an admin route was reached without its guard"))
    }
}

/// Documented by the route table (every route has the guard's 401 and 403).
impl OperationInput for Caller {}

/// Every admin route's guard: authenticates, then checks the route's action.
pub async fn guard(
    State((state, action)): State<(Arc<AppState>, Action)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let identity = match authenticate(&state, &parts).and_then(|identity| {
        permit(identity.role, action)?;
        Ok(identity)
    }) {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    parts.extensions.insert(identity);
    next.run(Request::from_parts(parts, body)).await
}

/// The role check: whether `role` may do `action`, as a 403 if not.
pub fn permit(role: Role, action: Action) -> Result<(), AdminError> {
    if role.may(action) {
        Ok(())
    } else {
        Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("role `{}` may not {}", role.as_str(), action_words(action)),
        ))
    }
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Override => "override breakers",
        Action::Feedback => "send feedback",
        Action::EditFeature => "edit features",
        Action::Rollback => "roll back the configuration",
        Action::Publish => "publish whole configurations",
        Action::ManageKeys => "manage keys",
    }
}

/// Who is calling, from `Authorization: Bearer` or (for EventSource, which cannot
/// send headers) `?access_token=`.
fn authenticate(state: &AppState, parts: &Parts) -> Result<AdminIdentity, AdminError> {
    let from_query = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")));
    let Some(token) = bearer(&parts.headers).or(from_query) else {
        return Err(AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing admin token: send `Authorization: Bearer <token>`",
        ));
    };
    state.keys.admin_token(token).ok_or_else(|| {
        AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked admin token",
        )
    })
}

/// `GET /whoami`: the caller, their role, and every action it allows.
pub async fn whoami(Caller(caller): Caller) -> axum::Json<router_core::admin::WhoAmI> {
    axum::Json(router_core::admin::WhoAmI {
        permissions: Action::ALL
            .into_iter()
            .filter(|a| caller.role.may(*a))
            .collect(),
        name: caller.name,
        role: caller.role,
    })
}
