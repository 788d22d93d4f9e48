//! The feature view: pick a feature, see its live split, fallbacks, errors, latency
//! and cost; its binding with each endpoint's state; and (permission `edit_feature`)
//! edit its binding and experiment split, validated in the browser with the server's
//! own rules, reviewed as a diff, then published.

mod binding_editor;
mod binding_view;
mod draft;
mod feature_editor;
mod feature_index;
mod feature_live;
mod feature_page;
mod navigation;
mod split_editor;

pub use feature_page::FeaturePage;
