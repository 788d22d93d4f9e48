//! Where an endpoint's credentials may come from and go to: the operator's start-up
//! policy, applied to every configuration before it is recorded or served.
//!
//! The configuration is edited through the admin API, so whoever holds an admin token
//! could otherwise point an endpoint at any environment variable (the bootstrap admin
//! token, `AWS_SECRET_ACCESS_KEY`) and send it, as an API key, to a host of their
//! choosing; or read any file the process can read as a "credentials file". The
//! policy closes that, with settings that only the operator starting `crossbar serve`
//! chooses (flags and environment, never the published configuration nor the API):
//!
//! - `api-key-env` names only variables under an allow-listed prefix
//!   (`--key-env-prefix`, default `CROSSBAR_KEY_`), and never `CROSSBAR_ADMIN_TOKEN`;
//! - `gcp-credentials-file` reads only absolute paths inside `--credentials-dir`
//!   (symbolic links resolved); without that flag, no credentials file at all;
//! - an endpoint that sends credentials (any auth method but `none`; `default` on an
//!   OpenAI-compatible endpoint sends none) must be reached over `https://`, unless
//!   `--allow-plain-http-credentials` (local endpoints, simulators, the demo).
//!
//! What depends on no start-up setting — the charset of a region, project or model
//! that goes into a URL — is router-core's `Config::validate`, which the console
//! applies too. This module is the server's second check, run where a configuration
//! is validated before it is recorded or served ([`crate::publish`]), by the admin
//! API's validation, and at start-up on the active version.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use router_core::config::{AuthConfig, Problem, Problems, RouterConfig, endpoint_path};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// The operator's security settings, from `crossbar serve`'s flags: the credential
/// policy, and the browser origins besides the server's own that may call the admin
/// API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub credentials: CredentialPolicy,
    /// `--cors-origin`: origins (`https://ops.example.com`) whose pages may call the
    /// admin API, on top of the desktop app's ([`DESKTOP_ORIGINS`]), which always may.
    pub cors_origins: Vec<String>,
}

/// The desktop app's page origins (Tauri's custom protocol: `tauri://localhost` on
/// Linux and macOS, `http(s)://tauri.localhost` on Windows). Its console calls the
/// router's admin API across origins, so these are always allowed; a web page cannot
/// have them.
pub const DESKTOP_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// Checks `--cors-origin` values: each a bare origin, `scheme://host[:port]`.
pub fn check_origins(origins: &[String]) -> anyhow::Result<()> {
    for origin in origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .or_else(|| origin.strip_prefix("tauri://"));
        let well_formed = rest.is_some_and(|host| {
            !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                })
        });
        if !well_formed {
            anyhow::bail!(
                "--cors-origin `{origin}` must be an origin: `https://host[:port]` in lower case, \
                 without a path or a trailing slash (and never `*`)"
            );
        }
    }
    Ok(())
}

/// CORS for the admin API: the desktop app's origins and `extra` (checked by
/// [`check_origins`]), bearer tokens only (no cookies, so no credentials mode), the
/// methods and headers the console uses. Any other origin gets no CORS headers, and
/// so its page cannot read an answer: same-origin otherwise.
pub fn cors_layer(extra: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = DESKTOP_ORIGINS
        .iter()
        .map(|o| HeaderValue::from_static(o))
        .chain(extra.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::CONTENT_DISPOSITION])
        .max_age(Duration::from_secs(600))
}

/// The console's Content-Security-Policy: its own scripts and WebAssembly (nothing
/// inline, no `eval`), its own styles (no inline `style` attributes: the console sets
/// styles through the CSSOM), images from itself and `data:`/`blob:` URLs (the
/// chart's PNG download), connections to itself and `extra` origins, and no frames,
/// plugins, `<base>` or foreign form targets.
pub fn console_csp(extra: &[String]) -> String {
    let mut connect = String::from("'self'");
    for origin in extra {
        connect.push(' ');
        connect.push_str(origin);
    }
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; font-src 'self'; connect-src {connect}; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )
}

type SetHeader = SetResponseHeaderLayer<HeaderValue>;

/// [`browser_headers`]' layers.
pub type BrowserHeaders = Stack<SetHeader, Stack<SetHeader, Stack<SetHeader, Identity>>>;

/// Headers that keep a browser from framing, sniffing or leaking the URL of what
/// the admin API and the console answer: `X-Frame-Options: DENY`,
/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
pub fn browser_headers() -> ServiceBuilder<BrowserHeaders> {
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

/// The console's [`console_csp`] as a response header.
pub fn csp_header(extra: &[String]) -> SetHeader {
    let csp = HeaderValue::from_str(&console_csp(extra))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp)
}

