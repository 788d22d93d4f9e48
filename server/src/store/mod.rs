//! The server's state in SQL: configuration versions, the audit log, gateway keys and
//! admin tokens, the usage ledger (one row per request, with per-minute and per-hour
//! rollups), breaker events and overrides, feedback, and spend reports.
//!
//! SQLite in WAL mode through `sqlx` is the embedded default; the schema
//! (`migrations/`, see its README for the rules) stays portable to PostgreSQL.
//! Queries use the runtime `sqlx::query*` functions, so building needs no database.
//!
//! Conventions:
//! - time: `i64` ms since the Unix epoch (wall clock; the store is not routing logic);
//! - money: `BIGINT` nano-units in SQL, [`Decimal`] in Rust ([`to_nanos`],
//!   [`from_nanos`]); never a float;
//! - write transactions start with `BEGIN IMMEDIATE`, so SQLite takes the write lock
//!   up front and waits (busy timeout) instead of failing to upgrade a read.
//!
//! The hot path never awaits the store: it hands records to a [`LedgerHandle`]
//! (see [`Store::ledger_writer`]), whose writer task batches them.

mod audit;
mod config;
mod keys;
mod ledger;
mod overrides;
mod requests;
mod retention;
mod spend;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

pub use audit::NewAudit;
pub use config::{NewVersion, NewVersionError};
pub use ledger::{LedgerHandle, is_error};
pub use overrides::{StoredOverride, mode_name};
pub use retention::Deleted;

/// How long a connection waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections of a file database: one writer at a time (SQLite), readers alongside.
const FILE_POOL_SIZE: u32 = 8;

/// The store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Serialises this process's config publishes (the version's primary key catches
    /// races between processes).
    publish_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens the database file at `path`, creating it if missing, in WAL mode with a
    /// busy timeout and foreign keys on, and runs the migrations. The file (and its
    /// WAL files, which SQLite creates with the file's permissions) is readable and
    /// writable by its owner only: it holds key hashes, the audit log and, with
    /// `privacy.store_text`, prompts.
    pub async fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        owner_only(path)
            .with_context(|| format!("cannot create the database {}", path.display()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        Self::migrated(pool)
            .await
            .with_context(|| format!("cannot migrate the database {}", path.display()))
    }

    /// A private in-memory database (tests, `--ephemeral` runs). One connection that
    /// is never recycled: each SQLite memory connection is its own database.
    pub async fn open_in_memory() -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .context("cannot open an in-memory database")?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> anyhow::Result<Store> {
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Store {
            pool,
            publish_lock: Arc::default(),
        })
    }

    /// The connection pool, for queries this module does not offer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (after a ledger writer has shut down).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction holding SQLite's write lock from the start.
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

pub use router_core::telemetry::record::unix_ms;

/// Creates `path` if missing with permissions 0600, and narrows an existing
/// database's (and its WAL files') to 0600: nobody but the server's user reads it.
#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %file.display(), "the database was readable by others: narrowed to 0600");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> std::io::Result<()> {
    Ok(())
}

const NANOS_PER_UNIT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// An amount in nano-units (1e-9 of the currency), rounded half to even; saturates
/// at the `i64` range (±9.2e9 currency units).
pub fn to_nanos(amount: Decimal) -> i64 {
    match amount.checked_mul(NANOS_PER_UNIT) {
        Some(n) => i64::try_from(n.round()).unwrap_or(if n.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        }),
        None if amount.is_sign_negative() => i64::MIN,
        None => i64::MAX,
    }
}

/// An amount from nano-units, without trailing zeros.
pub fn from_nanos(nanos: i64) -> Decimal {
    Decimal::new(nanos, 9).normalize()
}

/// The SHA-256 of a secret (gateway keys, admin tokens): what the server compares
/// on every request, without formatting it as text.
pub fn sha256(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex SHA-256 of a secret: its form in the store and in seed files.
pub fn sha256_hex(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in sha256(secret) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A SHA-256 from its hex form (either case); `None` for anything else.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}
