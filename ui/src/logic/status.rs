//! The one-word state of the whole router, for the desktop tray and window title:
//! `ok` when every breaker is closed, `degraded` when any ramps or is open, `down`
//! when the console has lost its connection to the router.

use router_core::admin::StateName;

use super::group::StateCounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Degraded,
    Down,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Degraded => "degraded",
            Level::Down => "down",
        }
    }
}

/// The level and a one-line summary.
pub fn overall(connected: bool, states: &[StateName]) -> (Level, String) {
    if !connected {
        return (Level::Down, "connection to the router lost".to_owned());
    }
    let c = StateCounts::of(states);
    if c.open == 0 && c.ramp == 0 {
        let summary = match c.closed {
            0 => "no endpoints configured".to_owned(),
            1 => "the endpoint is healthy".to_owned(),
            n => format!("all {n} endpoints healthy"),
        };
        return (Level::Ok, summary);
    }
    let mut parts = Vec::new();
    if c.open > 0 {
        parts.push(format!("{} open", c.open));
    }
    if c.ramp > 0 {
        parts.push(format!("{} recovering", c.ramp));
    }
    (
        Level::Degraded,
        format!("{} of {} endpoints", parts.join(", "), c.total()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use StateName::*;

    #[test]
    fn all_closed_is_ok() {
        assert_eq!(
            overall(true, &[Closed, Closed]),
            (Level::Ok, "all 2 endpoints healthy".into())
        );
        assert_eq!(overall(true, &[]).0, Level::Ok);
    }

    #[test]
    fn any_ramp_or_open_is_degraded() {
        assert_eq!(
            overall(true, &[Closed, Ramp]),
            (Level::Degraded, "1 recovering of 2 endpoints".into())
        );
        assert_eq!(
            overall(true, &[Open, Ramp, Open, Closed]),
            (
                Level::Degraded,
                "2 open, 1 recovering of 4 endpoints".into()
            )
        );
    }

    #[test]
    fn a_lost_connection_is_down_whatever_the_last_states_said() {
        assert_eq!(overall(false, &[Closed]).0, Level::Down);
        assert_eq!(Level::Down.as_str(), "down");
    }
}
