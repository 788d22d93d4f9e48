//! The admin API's one error type and its JSON shape:
//! `{"error": {"message", "type", "param", "code"}, "problems": [...], "current_version": n}`
//! (`problems` only for an invalid configuration, `current_version` only for a
//! conflict). The shape is [`AdminErrorBody`], which both writes the response and
//! gives the OpenAPI document its schema, so the two cannot differ.

use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as ApiResponse, SchemaObject};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use router_core::config::Problem;
use schemars::JsonSchema;
use serde::Serialize;

use crate::publish::PublishError;

/// An admin API failure.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub problems: Vec<Problem>,
    pub current_version: Option<i64>,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
            problems: Vec::new(),
            current_version: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// A 400 about one field or parameter, named in `param`.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::bad_request(message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        // The error may quote what a caller sent: escaped, one log line.
        tracing::error!(err = %router_core::logging::escaped(&err.to_string()), "admin API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: {err}"),
        )
    }

    /// The error body, as sent.
    pub fn body(&self) -> AdminErrorBody {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            409 => "conflict_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        AdminErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind,
                param: self.param.clone(),
                code: self.code,
            },
            problems: self.problems.clone(),
            current_version: self.current_version,
        }
    }
}

impl From<anyhow::Error> for AdminError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

impl From<router_core::api::Error> for AdminError {
    fn from(e: router_core::api::Error) -> Self {
        let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let code = if status == StatusCode::NOT_FOUND {
            "not_found"
        } else {
            "invalid_request"
        };
        Self {
            param: e.param,
            ..Self::new(status, code, e.message)
        }
    }
}

impl From<PublishError> for AdminError {
    fn from(e: PublishError) -> Self {
        let message = e.to_string();
        match e {
            PublishError::Invalid(problems) => Self {
                problems: problems.0,
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message)
            },
            PublishError::Unrunnable(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message)
            }
            PublishError::Conflict { current, .. } => Self {
                current_version: Some(current),
                ..Self::new(StatusCode::CONFLICT, "conflict", message)
            },
            PublishError::Store(err) => Self::internal(format!("{err:#}")),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// What an admin API error looks like on the wire.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AdminErrorBody {
    pub error: ErrorDetail,
    /// An invalid configuration (422): every problem, with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// A conflict (409): the version that is active now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

/// The error itself, in the OpenAI error shape the gateway uses too.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `authentication_error`, `permission_error`, `conflict_error`,
    /// `invalid_request_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The field or parameter at fault, when there is one.
    pub param: Option<String>,
    /// A stable code: `unauthorized`, `forbidden`, `invalid_request`, `not_found`,
    /// `conflict`, `invalid_config`, `payload_too_large`, `internal`.
    pub code: &'static str,
}

/// Which statuses an operation answers with an error is said per route (see
/// `openapi.rs`), not by the type: this only gives the body's schema.
impl aide::OperationOutput for AdminError {
    type Inner = AdminErrorBody;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<ApiResponse> {
        Some(ApiResponse {
            description: "An error, in the admin API's error shape.".into(),
            content: [(
                "application/json".to_owned(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: ctx.schema.subschema_for::<AdminErrorBody>(),
                        example: None,
                        external_docs: None,
                    }),
                    ..MediaType::default()
                },
            )]
            .into_iter()
            .collect(),
            ..ApiResponse::default()
        })
    }
}
