//! Server-sent events over an HTTP response body: the framing OpenAI, Gemini (`alt=sse`) and
//! Anthropic streams share. A transport failure or a silence longer than the idle
//! timeout is `stream_interrupted`.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};

use super::transport::UpstreamBody;
use crate::api::{Error, ErrorKind};

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
            if let Some(event) = next_event(&mut st.buffer, &mut st.scanned) {
                return Some((Ok(event), st));
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

/// Takes one complete event (terminated by a blank line) off the front of `buffer`.
/// Events with no `data:` (comments, keep-alives) are skipped. `scanned`: how much of
/// the buffer an earlier call found without a boundary.
fn next_event(buffer: &mut BytesMut, scanned: &mut usize) -> Option<SseEvent> {
    loop {
        let Some((end, sep)) = find_blank_line(buffer, *scanned) else {
            // A boundary may still begin in the last 3 bytes (`\r\n\r` of `\r\n\r\n`).
            *scanned = buffer.len().saturating_sub(3);
            return None;
        };
        *scanned = 0;
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
            return Some(SseEvent { event, data });
        }
    }
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

    #[test]
    fn splits_events_with_names_and_multiline_data() {
        let mut b = BytesMut::from(
            &b"event: ping\ndata: {}\n\n: comment\n\ndata: a\ndata: b\r\n\r\ndata: par"[..],
        );
        let mut scanned = 0;
        assert_eq!(
            next_event(&mut b, &mut scanned),
            Some(SseEvent {
                event: Some("ping".into()),
                data: "{}".into()
            })
        );
        assert_eq!(
            next_event(&mut b, &mut scanned),
            Some(SseEvent {
                event: None,
                data: "a\nb".into()
            })
        );
        assert_eq!(next_event(&mut b, &mut scanned), None);
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
                while let Some(event) = next_event(&mut buffer, &mut scanned) {
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
        let event = next_event(&mut b, &mut 0).unwrap();
        assert_eq!(event.data, "caf\u{fffd}");
    }
}