/// The default `--key-env-prefix`.
pub const DEFAULT_KEY_ENV_PREFIX: &str = "CROSSBAR_KEY_";

/// Variables no endpoint may read, whatever the prefix: the bootstrap admin token.
const NEVER_KEY_ENV: &[&str] = &["CROSSBAR_ADMIN_TOKEN"];

/// The operator's start-up policy for endpoint credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPolicy {
    /// `api-key-env` variables must start with this (and have more after it).
    pub key_env_prefix: String,
    /// `gcp-credentials-file` paths must lie inside this directory; `None`: refused.
    pub credentials_dir: Option<PathBuf>,
    /// Endpoints that send credentials may use `http://` base URLs.
    pub allow_plain_http_credentials: bool,
}

impl Default for CredentialPolicy {
    fn default() -> Self {
        Self {
            key_env_prefix: DEFAULT_KEY_ENV_PREFIX.to_owned(),
            credentials_dir: None,
            allow_plain_http_credentials: false,
        }
    }
}

impl CredentialPolicy {
    /// Checks the settings themselves (at start-up): a usable prefix, an existing
    /// directory. The directory is kept canonical, so paths compare by what they are.
    pub fn checked(mut self) -> anyhow::Result<Self> {
        let prefix = &self.key_env_prefix;
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            anyhow::bail!(
                "--key-env-prefix `{prefix}` must be a non-empty prefix of environment variable names \
                 (A-Z, 0-9, _), such as `{DEFAULT_KEY_ENV_PREFIX}`"
            );
        }
        if let Some(dir) = &self.credentials_dir {
            let canonical = dir
                .canonicalize()
                .map_err(|e| anyhow::anyhow!("--credentials-dir `{}`: {e}", dir.display()))?;
            if !canonical.is_dir() {
                anyhow::bail!("--credentials-dir `{}` is not a directory", dir.display());
            }
            self.credentials_dir = Some(canonical);
        }
        Ok(self)
    }

    /// Every endpoint of `config` that breaks the policy, each problem at its path.
    pub fn problems(&self, config: &RouterConfig) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, e) in config.endpoints.iter().enumerate() {
            let path = endpoint_path(&e.name, i);
            let mut bad = |field: &str, why: String| {
                out.push(Problem::new(format!("{path}.{field}"), why));
            };
            match &e.auth {
                AuthConfig::ApiKeyEnv { env } => {
                    if let Some(why) = self.key_env_problem(env) {
                        bad("auth.env", why);
                    }
                }
                AuthConfig::GcpCredentialsFile { path } => {
                    if let Some(why) = self.credentials_file_problem(path) {
                        bad("auth.path", why);
                    }
                }
                _ => {}
            }
            if let Some(url) = &e.base_url
                && e.sends_credentials()
                && !self.allow_plain_http_credentials
                && !url
                    .get(..8)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
            {
                bad(
                    "base_url",
                    format!(
                        "`{url}`: an endpoint that sends credentials must be reached over https:// \
                         (plain http only with `auth = {{ method = \"none\" }}`, or when the server \
                         is started with --allow-plain-http-credentials for local endpoints)"
                    ),
                );
            }
        }
        out
    }

    /// [`Self::problems`] as a result.
    pub fn check(&self, config: &RouterConfig) -> Result<(), Problems> {
        let problems = self.problems(config);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }

    fn key_env_problem(&self, env: &str) -> Option<String> {
        let prefix = &self.key_env_prefix;
        if NEVER_KEY_ENV.contains(&env) {
            return Some(format!(
                "`{env}` holds the bootstrap admin token: no endpoint may read it"
            ));
        }
        match env.strip_prefix(prefix.as_str()) {
            Some(rest) if !rest.is_empty() => None,
            _ => Some(format!(
                "`{env}`: an endpoint's API key must come from a variable named `{prefix}...` \
                 (the server's --key-env-prefix), such as `{prefix}OPENAI`"
            )),
        }
    }

    fn credentials_file_problem(&self, file: &str) -> Option<String> {
        let Some(dir) = &self.credentials_dir else {
            return Some(
                "credentials files are read only inside the directory the server is started \
                 with (--credentials-dir); this server has none"
                    .to_owned(),
            );
        };
        let path = Path::new(file);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Some(format!(
                "`{file}` must be an absolute path inside {}, without `..`",
                dir.display()
            ));
        }
        match path.canonicalize() {
            Ok(real) if real.starts_with(dir) && real.is_file() => None,
            Ok(_) => Some(format!(
                "`{file}` is not a file inside the credentials directory {}",
                dir.display()
            )),
            Err(e) => Some(format!("`{file}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use router_core::config::{EndpointConfig, Provider};

    use super::*;

    fn config(endpoints: Vec<EndpointConfig>) -> RouterConfig {
        RouterConfig {
            endpoints,
            ..RouterConfig::default()
        }
    }

    fn openai(env: &str, url: &str) -> EndpointConfig {
        let mut e = EndpointConfig::new("oa", Provider::Openai, "gpt-4o", "eastus");
        e.base_url = Some(url.into());
        e.auth = AuthConfig::ApiKeyEnv { env: env.into() };
        e
    }

    fn paths(policy: &CredentialPolicy, e: EndpointConfig) -> Vec<String> {
        policy
            .problems(&config(vec![e]))
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn api_keys_come_only_from_variables_under_the_prefix() {
        let policy = CredentialPolicy::default();
        assert!(
            paths(
                &policy,
                openai("CROSSBAR_KEY_OPENAI", "https://api.openai.com")
            )
            .is_empty()
        );
        for env in [
            "AWS_SECRET_ACCESS_KEY",
            "CROSSBAR_ADMIN_TOKEN",
            "CROSSBAR_KEY_",
            "OPENAI_API_KEY",
        ] {
            assert_eq!(
                paths(&policy, openai(env, "https://api.openai.com")),
                ["endpoints.oa.auth.env"],
                "{env}"
            );
        }
        // Not even under a prefix that would cover it.
        let wide = CredentialPolicy {
            key_env_prefix: "CROSSBAR_".into(),
            ..CredentialPolicy::default()
        };
        assert_eq!(
            paths(&wide, openai("CROSSBAR_ADMIN_TOKEN", "https://x")),
            ["endpoints.oa.auth.env"]
        );
        assert!(
            CredentialPolicy {
                key_env_prefix: String::new(),
                ..CredentialPolicy::default()
            }
            .checked()
            .is_err()
        );
    }

    #[test]
    fn credentials_go_over_https_unless_plain_http_is_allowed_at_start_up() {
        let policy = CredentialPolicy::default();
        assert_eq!(
            paths(&policy, openai("CROSSBAR_KEY_X", "http://attacker.example")),
            ["endpoints.oa.base_url"]
        );
        // No credentials, no constraint: a local vLLM, a simulator.
        let mut open = openai("CROSSBAR_KEY_X", "http://127.0.0.1:8000");
        open.auth = AuthConfig::None;
        assert!(paths(&policy, open.clone()).is_empty());
        open.auth = AuthConfig::Default;
        assert!(paths(&policy, open).is_empty());
        // Bedrock's `default` signs requests: a credential.
        let mut bedrock = EndpointConfig::new("br", Provider::Bedrock, "m", "us-east-1");
        bedrock.base_url = Some("http://10.1.2.3".into());
        assert_eq!(paths(&policy, bedrock.clone()), ["endpoints.br.base_url"]);
        let local = CredentialPolicy {
            allow_plain_http_credentials: true,
            ..CredentialPolicy::default()
        };
        assert!(paths(&local, bedrock).is_empty());
        assert!(paths(&local, openai("CROSSBAR_KEY_X", "http://127.0.0.1:1")).is_empty());
    }

    #[test]
    fn credentials_files_are_read_only_inside_the_credentials_directory() {
        let base = std::env::temp_dir().join(format!("crossbar-policy-{}", std::process::id()));
        let dir = base.join("creds");
        std::fs::create_dir_all(&dir).unwrap();
        let inside = dir.join("wif.json");
        let outside = base.join("outside.json");
        std::fs::write(&inside, "{}").unwrap();
        std::fs::write(&outside, "{}").unwrap();
        let vertex = |path: &str| {
            let mut e = EndpointConfig::new("vx", Provider::VertexGemini, "gemini", "us-central1");
            e.project = Some("p".into());
            e.auth = AuthConfig::GcpCredentialsFile { path: path.into() };
            e
        };
        let want = ["endpoints.vx.auth.path"];
        // No directory configured: no file at all.
        assert_eq!(
            paths(
                &CredentialPolicy::default(),
                vertex(inside.to_str().unwrap())
            ),
            want
        );
        let policy = CredentialPolicy {
            credentials_dir: Some(dir.clone()),
            ..CredentialPolicy::default()
        }
        .checked()
        .unwrap();
        assert!(paths(&policy, vertex(inside.to_str().unwrap())).is_empty());
        let sneaky = format!("{}/../outside.json", dir.display());
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, dir.join("link.json")).unwrap();
        for path in [
            outside.to_str().unwrap(),
            "/etc/passwd",
            &sneaky,
            "creds/wif.json",
            #[cfg(unix)]
            dir.join("link.json").to_str().unwrap(),
        ] {
            assert_eq!(paths(&policy, vertex(path)), want, "{path}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
