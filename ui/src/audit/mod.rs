//! The audit log: who did what, when, to which target, with the changes.

mod audit_page;

pub use audit_page::AuditPage;
