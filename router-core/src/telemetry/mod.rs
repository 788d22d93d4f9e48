//! Telemetry: latency histograms, rolling windows (the signals the breaker and the
//! dashboard read) and the per-request records handed to the server.

pub mod histogram;
pub mod record;
pub mod window;
