//! The `crossbar-sim` command: serve simulated endpoints, check a config, or generate load.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the simulators and the load generator spend and measure real time: that is their job"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sim::load::{self, LoadSpec, Mode};
use sim::{EndpointSpec, Kind, Sim, SimConfig};

#[derive(Parser)]
#[command(
    name = "crossbar-sim",
    version,
    about = "Simulated Bedrock, Vertex AI, OpenAI and identity endpoints with fault injection, and a load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the endpoints of a config file and/or the command line until Ctrl-C.
    Serve(ServeArgs),
    /// Validate a config file and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Send chat-completion traffic and report latency, TTFT and errors.
    Load(LoadArgs),
    /// Relay TCP connections to another address, byte for byte: the least any proxy
    /// hop costs on this machine (the gateway benchmark's floor).
    Relay {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Address to relay to.
        #[arg(long)]
        to: SocketAddr,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file declaring endpoints (see the `sim::config` docs and sim/demo.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// An extra endpoint: KIND:NAME or KIND:NAME@ADDR (e.g. openai:azure-east@127.0.0.1:0).
    #[arg(long = "endpoint", value_name = "KIND:NAME[@ADDR]")]
    endpoints: Vec<String>,
    /// Address of the process-wide control API (overrides the config's `control`).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Seed for replies and fault rolls (overrides the config's `seed`).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args)]
struct LoadArgs {
    /// Chat completions URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/chat/completions")]
    url: String,
    /// Feature (through Crossbar) or model (directly).
    #[arg(long)]
    model: String,
    /// Bearer key.
    #[arg(long, env = "CROSSBAR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long)]
    stream: bool,
    /// Open loop: requests per second.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: requests in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long to run (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(
        long,
        default_value = "Summarise the incident review for the on-call team."
    )]
    prompt: String,
    /// Distinct `user` values to cycle through.
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Speak HTTP/2 without TLS from the first byte (h2c, prior knowledge), as the
    /// gateway does to endpoints with `http2_prior_knowledge`.
    #[arg(long)]
    http2_prior_knowledge: bool,
    /// Per-request timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{s}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid duration"))
}

fn parse_endpoint(s: &str) -> anyhow::Result<EndpointSpec> {
    let (kind, rest) = s
        .split_once(':')
        .with_context(|| format!("`{s}`: expected KIND:NAME[@ADDR]"))?;
    let kind: Kind = kind.parse().map_err(anyhow::Error::msg)?;
    let (name, addr) = match rest.split_once('@') {
        Some((name, addr)) => (
            name,
            Some(
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("`{addr}` is not an address like 127.0.0.1:0"))?,
            ),
        ),
        None => (rest, None),
    };
    let mut spec = EndpointSpec::new(name, kind);
    if let Some(addr) = addr {
        spec.listen = addr;
    }
    Ok(spec)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sim=info,crossbar_sim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crossbar-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let config = SimConfig::load(&config)?;
            println!(
                "crossbar-sim: config ok, {} endpoints",
                config.endpoints.len()
            );
            Ok(())
        }
        Command::Serve(args) => serve(args).await,
        Command::Relay { listen, to } => relay(listen, to).await,
        Command::Load(args) => {
            let mode = match (args.rate, args.concurrency) {
                (Some(rate), None) => Mode::Rate(rate),
                (None, Some(c)) => Mode::Concurrency(c),
                (None, None) => bail!("give --rate (open loop) or --concurrency (closed loop)"),
                (Some(_), Some(_)) => unreachable!("clap rejects both"),
            };
            let report = load::run(LoadSpec {
                url: args.url,
                model: args.model,
                api_key: args.api_key,
                stream: args.stream,
                mode,
                duration: args.duration,
                max_requests: args.requests,
                max_tokens: args.max_tokens,
                prompt: args.prompt,
                users: args.users,
                timeout: args.timeout,
                http2_prior_knowledge: args.http2_prior_knowledge,
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
    }
}

/// Accepts connections on `listen` and copies bytes both ways to `to` until either
/// side closes; prints `crossbar-sim: relay at http://ADDR` once listening.
async fn relay(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("crossbar-sim: relay at http://{}", listener.local_addr()?);
    loop {
        let (mut client, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        tokio::spawn(async move {
            let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await else {
                return;
            };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig {
            seed: 0,
            control: None,
            endpoints: Vec::new(),
        },
    };
    for e in &args.endpoints {
        config.endpoints.push(parse_endpoint(e)?);
    }
    if args.control.is_some() {
        config.control = args.control;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if config.endpoints.is_empty() {
        bail!("no endpoints: give --config FILE or --endpoint KIND:NAME");
    }
    let sim = Sim::start(config).await?;
    for ep in sim.endpoints() {
        println!(
            "crossbar-sim: endpoint {} ({}) at {}",
            ep.name(),
            ep.kind().as_str(),
            ep.url()
        );
    }
    if let Some(url) = sim.control_url() {
        println!("crossbar-sim: control at {url}");
    }
    println!("crossbar-sim: ready");
    shutdown_signal().await;
    eprintln!("crossbar-sim: shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn endpoints_parse_from_the_command_line() {
        let e = parse_endpoint("openai:azure-east@127.0.0.1:0").unwrap();
        assert_eq!((e.kind, e.name.as_str()), (Kind::Openai, "azure-east"));
        assert!(parse_endpoint("azure:x").is_err());
        assert!(parse_endpoint("openai").is_err());
    }
}
