//! HTTP/2 over plain TCP with prior knowledge (h2c), on the `h2` crate directly: one
//! multiplexed connection per thread and endpoint.
//!
//! Why not hyper's client, which speaks h2c too: hyper sends a request's body
//! through a pipe that first waits for flow-control capacity, and h2 assigns
//! capacity to a stream only once its HEADERS have opened it. So every request
//! leaves in two writes, HEADERS then DATA, and the upstream wakes up twice to
//! read it: at one request at a time that was 0.02–0.05 ms of the gateway's added
//! latency (interleaved c=1 runs, BENCHMARKS.md). A request body here is whole
//! before it is sent, so it is queued with its HEADERS and h2 writes both in one go.
//!
//! The connection is opened on first use, on the runtime of the task that uses it
//! (the transport's pool scope decides whether that is one per serving thread or one
//! for the process), and replaced once it has closed. A request that
//! could not be started on a connection that turned out to be closed, or that the
//! upstream says it did not process (`REFUSED_STREAM`, or a graceful GOAWAY that
//! did not include it), is tried once more on a new connection; nothing that may
//! have been processed is ever sent twice.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Frame;

use super::body::BodyError;
use crate::api::{Error, ErrorKind};

/// Flow-control windows: what hyper's client uses, so that thousands of streams on
/// one connection are not held back by h2's 64 KiB defaults.
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// A multiplexed connection to one endpoint (see the module documentation).
pub(crate) struct H2c {
    connect_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

#[derive(Clone)]
struct Connection {
    authority: http::uri::Authority,
    send: h2::client::SendRequest<Bytes>,
    /// Set by the connection's task when it ends.
    closed: Arc<AtomicBool>,
}

impl H2c {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        H2c {
            connect_timeout,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ReceiveBody>, Error> {
        let (head, body) = request.into_parts();
        let mut retried = false;
        loop {
            let connection = self.connection(&head.uri).await?;
            // h2 takes the head; a copy (a few small headers) keeps it for a retry.
            let request = Request::from_parts(head.clone(), ());
            match exchange(connection.send, request, body.clone()).await {
                Ok(response) => return Ok(response),
                Err(H2cSendError::NotProcessed(e)) if !retried => {
                    tracing::debug!(error = %e, "h2c: request not processed; retrying on a new connection");
                    self.forget(&connection.closed).await;
                    retried = true;
                }
                Err(H2cSendError::NotProcessed(e) | H2cSendError::Other(e)) => {
                    return Err(Error::new(
                        ErrorKind::UpstreamError,
                        format!("transport: {e}"),
                    ));
                }
            }
        }
    }

    /// The open connection to `uri`'s authority, or a new one.
    async fn connection(&self, uri: &Uri) -> Result<Connection, Error> {
        let authority = uri.authority().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("`{uri}` has no host to connect to"),
            )
        })?;
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.closed.load(Ordering::Acquire)
            && connection.authority == *authority
        {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(self.connect_timeout, connect(authority))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "transport: connecting to {authority}: no connection within {} ms",
                        self.connect_timeout.as_millis()
                    ),
                )
            })??;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection whose task sets `closed`, if it is still the current one.
    async fn forget(&self, closed: &Arc<AtomicBool>) {
        let mut slot = self.connection.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.closed, closed))
        {
            *slot = None;
        }
    }
}

async fn connect(authority: &http::uri::Authority) -> Result<Connection, Error> {
    let unavailable = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Unavailable,
            format!("transport: connecting to {authority}: {e}"),
        )
    };
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| unavailable(&e))?;
    tcp.set_nodelay(true).map_err(|e| unavailable(&e))?;
    let (send, connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| unavailable(&e))?;
    let closed = Arc::new(AtomicBool::new(false));
    let ended = closed.clone();
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "h2c connection ended with an error");
        }
        ended.store(true, Ordering::Release);
    });
    Ok(Connection {
        authority: authority.clone(),
        send,
        closed,
    })
}

/// Why one h2c request got no response head.
enum H2cSendError {
    /// The upstream did not process the request: it may be sent again.
    NotProcessed(h2::Error),
    /// Anything else: the request may have been processed and is never sent again.
    Other(h2::Error),
}

