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
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Creates the session, provides it, and restores a remembered sign-in: the last
/// profile (desktop) or this tab's token (browser).
pub fn provide_session() -> Session {
    let desktop = desktop::is_desktop();
    let session = Session {
        conn: RwSignal::new(None),
        desktop,
        restoring: RwSignal::new(false),
        notice: RwSignal::new(None),
    };
    provide_context(session);

    let remembered = if desktop {
        storage::last_profile().and_then(|name| {
            storage::profiles()
                .into_iter()
                .find(|p| p.name == name)
                .map(|p| (p.url, p.token, Some(p.name)))
        })
    } else {
        storage::session_token().map(|t| (String::new(), t, None))
    };
    if let Some((url, token, profile)) = remembered {
        session.restoring.set(true);
        leptos::task::spawn_local(async move {
            if let Err(e) = session.sign_in(&url, &token, profile).await {
                session
                    .notice
                    .set(Some(format!("Could not restore your last sign-in. {e}")));
            }
            session.restoring.set(false);
        });
    }
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

    /// Checks the token with `GET /whoami`; on success remembers it (the profile in
    /// local storage on desktop, the token in session storage in a browser).
    pub async fn sign_in(
        self,
        url: &str,
        token: &str,
        profile: Option<String>,
    ) -> Result<(), ApiError> {
        let base = if self.desktop { url } else { "" };
        let api = Api::new(base, token);
        let who = api.whoami().await?;
        if self.desktop {
            if let Some(name) = &profile {
                storage::save_profile(&storage::Profile {
                    name: name.clone(),
                    url: api.base().to_owned(),
                    token: api.token().to_owned(),
                });
            }
        } else {
            storage::set_session_token(api.token());
        }
        self.notice.set(None);
        self.conn.set(Some(Connection { api, who, profile }));
        Ok(())
    }

    /// Forgets the connection (the browser's tab token too; desktop profiles stay).
    pub fn sign_out(self, notice: Option<String>) {
        if !self.desktop {
            storage::clear_session_token();
        }
        self.notice.set(notice);
        self.conn.set(None);
    }

    /// Reacts to an error any page got: a refused token ends the session.
    pub fn report(self, error: &ApiError) {
        if error.is_unauthorized() && self.conn.with_untracked(Option::is_some) {
            self.sign_out(Some(format!("You were signed out. {error}")));
        }
    }
}
