//! The HTTP transport of the OpenAI-compatible and Vertex adapters: which client
//! carries a request, where its connections live, and how a whole answer is read.
//! Everything about connections is here (and in [`h2c`] below it); the adapters see
//! one `post_json` and one [`UpstreamBody`].
//!
//! Three clients behind one interface, chosen by the endpoint's URL scheme:
//! - `http://` (vLLM and other in-cluster endpoints, the simulators): hyper's pooled
//!   client with a plain TCP connector and HTTP/1.1 keep-alive, or, for h2c (prior
//!   knowledge), one multiplexed connection on `h2` directly ([`h2c`]); with
//!   [`TransportSettings::http1_when_idle`], an h2c endpoint's request that finds
//!   nothing else in flight in its pool takes hyper's HTTP/1.1 client instead.
//!   These are the endpoints where the gateway's own overhead shows, and reqwest's
//!   layers (request builder, redirect and retry policies, proxy matching, URL
//!   conversions) were 9 % of the gateway's CPU per request. They are reached
//!   directly: `HTTP_PROXY` and friends apply to the clouds only;
//! - `https://` (the clouds): reqwest with rustls, the platform's certificate
//!   verifier, ALPN and the system's proxy settings.
//!
//! Either way the answer is an `http::Response` with a boxed body, so reading it
//! (whole or as server-sent events) is one piece of code.
//!
//! How connections are pooled is not the endpoint's business but the embedder's:
//! [`TransportSettings`] says it, once per process (the server sets it from its
//! command line; tests and tools take the default). The TLS client is one per
//! endpoint, shared whatever the settings: the clouds are milliseconds away, where a
//! wakeup does not show, and building a TLS client (loading its root certificates)
//! takes tens of milliseconds (25–45 ms in a debug build here), which a serving
//! thread must not spend on a request.

mod body;
mod h2c;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) use body::{BodyError, UpstreamBody};
use h2c::H2c;

use crate::api::{Error, ErrorKind};
use crate::config::EndpointConfig;

/// How the plain-HTTP clients keep their connections, for every endpoint of a
/// process. Transport policy, not endpoint configuration: it follows from how the
/// embedder runs its runtimes and from what its upstreams speak, so it is set where
/// the process starts (`crossbar serve`'s command line), not in the published config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportSettings {
    /// Where plain-HTTP connections live: one pool per thread or one shared pool.
    pub pool: PoolScope,
    /// On an h2c endpoint (`http2_prior_knowledge` with an `http://` URL): a request
    /// that finds nothing else in flight to that endpoint in its pool goes over a
    /// pooled HTTP/1.1 connection instead, and the rest share the h2c connection.
    /// Alone, a request pays HTTP/2's framing on both ends for nothing it uses (at
    /// one request at a time the simulator answered 0.02–0.06 ms sooner over
    /// HTTP/1.1, BENCHMARKS.md); under load, h2c writes many requests in one system
    /// call and keeps the connection count flat. At most one HTTP/1.1 request per
    /// pool is in flight, so that pool stays at one connection. Only for upstreams
    /// that accept both protocols on the same port; other endpoints ignore it.
    /// Default: off.
    pub http1_when_idle: bool,
}

/// Where the plain-HTTP clients' connections live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PoolScope {
    /// A pool per thread, built on the thread's first request. Right for a server
    /// that runs one single-threaded runtime per serving thread (`crossbar serve`): a
    /// connection is driven by a task on the runtime of the thread that opened it,
    /// and with a shared pool a request on one thread would hand its upstream
    /// exchange to a connection another thread drives, waking that thread twice per
    /// request. With a pool per thread, a request and its upstream connection stay
    /// on one thread.
    PerThread,
    /// One pool for the process: for every other embedder (tests, tools, a
    /// multi-threaded runtime), where a pool per thread would only open more
    /// connections.
    #[default]
    Shared,
}

