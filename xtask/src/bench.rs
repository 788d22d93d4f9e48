//! `cargo xtask bench`: the gateway against direct-to-simulator, on this machine, in
//! one run, with release builds. Prints a table and writes it to
//! `artifacts/bench.json` and the figures section of BENCHMARKS.md is built from it.
//!
//! The gateway measured is the binary to ship: the profile-guided, BOLT-laid-out
//! build of `xtask pgo`. The plain release build runs beside it at concurrency 1
//! and 32 and in the instruction count (the `without_pgo` figures), so what the
//! profiles buy is measured in the same run.
//!
//! What it measures (all through the real binaries over loopback HTTP):
//! 1. latency at concurrency 1 (15 rounds of 1,000 requests a target, the order
//!    rotated from round to round; each figure the median of its rounds): p50 / p99
//!    direct to the simulated OpenAI endpoint vs.
//!    through `crossbar serve` — the difference is what the gateway adds — and vs.
//!    through `crossbar-sim relay`, a byte-for-byte TCP relay: what any proxy hop
//!    costs on this machine, the floor under the gateway's figure; and vs. direct
//!    over h2c, the protocol the gateway speaks upstream under load, slower than
//!    HTTP/1.1 here (the target is against HTTP/1.1 direct); and the same gateway
//!    binary with every request over h2c (without `--upstream-http1-when-idle`,
//!    which sends a request that is alone over HTTP/1.1);
//! 2. throughput at concurrency 32, direct and through the gateway, and the gateway's
//!    CPU time per request (user + system, from /proc, over each run): three runs of
//!    10 s, reported as the median with the range (on this 2-core VM the same binary
//!    varies by ±10 % from run to run);
//! 3. instructions per request through the gateway at concurrency 1, counted by
//!    callgrind (when valgrind is installed): unlike the timings, the same build gives
//!    the same count on any hour of this VM;
//! 4. TTFT overhead for streams at concurrency 1 (7 rounds of 200 streams a side,
//!    the order alternated; medians of the rounds);
//! 5. memory (peak RSS of `crossbar`) with 10,000 streams open at once: the
//!    simulator emits slowly so the streams stay open; upstream they share h2c
//!    connections (`http2_prior_knowledge`), downstream each is its own HTTP/1.1
//!    connection.
//! 6. the spend query over one million ledger rows (the console's spend view reads
//!    it; the overview reads memory only);
//! 7. the router-core micro-benchmarks (criterion): one routing decision, recording
//!    one attempt.
//!
//! The load generator is `crossbar-sim load` (closed loop), a separate process.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::workload::{
    Load, Upstream, address_after_at, start, start_gateway, start_sim, write_gateway_config,
};
use crate::workspace::{Workspace, run, step};

/// CPU time (user + system) of a process so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// Interleaved rounds of closed-loop runs at concurrency 1: each round runs every
/// target once, in an order rotated from round to round, so that no target always
/// follows another and each difference pairs runs taken seconds apart (the
/// machine's speed drifts within seconds by more than the differences measured).
/// Each round keeps every target's (p50, p99) in milliseconds.
struct Rounds<const N: usize>(Vec<[(f64, f64); N]>);

impl<const N: usize> Rounds<N> {
    /// `rounds` rounds of `requests` requests a target, streamed or not; the
    /// percentiles of the report's `figure` (`"latency"` or `"ttft"`).
    fn run(
        loads: [&Load; N],
        rounds: usize,
        requests: u64,
        stream: bool,
        figure: &str,
    ) -> anyhow::Result<Self> {
        let mut all = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut figures = [(0.0, 0.0); N];
            for k in 0..N {
                let t = (round + k) % N;
                let report = loads[t].run(1, Some(requests), "60s", stream, 16)?;
                let q = |name: &str| ms(&report[figure][name]);
                figures[t] = (q("p50_ms"), q("p99_ms"));
            }
            all.push(figures);
        }
        Ok(Rounds(all))
    }

    /// Target `t`'s p50, the median over the rounds.
    fn p50(&self, t: usize) -> f64 {
        median(&self.0.iter().map(|r| r[t].0).collect::<Vec<_>>())
    }

    /// Target `t`'s p99, the median over the rounds.
    fn p99(&self, t: usize) -> f64 {
        median(&self.0.iter().map(|r| r[t].1).collect::<Vec<_>>())
    }

    /// What `t` adds to `base`'s p50, round by round.
    fn added(&self, t: usize, base: usize) -> Vec<f64> {
        self.0.iter().map(|r| r[t].0 - r[base].0).collect()
    }

    /// What `t` adds to `base`'s p99, round by round.
    fn added_p99(&self, t: usize, base: usize) -> Vec<f64> {
        self.0.iter().map(|r| r[t].1 - r[base].1).collect()
    }
}

