//! The AWS SDK's *default credential chain* finds the simulated container-credentials
//! endpoint (as on ECS/EKS pod identity) and its signed requests are accepted by a
//! Bedrock endpoint that only trusts credentials the identity service issued.
//!
//! One test per file: it sets process environment variables the chain reads.

mod common;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use common::{spec, start, stats};
use sim::{AuthMode, Kind};

#[tokio::test]
async fn default_chain_uses_container_credentials_and_the_issued_key_is_accepted() {
    let mut identity = spec("identity", Kind::Identity);
    identity.container_authorization = Some("pod-identity-token".into());
    let mut bedrock = spec("bedrock", Kind::Bedrock);
    bedrock.auth = AuthMode::Issued;
    bedrock.region = Some("us-west-2".into());
    let sim = start(vec![identity, bedrock]).await;

    // SAFETY: this test binary has a single test, so no other thread reads the environment now.
    unsafe {
        sim::identity::use_container_credentials(
            &format!("{}/creds", sim.url("identity")),
            "/nonexistent/crossbar-sim-test",
            Some("pod-identity-token"),
        );
    }
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-west-2")
        .load()
        .await;
    let config = aws_sdk_bedrockruntime::config::Builder::from(&shared)
        .endpoint_url(sim.url("bedrock"))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_bedrockruntime::Client::from_conf(config);
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hello".into()))
        .build()
        .unwrap();
    for _ in 0..3 {
        client
            .converse()
            .model_id("amazon.nova-pro-v1:0")
            .messages(message.clone())
            .send()
            .await
            .expect("signed with issued credentials");
    }

    // Credentials are fetched once and cached by the SDK, not per request.
    let identity = stats(&sim, "identity").await;
    assert_eq!(
        identity["credentials"]["issued:aws-container"], 1,
        "{identity}"
    );
    let bedrock = stats(&sim, "bedrock").await;
    let used: Vec<&String> = bedrock["credentials"].as_object().unwrap().keys().collect();
    assert_eq!(used.len(), 1);
    assert!(
        used[0].starts_with("ASIA") && used[0].ends_with("(aws-container)"),
        "{used:?}"
    );
    assert_eq!(bedrock["credentials"][used[0]], 3);
}