/// One endpoint's HTTP client (pooled connections). Cheap to clone.
#[derive(Clone)]
pub(crate) enum HttpClient {
    Plain(Arc<Pool<Hyper>>),
    H2c(Arc<Pool<H2cLane>>),
    Tls(reqwest::Client),
}

/// hyper's pooled HTTP/1.1 client over plain TCP.
type Hyper = Client<HttpConnector, Full<Bytes>>;

/// One pool's way to an h2c endpoint: the multiplexed connection and, with
/// `http1_when_idle`, the HTTP/1.1 client that a request finding nothing else in
/// flight in this pool goes through.
pub(crate) struct H2cLane {
    h2: H2c,
    when_idle: Option<(Hyper, Arc<AtomicUsize>)>,
}

impl HttpClient {
    /// The client for `endpoint`, whose requests go to `url` (its scheme picks the
    /// client), pooled as `settings` say: keep-alive, no Nagle delay, no redirects,
    /// h2c when the endpoint says so (HTTP/2 is negotiated by ALPN over TLS).
    pub(crate) fn new(
        endpoint: &EndpointConfig,
        url: &str,
        settings: &TransportSettings,
    ) -> Result<Self, Error> {
        let connect = Duration::from_millis(endpoint.timeouts.connect_ms);
        if url.starts_with("http://") && endpoint.http2_prior_knowledge {
            let when_idle = settings.http1_when_idle;
            Ok(Self::H2c(Arc::new(Pool::new(settings.pool, move || {
                H2cLane {
                    h2: H2c::new(connect),
                    when_idle: when_idle.then(|| (http1_client(connect), Arc::default())),
                }
            }))))
        } else if url.starts_with("http://") {
            Ok(Self::Plain(Arc::new(Pool::new(settings.pool, move || {
                http1_client(connect)
            }))))
        } else {
            Self::tls(endpoint)
        }
    }

    /// reqwest with TLS. Built once here, so that a setup error shows when the
    /// endpoint is configured rather than on its first request.
    fn tls(endpoint: &EndpointConfig) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(endpoint.timeouts.connect_ms))
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true)
            // A model API does not redirect; a redirect means a wrong `base_url`, and
            // is reported as such instead of followed.
            .redirect(reqwest::redirect::Policy::none());
        if endpoint.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        builder.build().map(Self::Tls).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("building the HTTP client for `{}`: {e}", endpoint.name),
            )
        })
    }

    /// POSTs `body` as JSON with `headers`, and waits for the response head at most
    /// the endpoint's request timeout.
    pub(crate) async fn post_json(
        &self,
        endpoint: &EndpointConfig,
        uri: Uri,
        headers: HeaderMap,
        body: &impl serde::Serialize,
    ) -> Result<Response<UpstreamBody>, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("encoding the request: {e}")))?;
        let mut request = Request::post(uri)
            .body(Bytes::from(body))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("building the request: {e}")))?;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let answer = async {
            match self {
                Self::Plain(clients) => Ok(send_http1(clients.get(), request)
                    .await?
                    .map(BodyExt::boxed)),
                Self::H2c(lanes) => lanes.get().send(request).await,
                Self::Tls(client) => {
                    let request = reqwest::Request::try_from(request).map_err(|e| {
                        Error::new(ErrorKind::Internal, format!("building the request: {e}"))
                    })?;
                    match client.execute(request).await {
                        Ok(response) => Ok(http::Response::<reqwest::Body>::from(response)
                            .map(|b| b.map_err(BodyError::from).boxed())),
                        Err(e) => Err(reqwest_error(&e)),
                    }
                }
            }
        };
        let timeout = Duration::from_millis(endpoint.timeouts.request_ms);
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no response within {} ms", endpoint.timeouts.request_ms),
                ))
            })
    }
}

