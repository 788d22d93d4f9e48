//! The usage ledger: one row per client request, plus per-minute and per-hour
//! rollups, written by a batching task off the hot path; breaker events and feedback.
//!
//! The gateway hands each [`RequestRecord`] to a [`LedgerHandle`], which never blocks
//! and never awaits: it `try_send`s onto a bounded channel and, when the channel is
//! full, counts the record as dropped (and warns at most once a second) rather than
//! slowing requests down. The writer task takes the first record, lets the batch
//! gather for 50 ms (never waking per record), takes up to [`MAX_BATCH`], and writes the ledger rows, the rollups
//! of the rows actually inserted (a repeated request id is ignored) and any breaker
//! events in one transaction, with multi-row statements of a few fixed sizes so that
//! their prepared forms are reused. A failed batch is retried a few times before its
//! records count as dropped. [`LedgerHandle::shutdown`] (or dropping every handle)
//! makes the writer flush everything queued and finish: a graceful shutdown loses
//! nothing.
//!
//! [`LedgerStats`] counts request records only: `received` = `written` + `dropped`
//! + `queued` at every quiet moment, where `written` includes ignored duplicates.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use foldhash::{HashMap, HashSet};
use router_core::admin::BreakerEvent;
use router_core::admin::LedgerStats;
use router_core::admin::Transition;
use router_core::telemetry::record::RequestRecord;
use sqlx::{Sqlite, Transaction};
use tokio::sync::{mpsc, watch};

use super::{Store, from_nanos, to_nanos};

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// How long a batch gathers after its first record before it is written.
pub const GATHER: Duration = Duration::from_millis(50);
/// Rows per multi-row statement, at most; smaller statements are powers of two, so a
/// batch uses at most 7 distinct statements per table, each prepared once.
const MAX_ROWS_PER_STATEMENT: usize = 64;
/// Tries of a failed batch before its records count as dropped, and the pause before
/// each retry.
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// The rollup tables: name, time column, period.
const ROLLUPS: [(&str, &str, i64); 2] = [
    ("usage_minute", "minute_ms", 60_000),
    ("usage_hour", "hour_ms", 3_600_000),
];

enum Msg {
    Request(Box<RequestRecord>),
    Breaker(BreakerEvent),
}

#[derive(Debug, Default)]
struct WriterCounters {
    received: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
    batches: AtomicU64,
    last_warn_ms: AtomicI64,
}

#[derive(Debug)]
struct Shared {
    counters: WriterCounters,
    close: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// The hot path's side of the ledger writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Request(r) => write!(f, "Request({})", r.request_id),
            Msg::Breaker(e) => write!(f, "Breaker({})", e.endpoint),
        }
    }
}

impl LedgerHandle {
    /// Queues a request record; never blocks or awaits. When the queue is full the
    /// record is counted as dropped.
    pub fn record(&self, record: RequestRecord) {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        // Count it queued before sending so the writer never decrements first.
        c.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = self.tx.try_send(Msg::Request(Box::new(record))) {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            let dropped = c.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match err {
                mpsc::error::TrySendError::Full(_) => "the ledger queue is full",
                mpsc::error::TrySendError::Closed(_) => "the ledger writer has stopped",
            };
            self.warn_throttled(why, dropped);
        }
    }

    /// Queues a breaker event; never blocks. Events are rare and matter, so when the
    /// queue is full one is handed to a task that waits for room instead of dropped.
    pub fn breaker_event(&self, event: BreakerEvent) {
        match self.tx.try_send(Msg::Breaker(event)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        let tx = self.tx.clone();
                        rt.spawn(async move {
                            if tx.send(msg).await.is_err() {
                                tracing::warn!("breaker event lost: the ledger writer has stopped");
                            }
                        });
                    }
                    Err(_) => tracing::warn!(?msg, "breaker event lost: the ledger queue is full"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                tracing::warn!(?msg, "breaker event lost: the ledger writer has stopped");
            }
        }
    }

    fn warn_throttled(&self, why: &str, dropped: u64) {
        let c = &self.shared.counters;
        let now = super::unix_ms();
        let last = c.last_warn_ms.load(Ordering::Relaxed);
        if now - last >= 1_000
            && c.last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = dropped, "usage record dropped: {why}");
        }
    }

    /// The writer's counters now.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.shared.counters;
        LedgerStats {
            received: c.received.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting records (on every clone of this handle), lets the writer write
    /// everything already queued, and completes when it has finished.
    pub fn shutdown(self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.close.send_replace(true);
        let mut done = self.shared.done.clone();
        drop(self);
        async move {
            // An error means the writer is gone (it panicked or was aborted).
            let _ = done.wait_for(|d| *d).await;
        }
    }
}

