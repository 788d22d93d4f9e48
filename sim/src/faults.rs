//! Fault injection settings of one simulated endpoint.
//!
//! Set at start (TOML `[endpoint.faults]`) and changed at run time through the control
//! API (`PUT` replaces, `PATCH` merges). A setting is validated as a whole before it
//! takes effect: a malformed one is answered with 400 and changes nothing.
//!
//! Order in which a request meets them: `latency_ms` → `outage` → the head of the
//! `next_errors` queue (taken off it) → authentication → request validation (and
//! `prefill`) → `capacity_tpm` → one roll of `errors` → reply. For a stream the first
//! token comes `ttft_ms` after the headers, the next ones at `tokens_per_second`;
//! `stall_after_tokens` pauses it mid-answer for `stall_ms`; `cut_after_tokens`,
//! `end_stream_after_tokens`, `malformed_after_tokens` and `stream_error_after_tokens`
//! then shape its end, and `omit_terminal_event` drops its last marker.
//!
//! Two error classes act on the connection rather than answering: `reset` closes it
//! with a TCP RST once the request has been read, before any response byte (over
//! HTTP/2, that ends every stream of the connection, as a real reset would); `silent`
//! keeps it open and never sends anything (until the client gives up or the simulator
//! shuts down). Both are usable in `errors` rates and in `next_errors`; `outage =
//! "silent"` makes every request silent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before any response (including errors).
    pub latency_ms: u64,
    /// Time to first token: from the response headers to the first token of a stream;
    /// added to the response time of a non-streaming reply.
    pub ttft_ms: u64,
    /// Generation speed after the first token; `null` means as fast as possible.
    pub tokens_per_second: Option<f64>,
    /// Probability of each injected error class per request (independent of capacity).
    pub errors: ErrorRates,
    /// Error classes for the next requests, one each, in order, taken off the queue as
    /// requests arrive (after `latency_ms` and `outage`, before anything else); once it
    /// is empty, normal service. `["throttle", "server_error"]`: a 429, then a 500, then
    /// success. A PATCH replaces the whole queue; GET shows what is left of it.
    pub next_errors: Vec<ErrorClass>,
    /// The `retry-after` a throttle, overload or capacity error advertises, in seconds;
    /// fractions allowed. Headers in whole seconds round up (`retry-after: 1` for 0.5);
    /// OpenAI's `retry-after-ms` carries the exact value. `0`: the error says nothing
    /// about when to come back (no `retry-after` header at all), as many do.
    #[serde(serialize_with = "whole_or_fraction")]
    pub retry_after_s: f64,
    /// How long a `timeout`-class request hangs before the provider's timeout error.
    pub timeout_after_ms: u64,
    pub outage: Outage,
    /// Provisioned throughput in tokens per minute (prompt + completion, sliding 60 s
    /// window); a request that would exceed it is throttled. `null`: unlimited.
    pub capacity_tpm: Option<u64>,
    /// Drop the connection after this many streamed tokens (no terminal event).
    pub cut_after_tokens: Option<u32>,
    /// Stop sending after this many streamed tokens, the connection open, for
    /// `stall_ms`; then the stream goes on where it stopped: an upstream that stalls
    /// mid-answer.
    pub stall_after_tokens: Option<u32>,
    /// How long a `stall_after_tokens` stall lasts.
    pub stall_ms: u64,
    /// End the stream cleanly after this many tokens but without its terminal events.
    pub end_stream_after_tokens: Option<u32>,
    /// Emit one malformed chunk/frame after this many tokens, then carry on.
    pub malformed_after_tokens: Option<u32>,
    /// Send the provider's in-stream error event after this many tokens and end.
    pub stream_error_after_tokens: Option<u32>,
    /// The class of that in-stream error.
    pub stream_error: ErrorClass,
    /// Send a stream complete, finish reason and usage included, but without its
    /// terminal marker: OpenAI's `data: [DONE]`, Claude's `message_stop` (after the
    /// `message_delta` with usage), then end the body cleanly. Gemini and Bedrock streams
    /// have no marker after their usage (their last event *is* the usage), so there it
    /// changes nothing.
    pub omit_terminal_event: bool,
    /// What the endpoint does with a prefill (a request ending in an assistant message
    /// that the provider continues): `accept` (default) or `reject`.
    pub prefill: Prefill,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            ttft_ms: 0,
            tokens_per_second: None,
            errors: ErrorRates::default(),
            next_errors: Vec::new(),
            retry_after_s: 1.0,
            timeout_after_ms: 30_000,
            outage: Outage::None,
            capacity_tpm: None,
            cut_after_tokens: None,
            stall_after_tokens: None,
            stall_ms: 30_000,
            end_stream_after_tokens: None,
            malformed_after_tokens: None,
            stream_error_after_tokens: None,
            stream_error: ErrorClass::Throttle,
            omit_terminal_event: false,
            prefill: Prefill::Accept,
        }
    }
}

