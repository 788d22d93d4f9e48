//! Headless Chromium through chromedriver, the way NOTES.md found works offline on a
//! 2-core CI machine: the system's Chromium (never a downloaded one), a throw-away
//! profile, and the flags that stop it phoning home.

use std::process::Command;

use anyhow::Context;
use serde_json::json;

use crate::STARTUP_TIMEOUT;
use crate::process::{ChildGuard, TempDir, free_port};
use crate::webdriver::{Session, WebDriver};

/// Flags Chromium needs on a headless, offline CI machine (see NOTES.md).
pub const CHROMIUM_ARGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
];

/// A chromedriver and the profile its Chromium uses; both go when dropped (sessions
/// borrow it, so they are closed first).
pub struct Chromium {
    webdriver: WebDriver,
    chromium: String,
    driver: ChildGuard,
    profile: TempDir,
}

impl Chromium {
    /// Starts chromedriver (`$CROSSBAR_CHROMEDRIVER`, else `chromedriver`) on a free
    /// port; its log is `artifacts/logs/<name>.log`. Chromium is
    /// `$CROSSBAR_CHROMIUM`, else `/usr/bin/chromium`.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let chromium =
            std::env::var("CROSSBAR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let chromedriver =
            std::env::var("CROSSBAR_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let profile = TempDir::new("chromium-profile")?;
        let port = free_port()?;
        let mut driver = ChildGuard::spawn(
            name,
            Command::new(&chromedriver).arg(format!("--port={port}")),
        )?;
        let webdriver = WebDriver::new(format!("http://127.0.0.1:{port}"))?;
        webdriver.wait_ready(&mut driver, STARTUP_TIMEOUT)?;
        Ok(Self {
            webdriver,
            chromium,
            driver,
            profile,
        })
    }

    /// Opens a browser window (a new session with its own profile directory).
    pub fn session(&self) -> anyhow::Result<Session<'_>> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        self.webdriver
            .new_session(json!({
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": self.chromium, "args": args },
            }))
            .with_context(|| self.driver.log_excerpt())
    }

    pub fn log_excerpt(&self) -> String {
        self.driver.log_excerpt()
    }
}
