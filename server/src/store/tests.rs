//! The store against real SQLite: in memory, and in temporary files.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "store tests measure real write rates and wait for the real writer"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use router_core::admin::BreakerEvent;
use router_core::admin::{Reason, Signal, StateName, Transition};
use router_core::admin::{Role, SpendGroup};
use router_core::config::RouterConfig;
use router_core::telemetry::record::{AttemptRecord, RequestRecord};
use rust_decimal::Decimal;
use serde_json::json;

use super::*;

/// A database file of its own for one test, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "crossbar-store-{test}-{}-{nanos}",
            std::process::id()
        ));
        TempDb(dir.join("crossbar.db"))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn config(percent_a: f64) -> RouterConfig {
    serde_json::from_value(json!({
        "endpoints": [
            {"name": "claude-us", "provider": "bedrock", "model": "anthropic.claude", "region": "us-east-1", "geography": "us"},
            {"name": "gemini-eu", "provider": "vertex-gemini", "model": "gemini-2.0-flash", "region": "europe-west4", "geography": "eu"}
        ],
        "features": [
            {"name": "recap", "binding": ["claude-us"]},
            {"name": "summarize", "binding": ["claude-us", "gemini-eu"], "experiment": {"id": "exp1", "variants": [
                {"name": "a", "percent": percent_a, "binding": ["claude-us"]},
                {"name": "b", "percent": 100.0 - percent_a, "binding": ["gemini-eu"]}
            ]}}
        ]
    }))
    .unwrap()
}

fn publish<'a>(config: &'a RouterConfig, base_version: Option<i64>) -> NewVersion<'a> {
    NewVersion {
        config,
        author: "ana",
        role: "admin",
        action: "publish",
        target: "config",
        message: "test",
        base_version,
        restored_from: None,
    }
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn publishes_number_versions_one_two_three_and_the_newest_is_active() {
    let store = Store::open_in_memory().await.unwrap();
    assert!(store.active_config().await.unwrap().is_none());
    for (i, percent) in [50.0, 60.0, 70.0].into_iter().enumerate() {
        let c = config(percent);
        let (v, _) = store
            .publish_config(publish(&c, Some(i as i64)))
            .await
            .unwrap();
        assert_eq!(v.version, i as i64 + 1);
        assert_eq!(v.parent, (i > 0).then_some(i as i64));
    }
    let active = store.active_config().await.unwrap().unwrap();
    assert_eq!((active.version, active.config), (3, config(70.0)));
    assert_eq!(
        store.config_version(1).await.unwrap().unwrap().config,
        config(50.0)
    );
    assert!(store.config_version(4).await.unwrap().is_none());
    let list = store.config_versions(10).await.unwrap();
    let got: Vec<_> = list.iter().map(|s| (s.version, s.active)).collect();
    assert_eq!(got, [(3, true), (2, false), (1, false)]);
    assert_eq!(store.config_versions(1).await.unwrap().len(), 1);

    // A rollback republishes an older config as a new version.
    let old = store.config_version(1).await.unwrap().unwrap();
    let (v, changes) = store
        .publish_config(NewVersion {
            action: "rollback",
            restored_from: Some(1),
            ..publish(&old.config, Some(3))
        })
        .await
        .unwrap();
    assert_eq!(
        (v.version, v.parent, v.restored_from),
        (4, Some(3), Some(1))
    );
    assert_eq!(changes.len(), 2);
}

