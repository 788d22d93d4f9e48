//! The console in a real browser, against the whole product: `crossbar demo` (router,
//! simulated clouds, console) on a free port, headless Chromium through chromedriver.
//!
//! Each test starts its own demo and browser (a couple of seconds each) so that what
//! one test changes — a published split, an open breaker — cannot leak into another;
//! [`serial`] runs them one at a time. Screenshots go to `artifacts/screenshots/`
//! (`browser-overview.png`, `browser-editor.png`, `browser-spend.png`), every process's
//! output to `artifacts/logs/`.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "end-to-end tests wait for real processes, browsers and windows"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use crossbar_e2e::chromium::Chromium;
use crossbar_e2e::console::{self, UI_TIMEOUT};
use crossbar_e2e::demo::{self, Demo, DemoOptions, FaultGuard, Served};
use crossbar_e2e::process::wait_until;
use crossbar_e2e::webdriver::Session;
use crossbar_e2e::{paths, serial};
use reqwest::Method;
use serde_json::{Value, json};

/// The feature whose primary endpoint the breaker test breaks: `search-answer` is
/// bound to `azure-eastus` first, served by the simulator `azure-openai-eastus`, with
/// `gemini-us` as its first backup.
const OUTAGE_FEATURE: (&str, &str) = ("search-answer", "search");
const OUTAGE_ENDPOINT: &str = "azure-eastus";
const OUTAGE_SIM: &str = "azure-openai-eastus";

/// How long a breaker may take from the outage to `open` on the page: five
/// consecutive failures trip it, the live stream sends a snapshot every second.
const BREAKER_TIMEOUT: Duration = Duration::from_secs(20);

fn save_screenshot(session: &Session<'_>, file: &str) -> anyhow::Result<()> {
    session.wait_for_paint()?;
    let shot = paths::save_png(file, &session.screenshot()?)?;
    println!("screenshot: {}", shot.display());
    Ok(())
}

/// A Chromium window on the demo's console, signed in as `role` with the demo's
/// token for it.
fn signed_in<'c>(chromium: &'c Chromium, demo: &Demo, role: &str) -> anyhow::Result<Session<'c>> {
    let session = chromium.session()?;
    console::open_and_sign_in(
        &session,
        &demo.console_url(),
        demo.token(role),
        role,
        "Chromium",
    )?;
    Ok(session)
}

fn all_ok(served: &[Served], what: &str) -> anyhow::Result<()> {
    let failed: Vec<&Served> = served.iter().filter(|s| s.status != 200).collect();
    ensure!(
        failed.is_empty(),
        "{} of {} {what} requests failed, e.g. {:?}",
        failed.len(),
        served.len(),
        failed.first()
    );
    Ok(())
}

