//! AWS event-stream binary framing (`application/vnd.amazon.eventstream`), written from
//! the published format, not from the SDK:
//!
//! ```text
//! [total length u32][headers length u32][prelude CRC32 u32]
//! [headers: name-len u8, name, type u8 (7 = string), value-len u16, value]...
//! [payload][message CRC32 u32]
//! ```
//! All integers big-endian; the prelude CRC covers the first 8 bytes, the message CRC
//! everything before it.

use bytes::{BufMut, Bytes, BytesMut};

const HEADER_TYPE_STRING: u8 = 7;

/// One frame with string headers.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(n, v)| 1 + n.len() + 1 + 2 + v.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32(total as u32);
    buf.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&buf[..8]);
    buf.put_u32(prelude_crc);
    for (name, value) in headers {
        buf.put_u8(name.len() as u8);
        buf.put_slice(name.as_bytes());
        buf.put_u8(HEADER_TYPE_STRING);
        buf.put_u16(value.len() as u16);
        buf.put_slice(value.as_bytes());
    }
    buf.put_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.put_u32(crc);
    buf.freeze()
}

/// An `event` frame, as ConverseStream sends them.
pub fn event(event_type: &str, payload: &[u8]) -> Bytes {
    frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` frame (an error in the middle of a stream).
pub fn exception(exception_type: &str, payload: &[u8]) -> Bytes {
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

/// A frame whose message CRC is wrong: what a corrupted stream looks like.
pub fn corrupted(event_type: &str, payload: &[u8]) -> Bytes {
    let mut bytes = BytesMut::from(&event(event_type, payload)[..]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_and_checksums() {
        let f = event("messageStart", br#"{"role":"assistant"}"#);
        let total = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, f.len());
        assert_eq!(
            u32::from_be_bytes(f[8..12].try_into().unwrap()),
            crc32fast::hash(&f[..8])
        );
        assert_eq!(
            u32::from_be_bytes(f[total - 4..].try_into().unwrap()),
            crc32fast::hash(&f[..total - 4])
        );
        assert_eq!(&f[12 + headers..total - 4], br#"{"role":"assistant"}"#);
        // First header: ":event-type" = "messageStart".
        assert_eq!(f[12] as usize, ":event-type".len());
        assert_eq!(&f[13..24], b":event-type");
        assert_eq!(f[24], HEADER_TYPE_STRING);
    }

    #[test]
    fn corrupted_frames_fail_their_checksum() {
        let f = corrupted("contentBlockDelta", b"{}");
        let n = f.len();
        assert_ne!(
            u32::from_be_bytes(f[n - 4..].try_into().unwrap()),
            crc32fast::hash(&f[..n - 4])
        );
    }
}
