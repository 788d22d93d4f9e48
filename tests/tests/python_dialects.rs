//! Today's official Python clients against `crossbar serve` in its other dialects,
//! unchanged but for their base URL and key: `anthropic`'s `Anthropic` client on
//! `/v1/messages` and `openai`'s Responses API on `/v1/responses`, at the versions
//! pinned in `tests/python/requirements.txt`.
//!
//! Each test starts the `crossbar-sim` binary (OpenAI-compatible endpoints, some
//! broken on purpose), the `crossbar` binary in front of it, runs one script of
//! `tests/python/` and asserts on three sides: what the client got, what the
//! simulators saw, and what the gateway's console reports (requests per feature by
//! dialect).
//!
//! `#[ignore]`d in a plain `cargo test` (they need the venv and the built binaries);
//! `cargo xtask test` runs them with `--include-ignored`. By hand:
//! `cargo build -p server -p sim --bins && cargo test -p crossbar-e2e --test python_dialects -- --include-ignored`.

use anyhow::{Context, ensure};
use crossbar_e2e::gateway::Gateway;
use crossbar_e2e::python::run_script;
use crossbar_e2e::simulators::Simulators;
use serde_json::Value;

/// The simulated endpoints: two healthy ones, one that always throttles, one always
/// overloaded, one that cuts every stream after three tokens.
const SIMULATORS: &str = r#"
seed = 2026
control = "127.0.0.1:0"
[[endpoint]]
name = "primary"
kind = "openai"
auth = "none"
[[endpoint]]
name = "backup"
kind = "openai"
auth = "none"
[[endpoint]]
name = "throttler"
kind = "openai"
auth = "none"
[endpoint.faults]
retry_after_s = 0.05
[endpoint.faults.errors]
throttle = 1.0
[[endpoint]]
name = "overloader"
kind = "openai"
auth = "none"
[endpoint.faults]
retry_after_s = 0.05
[endpoint.faults.errors]
overloaded = 1.0
[[endpoint]]
name = "cutter"
kind = "openai"
auth = "none"
[endpoint.faults]
cut_after_tokens = 3
"#;

