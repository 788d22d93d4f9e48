//! The `crossbar-sim` binary itself: it prints where each endpoint listens, serves
//! them, validates configs with clear errors, and stops on SIGTERM.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "these tests measure a simulator's real latency and pacing"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crossbar-sim"))
}

#[tokio::test]
async fn serve_prints_addresses_and_answers_on_them() {
    let dir = std::env::temp_dir().join(format!("crossbar-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sim.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(f, "seed = 1\ncontrol = \"127.0.0.1:0\"\n[[endpoint]]\nname = \"azure-east\"\nkind = \"openai\"\nauth = \"present\"\n[endpoint.faults]\nttft_ms = 5").unwrap();
    drop(f);
    let child = sim()
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--endpoint",
            "bedrock:bedrock-extra@127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut urls = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no ready line");
        let line = lines.next().expect("stdout open").unwrap();
        if line == "crossbar-sim: ready" {
            break;
        }
        let url = line.rsplit(' ').next().unwrap().to_owned();
        if let Some(rest) = line.strip_prefix("crossbar-sim: endpoint ") {
            urls.insert(rest.split(' ').next().unwrap().to_owned(), url);
        } else if line.starts_with("crossbar-sim: control at ") {
            urls.insert("control".into(), url);
        }
    }
    assert_eq!(urls.len(), 3, "{urls:?}");
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", urls["azure-east"]))
        .bearer_auth("k")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["object"], "chat.completion");
    let listed: serde_json::Value = reqwest::get(format!("{}/_sim/endpoints", urls["control"]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // SIGTERM stops it cleanly.
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_reports_every_problem_in_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("crossbar-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[[endpoint]]\nname = \"x\"\nkind = \"openai\"\n[endpoint.faults]\nerrors = { throttle = 3.0 }\n[[endpoint]]\nname = \"x\"\nkind = \"vertex\"\n").unwrap();
    let out = sim()
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("errors.throttle") && stderr.contains("duplicate"),
        "{stderr}"
    );

    // Cargo's run-time CARGO_MANIFEST_DIR: a shared target directory can hold this
    // executable built from another checkout.
    let demo = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("demo.toml");
    let out = sim()
        .arg("check")
        .arg("--config")
        .arg(&demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
