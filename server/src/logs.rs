//! The log filter of the `crossbar` binary: what the operator asks for in
//! `CROSSBAR_LOG`, and beneath it caps on credential-printing targets that nothing in
//! `CROSSBAR_LOG` can lift.
//!
//! The caps used to be directives appended to the operator's own (router-core's
//! [`directives`]): `EnvFilter` lets a span directive (`[http]=trace`, `info,[{x}]=debug`)
//! enable *every* target inside the span, whatever static directive says otherwise, so
//! `CROSSBAR_LOG="info,[http]=trace"` printed the SigV4 signer's canonical requests
//! during every request. Now the operator's filter and the caps are two filters that
//! must both agree ([`FilterExt::and`]): the caps are a fixed [`Targets`] list, not
//! directives in the same list as the operator's, so no directive reaches them.

use std::str::FromStr;

use router_core::logging::{CREDENTIAL_SENSITIVE, directives};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::Filter;

/// The filter for `requested` (an `EnvFilter` directive string): it passes what
/// `requested` passes, and never a credential-sensitive target above its cap.
pub fn filter<S>(requested: &str) -> impl Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    EnvFilter::new(directives(requested)).and(caps())
}

/// Every target at every level, except the credential-sensitive ones above their cap.
fn caps() -> Targets {
    CREDENTIAL_SENSITIVE.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, (target, cap)| {
            targets.with_target(
                *target,
                LevelFilter::from_str(cap).unwrap_or(LevelFilter::OFF),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What is logged, under `requested`, by a credential-printing target and an
    /// ordinary one, inside a request's span.
    fn logged(requested: &str) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_filter(filter(requested)),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", path = "/v1/chat/completions");
            let _entered = span.enter();
            tracing::trace!(target: "aws_sigv4", "canonical request: x-amz-security-token=SECRET");
            tracing::debug!(target: "google_cloud_auth", "token SECRET");
            tracing::debug!(target: "server::gateway", "an ordinary debug line");
        });
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn span_directives_cannot_lift_the_caps_on_credential_printing_targets() {
        for requested in [
            "info,[http]=trace",
            "[http]=trace",
            "trace,[{path}]=trace",
            "debug,aws_sigv4[http]=trace",
            "trace,aws_sigv4=trace,google_cloud_auth=trace",
        ] {
            let out = logged(requested);
            assert!(!out.contains("SECRET"), "{requested}: {out}");
            assert!(out.contains("an ordinary debug line"), "{requested}: {out}");
        }
    }

    #[test]
    fn the_operators_level_still_applies_below_the_caps() {
        let out = logged("warn");
        assert!(out.is_empty(), "{out}");
    }
}
