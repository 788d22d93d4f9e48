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

/// Upstream text (an error body from a cloud) as it may go into a log line: anything
/// that looks like a credential is replaced by `[redacted]` — API keys (`sk-...`, also
/// masked ones), Crossbar's own keys and tokens (`cb-...`, `cba-...`), AWS access key
/// ids, Google access tokens, JWTs, the word after `Bearer`, the value after
/// `key=` / `token:` / `secret=` / `password=` / `signature=` / `credential=`, and
/// long mixed-case runs of letters and digits (secret keys, signatures). Write it
/// through [`escaped`] as well: redaction does not escape.
pub fn redacted(text: &str) -> String {
    const REDACTED: &str = "[redacted]";
    let is_word =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '*');
    let mut out = String::with_capacity(text.len());
    // The previous word (lowercased) and the separator after it.
    let mut previous = String::new();
    let mut separator = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        if end == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            separator.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..end];
        let after_label = separator.contains('=') || separator.contains(':');
        let scheme = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
        let labelled = (matches!(previous.as_str(), "bearer" | "basic")
            && separator.trim().is_empty())
            || (!scheme
                && after_label
                && [
                    "key",
                    "token",
                    "secret",
                    "password",
                    "signature",
                    "credential",
                    "authorization",
                ]
                .iter()
                .any(|label| previous.ends_with(label)));
        if labelled || looks_like_a_credential(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        previous = word.to_ascii_lowercase();
        separator.clear();
        rest = &rest[end..];
    }
    out
}

fn looks_like_a_credential(word: &str) -> bool {
    let starts = |prefix: &str| word.starts_with(prefix) && word.len() >= prefix.len() + 8;
    if [
        "sk-", "sk_", "rk-", "pk-", "cb-", "cba-", "ya29.", "AIza", "ghp_", "xox",
    ]
    .iter()
    .any(|p| starts(p))
    {
        return true;
    }
    // AWS access key ids: AKIA / ASIA and 16 more upper-case letters or digits.
    if (word.starts_with("AKIA") || word.starts_with("ASIA"))
        && word.len() >= 20
        && word[..20]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return true;
    }
    // JWTs: three base64url parts, the first a JSON object (`eyJ`).
    if word.starts_with("eyJ") && word.matches('.').count() >= 2 {
        return true;
    }
    // Anything long, mixing upper case, lower case and digits: a secret, a signature.
    let (mut upper, mut lower, mut digit) = (false, false, false);
    for b in word.bytes() {
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
        digit |= b.is_ascii_digit();
    }
    word.len() >= 32 && upper && lower && digit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_upstream_text_are_redacted_and_the_rest_kept() {
        let text = "Incorrect API key provided: sk-proj-****************abcd. \
                    Authorization: Bearer abc.def.ghi; X-Amz-Security-Token=FwoGZXIvYXdzEJr; \
                    key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
                    token ya29.a0AfH6SMBx-long-google-token api_key=hunter2 \
                    jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig ours cba-abcdefghijklmnop";
        let r = redacted(text);
        for secret in [
            "sk-proj",
            "abcd",
            "abc.def.ghi",
            "FwoGZXIvYXdzEJr",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "ya29.",
            "hunter2",
            "eyJhbGci",
            "cba-abcdefghijklmnop",
        ] {
            assert!(!r.contains(secret), "{secret} left in {r}");
        }
        for kept in [
            "Incorrect API key provided:",
            "Authorization: Bearer",
            "api_key=",
        ] {
            assert!(r.contains(kept), "{kept} missing from {r}");
        }
        // Ordinary error text, ids and numbers stay as they are.
        let plain = "The input token count (9) exceeds the maximum number of tokens allowed (5). \
                     request 0f8fad5b-d9cb-469f-a165-70867728950e at 10.0.0.5:8080";
        assert_eq!(redacted(plain), plain);
    }

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