/// Writes whole numbers as integers (`1`, not `1.0`), so readers of the settings that
/// expect an integer keep working.
fn whole_or_fraction<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(value) {
        serializer.serialize_u64(*value as u64)
    } else {
        serializer.serialize_f64(*value)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRates {
    pub throttle: f64,
    pub server_error: f64,
    pub timeout: f64,
    pub overloaded: f64,
    /// The connection is reset (TCP RST) before any response byte.
    pub reset: f64,
    /// Nothing is ever sent; the connection stays open.
    pub silent: f64,
}

impl ErrorRates {
    /// Each class with its rate, in the order one roll tries them.
    pub fn classes(&self) -> [(ErrorClass, f64); 6] {
        [
            (ErrorClass::Throttle, self.throttle),
            (ErrorClass::ServerError, self.server_error),
            (ErrorClass::Timeout, self.timeout),
            (ErrorClass::Overloaded, self.overloaded),
            (ErrorClass::Reset, self.reset),
            (ErrorClass::Silent, self.silent),
        ]
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outage {
    #[default]
    None,
    /// The listener is closed: connections are refused (open ones are dropped).
    Refuse,
    /// Every request gets the provider's 503.
    Unavailable,
    /// Connections are accepted and requests read, but nothing is ever answered: the
    /// upstream that hangs. Hung requests stay hung when the outage ends (until their
    /// client gives up); the endpoint's own `/_sim` routes keep answering.
    Silent,
}

/// What an endpoint does with an assistant prefill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prefill {
    /// Continue it, as Claude (on Vertex or Bedrock) and vLLM's
    /// `continue_final_message` do.
    #[default]
    Accept,
    /// Refuse it with the provider's own 400, as a model without prefill support does.
    Reject,
}

/// The failure classes a simulator can inject, each rendered in the provider's own form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Throttle,
    ServerError,
    Timeout,
    Overloaded,
    Unavailable,
    /// Not an answer: the connection is closed with a TCP RST after the request was
    /// read, before any response byte.
    Reset,
    /// Not an answer: nothing is ever sent.
    Silent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Reset => "reset",
            Self::Silent => "silent",
        }
    }

    /// The classes a provider can send as an event in the middle of a stream.
    pub fn is_in_stream(self) -> bool {
        matches!(
            self,
            Self::Throttle | Self::ServerError | Self::Timeout | Self::Overloaded
        )
    }
}

/// The longest `next_errors` queue accepted.
pub const MAX_NEXT_ERRORS: usize = 10_000;

