//! Gateway keys (each belongs to a team) and admin API tokens (each has a role).
//!
//! Neither is ever stored: only the lowercase hex SHA-256 of the secret is, and a
//! lookup hashes the presented secret. A key or token is 40 random characters of the
//! URL-safe alphabet (240 bits, from the OS-seeded CSPRNG), so a fast hash is enough:
//! there is nothing to brute-force. Plaintexts: `cb-...` (gateway keys), `cba-...`
//! (admin tokens), shown once at creation.

use anyhow::{Context, bail};
use rand::Rng;
use router_core::admin::{GatewayKeyInfo, Role};

use super::{Store, sha256_hex, unix_ms};

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_LEN: usize = 40;
const ID_LEN: usize = 16;

pub const GATEWAY_KEY_PREFIX: &str = "cb-";
pub const ADMIN_TOKEN_PREFIX: &str = "cba-";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_string(ALPHANUMERIC, ID_LEN))
}

fn check_sha256_hex(hash: &str) -> anyhow::Result<String> {
    if super::parse_sha256_hex(hash).is_none() {
        bail!("not a SHA-256 in hex (64 hex digits): `{hash}`");
    }
    Ok(hash.to_ascii_lowercase())
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    team: String,
    name: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
    requests_per_minute: Option<i64>,
}

impl From<KeyRow> for GatewayKeyInfo {
    fn from(r: KeyRow) -> Self {
        GatewayKeyInfo {
            id: r.id,
            team: r.team,
            name: r.name,
            created_at_ms: r.created_at_ms,
            revoked: r.revoked_at_ms.is_some(),
            requests_per_minute: r.requests_per_minute.and_then(|n| u32::try_from(n).ok()),
        }
    }
}

const KEY_COLUMNS: &str = "id, team, name, created_at_ms, revoked_at_ms, requests_per_minute";

impl Store {
    /// Creates a gateway key for `team`: returns its listing and the key itself,
    /// which is not kept and cannot be shown again.
    pub async fn create_gateway_key(
        &self,
        team: &str,
        name: &str,
        rpm: Option<u32>,
    ) -> anyhow::Result<(GatewayKeyInfo, String)> {
        let key = format!(
            "{GATEWAY_KEY_PREFIX}{}",
            random_string(URL_SAFE, SECRET_LEN)
        );
        let sql = format!(
            "INSERT INTO gateway_keys \
             (id, team, name, key_sha256, created_at_ms, revoked_at_ms, requests_per_minute) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6) RETURNING {KEY_COLUMNS}"
        );
        let row: KeyRow = sqlx::query_as(&sql)
            .bind(new_id("gk_"))
            .bind(team)
            .bind(name)
            .bind(sha256_hex(&key))
            .bind(unix_ms())
            .bind(rpm.map(i64::from))
            .fetch_one(&self.pool)
            .await
            .context("cannot store the gateway key")?;
        Ok((row.into(), key))
    }

    /// Registers a key known only by its SHA-256 (hex), as a config file lists them.
    /// Idempotent: seeding the same hash again updates its team, name and limit and
    /// keeps its id and revocation.
    pub async fn insert_gateway_key_hash(
        &self,
        team: &str,
        name: &str,
        sha256_hex: &str,
        rpm: Option<u32>,
    ) -> anyhow::Result<GatewayKeyInfo> {
        let hash = check_sha256_hex(sha256_hex)?;
        let sql = format!(
            "INSERT INTO gateway_keys \
             (id, team, name, key_sha256, created_at_ms, revoked_at_ms, requests_per_minute) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6) \
             ON CONFLICT (key_sha256) DO UPDATE SET team = excluded.team, \
             name = excluded.name, requests_per_minute = excluded.requests_per_minute \
             RETURNING {KEY_COLUMNS}"
        );
        let row: KeyRow = sqlx::query_as(&sql)
            .bind(new_id("gk_"))
            .bind(team)
            .bind(name)
            .bind(hash)
            .bind(unix_ms())
            .bind(rpm.map(i64::from))
            .fetch_one(&self.pool)
            .await
            .context("cannot store the gateway key hash")?;
        Ok(row.into())
    }

