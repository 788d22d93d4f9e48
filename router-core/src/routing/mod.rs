//! Routing: from a feature to an ordered list of endpoints, and the attempts.
//!
//! Pure, clock-injected decisions (each unit-tested on its own):
//! - [`select`]: the experiment variant for a sticky key;
//! - [`plan`]: candidate order under the data boundary, capacity and breakers;
//! - [`breaker`]: per-endpoint health state machine with a partial-open ramp;
//! - [`budget`]: the retry budget;
//! - [`capacity`]: provisioned tokens-per-minute accounting for spillover;
//! - [`decision`]: what follows a failed attempt (retry, move on, spill, give up);
//! - [`continuation`]: the request that continues a broken stream on a backup, and
//!   the splice that joins the two;
//! - [`drill`]: disaster-recovery drills as an overlay on the plan;
//! - [`parity`]: a shadow's answer compared with the incumbent's;
//! - [`rollout`]: a staged rollout's next step (hold, advance, roll back) from its
//!   gates;
//! - [`rolls`]: the seeded dice of all of the above.
//!
//! [`clock`] is the one seam through which routing reads time and waits for it, and
//! [`engine`] runs the decisions against the adapters.

pub mod breaker;
pub mod budget;
pub mod capacity;
pub mod clock;
pub mod continuation;
pub mod decision;
pub mod drill;
pub mod engine;
pub mod parity;
pub mod plan;
pub mod rollout;
pub mod rolls;
pub mod select;
mod settings;