impl Store {
    /// Starts the batching ledger writer with a queue of `capacity` records; must be
    /// called inside a tokio runtime. See the module documentation.
    pub fn ledger_writer(&self, capacity: usize) -> (LedgerHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (close_tx, close_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            counters: WriterCounters::default(),
            close: close_tx,
            done: done_rx,
        });
        let writer = Writer {
            store: self.clone(),
            shared: shared.clone(),
            sql: Statements::new(),
        };
        let task = tokio::spawn(async move {
            writer.run(rx, close_rx).await;
            done_tx.send_replace(true);
        });
        (LedgerHandle { tx, shared }, task)
    }

    /// Stores a breaker event directly (the writer is the usual way).
    pub async fn record_breaker_event(&self, event: &BreakerEvent) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        insert_breaker_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Breaker events at or after `since_ms`, newest first.
    pub async fn breaker_events(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<BreakerEvent>> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT endpoint, at_ms, transition_json FROM breaker_events \
             WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(endpoint, at_ms, json)| {
                Ok(BreakerEvent {
                    endpoint,
                    at_ms,
                    transition: serde_json::from_str::<Transition>(&json)?,
                })
            })
            .collect()
    }

    /// The endpoint that served (or last failed) a request, if the request is in the
    /// ledger and reached one. A request is in the ledger at most [`GATHER`] plus a
    /// write after it finished.
    pub async fn request_endpoint(&self, request_id: &str) -> anyhow::Result<Option<String>> {
        let endpoint: Option<Option<String>> =
            sqlx::query_scalar("SELECT endpoint FROM usage_ledger WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(endpoint.flatten())
    }

    /// Records a thumbs up or down on a request; a later vote replaces an earlier one.
    pub async fn record_feedback(
        &self,
        request_id: &str,
        positive: bool,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO feedback (request_id, at_ms, positive) VALUES ($1, $2, $3) \
             ON CONFLICT (request_id) DO UPDATE SET at_ms = excluded.at_ms, positive = excluded.positive",
        )
        .bind(request_id)
        .bind(at_ms)
        .bind(i64::from(positive))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The vote on a request, if any.
    pub async fn feedback(&self, request_id: &str) -> anyhow::Result<Option<bool>> {
        let positive: Option<i64> =
            sqlx::query_scalar("SELECT positive FROM feedback WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(positive.map(|p| p != 0))
    }

    /// Rows in the ledger.
    pub async fn ledger_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM usage_ledger")
            .fetch_one(&self.pool)
            .await?)
    }

    /// One request's ledger row, as recorded.
    pub async fn ledger_record(&self, request_id: &str) -> anyhow::Result<Option<RequestRecord>> {
        let row: Option<LedgerRow> = sqlx::query_as(
            "SELECT request_id, at_ms, team, key_id, feature, variant, config_version, stream, \
             endpoint, provider, region, geography, provisioned, spilled, fallback_depth, outcome, \
             status, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, \
             cost_nanos, attempts_json, prompt_text, completion_text, usage_estimated, \
             continuations, skipped_chunks, shadow_id, rollout_id, rollout_arm, drill_id, dialect \
             FROM usage_ledger WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(LedgerRow::into_record).transpose()
    }
}

#[derive(sqlx::FromRow)]
struct LedgerRow {
    request_id: String,
    at_ms: i64,
    team: String,
    key_id: String,
    feature: String,
    variant: String,
    config_version: i64,
    stream: i64,
    endpoint: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    geography: Option<String>,
    provisioned: i64,
    spilled: i64,
    fallback_depth: i64,
    outcome: String,
    status: i64,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_nanos: i64,
    attempts_json: String,
    prompt_text: Option<String>,
    completion_text: Option<String>,
    usage_estimated: i64,
    continuations: i64,
    skipped_chunks: i64,
    shadow_id: Option<String>,
    rollout_id: Option<String>,
    rollout_arm: Option<String>,
    drill_id: Option<String>,
    dialect: String,
}

