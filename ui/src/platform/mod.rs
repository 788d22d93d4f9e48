//! The browser and the desktop shell: storage, clocks, the Tauri bridge, downloads.
//! Thin wrappers over `web-sys`/`js-sys`; they compile natively (for the unit tests of
//! the logic) but only work in a browser.

pub mod desktop;
pub mod download;
pub mod storage;

/// Local wall-clock time, ms since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The local time zone's offset east of UTC, in minutes, at `epoch_ms`.
pub fn tz_offset_minutes(epoch_ms: i64) -> i64 {
    -(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(epoch_ms as f64)).get_timezone_offset()
        as i64)
}

/// `YYYY-MM-DD HH:MM:SS` in local time.
pub fn local_datetime(epoch_ms: i64) -> String {
    crate::logic::format::datetime(epoch_ms, tz_offset_minutes(epoch_ms))
}

/// When something happened, as short as is unambiguous: `HH:MM:SS` within the last
/// 20 hours, else the date and time.
pub fn local_when(epoch_ms: i64) -> String {
    if now_ms() as i64 - epoch_ms < 20 * 3_600_000 {
        local_clock(epoch_ms)
    } else {
        local_datetime(epoch_ms)[..16].to_owned()
    }
}

/// `HH:MM:SS` in local time.
pub fn local_clock(epoch_ms: i64) -> String {
    crate::logic::format::clock(epoch_ms, tz_offset_minutes(epoch_ms))
}