/// Sign-in as admin, every demo endpoint on the overview, then the spend view with
/// the cost of real gateway traffic in it.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn admin_sees_every_endpoint_and_the_spend() -> anyhow::Result<()> {
    let _serial = serial();
    // Background traffic and a day of history, so the overview and the spend have
    // something to show.
    let demo = Demo::start(
        "browser-overview-demo",
        &DemoOptions::with_traffic_and_history(),
    )?;
    // The server half of the contract, before spending a browser on it.
    let health: Value = reqwest::blocking::get(format!("{}/healthz", demo.url))?
        .error_for_status()?
        .json()?;
    ensure!(
        health["status"] == "ok",
        "unexpected /healthz answer: {health}"
    );

    let chromium = Chromium::start("browser-overview-chromedriver")?;
    let session = signed_in(&chromium, &demo, "admin")?;
    console::wait_for_overview(&session, &demo::ENDPOINTS)?;
    for name in demo::ENDPOINTS {
        let state = console::shown_breaker_state(&session, name)?;
        ensure!(
            state.as_deref() == Some("closed"),
            "{name} shows breaker state {state:?} on a healthy demo"
        );
    }

    // Every feature's team calls it: the spend by feature must list all four.
    for (feature, team) in demo::FEATURES {
        let served = demo.chat_burst(team, feature, &format!("spend-{feature}"), 8, 4)?;
        all_ok(&served, feature)?;
    }
    console::open_spend(&session)?;
    for (feature, _) in demo::FEATURES {
        let row = format!("#spend-table tr[data-spend-key=\"{feature}\"]");
        // The report is read when the view opens; the ledger is written in batches
        // (≤ 200 ms), so reopen the hour preset until every feature is in.
        wait_until(UI_TIMEOUT, &format!("{feature} in the spend table"), || {
            if session.find(&row)?.is_some() {
                return Ok(Some(()));
            }
            session.click_on("[data-preset=\"day\"]", UI_TIMEOUT)?;
            session.click_on("[data-preset=\"hour\"]", UI_TIMEOUT)?;
            Ok(None)
        })
        .with_context(|| format!("the page reads: {}", console::page_text(&session)))?;
    }
    let total = session
        .wait_for_text("#spend-total", UI_TIMEOUT)
        .context("no spend total")?;
    ensure!(
        total.chars().any(|c| c.is_ascii_digit() && c != '0'),
        "the spend total shows no cost: {total:?}"
    );
    // The demo's day of history: once the ledger has it, the 24 h view shows the
    // daily rhythm (what a platform lead opens first).
    wait_until(
        Duration::from_secs(90),
        "the demo's history in the ledger",
        || {
            let ready: Value = reqwest::blocking::get(format!("{}/readyz", demo.url))?.json()?;
            let written = ready["ledger"]["written"].as_u64().unwrap_or(0);
            Ok((written > 10_000 && ready["ledger"]["queued"].as_u64() == Some(0)).then_some(()))
        },
    )?;
    session.click_on("[data-preset=\"day\"]", UI_TIMEOUT)?;
    wait_until(UI_TIMEOUT, "the 24 h spend chart", || {
        Ok(session.find("#spend-chart svg")?.is_some().then_some(()))
    })?;
    save_screenshot(&session, "browser-spend.png")?;
    Ok(())
}

/// An outage injected through the simulators' fault API opens the primary's breaker,
/// and the operator sees it on the overview within seconds; requests keep succeeding
/// on the backup meanwhile.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn breaker_opened_by_a_simulated_outage_shows_on_the_overview() -> anyhow::Result<()> {
    let _serial = serial();
    let demo = Demo::start(
        "browser-breaker-demo",
        &DemoOptions {
            rps: 3.0,
            ..DemoOptions::default()
        },
    )?;
    let chromium = Chromium::start("browser-breaker-chromedriver")?;
    let session = signed_in(&chromium, &demo, "operator")?;
    console::wait_for_overview(&session, &demo::ENDPOINTS)?;
    let before = console::shown_breaker_state(&session, OUTAGE_ENDPOINT)?;
    ensure!(
        before.as_deref() == Some("closed"),
        "{OUTAGE_ENDPOINT} is {before:?} before the outage"
    );

    let fault = FaultGuard::set(
        &demo,
        OUTAGE_SIM,
        json!({"outage": "refuse"}),
        json!({"outage": "none"}),
    )?;
    // Traffic through the gateway until the page shows the breaker open: the router
    // only learns of an outage from failed attempts.
    let stop = AtomicBool::new(false);
    let (shown, served) = thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let mut served = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (feature, team) = OUTAGE_FEATURE;
                served.push(demo.chat(team, feature, &format!("outage-{i}")));
                i += 1;
                thread::sleep(Duration::from_millis(100));
            }
            served
        });
        let shown = wait_until(
            BREAKER_TIMEOUT,
            &format!("the overview to show {OUTAGE_ENDPOINT}'s breaker open"),
            || {
                let state = console::shown_breaker_state(&session, OUTAGE_ENDPOINT)?;
                Ok((state.as_deref() == Some("open")).then_some(()))
            },
        );
        stop.store(true, Ordering::Relaxed);
        (shown, traffic.join())
    });
    let served: Vec<Served> = match served {
        Ok(results) => results.into_iter().collect::<anyhow::Result<_>>()?,
        Err(_) => bail!("the traffic thread panicked"),
    };
    shown.with_context(|| {
        format!(
            "the admin API says {OUTAGE_ENDPOINT} is {:?}; {} requests sent; the page reads: {}",
            demo.breaker_state(OUTAGE_ENDPOINT),
            served.len(),
            console::page_text(&session)
        )
    })?;
    // The router failed over: nobody saw the outage.
    all_ok(&served, "search-answer (during the outage)")?;
    let last = served.last().context("no request was sent")?;
    ensure!(
        last.endpoint != OUTAGE_ENDPOINT,
        "the last request was still served by {OUTAGE_ENDPOINT}: {last:?}"
    );
    // The transition is also on the incident timeline.
    session
        .wait_for(
            &format!("#timeline .event[data-event-endpoint=\"{OUTAGE_ENDPOINT}\"]"),
            UI_TIMEOUT,
        )
        .context("the breaker's opening is not on the timeline")?;
    // The open card: its state, reason and errors (it is the last card, below the fold).
    console::scroll_to(&session, &console::endpoint_card(OUTAGE_ENDPOINT))?;
    save_screenshot(&session, "browser-overview.png")?;
    fault.clear()?;
    Ok(())
}

