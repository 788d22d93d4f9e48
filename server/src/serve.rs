//! The serving loop: accepting connections, admitting them under the connection
//! caps, serving them thread per core, and draining them on shutdown.
//!
//! Thread per core: each serving thread runs its own single-threaded tokio runtime,
//! and a connection lives on one of them for its whole life, with the upstream
//! connections its requests use (the plain-HTTP endpoint clients keep a pool per
//! thread, see router-core's `transport`). A request then crosses no thread on its
//! way: the client's socket, the handler and the upstream h2 connection wake each
//! other on one thread, without the futex round trips and work stealing of a shared
//! multi-threaded scheduler (16 % of the gateway's CPU at c=32 with one).
//!
//! The accept loop runs on the caller's runtime and hands each connection to the
//! thread with the fewest open ones, so long-lived streams spread evenly.
//!
//! What a hostile or broken client meets ([`Limits`], the flags of `crossbar serve`):
//! - **caps at accept time**: past `max_connections` open connections, or
//!   `max_connections_per_ip` from one address, a new connection is answered a 503 in
//!   the API's error shape and closed at once, before any of its bytes are read; the
//!   file descriptors kept free let the router still reach its endpoints (running out
//!   of them made connects fail, and breakers open on our own failures);
//! - **a request in time**: a connection that has not begun a request within
//!   `header_read_timeout` of opening is closed (hyper's own header-read timer only
//!   starts once it has read enough to tell HTTP/1.1 from HTTP/2, so a silent socket
//!   would otherwise stay forever); on HTTP/1.1, hyper's timer then also bounds the
//!   time to each complete request head, and so the wait for the next request on a
//!   kept-alive connection;
//! - **idle connections end**: one with no request in flight for `idle_timeout` (to
//!   within a quarter of it) is closed, HTTP/2 included;
//! - **HTTP/2 keep-alive**: a PING after `http2_keep_alive_interval` of silence; a
//!   peer that does not answer within as long again is gone, and its connection closed.
//!
//! Shutdown ([`serve`]'s `shutdown`, then `cut`): the listener closes, every
//! connection is told to finish (HTTP/1.1 closes after its response in flight,
//! HTTP/2 sends GOAWAY, a connection still waiting for its first request closes), and
//! in-flight requests and streams get `drain_timeout` to end. Then — or at once on a
//! second signal — each serving thread's runtime is dropped with what is left on it:
//! connections close, and the router records each request it cuts (`cancelled`, with
//! what was streamed billed) before the ledger is flushed.
//!
//! Written out rather than `axum::serve`: that one keeps every connection in a task
//! whose state costs ~40 KB of memory even when idle, ~15× what this loop's costs
//! (measured with 5,000 idle connections); at 10,000 open streams that is the
//! difference between fitting in 300 MB or not. What the limits add per connection
//! is an 8-byte activity word (shared with its requests), its place under the caps
//! and one timer: measured with 5,000 connections (debug build), +35 bytes per
//! silent connection and +290 per idle kept-alive HTTP/1.1 one (hyper's header-read
//! timer, armed while it waits for the next request), on ~4.5 and ~18.4 KB.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::Limits;
use crate::stack::StackBody;

/// The service every connection serves: [`crate::stack::service`].
pub trait Stack:
    tower::Service<
        Request<Incoming>,
        Response = Response<StackBody>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Stack for S where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<StackBody>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request and stream finished.
    Clean,
    /// The drain deadline passed, or a second signal came: what was left was cut.
    Cut,
}

