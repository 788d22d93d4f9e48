//! `cargo xtask demo`: the simulated clouds and the console, until Ctrl-C.
//!
//! Starts `crossbar-sim serve --config sim/demo.toml` and `crossbar serve`, waits for
//! each to say where it listens, prints the URLs, and on Ctrl-C (or SIGTERM, or if
//! either child exits) stops both. The router and live traffic join as they land.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::build::build;
use crate::setup::setup;
use crate::workspace::{Workspace, display, step};

/// How long a service may take to print its ready line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn demo(ws: &Workspace) -> anyhow::Result<()> {
    setup(ws)?;
    let built = build(ws)?;
    stop_on_signals();

    let (sim, sim_lines) = step("demo: start the simulated clouds", || {
        let mut command = Command::new(&built.crossbar_sim);
        command
            .args(["serve", "--config"])
            .arg(ws.root.join("sim/demo.toml"))
            .current_dir(&ws.root);
        let (child, lines) = Service::start("crossbar-sim", command)?;
        let announced = lines.until("crossbar-sim: ready", |line| line == "crossbar-sim: ready")?;
        Ok((child, announced))
    })?;
    let (server, server_lines) = step("demo: start the console", || {
        let mut command = Command::new(&built.crossbar);
        command
            .args(["serve", "--ui-dir"])
            .arg(&built.ui_dist)
            .current_dir(&ws.root);
        let (child, lines) = Service::start("crossbar", command)?;
        let announced = lines.until("the console address", |line| {
            line.starts_with("crossbar: console at ")
        })?;
        Ok((child, announced))
    })?;

    println!();
    println!("Crossbar demo is running:");
    for line in server_lines.iter().chain(&sim_lines) {
        if let Some(rest) = line
            .strip_prefix("crossbar: ")
            .or_else(|| line.strip_prefix("crossbar-sim: "))
            && rest != "ready"
        {
            println!("  {rest}");
        }
    }
    println!("Press Ctrl-C to stop.");
    println!();

    let mut services = [sim, server];
    while !STOP.load(Ordering::SeqCst) {
        for service in &mut services {
            if let Some(status) = service.child.try_wait()? {
                bail!("{} exited unexpectedly ({status})", service.name);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("stopping...");
    Ok(()) // `services` drop here, stopping the children.
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Turns Ctrl-C and SIGTERM into a request to stop, so the children are stopped in
/// order instead of xtask vanishing and leaving them behind.
fn stop_on_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// A child service: stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Service {
    name: &'static str,
    child: Child,
}

impl Service {
    /// Starts `command`, its stdout read line by line (and echoed), stderr inherited.
    fn start(name: &'static str, mut command: Command) -> anyhow::Result<(Self, Lines)> {
        eprintln!("$ {}", display(&command));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[{name}] {line}");
                let _ = tx.send(line);
            }
        });
        Ok((Self { name, child }, Lines { name, rx }))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within 5 s: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service's stdout lines.
struct Lines {
    name: &'static str,
    rx: Receiver<String>,
}

impl Lines {
    /// Every line up to and including the first that satisfies `done`.
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            if STOP.load(Ordering::SeqCst) {
                bail!("interrupted while waiting for {what} from {}", self.name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} did not print {what} within {STARTUP_TIMEOUT:?}",
                    self.name
                );
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    let finished = done(&line);
                    seen.push(line);
                    if finished {
                        return Ok(seen);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{} exited before printing {what}", self.name)
                }
            }
        }
    }
}
