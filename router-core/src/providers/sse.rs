//! Server-sent events over an HTTP response body: the framing OpenAI, Gemini (`alt=sse`) and
//! Anthropic streams share. A transport failure, a silence longer than the idle
//! timeout, or an event larger than [`MAX_EVENT_BYTES`] is `stream_interrupted`.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};

use super::transport::UpstreamBody;
use crate::api::{Error, ErrorKind};

/// The most one event may hold, its field names and line ends included. A chunk of
/// a chat stream is a few hundred bytes, a tool call's arguments or a last chunk
/// with usage some kilobytes; an upstream that sends a line without end must not
/// grow the buffer that waits for its end without bound.
pub(crate) const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

pub(crate) fn events(
    response: http::Response<UpstreamBody>,
    idle: Duration,
) -> impl Stream<Item = Result<SseEvent, Error>> + Send + 'static {
    struct State<B> {
        body: std::pin::Pin<Box<B>>,
        buffer: BytesMut,
        /// How much of `buffer` is known to hold no event boundary: an event that
        /// arrives in pieces is not searched again from its start for every piece.
        scanned: usize,
        done: bool,
    }
    let state = State {
        body: Box::pin(http_body_util::BodyDataStream::new(response.into_body())),
        buffer: BytesMut::new(),
        scanned: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            let event = next_event(&mut st.buffer, &mut st.scanned);
            // An event too large, whole or still arriving, ends the stream.
            let event = match event {
                None if st.buffer.len() > MAX_EVENT_BYTES => Some(Err(too_large())),
                event => event,
            };
            match event {
                Some(Ok(event)) => return Some((Ok(event), st)),
                Some(Err(e)) => {
                    st.done = true;
                    st.buffer = BytesMut::new();
                    return Some((Err(e), st));
                }
                None => {}
            }
            if st.done {
                return None;
            }
            match tokio::time::timeout(idle, st.body.next()).await {
                Err(_) => {
                    st.done = true;
                    let e = Error::new(
                        ErrorKind::StreamInterrupted,
                        format!("no data for {} ms", idle.as_millis()),
                    );
                    return Some((Err(e), st));
                }
                Ok(Some(Ok(bytes))) => st.buffer.extend_from_slice(&bytes),
                Ok(Some(Err(e))) => {
                    st.done = true;
                    let e = Error::new(
                        ErrorKind::StreamInterrupted,
                        format!("the stream broke: {e}"),
                    );
                    return Some((Err(e), st));
                }
                Ok(None) => {
                    st.done = true;
                    // A last event without its blank line still counts.
                    if !st.buffer.iter().all(u8::is_ascii_whitespace) {
                        st.buffer.extend_from_slice(b"\n\n");
                        continue;
                    }
                    return None;
                }
            }
        }
    })
}

/// Takes one complete event (terminated by a blank line) off the front of `buffer`,
/// or an error for one larger than [`MAX_EVENT_BYTES`]. Events with no `data:`
/// (comments, keep-alives) are skipped. `scanned`: how much of the buffer an earlier
/// call found without a boundary.
fn next_event(buffer: &mut BytesMut, scanned: &mut usize) -> Option<Result<SseEvent, Error>> {
    loop {
        let Some((end, sep)) = find_blank_line(buffer, *scanned) else {
            // A boundary may still begin in the last 3 bytes (`\r\n\r` of `\r\n\r\n`).
            *scanned = buffer.len().saturating_sub(3);
            return None;
        };
        *scanned = 0;
        if end > MAX_EVENT_BYTES {
            return Some(Err(too_large()));
        }
        let raw = buffer.split_to(end);
        buffer.advance(sep);
        // Streams are UTF-8; only a broken one pays for the lossy copy.
        let text = match std::str::from_utf8(&raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&raw),
        };
        let mut event = None;
        let mut data: Option<String> = None;
        for line in text.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        if let Some(data) = data {
            return Some(Ok(SseEvent { event, data }));
        }
    }
}

fn too_large() -> Error {
    Error::new(
        ErrorKind::StreamInterrupted,
        format!(
            "an event larger than {} MiB, the most read of one",
            MAX_EVENT_BYTES >> 20
        ),
    )
}

