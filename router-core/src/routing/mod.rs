//! Routing: from a feature to an ordered list of endpoints, and the attempts.
//!
//! Pure, clock-injected decisions (each unit-tested on its own):
//! - [`select`]: the experiment variant for a sticky key;
//! - [`plan`]: candidate order under the data boundary, capacity and breakers;
//! - [`breaker`]: per-endpoint health state machine with a partial-open ramp;
//! - [`budget`]: the retry budget;
//! - [`capacity`]: provisioned tokens-per-minute accounting for spillover.
//!
//! [`engine`] (feature `providers`) runs them against the adapters.

pub mod breaker;
pub mod budget;
pub mod capacity;
pub mod clock;
#[cfg(feature = "providers")]
pub mod engine;
pub mod plan;
pub mod select;
mod settings;