/// The experimenter moves `recap` from 50/50 to 80/20 in the editor and publishes; the
/// admin API serves the new version and real traffic follows it; a rollback from the
/// history page restores 50/50 as a new version.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn experimenter_shifts_the_recap_split_and_rolls_it_back() -> anyhow::Result<()> {
    let _serial = serial();
    // No background traffic: the observed split is only what this test sends.
    let demo = Demo::start("browser-split-demo", &DemoOptions::default())?;
    let start = demo.active_config()?;
    let base = start["version"]
        .as_i64()
        .context("no version in GET /config")?;
    let split = Demo::configured_split(&start, "recap")?;
    ensure!(
        split == [("claude".to_owned(), 50.0), ("gemini".to_owned(), 50.0)],
        "the demo's recap split is not 50/50: {split:?}"
    );

    let chromium = Chromium::start("browser-split-chromedriver")?;
    let session = signed_in(&chromium, &demo, "experimenter")?;
    console::open_feature(&session, "recap")?;
    session
        .wait_for("#feature-editor", UI_TIMEOUT)
        .context("an experimenter gets no feature editor")?;
    let variant_value = |name: &str| -> anyhow::Result<String> {
        let input = session
            .find(&format!("input[data-variant=\"{name}\"]"))?
            .with_context(|| format!("no input for variant {name}"))?;
        Ok(session
            .property(&input, "value")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    };
    ensure!(
        variant_value("claude")? == "50" && variant_value("gemini")? == "50",
        "the editor does not start from 50/50"
    );

    // Typing 80 for claude rebalances gemini to 20.
    console::type_into(&session, "input[data-variant=\"claude\"]", "80")?;
    wait_until(UI_TIMEOUT, "the editor to rebalance gemini to 20", || {
        Ok((variant_value("claude")? == "80" && variant_value("gemini")? == "20").then_some(()))
    })
    .with_context(|| format!("the page reads: {}", console::page_text(&session)))?;
    session.wait_for_text_where("#split-sum", UI_TIMEOUT, "a sum of 100", |t| {
        t.contains("sum: 100")
    })?;
    session
        .wait_for("#edit-diff tr[data-change-path]", UI_TIMEOUT)
        .context("the edit shows no change against the base version")?;
    console::type_into(&session, "#publish-message", "e2e: favour claude 80/20")?;
    save_screenshot(&session, "browser-editor.png")?;

    wait_until(UI_TIMEOUT, "the publish button to be enabled", || {
        let Some(button) = session.find("#publish-button")? else {
            return Ok(None);
        };
        Ok(session.is_enabled(&button)?.then_some(()))
    })?;
    session.click_on("#publish-button", UI_TIMEOUT)?;
    let version = reported_version(&session, "#publish-result", base + 1)?;

    // The admin API serves what the console published.
    let active = demo.active_config()?;
    ensure!(
        active["version"] == version,
        "GET /config is at version {}, not {version}",
        active["version"]
    );
    let split = Demo::configured_split(&active, "recap")?;
    ensure!(
        split == [("claude".to_owned(), 80.0), ("gemini".to_owned(), 20.0)],
        "version {version} splits recap {split:?}"
    );

    // And real traffic follows it: a few hundred distinct users.
    let served = demo.chat_burst("meetings", "recap", "split-user", 300, 12)?;
    all_ok(&served, "recap")?;
    let claude = served.iter().filter(|s| s.variant == "claude").count();
    let share = claude as f64 * 100.0 / served.len() as f64;
    ensure!(
        share > 65.0,
        "only {share:.1} % of recap requests went to claude (x-crossbar-variant)"
    );
    let (requests, observed) = demo.observed_split("recap")?;
    let observed_claude = observed
        .iter()
        .find(|(name, _)| name == "claude")
        .map(|(_, p)| *p)
        .with_context(|| format!("no claude in the observed split {observed:?}"))?;
    ensure!(
        requests >= 300 && observed_claude > 65.0,
        "GET /features/live: claude observed at {observed_claude:.1} % of {requests} requests"
    );
    println!(
        "recap after publishing 80/20: claude {share:.1} % of our requests, {observed_claude:.1} % observed"
    );

    // Roll back to the version before the edit, from the history page.
    session.click_on("#nav-history", UI_TIMEOUT)?;
    session
        .wait_for(
            &format!("#versions tr[data-version=\"{version}\"]"),
            UI_TIMEOUT,
        )
        .context("the history does not list the published version")?;
    session.click_on(&format!("#rollback-button-{base}"), UI_TIMEOUT)?;
    session.click_on("#rollback-confirm", UI_TIMEOUT)?;
    let restored = reported_version(&session, "#rollback-result", version + 1)?;
    let active = demo.active_config()?;
    ensure!(
        active["version"] == restored && active["restored_from"] == base,
        "after the rollback GET /config is version {} restored from {}",
        active["version"],
        active["restored_from"]
    );
    let split = Demo::configured_split(&active, "recap")?;
    ensure!(
        split == [("claude".to_owned(), 50.0), ("gemini".to_owned(), 50.0)],
        "after the rollback recap splits {split:?}"
    );
    Ok(())
}

