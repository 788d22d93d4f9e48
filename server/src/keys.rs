//! Gateway keys and admin tokens, resolved without touching the database on the hot
//! path, plus per-key and per-team rate limits.
//!
//! Keys are stored only as SHA-256 hashes. The server keeps a map hash → key in
//! memory, swapped atomically when keys change (through the admin API) and reloaded
//! every few seconds so that replicas sharing a database converge.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use router_core::admin::{GatewayKeyInfo, Role};
use router_core::api::{Error, ErrorKind};

use crate::store::{Store, parse_sha256_hex, sha256};

/// A resolved admin caller.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    pub name: String,
    pub role: Role,
}

type Digest = [u8; 32];

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// A stored hash as bytes. The store only takes well-formed hashes, so a bad one
/// means a database edited by hand: that key is left out, and said so.
fn digest(hex: &str, kind: &str, name: &str) -> Option<Digest> {
    let digest = parse_sha256_hex(hex);
    if digest.is_none() {
        tracing::warn!(%kind, name = %router_core::logging::escaped(name), "a stored hash is not a SHA-256 in hex; ignored");
    }
    digest
}

/// The in-memory view of keys and tokens.
pub struct Keys {
    /// Keyed by the SHA-256 itself, not its hex: a request hashes its key and looks it
    /// up, with nothing formatted. Shared values: the hot path takes a reference
    /// count, not a copy of four strings.
    gateway: ArcSwap<HashMap<Digest, Arc<GatewayKeyInfo>>>,
    admin: ArcSwap<HashMap<Digest, AdminIdentity>>,
    store: Store,
    /// Per-key and per-team request limits (requests per minute), and per-team token
    /// limits (tokens per minute); each limiter is keyed by key id / team name.
    key_requests: Limiter,
    team_requests: Limiter,
    team_tokens: Limiter,
}

impl Keys {
    pub async fn load(store: Store) -> anyhow::Result<Arc<Keys>> {
        // The limiters are keyed; each key's quota is applied by `check_n` with the
        // cell count scaled (see `allow`), so one limiter per kind serves every key.
        let per_minute = Quota::per_minute(NonZeroU32::new(UNIT).expect("non-zero"));
        let keys = Arc::new(Keys {
            gateway: ArcSwap::from_pointee(HashMap::new()),
            admin: ArcSwap::from_pointee(HashMap::new()),
            store,
            key_requests: RateLimiter::keyed(per_minute),
            team_requests: RateLimiter::keyed(per_minute),
            team_tokens: RateLimiter::keyed(per_minute),
        });
        keys.reload().await?;
        Ok(keys)
    }

    /// Re-reads keys and tokens from the store.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let gateway: HashMap<Digest, Arc<GatewayKeyInfo>> = self
            .store
            .gateway_key_hashes()
            .await?
            .into_iter()
            .filter(|(_, k)| !k.revoked)
            .filter_map(|(hash, k)| Some((digest(&hash, "gateway key", &k.name)?, Arc::new(k))))
            .collect();
        let admin: HashMap<Digest, AdminIdentity> = self
            .store
            .admin_token_hashes()
            .await?
            .into_iter()
            .filter_map(|(hash, name, role)| {
                Some((
                    digest(&hash, "admin token", &name)?,
                    AdminIdentity { name, role },
                ))
            })
            .collect();
        self.gateway.store(Arc::new(gateway));
        self.admin.store(Arc::new(admin));
        Ok(())
    }

    /// Reloads every `every` until the process ends.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = keys.reload().await {
                    tracing::warn!(%err, "reloading keys failed; keeping the previous set");
                }
            }
        })
    }

    pub fn gateway_key(&self, secret: &str) -> Option<Arc<GatewayKeyInfo>> {
        self.gateway.load().get(&sha256(secret)).cloned()
    }

    pub fn admin_token(&self, secret: &str) -> Option<AdminIdentity> {
        self.admin.load().get(&sha256(secret)).cloned()
    }

    /// Checks the request-rate limits of a key and its team, and the team's token
    /// rate for an estimated `tokens`. A refusal says which limit and when to retry.
    pub fn allow(
        &self,
        key: &GatewayKeyInfo,
        team_rpm: Option<u32>,
        team_tpm: Option<u64>,
        tokens: u64,
    ) -> Result<(), Error> {
        if let Some(rpm) = key.requests_per_minute {
            check(&self.key_requests, &key.id, rpm.into(), 1, "key", &key.name)?;
        }
        if let Some(rpm) = team_rpm {
            check(
                &self.team_requests,
                &key.team,
                rpm.into(),
                1,
                "team",
                &key.team,
            )?;
        }
        if let Some(tpm) = team_tpm {
            check(
                &self.team_tokens,
                &key.team,
                tpm,
                tokens,
                "team token",
                &key.team,
            )?;
        }
        Ok(())
    }
}