/// One request and its response head.
async fn exchange(
    send: h2::client::SendRequest<Bytes>,
    request: Request<()>,
    body: Bytes,
) -> Result<Response<ReceiveBody>, H2cSendError> {
    let mut send = send.ready().await.map_err(H2cSendError::NotProcessed)?;
    let (response, mut stream) = send
        .send_request(request, body.is_empty())
        .map_err(H2cSendError::NotProcessed)?;
    if !body.is_empty() {
        // Queued without waiting for capacity: h2 writes it right after the HEADERS.
        stream.send_data(body, true).map_err(H2cSendError::Other)?;
    }
    let response = response.await.map_err(|e| {
        if not_processed(&e) {
            H2cSendError::NotProcessed(e)
        } else {
            H2cSendError::Other(e)
        }
    })?;
    Ok(response.map(ReceiveBody))
}

/// Whether the upstream says it did not process a stream it ended (RFC 9113 §8.7):
/// it refused it, or it closed the connection gracefully (GOAWAY, `NO_ERROR`) below
/// the stream's id. h2 gives that GOAWAY's error only to the streams above the last
/// one the upstream processed; a GOAWAY for an error may end processed streams too.
fn not_processed(e: &h2::Error) -> bool {
    e.is_remote()
        && match e.reason() {
            Some(h2::Reason::REFUSED_STREAM) => true,
            Some(h2::Reason::NO_ERROR) => e.is_go_away(),
            _ => false,
        }
}

/// A response body read from its h2 stream, handing flow-control capacity back as it
/// is read.
pub(crate) struct ReceiveBody(h2::RecvStream);

