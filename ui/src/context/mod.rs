//! Shared state, one context module per shared resource: the session (who, which
//! router) and the live event stream.

pub mod live;
pub mod session;