/// Cells per minute of every limiter: a quota of `limit` per minute is enforced by
/// charging `UNIT / limit` cells per unit, so keys with different quotas can share one
/// keyed limiter. (GCRA is exact for any cell size; the rounding costs < 0.1 %.)
const UNIT: u32 = 1_000_000;

fn check(
    limiter: &Limiter,
    key: &str,
    limit_per_minute: u64,
    units: u64,
    what: &str,
    name: &str,
) -> Result<(), Error> {
    let per_unit = (u64::from(UNIT) / limit_per_minute.max(1)).max(1);
    let cells = (per_unit.saturating_mul(units.max(1))).min(u64::from(UNIT)) as u32;
    let Some(cells) = NonZeroU32::new(cells) else {
        return Ok(());
    };
    match limiter.check_key_n(&key.to_owned(), cells) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
            Err(Error::new(
                ErrorKind::QuotaExceeded,
                format!("{what} `{name}` is over its limit of {limit_per_minute} per minute"),
            )
            .with_retry_after(Some(wait.max(Duration::from_secs(1)))))
        }
        // More than a whole minute's quota in one request: it can never pass.
        Err(_) => Err(Error::new(
            ErrorKind::QuotaExceeded,
            format!(
                "this request alone exceeds {what} `{name}`'s limit of {limit_per_minute} per minute"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sha256_hex;

    fn key(rpm: Option<u32>) -> GatewayKeyInfo {
        GatewayKeyInfo {
            id: "k1".into(),
            team: "search".into(),
            name: "search-prod".into(),
            created_at_ms: 0,
            revoked: false,
            requests_per_minute: rpm,
        }
    }

    #[tokio::test]
    async fn a_key_over_its_request_rate_is_refused_with_retry_after() {
        let keys = Keys::load(Store::open_in_memory().await.unwrap())
            .await
            .unwrap();
        let k = key(Some(3));
        for _ in 0..3 {
            keys.allow(&k, None, None, 10).unwrap();
        }
        let e = keys.allow(&k, None, None, 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(
            e.retry_after.is_some() && e.message.contains("search-prod"),
            "{e:?}"
        );
        // Another key of the same team is not affected by this key's limit.
        let other = GatewayKeyInfo {
            id: "k2".into(),
            ..key(Some(3))
        };
        keys.allow(&other, None, None, 10).unwrap();
    }

    #[tokio::test]
    async fn a_team_token_budget_counts_tokens_not_requests() {
        let keys = Keys::load(Store::open_in_memory().await.unwrap())
            .await
            .unwrap();
        let k = key(None);
        keys.allow(&k, None, Some(1_000), 600).unwrap();
        let e = keys.allow(&k, None, Some(1_000), 600).unwrap_err();
        assert!(e.message.contains("team token"), "{e:?}");
        assert_eq!(
            keys.allow(&k, None, Some(1_000), 5_000).unwrap_err().kind,
            ErrorKind::QuotaExceeded
        );
    }

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // The in-memory maps key by the bytes; they read back from either case.
        let hex = sha256_hex("abc");
        assert_eq!(parse_sha256_hex(&hex), Some(sha256("abc")));
        assert_eq!(parse_sha256_hex(&hex.to_uppercase()), Some(sha256("abc")));
        assert_eq!(parse_sha256_hex(&hex[..62]), None);
        assert_eq!(parse_sha256_hex(&format!("{}zz", &hex[..62])), None);
    }

    #[tokio::test]
    async fn a_key_resolves_by_its_hash_until_revoked() {
        let store = Store::open_in_memory().await.unwrap();
        let (created, secret) = store
            .create_gateway_key("search", "ci", None)
            .await
            .unwrap();
        let keys = Keys::load(store.clone()).await.unwrap();
        let found = keys.gateway_key(&secret).expect("the new key resolves");
        assert_eq!((&found.id, found.team.as_str()), (&created.id, "search"));
        assert!(keys.gateway_key(&format!("{secret}x")).is_none());
        assert!(store.revoke_gateway_key(&created.id).await.unwrap());
        keys.reload().await.unwrap();
        assert!(keys.gateway_key(&secret).is_none());
    }
}