/// The median of a few figures.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn bench(ws: &Workspace) -> anyhow::Result<()> {
    step("bench: release build of crossbar and crossbar-sim", || {
        run(&mut ws.cargo(["build", "--release", "-p", "server", "-p", "sim", "--bins"]))
    })?;
    let release = ws.target_dir.join("release");
    // What is measured is the binary to ship, the profile-guided one; the plain
    // release build runs beside it at c=1 and c=32 and in the instruction count.
    let plain = release.join("crossbar");
    let sim_bin = release.join("crossbar-sim");
    let crossbar = crate::pgo::build(ws, &sim_bin)?;
    let work = ws.target_dir.join("bench");
    std::fs::create_dir_all(&work)?;

    let (sim, upstream) = start_sim(&sim_bin, &work)?;

    let (relay, line) = start(
        "crossbar-sim relay",
        {
            let mut c = Command::new(&sim_bin);
            c.args(["relay", "--to", upstream.trim_start_matches("http://")]);
            c
        },
        |l| l.contains("relay at"),
    )?;
    let relayed = address_after_at(&line);

    let config = write_gateway_config(&work, &upstream)?;
    let gateway_on = |name, binary: &Path, db: &str, how| {
        start_gateway(name, Command::new(binary), &config, &work.join(db), how)
    };
    let (gateway, base) = gateway_on("crossbar", &crossbar, "bench.db", Upstream::Shipped)?;
    let gw_pid = gateway.pid();
    // The same binary with every request over h2c, at c=1 only: what
    // `--upstream-http1-when-idle` saves a request that is alone.
    let (h2c_only_gateway, h2c_only_base) = gateway_on(
        "crossbar (h2c only)",
        &crossbar,
        "bench-h2c-only.db",
        Upstream::H2cOnly,
    )?;
    let (plain_gateway, plain_base) = gateway_on(
        "crossbar (without pgo)",
        &plain,
        "bench-plain.db",
        Upstream::Shipped,
    )?;
    let plain_pid = plain_gateway.pid();

    let direct = Load::direct(&sim_bin, &upstream);
    // The same endpoint over h2c, as the gateway reaches it. Over h2c the simulator
    // and the load generator's h2 client answer more slowly than over HTTP/1.1, so
    // the gateway's figure against this baseline is a lower bound of its own share.
    let direct_h2c = Load {
        h2c: true,
        ..Load::direct(&sim_bin, &upstream)
    };
    let relay_load = Load::direct(&sim_bin, &relayed);
    let through = Load::gateway(&sim_bin, &base);
    let through_plain = Load::gateway(&sim_bin, &plain_base);
    let through_h2c_only = Load::gateway(&sim_bin, &h2c_only_base);

    // Warm-up: connections, caches, the SQLite file.
    direct.run(4, Some(500), "30s", false, 16)?;
    through.run(4, Some(500), "30s", false, 16)?;
    through_plain.run(4, Some(500), "30s", false, 16)?;
    through_h2c_only.run(4, Some(500), "30s", false, 16)?;

    let mut results = serde_json::Map::new();
    step(
        "bench: latency at concurrency 1 (15 interleaved rounds)",
        || {
            // Many short rounds ([`Rounds`]), each figure the median of its rounds:
            // direct alone went from 0.105 to 0.146 ms between two rounds.
            // The targets, in the order of `loads`.
            const DIRECT: usize = 0;
            const DIRECT_H2C: usize = 1;
            const RELAY: usize = 2;
            const GATEWAY: usize = 3;
            const PLAIN: usize = 4;
            const H2C_ONLY: usize = 5;
            let loads = [
                &direct,
                &direct_h2c,
                &relay_load,
                &through,
                &through_plain,
                &through_h2c_only,
            ];
            let rounds = Rounds::run(loads, 15, 1000, false, "latency")?;
            let (p50, p99) = (|t| rounds.p50(t), |t| rounds.p99(t));
            let added = |t, base| rounds.added(t, base);
            results.insert(
                "c1".into(),
                json!({
                    "direct_p50_ms": p50(DIRECT), "direct_p99_ms": p99(DIRECT),
                    "relay_p50_ms": p50(RELAY), "relay_p99_ms": p99(RELAY),
                    "gateway_p50_ms": p50(GATEWAY), "gateway_p99_ms": p99(GATEWAY),
                    "relay_added_p50_ms": median(&added(RELAY, DIRECT)),
                    "added_p50_ms": median(&added(GATEWAY, DIRECT)),
                    "added_p50_ms_runs": added(GATEWAY, DIRECT),
                    "added_p99_ms": p99(GATEWAY) - p99(DIRECT),
                    "without_pgo_p50_ms": p50(PLAIN),
                    "without_pgo_added_p50_ms": median(&added(PLAIN, DIRECT)),
                    "without_pgo_added_p50_ms_runs": added(PLAIN, DIRECT),
                    "direct_h2c_p50_ms": p50(DIRECT_H2C),
                    "added_over_direct_h2c_p50_ms": median(&added(GATEWAY, DIRECT_H2C)),
                    "added_over_direct_h2c_p50_ms_runs": added(GATEWAY, DIRECT_H2C),
                    "h2c_only_p50_ms": p50(H2C_ONLY),
                    "h2c_only_added_p50_ms": median(&added(H2C_ONLY, DIRECT)),
                    "h2c_only_added_p50_ms_runs": added(H2C_ONLY, DIRECT),
                }),
            );
            Ok(())
        },
    )?;
    drop(relay);
    drop(h2c_only_gateway);
    step(
        "bench: 100 % shadowing at concurrency 1 (9 interleaved rounds)",
        || {
            // The same gateway with every request also sent to a shadow candidate
            // (off the client's path), against the gateway without: what a client
            // pays for a migration's shadow traffic, and the CPU per client request.
            let (shadowed, shadowed_base) = shadow_gateway(&crossbar, &config, &work, &upstream)?;
            let through_shadowed = Load::gateway(&sim_bin, &shadowed_base);
            through_shadowed.run(4, Some(500), "30s", false, 16)?;
            let pids = [gw_pid, shadowed.pid()];
            let before = [cpu_time(pids[0])?, cpu_time(pids[1])?];
            const ROUNDS: usize = 9;
            const REQUESTS: u64 = 1000;
            let rounds = Rounds::run(
                [&direct, &through, &through_shadowed],
                ROUNDS,
                REQUESTS,
                false,
                "latency",
            )?;
            let per_request = |i: usize| -> anyhow::Result<f64> {
                let cpu = cpu_time(pids[i])? - before[i];
                Ok(cpu.as_secs_f64() * 1e6 / (ROUNDS as f64 * REQUESTS as f64))
            };
            results.insert(
                "shadow_c1".into(),
                json!({
                    "gateway_p50_ms": rounds.p50(1),
                    "shadowed_p50_ms": rounds.p50(2),
                    "shadow_added_p50_ms": median(&rounds.added(2, 1)),
                    "shadow_added_p50_ms_runs": rounds.added(2, 1),
                    "shadow_added_p99_ms": median(&rounds.added_p99(2, 1)),
                    "gateway_cpu_us_per_request": per_request(0)?,
                    "shadowed_cpu_us_per_request": per_request(1)?,
                }),
            );
            Ok(())
        },
    )?;
    step("bench: throughput at concurrency 32 (3 runs)", || {
        let (mut direct_rps, mut gateway_rps, mut cpu_us, mut p50, mut p99) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut plain_rps, mut plain_cpu_us) = (vec![], vec![]);
        let mut requests = 0;
        // The load on a gateway, and its CPU time per request over the run.
        let measure = |load: &Load, pid: u32| -> anyhow::Result<(Value, f64)> {
            let cpu_before = cpu_time(pid)?;
            let report = load.run(32, None, "10s", false, 16)?;
            let cpu = cpu_time(pid)? - cpu_before;
            let n = report["requests"].as_u64().unwrap_or(1).max(1);
            Ok((report, cpu.as_secs_f64() * 1e6 / n as f64))
        };
        for _ in 0..3 {
            let d = direct.run(32, None, "10s", false, 16)?;
            let (g, cpu) = measure(&through, gw_pid)?;
            requests += g["requests"].as_u64().unwrap_or(0);
            direct_rps.push(ms(&d["achieved_rps"]));
            gateway_rps.push(ms(&g["achieved_rps"]));
            cpu_us.push(cpu);
            p50.push(ms(&g["latency"]["p50_ms"]));
            p99.push(ms(&g["latency"]["p99_ms"]));
            let (n, cpu) = measure(&through_plain, plain_pid)?;
            plain_rps.push(ms(&n["achieved_rps"]));
            plain_cpu_us.push(cpu);
        }
        results.insert(
            "c32".into(),
            json!({
                "direct_rps": median(&direct_rps), "gateway_rps": median(&gateway_rps),
                "gateway_rps_runs": gateway_rps,
                "gateway_p50_ms": median(&p50), "gateway_p99_ms": median(&p99),
                "gateway_cpu_us_per_request": median(&cpu_us),
                "gateway_cpu_us_per_request_runs": cpu_us,
                "gateway_requests": requests,
                "without_pgo_rps": median(&plain_rps),
                "without_pgo_cpu_us_per_request": median(&plain_cpu_us),
                "without_pgo_cpu_us_per_request_runs": plain_cpu_us,
            }),
        );
        Ok(())
    })?;
    drop(plain_gateway);
    step("bench: instructions per request (callgrind)", || {
        for (key, binary) in [
            ("instructions", &crossbar),
            ("instructions_without_pgo", &plain),
        ] {
            match instructions(binary, &config, &work, &sim_bin)? {
                Some(counts) => {
                    results.insert(key.into(), counts);
                }
                None => {
                    eprintln!(
                        "valgrind is not installed: no instruction counts (apt-get install valgrind)"
                    );
                    break;
                }
            }
        }
        Ok(())
    })?;
    step(
        "bench: stream continuation (every stream cut after 10 tokens)",
        || {
            // The longest pause between two content chunks of a stream, as the client
            // sees it: when the upstream is cut after 10 tokens and the gateway goes
            // on at the backup, it is the time from the cut to the first continued
            // token; on healthy streams, the baseline.
            let healthy = through.run(1, Some(200), "60s", true, 60)?;
            let cut = continuation_run(&sim_bin, &crossbar, &work)?;
            let gap = |r: &Value, p: &str| ms(&r["stream_gap"][p]);
            results.insert(
                "continuation".into(),
                json!({
                    "cut_to_continued_p50_ms": gap(&cut, "p50_ms"),
                    "cut_to_continued_p99_ms": gap(&cut, "p99_ms"),
                    "healthy_max_gap_p50_ms": gap(&healthy, "p50_ms"),
                    "healthy_max_gap_p99_ms": gap(&healthy, "p99_ms"),
                    "streams": cut["ok"], "errors": cut["errors"],
                    "continued_ttft_p50_ms": ms(&cut["ttft"]["p50_ms"]),
                }),
            );
            Ok(())
        },
    )?;
    step(
        "bench: stream TTFT at concurrency 1 (7 interleaved rounds)",
        || {
            // Rounds, as at c=1: one run a side let a slow moment of either move the
            // figure by a millisecond.
            let rounds = Rounds::run([&direct, &through], 7, 200, true, "ttft")?;
            results.insert(
                "stream_c1".into(),
                json!({
                    "direct_ttft_p50_ms": rounds.p50(0),
                    "gateway_ttft_p50_ms": rounds.p50(1),
                    "added_ttft_p50_ms": median(&rounds.added(1, 0)),
                    "added_ttft_p99_ms": median(&rounds.added_p99(1, 0)),
                }),
            );
            Ok(())
        },
    )?;
    step("bench: memory with 10,000 open streams", || {
        // 2 tokens/s and 40 tokens: each stream stays open ~20 s.
        let control = format!("{upstream}/_sim/faults");
        let ok = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PATCH",
                &control,
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"tokens_per_second": 2}"#,
            ])
            .status()?;
        if !ok.success() {
            bail!("cannot slow the simulator down");
        }
        let idle_rss = rss_bytes(gw_pid)?;
        let (sim_path, gateway_base) = (sim_bin.clone(), base.clone());
        let load = std::thread::spawn(move || {
            Load::gateway(&sim_path, &gateway_base).run(10_000, Some(10_000), "60s", true, 40)
        });
        let (mut peak, mut open_peak) = (0u64, 0u64);
        let started = Instant::now();
        while !load.is_finished() && started.elapsed() < Duration::from_secs(90) {
            peak = peak.max(rss_bytes(gw_pid).unwrap_or(0));
            open_peak = open_peak.max(in_flight(&base).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(250));
        }
        let report = load
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        results.insert(
            "streams_10k".into(),
            json!({
                "idle_rss_mb": idle_rss as f64 / 1048576.0,
                "peak_rss_mb": peak as f64 / 1048576.0,
                "peak_open_streams": open_peak,
                "completed": report["ok"], "errors": report["errors"],
            }),
        );
        Ok(())
    })?;
    let ledger = ledger_stats(&base)?;
    results.insert("ledger".into(), ledger);
    drop(gateway);
    drop(sim);

    step("bench: spend over 1,000,000 ledger rows (release)", || {
        run(&mut ws.cargo([
            "test",
            "--release",
            "-p",
            "server",
            "--lib",
            "store::tests::measure_a_million_ledger_rows",
            "--",
            "--ignored",
            "--nocapture",
        ]))
    })?;
    step("bench: router-core micro-benchmarks (criterion)", || {
        run(&mut ws.cargo([
            "bench",
            "-p",
            "router-core",
            "--bench",
            "routing",
            "--",
            "--noplot",
        ]))
    })?;

    let results = Value::Object(results);
    let out = ws.root.join("artifacts/bench.json");
    std::fs::create_dir_all(out.parent().expect("artifacts"))?;
    std::fs::write(&out, serde_json::to_vec_pretty(&results)?)?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    println!("written to {}", out.display());
    Ok(())
}

