//! Fault injection settings of one simulated endpoint.
//!
//! Set at start (TOML `[endpoint.faults]`) and changed at run time through the control
//! API (`PUT` replaces, `PATCH` merges). A setting is validated as a whole before it
//! takes effect: a malformed one is answered with 400 and changes nothing.
//!
//! Order in which a request meets them: `latency_ms` → `outage` → authentication →
//! request validation → `capacity_tpm` → one roll of `errors` → reply. For a stream
//! the first token comes `ttft_ms` after the headers, the next ones at
//! `tokens_per_second`; `cut_after_tokens`, `end_stream_after_tokens`,
//! `malformed_after_tokens` and `stream_error_after_tokens` then shape its end.

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
    /// The `retry-after` a throttle or capacity error advertises, in seconds.
    pub retry_after_s: u64,
    /// How long a `timeout`-class request hangs before the provider's timeout error.
    pub timeout_after_ms: u64,
    pub outage: Outage,
    /// Provisioned throughput in tokens per minute (prompt + completion, sliding 60 s
    /// window); a request that would exceed it is throttled. `null`: unlimited.
    pub capacity_tpm: Option<u64>,
    /// Drop the connection after this many streamed tokens (no terminal event).
    pub cut_after_tokens: Option<u32>,
    /// End the stream cleanly after this many tokens but without its terminal events.
    pub end_stream_after_tokens: Option<u32>,
    /// Emit one malformed chunk/frame after this many tokens, then carry on.
    pub malformed_after_tokens: Option<u32>,
    /// Send the provider's in-stream error event after this many tokens and end.
    pub stream_error_after_tokens: Option<u32>,
    /// The class of that in-stream error.
    pub stream_error: ErrorClass,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            ttft_ms: 0,
            tokens_per_second: None,
            errors: ErrorRates::default(),
            retry_after_s: 1,
            timeout_after_ms: 30_000,
            outage: Outage::None,
            capacity_tpm: None,
            cut_after_tokens: None,
            end_stream_after_tokens: None,
            malformed_after_tokens: None,
            stream_error_after_tokens: None,
            stream_error: ErrorClass::Throttle,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRates {
    pub throttle: f64,
    pub server_error: f64,
    pub timeout: f64,
    pub overloaded: f64,
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
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
        }
    }
}

impl Faults {
    /// Checks every field; returns all problems, each naming its field.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let rates = [
            ("errors.throttle", self.errors.throttle),
            ("errors.server_error", self.errors.server_error),
            ("errors.timeout", self.errors.timeout),
            ("errors.overloaded", self.errors.overloaded),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                problems.push(format!("{name}: {rate} is not a probability in [0, 1]"));
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| r).sum();
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
        if self.retry_after_s > 3600 {
            problems.push("retry_after_s: at most 3600".into());
        }
        for (name, ms) in [
            ("latency_ms", self.latency_ms),
            ("ttft_ms", self.ttft_ms),
            ("timeout_after_ms", self.timeout_after_ms),
        ] {
            if ms > 600_000 {
                problems.push(format!("{name}: {ms} exceeds 600000 (10 minutes)"));
            }
        }
        if self.stream_error == ErrorClass::Unavailable {
            problems.push("stream_error: `unavailable` is not an in-stream error; use throttle, server_error, timeout or overloaded".into());
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
