//! The body of an upstream's answer as every client hands it over, whichever
//! protocol carried it: the one type the readers (whole bodies, server-sent events)
//! are written against.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// An upstream's response body: hyper's HTTP/1.1 body, an h2c stream or reqwest's,
/// boxed to one type.
pub(crate) type UpstreamBody = BoxBody<Bytes, BodyError>;

/// Why reading an upstream body failed (the clients' own error types, boxed).
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;
