//! A minimal W3C WebDriver client: just what the end-to-end tests use.
//!
//! Hand-written rather than thirtyfour/fantoccini: those pull in a second async stack
//! for five endpoints, and speaking the protocol directly keeps failures readable. It
//! works with chromedriver and WebKitWebDriver alike (W3C dialect only).

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::process::{ChildGuard, wait_until};

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// An error answered by the remote end (`{"value": {"error", "message"}}`).
#[derive(Debug)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebDriver error `{}` (HTTP {}): {}",
            self.error, self.status, self.message
        )
    }
}

impl std::error::Error for WebDriverError {}

/// A WebDriver server (the remote end), e.g. `http://127.0.0.1:4444`.
pub struct WebDriver {
    base: String,
    http: Client,
}

impl WebDriver {
    pub fn new(base: impl Into<String>) -> anyhow::Result<Self> {
        // Creating a session starts a browser or an app: allow it time on a busy machine.
        let http = Client::builder().timeout(Duration::from_secs(90)).build()?;
        Ok(Self {
            base: base.into(),
            http,
        })
    }

    /// Sends one command and returns its `value`, or the remote end's error.
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .with_context(|| format!("{method} {url}: the answer is not JSON"))?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() {
            let field = |name: &str| {
                value
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(WebDriverError {
                status: status.as_u16(),
                error: field("error"),
                message: field("message"),
            })
            .with_context(|| format!("{method} {path}"));
        }
        Ok(value)
    }

    /// Waits until the server answers `GET /status` as ready, or its process dies.
    pub fn wait_ready(&self, driver: &mut ChildGuard, timeout: Duration) -> anyhow::Result<()> {
        wait_until(
            timeout,
            &format!("{} to accept WebDriver commands", driver.name()),
            || {
                driver.check_running()?;
                let status = self.command(Method::GET, "/status", None)?;
                // `ready` is required by the spec; treat a server that omits it as ready.
                Ok(status
                    .get("ready")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
                    .then_some(()))
            },
        )
        .with_context(|| driver.log_excerpt())
    }

    /// Opens a session with `capabilities` as `alwaysMatch`.
    pub fn new_session(&self, capabilities: Value) -> anyhow::Result<Session<'_>> {
        let value = self
            .command(
                Method::POST,
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
            )
            .context("cannot create a WebDriver session")?;
        let id = value
            .get("sessionId")
            .and_then(Value::as_str)
            .with_context(|| format!("no sessionId in the new session's answer: {value}"))?
            .to_owned();
        Ok(Session { driver: self, id })
    }
}

/// An open session; deleted (closing its browser or app) on drop.
pub struct Session<'a> {
    driver: &'a WebDriver,
    id: String,
}

