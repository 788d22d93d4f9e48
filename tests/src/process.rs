//! Child processes that cannot outlive their test, and bounded waits.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free TCP port on the loopback interface, found by binding port 0.
///
/// The port is released before the caller's process binds it; for the drivers, which
/// must be told a port, that small race is the usual price.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `probe` every 100 ms until it yields a value, for at most `timeout`.
///
/// `probe` returns `Ok(None)` or a "not yet" error to keep waiting; the last error is
/// reported if time runs out. `what` completes "timed out waiting for ...".
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if Instant::now() >= deadline {
            let last = last_error
                .map(|e| format!("; last error: {e:#}"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{last}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A child process that is killed, with its whole process group, when dropped.
///
/// The child leads a new process group, so whatever it starts (chromedriver's
/// Chromium, WebKitWebDriver's app) goes with it. Its output goes to
/// `artifacts/logs/<name>.log`, quoted in failure messages.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr going to its log file.
    pub fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Self> {
        let log = crate::paths::log_file(name)?;
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        command.stdout(out.try_clone()?).stderr(out);
        Self::start(name, command, log)
    }

    /// Starts `command` with stdout read line by line (and copied to the log), stderr
    /// going to the log: for processes that announce what they bound on stdout.
    pub fn spawn_reading_stdout(
        name: &str,
        command: &mut Command,
    ) -> anyhow::Result<(Self, StdoutLines)> {
        let log = crate::paths::log_file(name)?;
        let err = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let copy = err.try_clone()?;
        command.stdout(Stdio::piped()).stderr(err);
        let mut guard = Self::start(name, command, log)?;
        let stdout = guard.child.stdout.take().expect("stdout is piped");
        Ok((guard, StdoutLines::new(stdout, copy)))
    }

    fn start(name: &str, command: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        command.stdin(Stdio::null()).process_group(0);
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {name} ({:?}): is it installed? (`cargo xtask setup`)",
                command.get_program()
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails if the process has exited, quoting its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited early ({status}); {}",
                self.name,
                self.log_excerpt()
            ),
        }
    }

    /// The last lines of the process's output, for failure messages.
    pub fn log_excerpt(&self) -> String {
        const LINES: usize = 30;
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
        format!("last lines of {}:\n{tail}", self.log.display())
    }

    fn signal_group(&self, signal: libc::c_int) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Ask politely (drivers close their browsers on SIGTERM), then insist.
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The group may outlive its leader: always finish it off.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A child's stdout, read by a thread that copies every line to the log and hands it
/// to [`StdoutLines::wait_for`]. Reading never stops, so the pipe never fills up.
pub struct StdoutLines {
    lines: Receiver<String>,
}

impl StdoutLines {
    fn new(stdout: ChildStdout, mut log: File) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                // The receiver may be gone; keep draining the pipe anyway.
                let _ = tx.send(line);
            }
        });
        Self { lines: rx }
    }

    /// The first line matching `wanted`, within `timeout`. Fails early, quoting the log,
    /// if the process exits first.
    pub fn wait_for(
        &mut self,
        child: &mut ChildGuard,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?} waiting for {what} from {}; {}",
                    child.name(),
                    child.log_excerpt()
                );
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting. Give it a moment to be reaped.
                    thread::sleep(Duration::from_millis(200));
                    child.check_running()?;
                    bail!(
                        "{} closed its stdout before printing {what}; {}",
                        child.name(),
                        child.log_excerpt()
                    );
                }
            }
        }
    }
}

/// A temporary directory removed on drop (a browser profile, for instance).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "crossbar-e2e-{prefix}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a short command to completion within `timeout`, failing with its output if it
/// fails or overruns.
pub fn run_bounded(name: &str, command: &mut Command, timeout: Duration) -> anyhow::Result<()> {
    run_bounded_output(name, command, timeout).map(drop)
}

/// As [`run_bounded`], returning what the command printed (stdout and stderr,
/// interleaved as they came: its log).
pub fn run_bounded_output(
    name: &str,
    command: &mut Command,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut guard = ChildGuard::spawn(name, command)?;
    let status = wait_until(timeout, &format!("{name} to finish"), || {
        Ok(guard.child.try_wait()?)
    })
    .with_context(|| guard.log_excerpt())?;
    if !status.success() {
        bail!("{name} failed ({status}); {}", guard.log_excerpt());
    }
    std::fs::read_to_string(guard.log())
        .with_context(|| format!("cannot read {}", guard.log().display()))
}