impl http_body::Body for ReceiveBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let stream = &mut self.0;
        match stream.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => match stream.poll_trailers(cx) {
                Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Poll::Ready(Ok(None)) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;

    /// How a test upstream treats the requests of each connection it accepts.
    #[derive(Clone, Copy)]
    enum Then {
        Answer,
        Reset(h2::Reason),
        /// Answers, then closes the connection.
        AnswerAndClose,
    }

    /// An h2c upstream that handles its n-th connection's requests as `plan[n]` says
    /// (the last entry for any later one); counts the requests it saw, and the
    /// connections.
    async fn upstream(plan: Vec<Then>) -> (Uri, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/v1/chat", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (tcp, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let then = plan[n.min(plan.len() - 1)];
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(tcp).await.unwrap();
                    // The connection is driven by `accept` while requests are handled
                    // in their own tasks.
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let body = ReceiveBody(request.into_body())
                                .collect()
                                .await
                                .unwrap()
                                .to_bytes();
                            match then {
                                Then::Reset(reason) => respond.send_reset(reason),
                                Then::Answer | Then::AnswerAndClose => {
                                    let mut stream =
                                        respond.send_response(Response::new(()), false).unwrap();
                                    stream.send_data(body, true).unwrap();
                                }
                            }
                        });
                        if let Then::AnswerAndClose = then {
                            // Lets the request it has finish, takes no more.
                            connection.graceful_shutdown();
                        }
                    }
                });
            }
        });
        (uri, seen, connections)
    }

    async fn post(client: &H2c, uri: &Uri) -> Result<String, Error> {
        let request = Request::post(uri.clone())
            .body(Bytes::from_static(b"hello"))
            .unwrap();
        let response = client.send(request).await?;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok(String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn requests_share_one_connection_and_a_closed_one_is_replaced() {
        let (uri, seen, connections) = upstream(vec![Then::AnswerAndClose, Then::Answer]).await;
        let client = H2c::new(Duration::from_secs(1));
        assert_eq!(post(&client, &uri).await.unwrap(), "hello");
        // The first connection closes after its answer; the next request gets a new
        // one, whether or not the GOAWAY has arrived by the time it is sent.
        for _ in 0..3 {
            assert_eq!(post(&client, &uri).await.unwrap(), "hello");
        }
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// A body larger than the upstream's flow-control windows (64 KiB until it says
    /// more) is queued whole and goes out as the windows open.
    #[tokio::test]
    async fn a_body_larger_than_the_windows_arrives_whole() {
        let (uri, _, _) = upstream(vec![Then::Answer]).await;
        let client = H2c::new(Duration::from_secs(1));
        let big: String = (0..300_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let request = Request::post(uri).body(Bytes::from(big.clone())).unwrap();
        let response = client.send(request).await.unwrap();
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed.len(), big.len());
        assert!(echoed == big.as_bytes());
    }

    #[tokio::test]
    async fn a_refused_stream_is_retried_once_on_a_new_connection_and_nothing_else_is() {
        let (uri, seen, _) =
            upstream(vec![Then::Reset(h2::Reason::REFUSED_STREAM), Then::Answer]).await;
        let client = H2c::new(Duration::from_secs(1));
        assert_eq!(post(&client, &uri).await.unwrap(), "hello");
        assert_eq!(seen.load(Ordering::SeqCst), 2, "refused, then answered");

        // A stream reset for any other reason may have been processed: not sent again.
        let (uri, seen, _) = upstream(vec![Then::Reset(h2::Reason::INTERNAL_ERROR)]).await;
        let e = post(&client, &uri).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamError, "{e:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // Refused every time: tried twice, then reported.
        let (uri, seen, _) = upstream(vec![Then::Reset(h2::Reason::REFUSED_STREAM)]).await;
        let e = post(&client, &uri).await.unwrap_err();
        assert!(e.message.contains("refused"), "{e:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    /// An HTTP/2 frame: type, flags, stream, payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    async fn read_frame(tcp: &mut tokio::net::TcpStream) -> Option<(u8, u8, u32)> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        tcp.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some((head[3], head[4], stream))
    }

    /// A request sent before the upstream's graceful GOAWAY arrived, on a stream above
    /// the last one it processed, is tried again on a new connection. The upstream is
    /// written frame by frame, so that both requests are on the wire before it says
    /// GOAWAY for the first one only.
    #[tokio::test]
    async fn a_stream_above_a_graceful_goaway_is_retried_on_a_new_connection() {
        use tokio::io::AsyncWriteExt;
        const HEADERS: u8 = 1;
        const SETTINGS: u8 = 4;
        const GOAWAY: u8 = 7;
        // `:status: 200` (HPACK static index 8), END_HEADERS | END_STREAM.
        let ok = |stream| frame(HEADERS, 0x5, stream, &[0x88]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let streams_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = streams_seen.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut preface = [0u8; 24];
                    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut preface)
                        .await
                        .unwrap();
                    tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
                    let mut first = None;
                    while let Some((kind, flags, stream)) = read_frame(&mut tcp).await {
                        if kind == SETTINGS && flags & 1 == 0 {
                            tcp.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
                        }
                        if kind != HEADERS {
                            continue;
                        }
                        seen.lock().unwrap().push((n, stream));
                        match (n, first) {
                            // The first connection: wait for a second request, then
                            // GOAWAY below it (NO_ERROR) and answer the first only.
                            (0, None) => first = Some(stream),
                            (0, Some(first)) => {
                                let mut goaway = first.to_be_bytes().to_vec();
                                goaway.extend_from_slice(&0u32.to_be_bytes());
                                tcp.write_all(&frame(GOAWAY, 0, 0, &goaway)).await.unwrap();
                                tcp.write_all(&ok(first)).await.unwrap();
                            }
                            _ => tcp.write_all(&ok(stream)).await.unwrap(),
                        }
                    }
                });
            }
        });
        let client = H2c::new(Duration::from_secs(1));
        let send = || {
            client.send(
                Request::post(uri.clone())
                    .body(Bytes::from_static(b"{}"))
                    .unwrap(),
            )
        };
        let (a, b) = tokio::join!(send(), send());
        assert_eq!(a.unwrap().status(), 200);
        assert_eq!(b.unwrap().status(), 200);
        let seen = streams_seen.lock().unwrap().clone();
        assert_eq!(seen, vec![(0, 1), (0, 3), (1, 1)], "(connection, stream)");
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let e = post(&H2c::new(Duration::from_secs(1)), &uri)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    }
}
