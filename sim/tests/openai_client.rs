//! An independent OpenAI client (`async-openai`) against the OpenAI simulator, in both
//! the OpenAI and the Azure deployment URL forms.

mod common;

use async_openai::Client;
use async_openai::config::{AzureConfig, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
    CreateChatCompletionRequestArgs, FinishReason,
};
use common::{set_faults, spec, start};
use futures_util::StreamExt;
use serde_json::json;
use sim::model::count_tokens;
use sim::{Kind, Sim};

async fn openai_sim() -> Sim {
    let mut oa = spec("openai", Kind::Openai);
    oa.models = vec!["gpt-4o-mini".into()];
    start(vec![oa]).await
}

fn client(sim: &Sim) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", sim.url("openai")))
            .with_api_key("sk-sim-test"),
    )
}

fn request(text: &str) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content(text)
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

fn api_error(e: OpenAIError) -> (u16, Option<String>) {
    match e {
        OpenAIError::ApiError(r) => (r.status_code.as_u16(), r.api_error.code),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn chat_completion_with_usage_that_agrees() {
    let sim = openai_sim().await;
    let out = client(&sim)
        .chat()
        .create(request("Summarise the incident."))
        .await
        .unwrap();
    let choice = &out.choices[0];
    let text = choice.message.content.clone().unwrap();
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = out.usage.unwrap();
    assert_eq!(usage.prompt_tokens, count_tokens("Summarise the incident."));
    assert_eq!(usage.completion_tokens, count_tokens(&text));
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    assert!(out.id.starts_with("chatcmpl-"));
}

#[tokio::test]
async fn streaming_with_include_usage_ends_with_a_usage_chunk() {
    let sim = openai_sim().await;
    let client = client(&sim);
    let whole = client
        .chat()
        .create(request("Recap the week."))
        .await
        .unwrap()
        .choices[0]
        .message
        .content
        .clone()
        .unwrap();

    let mut req = request("Recap the week.");
    req.stream = Some(true);
    req.stream_options = Some(serde_json::from_value(json!({"include_usage": true})).unwrap());
    let mut stream = client.chat().create_stream(req).await.unwrap();
    let mut text = String::new();
    let mut finish = None;
    let mut last_usage = None;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
            finish = finish.or(choice.finish_reason);
            assert!(chunk.usage.is_none());
        } else {
            last_usage = chunk.usage;
        }
    }
    assert_eq!(text, whole);
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(
        last_usage.expect("a final usage chunk").completion_tokens,
        count_tokens(&whole)
    );
    assert!(chunks > 3);
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let sim = openai_sim().await;
    let client = client(&sim);
    let tools = json!([{"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]);
    let first: CreateChatCompletionRequest = serde_json::from_value(json!({
        "model": "gpt-4o-mini", "tools": tools, "tool_choice": "required",
        "messages": [{"role": "user", "content": "Where is my order?"}],
    }))
    .unwrap();
    let out = client.chat().create(first).await.unwrap();
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let call =
        serde_json::to_value(&out.choices[0].message.tool_calls.as_ref().unwrap()[0]).unwrap();
    assert_eq!(call["function"]["name"], "lookup_order");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["order_id"].is_string());

    let second: CreateChatCompletionRequest = serde_json::from_value(json!({
        "model": "gpt-4o-mini", "tools": tools,
        "messages": [
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"status\": \"shipped\"}"},
        ],
    }))
    .unwrap();
    let out = client.chat().create(second).await.unwrap();
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn errors_arrive_as_openai_api_errors() {
    let sim = openai_sim().await;
    let client = client(&sim);
    let mut unknown = request("hi");
    unknown.model = "gpt-unknown".into();
    assert_eq!(
        api_error(client.chat().create(unknown).await.unwrap_err()),
        (404, Some("model_not_found".into()))
    );

    set_faults(&sim, "openai", json!({"errors": {"throttle": 1.0}})).await;
    assert_eq!(
        api_error(client.chat().create(request("hi")).await.unwrap_err()),
        (429, Some("rate_limit_exceeded".into()))
    );
    set_faults(
        &sim,
        "openai",
        json!({"errors": {"throttle": 0.0, "overloaded": 1.0}}),
    )
    .await;
    // async-openai keeps a 5xx body raw (OpenAI does not promise JSON there); ours is the JSON error.
    let OpenAIError::ApiError(e) = client.chat().create(request("hi")).await.unwrap_err() else {
        panic!("not an API error")
    };
    assert_eq!(e.status_code.as_u16(), 503);
    assert!(
        e.api_error.message.contains(r#""code":"overloaded""#),
        "{}",
        e.api_error.message
    );
    set_faults(
        &sim,
        "openai",
        json!({"errors": {"overloaded": 0.0, "server_error": 1.0}}),
    )
    .await;
    assert_eq!(
        api_error(client.chat().create(request("hi")).await.unwrap_err()).0,
        500
    );
    set_faults(&sim, "openai", json!({"errors": {"server_error": 0.0}})).await;

    let bad_key = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", sim.url("openai")))
            .with_api_key(""),
    );
    assert_eq!(
        api_error(bad_key.chat().create(request("hi")).await.unwrap_err()),
        (401, Some("invalid_api_key".into()))
    );
}

#[tokio::test]
async fn a_mid_stream_error_event_fails_the_client_stream() {
    let sim = openai_sim().await;
    set_faults(
        &sim,
        "openai",
        json!({"stream_error_after_tokens": 2, "stream_error": "server_error"}),
    )
    .await;
    let mut req = request("hi");
    req.stream = Some(true);
    let mut stream = client(&sim).chat().create_stream(req).await.unwrap();
    let mut outcome = Ok(());
    while let Some(chunk) = stream.next().await {
        if let Err(e) = chunk {
            outcome = Err(e);
            break;
        }
    }
    assert!(outcome.is_err(), "the client saw no error");
}

#[tokio::test]
async fn azure_deployment_urls_with_api_key() {
    let mut azure = spec("azure", Kind::Openai);
    azure.models = vec!["gpt4o-prod".into()];
    let sim = start(vec![azure]).await;
    let config = AzureConfig::new()
        .with_api_base(sim.url("azure"))
        .with_deployment_id("gpt4o-prod")
        .with_api_version("2024-10-21")
        .with_api_key("azure-key");
    let out = Client::with_config(config)
        .chat()
        .create(request("hello"))
        .await
        .unwrap();
    assert!(
        !out.choices[0]
            .message
            .content
            .as_deref()
            .unwrap()
            .is_empty()
    );

    let wrong = AzureConfig::new()
        .with_api_base(sim.url("azure"))
        .with_deployment_id("nope")
        .with_api_version("2024-10-21")
        .with_api_key("k");
    assert_eq!(
        api_error(
            Client::with_config(wrong)
                .chat()
                .create(request("hello"))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}