impl H2cLane {
    /// Sends `request` over h2c, or, with `http1_when_idle` and nothing else in
    /// flight in this pool, over HTTP/1.1; waits for the response head.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<UpstreamBody>, Error> {
        let Some((http1, in_flight)) = &self.when_idle else {
            return Ok(self.h2.send(request).await?.map(BodyExt::boxed));
        };
        // Counted until the response body is dropped (a stream's, at its end), or the
        // request fails.
        let (held, alone) = InFlight::enter(in_flight);
        Ok(if alone {
            Counted::hold(send_http1(http1, request).await?, held)
        } else {
            Counted::hold(self.h2.send(request).await?, held)
        })
    }
}

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// hyper's client over plain TCP, HTTP/1.1.
fn http1_client(connect: Duration) -> Hyper {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

/// One request over HTTP/1.1, up to its response head.
async fn send_http1(
    client: &Hyper,
    request: Request<Bytes>,
) -> Result<
    Response<impl http_body::Body<Data = Bytes, Error = BodyError> + Unpin + Send + Sync + 'static>,
    Error,
> {
    match client.request(request.map(Full::new)).await {
        Ok(response) => Ok(response.map(|b| b.map_err(BodyError::from))),
        Err(e) => Err(hyper_error(&e)),
    }
}

/// One request in flight in a pool to an h2c endpoint with `http1_when_idle`.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request in; whether it is the only one.
    fn enter(count: &Arc<AtomicUsize>) -> (Self, bool) {
        let before = count.fetch_add(1, Ordering::Relaxed);
        (InFlight(count.clone()), before == 0)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's [`InFlight`] until it is dropped.
struct Counted<B> {
    body: B,
    _held: InFlight,
}

impl<B> Counted<B>
where
    B: http_body::Body<Data = Bytes, Error = BodyError> + Unpin + Send + Sync + 'static,
{
    /// `response` with its body holding `held`.
    fn hold(response: Response<B>, held: InFlight) -> Response<UpstreamBody> {
        response.map(|body| Counted { body, _held: held }.boxed())
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A client (or lane) per [`PoolScope`]: one per thread, or one for all.
pub(crate) enum Pool<C: Send> {
    /// Boxed: a thread-local table is half a kilobyte.
    PerThread(Box<PerThread<C>>),
    Shared(C),
}

impl<C: Send> Pool<C> {
    fn new(scope: PoolScope, build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        match scope {
            PoolScope::PerThread => Pool::PerThread(Box::new(PerThread::new(build))),
            PoolScope::Shared => Pool::Shared(build()),
        }
    }

    /// The client this thread uses.
    fn get(&self) -> &C {
        match self {
            Pool::PerThread(values) => values.get(),
            Pool::Shared(value) => value,
        }
    }
}

/// A value per thread, built on a thread's first use.
pub(crate) struct PerThread<C: Send> {
    values: thread_local::ThreadLocal<C>,
    build: Box<dyn Fn() -> C + Send + Sync>,
}

impl<C: Send> PerThread<C> {
    fn new(build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        PerThread {
            values: thread_local::ThreadLocal::new(),
            build: Box::new(build),
        }
    }

    /// This thread's value.
    fn get(&self) -> &C {
        self.values.get_or(&self.build)
    }
}

/// Parses a request URL once (per endpoint or per request).
pub(crate) fn uri(endpoint: &EndpointConfig, url: &str) -> Result<Uri, Error> {
    url.parse().map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("endpoint `{}`: `{url}` is not a URL: {e}", endpoint.name),
        )
    })
}

/// The most of a whole (non-streaming) answer that is read: a chat completion is
/// kilobytes, a long one with tool calls some hundreds; an answer near this is not
/// one, and reading it without a bound would let an upstream fill the gateway's
/// memory.
pub(crate) const MAX_WHOLE_BODY: usize = 16 * 1024 * 1024;

/// Reads a whole (non-streaming) body, bounded by the request timeout and by
/// [`MAX_WHOLE_BODY`].
pub(crate) async fn read_body(
    endpoint: &EndpointConfig,
    response: Response<UpstreamBody>,
) -> Result<Bytes, Error> {
    match tokio::time::timeout(
        Duration::from_millis(endpoint.timeouts.request_ms),
        collect_at_most(response.into_body(), MAX_WHOLE_BODY),
    )
    .await
    {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(Unread::TooLarge)) => Err(Error::new(
            ErrorKind::UpstreamError,
            format!(
                "the upstream's answer is larger than {} MiB, the most read of an answer \
                 that is not streamed",
                MAX_WHOLE_BODY >> 20
            ),
        )),
        Ok(Err(Unread::Broken(e))) => Err(Error::new(
            ErrorKind::StreamInterrupted,
            format!("transport: the body broke off: {}", chain(&*e)),
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "body not complete within {} ms",
                endpoint.timeouts.request_ms
            ),
        )),
    }
}

