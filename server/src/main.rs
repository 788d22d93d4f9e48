//! `crossbar`: the Crossbar server binary.
//!
//! `crossbar serve` prints `crossbar: listening on http://ADDR/` on stdout once it is
//! listening (and `crossbar: console at http://ADDR/` when it serves the console), so
//! scripts and tests can start it on port 0 and read the address back.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use router_core::admin::Role;
use server::file::ConfigFile;
use server::limits::Limits;
use server::policy::{CredentialPolicy, Security};
use server::store::Store;
use server::{Options, Server, shutdown_signals};

#[derive(Parser)]
#[command(name = "crossbar", version = router_core::VERSION, about = "Crossbar: multi-cloud LLM routing layer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (/v1), the admin API (/admin/v1) and the console (/).
    Serve {
        /// The configuration file: seeds an empty store; see --publish-config.
        #[arg(long, env = "CROSSBAR_CONFIG")]
        config: Option<PathBuf>,
        /// The SQLite database (created if missing). Without it, state lives in memory.
        #[arg(long, env = "CROSSBAR_DB")]
        db: Option<PathBuf>,
        /// Publish the configuration file as a new version when it differs from the
        /// store's active version (otherwise the store wins).
        #[arg(long)]
        publish_config: bool,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "CROSSBAR_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The built console (`cargo xtask build` writes it to `ui/dist`); omit with --no-console.
        #[arg(long, env = "CROSSBAR_UI_DIR", default_value = "ui/dist")]
        ui_dir: PathBuf,
        /// Serve only the APIs.
        #[arg(long)]
        no_console: bool,
        /// Serving threads, each with its own runtime and its own connections to
        /// plain-HTTP endpoints; 0: one per CPU.
        #[arg(long, env = "CROSSBAR_WORKERS", default_value_t = 0)]
        workers: usize,
        /// On endpoints reached over h2c (`http2_prior_knowledge` with an http://
        /// URL), send a request that finds nothing else in flight from its serving
        /// thread to that endpoint over HTTP/1.1 instead: quicker for a request
        /// alone. Only for upstreams that speak both protocols on one port. The
        /// variable takes true/false, 1/0, yes/no, on/off.
        #[arg(
            long,
            env = "CROSSBAR_UPSTREAM_HTTP1_WHEN_IDLE",
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        upstream_http1_when_idle: bool,
        /// Endpoints' `api-key-env` may name only environment variables starting
        /// with this prefix (never CROSSBAR_ADMIN_TOKEN). A start-up setting: neither
        /// the configuration nor the admin API can change it.
        #[arg(long, env = "CROSSBAR_KEY_ENV_PREFIX", default_value = server::policy::DEFAULT_KEY_ENV_PREFIX)]
        key_env_prefix: String,
        /// Endpoints' `gcp-credentials-file` may name only files inside this
        /// directory; without it, no credentials file is read.
        #[arg(long, env = "CROSSBAR_CREDENTIALS_DIR")]
        credentials_dir: Option<PathBuf>,
        /// Let endpoints that send credentials use plain http:// base URLs (local
        /// endpoints, simulators). Off: credentials go over https:// only.
        #[arg(
            long,
            env = "CROSSBAR_ALLOW_PLAIN_HTTP_CREDENTIALS",
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        allow_plain_http_credentials: bool,
        /// A browser origin (`https://ops.example.com`) whose pages may call the admin
        /// API, besides this server's own and the desktop app's; repeatable (the
        /// variable takes a comma-separated list).
        #[arg(
            long = "cors-origin",
            env = "CROSSBAR_CORS_ORIGINS",
            value_delimiter = ','
        )]
        cors_origins: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Configuration files and versions.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create an admin API token (printed once; stored as a hash).
    Token {
        #[arg(long, env = "CROSSBAR_DB")]
        db: PathBuf,
        #[arg(long)]
        name: String,
        /// viewer, operator, experimenter or admin.
        #[arg(long)]
        role: String,
    },
    /// A self-contained demo: simulated clouds, the router, the console, live traffic
    /// with scripted incidents. No cloud account needed.
    Demo(server::demo::DemoArgs),
}

