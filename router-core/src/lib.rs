//! Crossbar's routing brain.
//!
//! This crate has no HTTP server and no database. It is split so that the pure parts
//! (`api`, `config`) also compile to wasm for the console, while provider I/O sits
//! behind the default `providers` feature.
//!
//! - [`api`]: the unified chat-completions types and the error taxonomy;
//! - [`config`]: endpoint configuration and its validation;
//! - [`providers`]: one adapter per cloud API family (feature `providers`);
//! - [`auth`]: secretless cloud credentials (feature `providers`);
//! - [`routing`]: variant selection, candidate planning, breakers, retry budget,
//!   capacity, the decision after a failed attempt, and the engine that runs a
//!   request (feature `providers`);
//! - [`telemetry`]: histograms, sliding windows, per-request records (feature
//!   `providers`);
//! - [`cost`]: what a request costs, in decimals;
//! - [`admin`]: the admin API's JSON shapes and the live-health views, shared with
//!   the console (which compiles `api`, `config`, `cost` and `admin` only).

// `api::Error` is a flat struct of ~150 bytes: it lives on the failure path only, and a
// plain value is simpler to build, match and serialise than a boxed one.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod api;
#[cfg(feature = "providers")]
pub mod auth;
pub mod config;
pub mod cost;
pub mod logging;
#[cfg(feature = "providers")]
pub mod providers;
#[cfg(feature = "providers")]
pub mod routing;
#[cfg(feature = "providers")]
pub mod telemetry;

/// The crate version, shown by the console and the server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
