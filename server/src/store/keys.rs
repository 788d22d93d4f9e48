//! Gateway keys (each belongs to a team) and admin API tokens (each has a role).
//!
//! Neither is ever stored: only the lowercase hex SHA-256 of the secret is, and a
//! lookup hashes the presented secret. A key or token is 40 random characters of the
//! URL-safe alphabet (240 bits, from the OS-seeded CSPRNG), so a fast hash is enough:
//! there is nothing to brute-force. Plaintexts: `cb-...` (gateway keys), `cba-...`
//! (admin tokens), shown once at creation.
//!
//! Both can be revoked (`revoked_at_ms`) and can expire (`expires_at_ms`, migration
//! 0005): from then on they are refused as if revoked. Revocation is for good: seeding
//! a revoked hash again (a configuration file's, a bootstrap token's at the next
//! start) updates its name and role and leaves it revoked.

use anyhow::{Context, bail};
use rand::Rng;
use router_core::admin::{AdminTokenInfo, GatewayKeyInfo, Role};

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
    expires_at_ms: Option<i64>,
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
            expires_at_ms: r.expires_at_ms,
        }
    }
}

const KEY_COLUMNS: &str =
    "id, team, name, created_at_ms, revoked_at_ms, requests_per_minute, expires_at_ms";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
    expires_at_ms: Option<i64>,
}

impl TokenRow {
    /// The listing; `None` (logged) for a role this version does not know.
    fn info(self) -> Option<AdminTokenInfo> {
        let Some(role) = Role::parse(&self.role) else {
            tracing::warn!(name = %router_core::logging::escaped(&self.name), role = %router_core::logging::escaped(&self.role), "admin token with an unknown role ignored");
            return None;
        };
        Some(AdminTokenInfo {
            id: self.id,
            name: self.name,
            role,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked: self.revoked_at_ms.is_some(),
        })
    }
}

const TOKEN_COLUMNS: &str = "id, name, role, created_at_ms, revoked_at_ms, expires_at_ms";

impl Store {
    /// Creates a gateway key for `team`: returns its listing and the key itself,
    /// which is not kept and cannot be shown again.
    pub async fn create_gateway_key(
        &self,
        team: &str,
        name: &str,
        rpm: Option<u32>,
    ) -> anyhow::Result<(GatewayKeyInfo, String)> {
        self.create_expiring_gateway_key(team, name, rpm, None)
            .await
    }

    /// [`Store::create_gateway_key`], refused from `expires_at_ms` on (`None`: never).
    pub async fn create_expiring_gateway_key(
        &self,
        team: &str,
        name: &str,
        rpm: Option<u32>,
        expires_at_ms: Option<i64>,
    ) -> anyhow::Result<(GatewayKeyInfo, String)> {
        let key = format!(
            "{GATEWAY_KEY_PREFIX}{}",
            random_string(URL_SAFE, SECRET_LEN)
        );
        let sql = format!(
            "INSERT INTO gateway_keys \
             (id, team, name, key_sha256, created_at_ms, revoked_at_ms, requests_per_minute, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $7) RETURNING {KEY_COLUMNS}"
        );
        let row: KeyRow = sqlx::query_as(&sql)
            .bind(new_id("gk_"))
            .bind(team)
            .bind(name)
            .bind(sha256_hex(&key))
            .bind(unix_ms())
            .bind(rpm.map(i64::from))
            .bind(expires_at_ms)
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

    /// The key presented by a client, unless unknown, revoked or expired.
    pub async fn gateway_key(&self, plaintext: &str) -> anyhow::Result<Option<GatewayKeyInfo>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM gateway_keys \
             WHERE key_sha256 = $1 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)"
        );
        let row: Option<KeyRow> = sqlx::query_as(&sql)
            .bind(sha256_hex(plaintext))
            .bind(unix_ms())
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
        let (info, token) = self.create_expiring_admin_token(name, role, None).await?;
        Ok((info.id, token))
    }

    /// Creates an admin API token refused from `expires_at_ms` on (`None`: never):
    /// returns its listing and the token itself, which is not kept.
    pub async fn create_expiring_admin_token(
        &self,
        name: &str,
        role: Role,
        expires_at_ms: Option<i64>,
    ) -> anyhow::Result<(AdminTokenInfo, String)> {
        let token = format!(
            "{ADMIN_TOKEN_PREFIX}{}",
            random_string(URL_SAFE, SECRET_LEN)
        );
        let sql = format!(
            "INSERT INTO admin_tokens \
             (id, name, role, token_sha256, created_at_ms, revoked_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6) RETURNING {TOKEN_COLUMNS}"
        );
        let row: TokenRow = sqlx::query_as(&sql)
            .bind(new_id("at_"))
            .bind(name)
            .bind(role.as_str())
            .bind(sha256_hex(&token))
            .bind(unix_ms())
            .bind(expires_at_ms)
            .fetch_one(&self.pool)
            .await
            .context("cannot store the admin token")?;
        let info = row
            .info()
            .context("the stored admin token's role cannot be read back")?;
        Ok((info, token))
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

    /// The name and role of the holder of an admin token, unless unknown, revoked or
    /// expired.
    pub async fn admin_token(&self, plaintext: &str) -> anyhow::Result<Option<(String, Role)>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT name, role FROM admin_tokens WHERE token_sha256 = $1 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
        )
        .bind(sha256_hex(plaintext))
        .bind(unix_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(name, role)| {
            let role = Role::parse(&role)
                .with_context(|| format!("admin token `{name}` has an unknown role `{role}`"))?;
            Ok((name, role))
        })
        .transpose()
    }

    /// Every admin token, revoked and expired ones included, oldest first (never the
    /// tokens, nor their hashes). A token with a role this version does not know is
    /// left out (and logged).
    pub async fn admin_tokens(&self) -> anyhow::Result<Vec<AdminTokenInfo>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at_ms, id");
        let rows: Vec<TokenRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().filter_map(TokenRow::info).collect())
    }

    /// Every admin token not revoked, with its hash, for an in-memory map (expired
    /// ones included: the map checks the time at each lookup). A token with a role
    /// this version does not know is left out (and logged).
    pub async fn admin_token_hashes(&self) -> anyhow::Result<Vec<(String, AdminTokenInfo)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            token_sha256: String,
            #[sqlx(flatten)]
            token: TokenRow,
        }
        let sql = format!(
            "SELECT token_sha256, {TOKEN_COLUMNS} FROM admin_tokens \
             WHERE revoked_at_ms IS NULL ORDER BY created_at_ms, id"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.token_sha256, r.token.info()?)))
            .collect())
    }

    /// Whether an admin token with this SHA-256 (hex, any case) was ever revoked.
    pub async fn admin_token_hash_revoked(&self, sha256_hex: &str) -> anyhow::Result<bool> {
        let hash = check_sha256_hex(sha256_hex)?;
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM admin_tokens WHERE token_sha256 = $1 AND revoked_at_ms IS NOT NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
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