impl LedgerRow {
    fn into_record(self) -> anyhow::Result<RequestRecord> {
        Ok(RequestRecord {
            request_id: self.request_id,
            at_ms: self.at_ms,
            team: self.team,
            key_id: self.key_id,
            feature: self.feature,
            variant: self.variant,
            config_version: self.config_version,
            stream: self.stream != 0,
            endpoint: self.endpoint,
            provider: self.provider,
            region: self.region,
            geography: self.geography,
            provisioned: self.provisioned != 0,
            spilled: self.spilled != 0,
            fallback_depth: u32::try_from(self.fallback_depth).unwrap_or(u32::MAX),
            outcome: self.outcome,
            status: u16::try_from(self.status).unwrap_or(0),
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            prompt_tokens: u64::try_from(self.prompt_tokens).unwrap_or(0),
            completion_tokens: u64::try_from(self.completion_tokens).unwrap_or(0),
            cached_tokens: u64::try_from(self.cached_tokens).unwrap_or(0),
            cost: from_nanos(self.cost_nanos),
            attempts: serde_json::from_str(&self.attempts_json)?,
            prompt_text: self.prompt_text,
            completion_text: self.completion_text,
            usage_estimated: self.usage_estimated != 0,
            continuations: u32::try_from(self.continuations).unwrap_or(0),
            skipped_chunks: u32::try_from(self.skipped_chunks).unwrap_or(0),
            shadow: self.shadow_id,
            rollout: self.rollout_id,
            rollout_arm: self.rollout_arm,
            drill: self.drill_id,
            dialect: router_core::api::Dialect::parse(&self.dialect).unwrap_or_default(),
        })
    }
}

async fn insert_breaker_event(
    tx: &mut Transaction<'_, Sqlite>,
    e: &BreakerEvent,
) -> anyhow::Result<()> {
    let signal = serde_json::to_value(e.transition.reason.signal)?;
    sqlx::query(
        "INSERT INTO breaker_events \
         (id, endpoint, at_ms, from_state, to_state, signal, transition_json) \
         SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $5, $6 FROM breaker_events",
    )
    .bind(&e.endpoint)
    .bind(e.at_ms)
    .bind(e.transition.from.as_str())
    .bind(e.transition.to.as_str())
    .bind(signal.as_str().unwrap_or_default())
    .bind(serde_json::to_string(&e.transition)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const LEDGER_COLUMNS: [&str; 35] = [
    "request_id",
    "at_ms",
    "team",
    "key_id",
    "feature",
    "variant",
    "config_version",
    "stream",
    "endpoint",
    "provider",
    "region",
    "geography",
    "provisioned",
    "spilled",
    "fallback_depth",
    "outcome",
    "status",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "attempts",
    "attempts_json",
    "prompt_text",
    "completion_text",
    "usage_estimated",
    "continuations",
    "skipped_chunks",
    "shadow_id",
    "rollout_id",
    "rollout_arm",
    "drill_id",
    "dialect",
];

/// The rollups' key after the time column.
const ROLLUP_KEY: [&str; 6] = [
    "feature",
    "team",
    "endpoint",
    "provider",
    "variant",
    "provisioned",
];

const ROLLUP_SUMS: [&str; 10] = [
    "requests",
    "errors",
    "spilled",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
];

/// `VALUES (?, ..., ?), ...` for `rows` rows of `cols` columns.
///
/// Anonymous `?` placeholders, not `$N`: SQLite looks up a numbered or named
/// parameter's name by a linear scan, which made binding a 64-row statement (1,728
/// parameters) quadratic: 56% of the writer's time. A PostgreSQL port generates `$N`
/// here (this is the only place the multi-row statements get their placeholders).
fn values(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    format!("VALUES {}", vec![row; rows].join(", "))
}

/// The multi-row statements, by log2 of their row count (rollups: per table of
/// [`ROLLUPS`], then by log2 of the row count).
struct Statements {
    ledger: Vec<String>,
    rollup: Vec<Vec<String>>,
}

impl Statements {
    fn new() -> Self {
        let sizes = (0..=MAX_ROWS_PER_STATEMENT.ilog2()).map(|p| 1usize << p);
        let ledger = sizes
            .clone()
            .map(|n| {
                format!(
                    "INSERT INTO usage_ledger ({}) {} ON CONFLICT (request_id) DO NOTHING",
                    LEDGER_COLUMNS.join(", "),
                    values(n, LEDGER_COLUMNS.len())
                )
            })
            .collect();
        let rollup = ROLLUPS
            .iter()
            .map(|(table, time, _)| {
                let key = format!("{time}, {}", ROLLUP_KEY.join(", "));
                let updates = ROLLUP_SUMS
                    .iter()
                    .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                sizes
                    .clone()
                    .map(|n| {
                        format!(
                            "INSERT INTO {table} ({key}, {}) {} ON CONFLICT ({key}) DO UPDATE SET {updates}",
                            ROLLUP_SUMS.join(", "),
                            values(n, 1 + ROLLUP_KEY.len() + ROLLUP_SUMS.len()),
                        )
                    })
                    .collect()
            })
            .collect();
        Statements { ledger, rollup }
    }

    /// The statement for a chunk of `n` rows (`n` a power of two).
    fn ledger(&self, n: usize) -> &str {
        &self.ledger[n.ilog2() as usize]
    }

    fn rollup(&self, table: usize, n: usize) -> &str {
        &self.rollup[table][n.ilog2() as usize]
    }
}

/// Splits `items` into chunks of [`MAX_ROWS_PER_STATEMENT`] and then decreasing
/// powers of two.
fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = MAX_ROWS_PER_STATEMENT.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Clone, Copy, Hash, PartialEq, Eq)]
struct RollupKey<'a> {
    /// Start of the period (minute or hour), ms since the epoch.
    at_ms: i64,
    feature: &'a str,
    team: &'a str,
    endpoint: &'a str,
    provider: &'a str,
    variant: &'a str,
    provisioned: bool,
}

