//! The TOML configuration file, and how it meets the store.
//!
//! The file holds the routing configuration ([`RouterConfig`]: endpoints, features,
//! teams, breaker and retry policies, privacy) and, optionally, gateway keys and
//! admin tokens **as SHA-256 hashes** (never the secrets).
//!
//! Which wins when file and store differ: **the store**. The file seeds an empty
//! store (version 1). Once the store has versions, the newest one serves, because
//! that is where the console's and the admin API's edits live; a file that differs is
//! reported at start-up and ignored, unless `crossbar serve --publish-config` is
//! given, which publishes it as a new, audited version (GitOps style).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use router_core::admin::Role;
use router_core::config::{
    BreakerPolicy, Config, EndpointConfig, FeatureConfig, Privacy, Retention, RetryPolicy,
    RouterConfig, TeamConfig,
};
use serde::{Deserialize, Serialize};

use crate::policy::CredentialPolicy;
use crate::publish::{self, Proposal, Published};
use crate::store::Store;

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub router: RouterConfig,
    pub gateway_keys: Vec<KeySeed>,
    pub admin_tokens: Vec<TokenSeed>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySeed {
    pub team: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSeed {
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

/// The file's layout: the routing configuration's sections plus the seeds. (Spelled
/// out rather than flattened so unknown keys are rejected with their line.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    features: Vec<FeatureConfig>,
    #[serde(default)]
    teams: Vec<TeamConfig>,
    #[serde(default)]
    breaker: BreakerPolicy,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    privacy: Privacy,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    gateway_keys: Vec<KeySeed>,
    #[serde(default)]
    admin_tokens: Vec<TokenSeed>,
}

impl ConfigFile {
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<ConfigFile> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (what, hash) in raw
            .gateway_keys
            .iter()
            .map(|k| ("gateway_keys", &k.sha256))
            .chain(raw.admin_tokens.iter().map(|t| ("admin_tokens", &t.sha256)))
        {
            if hash.len() != 64
                || !hash
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                bail!(
                    "{}: {what}: `sha256` must be the 64-character lowercase hex SHA-256 of the secret, never the secret itself",
                    path.display()
                );
            }
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            router: RouterConfig {
                endpoints: raw.endpoints,
                features: raw.features,
                teams: raw.teams,
                breaker: raw.breaker,
                retry: raw.retry,
                privacy: raw.privacy,
                retention: raw.retention,
            },
            gateway_keys: raw.gateway_keys,
            admin_tokens: raw.admin_tokens,
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses and validates with the router's rules; the error lists every problem.
    pub fn validate(&self) -> anyhow::Result<Config> {
        Config::validate(self.router.clone())
            .map_err(|p| anyhow::anyhow!("{} is invalid:\n{p}", self.path.display()))
    }
}

/// The routing configuration as TOML (what `crossbar config export` prints).
pub fn to_toml(config: &RouterConfig) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

/// The version to serve: seeds an empty store from the file, or follows the store
/// (publishing the file first when `publish_file` and it differs).
pub async fn load_or_seed(
    store: &Store,
    file: Option<&ConfigFile>,
    publish_file: bool,
    policy: &CredentialPolicy,
) -> anyhow::Result<(i64, RouterConfig)> {
    if let Some(file) = file {
        file.validate()?;
        for k in &file.gateway_keys {
            if !store.has_gateway_key_hash(&k.sha256).await? {
                store
                    .insert_gateway_key_hash(&k.team, &k.name, &k.sha256, k.requests_per_minute)
                    .await?;
            }
        }
        for t in &file.admin_tokens {
            store
                .insert_admin_token_hash(&t.name, t.role, &t.sha256)
                .await?;
        }
    }
    match (store.active_config().await?, file) {
        (None, None) => {
            bail!("the store has no configuration yet: start with `--config FILE` to seed it")
        }
        (None, Some(file)) => {
            let Published { version, .. } = publish_from_file(
                store,
                policy,
                file,
                "seed",
                "seeded from the configuration file",
                None,
            )
            .await?;
            tracing::info!(version = version.version, file = %file.path.display(), "store seeded from the configuration file");
            Ok((version.version, version.config))
        }
        (Some(active), Some(file)) if active.config != file.router => {
            if publish_file {
                let Published { version, changes } = publish_from_file(
                    store,
                    policy,
                    file,
                    "publish",
                    "published from the configuration file (--publish-config)",
                    Some(active.version),
                )
                .await?;
                tracing::info!(
                    version = version.version,
                    changes = changes.len(),
                    "configuration file published"
                );
                Ok((version.version, version.config))
            } else {
                tracing::warn!(
                    active = active.version,
                    file = %file.path.display(),
                    "the configuration file differs from the store's active version; the store wins \
                     (its edits came through the admin API). Use --publish-config to publish the file."
                );
                Ok((active.version, active.config))
            }
        }
        (Some(active), _) => Ok((active.version, active.config)),
    }
}

/// Publishes the file's routing configuration as a new version, authored by the file,
/// through the one publish path ([`publish::seed`]: validated, stored with its audit
/// entry; the engine that serves it is built from the version returned).
async fn publish_from_file(
    store: &Store,
    policy: &CredentialPolicy,
    file: &ConfigFile,
    action: &str,
    message: &str,
    base_version: Option<i64>,
) -> anyhow::Result<Published> {
    let author = format!("file:{}", file.path.display());
    publish::seed(
        store,
        policy,
        Proposal {
            config: file.router.clone(),
            author: &author,
            role: "admin",
            action,
            target: "config",
            message,
            base_version,
            restored_from: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {e}", file.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[endpoints]]
name = "openai-eastus"
provider = "openai"
model = "gpt-4o-mini"
region = "eastus"
geography = "us"
base_url = "http://127.0.0.1:9"
auth = { method = "none" }
pricing = { input_per_million = "0.15", output_per_million = "0.60" }

[[features]]
name = "summarize"
binding = ["openai-eastus"]

[[teams]]
name = "search"

[[gateway_keys]]
team = "search"
name = "search-prod"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
"#;

    #[test]
    fn a_file_parses_into_the_routing_config_and_seeds() {
        let f = ConfigFile::parse(Path::new("crossbar.toml"), FILE).unwrap();
        assert_eq!(f.router.features[0].binding, ["openai-eastus"]);
        assert_eq!(f.gateway_keys.len(), 1);
        f.validate().unwrap();
        // Export and re-import gives the same configuration.
        let again = ConfigFile::parse(Path::new("x.toml"), &to_toml(&f.router).unwrap()).unwrap();
        assert_eq!(again.router, f.router);
    }

    #[test]
    fn unknown_keys_and_plaintext_secrets_are_refused() {
        let err =
            ConfigFile::parse(Path::new("c.toml"), &format!("{FILE}\nlisten = 1\n")).unwrap_err();
        assert!(err.to_string().contains("unknown field `listen`"), "{err}");
        let leaked = FILE.replace(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "cb-live-secret-key",
        );
        let err = ConfigFile::parse(Path::new("c.toml"), &leaked).unwrap_err();
        assert!(err.to_string().contains("never the secret itself"), "{err}");
    }

    #[tokio::test]
    async fn the_file_seeds_an_empty_store_and_the_store_wins_afterwards() {
        let store = Store::open_in_memory().await.unwrap();
        let mut f = ConfigFile::parse(Path::new("c.toml"), FILE).unwrap();
        let (v, _) = load_or_seed(&store, Some(&f), false, &CredentialPolicy::default())
            .await
            .unwrap();
        assert_eq!(v, 1);
        f.router.features[0].description = "changed in the file".into();
        let (v, served) = load_or_seed(&store, Some(&f), false, &CredentialPolicy::default())
            .await
            .unwrap();
        assert_eq!((v, served.features[0].description.as_str()), (1, ""));
        let (v, served) = load_or_seed(&store, Some(&f), true, &CredentialPolicy::default())
            .await
            .unwrap();
        assert_eq!(
            (v, served.features[0].description.as_str()),
            (2, "changed in the file")
        );
        assert!(
            load_or_seed(
                &Store::open_in_memory().await.unwrap(),
                None,
                false,
                &CredentialPolicy::default()
            )
            .await
            .is_err()
        );
    }
}
