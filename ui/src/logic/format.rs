//! How numbers, durations, times and money read in the console.
//!
//! Missing values read as an em dash, never as 0: "no samples yet" and "zero" are
//! different facts during an incident.

use router_core::admin::Signal;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Shown where a value is unknown (no samples in the window, no data yet).
pub const NONE: &str = "—";

/// A latency: `850 ms`, `1.25 s`, `12.3 s`.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => NONE.to_owned(),
        Some(v) if !v.is_finite() => NONE.to_owned(),
        Some(v) if v < 1_000.0 => format!("{v:.0} ms"),
        Some(v) if v < 10_000.0 => format!("{:.2} s", v / 1_000.0),
        Some(v) => format!("{:.1} s", v / 1_000.0),
    }
}

/// Several latencies sharing one unit: `428 / 769 ms`, `1.99 / 3.39 / 5.19 s`; a
/// missing one reads as a dash.
pub fn ms_list(values: &[Option<f64>]) -> String {
    let known: Vec<f64> = values
        .iter()
        .flatten()
        .cloned()
        .filter(|v| v.is_finite())
        .collect();
    if known.is_empty() {
        return NONE.to_owned();
    }
    let seconds = known.iter().any(|v| *v >= 1_000.0);
    let one = |v: &Option<f64>| match v {
        Some(v) if v.is_finite() && seconds => format!("{:.2}", v / 1_000.0),
        Some(v) if v.is_finite() => format!("{v:.0}"),
        _ => NONE.to_owned(),
    };
    let parts: Vec<String> = values.iter().map(one).collect();
    format!("{} {}", parts.join(" / "), if seconds { "s" } else { "ms" })
}

/// An elapsed time, coarse as a person says it: `45s`, `3m 12s`, `2h 05m`, `3d 4h`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// Time left until something (an open breaker's next probe): `in 23s`, or `due` once
/// it has passed (the router moves the breaker on its next tick).
pub fn countdown(remaining_ms: i64) -> String {
    if remaining_ms <= 0 {
        "due".to_owned()
    } else {
        // Round up: "in 0s" while time is still left reads wrong.
        format!("in {}", duration(remaining_ms + 999))
    }
}

/// A fraction (0–1) as a percentage: `12.5%`, `40%`, `100%`.
pub fn fraction(value: f64) -> String {
    percent(value * 100.0)
}

/// A percentage (0–100), one decimal at most: `12.5%`, `40%`, `0.3%`.
pub fn percent(value: f64) -> String {
    if !value.is_finite() {
        return NONE.to_owned();
    }
    if value.abs() < 100.0 {
        format!("{}%", trim_zeros(&format!("{value:.1}")))
    } else {
        format!("{value:.0}%")
    }
}

/// A number with at most two decimals and no trailing zeros: `33.33`, `50`, `12.5`.
pub fn number(value: f64) -> String {
    trim_zeros(&format!("{value:.2}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Requests per second: `12/s`, `3.4/s`, `0.05/s`.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        "0/s".to_owned()
    } else if per_second >= 100.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 1.0 {
        format!("{}/s", trim_zeros(&format!("{per_second:.1}")))
    } else {
        format!("{}/s", trim_zeros(&format!("{per_second:.2}")))
    }
}

/// An integer with thousands separators: `1,234,567`.
pub fn int(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money, from a decimal (never a float): `$1,234.56`; amounts under a cent keep four
/// decimals (`$0.0042`) so that small features do not all read `$0.00`.
pub fn money(value: &Decimal) -> String {
    let negative = value.is_sign_negative() && !value.is_zero();
    let abs = value.abs();
    let places = if !abs.is_zero() && abs < Decimal::new(1, 2) {
        4
    } else {
        2
    };
    let rounded = abs.round_dp(places);
    let text = format!("{rounded:.prec$}", prec = places as usize);
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let whole = whole
        .parse::<u64>()
        .map(int)
        .unwrap_or_else(|_| whole.to_owned());
    let sign = if negative { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}${whole}")
    } else {
        format!("{sign}${whole}.{frac}")
    }
}

/// A decimal as a float, for charts only (tables format the decimal itself).
pub fn decimal_f64(value: &Decimal) -> f64 {
    value.to_f64().unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch as local `YYYY-MM-DD HH:MM:SS`, given the local
/// offset east of UTC in minutes (JavaScript's `getTimezoneOffset()` is the negation).
pub fn datetime(epoch_ms: i64, offset_minutes: i64) -> String {
    let (date, time) = split_datetime(epoch_ms, offset_minutes);
    format!("{date} {time}")
}

/// Only the time of day, `HH:MM:SS` (the incident timeline: the date is today's).
pub fn clock(epoch_ms: i64, offset_minutes: i64) -> String {
    split_datetime(epoch_ms, offset_minutes).1
}

/// The value of an `<input type="datetime-local">`: `YYYY-MM-DDTHH:MM`.
pub fn datetime_local_input(epoch_ms: i64, offset_minutes: i64) -> String {
    let (date, time) = split_datetime(epoch_ms, offset_minutes);
    format!("{date}T{}", &time[..5])
}

fn split_datetime(epoch_ms: i64, offset_minutes: i64) -> (String, String) {
    let local_s = epoch_ms.div_euclid(1_000) + offset_minutes * 60;
    let days = local_s.div_euclid(86_400);
    let secs = local_s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            secs / 3_600,
            (secs % 3_600) / 60,
            secs % 60
        ),
    )
}