/// A viewer sees the feature but gets no editor, and the admin API refuses a
/// viewer's edit with 403 `forbidden`.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn viewer_cannot_publish() -> anyhow::Result<()> {
    let _serial = serial();
    let demo = Demo::start("browser-viewer-demo", &DemoOptions::default())?;
    let chromium = Chromium::start("browser-viewer-chromedriver")?;
    let session = signed_in(&chromium, &demo, "viewer")?;
    console::wait_for_overview(&session, &demo::ENDPOINTS)?;
    ensure!(
        session.find("[data-override]")?.is_none(),
        "a viewer is offered breaker overrides"
    );

    console::open_feature(&session, "recap")?;
    // The live panel is there: the page has rendered what a viewer may see.
    session.wait_for("#variant-split", UI_TIMEOUT)?;
    ensure!(
        session.find("#feature-editor")?.is_none(),
        "a viewer is shown the feature editor"
    );
    if let Some(button) = session.find("#publish-button")? {
        ensure!(
            !session.is_enabled(&button)?,
            "a viewer's publish button is enabled"
        );
    }

    // The server refuses anyway: the same edit the experimenter test publishes.
    let before = demo.active_config()?;
    let recap = before["config"]["features"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "recap"))
        .cloned()
        .context("no recap in the active config")?;
    let mut experiment = recap["experiment"].clone();
    experiment["variants"][0]["percent"] = json!(80.0);
    experiment["variants"][1]["percent"] = json!(20.0);
    let edit = json!({
        "binding": recap["binding"],
        "experiment": experiment,
        "base_version": before["version"],
        "message": "a viewer tries to publish",
    });
    let (status, body) = demo.admin(
        demo.token("viewer"),
        Method::PUT,
        "/features/recap",
        Some(&edit),
    )?;
    ensure!(
        status == 403 && body["error"]["code"] == "forbidden",
        "a viewer's PUT /features/recap answered {status}: {body}"
    );
    // The same edit is valid: an experimenter may publish it.
    let (status, body) = demo.admin(
        demo.token("experimenter"),
        Method::PUT,
        "/features/recap",
        Some(&edit),
    )?;
    ensure!(
        status == 200,
        "an experimenter's PUT /features/recap answered {status}: {body}"
    );
    Ok(())
}

