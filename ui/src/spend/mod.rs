//! Spend: a range and a grouping, the table (requests, tokens, on-demand, provisioned
//! share, totals, unattributed provisioned hours), a stacked chart drawn with
//! `plotters`, and downloads (SVG, PNG, CSV).

pub mod chart;
mod spend_page;
mod spend_table;

pub use spend_page::SpendPage;