/// Connection caps and timeouts (`server::limits`; README, "Limits and timeouts").
/// Durations take `ms`, `s` or `m` (a plain number is seconds); `0` turns a timeout
/// off.
#[derive(clap::Args, Debug)]
struct LimitArgs {
    /// A new connection must begin a request within this; an HTTP/1.1 request head
    /// (and the next one on a kept-alive connection) must arrive within it too.
    #[arg(long, env = "CROSSBAR_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, env = "CROSSBAR_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
    /// HTTP/2: a PING after this much silence; unanswered for as long again, the
    /// connection is closed.
    #[arg(long, env = "CROSSBAR_HTTP2_KEEP_ALIVE", default_value = "20s", value_parser = duration)]
    http2_keep_alive: Duration,
    /// A request body that sends nothing for this long fails.
    #[arg(long, env = "CROSSBAR_BODY_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    body_read_timeout: Duration,
    /// Open client connections, at most (lowered to fit the file-descriptor limit).
    #[arg(long, env = "CROSSBAR_MAX_CONNECTIONS", default_value_t = 20_000)]
    max_connections: usize,
    /// Open connections from one client address, at most; 0: no per-address cap.
    /// Behind a load balancer every client shares its addresses.
    #[arg(
        long,
        env = "CROSSBAR_MAX_CONNECTIONS_PER_IP",
        default_value_t = 10_000
    )]
    max_connections_per_ip: usize,
    /// On SIGTERM, how long open requests and streams may take to finish before they
    /// are cut (a second signal cuts at once).
    #[arg(long, env = "CROSSBAR_DRAIN_TIMEOUT", default_value = "25s", value_parser = duration)]
    drain_timeout: Duration,
    /// Open `/admin/v1/events` streams (consoles), at most.
    #[arg(long, env = "CROSSBAR_MAX_EVENT_STREAMS", default_value_t = 64)]
    max_event_streams: usize,
}

fn duration(text: &str) -> Result<Duration, String> {
    server::limits::parse_duration(text)
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            http2_keep_alive_interval: self.http2_keep_alive,
            body_read_timeout: self.body_read_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            drain_timeout: self.drain_timeout,
            max_event_streams: self.max_event_streams,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file with the router's rules; lists every problem.
    Validate { file: PathBuf },
    /// Print the store's active (or a given) version as TOML.
    Export {
        #[arg(long, env = "CROSSBAR_DB")]
        db: PathBuf,
        #[arg(long)]
        version: Option<i64>,
    },
}

