//! The real `aws-sdk-bedrockruntime` against the Bedrock simulator: Converse,
//! ConverseStream, model-id encoding, tools, and every error class arriving as the
//! SDK's own typed error.

mod common;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration,
    Message, StopReason, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolSpecification,
};
use aws_smithy_types::Document;
use common::{set_faults, spec, start, stats};
use serde_json::json;
use sim::model::count_tokens;
use sim::{AuthMode, Kind, Sim};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const PROFILE: &str = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";
const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123xyz";

async fn bedrock_sim() -> Sim {
    let mut b = spec("bedrock", Kind::Bedrock);
    b.auth = AuthMode::Signed;
    b.region = Some("us-east-1".into());
    b.models = vec![MODEL.into(), PROFILE.into(), ARN.into()];
    start(vec![b]).await
}

fn client(sim: &Sim, region: &str) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(sim.url("bedrock"))
        .credentials_provider(Credentials::new(
            "AKIDSIMTEST",
            "not-a-real-secret",
            None,
            None,
            "test",
        ))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.into()))
        .build()
        .unwrap()
}

fn text_of(message: &Message) -> String {
    message
        .content()
        .iter()
        .filter_map(|b| b.as_text().ok())
        .cloned()
        .collect()
}

#[tokio::test]
async fn converse_returns_text_with_usage_that_agrees() {
    let sim = bedrock_sim().await;
    let out = client(&sim, "us-east-1")
        .converse()
        .model_id(MODEL)
        .system(aws_sdk_bedrockruntime::types::SystemContentBlock::Text(
            "Be brief.".into(),
        ))
        .messages(user("Summarise the quarter."))
        .send()
        .await
        .unwrap();
    let message = out.output().unwrap().as_message().unwrap();
    let text = text_of(message);
    assert!(!text.is_empty());
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    let usage = out.usage().unwrap();
    assert_eq!(
        usage.input_tokens() as u32,
        count_tokens("Be brief.") + count_tokens("Summarise the quarter.")
    );
    assert_eq!(usage.output_tokens() as u32, count_tokens(&text));
    assert_eq!(
        usage.total_tokens(),
        usage.input_tokens() + usage.output_tokens()
    );
    assert_eq!(
        stats(&sim, "bedrock").await["credentials"]["AKIDSIMTEST"],
        1
    );
}

#[tokio::test]
async fn percent_encoded_arns_and_inference_profiles_reach_the_model() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    for model in [ARN, PROFILE] {
        let out = client
            .converse()
            .model_id(model)
            .messages(user("hello"))
            .send()
            .await;
        assert!(out.is_ok(), "{model}: {:?}", out.err());
    }
    let err = client
        .converse()
        .model_id("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/other")
        .messages(user("hello"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::ValidationException(_)
    ));
}

