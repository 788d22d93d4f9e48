//! Moving between the feature views: the index links to a feature's page, and the page
//! back to the index or to another feature. Both views use it, so it is neither's.

use leptos::prelude::*;

use crate::logic::view::View;

/// Opens `name`'s feature page (the location hash names the view).
pub fn go_to_feature(name: &str) {
    let _ = window()
        .location()
        .set_hash(&View::Features(Some(name.to_owned())).hash());
}