/// Instructions the gateway executes per request at concurrency 1, counted by
/// callgrind: the figure that does not drift with the machine (the latency figures
/// move by ±20 % from hour to hour on this VM), so a change to the hot path is
/// measured by it first. One serving thread; 300 requests warm up, then 1,000 are
/// counted. `serving_thread` is the thread that parses, routes and answers the
/// request (the c=1 latency's own work); `total` adds the ledger writer and SQLite.
/// `None` without valgrind.
/// The benchmark's gateway with 100 % of `bench`'s requests also sent to a shadow
/// candidate, an endpoint of the same simulator.
fn shadow_gateway(
    crossbar: &Path,
    config: &Path,
    work: &Path,
    upstream: &str,
) -> anyhow::Result<(crate::workload::Proc, String)> {
    let text = std::fs::read_to_string(config)?.replace(
        "binding = [\"bench\"]",
        "binding = [\"bench\"]\n\
         shadows = [{ id = \"bench-shadow\", candidate = [\"shadow\"], sample_percent = 100.0 }]",
    );
    let shadow_endpoint = format!(
        "[[endpoints]]\nname = \"shadow\"\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
         region = \"eastus\"\ngeography = \"us\"\nbase_url = \"{upstream}\"\n\
         auth = {{ method = \"none\" }}\nhttp2_prior_knowledge = true\n\n"
    );
    let shadowed = work.join("crossbar-shadow.toml");
    std::fs::write(&shadowed, format!("{shadow_endpoint}{text}"))?;
    start_gateway(
        "crossbar (100 % shadowed)",
        Command::new(crossbar),
        &shadowed,
        &work.join("bench-shadow.db"),
        Upstream::Shipped,
    )
}