    /// The key presented by a client, unless unknown or revoked.
    pub async fn gateway_key(&self, plaintext: &str) -> anyhow::Result<Option<GatewayKeyInfo>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM gateway_keys \
             WHERE key_sha256 = $1 AND revoked_at_ms IS NULL"
        );
        let row: Option<KeyRow> = sqlx::query_as(&sql)
            .bind(sha256_hex(plaintext))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn gateway_keys(&self) -> anyhow::Result<Vec<GatewayKeyInfo>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM gateway_keys ORDER BY created_at_ms, id");
        let rows: Vec<KeyRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Every key with its hash (revoked ones included, flagged), for the gateway's
    /// in-memory map: the hot path resolves keys without the database.
    pub async fn gateway_key_hashes(&self) -> anyhow::Result<Vec<(String, GatewayKeyInfo)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            key_sha256: String,
            #[sqlx(flatten)]
            key: KeyRow,
        }
        let sql = format!(
            "SELECT key_sha256, {KEY_COLUMNS} FROM gateway_keys ORDER BY created_at_ms, id"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.key_sha256, r.key.into()))
            .collect())
    }

    /// Whether a key with this SHA-256 (hex, any case) exists, revoked or not.
    pub async fn has_gateway_key_hash(&self, sha256_hex: &str) -> anyhow::Result<bool> {
        let hash = check_sha256_hex(sha256_hex)?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM gateway_keys WHERE key_sha256 = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Revokes a key by id; `false` when there is no such key or it already was.
    pub async fn revoke_gateway_key(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE gateway_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(unix_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates an admin API token: returns its id and the token itself, which is not
    /// kept and cannot be shown again.
    pub async fn create_admin_token(
        &self,
        name: &str,
        role: Role,
    ) -> anyhow::Result<(String, String)> {
        let token = format!(
            "{ADMIN_TOKEN_PREFIX}{}",
            random_string(URL_SAFE, SECRET_LEN)
        );
        let id = self
            .insert_admin_token_hash(name, role, &sha256_hex(&token))
            .await?;
        Ok((id, token))
    }

    /// Registers an admin token known by its SHA-256 (hex), e.g. a bootstrap token
    /// from the environment. Idempotent like [`Store::insert_gateway_key_hash`]
    /// (name and role are updated); returns the token's id.
    pub async fn insert_admin_token_hash(
        &self,
        name: &str,
        role: Role,
        sha256_hex: &str,
    ) -> anyhow::Result<String> {
        let hash = check_sha256_hex(sha256_hex)?;
        let id: String = sqlx::query_scalar(
            "INSERT INTO admin_tokens (id, name, role, token_sha256, created_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL) \
             ON CONFLICT (token_sha256) DO UPDATE SET name = excluded.name, role = excluded.role \
             RETURNING id",
        )
        .bind(new_id("at_"))
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(unix_ms())
        .fetch_one(&self.pool)
        .await
        .context("cannot store the admin token")?;
        Ok(id)
    }

    /// The name and role of the holder of an admin token, unless unknown or revoked.
    pub async fn admin_token(&self, plaintext: &str) -> anyhow::Result<Option<(String, Role)>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT name, role FROM admin_tokens WHERE token_sha256 = $1 AND revoked_at_ms IS NULL",
        )
        .bind(sha256_hex(plaintext))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(name, role)| {
            let role = Role::parse(&role)
                .with_context(|| format!("admin token `{name}` has an unknown role `{role}`"))?;
            Ok((name, role))
        })
        .transpose()
    }

    /// Every admin token in force as (hash, name, role), for an in-memory map. A
    /// token with a role this version does not know is left out (and logged).
    pub async fn admin_token_hashes(&self) -> anyhow::Result<Vec<(String, String, Role)>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT token_sha256, name, role FROM admin_tokens \
             WHERE revoked_at_ms IS NULL ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(hash, name, role)| match Role::parse(&role) {
                Some(role) => Some((hash, name, role)),
                None => {
                    tracing::warn!(%name, %role, "admin token with an unknown role ignored");
                    None
                }
            })
            .collect())
    }

    /// Revokes an admin token by id; `false` when there is no such token or it
    /// already was.
    pub async fn revoke_admin_token(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE admin_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(unix_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