/// Crossbar's configuration over [`SIMULATORS`]: `summarize` on primary then backup,
/// and one feature on each broken endpoint alone, with nothing to fail over to
/// (`throttled`, `overloaded`, and `fragile`, whose broken streams are not continued).
fn gateway_config(sim: &Simulators) -> String {
    let mut config = String::new();
    for name in ["primary", "backup", "throttler", "overloader", "cutter"] {
        config.push_str(&format!(
            "[[endpoints]]\nname = \"{name}\"\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
             region = \"eastus\"\ngeography = \"us\"\nbase_url = \"{}\"\nauth = {{ method = \"none\" }}\n\n",
            sim.url(name)
        ));
    }
    for (feature, binding) in [
        ("summarize", r#"["primary", "backup"]"#),
        ("throttled", r#"["throttler"]"#),
        ("overloaded", r#"["overloader"]"#),
        ("fragile", r#"["cutter"]"#),
    ] {
        config.push_str(&format!(
            "[[features]]\nname = \"{feature}\"\nbinding = {binding}\n"
        ));
        if feature == "fragile" {
            config.push_str("continue_streams = false\n");
        }
        config.push('\n');
    }
    config.push_str("[[teams]]\nname = \"search\"\n");
    config
}

/// Starts the simulators and the gateway in front of them.
fn start(name: &str) -> anyhow::Result<(Simulators, Gateway)> {
    let sim = Simulators::start(&format!("{name}-sim"), SIMULATORS)?;
    let gateway = Gateway::start(&format!("{name}-gateway"), &gateway_config(&sim), "search")?;
    Ok((sim, gateway))
}

/// What a script needs: the gateway's address and key.
fn script_env(gateway: &Gateway) -> [(&'static str, String); 2] {
    [
        ("CROSSBAR_URL", gateway.url.clone()),
        ("CROSSBAR_KEY", gateway.key.clone()),
    ]
}

fn outcomes(log: &[Value]) -> Vec<&str> {
    log.iter()
        .map(|e| e["outcome"].as_str().unwrap_or("?"))
        .collect()
}

fn streams(log: &[Value]) -> Vec<bool> {
    log.iter().map(|e| e["stream"] == true).collect()
}

fn text<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    let text = v
        .as_str()
        .with_context(|| format!("{what}: not a string: {v}"))?;
    ensure!(!text.is_empty(), "{what}: empty");
    Ok(text)
}

/// `summarize`'s requests by dialect in the console's live window.
fn dialects_of_summarize(gateway: &Gateway) -> anyhow::Result<Value> {
    let live = gateway.admin_get("/features/live")?;
    let summarize = live
        .as_array()
        .and_then(|features| features.iter().find(|f| f["feature"] == "summarize"))
        .with_context(|| format!("no summarize in {live}"))?;
    Ok(summarize["dialects"].clone())
}

/// The error a client got: `(exception class, status, error type)`.
fn error(got: &Value, which: &str) -> (String, u64, String) {
    let e = &got["errors"][which];
    (
        e["class"].as_str().unwrap_or("?").to_owned(),
        e["status"].as_u64().unwrap_or(0),
        e["type"].as_str().unwrap_or("?").to_owned(),
    )
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup), crossbar and crossbar-sim: run via cargo xtask test"]
fn anthropic_client_messages_streams_tool_use_and_errors_through_crossbar() -> anyhow::Result<()> {
    let (mut sim, mut gateway) = start("python-anthropic-messages")?;
    let got = run_script(
        "python-anthropic-messages",
        "anthropic_messages.py",
        &script_env(&gateway),
    )?;

    // A message, named after Crossbar's request id, which its `request-id` header is.
    let message = &got["message"];
    let answer = text(&message["text"], "message text")?;
    ensure!(
        message["stop_reason"] == "end_turn" && message["model"] == "gpt-4o-mini",
        "{message}"
    );
    let request_id = text(&message["request_id"], "request id")?;
    ensure!(
        message["id"].as_str()
            == request_id
                .strip_prefix("req_")
                .map(|h| format!("msg_{h}"))
                .as_deref(),
        "{message}"
    );
    // The stream: the same answer and usage, through the SDK's accumulator.
    let stream = &got["stream"];
    ensure!(
        stream["text"] == answer && stream["final_text"] == answer,
        "{stream} vs {message}"
    );
    ensure!(
        stream["stop_reason"] == "end_turn"
            && stream["input_tokens"] == message["input_tokens"]
            && stream["output_tokens"] == message["output_tokens"],
        "{stream} vs {message}"
    );
    let events: Vec<&str> = got["raw_events"]
        .as_array()
        .context("raw events")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        events.first() == Some(&"message_start")
            && events.ends_with(&["content_block_stop", "message_delta", "message_stop"])
            && events[1] == "content_block_start"
            && events[2..events.len() - 3]
                .iter()
                .all(|e| *e == "content_block_delta"),
        "Anthropic's event sequence: {events:?}"
    );
    // Tool use, whole and streamed, then the answer after the tool_result.
    let tool = &got["tool"];
    ensure!(
        tool["stop_reason"] == "tool_use" && tool["name"] == "get_weather",
        "{tool}"
    );
    ensure!(
        tool["input"]["city"].is_string() && tool["input"]["days"].is_u64(),
        "the input, an object shaped by the input_schema: {tool}"
    );
    ensure!(
        tool["streamed_name"] == "get_weather"
            && tool["streamed_input"] == tool["input"]
            && tool["streamed_stop_reason"] == "tool_use",
        "{tool}"
    );
    text(&tool["answer"], "answer after the tool_result")?;
    ensure!(tool["answer_stop_reason"] == "end_turn", "{tool}");
    ensure!(
        got["count"].as_u64() > Some(0),
        "count_tokens: {}",
        got["count"]
    );
    ensure!(
        got["with_api_key"]["status"] == 200 && got["with_api_key"]["type"] == "message",
        "x-api-key: {}",
        got["with_api_key"]
    );
    // Errors: the SDK's own classes, from Anthropic's statuses and types.
    for (which, class, status, kind) in [
        (
            "bad_key",
            "AuthenticationError",
            401,
            "authentication_error",
        ),
        ("unknown_feature", "NotFoundError", 404, "not_found_error"),
        ("pdf", "BadRequestError", 400, "invalid_request_error"),
        ("throttled", "RateLimitError", 429, "rate_limit_error"),
        ("overloaded", "OverloadedError", 529, "overloaded_error"),
    ] {
        ensure!(
            error(&got, which) == (class.to_owned(), status, kind.to_owned()),
            "{which}: {}",
            got["errors"][which]
        );
        ensure!(
            got["errors"][which]["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("req_")),
            "{which}: {}",
            got["errors"][which]
        );
    }
    ensure!(
        got["errors"]["pdf"]["code"] == "unsupported_parameter",
        "{}",
        got["errors"]
    );
    // A stream cut with nothing to continue on: `event: error` after the first text.
    let midstream = &got["midstream"];
    ensure!(
        midstream["type"] == "api_error" && midstream["code"] == "stream_interrupted",
        "{midstream}"
    );
    text(&midstream["received"], "text before the failure")?;

    // What the simulators saw: every answered request on the primary (count_tokens
    // and the refused ones never left Crossbar), the broken endpoints as broken.
    let log = sim.requests("primary")?;
    ensure!(outcomes(&log) == ["ok"; 7], "{log:#?}");
    ensure!(
        streams(&log) == [false, true, true, false, false, true, false],
        "{log:#?}"
    );
    ensure!(sim.requests("backup")?.is_empty(), "nothing failed over");
    let throttler = sim.requests("throttler")?;
    ensure!(
        !throttler.is_empty() && outcomes(&throttler).iter().all(|o| *o == "throttle"),
        "{throttler:#?}"
    );
    let cutter = sim.requests("cutter")?;
    ensure!(
        cutter.len() == 1 && cutter[0]["stream_end"] == "cut",
        "{cutter:#?}"
    );
    // What the console shows: the feature's requests came in by the Messages API.
    let dialects = dialects_of_summarize(&gateway)?;
    ensure!(dialects == serde_json::json!({"messages": 7}), "{dialects}");
    gateway.check_running()?;
    sim.check_running()
}

#[test]
#[ignore = "needs the Python clients (cargo xtask setup), crossbar and crossbar-sim: run via cargo xtask test"]
fn openai_client_responses_text_streams_function_calls_and_errors_through_crossbar()
-> anyhow::Result<()> {
    let (mut sim, mut gateway) = start("python-openai-responses")?;
    let got = run_script(
        "python-openai-responses",
        "openai_responses.py",
        &script_env(&gateway),
    )?;

    let response = &got["text"];
    let answer = text(&response["text"], "output_text")?;
    ensure!(
        response["status"] == "completed" && response["model"] == "gpt-4o-mini",
        "{response}"
    );
    let request_id = text(&response["request_id"], "request id")?;
    ensure!(
        response["id"].as_str()
            == request_id
                .strip_prefix("req_")
                .map(|h| format!("resp_{h}"))
                .as_deref(),
        "{response}"
    );
    ensure!(
        response["total_tokens"].as_u64()
            == Some(
                response["input_tokens"].as_u64().unwrap_or(0)
                    + response["output_tokens"].as_u64().unwrap_or(0)
            ),
        "{response}"
    );
    // The stream: typed events numbered from 0, the same answer and usage.
    let stream = &got["stream"];
    ensure!(
        stream["text"] == answer
            && stream["completed_text"] == answer
            && stream["helper_text"] == answer
            && stream["helper_final_text"] == answer,
        "{stream} vs {response}"
    );
    ensure!(
        stream["status"] == "completed"
            && stream["input_tokens"] == response["input_tokens"]
            && stream["output_tokens"] == response["output_tokens"],
        "{stream}"
    );
    let events = stream["events"].as_array().context("events")?;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(
        types.starts_with(&[
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
        ]) && types.ends_with(&[
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]),
        "the typed event sequence: {types:?}"
    );
    ensure!(
        events
            .iter()
            .enumerate()
            .all(|(n, e)| e["sequence_number"].as_u64() == Some(n as u64)),
        "sequence numbers 0, 1, 2, ...: {events:?}"
    );
    // The function call round trip, whole and streamed.
    let call = &got["function_call"];
    ensure!(
        call["name"] == "get_weather"
            && call["arguments"]["city"].is_string()
            && call["arguments"]["days"].is_u64(),
        "{call}"
    );
    text(&call["call_id"], "call_id")?;
    text(&call["answer"], "answer after the function_call_output")?;
    ensure!(
        call["answer_types"] == serde_json::json!(["message"]),
        "{call}"
    );
    ensure!(
        call["streamed_name"] == "get_weather" && call["streamed_arguments"] == call["arguments"],
        "{call}"
    );
    text(&call["argument_deltas"], "argument deltas")?;
    // text.format json_schema reached the endpoint as JSON mode.
    text(&got["structured"]["answer"], "the JSON answer")?;
    // Errors.
    for which in ["store", "previous_response_id"] {
        let e = &got["errors"][which];
        ensure!(
            e["class"] == "BadRequestError"
                && e["status"] == 400
                && e["code"] == "unsupported_parameter"
                && e["param"] == which,
            "{which}: {e}"
        );
    }
    ensure!(
        got["errors"]["unknown_feature"]["class"] == "NotFoundError",
        "{}",
        got["errors"]
    );
    let midstream = &got["midstream"];
    let broken: Vec<&str> = midstream["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        broken.ends_with(&["error", "response.failed"])
            && broken.contains(&"response.output_text.delta"),
        "{broken:?}"
    );
    ensure!(
        midstream["code"] == "stream_interrupted" && midstream["status"] == "failed",
        "{midstream}"
    );
    text(&midstream["received"], "text before the failure")?;

    // What the simulators saw: text, two streams, the round trip (two), the streamed
    // call, the JSON answer; the refused requests never left Crossbar.
    let log = sim.requests("primary")?;
    ensure!(outcomes(&log) == ["ok"; 7], "{log:#?}");
    ensure!(
        streams(&log) == [false, true, true, false, false, true, false],
        "{log:#?}"
    );
    ensure!(sim.requests("backup")?.is_empty(), "nothing failed over");
    let cutter = sim.requests("cutter")?;
    ensure!(
        cutter.len() == 1 && cutter[0]["stream_end"] == "cut",
        "{cutter:#?}"
    );
    let dialects = dialects_of_summarize(&gateway)?;
    ensure!(
        dialects == serde_json::json!({"responses": 7}),
        "{dialects}"
    );
    gateway.check_running()?;
    sim.check_running()
}
