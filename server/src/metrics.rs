//! `GET /metrics`: Prometheus text exposition format (version 0.0.4).
//!
//! Counters come from the live sink (cumulative since start), gauges from the
//! router's endpoint health at scrape time. Labels are low-cardinality by design:
//! feature, variant, endpoint, provider, region, and the normalised outcome class.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use router_core::admin::StateName;

use crate::AppState;

pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    let mut response = render_text(&state).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn render_text(state: &AppState) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let snapshot = state.engine.snapshot();
    family(
        &mut out,
        "crossbar_config_version",
        "gauge",
        "The configuration version serving.",
    );
    let _ = writeln!(out, "crossbar_config_version {}", snapshot.version);

    state.live.with_counters(|c| {
        let requests = c.requests();
        family(&mut out, "crossbar_requests_total", "counter", "Client requests by feature, variant, serving endpoint and outcome (ok or the normalised error class).");
        for ((feature, variant, endpoint, outcome), t) in &requests {
            let _ = writeln!(
                out,
                "crossbar_requests_total{{feature=\"{}\",variant=\"{}\",endpoint=\"{}\",outcome=\"{}\"}} {}",
                esc(feature), esc(variant), esc(endpoint), esc(outcome), t.count
            );
        }
        family(&mut out, "crossbar_tokens_total", "counter", "Tokens by feature, endpoint and direction.");
        for ((feature, _, endpoint, _), t) in &requests {
            let _ = writeln!(out, "crossbar_tokens_total{{feature=\"{}\",endpoint=\"{}\",direction=\"prompt\"}} {}", esc(feature), esc(endpoint), t.prompt_tokens);
            let _ = writeln!(out, "crossbar_tokens_total{{feature=\"{}\",endpoint=\"{}\",direction=\"completion\"}} {}", esc(feature), esc(endpoint), t.completion_tokens);
        }
        family(&mut out, "crossbar_cost_total", "counter", "Marginal (on-demand) cost in the pricing currency (exact figures: the admin spend API).");
        for ((feature, variant, endpoint, outcome), t) in &requests {
            let _ = writeln!(
                out,
                "crossbar_cost_total{{feature=\"{}\",variant=\"{}\",endpoint=\"{}\",outcome=\"{}\"}} {}",
                esc(feature), esc(variant), esc(endpoint), esc(outcome), t.cost
            );
        }
        family(&mut out, "crossbar_spilled_total", "counter", "Requests served by an on-demand sibling because provisioned capacity was full.");
        family(&mut out, "crossbar_fallbacks_total", "counter", "Requests served by a backup rather than the primary.");
        for ((feature, _, endpoint, outcome), t) in &requests {
            if *outcome == "ok" {
                let _ = writeln!(out, "crossbar_spilled_total{{feature=\"{}\",endpoint=\"{}\"}} {}", esc(feature), esc(endpoint), t.spilled);
                let _ = writeln!(out, "crossbar_fallbacks_total{{feature=\"{}\",endpoint=\"{}\"}} {}", esc(feature), esc(endpoint), t.fallbacks);
            }
        }
        family(&mut out, "crossbar_breaker_transitions_total", "counter", "Breaker transitions by endpoint and the state entered.");
        for ((endpoint, to), n) in &c.transitions {
            let _ = writeln!(out, "crossbar_breaker_transitions_total{{endpoint=\"{}\",to=\"{}\"}} {n}", esc(endpoint), esc(to));
        }
    });

    let health = state.engine.health();
    family(
        &mut out,
        "crossbar_breaker_state",
        "gauge",
        "Breaker state: 0 closed, 1 ramp (partial open), 2 open.",
    );
    for h in &health {
        let v = match h.breaker.state {
            StateName::Closed => 0,
            StateName::Ramp => 1,
            StateName::Open => 2,
        };
        let _ = writeln!(
            out,
            "crossbar_breaker_state{{endpoint=\"{}\",provider=\"{}\",region=\"{}\"}} {v}",
            esc(&h.name),
            esc(&h.provider),
            esc(&h.region)
        );
    }
    family(
        &mut out,
        "crossbar_breaker_admission_ratio",
        "gauge",
        "Share of the endpoint's normal traffic its breaker admits.",
    );
    for h in &health {
        let _ = writeln!(
            out,
            "crossbar_breaker_admission_ratio{{endpoint=\"{}\"}} {}",
            esc(&h.name),
            h.breaker.admission
        );
    }
    family(
        &mut out,
        "crossbar_endpoint_in_flight",
        "gauge",
        "Upstream attempts in flight.",
    );
    for h in &health {
        let _ = writeln!(
            out,
            "crossbar_endpoint_in_flight{{endpoint=\"{}\"}} {}",
            esc(&h.name),
            h.in_flight
        );
    }
    family(
        &mut out,
        "crossbar_endpoint_window_requests",
        "gauge",
        "Attempts in the breaker's sliding window.",
    );
    family(
        &mut out,
        "crossbar_endpoint_error_ratio",
        "gauge",
        "Failed share of judged attempts in the window.",
    );
    family(
        &mut out,
        "crossbar_endpoint_latency_seconds",
        "gauge",
        "Latency percentiles over the breaker window.",
    );
    family(
        &mut out,
        "crossbar_endpoint_ttft_seconds",
        "gauge",
        "Time-to-first-token percentiles over the breaker window.",
    );
    for h in &health {
        let s = &h.stats;
        let n = esc(&h.name);
        let _ = writeln!(
            out,
            "crossbar_endpoint_window_requests{{endpoint=\"{n}\"}} {}",
            s.requests
        );
        let _ = writeln!(
            out,
            "crossbar_endpoint_error_ratio{{endpoint=\"{n}\"}} {}",
            s.error_rate()
        );
        for (name, quantiles) in [
            (
                "crossbar_endpoint_latency_seconds",
                [s.latency_p50_ms, s.latency_p90_ms, s.latency_p99_ms],
            ),
            (
                "crossbar_endpoint_ttft_seconds",
                [s.ttft_p50_ms, s.ttft_p90_ms, s.ttft_p99_ms],
            ),
        ] {
            for (q, v) in ["0.5", "0.9", "0.99"].into_iter().zip(quantiles) {
                if let Some(ms) = v {
                    let _ = writeln!(
                        out,
                        "{name}{{endpoint=\"{n}\",quantile=\"{q}\"}} {}",
                        ms / 1000.0
                    );
                }
            }
        }
    }
    family(
        &mut out,
        "crossbar_capacity_utilisation_ratio",
        "gauge",
        "Provisioned endpoints: share of the tokens-per-minute ceiling used.",
    );
    for h in &health {
        if let Some(u) = h.capacity_utilisation {
            let _ = writeln!(
                out,
                "crossbar_capacity_utilisation_ratio{{endpoint=\"{}\"}} {u}",
                esc(&h.name)
            );
        }
    }
    let l = state.ledger.stats();
    family(
        &mut out,
        "crossbar_ledger_records_total",
        "counter",
        "Usage-ledger records by fate: received, written, dropped (must stay 0).",
    );
    for (fate, n) in [
        ("received", l.received),
        ("written", l.written),
        ("dropped", l.dropped),
    ] {
        let _ = writeln!(out, "crossbar_ledger_records_total{{fate=\"{fate}\"}} {n}");
    }
    family(
        &mut out,
        "crossbar_ledger_queued",
        "gauge",
        "Usage-ledger records waiting to be written.",
    );
    let _ = writeln!(out, "crossbar_ledger_queued {}", l.queued);
    out
}
