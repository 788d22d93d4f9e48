//! `crossbar`: the Crossbar server binary.
//!
//! `crossbar serve` prints `crossbar: console at http://ADDR/` on stdout once it is
//! listening, so scripts and tests can start it on port 0 and read the address back.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use server::{Server, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "crossbar", version = router_core::VERSION, about = "Crossbar: multi-cloud LLM routing layer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the console (and, as they land, the gateway and admin APIs).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "CROSSBAR_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The built console (`cargo xtask build` writes it to `ui/dist`).
        #[arg(long, env = "CROSSBAR_UI_DIR", default_value = "ui/dist")]
        ui_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // Logs go to stderr; stdout carries only the lines scripts read.
    tracing_subscriber::fmt()
        // Whatever level CROSSBAR_LOG asks for, targets that print credentials stay capped.
        .with_env_filter(EnvFilter::new(router_core::logging::directives(
            &std::env::var("CROSSBAR_LOG").unwrap_or_else(|_| "info".into()),
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // A plain message, not a backtrace: these errors are about the setup, not the code.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crossbar: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen, ui_dir } => {
            let server = Server::bind(listen, ui_dir).await?;
            println!("crossbar: console at http://{}/", server.local_addr()?);
            server.run(shutdown_signal()).await
        }
    }
}