/// Parses a `datetime-local` value (`YYYY-MM-DDTHH:MM[:SS]`) in the given local offset
/// into milliseconds since the Unix epoch.
pub fn parse_datetime_local(text: &str, offset_minutes: i64) -> Option<i64> {
    let (date, time) = text.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min) = (t.next()??, t.next()??);
    let s = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some(((days * 86_400 + h * 3_600 + min * 60 + s) - offset_minutes * 60) * 1_000)
}

// Howard Hinnant's algorithms: proleptic Gregorian calendar <-> days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A breaker signal, for people.
pub fn signal_label(signal: Signal) -> &'static str {
    match signal {
        Signal::Initial => "healthy since start",
        Signal::ConsecutiveFailures => "consecutive failures",
        Signal::ErrorRate => "error rate",
        Signal::ThrottleRate => "throttle rate",
        Signal::TtftP90 => "TTFT p90",
        Signal::LatencyP90 => "latency p90",
        Signal::Feedback => "user feedback",
        Signal::OpenElapsed => "open time elapsed",
        Signal::ProbeSucceeded => "health probe succeeded",
        Signal::StageHealthy => "ramp stage healthy",
        Signal::Override => "operator override",
    }
}

/// A signal's measured value or threshold in its unit (rates as fractions, durations
/// in ms, counts as counts); `None` for signals without a value.
pub fn signal_value(signal: Signal, value: f64) -> Option<String> {
    match signal {
        Signal::ErrorRate | Signal::ThrottleRate | Signal::Feedback => Some(fraction(value)),
        Signal::TtftP90 | Signal::LatencyP90 => Some(ms(Some(value))),
        Signal::ConsecutiveFailures => Some(format!("{value:.0}")),
        Signal::Initial
        | Signal::OpenElapsed
        | Signal::ProbeSucceeded
        | Signal::StageHealthy
        | Signal::Override => None,
    }
}

/// `TTFT p90 2.40 s vs 1.50 s`, or just the label for signals without values.
pub fn reason_headline(signal: Signal, value: f64, threshold: f64) -> String {
    let label = signal_label(signal);
    match (signal_value(signal, value), signal_value(signal, threshold)) {
        (Some(v), Some(t)) if threshold != 0.0 => format!("{label} {v} vs {t}"),
        (Some(v), _) if value != 0.0 => format!("{label} {v}"),
        _ => label.to_owned(),
    }
}

/// One side of a configuration change as shown in a diff: compact JSON, strings in
/// quotes, an absent side (added or removed) as `∅`.
pub fn change_value(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "∅".to_owned(),
        Some(serde_json::Value::String(s)) => format!("\"{s}\""),
        Some(v) => v.to_string(),
    }
}

