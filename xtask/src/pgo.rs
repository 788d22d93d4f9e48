//! `cargo xtask pgo`: a profile-guided build of `crossbar`, the binary to ship and
//! the one `cargo xtask bench` measures.
//!
//! At one request at a time the gateway's code runs cold: between requests the
//! simulator and the load generator have had the cores, and its ~90k instructions a
//! request ran at well under one per cycle. Laying the hot paths out together and
//! the cold ones aside, as a profile says, is what helps code like that; on this
//! machine it took the serving thread from 90.0k to 70.9k instructions a request
//! (BENCHMARKS.md).
//!
//! 1. An instrumented build (`-Cprofile-generate`) in `<target>/pgo/generate`.
//! 2. Training, on the simulators, so that no customer's path is left cold:
//!    - `crossbar demo` under load on every one of its features: Bedrock through the
//!      AWS SDK (provisioned with on-demand spillover), Vertex Gemini and Claude on
//!      Vertex with workload identity federation, Azure OpenAI with a key, an A/B
//!      experiment, an EU-bound feature; streamed and whole answers;
//!    - `crossbar serve` on one OpenAI-compatible endpoint over h2c, the benchmark's
//!      path: whole answers at concurrency 1 and 32, streams at 1 and 16.
//!
//!    Each process is stopped with SIGTERM and writes its profile as it exits.
//! 3. The profiles merged by `llvm-profdata` (rustup's `llvm-tools`, added if
//!    missing).
//! 4. The optimised build (`-Cprofile-use`) in `<target>/pgo/use`, linked with its
//!    relocations kept.
//! 5. BOLT (LLVM's post-link optimiser, Debian's `bolt-19`, installed if missing):
//!    an instrumented copy of the optimised binary trained on the same workloads,
//!    then the binary rewritten with the hot functions together and the cold code
//!    moved aside, to `<target>/pgo/crossbar`. The profile-guided build arranges
//!    blocks within each function; BOLT, after linking, also orders the whole
//!    program's functions by how they call each other and splits the cold blocks
//!    out of hot functions: what an instruction cache cold at every request feels. On
//!    this machine it took 13 % (~13 µs a request) off the serving thread at c=1
//!    (BENCHMARKS.md).
//!
//! Both builds pass `--target <host>`, so the flags reach the program's crates but
//! not build scripts and proc macros. rustc tracks the profile as an input: a new
//! one rebuilds every crate (~8 minutes on 2 cores). So training is skipped while
//! the profile is newer than the instrumented binary, that is while the code it was
//! trained on is unchanged; BOLT's likewise, against the optimised binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::setup::{host_triple, llvm_bolt, llvm_profdata};
use crate::workload::{
    Load, Upstream, start_gateway, start_reading, start_sim, write_gateway_config,
};
use crate::workspace::{Workspace, run, step};

/// The demo's features and the team each belongs to (server/src/demo.rs).
const DEMO_FEATURES: [(&str, &str); 4] = [
    ("summarize", "docs"),
    ("recap", "meetings"),
    ("search-answer", "search"),
    ("extract", "compliance"),
];

/// `cargo xtask pgo`: the release simulator (the training's upstream and load
/// generator), then [`build`]; prints where the binary is.
pub fn pgo(ws: &Workspace) -> anyhow::Result<()> {
    step("pgo: release build of crossbar-sim", || {
        run(&mut ws.cargo(["build", "--release", "-p", "sim", "--bin", "crossbar-sim"]))
    })?;
    let crossbar = build(ws, &ws.target_dir.join("release/crossbar-sim"))?;
    println!("{}", crossbar.display());
    Ok(())
}

/// Builds, trains and rebuilds `crossbar`; returns the optimised binary.
pub fn build(ws: &Workspace, sim_bin: &Path) -> anyhow::Result<PathBuf> {
    let host = host_triple()?;
    let root = ws.target_dir.join("pgo");
    let profiles = root.join("profiles");
    let instrumented = step("pgo: instrumented build of crossbar", || {
        cargo_build(
            ws,
            &root.join("generate"),
            &[&format!("-Cprofile-generate={}", profiles.display())],
            &host,
        )
    })?;
    let merged = root.join("crossbar.profdata");
    if !trained_on(&merged, &instrumented) {
        let profdata = step("pgo: llvm-profdata", llvm_profdata)?;
        step(
            "pgo: training (crossbar demo, then the benchmark's workload)",
            || {
                clear(&profiles)?;
                let file = profiles.join("crossbar-%p-%m.profraw");
                train(&instrumented, sim_bin, &root.join("train"), Some(&file))
            },
        )?;
        step("pgo: merge the profiles", || {
            let mut merge_raw = Command::new(&profdata);
            merge_raw.arg("merge");
            merge(merge_raw, &profiles, &merged)
        })?;
    }
    let optimised = step("pgo: optimised build of crossbar", || {
        cargo_build(
            ws,
            &root.join("use"),
            &[
                &format!("-Cprofile-use={}", merged.display()),
                // Kept in the binary for BOLT, which moves functions only with them.
                "-Clink-arg=-Wl,--emit-relocs",
            ],
            &host,
        )
    })?;
    bolt(&optimised, sim_bin, &root)
}

