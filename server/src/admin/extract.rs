//! What a handler takes from a request: a JSON body ([`AdminJson`]), query parameters
//! ([`AdminQuery`]) and path parameters ([`AdminPath`]). Each refuses bad input with
//! an [`AdminError`] in the admin API's JSON shape (axum's own extractors answer in
//! plain text), and each tells the OpenAPI document what it reads and which error it
//! can answer with before the handler runs (aide's `OperationInput`).

use std::sync::Arc;

use aide::generate::GenContext;
use aide::openapi::{
    MediaType, Operation, RequestBody, Response as ApiResponse, SchemaObject,
    StatusCode as ApiStatus,
};
use aide::operation::{ParamLocation, add_parameters, parameters_from_schema, set_body};
use aide::{OperationInput, OperationOutput};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::AdminError;

/// The 400 of every extractor: one description, since an operation documents one 400
/// whichever of its inputs is at fault.
const MALFORMED: &str = "The request is malformed: its body, a query parameter or a path parameter does not \
     parse or is refused (`param` names the field when one is at fault).";
use crate::AppState;
use crate::gateway::parse_body;

/// A JSON request body parsed into `T`; a malformed body is a 400 naming the field
/// at fault, an oversized one a 413.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for AdminJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AdminError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    e.body_text(),
                )
            } else {
                // The body could not be read: the client stopped sending it (the
                // body-read timeout) or the connection broke.
                AdminError::bad_param("body", "the request body could not be read")
            }
        })?;
        parse_body(&bytes).map(AdminJson).map_err(|e| AdminError {
            param: e.param.or_else(|| missing_field(&e.message)),
            ..AdminError::bad_request(e.message)
        })
    }
}

/// The field a serde "missing field `x`" message names: a missing field is at the
/// body's top level, where the path the parser reports is empty.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.split_once("missing field `")?.1;
    Some(rest.split_once('`')?.0.to_owned())
}

impl<T: JsonSchema> OperationInput for AdminJson<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let schema = ctx.schema.subschema_for::<T>();
        set_body(
            ctx,
            operation,
            RequestBody {
                content: [(
                    "application/json".to_owned(),
                    MediaType {
                        schema: Some(SchemaObject {
                            json_schema: schema,
                            example: None,
                            external_docs: None,
                        }),
                        ..MediaType::default()
                    },
                )]
                .into_iter()
                .collect(),
                required: true,
                ..RequestBody::default()
            },
        );
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        vec![
            error_response(ctx, operation, 400, MALFORMED),
            error_response(ctx, operation, 413, "The body is too large."),
        ]
    }
}

/// Query parameters parsed into `T`; a malformed or refused one is a 400.
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for AdminQuery<T> {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| AdminQuery(q))
            .map_err(|e| AdminError::bad_request(e.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for AdminQuery<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let schema = ctx.schema.subschema_for::<T>();
        let params = parameters_from_schema(ctx, schema, ParamLocation::Query);
        add_parameters(ctx, operation, params);
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        vec![error_response(ctx, operation, 400, MALFORMED)]
    }
}

/// Path parameters parsed into `T` (a struct with one field per `{parameter}` of the
/// route, so the document names them); one that does not parse is a 400. Whether
/// the thing named exists is the handler's to say (a 404, documented per route).
pub struct AdminPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for AdminPath<T> {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| AdminPath(p))
            .map_err(|e| AdminError::bad_request(e.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for AdminPath<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let schema = ctx.schema.subschema_for::<T>();
        let params = parameters_from_schema(ctx, schema, ParamLocation::Path);
        add_parameters(ctx, operation, params);
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        vec![error_response(ctx, operation, 400, MALFORMED)]
    }
}

/// A `status` response with the admin error body.
pub(super) fn error_response(
    ctx: &mut GenContext,
    operation: &mut Operation,
    status: u16,
    description: &str,
) -> (Option<ApiStatus>, ApiResponse) {
    let mut response = AdminError::operation_response(ctx, operation).unwrap_or_default();
    response.description = description.to_owned();
    (Some(ApiStatus::Code(status)), response)
}
