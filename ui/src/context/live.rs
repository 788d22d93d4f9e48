//! The live event stream: endpoint health, feature traffic and breaker transitions,
//! updated every second from `GET /admin/v1/events` (server-sent events).
//!
//! - At start, and again after every reconnection, the current state is fetched over
//!   plain HTTP (`/endpoints`, `/features/live`, `/breaker-events`) so the pages never
//!   wait for the stream, and nothing missed while disconnected stays missing.
//! - `EventSource` reconnects by itself after a dropped connection; when it gives up
//!   (the router answered with an error status) a new one is opened after a pause.
//!   A watchdog also treats a stream that stopped delivering snapshots as lost.
//! - While the link is down the last data stays on screen, greyed, under a banner:
//!   an outage of the console's own connection must never look like empty charts.
//! - Inside the desktop app: a notification when a breaker opens, and the overall
//!   status (`ok`/`degraded`/`down`) whenever it changes.

use std::cell::RefCell;
use std::time::Duration;

use leptos::prelude::*;
use router_core::admin::{
    BreakerEvent, ContinuationEvent, EndpointHealth, FeatureLive, LedgerStats, LiveSnapshot,
    StateName,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::api::{Api, ApiError};
use crate::context::session::Session;
use crate::logic::status::{self, Level};
use crate::platform::{self, desktop};

/// No snapshot for this long while "live" means the stream is stuck.
const STALE_AFTER_MS: f64 = 4_500.0;
/// Stuck for this long: drop the stream and open a new one.
const REOPEN_AFTER_MS: f64 = 15_000.0;
/// After the router refused the stream, wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// Breaker transitions kept for the timeline.
const MAX_EVENTS: usize = 300;
/// How far back the timeline starts.
const TIMELINE_SPAN_MS: f64 = 24.0 * 3_600_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The first connection is being made.
    Connecting,
    Live,
    /// The connection was lost; the data shown is the last received.
    Reconnecting,
}

impl Link {
    /// The text of `#connection-status`.
    pub fn label(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Reconnecting => "reconnecting",
        }
    }
}

#[derive(Clone, Copy)]
pub struct Live {
    pub link: RwSignal<Link>,
    pub endpoints: RwSignal<Option<Vec<EndpointHealth>>>,
    pub features: RwSignal<Option<Vec<FeatureLive>>>,
    pub ledger: RwSignal<Option<LedgerStats>>,
    /// Local time (ms) the endpoint data was received: durations in the data are
    /// relative to it, which keeps countdowns right whatever the clock skew.
    pub received_ms: RwSignal<f64>,
    /// Local time, ticking every second (countdowns, "for 3m 12s").
    pub now_ms: RwSignal<f64>,
    /// Breaker transitions, newest first.
    pub events: RwSignal<Vec<BreakerEvent>>,
    /// Recent stream continuations, newest last (as the server keeps them).
    pub continuations: RwSignal<Vec<ContinuationEvent>>,
    /// The last failure to load the current state over HTTP.
    pub load_error: RwSignal<Option<ApiError>>,
    /// The active configuration version, as the stream last reported it.
    pub config_version: RwSignal<Option<i64>>,
    /// Bumped on every reconnection: pages re-fetch what they show.
    pub epoch: RwSignal<u64>,
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

impl Live {
    /// One endpoint's latest health (tracked).
    pub fn endpoint(&self, name: &str) -> Option<EndpointHealth> {
        self.endpoints
            .with(|e| e.as_ref()?.iter().find(|e| e.name == name).cloned())
    }

    pub fn feature(&self, name: &str) -> Option<FeatureLive> {
        self.features
            .with(|f| f.as_ref()?.iter().find(|f| f.feature == name).cloned())
    }

    /// Replaces one endpoint (an override's answer) until the next snapshot.
    pub fn put_endpoint(&self, health: EndpointHealth) {
        self.endpoints.update(|list| {
            if let Some(list) = list {
                match list.iter_mut().find(|e| e.name == health.name) {
                    Some(e) => *e = health,
                    None => list.push(health),
                }
            }
        });
    }

