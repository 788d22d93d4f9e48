//! Crossbar's routing brain.
//!
//! This crate has no HTTP server and no database. It is split so that the pure parts
//! (`api`, `config`) also compile to wasm for the console, while provider I/O sits
//! behind the default `providers` feature.
//!
//! - [`api`]: the unified chat-completions types and the error taxonomy;
//! - [`config`]: endpoint configuration and its validation;
//! - [`providers`]: one adapter per cloud API family (feature `providers`);
//! - [`auth`]: secretless cloud credentials (feature `providers`).

// `api::Error` is a flat struct of ~150 bytes: it lives on the failure path only, and a
// plain value is simpler to build, match and serialise than a boxed one.
#![allow(clippy::result_large_err)]

pub mod api;
#[cfg(feature = "providers")]
pub mod auth;
pub mod config;
pub mod logging;
#[cfg(feature = "providers")]
pub mod providers;

/// The crate version, shown by the console and the server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