#[derive(Default)]
struct RollupSums {
    requests: i64,
    errors: i64,
    spilled: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_nanos: i64,
    latency_ms_sum: f64,
    ttft_ms_sum: f64,
    ttft_count: i64,
}

/// An outcome that counts as an error in the rollups.
pub fn is_error(outcome: &str) -> bool {
    outcome != "ok" && outcome != "cancelled"
}

/// The rollup rows of `records` for periods of `period_ms`.
///
/// A request counts (requests, errors, latency) for the endpoint that served it
/// last. Its tokens and cost go to the endpoints that produced them: all to that
/// one, except when another attempt billed some (a stream broken at one endpoint
/// and continued at another), then each attempt's to its own endpoint.
fn rollup<'a>(records: &[&'a RequestRecord], period_ms: i64) -> HashMap<RollupKey<'a>, RollupSums> {
    let mut sums: HashMap<RollupKey<'a>, RollupSums> = HashMap::default();
    for r in records {
        let at_ms = r.at_ms.div_euclid(period_ms) * period_ms;
        let key = RollupKey {
            at_ms,
            feature: &r.feature,
            team: &r.team,
            endpoint: r.endpoint.as_deref().unwrap_or(""),
            provider: r.provider.as_deref().unwrap_or(""),
            variant: &r.variant,
            provisioned: r.provisioned,
        };
        let split = r.attempts.iter().any(|a| {
            Some(a.endpoint.as_str()) != r.endpoint.as_deref()
                && (a.prompt_tokens + a.completion_tokens > 0 || !a.cost.is_zero())
        });
        if split {
            for a in &r.attempts {
                let s = sums
                    .entry(RollupKey {
                        endpoint: &a.endpoint,
                        provider: &a.provider,
                        provisioned: a.provisioned,
                        ..key
                    })
                    .or_default();
                s.prompt_tokens += int(a.prompt_tokens);
                s.completion_tokens += int(a.completion_tokens);
                s.cached_tokens += int(a.cached_tokens);
                s.cost_nanos += to_nanos(a.cost);
            }
        }
        let s = sums.entry(key).or_default();
        s.requests += 1;
        s.errors += i64::from(is_error(&r.outcome));
        s.spilled += i64::from(r.spilled);
        if !split {
            s.prompt_tokens += int(r.prompt_tokens);
            s.completion_tokens += int(r.completion_tokens);
            s.cached_tokens += int(r.cached_tokens);
            s.cost_nanos += to_nanos(r.cost);
        }
        s.latency_ms_sum += r.latency_ms;
        if let Some(t) = r.ttft_ms {
            s.ttft_ms_sum += t;
            s.ttft_count += 1;
        }
    }
    sums
}

