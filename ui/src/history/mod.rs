//! Version history: every published configuration, what each would change if restored,
//! and one-click (plus confirm) rollback for roles with `rollback`.

mod history_page;
mod version_detail;

pub use history_page::HistoryPage;