/// `N` from "Published version N." / "Rolled back: published as version N.".
/// The version a publish or rollback result (`css`) reports, which must be
/// `expected`.
fn reported_version(session: &Session<'_>, css: &str, expected: i64) -> anyhow::Result<i64> {
    let text = session.wait_for_text_where(css, UI_TIMEOUT, "a published version", |t| {
        t.contains("version ")
    })?;
    let version = version_in(&text)?;
    ensure!(
        version == expected,
        "{css} reports version {version}, expected {expected}: {text:?}"
    );
    Ok(version)
}

fn version_in(text: &str) -> anyhow::Result<i64> {
    let after = text
        .split("version ")
        .nth(1)
        .with_context(|| format!("no version in {text:?}"))?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .with_context(|| format!("no version number in {text:?}"))
}

/// A product owner adds a variant to an experiment: the browser validates it with the
/// server's rules (a variant needs a binding) next to the field and will not publish;
/// removing it again gives its share back and leaves nothing to publish.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn a_new_variant_is_validated_in_the_browser_before_it_can_be_published() -> anyhow::Result<()> {
    let _serial = serial();
    let demo = Demo::start("browser-variant-demo", &DemoOptions::default())?;
    let chromium = Chromium::start("browser-variant-chromedriver")?;
    let session = signed_in(&chromium, &demo, "experimenter")?;
    console::wait_for_overview(&session, &demo::ENDPOINTS)?;
    console::open_feature(&session, "recap")?;
    session.wait_for("#feature-editor", UI_TIMEOUT)?;

    console::type_into(&session, "#new-variant-name", "haiku")?;
    session.click_on("#add-variant", UI_TIMEOUT)?;
    session.wait_for("input[data-variant=\"haiku\"]", UI_TIMEOUT)?;
    // The new variant has no binding yet: the validator says so next to it.
    let problem = session
        .wait_for_text("[data-variant-row=\"haiku\"] .field-problems", UI_TIMEOUT)
        .with_context(|| format!("the page reads: {}", console::page_text(&session)))?;
    ensure!(
        problem.contains("at least one endpoint"),
        "unexpected problem next to the new variant: {problem:?}"
    );
    let publish = session.wait_for("#publish-button", UI_TIMEOUT)?;
    ensure!(
        !session.is_enabled(&publish)?,
        "publish is enabled with an invalid variant"
    );
    let sum = session.wait_for_text("#split-sum", UI_TIMEOUT)?;
    ensure!(
        sum.contains("100"),
        "the split no longer sums to 100: {sum:?}"
    );

    // Removed again: nothing left to publish, and the server never saw it.
    session.click_on("[data-remove-variant=\"haiku\"]", UI_TIMEOUT)?;
    wait_until(UI_TIMEOUT, "the variant to go", || {
        Ok(session
            .find("input[data-variant=\"haiku\"]")?
            .is_none()
            .then_some(()))
    })?;
    let diff = session.wait_for_text("#edit-diff", UI_TIMEOUT)?;
    ensure!(diff.contains("No changes"), "changes remain: {diff:?}");
    ensure!(
        demo.active_config()?["version"] == 1,
        "a version was published"
    );
    Ok(())
}

