//! Today's official Python clients against the simulators, unchanged but for their
//! base URL and credentials: `openai` (OpenAI and Azure OpenAI), `boto3`'s
//! bedrock-runtime, `anthropic`'s AnthropicVertex and `google-genai` in Vertex mode,
//! at the versions pinned in `tests/python/requirements.txt` (installed by
//! `cargo xtask setup` into `<target>/python-venv`).
//!
//! Each test starts the `crossbar-sim` binary, runs one script of `tests/python/`
//! (which prints what its client received) and asserts on both sides: what the client
//! got, and what the simulator saw — its request log and counters. Credentials are
//! secretless where the cloud allows: boto3 takes container credentials, and the
//! Google-authenticated clients a workload-identity-federation token, both issued by
//! the simulated identity service (the endpoints check they were).
//!
//! `#[ignore]`d in a plain `cargo test` (they need the venv and the built simulator);
//! `cargo xtask test` runs them with `--include-ignored`. By hand:
//! `cargo build -p sim --bins && cargo test -p crossbar-e2e --test python_clients -- --include-ignored`.

use anyhow::{Context, ensure};
use crossbar_e2e::python::run_script;
use crossbar_e2e::simulators::Simulators;
use serde_json::{Value, json};

/// The outcomes in a request log.
fn outcomes(log: &[Value]) -> Vec<&str> {
    log.iter()
        .map(|e| e["outcome"].as_str().unwrap_or("?"))
        .collect()
}

fn text<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    let text = v
        .as_str()
        .with_context(|| format!("{what}: not a string: {v}"))?;
    ensure!(!text.is_empty(), "{what}: empty");
    Ok(text)
}