/// What BOLT does with its profile: the hot blocks of each function laid out in the
/// order they run, the hot functions together (`cdsort`, for the instruction cache
/// and TLB), the cold parts of functions moved away, identical functions folded.
const BOLT_FLAGS: &[&str] = &[
    "-reorder-blocks=ext-tsp",
    "-reorder-functions=cdsort",
    "-split-functions",
    "-split-all-cold",
    "-split-eh",
    "-icf=1",
    "-use-gnu-stack",
];

/// Lays `optimised` out with BOLT: an instrumented copy trained on the same
/// workloads, then the rewrite, to `<root>/crossbar`, which it returns. Like the
/// profile, BOLT's training is reused while it is newer than `optimised`, and the
/// rewrite while it is newer than both.
fn bolt(optimised: &Path, sim_bin: &Path, root: &Path) -> anyhow::Result<PathBuf> {
    let tools = step("pgo: llvm-bolt", llvm_bolt)?;
    let dir = root.join("bolt");
    let profiles = dir.join("profiles");
    let fdata = dir.join("crossbar.fdata");
    if !trained_on(&fdata, optimised) {
        let instrumented = dir.join("crossbar-instrumented");
        step("pgo: BOLT's instrumented copy", || {
            clear(&profiles)?;
            run(Command::new(tools.join("llvm-bolt"))
                .arg(optimised)
                .arg("-instrument")
                .arg("-o")
                .arg(&instrumented)
                .arg(format!(
                    "-instrumentation-file={}",
                    profiles.join("crossbar").display()
                ))
                .arg("-instrumentation-file-append-pid"))
        })?;
        step("pgo: training again, for BOLT", || {
            train(&instrumented, sim_bin, &dir.join("train"), None)
        })?;
        step("pgo: merge BOLT's profiles", || {
            merge(Command::new(tools.join("merge-fdata")), &profiles, &fdata)
        })?;
    }
    let shipped = root.join("crossbar");
    if is_newer(&shipped, &fdata) && is_newer(&shipped, optimised) {
        eprintln!("pgo: {} is up to date", shipped.display());
        return Ok(shipped);
    }
    step("pgo: BOLT's layout of crossbar", || {
        let partial = partial(&shipped);
        run(Command::new(tools.join("llvm-bolt"))
            .arg(optimised)
            .arg("-o")
            .arg(&partial)
            .arg(format!("-data={}", fdata.display()))
            .args(BOLT_FLAGS))?;
        std::fs::rename(&partial, &shipped)
            .with_context(|| format!("cannot write {}", shipped.display()))
    })?;
    Ok(shipped)
}

/// Empties (creates) `dir`, where a training's processes write their profiles.
fn clear(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Whether `profile` was trained on `binary` as it is now (it is newer), and so is
/// reused; says so when it is.
fn trained_on(profile: &Path, binary: &Path) -> bool {
    let fresh = is_newer(profile, binary);
    if fresh {
        eprintln!(
            "pgo: {} is newer than {}: no training",
            profile.display(),
            binary.display()
        );
    }
    fresh
}

/// Where `path` is written before it is renamed into place: an interrupted step
/// never leaves a file that looks newer than what it was made from.
fn partial(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", path.display()))
}

/// Whether `a` exists and was modified after `b`.
fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a > b)
}

/// Merges the profiles in `profiles` into `merged` with `tool`, a command that takes
/// `-o OUTPUT` and the inputs (`llvm-profdata merge`, `merge-fdata`).
fn merge(mut tool: Command, profiles: &Path, merged: &Path) -> anyhow::Result<()> {
    let raw: Vec<PathBuf> = std::fs::read_dir(profiles)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    // One per trained process: a process that did not exit cleanly wrote none.
    if raw.len() < 2 {
        bail!(
            "expected a profile from each of the 2 trained processes in {}, found {}",
            profiles.display(),
            raw.len()
        );
    }
    let partial = partial(merged);
    run(tool.arg("-o").arg(&partial).args(&raw))?;
    std::fs::rename(&partial, merged).with_context(|| format!("cannot write {}", merged.display()))
}