/// 200 streams at concurrency 1 through a gateway whose primary cuts every stream
/// after 10 tokens and whose backup continues it; the load report.
fn continuation_run(sim_bin: &Path, crossbar: &Path, work: &Path) -> anyhow::Result<Value> {
    let sim_config = work.join("sim-continuation.toml");
    std::fs::write(
        &sim_config,
        "seed = 1\n\
         [[endpoint]]\nname = \"primary\"\nkind = \"openai\"\nlisten = \"127.0.0.1:0\"\nauth = \"none\"\n\
         [endpoint.faults]\ncut_after_tokens = 10\n\
         [[endpoint]]\nname = \"backup\"\nkind = \"openai\"\nlisten = \"127.0.0.1:0\"\nauth = \"none\"\n",
    )?;
    let (sim, lines) = crate::workload::start_reading(
        "crossbar-sim (continuation)",
        {
            let mut c = Command::new(sim_bin);
            c.args(["serve", "--config"])
                .arg(&sim_config)
                .env("RUST_LOG", "warn");
            c
        },
        |l| l.contains("endpoint backup"),
    )?;
    let url = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("endpoint {name}")))
            .map(|l| address_after_at(l))
            .context("the simulator did not say where it listens")
    };
    let (primary, backup) = (url("primary")?, url("backup")?);
    let config = write_gateway_config(work, &primary)?;
    let text = std::fs::read_to_string(&config)?
        .replace("binding = [\"bench\"]", "binding = [\"bench\", \"backup\"]");
    let backup_endpoint = format!(
        "[[endpoints]]\nname = \"backup\"\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
         region = \"eastus\"\ngeography = \"us\"\nbase_url = \"{backup}\"\n\
         auth = {{ method = \"none\" }}\nhttp2_prior_knowledge = true\n\n"
    );
    let config = work.join("crossbar-continuation.toml");
    std::fs::write(&config, format!("{backup_endpoint}{text}"))?;
    let (gateway, base) = start_gateway(
        "crossbar (continuation)",
        Command::new(crossbar),
        &config,
        &work.join("bench-continuation.db"),
        Upstream::Shipped,
    )?;
    let report = Load::gateway(sim_bin, &base).run(1, Some(200), "60s", true, 60);
    drop(gateway);
    drop(sim);
    report
}

