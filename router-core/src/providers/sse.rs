//! Server-sent events over an HTTP response body: the framing OpenAI, Gemini (`alt=sse`) and
//! Anthropic streams share. A transport failure or a silence longer than the idle
//! timeout is `stream_interrupted`.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};

use super::transport::Body;
use crate::api::{Error, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

pub(crate) fn events(
    response: http::Response<Body>,
    idle: Duration,
) -> impl Stream<Item = Result<SseEvent, Error>> + Send + 'static {
    struct State<B> {
        body: std::pin::Pin<Box<B>>,
        buffer: BytesMut,
        done: bool,
    }
    let state = State {
        body: Box::pin(http_body_util::BodyDataStream::new(response.into_body())),
        buffer: BytesMut::new(),
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(event) = next_event(&mut st.buffer) {
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
/// Events with no `data:` (comments, keep-alives) are skipped.
fn next_event(buffer: &mut BytesMut) -> Option<SseEvent> {
    loop {
        let (end, sep) = find_blank_line(buffer)?;
        let raw = buffer.split_to(end);
        buffer.advance(sep);
        let text = String::from_utf8_lossy(&raw);
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

fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buffer.len() {
        if buffer[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
        if buffer[i..].starts_with(b"\n\n") || buffer[i..].starts_with(b"\r\r") {
            return Some((i, 2));
        }
        i += 1;
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
        assert_eq!(
            next_event(&mut b),
            Some(SseEvent {
                event: Some("ping".into()),
                data: "{}".into()
            })
        );
        assert_eq!(
            next_event(&mut b),
            Some(SseEvent {
                event: None,
                data: "a\nb".into()
            })
        );
        assert_eq!(next_event(&mut b), None);
        assert_eq!(&b[..], b"data: par");
    }
}
