//! Access: admin API tokens and gateway keys — listed with their state and expiry,
//! created (the secret shown once), revoked. Each panel needs its permission
//! (`manage_tokens`, `manage_keys`: the admin role); the router checks again.

mod access_page;
mod keys_panel;
mod new_secret;
mod tokens_panel;

pub use access_page::AccessPage;