mod allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. } | Command::Demo(_)) {
        // Long-running: restarts with the allocator's settings unless they are set.
        allocator::ensure_tuned();
    }
    // Logs go to stderr; stdout carries only the lines scripts read. Whatever
    // CROSSBAR_LOG asks for, targets that print credentials stay capped (logs.rs).
    {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let requested = std::env::var("CROSSBAR_LOG").unwrap_or_else(|_| "info".into());
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(server::logs::filter(&requested)),
            )
            .init();
    }

    if let Command::Demo(args) = &cli.command {
        // The demo's simulated identity services stand in for the cloud's: point the
        // SDKs at them before any thread exists (the environment is process-wide).
        server::demo::prepare_environment(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("crossbar: error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A plain message, not a backtrace: these errors are about the setup, not the code.
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crossbar: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            db,
            publish_config,
            listen,
            ui_dir,
            no_console,
            workers,
            upstream_http1_when_idle,
            key_env_prefix,
            credentials_dir,
            allow_plain_http_credentials,
            cors_origins,
            limits,
        } => {
            let config = config.map(|p| ConfigFile::load(&p)).transpose()?;
            let server = Server::start(Options {
                listen,
                ui_dir: (!no_console).then_some(ui_dir),
                db,
                config,
                publish_file: publish_config,
                bootstrap_admin_token: std::env::var("CROSSBAR_ADMIN_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty()),
                workers,
                upstream_http1_when_idle,
                security: Security {
                    credentials: CredentialPolicy {
                        key_env_prefix,
                        credentials_dir,
                        allow_plain_http_credentials,
                    },
                    cors_origins,
                },
                limits: limits.limits(),
            })
            .await?;
            let addr = server.local_addr()?;
            println!("crossbar: listening on http://{addr}/");
            if !no_console {
                println!("crossbar: console at http://{addr}/");
            }
            let (first, second) = shutdown_signals();
            server.run_until(first, second).await
        }
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => {
            let file = ConfigFile::load(&file)?;
            let config = file.validate()?;
            println!(
                "{}: valid ({} endpoints, {} features, {} teams)",
                file.path.display(),
                config.endpoints().len(),
                config.features().len(),
                config.raw().teams.len()
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Export { db, version },
        } => {
            let store = Store::open(&db).await?;
            let v = match version {
                Some(v) => store.config_version(v).await?,
                None => store.active_config().await?,
            }
            .ok_or_else(|| anyhow::anyhow!("no such configuration version in {}", db.display()))?;
            println!(
                "# Crossbar configuration version {} by {} — {}",
                v.version, v.author, v.message
            );
            print!("{}", server::file::to_toml(&v.config)?);
            Ok(())
        }
        Command::Token { db, name, role } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "`{role}` is not a role: use viewer, operator, experimenter or admin"
                )
            })?;
            let store = Store::open(&db).await?;
            let (_, token) = store.create_admin_token(&name, role).await?;
            println!("{token}");
            Ok(())
        }
        Command::Demo(args) => server::demo::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a request alone takes HTTP/1.1 to an h2c endpoint is the serve
    /// command's transport setting, off unless asked for.
    #[test]
    fn serve_sends_a_request_alone_over_http1_only_when_asked() {
        // Set in the test's environment, the variable would answer for the flag.
        if std::env::var_os("CROSSBAR_UPSTREAM_HTTP1_WHEN_IDLE").is_some() {
            return;
        }
        let when_idle = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Serve {
                upstream_http1_when_idle,
                ..
            } => upstream_http1_when_idle,
            _ => unreachable!("a serve command"),
        };
        assert!(!when_idle(&["crossbar", "serve"]));
        // (The limits' flags are checked below.)
        assert!(when_idle(&[
            "crossbar",
            "serve",
            "--upstream-http1-when-idle"
        ]));
    }

    /// The credential policy and the CORS allow-list are start-up flags, with safe
    /// defaults: keys only from `CROSSBAR_KEY_*`, no credentials file, https only, no
    /// origin besides the desktop app's.
    #[test]
    fn security_settings_are_serve_flags_with_safe_defaults() {
        for var in [
            "CROSSBAR_KEY_ENV_PREFIX",
            "CROSSBAR_CREDENTIALS_DIR",
            "CROSSBAR_ALLOW_PLAIN_HTTP_CREDENTIALS",
            "CROSSBAR_CORS_ORIGINS",
        ] {
            if std::env::var_os(var).is_some() {
                return;
            }
        }
        let parsed = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Serve {
                key_env_prefix,
                credentials_dir,
                allow_plain_http_credentials,
                cors_origins,
                ..
            } => (
                key_env_prefix,
                credentials_dir,
                allow_plain_http_credentials,
                cors_origins,
            ),
            _ => unreachable!("a serve command"),
        };
        assert_eq!(
            parsed(&["crossbar", "serve"]),
            ("CROSSBAR_KEY_".to_owned(), None, false, Vec::new())
        );
        assert_eq!(
            parsed(&[
                "crossbar",
                "serve",
                "--key-env-prefix",
                "ACME_LLM_",
                "--credentials-dir",
                "/etc/crossbar/gcp",
                "--allow-plain-http-credentials",
                "--cors-origin",
                "https://a.example",
                "--cors-origin",
                "https://b.example",
            ]),
            (
                "ACME_LLM_".to_owned(),
                Some(PathBuf::from("/etc/crossbar/gcp")),
                true,
                vec![
                    "https://a.example".to_owned(),
                    "https://b.example".to_owned()
                ]
            )
        );
    }

    /// The flags' defaults are the library's documented ones.
    #[test]
    fn serve_takes_the_documented_limits_by_default_and_each_as_a_flag() {
        let limits = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Serve { limits, .. } => limits.limits(),
            _ => unreachable!("a serve command"),
        };
        if std::env::vars().all(|(k, _)| !k.starts_with("CROSSBAR_")) {
            assert_eq!(limits(&["crossbar", "serve"]), Limits::default());
        }
        let set = limits(&[
            "crossbar",
            "serve",
            "--header-read-timeout",
            "2s",
            "--idle-timeout",
            "500ms",
            "--drain-timeout",
            "0",
            "--max-connections-per-ip",
            "8",
        ]);
        assert_eq!(set.header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.idle_timeout, Duration::from_millis(500));
        assert_eq!(set.drain_timeout, Duration::ZERO);
        assert_eq!(set.max_connections_per_ip, 8);
        assert!(Cli::try_parse_from(["crossbar", "serve", "--idle-timeout", "soon"]).is_err());
    }
}
