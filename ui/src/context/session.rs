//! The session: which router the console talks to, as whom, with which permissions.
//!
//! Provided once by the app; every page reads it with [`use_session`]. Signing in asks
//! the router `GET /whoami` with the token, so a bad token is refused right there, and
//! the role's permissions decide what each page offers (the server refuses the rest
//! anyway). A `401` on any later call (token revoked) signs out with a notice.

use leptos::prelude::*;
use router_core::admin::{Action, WhoAmI};

use crate::api::{Api, ApiError};
use crate::platform::{desktop, storage};

/// A signed-in connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub api: Api,
    pub who: WhoAmI,
    /// The saved profile in use (desktop).
    pub profile: Option<String>,
}

#[derive(Clone, Copy)]
pub struct Session {
    pub conn: RwSignal<Option<Connection>>,
    /// Inside the desktop app: the router URL must be entered (profiles).
    pub desktop: bool,
    /// Restoring a remembered sign-in at start-up (the form waits for it).
    pub restoring: RwSignal<bool>,
    /// Why the console is showing the sign-in form again, if not by choice.
    pub notice: RwSignal<Option<String>>,
    /// Something about the sign-in the signed-in person should know (the token could
    /// not be remembered as asked: no OS keychain).
    pub warning: RwSignal<Option<String>>,
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Creates the session, provides it, and restores a remembered sign-in: this tab's
/// (window's) token, else the browser's remembered token, or on desktop the last
/// profile's token from the OS keychain.
pub fn provide_session() -> Session {
    let desktop = desktop::is_desktop();
    let session = Session {
        conn: RwSignal::new(None),
        desktop,
        restoring: RwSignal::new(false),
        notice: RwSignal::new(None),
        warning: RwSignal::new(None),
    };
    provide_context(session);

    session.restoring.set(true);
    leptos::task::spawn_local(async move {
        if desktop {
            session.move_legacy_tokens().await;
        }
        let remembered = if desktop {
            match storage::last_profile()
                .and_then(|name| storage::profiles().into_iter().find(|p| p.name == name))
            {
                Some(p) => match storage::session_token() {
                    Some(token) => Some((p.url, token, Some(p.name), false)),
                    None => match desktop::keychain::get(&p.name).await {
                        Ok(token) => token.map(|t| (p.url, t, Some(p.name), true)),
                        Err(e) => {
                            session.notice.set(Some(format!(
                                "The OS keychain could not be read ({e}): sign in with your token."
                            )));
                            None
                        }
                    },
                },
                None => None,
            }
        } else {
            storage::session_token()
                .map(|t| (String::new(), t, None, false))
                .or_else(|| storage::remembered_token().map(|t| (String::new(), t, None, true)))
        };
        if let Some((url, token, profile, remember)) = remembered
            && let Err(e) = session.sign_in(&url, &token, profile, remember).await
        {
            session
                .notice
                .set(Some(format!("Could not restore your last sign-in. {e}")));
        }
        session.restoring.set(false);
    });
    session
}

impl Session {
    /// The API of the signed-in connection (tracked).
    pub fn api(&self) -> Option<Api> {
        self.conn.with(|c| c.as_ref().map(|c| c.api.clone()))
    }

    /// The API, untracked, for event handlers.
    pub fn api_now(&self) -> Option<Api> {
        self.conn
            .with_untracked(|c| c.as_ref().map(|c| c.api.clone()))
    }

    /// Whether the signed-in role may do `action` (tracked).
    pub fn may(&self, action: Action) -> bool {
        self.conn.with(|c| {
            c.as_ref()
                .is_some_and(|c| c.who.permissions.contains(&action))
        })
    }

    /// Checks the token with `GET /whoami`; on success keeps it where the person
    /// chose: with `remember`, in the browser's local storage or the OS keychain
    /// (desktop); without, in this tab's (window's) session storage only, and any
    /// earlier remembered token for it is forgotten.
    pub async fn sign_in(
        self,
        url: &str,
        token: &str,
        profile: Option<String>,
        remember: bool,
    ) -> Result<(), ApiError> {
        let base = if self.desktop { url } else { "" };
        let api = Api::new(base, token);
        let who = api.whoami().await?;
        let mut warning = None;
        if self.desktop {
            if let Some(name) = &profile {
                storage::save_profile(&storage::Profile {
                    name: name.clone(),
                    url: api.base().to_owned(),
                });
            }
            storage::set_session_token(api.token());
            match (&profile, remember) {
                (Some(name), true) => {
                    if let Err(e) = desktop::keychain::set(name, api.token()).await {
                        warning = Some(format!(
                            "Your token could not be remembered: {e}. It is kept only until this window \
                             closes; you will be asked for it next time."
                        ));
                    }
                }
                (Some(name), false) => {
                    // Not remembered: forget what an earlier sign-in saved. In the
                    // background: the sign-in does not wait on the keychain.
                    let name = name.clone();
                    leptos::task::spawn_local(async move {
                        let _ = desktop::keychain::delete(&name).await;
                    });
                }
                (None, _) => {}
            }
        } else if remember {
            storage::set_remembered_token(api.token());
            storage::clear_session_token();
        } else {
            storage::set_session_token(api.token());
            storage::clear_remembered_token();
        }
        self.notice.set(None);
        self.warning.set(warning);
        self.conn.set(Some(Connection { api, who, profile }));
        Ok(())
    }

    /// Forgets the connection: the tab's (window's) token, and the browser's
    /// remembered one. Desktop profiles and their keychain entries stay (delete the
    /// saved connection to forget those).
    pub fn sign_out(self, notice: Option<String>) {
        storage::clear_session_token();
        if !self.desktop {
            storage::clear_remembered_token();
        }
        self.notice.set(notice);
        self.warning.set(None);
        self.conn.set(None);
    }

    /// Reacts to an error any page got: a refused token ends the session.
    pub fn report(self, error: &ApiError) {
        if error.is_unauthorized() && self.conn.with_untracked(Option::is_some) {
            self.sign_out(Some(format!("You were signed out. {error}")));
        }
    }

    /// Moves tokens that earlier versions kept inside the saved profiles (plain text
    /// in local storage) to the OS keychain; without a keychain they are dropped,
    /// and the person is told.
    async fn move_legacy_tokens(self) {
        let tokens = storage::take_legacy_tokens();
        let mut lost = Vec::new();
        for (name, token) in tokens {
            if desktop::keychain::set(&name, &token).await.is_err() {
                lost.push(name);
            }
        }
        if !lost.is_empty() {
            self.notice.set(Some(format!(
                "Saved tokens are no longer kept in plain text, and the OS keychain is not available: \
                 sign in again to {}.",
                lost.join(", ")
            )));
        }
    }
}