#[tokio::test]
async fn a_publish_on_a_stale_base_version_is_a_conflict_and_writes_nothing() {
    let store = Store::open_in_memory().await.unwrap();
    let c = config(50.0);
    store.publish_config(publish(&c, None)).await.unwrap();
    store.publish_config(publish(&c, Some(1))).await.unwrap();
    let (versions, audits) = (
        count(&store, "config_versions").await,
        count(&store, "audit_log").await,
    );

    let err = store
        .publish_config(publish(&config(10.0), Some(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NewVersionError::Conflict { current: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("version 2 is current"), "{err}");
    assert_eq!(count(&store, "config_versions").await, versions);
    assert_eq!(count(&store, "audit_log").await, audits);
    assert_eq!(store.active_config().await.unwrap().unwrap().version, 2);

    // A base version on an empty store is stale too.
    let empty = Store::open_in_memory().await.unwrap();
    let err = empty
        .publish_config(publish(&c, Some(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, NewVersionError::Conflict { current: 0 }));
}

#[tokio::test]
async fn the_audit_entry_of_a_publish_carries_exactly_the_changed_paths() {
    let store = Store::open_in_memory().await.unwrap();
    let (_, first) = store
        .publish_config(publish(&config(50.0), None))
        .await
        .unwrap();
    // The first version is diffed against an empty configuration.
    let first_paths: Vec<_> = first.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        first_paths,
        [
            "endpoints.claude-us",
            "endpoints.gemini-eu",
            "features.recap",
            "features.summarize"
        ]
    );

    let (v, changes) = store
        .publish_config(NewVersion {
            action: "edit_feature",
            target: "summarize",
            message: "more traffic to a",
            ..publish(&config(70.0), Some(1))
        })
        .await
        .unwrap();
    let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "features.summarize.experiment.variants.a.percent",
            "features.summarize.experiment.variants.b.percent",
        ]
    );
    assert_eq!(changes[0].before, Some(json!(50.0)));
    assert_eq!(changes[0].after, Some(json!(70.0)));
    assert_eq!(changes[1].after, Some(json!(30.0)));

    let audit = store.audit(10, None).await.unwrap();
    assert_eq!(audit.len(), 2);
    let e = &audit[0];
    assert_eq!(
        (
            e.actor.as_str(),
            e.role.as_str(),
            e.action.as_str(),
            e.target.as_str(),
            e.version,
            e.message.as_str()
        ),
        (
            "ana",
            "admin",
            "edit_feature",
            "summarize",
            Some(v.version),
            "more traffic to a"
        )
    );
    assert_eq!(e.changes, changes);

    // Other actions, and paging.
    let id = store
        .append_audit(NewAudit {
            actor: "oncall",
            role: "operator",
            action: "breaker_override",
            target: "claude-us",
            message: "force open during incident",
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(id, 3);
    let page = store.audit(2, None).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 2]);
    let next = store.audit(2, Some(2)).await.unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn gateway_keys_are_found_by_plaintext_stored_only_as_hashes_and_revocable() {
    let store = Store::open_in_memory().await.unwrap();
    let (info, key) = store
        .create_gateway_key("search", "prod", Some(600))
        .await
        .unwrap();
    assert!(key.starts_with("cb-") && key.len() == 43, "{key}");
    assert!(
        key[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(
        (
            info.team.as_str(),
            info.name.as_str(),
            info.requests_per_minute,
            info.revoked
        ),
        ("search", "prod", Some(600), false)
    );
    assert_eq!(store.gateway_key(&key).await.unwrap(), Some(info.clone()));
    assert_eq!(store.gateway_key("cb-wrong").await.unwrap(), None);

    // Dump every column of every row: the key is nowhere, its hash is.
    let rows = sqlx::query("SELECT * FROM gateway_keys")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut dump = String::new();
    for row in &rows {
        use sqlx::{Column, Row, ValueRef};
        for col in row.columns() {
            let raw = row.try_get_raw(col.ordinal()).unwrap();
            if raw.is_null() {
                continue;
            }
            let text = row
                .try_get::<String, _>(col.ordinal())
                .or_else(|_| row.try_get::<i64, _>(col.ordinal()).map(|n| n.to_string()))
                .unwrap();
            dump.push_str(&text);
            dump.push('|');
        }
    }
    assert!(!dump.contains(&key) && !dump.contains(&key[3..]), "{dump}");
    assert!(dump.contains(&sha256_hex(&key)), "{dump}");

    let (other, _) = store.create_gateway_key("recap", "ci", None).await.unwrap();
    assert_ne!(other.id, info.id);
    assert_eq!(store.gateway_keys().await.unwrap().len(), 2);
    assert!(store.revoke_gateway_key(&info.id).await.unwrap());
    assert!(!store.revoke_gateway_key(&info.id).await.unwrap());
    assert!(!store.revoke_gateway_key("gk_nope").await.unwrap());
    assert_eq!(store.gateway_key(&key).await.unwrap(), None);
    let listed = store.gateway_keys().await.unwrap();
    assert!(listed.iter().any(|k| k.id == info.id && k.revoked));

    // The gateway's in-memory map: hash → key.
    let hashes = store.gateway_key_hashes().await.unwrap();
    assert_eq!(hashes.len(), 2);
    let (hash, revoked) = hashes.iter().find(|(_, k)| k.id == info.id).unwrap();
    assert_eq!(
        (hash.as_str(), revoked.revoked),
        (sha256_hex(&key).as_str(), true)
    );
    assert!(
        store
            .has_gateway_key_hash(&sha256_hex(&key).to_uppercase())
            .await
            .unwrap()
    );
    assert!(
        !store
            .has_gateway_key_hash(&sha256_hex("other"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn seeded_key_hashes_work_and_seeding_again_keeps_the_id() {
    let store = Store::open_in_memory().await.unwrap();
    let hash = sha256_hex("cb-seeded-dev-key");
    let a = store
        .insert_gateway_key_hash("team1", "dev", &hash.to_uppercase(), None)
        .await
        .unwrap();
    let b = store
        .insert_gateway_key_hash("team2", "dev2", &hash, Some(5))
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!((b.team.as_str(), b.requests_per_minute), ("team2", Some(5)));
    let found = store
        .gateway_key("cb-seeded-dev-key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, b);
    assert!(
        store
            .insert_gateway_key_hash("t", "n", "not-a-hash", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn admin_tokens_resolve_to_their_name_and_role() {
    let store = Store::open_in_memory().await.unwrap();
    let (id, token) = store
        .create_admin_token("pat", Role::Experimenter)
        .await
        .unwrap();
    assert!(token.starts_with("cba-") && token.len() == 44);
    assert_eq!(
        store.admin_token(&token).await.unwrap(),
        Some(("pat".to_owned(), Role::Experimenter))
    );
    assert_eq!(store.admin_token("cba-nope").await.unwrap(), None);
    let seeded = store
        .insert_admin_token_hash("boot", Role::Admin, &sha256_hex("cba-bootstrap"))
        .await
        .unwrap();
    let mut map: Vec<(String, String, Role)> = store
        .admin_token_hashes()
        .await
        .unwrap()
        .into_iter()
        .map(|(hash, t)| (hash, t.name, t.role))
        .collect();
    map.sort();
    let mut want = vec![
        (sha256_hex(&token), "pat".to_owned(), Role::Experimenter),
        (sha256_hex("cba-bootstrap"), "boot".to_owned(), Role::Admin),
    ];
    want.sort();
    assert_eq!(map, want);
    assert!(store.revoke_admin_token(&seeded).await.unwrap());
    assert_eq!(store.admin_token_hashes().await.unwrap().len(), 1);
    assert!(store.revoke_admin_token(&id).await.unwrap());
    assert_eq!(store.admin_token(&token).await.unwrap(), None);
    // Listed with their state, never with a hash or the token.
    let listed = store.admin_tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t.revoked));
    // Seeding a revoked token's hash again (a bootstrap token at the next start) does
    // not bring it back.
    store
        .insert_admin_token_hash("boot", Role::Admin, &sha256_hex("cba-bootstrap"))
        .await
        .unwrap();
    assert_eq!(store.admin_token("cba-bootstrap").await.unwrap(), None);
    assert!(
        store
            .admin_token_hash_revoked(&sha256_hex("cba-bootstrap"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn expired_tokens_and_keys_are_refused_and_listed_with_their_expiry() {
    let store = Store::open_in_memory().await.unwrap();
    let past = crate::unix_ms() - 1;
    let future = crate::unix_ms() + 3_600_000;
    let (old, old_token) = store
        .create_expiring_admin_token("old", Role::Admin, Some(past))
        .await
        .unwrap();
    let (new, new_token) = store
        .create_expiring_admin_token("new", Role::Viewer, Some(future))
        .await
        .unwrap();
    assert_eq!(store.admin_token(&old_token).await.unwrap(), None);
    assert_eq!(
        store.admin_token(&new_token).await.unwrap(),
        Some(("new".to_owned(), Role::Viewer))
    );
    // Both may be created in the same millisecond: compared as a set.
    let listed = store.admin_tokens().await.unwrap();
    let mut listed: Vec<_> = listed
        .iter()
        .map(|t| (t.id.as_str(), t.expires_at_ms))
        .collect();
    listed.sort();
    let mut expected = vec![
        (old.id.as_str(), Some(past)),
        (new.id.as_str(), Some(future)),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    let (key, secret) = store
        .create_expiring_gateway_key("search", "temp", None, Some(past))
        .await
        .unwrap();
    assert_eq!(key.expires_at_ms, Some(past));
    assert!(!key.in_force(crate::unix_ms()));
    assert_eq!(store.gateway_key(&secret).await.unwrap(), None);
}

const T0: i64 = 1_700_000_000_000 / 3_600_000 * 3_600_000;

fn record(i: usize, at_ms: i64) -> RequestRecord {
    let features = ["summarize", "recap", "search-answer"];
    // (endpoint, provider, provisioned)
    let endpoints = [
        (Some("claude-us-prov"), Some("bedrock"), true),
        (Some("claude-us"), Some("bedrock"), false),
        (Some("gemini-eu"), Some("vertex-gemini"), false),
        (Some("gpt-us"), Some("openai"), false),
        (None, None, false),
    ];
    let (endpoint, provider, provisioned) = endpoints[i * 7 % endpoints.len()];
    let outcome = match (endpoint, i % 13) {
        (None, _) => "unavailable",
        (_, 0) => "rate_limited",
        (_, 1) => "cancelled",
        _ => "ok",
    };
    let prompt = if endpoint.is_some() {
        (100 + i * 37 % 900) as u64
    } else {
        0
    };
    let completion = if endpoint.is_some() {
        (20 + i * 11 % 300) as u64
    } else {
        0
    };
    let cost = if provisioned || endpoint.is_none() {
        Decimal::ZERO
    } else {
        // 3 and 15 per million tokens: whole nano-units.
        Decimal::new((prompt * 3_000 + completion * 15_000) as i64, 9)
    };
    RequestRecord {
        request_id: format!("req-{i}"),
        at_ms,
        team: ["search", "growth"][i % 2].to_owned(),
        key_id: "gk_test".to_owned(),
        feature: features[i % 3].to_owned(),
        variant: ["a", "b", "default"][i / 3 % 3].to_owned(),
        config_version: 1,
        stream: i.is_multiple_of(2),
        endpoint: endpoint.map(str::to_owned),
        provider: provider.map(str::to_owned),
        region: endpoint.map(|_| "us-east-1".to_owned()),
        geography: endpoint.map(|_| "us".to_owned()),
        provisioned,
        spilled: i.is_multiple_of(17),
        fallback_depth: (i % 3) as u32,
        outcome: outcome.to_owned(),
        status: if outcome == "ok" { 200 } else { 429 },
        latency_ms: 100.0 + (i % 50) as f64,
        ttft_ms: i.is_multiple_of(2).then_some(40.0),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: prompt / 4,
        cost,
        attempts: vec![AttemptRecord {
            endpoint: endpoint.unwrap_or("claude-us").to_owned(),
            outcome: outcome.to_owned(),
            latency_ms: 99.5,
            ttft_ms: None,
            upstream_status: Some(200),
            retry: false,
            spilled: false,
            message: None,
            ..AttemptRecord::default()
        }],
        prompt_text: None,
        completion_text: None,
        ..RequestRecord::default()
    }
}

/// Sends records through the handle without ever filling its queue (the hot path
/// drops instead of waiting; a test that must lose nothing paces itself).
async fn feed(
    handle: &LedgerHandle,
    capacity: usize,
    records: impl IntoIterator<Item = RequestRecord>,
) {
    for r in records {
        while handle.stats().queued as usize >= capacity {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle.record(r);
    }
}

#[tokio::test]
async fn twenty_thousand_records_through_the_writer_are_all_written_and_rolled_up() {
    let db = TempDb::new("ledger20k");
    let store = Store::open(&db.0).await.unwrap();
    let capacity = 2_048;
    let (handle, task) = store.ledger_writer(capacity);
    let n = 20_000;
    feed(
        &handle,
        capacity,
        (0..n).map(|i| record(i, T0 + i as i64 * 500)),
    )
    .await;
    let stats_handle = handle.clone();
    handle.shutdown().await;
    task.await.unwrap();

    let stats = stats_handle.stats();
    assert_eq!(store.ledger_count().await.unwrap(), n as i64);
    assert_eq!(
        (stats.received, stats.written, stats.dropped, stats.queued),
        (n as u64, n as u64, 0, 0),
        "{stats:?}"
    );
    assert!(stats.batches >= (n / ledger::MAX_BATCH) as u64, "{stats:?}");
    for table in ["usage_minute", "usage_hour"] {
        let rolled: i64 = sqlx::query_scalar(&format!(
            "SELECT CAST(SUM(requests) AS BIGINT) FROM {table}"
        ))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(rolled, n as i64, "{table}");
    }
    let errors: i64 = sqlx::query_scalar("SELECT CAST(SUM(errors) AS BIGINT) FROM usage_minute")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let expected_errors = (0..n)
        .map(|i| record(i, 0))
        .filter(|r| ledger::is_error(&r.outcome))
        .count();
    assert_eq!(errors, expected_errors as i64);

    // A record after shutdown is refused and counted, not lost silently.
    stats_handle.record(record(n + 1, T0));
    assert_eq!(stats_handle.stats().dropped, 1);
    store.close().await;
}

#[tokio::test]
async fn a_burst_into_a_tiny_queue_counts_drops_instead_of_blocking() {
    let store = Store::open_in_memory().await.unwrap();
    let (handle, task) = store.ledger_writer(4);
    // On this single-threaded runtime the writer cannot run during the loop: if
    // `record` waited for room, this would never finish.
    let started = Instant::now();
    for i in 0..1_000 {
        handle.record(record(i, T0));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = handle.stats();
    assert_eq!(
        (stats.received, stats.queued, stats.dropped),
        (1_000, 4, 996)
    );
    let stats_handle = handle.clone();
    handle.shutdown().await;
    task.await.unwrap();
    let stats = stats_handle.stats();
    assert_eq!((stats.written, stats.dropped, stats.queued), (4, 996, 0));
    assert_eq!(store.ledger_count().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_under_steady_traffic_and_accounts_for_every_record() {
    let store = Store::open_in_memory().await.unwrap();
    let (handle, task) = store.ledger_writer(1_024);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (handle, stop) = (handle.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                handle.record(record(i, T0 + i as i64));
                i += 1;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats_handle = handle.clone();
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .expect("the writer stops while traffic goes on");
    task.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.await.unwrap();
    let stats = stats_handle.stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(stats.received, stats.written + stats.dropped, "{stats:?}");
    assert!(stats.written > 0, "{stats:?}");
    assert_eq!(store.ledger_count().await.unwrap(), stats.written as i64);
}

#[tokio::test]
async fn an_id_already_in_the_ledger_is_ignored_and_not_rolled_up_while_its_batch_lands() {
    let store = Store::open_in_memory().await.unwrap();
    let (first, task) = store.ledger_writer(64);
    first.record(record(1, T0));
    first.shutdown().await;
    task.await.unwrap();

    // A later batch: the same id again among new ones.
    let (second, task) = store.ledger_writer(64);
    for r in [record(2, T0), record(1, T0), record(3, T0)] {
        second.record(r);
    }
    let stats = second.clone();
    second.shutdown().await;
    task.await.unwrap();

    assert_eq!(store.ledger_count().await.unwrap(), 3);
    assert_eq!(stats.stats().written, 3, "{:?}", stats.stats());
    let rolled: i64 = sqlx::query_scalar("SELECT CAST(SUM(requests) AS BIGINT) FROM usage_minute")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rolled, 3, "the repeated id is not rolled up twice");
}

#[tokio::test]
async fn duplicates_are_ignored_and_rows_round_trip_with_text_breakers_and_feedback() {
    let store = Store::open_in_memory().await.unwrap();
    let (handle, task) = store.ledger_writer(64);
    let mut with_text = record(1, T0 + 1_234);
    with_text.prompt_text = Some("what is the capital of France?".into());
    with_text.completion_text = Some("Paris".into());
    with_text.cost = d("0.000123456");
    handle.record(with_text.clone());
    handle.record(record(1, T0)); // the same request id again
    handle.record(record(2, T0));
    let event = BreakerEvent {
        endpoint: "claude-us".into(),
        at_ms: T0 + 5,
        transition: Transition {
            from: StateName::Closed,
            to: StateName::Open,
            at_ms: 77,
            stage: None,
            reason: Reason {
                signal: Signal::TtftP90,
                value: 2_500.0,
                threshold: 1_000.0,
                message: "TTFT p90 2500 ms > 1000 ms".into(),
            },
        },
    };
    handle.breaker_event(event.clone());
    let stats_handle = handle.clone();
    handle.shutdown().await;
    task.await.unwrap();

    assert_eq!(store.ledger_count().await.unwrap(), 2);
    assert_eq!(stats_handle.stats().written, 3);
    let rolled: i64 = sqlx::query_scalar("SELECT CAST(SUM(requests) AS BIGINT) FROM usage_minute")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rolled, 2, "a duplicate is not rolled up twice");
    assert_eq!(
        store.ledger_record("req-1").await.unwrap(),
        Some(with_text.clone())
    );
    let plain = store.ledger_record("req-2").await.unwrap().unwrap();
    assert_eq!((plain.prompt_text, plain.completion_text), (None, None));

    assert_eq!(
        store.breaker_events(T0, 10).await.unwrap(),
        vec![event.clone()]
    );
    assert!(store.breaker_events(T0 + 6, 10).await.unwrap().is_empty());
    let mut later = event.clone();
    later.at_ms += 10;
    store.record_breaker_event(&later).await.unwrap();
    assert_eq!(
        store.breaker_events(0, 10).await.unwrap(),
        vec![later, event]
    );

    assert_eq!(
        store.request_endpoint("req-1").await.unwrap(),
        with_text.endpoint
    );
    assert_eq!(store.request_endpoint("nope").await.unwrap(), None);
    store.record_feedback("req-1", false, T0 + 9).await.unwrap();
    store.record_feedback("req-1", true, T0 + 10).await.unwrap();
    assert_eq!(store.feedback("req-1").await.unwrap(), Some(true));
    assert_eq!(count(&store, "feedback").await, 1);
}

#[test]
fn decimals_convert_to_nanos_and_back_exactly() {
    assert_eq!(to_nanos(d("0.000123456")), 123_456);
    assert_eq!(to_nanos(d("12.5")), 12_500_000_000);
    assert_eq!(to_nanos(d("0.0000000015")), 2, "half to even");
    assert_eq!(to_nanos(d("-1")), -1_000_000_000);
    assert_eq!(to_nanos(Decimal::MAX), i64::MAX);
    assert_eq!(from_nanos(123_456), d("0.000123456"));
    assert_eq!(from_nanos(12_500_000_000).to_string(), "12.5");
    assert_eq!(from_nanos(0), Decimal::ZERO);
}

#[test]
fn series_buckets_keep_at_most_120_points() {
    for span in [
        1,
        60_000,
        3_600_000,
        86_400_000,
        7 * 86_400_000,
        400 * 86_400_000i64,
    ] {
        let b = spend::bucket_ms(T0 + 17, T0 + 17 + span);
        assert!(spend::ceil_div(span, b) < spend::MAX_POINTS, "{span} {b}");
    }
    assert_eq!(spend::bucket_ms(T0, T0 + 3_600_000), 60_000);
    assert_eq!(spend::bucket_ms(T0, T0 + 86_400_000), 3_600_000);
}

#[tokio::test]
async fn spend_matches_the_ledger_exactly_and_splits_provisioned_hours_exactly() {
    let store = Store::open_in_memory().await.unwrap();
    let capacity = 1_024;
    let (handle, task) = store.ledger_writer(capacity);
    let n = 6_000;
    let hours = 3;
    let from = T0;
    let to = T0 + hours * 3_600_000;
    let span = to - from;
    // In range, and some before and after it.
    let records: Vec<_> = (0..n)
        .map(|i| record(i, from + (i as i64 * 7_919) % span))
        .chain((n..n + 50).map(|i| record(i, from - 1 - i as i64)))
        .chain((n + 50..n + 100).map(|i| record(i, to + i as i64)))
        .collect();
    feed(&handle, capacity, records.clone()).await;
    handle.shutdown().await;
    task.await.unwrap();
    let in_range: Vec<_> = records[..n].to_vec();

    let prices = vec![
        ("claude-us-prov".to_owned(), d("12.34")),
        ("idle-prov".to_owned(), d("7.777777777")),
    ];
    let expected_hours_cost = (d("12.34") + d("7.777777777")) * Decimal::from(hours);

    for group in SpendGroup::ALL {
        let report = store.spend(from, to, group, &prices).await.unwrap();
        assert_eq!(report.group_by, group);
        let key_of = |r: &RequestRecord| -> String {
            match group {
                SpendGroup::Feature => r.feature.clone(),
                SpendGroup::Team => r.team.clone(),
                SpendGroup::Endpoint => r.endpoint.clone().unwrap_or(spend::NO_ENDPOINT.into()),
                SpendGroup::Cloud => r.provider.clone().unwrap_or(spend::NO_ENDPOINT.into()),
                SpendGroup::Variant => r.variant.clone(),
            }
        };
        // Every group's on-demand cost and counts equal the sums over its records.
        let mut expected: BTreeMap<String, (u64, Decimal, u64)> = BTreeMap::new();
        for r in &in_range {
            let e = expected.entry(key_of(r)).or_default();
            e.0 += 1;
            e.1 += r.cost;
            e.2 += r.prompt_tokens;
        }
        let got: BTreeMap<String, (u64, Decimal, u64)> = report
            .rows
            .iter()
            .map(|r| (r.key.clone(), (r.requests, r.on_demand, r.prompt_tokens)))
            .collect();
        assert_eq!(got, expected, "{group:?}");

        // Provisioned hours: all of them accounted for, to the nano-unit.
        let provisioned: Decimal = report.rows.iter().map(|r| r.provisioned).sum();
        assert_eq!(
            provisioned + report.unattributed_provisioned,
            expected_hours_cost,
            "{group:?}"
        );
        assert_eq!(
            report.unattributed_provisioned,
            d("7.777777777") * Decimal::from(hours)
        );
        let on_demand: Decimal = report.rows.iter().map(|r| r.on_demand).sum();
        assert_eq!(report.total, on_demand + expected_hours_cost);
        for r in &report.rows {
            assert_eq!(r.total, r.on_demand + r.provisioned);
            assert_eq!(
                r.provisioned_tokens + r.on_demand_tokens,
                r.prompt_tokens + r.completion_tokens
            );
        }

        // The series: the same money and requests, in at most 120 buckets.
        let buckets: BTreeSet<i64> = report.series.iter().map(|p| p.at_ms).collect();
        assert!(buckets.len() <= 120 && !buckets.is_empty());
        assert_eq!(report.bucket_ms, 300_000, "3 hours: 5-minute buckets");
        assert_eq!(
            report.series.iter().map(|p| p.on_demand).sum::<Decimal>(),
            on_demand
        );
        assert_eq!(
            report.series.iter().map(|p| p.requests).sum::<u64>(),
            n as u64
        );
    }

    // By feature: spend equals the ledger's per-request costs, exactly.
    let report = store
        .spend(from, to, SpendGroup::Feature, &prices)
        .await
        .unwrap();
    for row in &report.rows {
        let ledger = store.ledger_cost(&row.key, from, to).await.unwrap();
        assert_eq!(row.on_demand, ledger, "{}", row.key);
        assert!(ledger > Decimal::ZERO);
        // Provisioned shares follow the tokens on the provisioned endpoint.
        assert!(row.provisioned > Decimal::ZERO && row.provisioned_tokens > 0);
    }

    // Longer ranges read whole hours from the hourly rollups and minutes at the
    // edges: the same sums, whether the edges cut through the traffic or not.
    let ranges = [
        (
            from - 5 * 3_600_000 + 7 * 60_000,
            to + 6 * 3_600_000 - 13 * 60_000,
        ),
        (from + 37 * 60_000, to + 11 * 3_600_000),
        (from - 20 * 3_600_000, from + 2 * 3_600_000 + 60_000),
    ];
    for (a, b) in ranges {
        let report = store.spend(a, b, SpendGroup::Variant, &[]).await.unwrap();
        assert!(report.bucket_ms >= 3_600_000, "{}", report.bucket_ms);
        let mut expected: BTreeMap<String, (u64, Decimal, u64)> = BTreeMap::new();
        for r in records.iter().filter(|r| {
            let minute = r.at_ms.div_euclid(60_000) * 60_000;
            minute >= a && minute < b
        }) {
            let e = expected.entry(r.variant.clone()).or_default();
            e.0 += 1;
            e.1 += r.cost;
            e.2 += r.completion_tokens;
        }
        let got: BTreeMap<String, (u64, Decimal, u64)> = report
            .rows
            .iter()
            .map(|r| {
                (
                    r.key.clone(),
                    (r.requests, r.on_demand, r.completion_tokens),
                )
            })
            .collect();
        assert_eq!(got, expected, "[{a}, {b})");
        let series: u64 = report.series.iter().map(|p| p.requests).sum();
        assert_eq!(series, expected.values().map(|e| e.0).sum::<u64>());
        assert!(
            report
                .series
                .iter()
                .all(|p| p.at_ms % report.bucket_ms == 0)
        );
    }

    // Ranges of a day and a year keep the series small; an empty range costs only
    // its provisioned hours, all unattributed.
    for span in [86_400_000, 365 * 86_400_000] {
        let r = store
            .spend(from - span / 2, from + span / 2, SpendGroup::Team, &prices)
            .await
            .unwrap();
        let buckets: BTreeSet<i64> = r.series.iter().map(|p| p.at_ms).collect();
        assert!(buckets.len() <= 120, "{}", buckets.len());
    }
    let empty = store
        .spend(
            to + 10 * 3_600_000,
            to + 11 * 3_600_000,
            SpendGroup::Feature,
            &prices,
        )
        .await
        .unwrap();
    assert!(empty.rows.is_empty() && empty.series.is_empty());
    assert_eq!(empty.unattributed_provisioned, d("20.117777777"));
    assert_eq!(empty.total, d("20.117777777"));
}

#[tokio::test]
async fn a_file_database_reopens_with_its_data_and_migrations_run_once() {
    let db = TempDb::new("reopen");
    {
        let store = Store::open(&db.0).await.unwrap();
        store
            .publish_config(publish(&config(50.0), None))
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        store.close().await;
    }
    for _ in 0..2 {
        let store = Store::open(&db.0).await.unwrap();
        assert_eq!(store.active_config().await.unwrap().unwrap().version, 1);
        let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let migrations_dir = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../migrations");
        let files = std::fs::read_dir(migrations_dir)
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "sql")
            })
            .count();
        assert_eq!(migrations, files as i64, "each migration ran once");
        store.close().await;
    }
}

/// A measurement, not a test: 1,000,000 requests through the writer into a file,
/// then `spend()` over the whole range.
/// `cargo test -p server --release --lib store -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by hand"]
async fn measure_a_million_ledger_rows() {
    let db = TempDb::new("million");
    let store = Store::open(&db.0).await.unwrap();
    let capacity = 8_192;
    let (handle, task) = store.ledger_writer(capacity);
    let n: usize = std::env::var("CROSSBAR_MEASURE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // 1M requests over 24 hours (~700 requests a minute).
    let span = 86_400_000i64;
    let started = Instant::now();
    feed(
        &handle,
        capacity,
        (0..n).map(|i| record(i, T0 + (i as i64 * span) / n as i64)),
    )
    .await;
    let stats_handle = handle.clone();
    handle.shutdown().await;
    task.await.unwrap();
    let write = started.elapsed();
    let stats = stats_handle.stats();
    assert_eq!((stats.written, stats.dropped), (n as u64, 0));
    let rollup_rows = count(&store, "usage_minute").await;
    println!(
        "wrote {n} ledger rows in {write:.2?} ({:.0} rows/s, {} batches), {rollup_rows} rollup rows",
        n as f64 / write.as_secs_f64(),
        stats.batches
    );
    let prices = vec![("claude-us-prov".to_owned(), d("40"))];
    for group in SpendGroup::ALL {
        let started = Instant::now();
        let report = store.spend(T0, T0 + span, group, &prices).await.unwrap();
        println!(
            "spend() by {:?} over 24 h: {:.2?} ({} rows, {} series points)",
            group,
            started.elapsed(),
            report.rows.len(),
            report.series.len()
        );
        assert_eq!(
            report.rows.iter().map(|r| r.requests).sum::<u64>(),
            n as u64
        );
    }
    // Shorter ranges read minutes only; unaligned long ones read minutes at the edges.
    for (label, a, b) in [
        ("6 h (minute rollups)", T0 + 3_600_000, T0 + 7 * 3_600_000),
        ("10 h (hourly rollups)", T0, T0 + 10 * 3_600_000),
        (
            "23 h 14 min, unaligned (hours + edge minutes)",
            T0 + 17 * 60_000,
            T0 + span - 29 * 60_000,
        ),
    ] {
        let started = Instant::now();
        let report = store
            .spend(a, b, SpendGroup::Feature, &prices)
            .await
            .unwrap();
        println!(
            "spend() by Feature over {label}: {:.2?} ({} series points)",
            started.elapsed(),
            report.series.len()
        );
    }
    let started = Instant::now();
    let cost = store.ledger_cost("summarize", T0, T0 + span).await.unwrap();
    println!(
        "ledger_cost(summarize) over the ledger itself: {:.2?} ({cost})",
        started.elapsed()
    );
    store.close().await;
}

/// Each table keeps its own number of days: the per-request ledger, the minute and
/// hour rollups, breaker events and feedback; `0` keeps everything. (There was no
/// retention at all: the disk filled.)
#[tokio::test]
async fn retention_deletes_each_table_past_its_days_and_keeps_the_rest() {
    use router_core::config::Retention;
    const DAY: i64 = 86_400_000;
    let now = 1_800_000_000_000i64;
    let store = Store::open_in_memory().await.unwrap();
    let (handle, task) = store.ledger_writer(1024);
    // Ledger rows 900, 40 and 1 day(s) old, with the ids the gateway gives.
    let ages = [900, 40, 40, 40, 1, 1];
    for (i, days) in ages.iter().enumerate() {
        let at = now - days * DAY;
        let mut r = record(i, at);
        r.request_id = format!("req_{at:012x}{i:020x}");
        handle.record(r);
    }
    let event = |days: i64| BreakerEvent {
        endpoint: "claude-us".into(),
        at_ms: now - days * DAY,
        transition: Transition {
            from: StateName::Closed,
            to: StateName::Open,
            at_ms: 1,
            stage: None,
            reason: Reason {
                signal: Signal::ErrorRate,
                value: 0.9,
                threshold: 0.5,
                message: "errors".into(),
            },
        },
    };
    handle.breaker_event(event(100));
    handle.breaker_event(event(2));
    handle.shutdown().await;
    task.await.unwrap();
    store
        .record_feedback("old", true, now - 100 * DAY)
        .await
        .unwrap();
    store.record_feedback("new", true, now - DAY).await.unwrap();
    let before = (
        count(&store, "usage_minute").await,
        count(&store, "usage_hour").await,
    );

    let keep_all = Retention {
        ledger_days: 0,
        minute_rollup_days: 0,
        hour_rollup_days: 0,
        event_days: 0,
    };
    assert_eq!(
        store.apply_retention(&keep_all, now).await.unwrap(),
        Deleted::default()
    );

    let deleted = store
        .apply_retention(&Retention::default(), now)
        .await
        .unwrap();
    // Ledger 30 days, minute rollups 35, hour rollups 800, events 90.
    assert_eq!(deleted.ledger, 4, "{deleted:?}");
    assert_eq!(store.ledger_count().await.unwrap(), 2);
    assert!(
        deleted.minute_rollups > 0 && deleted.hour_rollups > 0,
        "{deleted:?}"
    );
    let after = (
        count(&store, "usage_minute").await,
        count(&store, "usage_hour").await,
    );
    assert_eq!(after.0 + deleted.minute_rollups as i64, before.0);
    assert_eq!(after.1 + deleted.hour_rollups as i64, before.1);
    let oldest_hour: i64 = sqlx::query_scalar("SELECT MIN(hour_ms) FROM usage_hour")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        oldest_hour >= now - 800 * DAY && oldest_hour < now - 30 * DAY,
        "the 40-day-old hours stay"
    );
    assert_eq!((deleted.breaker_events, deleted.feedback), (1, 1));
    assert_eq!(store.feedback("new").await.unwrap(), Some(true));
    // Nothing more the second time.
    assert_eq!(
        store
            .apply_retention(&Retention::default(), now)
            .await
            .unwrap(),
        Deleted::default()
    );
}

/// The database file holds key hashes, the audit log and maybe prompts: it is
/// created readable by its owner only, and so are its WAL files; an existing one
/// readable by others is narrowed.
#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new("perms");
    let store = Store::open(&db.0).await.unwrap();
    store
        .publish_config(publish(&config(50.0), None))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db.0), 0o600);
    let wal = PathBuf::from(format!("{}-wal", db.0.display()));
    assert_eq!(mode(&wal), 0o600);
    store.close().await;

    std::fs::set_permissions(&db.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&db.0).await.unwrap();
    assert_eq!(mode(&db.0), 0o600, "narrowed when opened");
    store.close().await;
}
