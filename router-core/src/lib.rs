//! Crossbar's routing brain.
//!
//! This crate has no HTTP server and no database. It is split so that the pure parts
//! (`api`, `config`) also compile to wasm for the console, while provider I/O sits
//! behind the default `providers` feature.
//!
//! The foundation issue only lays out the crate; the adapters, the routing engine and
//! the config model arrive with their own issues.

pub mod api;
pub mod config;

/// The crate version, shown by the console and the server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