/// Serves `service` on `listener` with `workers` serving threads (0: one per CPU)
/// until `shutdown` completes, then drains: open requests and streams get
/// `limits.drain_timeout` to finish, unless `cut` completes first. See the module
/// documentation.
pub async fn serve<S: Stack>(
    listener: TcpListener,
    service: S,
    workers: usize,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
    cut: impl Future<Output = ()> + Send,
) -> anyhow::Result<Drained> {
    let threads = if workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        workers
    };
    let admission = Arc::new(Admission::new(&limits));
    let (cut_tx, cut_rx) = watch::channel(false);
    // Every thread keeps its runtime, and so its upstream connections, until all of
    // them have drained: a connection handed between pools must stay driven.
    let drained = Arc::new(tokio::sync::Barrier::new(threads));
    let mut pool = Vec::with_capacity(threads);
    for index in 0..threads {
        pool.push(ServingThread::start(
            index,
            service.clone(),
            drained.clone(),
            limits,
            cut_rx.clone(),
        )?);
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                back_off().await;
                continue;
            }
        };
        let permit = match admission.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                refusals.refuse(&stream, refusal, peer.ip());
                continue;
            }
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%err, "cannot serve an accepted socket");
                continue;
            }
        };
        let mut unserved = Some((stream, permit));
        while let Some(connection) = unserved.take() {
            let Some(least_busy) = pool
                .iter()
                .filter(|t| t.serving())
                .min_by_key(|t| t.open.load(Ordering::Relaxed))
            else {
                tracing::error!("no serving thread is left; connection refused");
                break;
            };
            unserved = least_busy.hand_over(connection).err();
        }
    }
    drop(listener);
    tracing::info!(
        open = admission.open.load(Ordering::Relaxed),
        drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
        "stopped accepting; waiting for open requests and streams to finish"
    );
    // All threads hear first, then each is waited for: each waits for the others.
    let ended = futures_util::future::join_all(pool.into_iter().map(ServingThread::finish));
    let mut ended = std::pin::pin!(ended);
    let drained = tokio::select! {
        _ = &mut ended => return Ok(Drained::Clean),
        () = pause(limits.drain_timeout) => {
            tracing::warn!(
                open = admission.open.load(Ordering::Relaxed),
                "the drain deadline passed: cutting what is still open"
            );
            Drained::Cut
        }
        () = cut => {
            tracing::warn!(
                open = admission.open.load(Ordering::Relaxed),
                "a second signal: cutting what is still open"
            );
            Drained::Cut
        }
    };
    cut_tx.send_replace(true);
    ended.await;
    Ok(drained)
}

/// The accept loop's pause after a failed accept: an I/O edge, in real time.
#[allow(
    clippy::disallowed_methods,
    reason = "the accept loop is an I/O edge, in real time"
)]
async fn back_off() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A real-time wait of the serving loop (the drain deadline).
#[allow(
    clippy::disallowed_methods,
    reason = "the serving loop's deadlines are an I/O edge, in real time"
)]
async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Why a connection was refused at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Full,
    FullForAddress,
}

/// Open connections, in all and per client address, against their caps.
struct Admission {
    max: usize,
    /// `0`: no per-address cap.
    max_per_ip: usize,
    open: AtomicUsize,
    /// Open connections per address: touched once when a connection opens and once
    /// when it closes, never per request.
    per_ip: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    fn new(limits: &Limits) -> Self {
        Self {
            max: limits.max_connections.max(1),
            max_per_ip: limits.max_connections_per_ip,
            open: AtomicUsize::new(0),
            per_ip: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let max = self.max;
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < max).then_some(open + 1)
            })
            .map_err(|_| Refusal::Full)?;
        if self.max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::FullForAddress);
            }
            *n += 1;
        }
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }
}

/// One admitted connection's place under the caps, given back when it is dropped
/// (the connection closed).
struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        if a.max_per_ip > 0 {
            let mut per_ip = a.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        a.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refused connections, and a warning about them at most once a second.
#[derive(Default)]
struct Refusals {
    count: u64,
    last_warn_ms: i64,
}

impl Refusals {
    /// Answers `stream` a 503 and closes it: it is not read, so a client that sent
    /// nothing yet (the usual case: it connects, then writes) reads the answer.
    fn refuse(&mut self, stream: &tokio::net::TcpStream, why: Refusal, ip: IpAddr) {
        let message = match why {
            Refusal::Full => "the server has as many open connections as it serves; retry shortly",
            Refusal::FullForAddress => {
                "this client address has as many open connections as the server allows one \
                 address; close some, or retry shortly"
            }
        };
        let body = serde_json::json!({"error": {
            "message": message,
            "type": "server_error",
            "param": null,
            "code": "unavailable",
        }})
        .to_string();
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        // A new socket's send buffer takes this at once; nothing waits for it.
        let _ = stream.try_write(answer.as_bytes());
        self.count += 1;
        let now = crate::unix_ms();
        if now - self.last_warn_ms >= 1_000 {
            self.last_warn_ms = now;
            tracing::warn!(
                refused_total = self.count,
                %ip,
                reason = ?why,
                "connection refused: a connection cap is reached"
            );
        }
    }
}

/// A connection handed to a serving thread, with its place under the caps.
type Handed = (std::net::TcpStream, Permit);

/// One serving thread: a single-threaded runtime that serves the connections it is
/// handed.
struct ServingThread {
    connections: tokio::sync::mpsc::UnboundedSender<Handed>,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
    /// Closed when the thread has ended.
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl ServingThread {
    fn start<S: Stack>(
        index: usize,
        service: S,
        drained: Arc<tokio::sync::Barrier>,
        limits: Limits,
        cut: watch::Receiver<bool>,
    ) -> anyhow::Result<ServingThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a serving thread's runtime")?;
        let (connections, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        std::thread::Builder::new()
            .name(format!("crossbar-serve-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    use futures_util::FutureExt;
                    let serving = serve_connections(incoming, service, counter, limits, cut);
                    // A panic here ends this thread's serving, not the process: its
                    // connections go to the others, and shutdown still completes.
                    if std::panic::AssertUnwindSafe(serving)
                        .catch_unwind()
                        .await
                        .is_err()
                    {
                        tracing::error!(thread = index, "a serving thread's loop panicked");
                    }
                    drained.wait().await;
                });
                // Dropping the runtime ends what is left on it (idle upstream
                // connections; after a cut, the requests and streams still open)
                // before the thread reports its end.
                drop(runtime);
                drop(ended_tx);
            })
            .context("cannot start a serving thread")?;
        Ok(ServingThread {
            connections,
            open,
            ended,
        })
    }

    /// Hands a connection to this thread, or gives it back if the thread has stopped
    /// serving (its loop panicked and dropped its end of the channel).
    fn hand_over(&self, connection: Handed) -> Result<(), Handed> {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.connections.send(connection).map_err(|unsent| {
            self.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("a serving thread has stopped; its connections go to the others");
            unsent.0
        })
    }

    /// Whether the thread still takes connections.
    fn serving(&self) -> bool {
        !self.connections.is_closed()
    }

    /// Tells the thread that no more connections come; what it returns completes once
    /// the thread has served its open ones (or cut them) and ended.
    fn finish(self) -> tokio::sync::oneshot::Receiver<()> {
        drop(self.connections);
        self.ended
    }
}