/// An error class key (`rate_limited`) as words (`rate limited`).
pub fn error_kind(kind: &str) -> String {
    kind.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn change_values_read_as_compact_json_and_absent_as_the_empty_set() {
        use serde_json::json;
        assert_eq!(change_value(None), "∅");
        assert_eq!(change_value(Some(&json!("1"))), "\"1\"");
        assert_eq!(change_value(Some(&json!(["a", "b"]))), r#"["a","b"]"#);
        assert_eq!(change_value(Some(&json!(70.0))), "70.0");
    }

    #[test]
    fn latencies_switch_units_at_a_second_and_missing_reads_as_dash() {
        assert_eq!(ms(None), "—");
        assert_eq!(ms(Some(849.6)), "850 ms");
        assert_eq!(ms(Some(1_250.0)), "1.25 s");
        assert_eq!(ms(Some(12_345.0)), "12.3 s");
    }

    #[test]
    fn latency_lists_share_one_unit() {
        assert_eq!(ms_list(&[Some(428.2), Some(769.0)]), "428 / 769 ms");
        assert_eq!(
            ms_list(&[Some(990.0), Some(3_390.0), Some(5_190.0)]),
            "0.99 / 3.39 / 5.19 s"
        );
        assert_eq!(ms_list(&[Some(400.0), None]), "400 / — ms");
        assert_eq!(ms_list(&[None, None]), "—");
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45_900), "45s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(2 * 3_600_000 + 5 * 60_000), "2h 05m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(duration(-5), "0s");
    }

    #[test]
    fn countdowns_round_up_and_say_due_when_passed() {
        assert_eq!(countdown(22_100), "in 23s");
        assert_eq!(countdown(1), "in 1s");
        assert_eq!(countdown(0), "due");
        assert_eq!(countdown(-3_000), "due");
    }

    #[test]
    fn percentages_and_rates_are_compact() {
        assert_eq!(fraction(0.125), "12.5%");
        assert_eq!(fraction(0.4), "40%");
        assert_eq!(fraction(0.0), "0%");
        assert_eq!(percent(33.333), "33.3%");
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(0.26), "0.3%");
        assert_eq!(number(33.333), "33.33");
        assert_eq!(number(50.0), "50");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(0.05), "0.05/s");
        assert_eq!(rate(3.44), "3.4/s");
        assert_eq!(rate(250.4), "250/s");
    }

    #[test]
    fn integers_get_thousands_separators() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1_000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
    }

    #[test]
    fn money_is_formatted_from_decimals_with_cents_or_four_places_under_a_cent() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(money(&d("1234.567")), "$1,234.57");
        assert_eq!(money(&d("0")), "$0.00");
        assert_eq!(money(&d("12")), "$12.00");
        assert_eq!(money(&d("0.004243")), "$0.0042");
        assert_eq!(money(&d("-3.5")), "-$3.50");
        assert_eq!(money(&d("1000000.1")), "$1,000,000.10");
    }

    #[test]
    fn datetimes_are_local_and_round_trip_through_the_input_format() {
        // 2024-02-29 23:59:30 UTC.
        let t = 1_709_251_170_000;
        assert_eq!(datetime(t, 0), "2024-02-29 23:59:30");
        assert_eq!(datetime(t, 120), "2024-03-01 01:59:30");
        assert_eq!(clock(t, -60), "22:59:30");
        assert_eq!(datetime(0, 0), "1970-01-01 00:00:00");
        let input = datetime_local_input(t, 120);
        assert_eq!(input, "2024-03-01T01:59");
        assert_eq!(parse_datetime_local(&input, 120), Some(t - 30_000));
        assert_eq!(parse_datetime_local("2024-03-01T01:59:30", 120), Some(t));
        assert_eq!(parse_datetime_local("2024-13-01T00:00", 0), None);
        assert_eq!(parse_datetime_local("yesterday", 0), None);
        assert_eq!(parse_datetime_local("", 0), None);
    }

    #[test]
    fn breaker_reasons_show_value_against_threshold_in_the_signals_unit() {
        assert_eq!(
            reason_headline(Signal::TtftP90, 2_400.0, 1_500.0),
            "TTFT p90 2.40 s vs 1.50 s"
        );
        assert_eq!(
            reason_headline(Signal::ErrorRate, 0.35, 0.2),
            "error rate 35% vs 20%"
        );
        assert_eq!(
            reason_headline(Signal::ConsecutiveFailures, 5.0, 5.0),
            "consecutive failures 5 vs 5"
        );
        assert_eq!(
            reason_headline(Signal::OpenElapsed, 0.0, 0.0),
            "open time elapsed"
        );
        assert_eq!(
            reason_headline(Signal::Override, 0.0, 0.0),
            "operator override"
        );
        assert_eq!(
            reason_headline(Signal::Initial, 0.0, 0.0),
            "healthy since start"
        );
        assert_eq!(error_kind("rate_limited"), "rate limited");
    }
}
