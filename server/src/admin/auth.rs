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

/// What a route's guard knows: the state, the route's action, and whether the route
/// takes the token in its query (the route table's `token_in_query`).
#[derive(Clone)]
pub struct Guarded {
    pub state: Arc<AppState>,
    pub action: Action,
    pub token_in_query: bool,
}

/// Every admin route's guard: authenticates, then checks the route's action.
pub async fn guard(
    State(Guarded {
        state,
        action,
        token_in_query,
    }): State<Guarded>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let identity = match authenticate(&state, &parts, token_in_query).and_then(|identity| {
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
        Action::ManageKeys => "manage gateway keys",
        Action::ManageTokens => "manage admin tokens",
    }
}

/// Who is calling, from `Authorization: Bearer`, or on a route that takes it there
/// (the event stream: EventSource cannot send headers), `?access_token=`,
/// percent-decoded. Anywhere else a token in the query is refused, not ignored, so a
/// client that leaks it into URLs finds out at once.
fn authenticate(
    state: &AppState,
    parts: &Parts,
    token_in_query: bool,
) -> Result<AdminIdentity, AdminError> {
    let unauthorized = |message: &str| {
        AdminError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
    };
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(percent_decoded)
    });
    let from_query = match from_query {
        Some(_) if !token_in_query => {
            return Err(unauthorized(
                "admin tokens are not accepted in the query string here: send `Authorization: Bearer <token>`",
            ));
        }
        Some(None) => {
            return Err(unauthorized(
                "the `access_token` parameter is not valid percent-encoding",
            ));
        }
        Some(Some(token)) => Some(token),
        None => None,
    };
    let Some(token) = bearer(&parts.headers).map(str::to_owned).or(from_query) else {
        return Err(unauthorized(
            "missing admin token: send `Authorization: Bearer <token>`",
        ));
    };
    state
        .keys
        .admin_token(&token)
        .ok_or_else(|| unauthorized("unknown, revoked or expired admin token"))
}

/// A query value's text: `%XX` decoded, `+` a space; `None` if that is not UTF-8 or
/// an escape is broken.
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(
            percent_decoded("cba-a%2Bb%2F%3D").as_deref(),
            Some("cba-a+b/=")
        );
        assert_eq!(percent_decoded("a+b").as_deref(), Some("a b"));
        assert_eq!(
            percent_decoded("plain-token_1").as_deref(),
            Some("plain-token_1")
        );
        assert_eq!(percent_decoded("bad%2"), None);
        assert_eq!(percent_decoded("bad%zz"), None);
        assert_eq!(percent_decoded("%ff"), None);
    }
}