impl Faults {
    /// Checks every field; returns all problems, each naming its field.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let rates = self
            .errors
            .classes()
            .map(|(class, rate)| (format!("errors.{}", class.as_str()), rate));
        for (name, rate) in &rates {
            if !(0.0..=1.0).contains(rate) {
                problems.push(format!("{name}: {rate} is not a probability in [0, 1]"));
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| *r).sum();
        if sum > 1.0 + 1e-9 {
            problems.push(format!("errors: rates sum to {sum}, at most 1"));
        }
        if let Some(tps) = self.tokens_per_second
            && !(tps.is_finite() && tps > 0.0)
        {
            problems.push(format!(
                "tokens_per_second: {tps} must be a positive number"
            ));
        }
        if self.capacity_tpm == Some(0) {
            problems.push("capacity_tpm: must be at least 1 (use null for unlimited)".into());
        }
        if !(self.retry_after_s.is_finite() && (0.0..=3600.0).contains(&self.retry_after_s)) {
            problems.push(format!(
                "retry_after_s: {} must be between 0 and 3600",
                self.retry_after_s
            ));
        }
        if self.next_errors.len() > MAX_NEXT_ERRORS {
            problems.push(format!(
                "next_errors: {} entries, at most {MAX_NEXT_ERRORS}",
                self.next_errors.len()
            ));
        }
        for (name, ms) in [
            ("latency_ms", self.latency_ms),
            ("ttft_ms", self.ttft_ms),
            ("timeout_after_ms", self.timeout_after_ms),
            ("stall_ms", self.stall_ms),
        ] {
            if ms > 600_000 {
                problems.push(format!("{name}: {ms} exceeds 600000 (10 minutes)"));
            }
        }
        if !self.stream_error.is_in_stream() {
            problems.push(format!(
                "stream_error: `{}` is not an in-stream error; use throttle, server_error, timeout or overloaded",
                self.stream_error.as_str()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Applies a JSON merge patch (RFC 7396) and validates the result.
    pub fn patched(&self, patch: &Value) -> Result<Faults, String> {
        if !patch.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        merge(&mut current, patch);
        Self::from_value(current)
    }

    /// Parses a complete setting (missing fields take their defaults) and validates it.
    pub fn from_value(value: Value) -> Result<Faults, String> {
        if !value.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let faults: Faults = serde_json::from_value(value).map_err(|e| e.to_string())?;
        faults.validate()?;
        Ok(faults)
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.insert(k.clone(), Value::Null);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_merges_nested_fields_and_null_clears() {
        let f = Faults {
            capacity_tpm: Some(10),
            ..Faults::default()
        };
        let g = f
            .patched(&json!({"errors": {"throttle": 0.5}, "capacity_tpm": null, "ttft_ms": 250}))
            .unwrap();
        assert_eq!(g.errors.throttle, 0.5);
        assert_eq!(g.errors.server_error, 0.0);
        assert_eq!(g.capacity_tpm, None);
        assert_eq!(g.ttft_ms, 250);
    }

    #[test]
    fn invalid_settings_name_every_bad_field() {
        let err = Faults::default()
            .patched(
                &json!({"errors": {"throttle": 1.5, "server_error": 0.2}, "tokens_per_second": -1}),
            )
            .unwrap_err();
        assert!(err.contains("errors.throttle"), "{err}");
        assert!(err.contains("sum to"), "{err}");
        assert!(err.contains("tokens_per_second"), "{err}");
    }

    #[test]
    fn next_errors_and_fractional_retry_after_round_trip() {
        let f = Faults::default()
            .patched(&json!({"next_errors": ["throttle", "reset", "silent", "server_error"], "retry_after_s": 0.25}))
            .unwrap();
        assert_eq!(
            f.next_errors,
            [
                ErrorClass::Throttle,
                ErrorClass::Reset,
                ErrorClass::Silent,
                ErrorClass::ServerError
            ]
        );
        let shown = serde_json::to_value(&f).unwrap();
        assert_eq!(shown["retry_after_s"], 0.25);
        assert_eq!(shown["next_errors"][1], "reset");
        // Whole seconds stay integers, as they always were.
        let whole = serde_json::to_value(Faults::default()).unwrap();
        assert_eq!(whole["retry_after_s"].as_u64(), Some(1));
        for bad in [json!({"retry_after_s": -1}), json!({"retry_after_s": 4000})] {
            assert!(
                Faults::default()
                    .patched(&bad)
                    .unwrap_err()
                    .contains("retry_after_s")
            );
        }
        assert!(
            Faults::default()
                .patched(&json!({"next_errors": ["sometimes"]}))
                .is_err()
        );
    }

    #[test]
    fn connection_classes_are_rates_but_not_in_stream_errors() {
        let f = Faults::default()
            .patched(&json!({"errors": {"reset": 0.5, "silent": 0.5}, "outage": "silent", "prefill": "reject", "omit_terminal_event": true}))
            .unwrap();
        assert_eq!(f.errors.reset, 0.5);
        assert_eq!(f.outage, Outage::Silent);
        assert_eq!(f.prefill, Prefill::Reject);
        let err = Faults::default()
            .patched(&json!({"errors": {"reset": 0.6, "silent": 0.6}, "stream_error": "reset"}))
            .unwrap_err();
        assert!(err.contains("sum to"), "{err}");
        assert!(err.contains("stream_error"), "{err}");
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_rejected() {
        assert!(
            Faults::default()
                .patched(&json!({"latncy_ms": 5}))
                .unwrap_err()
                .contains("latncy_ms")
        );
        assert!(
            Faults::default()
                .patched(&json!({"latency_ms": "slow"}))
                .is_err()
        );
        assert!(
            Faults::default()
                .patched(&json!({"outage": "sometimes"}))
                .is_err()
        );
        assert!(Faults::default().patched(&json!([1])).is_err());
    }
}
