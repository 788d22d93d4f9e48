//! Gateway keys and admin tokens, resolved without touching the database on the hot
//! path, plus per-key and per-team rate limits.
//!
//! Keys are stored only as SHA-256 hashes. The server keeps a map hash → key in
//! memory, swapped atomically when keys change (through the admin API) and reloaded
//! every few seconds so that replicas sharing a database converge.
//!
//! Limits ([`Keys::allow`]): a key's requests per minute, its team's requests and
//! tokens per minute, each a [`Bucket`] — GCRA over the limiter's monotonic clock,
//! counted in whole units so that every limit is exact (600,000 tokens a minute is
//! 600,000; the old limiter charged whole millionths of a minute per token, rounded
//! down, and let 1,000,000 through), holding at most one minute's worth as a burst. A request larger than a whole minute's quota is refused whatever the
//! bucket holds. A request's tokens are an estimate before it is sent (a quarter of
//! its characters plus its `max_tokens`, 256 when unset); once its usage is known the
//! team's bucket is corrected by the difference ([`TokenCharge::settle`]), so an
//! estimate that was too low is paid for by the requests after it, one too high is
//! given back. Each bucket is one atomic word updated by compare-and-swap: no lock
//! and no allocation on the request path.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use router_core::admin::{GatewayKeyInfo, Role};
use router_core::api::{Error, ErrorKind};
use router_core::config::TeamConfig;
use router_core::routing::clock::{Clock, TokioClock};

use crate::store::{Store, parse_sha256_hex, sha256};

/// A resolved admin caller.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    /// The token's id (`at_...`); empty for a caller not known by a token.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// When the token stops working (ms since the Unix epoch).
    pub expires_at_ms: Option<i64>,
}

/// Whether something that expires at `expires_at_ms` is still in force now. Reads
/// the clock only for what expires.
fn in_force(expires_at_ms: Option<i64>) -> bool {
    expires_at_ms.is_none_or(|t| crate::unix_ms() < t)
}

type Digest = [u8; 32];

/// A stored hash as bytes. The store only takes well-formed hashes, so a bad one
/// means a database edited by hand: that key is left out, and said so.
fn digest(hex: &str, kind: &str, name: &str) -> Option<Digest> {
    let digest = parse_sha256_hex(hex);
    if digest.is_none() {
        tracing::warn!(%kind, name = %router_core::logging::escaped(name), "a stored hash is not a SHA-256 in hex; ignored");
    }
    digest
}

/// A gateway key as the hot path sees it: its stored description and its own
/// request-rate bucket (kept across reloads).
#[derive(Debug)]
pub struct GatewayKey {
    pub info: GatewayKeyInfo,
    requests: Bucket,
}

impl Deref for GatewayKey {
    type Target = GatewayKeyInfo;

    fn deref(&self) -> &GatewayKeyInfo {
        &self.info
    }
}

/// A team's request and token buckets.
#[derive(Debug, Default)]
pub struct TeamBuckets {
    requests: Bucket,
    tokens: Bucket,
}

/// The in-memory view of keys and tokens.
pub struct Keys {
    /// Keyed by the SHA-256 itself, not its hex: a request hashes its key and looks it
    /// up, with nothing formatted. Shared values: the hot path takes a reference
    /// count, not a copy of four strings.
    gateway: ArcSwap<HashMap<Digest, Arc<GatewayKey>>>,
    admin: ArcSwap<HashMap<Digest, AdminIdentity>>,
    store: Store,
    /// Each team's buckets, by name: created on a team's first request (copy on
    /// write, under `adding`), read without a lock after that.
    teams: ArcSwap<HashMap<String, Arc<TeamBuckets>>>,
    adding: parking_lot::Mutex<()>,
    clock: Arc<dyn Clock>,
}

impl Keys {
    pub async fn load(store: Store) -> anyhow::Result<Arc<Keys>> {
        Self::load_with_clock(store, Arc::new(TokioClock::new())).await
    }

