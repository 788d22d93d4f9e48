//! The server-sent event stream the console's live views run on: a `snapshot`
//! ([`LiveSnapshot`]) every second, each `breaker` transition ([`BreakerEvent`]) as it
//! happens, and `config` (`{"version": n}`) when a version goes live.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{
    MediaType, Operation, Parameter, ParameterData, ParameterSchemaOrContent, QueryStyle,
    ReferenceOr, Response as ApiResponse, SchemaObject, StatusCode as ApiStatus,
};
use aide::transform::TransformOperation;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use router_core::admin::{BreakerEvent, LiveSnapshot};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::AdminError;
use crate::{AppState, unix_ms};

/// The live state the console's overview shows, as of now.
pub fn live_snapshot(state: &AppState) -> LiveSnapshot {
    let snapshot = state.engine.snapshot();
    let now = unix_ms();
    LiveSnapshot {
        at_ms: now,
        config_version: snapshot.version,
        endpoints: state.engine.health(),
        features: state.live.features(&snapshot.config, now),
        ledger: state.ledger.stats(),
        continuations: state.live.recent_continuations(),
    }
}

/// An open event stream (`text/event-stream`).
pub struct EventStream<S>(Sse<S>);

impl<S> IntoResponse for EventStream<S>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<S> OperationOutput for EventStream<S> {
    type Inner = LiveSnapshot;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<ApiResponse> {
        Some(ApiResponse {
            description: "An event stream; the `data` of a `snapshot` event is a LiveSnapshot."
                .into(),
            content: [(
                "text/event-stream".to_owned(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: ctx.schema.subschema_for::<LiveSnapshot>(),
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

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(ApiStatus::Code(200)), r))
            .into_iter()
            .collect()
    }
}

/// The `access_token` query parameter the guard accepts on this route (read by the
/// guard, not the handler, so no extractor documents it).
pub fn document_access_token(mut op: TransformOperation<'_>) -> TransformOperation<'_> {
    let schema = aide::generate::in_context(|ctx| ctx.schema.subschema_for::<String>());
    op.inner_mut()
        .parameters
        .push(ReferenceOr::Item(Parameter::Query {
            parameter_data: ParameterData {
                name: "access_token".to_owned(),
                description: Some(
                    "The admin token, for clients that cannot send headers (EventSource)."
                        .to_owned(),
                ),
                required: false,
                format: ParameterSchemaOrContent::Schema(SchemaObject {
                    json_schema: schema,
                    example: None,
                    external_docs: None,
                }),
                extensions: Default::default(),
                deprecated: None,
                example: None,
                examples: Default::default(),
                explode: None,
            },
            allow_reserved: false,
            style: QueryStyle::Form,
            allow_empty_value: None,
        }));
    op
}

struct Feed {
    state: Arc<AppState>,
    breakers: broadcast::Receiver<BreakerEvent>,
    configs: broadcast::Receiver<i64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    tick: tokio::time::Interval,
}

/// A feed holds one of the server's event-stream places until it ends (the client
/// left, or the server shuts down).
impl Drop for Feed {
    fn drop(&mut self) {
        self.state.event_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes one of the `limits.max_event_streams` places, if one is free.
fn take_place(state: &AppState) -> bool {
    let max = state.limits.max_event_streams;
    state
        .event_streams
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
            (open < max).then_some(open + 1)
        })
        .is_ok()
}

/// The event stream: refused (503) when `limits.max_event_streams` are open already,
/// and ended when the server begins to shut down, so a console left open never holds
/// a shutdown up.
pub async fn stream(
    State(state): State<Arc<AppState>>,
) -> Result<EventStream<impl Stream<Item = Result<Event, Infallible>>>, AdminError> {
    if !take_place(&state) {
        return Err(AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "{} event streams are open, the most this server serves (--max-event-streams): \
                 close one (a console in another tab?) and try again",
                state.limits.max_event_streams
            ),
        ));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let feed = Feed {
        breakers: state.sink_events.subscribe(),
        configs: state.config_events.subscribe(),
        shutdown: state.shutdown.subscribe(),
        state,
        tick,
    };
    let events = futures_util::stream::unfold(feed, |mut f| async move {
        loop {
            let event = tokio::select! {
                _ = f.shutdown.wait_for(|closing| *closing) => return None,
                _ = f.tick.tick() => {
                    Event::default().event("snapshot").json_data(live_snapshot(&f.state)).ok()
                }
                e = f.breakers.recv() => match e {
                    Ok(e) => Event::default().event("breaker").json_data(&e).ok(),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").json_data(json!({"missed": n})).ok(),
                    Err(RecvError::Closed) => return None,
                },
                v = f.configs.recv() => match v {
                    Ok(v) => Event::default().event("config").json_data(json!({"version": v})).ok(),
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return None,
                },
            };
            if let Some(event) = event {
                return Some((Ok(event), f));
            }
        }
    });
    Ok(EventStream(Sse::new(events).keep_alive(
        KeepAlive::new().interval(Duration::from_secs(15)),
    )))
}