/// Why a whole body was not read.
enum Unread {
    /// It passed the bound: reading stopped there.
    TooLarge,
    Broken(BodyError),
}

/// The body's data, or [`Unread::TooLarge`] as soon as it passes `limit` bytes. An
/// answer in one frame (most are) is returned as it came, without a copy.
async fn collect_at_most(mut body: UpstreamBody, limit: usize) -> Result<Bytes, Unread> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unread::Broken)?.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(Unread::TooLarge);
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(len);
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    })
}

/// A transport failure of hyper's client, normalised.
fn hyper_error(e: &hyper_util::client::legacy::Error) -> Error {
    let kind = if e.is_connect() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::UpstreamError
    };
    // Neither error type's messages carry headers, so no credential leaks here.
    Error::new(kind, format!("transport: {}", chain(e)))
}

/// A transport failure of reqwest, normalised.
fn reqwest_error(e: &reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Unavailable
    } else if e.is_body() || e.is_decode() {
        ErrorKind::StreamInterrupted
    } else {
        ErrorKind::UpstreamError
    };
    Error::new(kind, format!("transport: {e}"))
}

/// An error with its causes, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;
    use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

    /// A simulated OpenAI-compatible endpoint (HTTP/1.1 and h2c on one port), its
    /// configuration, and its chat URL.
    async fn upstream() -> (Sim, EndpointConfig, String) {
        let sim = Sim::start(SimConfig {
            seed: 1,
            control: None,
            endpoints: vec![{
                let mut spec = EndpointSpec::new("up", Kind::Openai);
                spec.auth = AuthMode::None;
                spec
            }],
        })
        .await
        .unwrap();
        let mut endpoint = EndpointConfig::new("up", Provider::Openai, "gpt-4o-mini", "eastus");
        endpoint.timeouts.request_ms = 5_000;
        let url = format!("{}/v1/chat/completions", sim.url("up"));
        (sim, endpoint, url)
    }

    /// A streamed answer read to its end, as text (its events are the SSE reader's
    /// business, not the transport's).
    async fn stream_text(endpoint: &EndpointConfig, response: Response<UpstreamBody>) -> String {
        String::from_utf8(read_body(endpoint, response).await.unwrap().to_vec()).unwrap()
    }

    fn chat(stream: bool) -> serde_json::Value {
        serde_json::json!({
            "model": "gpt-4o-mini", "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]
        })
    }

    /// The clients, hyper's (chosen for `http://`), h2c's (for `http://` with prior
    /// knowledge, alone or with HTTP/1.1 when idle) and reqwest (for `https://`; the
    /// simulators speak plain HTTP, so it is built directly here), pooled per thread
    /// or shared, behave the same: a JSON POST answered whole and as server-sent
    /// events, and a refused connection reported as `unavailable`.
    #[tokio::test]
    async fn every_client_posts_json_and_reads_answers_whole_and_as_events() {
        let (_sim, endpoint, url) = upstream().await;
        let h2c = EndpointConfig {
            http2_prior_knowledge: true,
            ..endpoint.clone()
        };
        let mut versions = vec![(HttpClient::tls(&endpoint).unwrap(), http::Version::HTTP_11)];
        for pool in [PoolScope::PerThread, PoolScope::Shared] {
            let plain = TransportSettings {
                pool,
                http1_when_idle: false,
            };
            let idle_http1 = TransportSettings {
                http1_when_idle: true,
                ..plain
            };
            let client = HttpClient::new(&endpoint, &url, &plain).unwrap();
            assert!(matches!(client, HttpClient::Plain(_)));
            versions.push((client, http::Version::HTTP_11));
            let client = HttpClient::new(&h2c, &url, &plain).unwrap();
            assert!(matches!(client, HttpClient::H2c(_)));
            versions.push((client, http::Version::HTTP_2));
            // One request at a time: each is alone.
            let client = HttpClient::new(&h2c, &url, &idle_http1).unwrap();
            versions.push((client, http::Version::HTTP_11));
            // Not an h2c endpoint: the setting does not apply.
            let client = HttpClient::new(&endpoint, &url, &idle_http1).unwrap();
            assert!(matches!(client, HttpClient::Plain(_)));
        }
        for (client, version) in versions {
            let uri = uri(&endpoint, &url).unwrap();
            let response = client
                .post_json(&endpoint, uri.clone(), HeaderMap::new(), &chat(false))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), version);
            let whole: serde_json::Value =
                serde_json::from_slice(&read_body(&endpoint, response).await.unwrap()).unwrap();
            assert_eq!(whole["object"], "chat.completion", "{whole}");

            let response = client
                .post_json(&endpoint, uri, HeaderMap::new(), &chat(true))
                .await
                .unwrap();
            assert_eq!(response.version(), version);
            let events = stream_text(&endpoint, response).await;
            assert!(events.matches("data: ").count() > 2, "{events}");
            assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");

            let closed = refused_uri();
            let e = client
                .post_json(&endpoint, closed, HeaderMap::new(), &chat(false))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
        }
    }

    /// With `http1_when_idle`, a request that finds nothing else in flight in its
    /// pool goes over HTTP/1.1, one that finds a request (or a stream) still open
    /// goes over h2c, and a request is counted until its body is dropped or it fails;
    /// the same whether the pool is the thread's or shared.
    #[tokio::test]
    async fn with_http1_when_idle_only_a_request_alone_goes_over_http1() {
        for pool in [PoolScope::PerThread, PoolScope::Shared] {
            only_a_request_alone_goes_over_http1(pool).await;
        }
    }

    async fn only_a_request_alone_goes_over_http1(pool: PoolScope) {
        let (_sim, endpoint, url) = upstream().await;
        let endpoint = EndpointConfig {
            http2_prior_knowledge: true,
            ..endpoint
        };
        let settings = TransportSettings {
            pool,
            http1_when_idle: true,
        };
        let client = HttpClient::new(&endpoint, &url, &settings).unwrap();
        let in_flight = || match &client {
            HttpClient::H2c(lanes) => lanes
                .get()
                .when_idle
                .as_ref()
                .unwrap()
                .1
                .load(Ordering::Relaxed),
            _ => unreachable!("an h2c endpoint gets the h2c client"),
        };
        let bodies = [chat(false), chat(true)];
        let post = |stream: bool, uri: Uri| {
            client.post_json(
                &endpoint,
                uri,
                HeaderMap::new(),
                &bodies[usize::from(stream)],
            )
        };
        let here = uri(&endpoint, &url).unwrap();

        let alone = post(false, here.clone()).await.unwrap();
        assert_eq!(alone.version(), http::Version::HTTP_11);
        read_body(&endpoint, alone).await.unwrap();
        assert_eq!(in_flight(), 0);

        let open = post(true, here.clone()).await.unwrap();
        assert_eq!(
            open.version(),
            http::Version::HTTP_11,
            "alone when it began"
        );
        assert_eq!(in_flight(), 1, "counted while its body is held");
        for _ in 0..2 {
            let beside = post(false, here.clone()).await.unwrap();
            assert_eq!(beside.version(), http::Version::HTTP_2);
            let whole: serde_json::Value =
                serde_json::from_slice(&read_body(&endpoint, beside).await.unwrap()).unwrap();
            assert_eq!(whole["object"], "chat.completion", "{whole}");
        }
        let events = stream_text(&endpoint, open).await;
        assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
        assert_eq!(in_flight(), 0, "the stream read to its end and dropped");

        let e = post(false, refused_uri()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
        assert_eq!(in_flight(), 0, "a failed request is not left counted");
        let again = post(false, here).await.unwrap();
        assert_eq!(again.version(), http::Version::HTTP_11);
    }

    /// Each thread gets its own client, built once: a connection is driven on the
    /// runtime of the thread that opened it.
    #[test]
    fn a_client_per_thread_built_on_first_use() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let clients = Arc::new(Pool::new(PoolScope::PerThread, move || {
            counter.fetch_add(1, Ordering::Relaxed)
        }));
        assert_eq!(built.load(Ordering::Relaxed), 0);
        let here = *clients.get();
        assert_eq!(*clients.get(), here, "one value per thread");
        let there = {
            let clients = clients.clone();
            std::thread::spawn(move || *clients.get()).join().unwrap()
        };
        assert_ne!(here, there);
        assert_eq!(built.load(Ordering::Relaxed), 2);
    }

    /// A shared pool is one client, built at once, whichever thread asks.
    #[test]
    fn a_shared_pool_is_one_client_for_every_thread() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let pool = Arc::new(Pool::new(PoolScope::Shared, move || {
            counter.fetch_add(1, Ordering::Relaxed)
        }));
        assert_eq!(built.load(Ordering::Relaxed), 1);
        let here = *pool.get();
        let there = {
            let pool = pool.clone();
            std::thread::spawn(move || *pool.get()).join().unwrap()
        };
        assert_eq!(here, there);
        assert_eq!(built.load(Ordering::Relaxed), 1);
        assert_eq!(TransportSettings::default().pool, PoolScope::Shared);
        assert!(!TransportSettings::default().http1_when_idle);
    }

    /// An upstream that answers without end: 1 MiB frames, each after a yield (so a
    /// timeout could fire), counted as they are pulled.
    fn endless_body(pulled: Arc<AtomicUsize>) -> UpstreamBody {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let frames = futures_util::stream::unfold((), move |()| {
            let (chunk, pulled) = (chunk.clone(), pulled.clone());
            async move {
                tokio::task::yield_now().await;
                pulled.fetch_add(1, Ordering::Relaxed);
                Some((Ok::<_, BodyError>(http_body::Frame::data(chunk)), ()))
            }
        });
        BodyExt::boxed(http_body_util::StreamBody::new(frames))
    }

    /// A whole answer is read up to a bound: one without end is refused as an
    /// upstream error once past it, without reading further, long before the
    /// request timeout.
    #[tokio::test]
    async fn a_whole_answer_past_the_cap_is_an_upstream_error_and_is_not_read_further() {
        let mut endpoint = EndpointConfig::new("up", Provider::Openai, "gpt-4o-mini", "eastus");
        endpoint.timeouts.request_ms = 3_000;
        let pulled = Arc::new(AtomicUsize::new(0));
        let response = Response::new(endless_body(pulled.clone()));
        let e = read_body(&endpoint, response).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamError, "{e:?}");
        assert!(e.message.contains("16 MiB"), "{e:?}");
        let mib = pulled.load(Ordering::Relaxed);
        assert!(mib <= MAX_WHOLE_BODY / (1 << 20) + 1, "{mib} MiB read");
    }

    #[tokio::test]
    async fn a_whole_answer_in_frames_is_joined_in_order_up_to_exactly_the_limit() {
        let body = || {
            let frames = ["ab", "cd", "ef"].map(|f| {
                Ok::<_, BodyError>(http_body::Frame::data(Bytes::from_static(f.as_bytes())))
            });
            BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
                frames,
            )))
        };
        assert!(matches!(collect_at_most(body(), 6).await, Ok(b) if b == "abcdef"));
        assert!(matches!(
            collect_at_most(body(), 5).await,
            Err(Unread::TooLarge)
        ));
    }

    /// A URL on an address nothing listens on.
    fn refused_uri() -> Uri {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/v1/chat/completions")
            .parse()
            .unwrap()
    }
}