fn instructions(
    crossbar: &Path,
    config: &Path,
    work: &Path,
    sim_bin: &Path,
) -> anyhow::Result<Option<Value>> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out_dir = work.join("callgrind");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!("--callgrind-out-file={}/out.%p", out_dir.display()))
        .arg(crossbar)
        .env("CROSSBAR_WORKERS", "1");
    let (gateway, base) = start_gateway(
        "crossbar under callgrind",
        valgrind,
        config,
        &work.join("callgrind.db"),
        Upstream::Shipped,
    )?;
    let pid = gateway.pid().to_string();
    let load = Load::gateway(sim_bin, &base);
    const COUNTED: u64 = 1000;
    load.run(1, Some(300), "120s", false, 16)?;
    run(Command::new("callgrind_control").args(["-z", &pid]))?;
    load.run(1, Some(COUNTED), "120s", false, 16)?;
    run(Command::new("callgrind_control").args(["-d", &pid]))?;
    drop(gateway);
    // One file per thread for the dump (and one more for the exit): the dump's are
    // those with a part number.
    let (mut total, mut serving) = (0u64, 0u64);
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.contains(".1-") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        total += count;
        // hyper's HTTP/1.1 server runs on the serving threads only. (Not tokio's
        // `current_thread::Context::run_task`: a profile-guided build inlines it.)
        if text.contains("hyper::proto::h1::dispatch") {
            serving += count;
        }
    }
    if total == 0 || serving == 0 {
        bail!(
            "callgrind wrote no counts (or none for a serving thread) to {}",
            out_dir.display()
        );
    }
    Ok(Some(json!({
        "total_per_request": total / COUNTED,
        "serving_thread_per_request": serving / COUNTED,
    })))
}

/// Upstream attempts in flight at the gateway, from its Prometheus metrics.
fn in_flight(base: &str) -> anyhow::Result<u64> {
    let out = Command::new("curl")
        .args(["-sf", &format!("{base}/metrics")])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("crossbar_endpoint_in_flight"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// The ledger's counters: every request of the run must be written, none dropped.
fn ledger_stats(base: &str) -> anyhow::Result<Value> {
    let out = Command::new("curl")
        .args(["-sf", &format!("{base}/readyz")])
        .output()?;
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(ready["ledger"].clone())
}
