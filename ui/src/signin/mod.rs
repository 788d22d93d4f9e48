//! Sign-in: the admin token (and, in the desktop app, the router URL and saved
//! connection profiles).

mod signin_page;

pub use signin_page::SignIn;