    fn add_events(&self, mut new: Vec<BreakerEvent>) {
        self.events.update(|events| {
            new.retain(|n| !events.contains(n));
            if new.is_empty() {
                return;
            }
            events.extend(new);
            events.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
            events.truncate(MAX_EVENTS);
        });
    }
}

/// The stream's JavaScript side; one at a time, closed on sign-out.
struct Stream {
    source: web_sys::EventSource,
    _handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

thread_local! {
    static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
    static GENERATION: RefCell<u64> = const { RefCell::new(0) };
}

fn close_stream() {
    if let Some(stream) = STREAM.with(|s| s.borrow_mut().take()) {
        stream.source.close();
    }
}

fn current_generation() -> u64 {
    GENERATION.with(|g| *g.borrow())
}

/// Creates the live context for a signed-in `api` and starts the stream. Call inside
/// the signed-in part of the app: everything stops when that part is disposed.
pub fn provide_live(api: Api, session: Session) -> Live {
    let live = Live {
        link: RwSignal::new(Link::Connecting),
        endpoints: RwSignal::new(None),
        features: RwSignal::new(None),
        ledger: RwSignal::new(None),
        received_ms: RwSignal::new(platform::now_ms()),
        now_ms: RwSignal::new(platform::now_ms()),
        events: RwSignal::new(Vec::new()),
        continuations: RwSignal::new(Vec::new()),
        load_error: RwSignal::new(None),
        config_version: RwSignal::new(None),
        epoch: RwSignal::new(0),
    };
    provide_context(live);

    let generation = GENERATION.with(|g| {
        *g.borrow_mut() += 1;
        *g.borrow()
    });
    resync(live, api.clone(), session);
    open_stream(live, api.clone(), session, generation);

    // The clock and the watchdog.
    let ticker = set_interval_with_handle(
        {
            let api = api.clone();
            move || {
                if current_generation() != generation {
                    return;
                }
                let now = platform::now_ms();
                live.now_ms.set(now);
                let silent = now - live.received_ms.get_untracked();
                match live.link.get_untracked() {
                    Link::Live if silent > STALE_AFTER_MS => live.link.set(Link::Reconnecting),
                    Link::Reconnecting | Link::Connecting if silent > REOPEN_AFTER_MS => {
                        // Stuck: start over (and do not retry every second).
                        live.received_ms.set(now);
                        open_stream(live, api.clone(), session, generation);
                    }
                    _ => {}
                }
            }
        },
        Duration::from_secs(1),
    )
    .ok();

    // The desktop status, whenever the level changes (once there is something to say).
    let level = Memo::new(move |_| overall(live).map(|(level, _)| level));
    Effect::new(move |_| {
        let Some(level): Option<Level> = level.get() else {
            return;
        };
        let summary = untrack(|| overall(live).map(|(_, s)| s)).unwrap_or_default();
        desktop::set_status(level.as_str(), &summary);
    });

    on_cleanup(move || {
        GENERATION.with(|g| *g.borrow_mut() += 1);
        if let Some(t) = ticker {
            t.clear();
        }
        close_stream();
    });
    live
}

/// `None` until the first data arrived (unless the connection is already lost).
fn overall(live: Live) -> Option<(Level, String)> {
    let connected = live.link.get() != Link::Reconnecting;
    let states: Option<Vec<StateName>> = live
        .endpoints
        .with(|e| Some(e.as_ref()?.iter().map(|e| e.breaker.state).collect()));
    match states {
        Some(states) => Some(status::overall(connected, &states)),
        None if !connected => Some(status::overall(false, &[])),
        None => None,
    }
}

/// Fetches the current state over HTTP (at start and after a reconnection).
fn resync(live: Live, api: Api, session: Session) {
    leptos::task::spawn_local(async move {
        let since = (platform::now_ms() - TIMELINE_SPAN_MS) as i64;
        let (endpoints, features, events) = (
            api.endpoints().await,
            api.features_live().await,
            api.breaker_events(since, MAX_EVENTS as u32).await,
        );
        let mut error = None;
        match endpoints {
            Ok(list) => {
                live.endpoints.set(Some(list));
                live.received_ms.set(platform::now_ms());
            }
            Err(e) => error = Some(e),
        }
        match features {
            Ok(list) => live.features.set(Some(list)),
            Err(e) => error = error.or(Some(e)),
        }
        match events {
            Ok(list) => live.add_events(list),
            Err(e) => error = error.or(Some(e)),
        }
        if let Some(e) = &error {
            session.report(e);
        }
        live.load_error.set(error);
    });
}

fn open_stream(live: Live, api: Api, session: Session, generation: u64) {
    close_stream();
    let source = match web_sys::EventSource::new(&api.events_url()) {
        Ok(s) => s,
        Err(e) => {
            live.link.set(Link::Reconnecting);
            leptos::logging::warn!(
                "cannot open the event stream: {}",
                crate::api::js_message(&e)
            );
            return;
        }
    };
    let mut handlers: Vec<Closure<dyn FnMut(web_sys::Event)>> = Vec::new();
    let mut on = |name: &str, f: Box<dyn FnMut(web_sys::Event)>| {
        let closure = Closure::wrap(f);
        let _ = source.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
        handlers.push(closure);
    };

    {
        let api = api.clone();
        on(
            "open",
            Box::new(move |_| {
                if current_generation() != generation {
                    return;
                }
                live.link.set(Link::Live);
                live.received_ms.set(platform::now_ms());
                // A reconnection: fetch what was missed, let pages refresh.
                if live.epoch.get_untracked() > 0 {
                    resync(live, api.clone(), session);
                }
                live.epoch.update(|e| *e += 1);
            }),
        );
    }
    {
        let api = api.clone();
        let source = source.clone();
        on(
            "error",
            Box::new(move |_| {
                if current_generation() != generation {
                    return;
                }
                // The browser retries by itself (readyState CONNECTING) after a drop.
                live.link.set(Link::Reconnecting);
                // CLOSED: the browser will not retry (an error status, a bad token):
                // check the token, then try again after a pause.
                if source.ready_state() == web_sys::EventSource::CLOSED {
                    let check = api.clone();
                    leptos::task::spawn_local(async move {
                        if let Err(e) = check.whoami().await {
                            session.report(&e);
                        }
                    });
                    let api = api.clone();
                    set_timeout(
                        move || {
                            if current_generation() == generation
                                && live.link.get_untracked() != Link::Live
                            {
                                open_stream(live, api, session, generation);
                            }
                        },
                        RETRY_AFTER,
                    );
                }
            }),
        );
    }
    on(
        "snapshot",
        Box::new(move |event| {
            if current_generation() != generation {
                return;
            }
            let Some(data) = message_data(&event) else {
                return;
            };
            match serde_json::from_str::<LiveSnapshot>(&data) {
                Ok(s) => {
                    live.endpoints.set(Some(s.endpoints));
                    live.features.set(Some(s.features));
                    live.ledger.set(Some(s.ledger));
                    if live.continuations.with_untracked(|c| c != &s.continuations) {
                        live.continuations.set(s.continuations);
                    }
                    if live.config_version.get_untracked() != Some(s.config_version) {
                        live.config_version.set(Some(s.config_version));
                    }
                    live.received_ms.set(platform::now_ms());
                    if live.link.get_untracked() != Link::Live {
                        live.link.set(Link::Live);
                    }
                }
                Err(e) => leptos::logging::warn!("unreadable snapshot event: {e}"),
            }
        }),
    );
    on(
        "breaker",
        Box::new(move |event| {
            if current_generation() != generation {
                return;
            }
            let Some(data) = message_data(&event) else {
                return;
            };
            match serde_json::from_str::<BreakerEvent>(&data) {
                Ok(e) => {
                    if e.transition.to == StateName::Open {
                        desktop::notify(
                            &format!("Breaker open: {}", e.endpoint),
                            &e.transition.reason.message,
                        );
                    }
                    live.add_events(vec![e]);
                }
                Err(e) => leptos::logging::warn!("unreadable breaker event: {e}"),
            }
        }),
    );
    {
        // The server dropped breaker events for this slow client: fetch them instead.
        let api = api.clone();
        on(
            "lagged",
            Box::new(move |_| {
                if current_generation() == generation {
                    resync(live, api.clone(), session);
                }
            }),
        );
    }
    on(
        "config",
        Box::new(move |event| {
            if current_generation() != generation {
                return;
            }
            let Some(data) = message_data(&event) else {
                return;
            };
            let version = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v["version"].as_i64());
            if let Some(v) = version {
                live.config_version.set(Some(v));
            }
        }),
    );

    STREAM.with(|s| {
        *s.borrow_mut() = Some(Stream {
            source,
            _handlers: handlers,
        })
    });
}

fn message_data(event: &web_sys::Event) -> Option<String> {
    event
        .dyn_ref::<web_sys::MessageEvent>()
        .and_then(|m| m.data().as_string())
}
