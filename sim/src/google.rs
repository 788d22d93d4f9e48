//! Google's API error format, `{"error":{"code","message","status","details"}}`: what
//! every Google front end the simulators stand in for answers with — Vertex AI (for
//! Gemini and for its own errors in front of Claude) and the identity endpoints (STS,
//! IAM credentials). Its own module because Gemini, Claude-on-Vertex and the identity
//! endpoints all use it, and none of them owns it.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::endpoint::{SimError, unanswered};
use crate::faults::ErrorClass;

/// The HTTP status, the `google.rpc.Code` name and the message Google's front end
/// answers `e` with.
pub(crate) fn status(e: &SimError) -> (StatusCode, &'static str, String) {
    match e {
        SimError::Injected {
            class: ErrorClass::Throttle,
            ..
        }
        | SimError::Capacity { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Resource exhausted. Please try again later.".into(),
        ),
        // `reset` and `silent` are never rendered (see `unanswered`); a 500 if they were.
        SimError::Injected {
            class: ErrorClass::ServerError | ErrorClass::Reset | ErrorClass::Silent,
            ..
        } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.".into(),
        ),
        SimError::Injected {
            class: ErrorClass::Timeout,
            ..
        } => (
            StatusCode::GATEWAY_TIMEOUT,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.".into(),
        ),
        SimError::Injected {
            class: ErrorClass::Overloaded,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.".into(),
        ),
        SimError::Injected {
            class: ErrorClass::Unavailable,
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.".into(),
        ),
        SimError::ContextLength {
            prompt_tokens,
            limit,
        } => (
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!(
                "The input token count ({prompt_tokens}) exceeds the maximum number of tokens allowed ({limit})."
            ),
        ),
        SimError::BadRequest { message, .. } => {
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message.clone())
        }
        SimError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", m.clone()),
        SimError::Forbidden(m) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED", m.clone()),
        SimError::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m.clone()),
    }
}

/// A `SimError` in Google's error format.
pub fn error_response(e: &SimError) -> Response {
    if let Some(unanswered) = unanswered(e) {
        return unanswered;
    }
    let (code, status, message) = status(e);
    let mut body =
        json!({ "error": { "code": code.as_u16(), "message": message, "status": status } });
    if let SimError::BadRequest {
        param: Some(field),
        message,
    } = e
    {
        body["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": field, "description": message }],
        }]);
    }
    (code, axum::Json(body)).into_response()
}
