//! The console's pure logic: no DOM, no reactivity, no I/O. Everything here is unit
//! tested natively (`cargo test -p ui --lib`); the components only call it.

pub mod access;
pub mod format;
pub mod group;
pub mod percent;
pub mod spend;
pub mod status;
pub mod view;