fn u64_of(v: &Value, what: &str) -> anyhow::Result<u64> {
    v.as_u64()
        .with_context(|| format!("{what}: not a count: {v}"))
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup) and crossbar-sim: run via cargo xtask test"]
fn openai_client_chat_stream_azure_and_a_retry_after_a_throttle() -> anyhow::Result<()> {
    let mut sim = Simulators::start(
        "python-openai-sim",
        r#"
        seed = 2026
        control = "127.0.0.1:0"
        [[endpoint]]
        name = "oa"
        kind = "openai"
        auth = "present"
        [endpoint.faults]
        next_errors = ["throttle"]
        retry_after_s = 1
        "#,
    )?;
    let got = run_script(
        "python-openai",
        "openai_chat.py",
        &[("SIM_OPENAI_URL", sim.url("oa").to_owned())],
    )?;

    // What the client received.
    let chat = &got["chat"];
    let answer = text(&chat["text"], "chat text")?;
    ensure!(chat["finish"] == "stop", "{chat}");
    ensure!(chat["model"] == "gpt-4o-mini", "{chat}");
    let stream = &got["stream"];
    ensure!(
        stream["text"] == answer,
        "the same question streamed gets the same answer: {stream} vs {chat}"
    );
    ensure!(stream["finish"] == "stop", "{stream}");
    ensure!(
        stream["completion_tokens"] == chat["completion_tokens"]
            && stream["prompt_tokens"] == chat["prompt_tokens"],
        "usage: {stream} vs {chat}"
    );
    let azure = &got["azure"];
    text(&azure["text"], "azure text")?;
    ensure!(azure["model"] == "gpt-4o-deployment", "{azure}");

    // What the simulator saw: the throttle, the client's retry after retry-after, the
    // stream, the Azure deployment path.
    let log = sim.requests("oa")?;
    ensure!(outcomes(&log) == ["throttle", "ok", "ok", "ok"], "{log:#?}");
    let gap = log[1]["at_ms"].as_f64().unwrap() - log[0]["at_ms"].as_f64().unwrap();
    ensure!(
        gap >= 1000.0,
        "the client retried {gap} ms after a `retry-after: 1`"
    );
    ensure!(
        log[0]["status"] == 429 && log[1]["status"] == 200,
        "{log:#?}"
    );
    ensure!(
        log.iter().map(|e| e["stream"] == true).collect::<Vec<_>>() == [false, false, true, false],
        "{log:#?}"
    );
    ensure!(log[2]["stream_end"] == "complete", "{}", log[2]);
    ensure!(
        log[3]["path"] == "/openai/deployments/gpt-4o-deployment/chat/completions"
            && log[3]["model"] == "gpt-4o-deployment",
        "{}",
        log[3]
    );
    let stats = sim.stats("oa")?;
    ensure!(
        stats["statuses"] == json!({"200": 3, "429": 1}),
        "{}",
        stats["statuses"]
    );
    let prompt = u64_of(&chat["prompt_tokens"], "prompt tokens")?;
    ensure!(
        u64_of(&stats["prompt_tokens"], "sim prompt tokens")? == 3 * prompt,
        "three answered requests of the same prompt: {stats}"
    );
    sim.check_running()
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup) and crossbar-sim: run via cargo xtask test"]
fn boto3_converse_stream_a_typed_throttle_and_a_prefill() -> anyhow::Result<()> {
    let mut sim = Simulators::start(
        "python-boto3-sim",
        r#"
        seed = 2026
        control = "127.0.0.1:0"
        [[endpoint]]
        name = "br"
        kind = "bedrock"
        region = "us-east-1"
        auth = "issued"
        models = ["anthropic.claude-3-5-sonnet-20240620-v1:0"]
        [endpoint.faults]
        next_errors = ["throttle"]
        [[endpoint]]
        name = "id"
        kind = "identity"
        "#,
    )?;
    let got = run_script(
        "python-boto3",
        "bedrock_boto3.py",
        &[
            ("SIM_BEDROCK_URL", sim.url("br").to_owned()),
            // The default chain's container provider, from the simulated identity
            // service; nothing else on this machine can supply credentials.
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/creds", sim.url("id")),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/nonexistent/crossbar-e2e".to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/crossbar-e2e".to_owned(),
            ),
        ],
    )?;

    // What the client received.
    let throttled = &got["throttled"];
    ensure!(
        throttled == &json!({"code": "ThrottlingException", "status": 429, "is_modeled": true}),
        "{throttled}"
    );
    let converse = &got["converse"];
    let answer = text(&converse["text"], "converse text")?;
    ensure!(converse["stop"] == "end_turn", "{converse}");
    let stream = &got["stream"];
    ensure!(stream["text"] == answer, "{stream} vs {converse}");
    ensure!(stream["stop"] == "end_turn", "{stream}");
    ensure!(
        stream["output_tokens"] == converse["output_tokens"]
            && stream["input_tokens"] == converse["input_tokens"],
        "{stream} vs {converse}"
    );
    let prefill = &got["prefill"];
    let continued = format!(
        "{}{}",
        text(&prefill["prefill"], "prefill")?,
        text(&prefill["continuation"], "continuation")?
    );
    ensure!(
        continued == answer,
        "prefill + continuation is the whole answer: {continued:?} vs {answer:?}"
    );

    // What the simulator saw.
    let log = sim.requests("br")?;
    ensure!(outcomes(&log) == ["throttle", "ok", "ok", "ok"], "{log:#?}");
    let model = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    ensure!(log.iter().all(|e| e["model"] == model), "{log:#?}");
    ensure!(
        log[2]["stream"] == true
            && log[2]["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/converse-stream"),
        "{}",
        log[2]
    );
    ensure!(
        log.iter().map(|e| e["prefill"] == true).collect::<Vec<_>>() == [false, false, false, true],
        "{log:#?}"
    );
    let stats = sim.stats("br")?;
    let issued: u64 = stats["credentials"]
        .as_object()
        .context("credentials")?
        .iter()
        .filter(|(id, _)| id.ends_with("(aws-container)"))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    ensure!(
        issued == 3 && stats["auth_rejected"] == 0,
        "every answered request signed with the issued container credentials: {stats}"
    );
    ensure!(
        sim.stats("id")?["credentials"]["issued:aws-container"].as_u64() >= Some(1),
        "the client fetched its credentials from the identity service"
    );
    sim.check_running()
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup) and crossbar-sim: run via cargo xtask test"]
fn anthropic_vertex_overloaded_error_create_and_stream() -> anyhow::Result<()> {
    let mut sim = Simulators::start(
        "python-anthropic-sim",
        r#"
        seed = 2026
        control = "127.0.0.1:0"
        [[endpoint]]
        name = "vx"
        kind = "vertex"
        region = "us-east5"
        auth = "issued"
        models = ["claude-sonnet-4@20250514"]
        [endpoint.faults]
        next_errors = ["overloaded"]
        [[endpoint]]
        name = "id"
        kind = "identity"
        "#,
    )?;
    let got = run_script(
        "python-anthropic",
        "anthropic_vertex.py",
        &[
            ("SIM_VERTEX_URL", sim.url("vx").to_owned()),
            ("SIM_IDENTITY_URL", sim.url("id").to_owned()),
        ],
    )?;

    // What the client received: the SDK's own error type for a 529, then answers.
    let overloaded = &got["overloaded"];
    ensure!(
        overloaded
            == &json!({"type": "OverloadedError", "status": 529, "is_overloaded_error": true, "error_type": "overloaded_error"}),
        "{overloaded}"
    );
    let message = &got["message"];
    let answer = text(&message["text"], "message text")?;
    ensure!(message["stop_reason"] == "end_turn", "{message}");
    let stream = &got["stream"];
    ensure!(stream["text"] == answer, "{stream} vs {message}");
    ensure!(
        stream["output_tokens"] == message["output_tokens"]
            && stream["input_tokens"] == message["input_tokens"]
            && stream["stop_reason"] == "end_turn",
        "{stream} vs {message}"
    );

    // What the simulator saw.
    let log = sim.requests("vx")?;
    ensure!(outcomes(&log) == ["overloaded", "ok", "ok"], "{log:#?}");
    ensure!(log[0]["status"] == 529, "{}", log[0]);
    ensure!(
        log.iter().all(|e| e["model"] == "claude-sonnet-4@20250514"),
        "{log:#?}"
    );
    let paths: Vec<&str> = log.iter().filter_map(|e| e["path"].as_str()).collect();
    ensure!(
        paths[1].ends_with(":rawPredict") && paths[2].ends_with(":streamRawPredict"),
        "{paths:?}"
    );
    ensure!(
        log[2]["stream"] == true && log[2]["stream_end"] == "complete",
        "{}",
        log[2]
    );
    let stats = sim.stats("vx")?;
    ensure!(
        stats["credentials"]["gcp-sts"] == 2 && stats["auth_rejected"] == 0,
        "the answered requests carried the token the simulated STS issued: {stats}"
    );
    sim.check_running()
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup) and crossbar-sim: run via cargo xtask test"]
fn google_genai_vertex_generate_stream_and_function_calling() -> anyhow::Result<()> {
    let mut sim = Simulators::start(
        "python-genai-sim",
        r#"
        seed = 2026
        control = "127.0.0.1:0"
        [[endpoint]]
        name = "vx"
        kind = "vertex"
        region = "europe-west4"
        auth = "issued"
        models = ["gemini-2.5-flash"]
        [[endpoint]]
        name = "id"
        kind = "identity"
        "#,
    )?;
    let got = run_script(
        "python-genai",
        "genai_vertex.py",
        &[
            ("SIM_VERTEX_URL", sim.url("vx").to_owned()),
            ("SIM_IDENTITY_URL", sim.url("id").to_owned()),
        ],
    )?;

    // What the client received.
    let generate = &got["generate"];
    let answer = text(&generate["text"], "generated text")?;
    ensure!(generate["finish"] == "STOP", "{generate}");
    let stream = &got["stream"];
    ensure!(stream["text"] == answer, "{stream} vs {generate}");
    ensure!(
        u64_of(&stream["chunks"], "chunks")? > 1 && stream["finish"] == "STOP",
        "{stream}"
    );
    ensure!(
        stream["candidates_tokens"] == generate["candidates_tokens"],
        "{stream} vs {generate}"
    );
    let call = &got["function_call"];
    ensure!(
        call["name"] == "get_weather" && call["args_type"] == "dict",
        "args must reach the client as an object: {call}"
    );
    ensure!(
        call["args"]["city"].is_string() && call["args"]["days"].is_u64(),
        "arguments shaped by the upper-case schema: {call}"
    );
    text(&call["answer"], "answer after the function response")?;
    let automatic = &got["automatic"];
    let calls = automatic["calls"].as_array().context("automatic calls")?;
    ensure!(
        calls.len() == 1 && calls[0]["city"].is_string() && calls[0]["days"].is_u64(),
        "the SDK called the Python function once, with typed arguments: {automatic}"
    );
    text(
        &automatic["answer"],
        "answer after automatic function calling",
    )?;

    // What the simulator saw: generate, stream, two for the manual round trip, two for
    // the automatic one; all in Vertex's v1beta1 surface, as the SDK calls it.
    let log = sim.requests("vx")?;
    ensure!(outcomes(&log) == ["ok"; 6], "{log:#?}");
    ensure!(
        log.iter().map(|e| e["stream"] == true).collect::<Vec<_>>()
            == [false, true, false, false, false, false],
        "{log:#?}"
    );
    ensure!(
        log.iter().all(|e| e["model"] == "gemini-2.5-flash"
            && e["path"].as_str().unwrap_or_default().starts_with(
                "/v1beta1/projects/crossbar-ci/locations/europe-west4/publishers/google/models/"
            )),
        "{log:#?}"
    );
    let stats = sim.stats("vx")?;
    ensure!(
        stats["credentials"]["gcp-sts"] == 6 && stats["auth_rejected"] == 0,
        "{stats}"
    );
    sim.check_running()
}
