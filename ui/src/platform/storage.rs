//! What the console remembers between visits.
//!
//! - Connection profiles (name, router URL, admin token) and the last one used live in
//!   `localStorage`: the desktop app has no other place, and its storage is the app's own.
//! - In a browser the console talks to the router that served it, so there is no
//!   profile: the token is kept in `sessionStorage`, which the browser forgets when the
//!   tab closes.

use serde::{Deserialize, Serialize};

const PROFILES: &str = "crossbar.profiles";
const LAST_PROFILE: &str = "crossbar.last_profile";
const SESSION_TOKEN: &str = "crossbar.token";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub url: String,
    pub token: String,
}

fn local() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

pub fn profiles() -> Vec<Profile> {
    local()
        .and_then(|s| s.get_item(PROFILES).ok().flatten())
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

/// Adds or replaces (by name) a profile and makes it the last one used.
pub fn save_profile(profile: &Profile) {
    let mut all = profiles();
    all.retain(|p| p.name != profile.name);
    all.push(profile.clone());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    if let (Some(s), Ok(json)) = (local(), serde_json::to_string(&all)) {
        let _ = s.set_item(PROFILES, &json);
        let _ = s.set_item(LAST_PROFILE, &profile.name);
    }
}

pub fn delete_profile(name: &str) {
    let mut all = profiles();
    all.retain(|p| p.name != name);
    if let (Some(s), Ok(json)) = (local(), serde_json::to_string(&all)) {
        let _ = s.set_item(PROFILES, &json);
        if last_profile().as_deref() == Some(name) {
            let _ = s.remove_item(LAST_PROFILE);
        }
    }
}

pub fn last_profile() -> Option<String> {
    local().and_then(|s| s.get_item(LAST_PROFILE).ok().flatten())
}

pub fn session_token() -> Option<String> {
    session()
        .and_then(|s| s.get_item(SESSION_TOKEN).ok().flatten())
        .filter(|t| !t.is_empty())
}

pub fn set_session_token(token: &str) {
    if let Some(s) = session() {
        let _ = s.set_item(SESSION_TOKEN, token);
    }
}

pub fn clear_session_token() {
    if let Some(s) = session() {
        let _ = s.remove_item(SESSION_TOKEN);
    }
}