#[tokio::test]
async fn converse_stream_sends_the_same_reply_as_events() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    let whole = client
        .converse()
        .model_id(MODEL)
        .messages(user("Plan the recap."))
        .send()
        .await
        .unwrap();
    let expected = text_of(whole.output().unwrap().as_message().unwrap());

    let mut stream = client
        .converse_stream()
        .model_id(MODEL)
        .messages(user("Plan the recap."))
        .send()
        .await
        .unwrap()
        .stream;
    let mut kinds = Vec::new();
    let mut text = String::new();
    let mut usage = None;
    while let Some(event) = stream.recv().await.unwrap() {
        match &event {
            ConverseStreamOutput::MessageStart(_) => kinds.push("start"),
            ConverseStreamOutput::ContentBlockDelta(d) => {
                text.push_str(d.delta().unwrap().as_text().unwrap());
                if kinds.last() != Some(&"delta") {
                    kinds.push("delta");
                }
            }
            ConverseStreamOutput::ContentBlockStop(_) => kinds.push("block_stop"),
            ConverseStreamOutput::MessageStop(m) => {
                assert_eq!(m.stop_reason(), &StopReason::EndTurn);
                kinds.push("stop");
            }
            ConverseStreamOutput::Metadata(m) => {
                usage = m.usage().cloned();
                kinds.push("metadata");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(kinds, ["start", "delta", "block_stop", "stop", "metadata"]);
    assert_eq!(text, expected);
    assert_eq!(usage.unwrap().output_tokens() as u32, count_tokens(&text));
}

#[tokio::test]
async fn tool_use_round_trip() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    let schema = Document::Object(
        [
            ("type".to_owned(), Document::String("object".into())),
            (
                "properties".to_owned(),
                Document::Object(
                    [(
                        "city".to_owned(),
                        Document::Object(
                            [("type".to_owned(), Document::String("string".into()))].into(),
                        ),
                    )]
                    .into(),
                ),
            ),
        ]
        .into(),
    );
    let tools = ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Weather by city")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .unwrap(),
        ))
        .tool_choice(ToolChoice::Any(AnyToolChoice::builder().build()))
        .build()
        .unwrap();
    let question = user("What is the weather in Paris?");
    let first = client
        .converse()
        .model_id(MODEL)
        .messages(question.clone())
        .tool_config(tools.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.stop_reason(), &StopReason::ToolUse);
    let assistant = first.output().unwrap().as_message().unwrap().clone();
    let tool_use = assistant
        .content()
        .iter()
        .find_map(|b| b.as_tool_use().ok())
        .expect("a toolUse block")
        .clone();
    assert_eq!(tool_use.name(), "get_weather");
    assert!(tool_use.tool_use_id().starts_with("tooluse_"));
    let Document::Object(input) = tool_use.input() else {
        panic!("input is an object")
    };
    assert!(matches!(input.get("city"), Some(Document::String(_))));

    let result = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(tool_use.tool_use_id())
                .content(ToolResultContentBlock::Text("18C and sunny".into()))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let second = client
        .converse()
        .model_id(MODEL)
        .messages(question)
        .messages(assistant)
        .messages(result)
        .tool_config(tools)
        .send()
        .await
        .unwrap();
    assert_eq!(second.stop_reason(), &StopReason::EndTurn);
    assert!(!text_of(second.output().unwrap().as_message().unwrap()).is_empty());
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_end_the_reply() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    let out = client
        .converse()
        .model_id(MODEL)
        .messages(user("hello"))
        .inference_config(InferenceConfiguration::builder().max_tokens(3).build())
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::MaxTokens);
    assert_eq!(out.usage().unwrap().output_tokens(), 3);

    let full = text_of(
        client
            .converse()
            .model_id(MODEL)
            .messages(user("hello"))
            .send()
            .await
            .unwrap()
            .output()
            .unwrap()
            .as_message()
            .unwrap(),
    );
    let stop = format!(" {}", full.split(' ').nth(2).unwrap().trim_end_matches('.'));
    let out = client
        .converse()
        .model_id(MODEL)
        .messages(user("hello"))
        .inference_config(
            InferenceConfiguration::builder()
                .stop_sequences(stop.clone())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::StopSequence);
    let text = text_of(out.output().unwrap().as_message().unwrap());
    assert!(full.starts_with(&text) && !text.contains(&stop));
}

#[tokio::test]
async fn every_error_class_arrives_as_the_sdks_typed_error() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    let cases = [
        (json!({"errors": {"throttle": 1.0}}), "ThrottlingException"),
        (
            json!({"errors": {"server_error": 1.0}}),
            "InternalServerException",
        ),
        (
            json!({"errors": {"timeout": 1.0}, "timeout_after_ms": 10}),
            "ModelTimeoutException",
        ),
        (
            json!({"errors": {"overloaded": 1.0}}),
            "ServiceUnavailableException",
        ),
        (
            json!({"outage": "unavailable"}),
            "ServiceUnavailableException",
        ),
        (json!({"capacity_tpm": 1}), "ThrottlingException"),
    ];
    for (faults, expected) in cases {
        set_faults(&sim, "bedrock", json!({"errors": {"throttle": 0, "server_error": 0, "timeout": 0, "overloaded": 0}, "outage": "none", "capacity_tpm": null})).await;
        set_faults(&sim, "bedrock", faults.clone()).await;
        let err = client
            .converse()
            .model_id(MODEL)
            .messages(user("hello"))
            .send()
            .await
            .unwrap_err();
        let SdkError::ServiceError(service) = &err else {
            panic!("{faults}: not a service error: {err:?}")
        };
        let typed = match service.err() {
            ConverseError::ThrottlingException(_) => "ThrottlingException",
            ConverseError::InternalServerException(_) => "InternalServerException",
            ConverseError::ModelTimeoutException(_) => "ModelTimeoutException",
            ConverseError::ServiceUnavailableException(_) => "ServiceUnavailableException",
            other => panic!("{faults}: unexpected {other:?}"),
        };
        assert_eq!(typed, expected, "{faults}");
    }
}

