//! The limits and timeouts that keep one client, or a few thousand silent sockets,
//! from taking the server down: what `crossbar serve` takes as flags (or
//! `CROSSBAR_*` variables), with defaults safe for production.
//!
//! | limit | default | what happens |
//! |---|---|---|
//! | `header_read_timeout` | 10 s | a connection must send a complete request head within it of opening (and, on HTTP/1.1, of its previous response); else it is closed |
//! | `idle_timeout` | 60 s | a connection with no request in flight for about this long is closed (HTTP/1.1 and HTTP/2) |
//! | `http2_keep_alive_interval` | 20 s | HTTP/2: a PING after this much silence; no answer within as long again closes the connection |
//! | `body_read_timeout` | 30 s | a request body that sends nothing for this long fails (400 on the gateway) |
//! | `max_connections` | 20,000 | open client connections, at most (and at most the file-descriptor limit less a reserve); beyond it a new one gets a 503 and is closed |
//! | `max_connections_per_ip` | 10,000 | open connections from one client address, at most; `0`: no per-address limit |
//! | `drain_timeout` | 25 s | on SIGTERM: how long in-flight requests and streams may take to finish before they are cut |
//! | `max_event_streams` | 64 | open `/admin/v1/events` streams, at most; beyond it, a 503 |
//!
//! The per-address default is high because a gateway behind a load balancer sees
//! every client at the balancer's few addresses; exposed directly, lower it.

use std::time::Duration;

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    /// `0`: no per-address limit.
    pub max_connections_per_ip: usize,
    pub drain_timeout: Duration,
    pub max_event_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(20),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 20_000,
            max_connections_per_ip: 10_000,
            drain_timeout: Duration::from_secs(25),
            max_event_streams: 64,
        }
    }
}

/// File descriptors kept free of client connections (at most a quarter of the
/// limit): upstream connections, the database, the console's files, the listener.
pub const FD_RESERVE: usize = 1_024;

impl Limits {
    /// These limits with `max_connections` lowered to what the process's
    /// file-descriptor limit allows, less a reserve: past it, accepting would fail,
    /// and so would the upstream connections the breakers judge endpoints by. The
    /// soft limit is raised to the hard one first, as far as the system allows.
    pub fn fitted_to_fd_limit(mut self) -> Self {
        if let Some(fds) = raise_fd_limit() {
            let fit = fds.saturating_sub(FD_RESERVE.min(fds / 4)).max(1);
            if self.max_connections > fit {
                tracing::info!(
                    requested = self.max_connections,
                    allowed = fit,
                    fd_limit = fds,
                    "max connections lowered to fit the file-descriptor limit (raise `ulimit -n` for more)"
                );
                self.max_connections = fit;
            }
        }
        self
    }
}

/// Raises the process's soft limit on open files to its hard limit, and returns the
/// soft limit then in force, if it can be read.
#[cfg(unix)]
fn raise_fd_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given, which
    // outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<usize> {
    None
}

/// A duration as the flags take it: `10s`, `500ms`, `2m`, or a plain number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. `10s`, `500ms` or `2m`"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        other => Err(format!(
            "`{other}` is not a unit of time here: use `ms`, `s` or `m`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit_or_as_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let d = Limits::default();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert!(d.idle_timeout <= Duration::from_secs(60));
        assert_eq!(d.drain_timeout, Duration::from_secs(25));
        // The memory benchmark holds 10,000 streams open from one address.
        assert!(d.max_connections >= 10_000 && d.max_connections_per_ip >= 10_000);
    }
}
