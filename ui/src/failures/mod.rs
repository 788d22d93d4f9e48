//! Failed requests, for operators: what each attempt's endpoint said (credentials
//! redacted) — the detail the gateway's client was not told.

mod failures_page;

pub use failures_page::FailuresPage;
