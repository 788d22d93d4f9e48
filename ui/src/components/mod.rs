//! Small components shared by several pages.

pub mod change_list;
pub mod error_box;
pub mod field_problems;
pub mod state_badge;

pub use change_list::ChangeList;
pub use error_box::ErrorBox;
pub use field_problems::FieldProblems;
pub use state_badge::{StateBadge, breaker_signals};