/// `Some(d)`, or `None` for a zero duration (the limit is off).
fn on(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// A serving thread's loop: HTTP/1.1 (keep-alive) and HTTP/2 (h2c), TCP_NODELAY on
/// every socket, each connection under its watchdog; and a graceful end that lets
/// open requests — streams included — finish once no more connections come, unless
/// `cut` says to stop waiting.
async fn serve_connections<S: Stack>(
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<Handed>,
    service: S,
    open: Arc<AtomicUsize>,
    limits: Limits,
    mut cut: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(on(limits.header_read_timeout));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(on(limits.http2_keep_alive_interval))
        .keep_alive_timeout(limits.http2_keep_alive_interval);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let wake_guard = tokio::spawn(keep_a_timer_armed());
    let (first_request, idle) = (on(limits.header_read_timeout), on(limits.idle_timeout));
    while let Some((stream, permit)) = incoming.recv().await {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%err, "cannot serve an accepted socket");
                open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY on an accepted socket");
        }
        let activity = Arc::new(Activity::default());
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                Tracked {
                    inner: service.clone(),
                    activity: activity.clone(),
                },
            )
            .into_owned();
        let connection = graceful.watch(connection);
        let open = open.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                ended = connection => if let Err(err) = ended {
                    tracing::trace!(%err, "connection ended with an error");
                },
                why = watchdog(&activity, first_request, idle) => {
                    tracing::debug!(why, "connection closed");
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    wake_guard.abort();
}

/// Keeps a timer due within a second on the serving thread's runtime.
///
/// tokio's timer wakes its driver (an `eventfd` write, and one more `epoll_wait`) when
/// a timer is set earlier than the earliest it knew of when it last went idle. At
/// one request at a time the thread goes idle with no timer at all, so each of the
/// request's timeouts (the attempt's, the upstream exchange's) cost that wakeup: two
/// system calls and a loop of the runtime per request, on the request's critical
/// path. A timer that is always due within a second, earlier than any request's
/// timeout, keeps that from happening, at the price of one wakeup a second.
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// A connection's requests, as its watchdog sees them: the low 32 bits count the
/// requests in flight, the high 32 bits every start and end (wrapping). One atomic
/// add when a request starts and one when its response has been sent.
#[derive(Debug, Default)]
struct Activity(AtomicU64);

const IN_FLIGHT: u64 = u32::MAX as u64;
const EVENT: u64 = 1 << 32;

impl Activity {
    fn start(&self) {
        self.0.fetch_add(EVENT + 1, Ordering::Relaxed);
    }

    fn end(&self) {
        // One more event, one fewer in flight (never below zero: one end per start).
        self.0.fetch_add(EVENT - 1, Ordering::Relaxed);
    }

    fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Completes (and so closes the connection) when the connection has not begun a
/// request within `first_request` of opening, or has had no request in flight for
/// `idle` (checked every quarter of it). Pending forever with both off.
///
/// One timer, moved from check to check: this future is part of every open
/// connection's memory.
#[allow(
    clippy::disallowed_methods,
    reason = "a connection's timeouts are an I/O edge, in real time"
)]
async fn watchdog(
    activity: &Activity,
    first_request: Option<Duration>,
    idle: Option<Duration>,
) -> &'static str {
    const CHECKS: u32 = 4;
    let step = idle.map(|idle| (idle / CHECKS).max(Duration::from_millis(1)));
    // Times from the connection's start: of the first-request check, of the next
    // idle check, and of the timer's deadline.
    let mut first_check = first_request;
    let mut idle_check = step;
    let next =
        |first: Option<Duration>, idle: Option<Duration>| first.into_iter().chain(idle).min();
    let Some(mut at) = next(first_check, idle_check) else {
        return std::future::pending().await;
    };
    let mut timer = std::pin::pin!(tokio::time::sleep(at));
    let (mut seen, mut quiet) = (activity.load(), 0);
    loop {
        timer.as_mut().await;
        if first_check == Some(at) {
            first_check = None;
            if activity.load() == 0 {
                return "no request began within the header-read timeout";
            }
        }
        if let (Some(check), Some(step)) = (idle_check, step)
            && check == at
        {
            let now = activity.load();
            if now == seen && now & IN_FLIGHT == 0 {
                quiet += 1;
                if quiet >= CHECKS {
                    return "idle for the idle timeout";
                }
            } else {
                (seen, quiet) = (now, 0);
            }
            idle_check = Some(check + step);
        }
        let Some(then) = next(first_check, idle_check) else {
            return std::future::pending().await;
        };
        let deadline = timer.deadline() + (then - at);
        timer.as_mut().reset(deadline);
        at = then;
    }
}

/// The stack as hyper calls it, counting the connection's requests in flight for its
/// watchdog: from the call until hyper has sent the whole response (or dropped it).
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: Stack> hyper::service::Service<Request<Incoming>> for Tracked<S> {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture<tower::util::Oneshot<S, Request<Incoming>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        use tower::ServiceExt;
        self.activity.start();
        TrackedFuture {
            inner: self.inner.clone().oneshot(request),
            in_flight: Some(InFlight(self.activity.clone())),
        }
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

pin_project_lite::pin_project! {
    /// The stack's response future, handing its request's [`InFlight`] to the body.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<StackBody>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// A response body that keeps its request in flight until hyper drops it.
pub struct TrackedBody {
    body: StackBody,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the watchdog runs on tokio's clock, paused in these tests"
)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_closes_a_connection_that_never_asks_then_one_left_idle() {
        let a = Activity::default();
        let start = tokio::time::Instant::now();
        let why = watchdog(&a, Some(10 * S), Some(60 * S)).await;
        assert!(why.starts_with("no request began"), "{why}");
        assert_eq!(start.elapsed(), 10 * S);

        // A request in flight, however long: never idle.
        a.start();
        let waiting = tokio::time::timeout(600 * S, watchdog(&a, Some(10 * S), Some(60 * S)));
        assert!(waiting.await.is_err());
        // Once it has ended, closed after the idle timeout (to within a quarter).
        a.end();
        let start = tokio::time::Instant::now();
        let why = watchdog(&a, Some(10 * S), Some(60 * S)).await;
        assert!(why.starts_with("idle"), "{why}");
        assert!(
            (60 * S..=75 * S).contains(&start.elapsed()),
            "{:?}",
            start.elapsed()
        );

        // Requests coming and going keep it open.
        let busy = async {
            for _ in 0..40 {
                tokio::time::sleep(20 * S).await;
                a.start();
                a.end();
            }
        };
        let watched = watchdog(&a, Some(10 * S), Some(60 * S));
        tokio::select! {
            () = busy => {}
            why = watched => panic!("closed while in use: {why}"),
        }
        // Both off: never.
        let quiet = Activity::default();
        let off = tokio::time::timeout(3_600 * S, watchdog(&quiet, None, None));
        assert!(off.await.is_err());
    }

    #[test]
    fn a_connections_activity_counts_requests_in_flight_and_every_start_and_end() {
        let a = Activity::default();
        assert_eq!(a.load(), 0);
        a.start();
        a.start();
        assert_eq!(a.load() & IN_FLIGHT, 2);
        a.end();
        let one = a.load();
        assert_eq!((one & IN_FLIGHT, one >> 32), (1, 3));
        a.end();
        assert_eq!(a.load() & IN_FLIGHT, 0);
    }

    #[test]
    fn the_caps_count_connections_in_all_and_per_address() {
        let admission = Arc::new(Admission::new(&Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        }));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::FullForAddress));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::Full));
        drop(first);
        let _again = admission.admit(a).unwrap();
        assert_eq!(admission.open.load(Ordering::Relaxed), 3);
        assert_eq!(admission.per_ip.lock().get(&a), Some(&2));
    }
}
