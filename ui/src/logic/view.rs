//! Which page is shown, kept in the URL's hash (`#/features/recap`) so a reload or a
//! shared link opens the same page. A hash, not a path: the server answers every
//! unknown path with `index.html`, but the desktop app's origin has no server at all.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Overview,
    /// A feature, or the picker when none is chosen yet.
    Features(Option<String>),
    Spend,
    History,
    Audit,
    /// Failed requests with their attempts' detail.
    Failures,
    /// Admin tokens and gateway keys (permissions `manage_tokens`, `manage_keys`).
    Access,
}

impl View {
    pub fn from_hash(hash: &str) -> View {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        let mut parts = path.splitn(2, '/');
        match (parts.next().unwrap_or(""), parts.next()) {
            ("features", Some(name)) if !name.is_empty() => View::Features(Some(name.to_owned())),
            ("features", _) => View::Features(None),
            ("spend", _) => View::Spend,
            ("history", _) => View::History,
            ("audit", _) => View::Audit,
            ("failures", _) => View::Failures,
            ("access", _) => View::Access,
            _ => View::Overview,
        }
    }

    pub fn hash(&self) -> String {
        match self {
            View::Overview => "#/overview".to_owned(),
            View::Features(None) => "#/features".to_owned(),
            View::Features(Some(name)) => format!("#/features/{name}"),
            View::Spend => "#/spend".to_owned(),
            View::History => "#/history".to_owned(),
            View::Audit => "#/audit".to_owned(),
            View::Failures => "#/failures".to_owned(),
            View::Access => "#/access".to_owned(),
        }
    }

    /// The navigation entry this view belongs to.
    pub fn section(&self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Features(_) => "features",
            View::Spend => "spend",
            View::History => "history",
            View::Audit => "audit",
            View::Failures => "failures",
            View::Access => "access",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_unknown_ones_open_the_overview() {
        for v in [
            View::Overview,
            View::Features(None),
            View::Features(Some("recap".into())),
            View::Spend,
            View::History,
            View::Audit,
            View::Failures,
            View::Access,
        ] {
            assert_eq!(View::from_hash(&v.hash()), v);
        }
        assert_eq!(View::from_hash(""), View::Overview);
        assert_eq!(View::from_hash("#"), View::Overview);
        assert_eq!(View::from_hash("#/nonsense"), View::Overview);
        assert_eq!(View::from_hash("#/features/"), View::Features(None));
        assert_eq!(View::Features(Some("x".into())).section(), "features");
    }
}