/// The first blank line at or after `from`: `(where it starts, its length)`. Only the
/// line ends are looked at, found with `memchr` (a byte-by-byte scan was the largest
/// cost of relaying a stream).
fn find_blank_line(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    for i in memchr::memchr2_iter(b'\n', b'\r', buffer.get(from..)?) {
        let rest = &buffer[from + i..];
        if rest.starts_with(b"\r\n\r\n") {
            return Some((from + i, 4));
        }
        if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            return Some((from + i, 2));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::transport::BodyError;
    use bytes::Bytes;

    #[test]
    fn splits_events_with_names_and_multiline_data() {
        let mut b = BytesMut::from(
            &b"event: ping\ndata: {}\n\n: comment\n\ndata: a\ndata: b\r\n\r\ndata: par"[..],
        );
        let mut scanned = 0;
        assert_eq!(
            next_event(&mut b, &mut scanned).map(Result::unwrap),
            Some(SseEvent {
                event: Some("ping".into()),
                data: "{}".into()
            })
        );
        assert_eq!(
            next_event(&mut b, &mut scanned).map(Result::unwrap),
            Some(SseEvent {
                event: None,
                data: "a\nb".into()
            })
        );
        assert_eq!(next_event(&mut b, &mut scanned).map(Result::unwrap), None);
        assert_eq!(&b[..], b"data: par");
    }

    #[test]
    fn an_event_arriving_a_byte_at_a_time_is_found_once_whatever_its_line_ends() {
        for stream in [
            &b"data: {\"a\": 1}\r\n\r\ndata: two\n\n"[..],
            &b"data: {\"a\": 1}\n\ndata: two\r\r"[..],
            &b": keep-alive\r\n\r\ndata: {\"a\": 1}\r\n\r\ndata: two\r\n\r\n"[..],
        ] {
            let (mut buffer, mut scanned, mut seen) = (BytesMut::new(), 0, Vec::new());
            for byte in stream {
                buffer.extend_from_slice(&[*byte]);
                while let Some(event) = next_event(&mut buffer, &mut scanned).map(Result::unwrap) {
                    seen.push(event.data);
                }
            }
            assert_eq!(
                seen,
                ["{\"a\": 1}", "two"],
                "{:?}",
                String::from_utf8_lossy(stream)
            );
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_fatal() {
        let mut b = BytesMut::from(&b"data: caf\xe9\n\n"[..]);
        let event = next_event(&mut b, &mut 0).unwrap().unwrap();
        assert_eq!(event.data, "caf\u{fffd}");
    }

    /// A body of `frames`, then (if `endless`) 64 KiB of `a` without a newline, again
    /// and again, each after a yield; counts the frames pulled.
    fn body(
        frames: Vec<Bytes>,
        endless: bool,
        pulled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> http::Response<UpstreamBody> {
        use http_body_util::BodyExt;
        use std::sync::atomic::Ordering;
        let line = Bytes::from(vec![b'a'; 64 * 1024]);
        let rest = futures_util::stream::unfold((), move |()| {
            let (line, pulled) = (line.clone(), pulled.clone());
            async move {
                if !endless {
                    return None;
                }
                tokio::task::yield_now().await;
                pulled.fetch_add(1, Ordering::Relaxed);
                Some((line, ()))
            }
        });
        let frames = futures_util::stream::iter(frames)
            .chain(rest)
            .map(|b| Ok::<_, BodyError>(http_body::Frame::data(b)));
        http::Response::new(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
    }

    /// A line that never ends must not grow the buffer forever: past the cap on one
    /// event the stream is interrupted, long before any idle timeout.
    #[tokio::test]
    async fn an_endless_line_is_refused_once_it_passes_the_event_cap() {
        let pulled = std::sync::Arc::default();
        let response = body(
            vec![Bytes::from_static(b"data: ")],
            true,
            std::sync::Arc::clone(&pulled),
        );
        let mut stream = std::pin::pin!(events(response, Duration::from_secs(30)));
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("refused before the test's timeout");
        let e = first.unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::StreamInterrupted, "{e:?}");
        assert!(e.message.contains("1 MiB"), "{e:?}");
        let read = pulled.load(std::sync::atomic::Ordering::Relaxed) * 64 * 1024;
        assert!(read <= MAX_EVENT_BYTES + 64 * 1024, "{read} bytes read");
        assert!(stream.next().await.is_none(), "nothing after the error");
    }

    /// An event larger than the cap is refused even when it arrives whole; the
    /// events before it are delivered.
    #[tokio::test]
    async fn an_event_larger_than_the_cap_is_refused_even_when_it_arrives_whole() {
        let mut big = b"data: ".to_vec();
        big.resize(MAX_EVENT_BYTES + 10, b'a');
        big.extend_from_slice(b"\n\n");
        let frames = vec![Bytes::from_static(b"data: small\n\n"), Bytes::from(big)];
        let response = body(frames, false, std::sync::Arc::default());
        let got: Vec<_> = events(response, Duration::from_secs(5)).collect().await;
        let sizes: Vec<_> = got
            .iter()
            .map(|e| e.as_ref().map(|e| e.data.len()))
            .collect();
        assert_eq!(got.len(), 2, "{sizes:?}");
        assert_eq!(got[0].as_ref().unwrap().data, "small");
        match &got[1] {
            Err(e) => assert_eq!(e.kind, ErrorKind::StreamInterrupted, "{e:?}"),
            Ok(event) => panic!("an event of {} bytes was delivered", event.data.len()),
        }
    }
}
