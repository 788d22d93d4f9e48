//! What a person does in the console, as WebDriver steps over its stable selectors
//! (`ui/README.md`): sign in, wait for the overview, open a feature, the spend view.
//! The same steps drive headless Chromium and the desktop window.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::assert_console_mounted;
use crate::process::wait_until;
use crate::webdriver::Session;

/// How long the console may take to react to a click or to new live data (the live
/// stream sends a snapshot every second; a debug wasm build on 2 busy cores is slow).
pub const UI_TIMEOUT: Duration = Duration::from_secs(20);

/// Signs in on the sign-in form: the router URL first when `router_url` is given
/// (the desktop app asks for it), then the token; waits until the top bar shows
/// `role`. The console must already be mounted.
pub fn sign_in(
    session: &Session<'_>,
    router_url: Option<&str>,
    token: &str,
    role: &str,
) -> anyhow::Result<()> {
    if let Some(url) = router_url {
        let field = session
            .wait_for("#signin-url", UI_TIMEOUT)
            .context("the sign-in form has no router URL field (is this the desktop app?)")?;
        session.clear(&field)?;
        session.send_keys(&field, url)?;
    }
    let field = session
        .wait_for("#signin-token", UI_TIMEOUT)
        .context("no sign-in form")?;
    session.clear(&field)?;
    session.send_keys(&field, token)?;
    session.click_on("#signin-submit", UI_TIMEOUT)?;
    let badge = wait_until(
        UI_TIMEOUT,
        &format!("the role badge to read {role:?}"),
        || {
            if let Some(error) = session.find("#signin-error")? {
                bail!("the sign-in was refused: {}", session.text(&error)?);
            }
            let Some(badge) = session.find("#role-badge")? else {
                return Ok(None);
            };
            let text = session.text(&badge)?;
            Ok((text.trim() == role).then_some(text))
        },
    );
    badge.with_context(|| {
        format!(
            "signing in as {role}; the page reads: {}",
            page_text(session)
        )
    })?;
    Ok(())
}

/// Navigates to the console, waits for it to mount and signs in (browser: same
/// origin, so no router URL).
pub fn open_and_sign_in(
    session: &Session<'_>,
    console_url: &str,
    token: &str,
    role: &str,
    what: &str,
) -> anyhow::Result<()> {
    session.navigate(console_url)?;
    assert_console_mounted(session, what)?;
    sign_in(session, None, token, role)
}

/// Waits until the overview shows a card for every endpoint in `names` and the live
/// stream is connected.
pub fn wait_for_overview(session: &Session<'_>, names: &[&str]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let found = wait_until(
        UI_TIMEOUT,
        "a card for every endpoint on the overview",
        || {
            missing.clear();
            for name in names {
                if session.find(&endpoint_card(name))?.is_none() {
                    missing.push(*name);
                }
            }
            Ok(missing.is_empty().then_some(()))
        },
    );
    found.with_context(|| {
        format!(
            "missing endpoint cards: {missing:?}; the page reads: {}",
            page_text(session)
        )
    })?;
    session
        .wait_for_text_where("#connection-status", UI_TIMEOUT, "`live`", |t| {
            t.trim() == "live"
        })
        .context("the console's live stream never connected")?;
    Ok(())
}

/// `[data-endpoint="NAME"]`.
pub fn endpoint_card(name: &str) -> String {
    format!("[data-endpoint=\"{name}\"]")
}

/// The breaker state the overview shows for `endpoint` (`closed`, `ramp`, `open`),
/// read from the `data-breaker-state` attribute and checked against the badge's text.
pub fn shown_breaker_state(
    session: &Session<'_>,
    endpoint: &str,
) -> anyhow::Result<Option<String>> {
    let css = format!("{} [data-breaker-state]", endpoint_card(endpoint));
    let Some(badge) = session.find(&css)? else {
        return Ok(None);
    };
    let attribute = session.attribute(&badge, "data-breaker-state")?;
    let text = session.text(&badge)?;
    match attribute {
        Some(state) if state == text.trim() => Ok(Some(state)),
        other => bail!("{css}: attribute {other:?} but text {text:?}"),
    }
}

/// Opens a feature's page the way a person does: the Features tab, then the picker.
pub fn open_feature(session: &Session<'_>, feature: &str) -> anyhow::Result<()> {
    session.click_on("#nav-features", UI_TIMEOUT)?;
    let option = format!("#feature-select option[value=\"{feature}\"]");
    session
        .click_on(&option, UI_TIMEOUT)
        .with_context(|| format!("no {feature} in the feature picker"))?;
    wait_until(UI_TIMEOUT, &format!("the page of {feature}"), || {
        let hash = session.execute("return location.hash;", json!([]))?;
        let on_page = hash.as_str() == Some(&format!("#/features/{feature}"));
        Ok((on_page && session.find("#feature-live")?.is_some()).then_some(()))
    })
    .with_context(|| format!("the page reads: {}", page_text(session)))
}

/// Opens the spend view over the last hour and waits for a table with rows and a
/// chart.
pub fn open_spend(session: &Session<'_>) -> anyhow::Result<()> {
    session.click_on("#nav-spend", UI_TIMEOUT)?;
    session.click_on("[data-preset=\"hour\"]", UI_TIMEOUT)?;
    wait_until(UI_TIMEOUT, "the spend table's rows and the chart", || {
        Ok((session.find("#spend-table tr[data-spend-key]")?.is_some()
            && session.find("#spend-chart svg")?.is_some())
        .then_some(()))
    })
    .with_context(|| format!("the page reads: {}", page_text(session)))
}

/// Sets a number input to `value` as a person does: select all, type.
pub fn type_into(session: &Session<'_>, css: &str, value: &str) -> anyhow::Result<()> {
    let input = session.wait_for(css, UI_TIMEOUT)?;
    session.clear(&input)?;
    session.send_keys(&input, value)?;
    Ok(())
}

/// The page's visible text, shortened, for failure messages.
pub fn page_text(session: &Session<'_>) -> String {
    match session.execute(
        "return document.body ? document.body.innerText : '';",
        json!([]),
    ) {
        Ok(Value::String(text)) => {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            text.chars().take(1500).collect()
        }
        Ok(other) => format!("(not text: {other})"),
        Err(err) => format!("(cannot read the page: {err:#})"),
    }
}

/// Scrolls the first element matching `css` to the middle of the viewport (for a
/// screenshot that shows it).
pub fn scroll_to(session: &Session<'_>, css: &str) -> anyhow::Result<()> {
    let found = session.execute(
        "const e = document.querySelector(arguments[0]);
         if (e) e.scrollIntoView({block: 'center'});
         return !!e;",
        json!([css]),
    )?;
    if found != Value::Bool(true) {
        bail!("nothing matches `{css}` to scroll to");
    }
    Ok(())
}