/// Where the console keeps the token, as the page's own storage shows it: this tab's
/// session storage, the browser's remembered token, and everything in local storage.
fn stored_tokens(
    session: &Session<'_>,
) -> anyhow::Result<(Option<String>, Option<String>, String)> {
    let found = session.execute(
        "return [sessionStorage.getItem('crossbar.token'),
                 localStorage.getItem('crossbar.remembered_token'),
                 JSON.stringify(Object.assign({}, localStorage))];",
        json!([]),
    )?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok((
        text(&found[0]),
        text(&found[1]),
        found[2].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Whether an inline script added to the page runs: the console's Content-Security-
/// Policy allows none (an injected `<script>` is how an XSS would run).
fn inline_script_runs(session: &Session<'_>) -> anyhow::Result<bool> {
    let ran = session.execute(
        "window.__crossbarInline = false;
         const s = document.createElement('script');
         s.textContent = 'window.__crossbarInline = true;';
         document.head.appendChild(s);
         return window.__crossbarInline === true;",
        json!([]),
    )?;
    Ok(ran == Value::Bool(true))
}

/// An admin creates an admin token and a gateway key in the console (each secret
/// shown once), both work, and revoking them in the console makes the router refuse
/// them at once. The admin's own token stays in the tab unless "remember" is ticked;
/// the page runs under a CSP that stops injected scripts.
#[test]
#[ignore = "needs built UI, chromium, Xvfb: run via cargo xtask test"]
fn admin_manages_tokens_and_keys_and_the_token_stays_in_the_tab() -> anyhow::Result<()> {
    let _serial = serial();
    let demo = Demo::start("browser-access-demo", &DemoOptions::default())?;
    let console_page = reqwest::blocking::get(demo.console_url())?;
    let csp = console_page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'")
            && csp.contains("frame-ancestors 'none'"),
        "the console is served without its CSP: {csp:?}"
    );
    let chromium = Chromium::start("browser-access-chromedriver")?;
    let admin = demo.token("admin");
    let session = signed_in(&chromium, &demo, "admin")?;
    ensure!(
        !inline_script_runs(&session)?,
        "an injected inline script ran"
    );
    let (in_tab, remembered, local) = stored_tokens(&session)?;
    ensure!(
        in_tab.as_deref() == Some(admin) && remembered.is_none() && !local.contains(admin),
        "without \"remember\" the token belongs in this tab only: session {in_tab:?}, local {local}"
    );

    // An admin token, created for a viewer.
    session.click_on("#nav-access", UI_TIMEOUT)?;
    session.wait_for("#tokens-panel", UI_TIMEOUT)?;
    console::type_into(&session, "#token-name", "e2e-bot")?;
    session.click_on("#token-role option[value=\"viewer\"]", UI_TIMEOUT)?;
    session.click_on("#token-create", UI_TIMEOUT)?;
    let secret = session
        .wait_for_text("#new-token-secret-value", UI_TIMEOUT)
        .with_context(|| {
            format!(
                "no new token shown; the page reads: {}",
                console::page_text(&session)
            )
        })?;
    let secret = secret.trim().to_owned();
    let who = demo.admin_get(&secret, "/whoami")?;
    ensure!(
        who["role"] == "viewer",
        "the new token is not a viewer's: {who}"
    );
    let listed = demo.admin_get(admin, "/tokens")?;
    let id = listed
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == "e2e-bot"))
        .and_then(|t| t["id"].as_str())
        .with_context(|| format!("e2e-bot is not listed: {listed}"))?
        .to_owned();
    ensure!(
        !listed.to_string().contains(&secret),
        "the listing shows the token"
    );
    save_screenshot(&session, "browser-access.png")?;
    let revoke = format!("tr[data-token-id=\"{id}\"] .token-revoke");
    console::scroll_to(&session, &revoke)?;
    session.click_on(&revoke, UI_TIMEOUT)?;
    session.click_on(&revoke, UI_TIMEOUT)?; // confirm
    session
        .wait_for(
            &format!("tr[data-token-id=\"{id}\"][data-standing=\"revoked\"]"),
            UI_TIMEOUT,
        )
        .context("the revoked token is not shown as revoked")?;
    let (status, _) = demo.admin(&secret, Method::GET, "/whoami", None)?;
    ensure!(status == 401, "a revoked token still works: {status}");

    // A gateway key, for the first team (docs, whose feature is summarize).
    console::type_into(&session, "#key-name", "e2e-app")?;
    session.click_on("#key-team option[value=\"docs\"]", UI_TIMEOUT)?;
    session.click_on("#key-create", UI_TIMEOUT)?;
    let key = session
        .wait_for_text("#new-key-secret-value", UI_TIMEOUT)
        .with_context(|| {
            format!(
                "no new key shown; the page reads: {}",
                console::page_text(&session)
            )
        })?;
    let key = key.trim().to_owned();
    let status = demo.chat_with_key(&key, "summarize")?;
    ensure!(status == 200, "the new key was refused: {status}");
    let keys = demo.admin_get(admin, "/keys")?;
    let key_id = keys
        .as_array()
        .and_then(|all| all.iter().find(|k| k["name"] == "e2e-app"))
        .and_then(|k| k["id"].as_str())
        .with_context(|| format!("e2e-app is not listed: {keys}"))?
        .to_owned();
    let revoke = format!("tr[data-key-id=\"{key_id}\"] .key-revoke");
    // Below the fold, under the status line: scroll it into the middle first.
    console::scroll_to(&session, &revoke)?;
    session.click_on(&revoke, UI_TIMEOUT)?;
    session.click_on(&revoke, UI_TIMEOUT)?;
    session.wait_for(
        &format!("tr[data-key-id=\"{key_id}\"][data-standing=\"revoked\"]"),
        UI_TIMEOUT,
    )?;
    let status = demo.chat_with_key(&key, "summarize")?;
    ensure!(status == 401, "a revoked key still works: {status}");

    // A request every endpoint of its feature fails (`extract`, EU-bound: Bedrock in
    // eu-central-1, Claude and Gemini in europe-west4, all made to answer 503): the
    // client gets the class and Crossbar's words; the Failures page shows the operator
    // what each endpoint said.
    let down = json!({"outage": "unavailable"});
    let up = json!({"outage": "none"});
    let bedrock = FaultGuard::set(&demo, "bedrock-eu-central-1", down.clone(), up.clone())?;
    let vertex = FaultGuard::set(&demo, "vertex-europe-west4", down, up)?;
    let refused = reqwest::blocking::Client::new()
        .post(format!("{}/v1/chat/completions", demo.url))
        .bearer_auth(demo.key("compliance"))
        .json(&json!({
            "model": "extract",
            "messages": [{"role": "user", "content": "Extract the fields."}],
            "max_tokens": 8,
        }))
        .send()?;
    bedrock.clear()?;
    vertex.clear()?;
    let request_id = refused
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer: Value = refused.json()?;
    ensure!(
        answer["error"]["code"] == "unavailable",
        "the request to a feature whose every endpoint is down answered {answer}"
    );
    session.click_on("#nav-failures", UI_TIMEOUT)?;
    console::type_into(&session, "#failures-request-id", &request_id)?;
    let row = format!("#failures-table tr[data-request-id=\"{request_id}\"] .attempt-detail");
    // The ledger is written in batches: look it up again until it is there.
    let detail = wait_until(
        UI_TIMEOUT,
        "the failed request on the Failures page",
        || {
            session.click_on("#failures-page button[type=\"submit\"]", UI_TIMEOUT)?;
            thread::sleep(Duration::from_millis(300));
            match session.find(&row)? {
                Some(element) => Ok(Some(session.text(&element)?)),
                None => Ok(None),
            }
        },
    )
    .with_context(|| format!("the page reads: {}", console::page_text(&session)))?;
    ensure!(!detail.trim().is_empty(), "the attempt's detail is empty");
    println!("the operator sees: {detail}");
    save_screenshot(&session, "browser-failures.png")?;

    // "Remember": the browser keeps the token, in local storage, until sign-out.
    session.click_on("#sign-out", UI_TIMEOUT)?;
    let (in_tab, remembered, _) = stored_tokens(&session)?;
    ensure!(
        in_tab.is_none() && remembered.is_none(),
        "signing out left a token behind"
    );
    session.click_on("#signin-remember", UI_TIMEOUT)?;
    console::sign_in(&session, None, admin, "admin")?;
    let (in_tab, remembered, _) = stored_tokens(&session)?;
    ensure!(
        in_tab.is_none() && remembered.as_deref() == Some(admin),
        "with \"remember\" the token belongs in local storage: session {in_tab:?}, remembered {remembered:?}"
    );
    Ok(())
}
