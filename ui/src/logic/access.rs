//! Admin tokens and gateway keys as the access page shows them: when they expire,
//! and whether they are in force.

use super::format;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The expiries a new token or key can be given: a label and a lifetime (`None`:
/// never expires). The first is the default.
pub const EXPIRY_CHOICES: [(&str, Option<i64>); 6] = [
    ("30 days", Some(30 * DAY_MS)),
    ("1 hour", Some(HOUR_MS)),
    ("1 day", Some(DAY_MS)),
    ("7 days", Some(7 * DAY_MS)),
    ("90 days", Some(90 * DAY_MS)),
    ("never", None),
];

/// The `expires_at_ms` of a token or key created at `now_ms` with the choice
/// labelled `label` (an unknown label: the default).
pub fn expires_at(label: &str, now_ms: i64) -> Option<i64> {
    let lifetime = EXPIRY_CHOICES
        .iter()
        .find(|(l, _)| *l == label)
        .unwrap_or(&EXPIRY_CHOICES[0])
        .1;
    lifetime.map(|ms| now_ms + ms)
}

/// Whether a token or key is in force, revoked or expired at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Expired,
    Revoked,
}

impl Standing {
    pub fn of(revoked: bool, expires_at_ms: Option<i64>, now_ms: i64) -> Standing {
        if revoked {
            Standing::Revoked
        } else if expires_at_ms.is_some_and(|t| t <= now_ms) {
            Standing::Expired
        } else {
            Standing::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Expired => "expired",
            Standing::Revoked => "revoked",
        }
    }
}

/// When it expires, relative to `now_ms`: `never`, `in 6d 23h`, `2h 05m ago`.
pub fn expiry(expires_at_ms: Option<i64>, now_ms: i64) -> String {
    match expires_at_ms {
        None => "never".to_owned(),
        Some(t) if t > now_ms => format!("in {}", format::duration(t - now_ms)),
        Some(t) => format!("{} ago", format::duration(now_ms - t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_choices_become_times_and_read_back() {
        let now = 1_700_000_000_000;
        assert_eq!(expires_at("1 hour", now), Some(now + HOUR_MS));
        assert_eq!(expires_at("never", now), None);
        assert_eq!(expires_at("nonsense", now), Some(now + 30 * DAY_MS));
        assert_eq!(expiry(None, now), "never");
        assert_eq!(expiry(Some(now + 7 * DAY_MS), now), "in 7d 0h");
        assert_eq!(
            expiry(Some(now - 2 * HOUR_MS - 5 * 60_000), now),
            "2h 05m ago"
        );
    }

    #[test]
    fn revoked_beats_expired_beats_active() {
        let now = 10;
        assert_eq!(Standing::of(false, None, now), Standing::Active);
        assert_eq!(Standing::of(false, Some(11), now), Standing::Active);
        assert_eq!(Standing::of(false, Some(10), now), Standing::Expired);
        assert_eq!(Standing::of(true, Some(5), now), Standing::Revoked);
        assert_eq!(Standing::Expired.as_str(), "expired");
    }
}
