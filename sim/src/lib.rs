//! `crossbar-sim`: simulated cloud LLM endpoints that speak each provider's real wire
//! protocol, with fault injection, for tests, demos, disaster-recovery drills and load
//! tests. The real client libraries (the AWS SDK, google-cloud-auth, OpenAI clients)
//! work against them unchanged.
//!
//! - [`config`]: which endpoints to serve ([`config::SimConfig`]);
//! - [`server::Sim`]: starts them, one listener each, plus the control API;
//! - [`faults`]: what can be injected, set at start or at run time;
//! - [`model`]: deterministic replies (and continuations of prefills) and the token
//!   count they agree with;
//! - [`request_log`]: what each endpoint saw, for tests to assert on;
//! - [`load`]: the load generator.
//!
//! This crate must not depend on `router-core`: it is written from the providers'
//! documentation, so that an adapter's misunderstanding shows up as a failing test.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the simulators and the load generator spend and measure real time: that is their job"
)]

pub mod anthropic;
pub mod auth;
pub mod bedrock;
pub mod config;
pub mod endpoint;
pub mod eventstream;
pub mod faults;
pub mod google;
pub mod identity;
pub mod load;
pub mod model;
pub mod openai;
pub mod request_log;
pub mod server;
pub mod vertex;

pub use config::{AuthMode, EndpointSpec, Kind, SimConfig};
pub use faults::{ErrorClass, Faults, Outage, Prefill};
pub use request_log::Seen;
pub use server::Sim;