impl Session<'_> {
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.driver
            .command(method, &format!("/session/{}{path}", self.id), body)
    }

    pub fn navigate(&self, url: &str) -> anyhow::Result<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    pub fn title(&self) -> anyhow::Result<String> {
        let title = self.command(Method::GET, "/title", None)?;
        title
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the title is not a string: {title}"))
    }

    /// The first element matching a CSS selector, or `None` if there is none (yet).
    pub fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        match self.command(
            Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        ) {
            Ok(element) => element
                .get(ELEMENT_KEY)
                .and_then(Value::as_str)
                .map(|id| Some(id.to_owned()))
                .with_context(|| format!("not an element reference: {element}")),
            Err(err)
                if err
                    .downcast_ref::<WebDriverError>()
                    .is_some_and(|e| e.error == "no such element") =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Every element matching a CSS selector (possibly none).
    pub fn find_all(&self, css: &str) -> anyhow::Result<Vec<String>> {
        let elements = self.command(
            Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        elements
            .as_array()
            .with_context(|| format!("not a list of elements: {elements}"))?
            .iter()
            .map(|element| {
                element
                    .get(ELEMENT_KEY)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("not an element reference: {element}"))
            })
            .collect()
    }

    /// Clicks an element (scrolled into view first by the driver).
    pub fn click(&self, element: &str) -> anyhow::Result<()> {
        self.command(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Empties an input (the driver fires the input's change events).
    pub fn clear(&self, element: &str) -> anyhow::Result<()> {
        self.command(
            Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Types `text` into an element, key by key, as a person would.
    pub fn send_keys(&self, element: &str, text: &str) -> anyhow::Result<()> {
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// A DOM property of an element (`value`, `disabled`, ...), `null` if unset.
    pub fn property(&self, element: &str, name: &str) -> anyhow::Result<Value> {
        self.command(
            Method::GET,
            &format!("/element/{element}/property/{name}"),
            None,
        )
    }

    /// An HTML attribute of an element, `None` if absent.
    pub fn attribute(&self, element: &str, name: &str) -> anyhow::Result<Option<String>> {
        let value = self.command(
            Method::GET,
            &format!("/element/{element}/attribute/{name}"),
            None,
        )?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Whether a form control is enabled.
    pub fn is_enabled(&self, element: &str) -> anyhow::Result<bool> {
        let value = self.command(Method::GET, &format!("/element/{element}/enabled"), None)?;
        value
            .as_bool()
            .with_context(|| format!("`enabled` is not a boolean: {value}"))
    }

    /// The rendered text of an element.
    pub fn text(&self, element: &str) -> anyhow::Result<String> {
        let text = self.command(Method::GET, &format!("/element/{element}/text"), None)?;
        text.as_str()
            .map(str::to_owned)
            .with_context(|| format!("the text is not a string: {text}"))
    }

    /// Waits for an element matching `css` to exist with non-empty text, and returns it.
    pub fn wait_for_text(&self, css: &str, timeout: Duration) -> anyhow::Result<String> {
        wait_until(timeout, &format!("an element `{css}` with text"), || {
            let Some(element) = self.find(css)? else {
                return Ok(None);
            };
            let text = self.text(&element)?;
            Ok((!text.trim().is_empty()).then_some(text))
        })
    }

    /// Runs `script` as a function body with `args` (`arguments[0]`, ...) and returns
    /// what it returns.
    pub fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits for an element matching `css` and returns it.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<String> {
        wait_until(timeout, &format!("an element `{css}`"), || self.find(css))
    }

    /// Waits until the text of the first element matching `css` satisfies `wanted`,
    /// and returns that text. The element is found again on every poll: the console
    /// re-renders, so a reference can go stale between two polls.
    pub fn wait_for_text_where(
        &self,
        css: &str,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let mut last = None::<String>;
        let found = wait_until(timeout, &format!("`{css}` to show {what}"), || {
            let Some(element) = self.find(css)? else {
                return Ok(None);
            };
            let text = self.text(&element)?;
            let ok = wanted(&text);
            last = Some(text.clone());
            Ok(ok.then_some(text))
        });
        found.with_context(|| match &last {
            Some(text) => format!("`{css}` last read {text:?}"),
            None => format!("no `{css}` was ever found"),
        })
    }

    /// Finds `css` (waiting for it) and clicks it, retrying while the console
    /// re-renders the element under the driver.
    pub fn click_on(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_until(timeout, &format!("a click on `{css}`"), || {
            let Some(element) = self.find(css)? else {
                return Ok(None);
            };
            self.click(&element)?;
            Ok(Some(()))
        })
    }

    /// Runs `script` as an async function body; it finishes by calling its last
    /// argument (`arguments[arguments.length - 1]`) with the result.
    pub fn execute_async(&self, script: &str) -> anyhow::Result<Value> {
        self.command(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits until the page has rendered two more frames, so that what the DOM holds is
    /// also what is on screen (WebKitGTK answers DOM queries before it paints).
    pub fn wait_for_paint(&self) -> anyhow::Result<()> {
        self.execute_async(
            "const done = arguments[arguments.length - 1];
             requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
        )?;
        Ok(())
    }

    /// A PNG of the current page's viewport.
    pub fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let value = self.command(Method::GET, "/screenshot", None)?;
        let encoded = value
            .as_str()
            .with_context(|| format!("the screenshot is not a string: {value}"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("the screenshot is not base64")?;
        if png.is_empty() {
            bail!("the screenshot is empty");
        }
        Ok(png)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // Best effort: the driver's process guard kills whatever is left anyway.
        let _ = self.command(Method::DELETE, "", None);
    }
}
