//! Continuation semantics (assistant prefill): Claude on Vertex and Bedrock continue a
//! final assistant message; an OpenAI-compatible endpoint only with vLLM's
//! `continue_final_message`. The continuation is the rest of the answer the
//! conversation gets without the prefill, so two simulators with the same model and
//! seed continue each other's answers exactly, whatever provider each speaks — what a
//! gateway relies on when it continues a broken stream on a backup.

mod common;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use common::{set_faults, spec, start};
use serde_json::{Value, json};
use sim::model::{count_tokens, token_pieces};
use sim::{Kind, Sim};

/// One model name for every provider: the reply is a function of (seed, model, prompt).
const MODEL: &str = "claude-sonnet-4@20250514";
const QUESTION: &str = "Summarise the incident review for the on-call team.";

async fn sims() -> Sim {
    let mut vertex = spec("vertex", Kind::Vertex);
    vertex.region = Some("us-east5".into());
    let mut bedrock = spec("bedrock", Kind::Bedrock);
    bedrock.region = Some("us-east-1".into());
    start(vec![spec("oa", Kind::Openai), vertex, bedrock]).await
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn claude_url(sim: &Sim, method: &str) -> String {
    format!(
        "{}/v1/projects/p/locations/us-east5/publishers/anthropic/models/{MODEL}:{method}",
        sim.url("vertex")
    )
}

fn gemini_url(sim: &Sim) -> String {
    format!(
        "{}/v1/projects/p/locations/us-east5/publishers/google/models/{MODEL}:generateContent",
        sim.url("vertex")
    )
}

/// Claude on Vertex: (status, body) for `messages`.
async fn claude(sim: &Sim, messages: Value) -> (u16, Value) {
    post(
        claude_url(sim, "rawPredict"),
        json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 500, "messages": messages}),
    )
    .await
}

fn claude_text(body: &Value) -> String {
    body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect()
}

async fn openai(sim: &Sim, body: Value) -> (u16, Value) {
    post(format!("{}/v1/chat/completions", sim.url("oa")), body).await
}

fn bedrock(sim: &Sim) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(sim.url("bedrock"))
        .credentials_provider(Credentials::new("AKIDSIM", "not-a-secret", None, None, "t"))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn message(role: ConversationRole, text: &str) -> Message {
    Message::builder()
        .role(role)
        .content(ContentBlock::Text(text.into()))
        .build()
        .unwrap()
}