#[tokio::test]
async fn client_errors_are_validation_and_access_denied() {
    let mut b = spec("bedrock", Kind::Bedrock);
    b.auth = AuthMode::Signed;
    b.region = Some("us-east-1".into());
    b.context_window = 5;
    let sim = start(vec![b]).await;

    let err = client(&sim, "us-east-1")
        .converse()
        .model_id(MODEL)
        .messages(user("one two three four five six"))
        .send()
        .await
        .unwrap_err();
    let ConverseError::ValidationException(e) = err.into_service_error() else {
        panic!("not a validation error")
    };
    assert_eq!(e.message(), Some("Input is too long for requested model."));

    let assistant_first = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    let err = client(&sim, "us-east-1")
        .converse()
        .model_id(MODEL)
        .messages(assistant_first)
        .send()
        .await
        .unwrap_err();
    let ConverseError::ValidationException(e) = err.into_service_error() else {
        panic!("not a validation error")
    };
    assert!(
        e.message()
            .unwrap()
            .contains("must start with a user message")
    );

    let err = client(&sim, "eu-west-1")
        .converse()
        .model_id(MODEL)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::AccessDeniedException(_)
    ));
}

#[tokio::test]
async fn a_mid_stream_exception_is_the_sdks_typed_stream_error() {
    let sim = bedrock_sim().await;
    set_faults(
        &sim,
        "bedrock",
        json!({"stream_error_after_tokens": 3, "stream_error": "throttle"}),
    )
    .await;
    let mut stream = client(&sim, "us-east-1")
        .converse_stream()
        .model_id(MODEL)
        .messages(user("hello"))
        .send()
        .await
        .unwrap()
        .stream;
    let mut deltas = 0;
    let err = loop {
        match stream.recv().await {
            Ok(Some(ConverseStreamOutput::ContentBlockDelta(_))) => deltas += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(deltas, 3);
    let SdkError::ServiceError(service) = err else {
        panic!("not a service error")
    };
    assert!(
        service.err().is_throttling_exception(),
        "{:?}",
        service.err()
    );
}

#[tokio::test]
async fn cut_and_corrupted_streams_fail_in_the_sdk() {
    let sim = bedrock_sim().await;
    let client = client(&sim, "us-east-1");
    for faults in [
        json!({"cut_after_tokens": 2}),
        json!({"malformed_after_tokens": 2}),
    ] {
        set_faults(
            &sim,
            "bedrock",
            json!({"cut_after_tokens": null, "malformed_after_tokens": null}),
        )
        .await;
        set_faults(&sim, "bedrock", faults.clone()).await;
        let mut stream = client
            .converse_stream()
            .model_id(MODEL)
            .messages(user("hello"))
            .send()
            .await
            .unwrap()
            .stream;
        let mut deltas = 0;
        let outcome = loop {
            match stream.recv().await {
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(_))) => deltas += 1,
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(outcome.is_err(), "{faults}: the SDK saw a clean end");
        assert_eq!(deltas, 2, "{faults}");
    }
    let injected = &stats(&sim, "bedrock").await["injected"];
    assert_eq!(
        (injected["cut"].as_u64(), injected["malformed"].as_u64()),
        (Some(1), Some(1))
    );
}