/// `cargo build --release` of `crossbar` into `target_dir` with `rustflags`; returns
/// the binary.
fn cargo_build(
    ws: &Workspace,
    target_dir: &Path,
    rustflags: &[&str],
    host: &str,
) -> anyhow::Result<PathBuf> {
    let mut cargo = ws.cargo([
        "build",
        "--release",
        "-p",
        "server",
        "--bin",
        "crossbar",
        "--target",
        host,
    ]);
    // The encoded form keeps a path with spaces in one argument, and wins over any
    // RUSTFLAGS of the caller's.
    cargo
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"));
    run(&mut cargo)?;
    Ok(target_dir.join(host).join("release/crossbar"))
}

/// Runs an instrumented `crossbar` through the training workloads. An LLVM-
/// instrumented one writes its profiles where `llvm_profile_file` says; BOLT's
/// copy where it was told when it was made.
fn train(
    crossbar: &Path,
    sim_bin: &Path,
    work: &Path,
    llvm_profile_file: Option<&Path>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(work)?;
    let instrumented = |command: &mut Command| {
        if let Some(file) = llvm_profile_file {
            command.env("LLVM_PROFILE_FILE", file);
        }
    };

    // Every provider adapter, through the demo's simulated clouds.
    {
        let mut demo = Command::new(crossbar);
        demo.args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--no-console",
            "--history-days",
            "0",
            "--no-incidents",
            "--rps",
            "20",
        ])
        .env("CROSSBAR_LOG", "warn");
        instrumented(&mut demo);
        let (demo, lines) = start_reading("crossbar demo (instrumented)", demo, |l| {
            l == "crossbar demo: ready"
        })?;
        let base = lines
            .iter()
            .find_map(|l| l.strip_prefix("crossbar demo: listening on "))
            .context("the demo printed no address")?
            .trim_end_matches('/')
            .to_owned();
        let key = |team: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("crossbar demo: key {team} ")))
                .map(str::to_owned)
                .with_context(|| format!("the demo printed no key for team {team}"))
        };
        let mut runs = Vec::new();
        for (feature, team) in DEMO_FEATURES {
            let key = key(team)?;
            runs.push((feature, key.clone(), false));
            runs.push((feature, key, true));
        }
        // All features at once: the simulated clouds answer in about half a second.
        std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .iter()
                .map(|(feature, key, stream)| {
                    let load = Load {
                        model: feature,
                        key: Some(key),
                        ..Load::gateway(sim_bin, &base)
                    };
                    scope.spawn(move || load.run(8, None, "8s", *stream, 16))
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a load thread panicked"))?
                    .map(drop)
            })
        })?;
        drop(demo);
    }

    // The benchmark's path: one OpenAI-compatible endpoint over h2c, and HTTP/1.1
    // for a request alone on its thread (`--upstream-http1-when-idle`).
    let (sim, upstream) = start_sim(sim_bin, work)?;
    let config = write_gateway_config(work, &upstream)?;
    let mut serve = Command::new(crossbar);
    instrumented(&mut serve);
    let (gateway, base) = start_gateway(
        "crossbar serve (instrumented)",
        serve,
        &config,
        &work.join("train.db"),
        Upstream::Shipped,
    )?;
    let load = Load::gateway(sim_bin, &base);
    load.run(1, Some(2_000), "60s", false, 16)?;
    load.run(32, None, "5s", false, 16)?;
    load.run(1, Some(300), "60s", true, 16)?;
    load.run(16, Some(2_000), "60s", true, 16)?;
    drop(gateway);
    drop(sim);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_profile_is_reused_only_while_it_is_newer_than_the_instrumented_build() {
        let dir = std::env::temp_dir().join(format!("xtask-pgo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (profile, binary) = (dir.join("crossbar.profdata"), dir.join("crossbar"));
        let touch = |path: &Path, at: SystemTime| {
            std::fs::File::create(path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        };
        let now = SystemTime::now();
        touch(&binary, now);
        assert!(!is_newer(&profile, &binary), "no profile yet: train");
        touch(&profile, now + Duration::from_secs(60));
        assert!(
            is_newer(&profile, &binary),
            "trained after the build: reuse"
        );
        touch(&binary, now + Duration::from_secs(120));
        assert!(!is_newer(&profile, &binary), "rebuilt since: train again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