struct Writer {
    store: Store,
    shared: Arc<Shared>,
    sql: Statements,
}

impl Writer {
    async fn run(&self, mut rx: mpsc::Receiver<Msg>, mut close: watch::Receiver<bool>) {
        let mut batch: Vec<Msg> = Vec::with_capacity(MAX_BATCH);
        let mut closing = false;
        loop {
            // Under steady traffic `recv_many` is always ready and the `select!`s below
            // would never see the close signal: look at it first.
            if !closing && *close.borrow() {
                closing = true;
                rx.close();
            }
            // The first records of a batch.
            if closing {
                if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    break;
                }
            } else {
                tokio::select! {
                    biased;
                    n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
                    _ = close.wait_for(|c| *c) => {
                        // Refuse new records; the loop drains what is queued.
                        closing = true;
                        rx.close();
                        continue;
                    }
                }
            }
            // Then let the batch gather for a moment without waking for each record
            // (a wakeup per record cost ~10 % of the gateway's CPU at 10k requests/s),
            // and take what arrived, up to a full batch.
            if !closing && batch.len() < MAX_BATCH {
                tokio::select! {
                    biased;
                    _ = close.wait_for(|c| *c) => {
                        closing = true;
                        rx.close();
                    }
                    () = gather() => {}
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => batch.push(msg),
                        Err(_) => break,
                    }
                }
            }
            self.write_with_retries(&batch).await;
            batch.clear();
        }
    }

    async fn write_with_retries(&self, batch: &[Msg]) {
        let requests = batch
            .iter()
            .filter(|m| matches!(m, Msg::Request(_)))
            .count() as u64;
        let c = &self.shared.counters;
        let mut tries = 0;
        loop {
            match self.write(batch).await {
                Ok(()) => {
                    c.written.fetch_add(requests, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(err) if tries < RETRY_BACKOFF.len() => {
                    tracing::warn!(error = %format!("{err:#}"), records = batch.len(), "ledger batch failed; retrying");
                    back_off(RETRY_BACKOFF[tries]).await;
                    tries += 1;
                }
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), records = batch.len(), "ledger batch failed; its records are lost");
                    c.dropped.fetch_add(requests, Ordering::Relaxed);
                    break;
                }
            }
        }
        c.queued.fetch_sub(requests, Ordering::Relaxed);
    }

    /// Inserts `rows` (with their attempts as JSON) in one statement, ignoring ids
    /// already in the ledger; returns how many were inserted.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        rows: &[&RequestRecord],
        attempts_json: &[String],
    ) -> sqlx::Result<u64> {
        let mut q = sqlx::query(self.sql.ledger(rows.len()));
        for (r, attempts) in rows.iter().zip(attempts_json) {
            q = q
                .bind(r.request_id.as_str())
                .bind(r.at_ms)
                .bind(r.team.as_str())
                .bind(r.key_id.as_str())
                .bind(r.feature.as_str())
                .bind(r.variant.as_str())
                .bind(r.config_version)
                .bind(i64::from(r.stream))
                .bind(r.endpoint.as_deref())
                .bind(r.provider.as_deref())
                .bind(r.region.as_deref())
                .bind(r.geography.as_deref())
                .bind(i64::from(r.provisioned))
                .bind(i64::from(r.spilled))
                .bind(i64::from(r.fallback_depth))
                .bind(r.outcome.as_str())
                .bind(i64::from(r.status))
                .bind(r.latency_ms)
                .bind(r.ttft_ms)
                .bind(int(r.prompt_tokens))
                .bind(int(r.completion_tokens))
                .bind(int(r.cached_tokens))
                .bind(to_nanos(r.cost))
                .bind(i64::try_from(r.attempts.len()).unwrap_or(i64::MAX))
                .bind(attempts.as_str())
                .bind(r.prompt_text.as_deref())
                .bind(r.completion_text.as_deref())
                .bind(i64::from(r.usage_estimated))
                .bind(i64::from(r.continuations))
                .bind(i64::from(r.skipped_chunks))
                .bind(r.shadow.as_deref())
                .bind(r.rollout.as_deref())
                .bind(r.rollout_arm.as_deref())
                .bind(r.drill.as_deref())
                .bind(r.dialect.as_str());
        }
        Ok(q.execute(&mut **tx).await?.rows_affected())
    }

    /// Writes one batch in one transaction.
    async fn write(&self, batch: &[Msg]) -> anyhow::Result<()> {
        let mut seen = HashSet::default();
        let mut requests: Vec<&RequestRecord> = Vec::with_capacity(batch.len());
        let mut breakers: Vec<&BreakerEvent> = Vec::new();
        for m in batch {
            match m {
                Msg::Request(r) if seen.insert(r.request_id.as_str()) => requests.push(r),
                Msg::Request(_) => {}
                Msg::Breaker(e) => breakers.push(e),
            }
        }
        let attempts_json = requests
            .iter()
            .map(|r| serde_json::to_string(&r.attempts))
            .collect::<Result<Vec<_>, _>>()?;

        let mut tx = self.store.begin_write().await?;
        // The rows actually inserted, to roll up: not ids already in the ledger (a
        // record handed over twice). Almost always every row of a chunk is new, which
        // the statement's change count says without returning the ids; otherwise the
        // chunk is undone and inserted row by row to learn which ones were.
        let mut written: Vec<&RequestRecord> = Vec::with_capacity(requests.len());
        let mut offset = 0;
        for chunk in chunks(&requests) {
            let attempts = &attempts_json[offset..offset + chunk.len()];
            offset += chunk.len();
            sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
            if self.insert(&mut tx, chunk, attempts).await? == chunk.len() as u64 {
                written.extend_from_slice(chunk);
            } else {
                sqlx::query("ROLLBACK TO SAVEPOINT chunk")
                    .execute(&mut *tx)
                    .await?;
                for (r, a) in chunk.iter().zip(attempts) {
                    let one = std::slice::from_ref(r);
                    if self.insert(&mut tx, one, std::slice::from_ref(a)).await? == 1 {
                        written.push(r);
                    }
                }
            }
            sqlx::query("RELEASE SAVEPOINT chunk")
                .execute(&mut *tx)
                .await?;
        }

        // Roll up, one row per key: one statement may not update the same row twice
        // (PostgreSQL).
        for (table, (_, _, period_ms)) in ROLLUPS.iter().enumerate() {
            let sums: Vec<_> = rollup(&written, *period_ms).into_iter().collect();
            for chunk in chunks(&sums) {
                let mut q = sqlx::query(self.sql.rollup(table, chunk.len()));
                for (k, s) in chunk {
                    q = q
                        .bind(k.at_ms)
                        .bind(k.feature)
                        .bind(k.team)
                        .bind(k.endpoint)
                        .bind(k.provider)
                        .bind(k.variant)
                        .bind(i64::from(k.provisioned))
                        .bind(s.requests)
                        .bind(s.errors)
                        .bind(s.spilled)
                        .bind(s.prompt_tokens)
                        .bind(s.completion_tokens)
                        .bind(s.cached_tokens)
                        .bind(s.cost_nanos)
                        .bind(s.latency_ms_sum)
                        .bind(s.ttft_ms_sum)
                        .bind(s.ttft_count);
                }
                q.execute(&mut *tx).await?;
            }
        }

        for e in breakers {
            insert_breaker_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The writer's pause to let a batch gather: an I/O edge, in real time.
#[allow(
    clippy::disallowed_methods,
    reason = "the ledger writer batches in real time"
)]
async fn gather() {
    tokio::time::sleep(GATHER).await;
}

/// The writer's wait before retrying a failed batch: an I/O edge, in real time.
#[allow(
    clippy::disallowed_methods,
    reason = "the ledger writer backs off in real time"
)]
async fn back_off(wait: Duration) {
    tokio::time::sleep(wait).await;
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_up_to_the_statement_size() {
        let items: Vec<u32> = (0..(2 * MAX_ROWS_PER_STATEMENT as u32 + 13)).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 64, 8, 4, 1]);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
    }

    #[test]
    fn values_have_one_placeholder_per_cell() {
        assert_eq!(values(2, 3), "VALUES (?, ?, ?), (?, ?, ?)");
    }
}