    /// As [`Keys::load`], with the clock the limits run on (tests pass a manual one).
    pub async fn load_with_clock(store: Store, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Keys>> {
        let keys = Arc::new(Keys {
            gateway: ArcSwap::from_pointee(HashMap::new()),
            admin: ArcSwap::from_pointee(HashMap::new()),
            store,
            teams: ArcSwap::from_pointee(HashMap::new()),
            adding: parking_lot::Mutex::new(()),
            clock,
        });
        keys.reload().await?;
        Ok(keys)
    }

    /// Re-reads keys and tokens from the store. A key that was loaded before keeps
    /// its request bucket.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let old = self.gateway.load_full();
        let gateway: HashMap<Digest, Arc<GatewayKey>> = self
            .store
            .gateway_key_hashes()
            .await?
            .into_iter()
            .filter(|(_, k)| !k.revoked)
            .filter_map(|(hash, info)| {
                let digest = digest(&hash, "gateway key", &info.name)?;
                let requests = old
                    .get(&digest)
                    .map(|k| k.requests.snapshot())
                    .unwrap_or_default();
                Some((digest, Arc::new(GatewayKey { info, requests })))
            })
            .collect();
        let admin: HashMap<Digest, AdminIdentity> = self
            .store
            .admin_token_hashes()
            .await?
            .into_iter()
            .filter_map(|(hash, t)| {
                Some((
                    digest(&hash, "admin token", &t.name)?,
                    AdminIdentity {
                        id: t.id,
                        name: t.name,
                        role: t.role,
                        expires_at_ms: t.expires_at_ms,
                    },
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

    /// The key a client presented, unless unknown, revoked or expired. Revocations
    /// through this process's admin API reload the map at once; the periodic reload
    /// brings other replicas' within seconds; expiry is checked here, at each lookup.
    pub fn gateway_key(&self, secret: &str) -> Option<Arc<GatewayKey>> {
        self.gateway
            .load()
            .get(&sha256(secret))
            .filter(|k| in_force(k.info.expires_at_ms))
            .cloned()
    }

    /// The holder of an admin token, unless unknown, revoked or expired.
    pub fn admin_token(&self, secret: &str) -> Option<AdminIdentity> {
        self.admin
            .load()
            .get(&sha256(secret))
            .filter(|t| in_force(t.expires_at_ms))
            .cloned()
    }

    /// `team`'s buckets, created on its first request.
    fn team_buckets(&self, team: &str) -> Arc<TeamBuckets> {
        if let Some(buckets) = self.teams.load().get(team) {
            return buckets.clone();
        }
        let _one_at_a_time = self.adding.lock();
        let mut teams = HashMap::clone(&self.teams.load());
        let buckets = teams.entry(team.to_owned()).or_default().clone();
        self.teams.store(Arc::new(teams));
        buckets
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks the request-rate limits of `key` and of its `team`, and the team's
    /// token rate for an estimated `tokens`; a refusal says which limit and when to
    /// retry. What passes is charged; the returned [`TokenCharge`] corrects the
    /// team's token charge once the request's real usage is known.
    pub fn allow(
        &self,
        key: &GatewayKey,
        team: &TeamConfig,
        tokens: u64,
    ) -> Result<TokenCharge, Error> {
        let now = self.now_ns();
        let key_rpm = key.requests_per_minute.map(u64::from);
        if let Some(rpm) = key_rpm {
            check(&key.requests, now, rpm, 1, "key", &key.name)?;
        }
        // A refusal by a later limit gives back what the earlier ones charged: the
        // request is not sent.
        let refused = |e: Error, team_requests: Option<&Bucket>| {
            if let Some(rpm) = key_rpm {
                key.requests.give_back(now, 1, rpm);
            }
            if let (Some(bucket), Some(rpm)) = (team_requests, team.requests_per_minute) {
                bucket.give_back(now, 1, u64::from(rpm));
            }
            e
        };
        if team.requests_per_minute.is_none() && team.tokens_per_minute.is_none() {
            return Ok(TokenCharge::none());
        }
        let buckets = self.team_buckets(&team.name);
        if let Some(rpm) = team.requests_per_minute {
            check(
                &buckets.requests,
                now,
                u64::from(rpm),
                1,
                "team",
                &team.name,
            )
            .map_err(|e| refused(e, None))?;
        }
        let Some(tpm) = team.tokens_per_minute else {
            return Ok(TokenCharge::none());
        };
        check(&buckets.tokens, now, tpm, tokens, "team token", &team.name)
            .map_err(|e| refused(e, Some(&buckets.requests)))?;
        Ok(TokenCharge {
            team: Some((buckets, tpm)),
            estimate: tokens,
        })
    }

    /// Corrects a token charge: `actual` tokens instead of the charged estimate.
    fn settle(&self, charge: &TokenCharge, actual: u64) {
        let Some((buckets, tpm)) = &charge.team else {
            return;
        };
        let now = self.now_ns();
        if actual > charge.estimate {
            buckets
                .tokens
                .charge_more(now, actual - charge.estimate, *tpm);
        } else {
            buckets
                .tokens
                .give_back(now, charge.estimate - actual, *tpm);
        }
    }
}

/// A team's token charge for one request, to correct once its usage is known.
/// Dropped unsettled (the client left before the usage was known), the estimate
/// stands.
#[derive(Debug)]
pub struct TokenCharge {
    team: Option<(Arc<TeamBuckets>, u64)>,
    estimate: u64,
}

impl TokenCharge {
    fn none() -> Self {
        Self {
            team: None,
            estimate: 0,
        }
    }

    /// The estimate charged (0 when the team has no token limit).
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// Charges `actual` tokens instead of the estimate: the difference is taken
    /// from (or given back to) the team's bucket.
    pub fn settle(self, keys: &Keys, actual: u64) {
        keys.settle(&self, actual);
    }
}

/// One minute in nanoseconds.
const MINUTE_NS: u64 = 60_000_000_000;

/// A GCRA bucket, counted in units (requests or tokens) rather than time, so that
/// any limit is exact: at `per_minute` units a minute, the bucket's clock reads
/// `now × per_minute / 1 min` units ([`Bucket::ticks`]), and `tat` is the unit
/// count at which the bucket is even again. A request of `n` units moves `tat` `n`
/// later, and is refused when that would put it more than `per_minute` (a minute's
/// worth, the burst) ahead of the bucket's clock. Two atomic words, updated by
/// compare-and-swap.
#[derive(Debug, Default)]
pub struct Bucket {
    tat: AtomicU64,
    /// The limit `tat` is counted at (0 before the first use). When a publish
    /// changes the limit, what the bucket owes carries over in units.
    per_minute: AtomicU64,
}

impl Bucket {
    fn snapshot(&self) -> Bucket {
        Bucket {
            tat: AtomicU64::new(self.tat.load(Ordering::Relaxed)),
            per_minute: AtomicU64::new(self.per_minute.load(Ordering::Relaxed)),
        }
    }

    /// The bucket's clock at `now_ns`: units of `per_minute` elapsed since the epoch.
    fn ticks(now_ns: u64, per_minute: u64) -> u64 {
        u64::try_from(u128::from(now_ns) * u128::from(per_minute) / u128::from(MINUTE_NS))
            .unwrap_or(u64::MAX)
    }

    /// The bucket's clock now, at `per_minute` (the debt carried over if the limit
    /// changed since the last use).
    fn clock(&self, now_ns: u64, per_minute: u64) -> u64 {
        let before = self.per_minute.load(Ordering::Relaxed);
        if before != per_minute
            && self
                .per_minute
                .compare_exchange(before, per_minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && before != 0
        {
            let (old, new) = (Self::ticks(now_ns, before), Self::ticks(now_ns, per_minute));
            let _ = self
                .tat
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                    Some(new.saturating_add(tat.saturating_sub(old)))
                });
        }
        Self::ticks(now_ns, per_minute)
    }

    /// Takes `n` units at `now_ns` if they fit; else how long until they would.
    fn take(&self, now_ns: u64, n: u64, per_minute: u64) -> Result<(), Duration> {
        let now = self.clock(now_ns, per_minute);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(n);
            let ahead = next - now;
            if ahead > per_minute {
                let units = u128::from(ahead - per_minute);
                let ns = (units * u128::from(MINUTE_NS)).div_ceil(u128::from(per_minute.max(1)));
                return Err(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    /// Charges `n` more units, whatever the bucket holds (usage above its estimate:
    /// the requests after it wait for it).
    fn charge_more(&self, now_ns: u64, n: u64, per_minute: u64) {
        let now = self.clock(now_ns, per_minute);
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(n))
            });
    }

    /// Gives `n` units back (usage below its estimate, or a request not sent), never
    /// more than the bucket owes.
    fn give_back(&self, now_ns: u64, n: u64, per_minute: u64) {
        let now = self.clock(now_ns, per_minute);
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                (tat > now).then(|| tat.saturating_sub(n).max(now))
            });
    }
}

fn check(
    bucket: &Bucket,
    now: u64,
    limit_per_minute: u64,
    units: u64,
    what: &str,
    name: &str,
) -> Result<(), Error> {
    if units > limit_per_minute {
        // More than a whole minute's quota in one request: it can never pass.
        return Err(Error::new(
            ErrorKind::QuotaExceeded,
            format!(
                "this request alone exceeds {what} `{name}`'s limit of {limit_per_minute} per minute"
            ),
        ));
    }
    bucket.take(now, units, limit_per_minute).map_err(|wait| {
        Error::new(
            ErrorKind::QuotaExceeded,
            format!("{what} `{name}` is over its limit of {limit_per_minute} per minute"),
        )
        .with_retry_after(Some(wait.max(Duration::from_secs(1))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sha256_hex;

    fn key(rpm: Option<u32>) -> GatewayKey {
        GatewayKey {
            info: GatewayKeyInfo {
                id: "k1".into(),
                team: "search".into(),
                name: "search-prod".into(),
                created_at_ms: 0,
                revoked: false,
                requests_per_minute: rpm,
                expires_at_ms: None,
            },
            requests: Bucket::default(),
        }
    }

    fn team(rpm: Option<u32>, tpm: Option<u64>) -> TeamConfig {
        TeamConfig {
            name: "search".into(),
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    /// Keys over an empty store, on a clock that moves only when told to.
    async fn keys() -> (Arc<Keys>, router_core::routing::clock::ManualClock) {
        let clock = router_core::routing::clock::ManualClock::new();
        clock.set(Duration::from_secs(3_600));
        let keys = Keys::load_with_clock(
            Store::open_in_memory().await.unwrap(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        (keys, clock)
    }

    #[tokio::test]
    async fn a_key_over_its_request_rate_is_refused_with_retry_after() {
        let (keys, _) = keys().await;
        let k = key(Some(3));
        let t = team(None, None);
        for _ in 0..3 {
            keys.allow(&k, &t, 10).unwrap();
        }
        let e = keys.allow(&k, &t, 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(
            e.retry_after.is_some() && e.message.contains("search-prod"),
            "{e:?}"
        );
        // Another key of the same team is not affected by this key's limit.
        let mut other = key(Some(3));
        other.info.id = "k2".into();
        keys.allow(&other, &t, 10).unwrap();
    }

    #[tokio::test]
    async fn a_team_token_budget_counts_tokens_not_requests() {
        let (keys, _) = keys().await;
        let (k, t) = (key(None), team(None, Some(1_000)));
        keys.allow(&k, &t, 600).unwrap();
        let e = keys.allow(&k, &t, 600).unwrap_err();
        assert!(e.message.contains("team token"), "{e:?}");
    }

    /// 600,000 tokens a minute is 600,000: the old limiter charged a whole number of
    /// millionths of a minute per token, rounded down (1 for 600k), and so let
    /// 1,000,000 through.
    #[tokio::test]
    async fn a_token_limit_is_exact() {
        let (keys, clock) = keys().await;
        let k = key(None);
        for limit in [600_000u64, 7, 999_999, 1_000_001] {
            let t = TeamConfig {
                name: format!("team-{limit}"),
                ..team(None, Some(limit))
            };
            let mut passed = 0;
            let per_request = (limit / 100).max(1);
            while keys.allow(&k, &t, per_request).is_ok() {
                passed += per_request;
                assert!(passed <= limit, "{limit}: {passed} passed");
            }
            assert!(
                limit - passed < per_request,
                "{limit}: only {passed} passed"
            );
            // A minute later the whole minute is there again, and no more.
            clock.advance(Duration::from_secs(60));
            let mut again = 0;
            while keys.allow(&k, &t, per_request).is_ok() {
                again += per_request;
                assert!(again <= limit, "{limit}: {again} passed again");
            }
        }
    }

    /// A request larger than a whole minute's quota never passes, even with the
    /// bucket full: the old limiter capped its charge at one minute and let it in.
    #[tokio::test]
    async fn a_request_larger_than_the_whole_limit_is_refused_even_with_a_full_bucket() {
        let (keys, _) = keys().await;
        let e = keys
            .allow(&key(None), &team(None, Some(1_000)), 5_000)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(e.message.contains("alone exceeds"), "{e:?}");
        assert!(e.retry_after.is_none(), "retrying cannot help: {e:?}");
    }

    /// The 256-token estimate of a request without `max_tokens` is corrected by its
    /// usage: what it used beyond the estimate is charged after the response (the
    /// next requests wait for it), what it did not use is given back.
    #[tokio::test]
    async fn usage_beyond_the_estimate_is_charged_after_the_response_and_the_rest_given_back() {
        let (keys, clock) = keys().await;
        let (k, t) = (key(None), team(None, Some(1_000)));
        let charge = keys.allow(&k, &t, 300).unwrap();
        assert_eq!(charge.estimate(), 300);
        charge.settle(&keys, 900);
        // 900 used: 100 left, not 700.
        assert!(keys.allow(&k, &t, 200).is_err());
        keys.allow(&k, &t, 100).unwrap().settle(&keys, 100);
        // Refilled at 1,000 a minute: 200 more after 12 s.
        clock.advance(Duration::from_secs(12));
        let charge = keys.allow(&k, &t, 200).unwrap();
        // It used 20: 180 back.
        charge.settle(&keys, 20);
        keys.allow(&k, &t, 180).unwrap();
        assert!(keys.allow(&k, &t, 1).is_err());
    }

    /// A refused request is not sent: the limits it passed before the one that
    /// refused it are given back.
    #[tokio::test]
    async fn a_refusal_gives_back_what_the_earlier_limits_charged() {
        let (keys, _) = keys().await;
        let (k, t) = (key(Some(2)), team(Some(2), Some(100)));
        assert!(keys.allow(&k, &t, 101).is_err());
        assert!(keys.allow(&k, &t, 101).is_err());
        keys.allow(&k, &t, 10).unwrap();
        keys.allow(&k, &t, 10).unwrap();
        assert!(keys.allow(&k, &t, 10).is_err());
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

    #[tokio::test]
    async fn an_expired_key_or_token_is_refused_without_a_reload() {
        let store = Store::open_in_memory().await.unwrap();
        let soon = crate::unix_ms() + 300;
        let (_, key) = store
            .create_expiring_gateway_key("search", "ci", None, Some(soon))
            .await
            .unwrap();
        let (_, token) = store
            .create_expiring_admin_token("temp", Role::Admin, Some(soon))
            .await
            .unwrap();
        let keys = Keys::load(store).await.unwrap();
        assert!(keys.gateway_key(&key).is_some());
        assert!(keys.admin_token(&token).is_some());
        #[allow(clippy::disallowed_methods, reason = "waits for a wall-clock expiry")]
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(keys.gateway_key(&key).is_none());
        assert!(keys.admin_token(&token).is_none());
    }
}
