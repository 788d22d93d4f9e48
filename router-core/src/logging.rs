//! Log filtering that keeps credentials out of logs whatever level is asked for.
//!
//! Some client libraries print credential material at DEBUG/TRACE: the AWS SigV4
//! signer logs its canonical request and the smithy orchestrator the whole request at
//! TRACE, session token included. Crossbar's binaries
//! build their `tracing` filter with [`directives`], which caps those targets however
//! verbose the operator's `RUST_LOG` is (the secretless-auth test runs at TRACE through
//! this filter and checks that no issued credential appears).
//!
//! Directives alone are not a cap: an `EnvFilter` span directive (`[http]=trace`)
//! enables every target inside the span whatever a target directive says. So
//! [`directives`] drops span directives naming a sensitive target, and the server
//! applies [`CREDENTIAL_SENSITIVE`] as a second, separate filter that the operator's
//! directives cannot reach (`server/src/logs.rs`).

/// Targets known to log credential material below INFO, and the level they are held at.
pub const CREDENTIAL_SENSITIVE: &[(&str, &str)] = &[
    ("aws_sigv4", "info"),
    ("aws_smithy_runtime", "debug"),
    ("aws_smithy_runtime_api", "debug"),
    ("aws_credential_types", "info"),
    ("google_cloud_auth", "info"),
];

/// `requested` (an `EnvFilter` directive string such as `info,router_core=debug`) with
/// any directive about a sensitive target removed and the caps appended. A cap only
/// ever lowers verbosity: with `info` asked for, a sensitive target logs at `info` at
/// most, never the cap's `debug`.
pub fn directives(requested: &str) -> String {
    let rank = |level: &str| match level.trim().to_ascii_lowercase().as_str() {
        "off" => 0,
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        _ => 5,
    };
    // The default level is the last directive without a target (none: errors only).
    let default = requested
        .split(',')
        .map(str::trim)
        .rfind(|d| !d.is_empty() && !d.contains('=') && !d.contains('['))
        .unwrap_or("error");
    let sensitive = |d: &str| {
        CREDENTIAL_SENSITIVE
            .iter()
            .any(|(target, _)| d.trim().starts_with(target))
    };
    let mut out: Vec<String> = requested
        .split(',')
        .filter(|d| !d.trim().is_empty() && !sensitive(d))
        .map(|d| d.trim().to_owned())
        .collect();
    out.extend(CREDENTIAL_SENSITIVE.iter().map(|(target, cap)| {
        let level = if rank(default) < rank(cap) {
            default
        } else {
            cap
        };
        format!("{target}={level}")
    }));
    out.join(",")
}

/// User-supplied text (an override's reason, a token's name) as it may go into a log
/// line: control characters, newlines included, are escaped (`\n`, `\u{1b}`), so a
/// reason cannot forge a second log line or move the terminal's cursor.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escaped`].
pub struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_in_logs_cannot_start_a_new_line() {
        assert_eq!(
            escaped("incident 42\nERROR forged line\r\u{1b}[2J").to_string(),
            "incident 42\\nERROR forged line\\r\\u{1b}[2J"
        );
        assert_eq!(escaped("plain – text").to_string(), "plain – text");
    }

    #[test]
    fn sensitive_targets_are_capped_even_when_asked_for() {
        let d = directives("trace,aws_sigv4=trace,router_core=debug");
        assert!(d.starts_with("trace,router_core=debug,"));
        assert!(d.contains("aws_sigv4=info") && !d.contains("aws_sigv4=trace"));
        assert!(directives("").starts_with("aws_sigv4=error,aws_smithy_runtime=error,"));
        // Never more verbose than asked: `info` keeps the runtime at `info`, not its
        // `debug` cap.
        let d = directives("info");
        assert!(
            d.contains("aws_smithy_runtime=info") && d.contains("aws_sigv4=info"),
            "{d}"
        );
        assert!(directives("warn,server=debug").contains("aws_smithy_runtime=warn"));
    }
}
