//! `cargo xtask`: the project's automation, written in Rust so it runs wherever cargo
//! does (no make, no shell-script dialects).
//!
//! - `setup`: installs what the build and the tests need and is missing — Debian
//!   packages (WebKitGTK, Chromium, Xvfb...), the wasm32 target, the `wasm-bindgen` CLI
//!   pinned to Cargo.lock, and a virtualenv with the pinned official Python clients
//!   (`tests/python/requirements.txt`). Idempotent and cheap when nothing is missing.
//! - `build`: the console (wasm + `wasm-bindgen` into `ui/dist`), the `crossbar` and
//!   `crossbar-sim` binaries, and the desktop app (which embeds `ui/dist`).
//! - `test`: setup, build, every unit and integration test, then the end-to-end tests
//!   that drive the console in Chromium and in the desktop window.
//! - `demo`: setup, build, then `crossbar demo` (simulated clouds, router, console,
//!   live traffic with scripted incidents) until Ctrl-C.
//! - `pgo`: the profile-guided release build of `crossbar` (instrumented build,
//!   training on the simulators, optimised build, then laid out by BOLT): the binary
//!   to ship.
//! - `bench`: release builds (plain and profile-guided), then the gateway against
//!   direct-to-simulator (latency, throughput, CPU per request, stream TTFT, memory
//!   with 10,000 open streams) and the router-core micro-benchmarks.
//!
//! Each step prints its name and how long it took.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "xtask builds, runs and measures real processes in real time"
)]

mod bench;
mod build;
mod demo;
mod pgo;
mod setup;
mod testing;
mod workload;
mod workspace;

use std::process::ExitCode;

use workspace::Workspace;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup   install what is missing: Debian packages, the wasm32 target, wasm-bindgen-cli,
          the official Python clients (a virtualenv in the target directory)
  build   build the console (ui/dist), crossbar, crossbar-sim and crossbar-desktop
  test    setup + build, then all tests, including the browser and desktop end-to-end tests
  demo    setup + build, then `crossbar demo`: simulated clouds, router, console, live traffic
  pgo     the profile-guided, BOLT-laid-out release build of crossbar (the binary to ship); prints its path
  bench   release builds (plain and pgo), then gateway vs. direct benchmarks and micro-benchmarks

The target directory is cargo's (CARGO_TARGET_DIR is respected).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.as_slice() {
        [command, rest @ ..] if command == "demo" => (command.as_str(), rest),
        [command] => (command.as_str(), &[][..]),
        [] => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!(
                "error: expected exactly one command (only `demo` takes arguments)\n\n{USAGE}"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "setup" => Workspace::locate().and_then(|ws| setup::setup(&ws)),
        "build" => Workspace::locate().and_then(|ws| build::build(&ws).map(drop)),
        "test" => Workspace::locate().and_then(|ws| testing::test(&ws)),
        "demo" => Workspace::locate().and_then(|ws| demo::demo(&ws, rest)),
        "pgo" => Workspace::locate().and_then(|ws| pgo::pgo(&ws)),
        "bench" => Workspace::locate().and_then(|ws| bench::bench(&ws)),
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {command}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