/// Bedrock Converse with an optional prefill: the reply's text, or the SDK's error.
async fn converse(
    client: &Client,
    prefill: Option<&str>,
) -> Result<(String, i32), aws_sdk_bedrockruntime::error::SdkError<ConverseError>> {
    let mut request = client
        .converse()
        .model_id(MODEL)
        .messages(message(ConversationRole::User, QUESTION));
    if let Some(prefill) = prefill {
        request = request.messages(message(ConversationRole::Assistant, prefill));
    }
    let out = request.send().await?;
    let text = out
        .output()
        .and_then(|o| o.as_message().ok())
        .map(|m| {
            m.content()
                .iter()
                .filter_map(|c| c.as_text().ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok((text, out.usage().unwrap().input_tokens()))
}

/// The first `n` token pieces of `text`: a prefill that is the start of the answer.
fn first_tokens(text: &str, n: usize) -> String {
    token_pieces(text)[..n].concat()
}

#[tokio::test]
async fn claude_on_vertex_continues_a_prefill_with_the_rest_of_the_answer() {
    let sim = sims().await;
    let (status, whole) = claude(&sim, json!([{"role": "user", "content": QUESTION}])).await;
    assert_eq!(status, 200);
    let answer = claude_text(&whole);
    let prefill = first_tokens(&answer, 5);
    let (status, continued) = claude(
        &sim,
        json!([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefill}]),
    )
    .await;
    assert_eq!(status, 200, "{continued}");
    let continuation = claude_text(&continued);
    assert_eq!(format!("{prefill}{continuation}"), answer);
    assert_eq!(
        continued["usage"]["input_tokens"].as_u64().unwrap(),
        u64::from(count_tokens(QUESTION) + 5),
        "the prefill is input"
    );
    assert_eq!(
        continued["usage"]["output_tokens"].as_u64().unwrap(),
        u64::from(count_tokens(&continuation))
    );

    // Streamed, with the prefill as text blocks: the same continuation.
    let body = reqwest::Client::new()
        .post(claude_url(&sim, "streamRawPredict"))
        .bearer_auth("k")
        .json(&json!({
            "anthropic_version": "vertex-2023-10-16", "max_tokens": 500, "stream": true,
            "messages": [{"role": "user", "content": QUESTION},
                         {"role": "assistant", "content": [{"type": "text", "text": prefill}]}],
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streamed: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, continuation);

    let log = sim.requests("vertex");
    let prefills: Vec<bool> = log.iter().map(|e| e.prefill).collect();
    assert_eq!(prefills, [false, true, true]);
}

#[tokio::test]
async fn simulators_with_the_same_model_and_seed_continue_each_others_answers() {
    // Two simulator processes (same seed), three providers.
    let (a, b) = (sims().await, sims().await);
    let (_, reply) = openai(
        &a,
        json!({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}),
    )
    .await;
    let answer = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [1, 7] {
        let prefill = first_tokens(&answer, n);
        // Claude on Vertex, in the other process.
        let (_, continued) = claude(
            &b,
            json!([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefill}]),
        )
        .await;
        assert_eq!(
            format!("{prefill}{}", claude_text(&continued)),
            answer,
            "claude, {n}"
        );
        // Bedrock, through the AWS SDK.
        let (text, input_tokens) = converse(&bedrock(&b), Some(&prefill)).await.unwrap();
        assert_eq!(format!("{prefill}{text}"), answer, "bedrock, {n}");
        assert_eq!(input_tokens as u32, count_tokens(QUESTION) + n as u32);
        // vLLM's continue_final_message, back in the first.
        let (status, continued) = openai(
            &a,
            json!({
                "model": MODEL, "continue_final_message": true, "add_generation_prompt": false,
                "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefill}],
            }),
        )
        .await;
        assert_eq!(status, 200, "{continued}");
        let text = continued["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert_eq!(format!("{prefill}{text}"), answer, "vllm, {n}");
    }
    assert!(b.requests("bedrock").iter().all(|e| e.prefill));
}

#[tokio::test]
async fn openai_answers_a_final_assistant_message_with_a_new_turn_unless_asked_to_continue() {
    let sim = sims().await;
    let (_, reply) = openai(
        &sim,
        json!({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}),
    )
    .await;
    let answer = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefill = first_tokens(&answer, 4);
    let conversation =
        json!([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefill}]);
    let (status, new_turn) = openai(&sim, json!({"model": MODEL, "messages": conversation})).await;
    assert_eq!(status, 200);
    let text = new_turn["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert_ne!(
        format!("{prefill}{text}"),
        answer,
        "a new turn, not a continuation"
    );
    assert_eq!(
        new_turn["usage"]["prompt_tokens"].as_u64().unwrap(),
        u64::from(count_tokens(QUESTION) + 4)
    );

    let (status, both) = openai(
        &sim,
        json!({"model": MODEL, "messages": conversation, "continue_final_message": true, "add_generation_prompt": true}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(both["error"]["type"], "invalid_request_error");
    let (status, no_assistant) = openai(
        &sim,
        json!({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "continue_final_message": true}),
    )
    .await;
    assert_eq!(status, 400, "{no_assistant}");
    let prefills: Vec<bool> = sim.requests("oa").iter().map(|e| e.prefill).collect();
    assert_eq!(prefills, [false, false, true, true]);
}

#[tokio::test]
async fn a_prefill_ending_in_whitespace_is_refused_as_anthropic_does() {
    let sim = sims().await;
    let (status, body) = claude(
        &sim,
        json!([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The service "}]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("final assistant content cannot end with trailing whitespace"),
        "{body}"
    );
    let err = converse(&bedrock(&sim), Some("The service\n"))
        .await
        .unwrap_err();
    match err.as_service_error() {
        Some(ConverseError::ValidationException(e)) => assert!(
            e.message().unwrap().contains("trailing whitespace"),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    // vLLM has no such rule.
    let (status, _) = openai(
        &sim,
        json!({
            "model": MODEL, "continue_final_message": true,
            "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The service "}],
        }),
    )
    .await;
    assert_eq!(status, 200);
    let outcomes: Vec<String> = sim
        .requests("vertex")
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["bad_request"]);
}

#[tokio::test]
async fn prefill_reject_refuses_with_each_providers_own_400() {
    let sim = sims().await;
    for name in ["oa", "vertex", "bedrock"] {
        set_faults(&sim, name, json!({"prefill": "reject"})).await;
    }
    let (status, body) = claude(
        &sim,
        json!([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The"}]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error"))
    );
    // A conversation that ends with the user is served as ever.
    assert_eq!(
        claude(&sim, json!([{"role": "user", "content": QUESTION}]))
            .await
            .0,
        200
    );

    let err = converse(&bedrock(&sim), Some("The")).await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(ConverseError::ValidationException(_))
        ),
        "{err:?}"
    );
    assert!(converse(&bedrock(&sim), None).await.is_ok());

    let (status, body) = openai(
        &sim,
        json!({
            "model": MODEL, "continue_final_message": true,
            "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The"}],
        }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // Gemini: a final model turn is refused as INVALID_ARGUMENT...
    let contents = json!([
        {"role": "user", "parts": [{"text": QUESTION}]},
        {"role": "model", "parts": [{"text": "The"}]},
    ]);
    let (status, body) = post(gemini_url(&sim), json!({"contents": contents})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    // ...and by default answered with a new turn.
    set_faults(&sim, "vertex", json!({"prefill": "accept"})).await;
    let (status, body) = post(gemini_url(&sim), json!({"contents": contents})).await;
    assert_eq!(status, 200, "{body}");

    let gemini: Vec<(bool, String)> = sim
        .requests("vertex")
        .into_iter()
        .filter(|e| e.path.contains("google"))
        .map(|e| (e.prefill, e.outcome))
        .collect();
    assert_eq!(
        gemini,
        [(true, "bad_request".to_owned()), (true, "ok".to_owned())]
    );
}
