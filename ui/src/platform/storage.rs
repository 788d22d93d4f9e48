//! What the console remembers between visits, and where.
//!
//! An admin token is a bearer credential: it is never written where another program,
//! a backup or a page script could read it at leisure unless the person asked for it.
//!
//! - Browser: the console talks to the router that served it (no profiles). The token
//!   is kept in `sessionStorage` (forgotten when the tab closes); only when the person
//!   ticks "remember" is it kept in `localStorage` until they sign out.
//! - Desktop: connection profiles (name and router URL, never a token) and the last
//!   one used live in `localStorage`. A remembered token lives in the OS keychain
//!   (`platform::desktop::keychain`); otherwise in `sessionStorage`, for as long as
//!   the window is open. Profiles saved by earlier versions with their token inside
//!   are rewritten without it ([`take_legacy_tokens`]).

use serde::{Deserialize, Serialize};

const PROFILES: &str = "crossbar.profiles";
const LAST_PROFILE: &str = "crossbar.last_profile";
const SESSION_TOKEN: &str = "crossbar.token";
const REMEMBERED_TOKEN: &str = "crossbar.remembered_token";

/// A saved connection: where, not as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub url: String,
}

/// A profile as earlier versions saved it, token included.
#[derive(Deserialize)]
struct LegacyProfile {
    name: String,
    url: String,
    #[serde(default)]
    token: Option<String>,
}

/// The profiles in `json` without their tokens, and the tokens that were there (by
/// profile name). Unreadable JSON holds no profile.
pub fn split_legacy(json: &str) -> (Vec<Profile>, Vec<(String, String)>) {
    let legacy: Vec<LegacyProfile> = serde_json::from_str(json).unwrap_or_default();
    let mut tokens = Vec::new();
    let profiles = legacy
        .into_iter()
        .map(|p| {
            if let Some(token) = p.token.filter(|t| !t.is_empty()) {
                tokens.push((p.name.clone(), token));
            }
            Profile {
                name: p.name,
                url: p.url,
            }
        })
        .collect();
    (profiles, tokens)
}

fn local() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

fn read(storage: Option<web_sys::Storage>, key: &str) -> Option<String> {
    storage
        .and_then(|s| s.get_item(key).ok().flatten())
        .filter(|v| !v.is_empty())
}

pub fn profiles() -> Vec<Profile> {
    read(local(), PROFILES)
        .map(|json| split_legacy(&json).0)
        .unwrap_or_default()
}

fn write_profiles(all: &[Profile]) {
    if let (Some(s), Ok(json)) = (local(), serde_json::to_string(all)) {
        let _ = s.set_item(PROFILES, &json);
    }
}

/// Tokens that earlier versions saved inside the profiles, in plain text: taken out
/// (the profiles are rewritten without them) and returned, for the caller to move
/// to the keychain.
pub fn take_legacy_tokens() -> Vec<(String, String)> {
    let Some(json) = read(local(), PROFILES) else {
        return Vec::new();
    };
    let (profiles, tokens) = split_legacy(&json);
    if !tokens.is_empty() {
        write_profiles(&profiles);
    }
    tokens
}

/// Adds or replaces (by name) a profile and makes it the last one used.
pub fn save_profile(profile: &Profile) {
    let mut all = profiles();
    all.retain(|p| p.name != profile.name);
    all.push(profile.clone());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    write_profiles(&all);
    if let Some(s) = local() {
        let _ = s.set_item(LAST_PROFILE, &profile.name);
    }
}

pub fn delete_profile(name: &str) {
    let mut all = profiles();
    all.retain(|p| p.name != name);
    write_profiles(&all);
    if last_profile().as_deref() == Some(name)
        && let Some(s) = local()
    {
        let _ = s.remove_item(LAST_PROFILE);
    }
}

pub fn last_profile() -> Option<String> {
    read(local(), LAST_PROFILE)
}

/// This tab's (this window's) token.
pub fn session_token() -> Option<String> {
    read(session(), SESSION_TOKEN)
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

/// The browser's remembered token ("remember" ticked at sign-in).
pub fn remembered_token() -> Option<String> {
    read(local(), REMEMBERED_TOKEN)
}

pub fn set_remembered_token(token: &str) {
    if let Some(s) = local() {
        let _ = s.set_item(REMEMBERED_TOKEN, token);
    }
}

pub fn clear_remembered_token() {
    if let Some(s) = local() {
        let _ = s.remove_item(REMEMBERED_TOKEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_saved_with_tokens_are_read_without_them() {
        let json = r#"[{"name":"prod","url":"https://r.example","token":"cba-secret"},
                       {"name":"dev","url":"http://127.0.0.1:8080"}]"#;
        let (profiles, tokens) = split_legacy(json);
        assert_eq!(
            profiles,
            [
                Profile {
                    name: "prod".into(),
                    url: "https://r.example".into()
                },
                Profile {
                    name: "dev".into(),
                    url: "http://127.0.0.1:8080".into()
                }
            ]
        );
        assert_eq!(tokens, [("prod".to_owned(), "cba-secret".to_owned())]);
        // What is written back holds no token.
        let rewritten = serde_json::to_string(&profiles).unwrap();
        assert!(!rewritten.contains("cba-secret") && !rewritten.contains("token"));
        assert_eq!(split_legacy("not json"), (Vec::new(), Vec::new()));
    }
}
