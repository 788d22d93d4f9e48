//! Secretless authentication end to end, offline, and no credential in any log line
//! or error message:
//! - Bedrock through the AWS default chain → container credentials served by the
//!   simulated identity endpoint; the Bedrock simulator accepts only keys it issued;
//! - Gemini on Vertex through workload identity federation (STS token exchange) plus
//!   service-account impersonation; the Vertex simulator accepts only tokens issued
//!   by impersonation;
//! - OpenAI with a key read from a named environment variable.
//!
//! One test in this file: it sets process environment variables and installs the
//! global tracing subscriber that captures every log line at TRACE level.

use std::io::Write;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use router_core::api::{ChatRequest, ErrorKind, Message};
use router_core::config::{AuthConfig, EndpointConfig, Provider};
use router_core::providers::{self, TransportSettings};
use serde_json::json;
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const CONTAINER_TOKEN: &str = "pod-identity-authorization-token-9f8e7d";
const OPENAI_KEY: &str = "sk-live-do-not-log-4b3c2a1908";
const SA: &str = "router@crossbar-prod.iam.gserviceaccount.com";

fn request() -> ChatRequest {
    ChatRequest {
        model: "summarize".into(),
        messages: vec![Message::user("Summarise the incident.")],
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn secretless_credentials_reach_the_clouds_and_never_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    // Everything at TRACE, through the filter Crossbar's binaries use.
    let filter = tracing_subscriber::EnvFilter::new(router_core::logging::directives("trace"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut identity = EndpointSpec::new("identity", Kind::Identity);
    identity.container_authorization = Some(CONTAINER_TOKEN.into());
    let mut bedrock = EndpointSpec::new("bedrock", Kind::Bedrock);
    bedrock.auth = AuthMode::Issued;
    bedrock.region = Some("us-east-1".into());
    let mut vertex = EndpointSpec::new("vertex", Kind::Vertex);
    vertex.auth = AuthMode::Issued;
    vertex.region = Some("europe-west4".into());
    let mut openai = EndpointSpec::new("openai", Kind::Openai);
    openai.auth = AuthMode::Present;
    let sim = Sim::start(SimConfig {
        seed: 3,
        control: None,
        endpoints: vec![identity, bedrock, vertex, openai],
    })
    .await
    .unwrap();

    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe {
        sim::identity::use_container_credentials(
            &format!("{}/creds", sim.url("identity")),
            "/nonexistent/crossbar-auth-test",
            Some(CONTAINER_TOKEN),
        );
        std::env::set_var("CROSSBAR_TEST_OPENAI_KEY", OPENAI_KEY);
    }
    let mut errors = Vec::new();

    // Bedrock: default chain → container credentials; whole, streamed, and an error.
    let mut ep = EndpointConfig::new(
        "bedrock-use1",
        Provider::Bedrock,
        "amazon.nova-pro-v1:0",
        "us-east-1",
    );
    ep.base_url = Some(sim.url("bedrock"));
    let bedrock = providers::connect(&ep, &TransportSettings::default())
        .await
        .unwrap();
    bedrock
        .chat(&request())
        .await
        .expect("Bedrock accepted the issued credentials");
    let mut stream = bedrock.chat_stream(&request()).await.unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    let throttle = sim
        .endpoint("bedrock")
        .faults()
        .patched(&json!({"errors": {"throttle": 1.0}}))
        .unwrap();
    sim.endpoint("bedrock").set_faults(throttle);
    errors.push(bedrock.chat(&request()).await.unwrap_err());
    let used = sim.endpoint("bedrock").stats().credentials;
    assert!(
        used.keys()
            .all(|k| k.starts_with("ASIA") && k.ends_with("(aws-container)")),
        "{used:?}"
    );
    assert_eq!(
        sim.endpoint("identity").stats().credentials["issued:aws-container"],
        1,
        "fetched once, then cached"
    );

    // Vertex: WIF token exchange, then impersonation.
    let dir = std::env::temp_dir().join(format!("crossbar-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("oidc"),
        "eyJhbGciOiJSUzI1NiJ9.k8s-projected-token.sig",
    )
    .unwrap();
    let identity_url = sim.url("identity");
    let wif = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/crossbar/providers/eks",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{identity_url}/v1/token"),
        "service_account_impersonation_url": format!("{identity_url}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"),
        "credential_source": { "file": dir.join("oidc").to_str().unwrap() },
    });
    std::fs::write(dir.join("wif.json"), wif.to_string()).unwrap();
    let mut ep = EndpointConfig::new(
        "gemini-eu",
        Provider::VertexGemini,
        "gemini-2.0-flash-001",
        "europe-west4",
    );
    ep.base_url = Some(sim.url("vertex"));
    ep.project = Some("crossbar-prod".into());
    ep.auth = AuthConfig::GcpCredentialsFile {
        path: dir.join("wif.json").to_str().unwrap().to_owned(),
    };
    let gemini = providers::connect(&ep, &TransportSettings::default())
        .await
        .unwrap();
    gemini
        .chat(&request())
        .await
        .expect("Vertex accepted the impersonated token");
    gemini.chat(&request()).await.unwrap();
    let used = sim.endpoint("vertex").stats().credentials;
    assert_eq!(
        used[&format!("gcp-impersonated:{SA} via gcp-sts")],
        2,
        "{used:?}"
    );
    assert_eq!(
        sim.endpoint("identity").stats().credentials["issued:gcp-sts"],
        1,
        "token cached between requests"
    );

    // A service-account key file is a long-lived secret: refused.
    std::fs::write(
        dir.join("key.json"),
        r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}"#,
    )
    .unwrap();
    ep.auth = AuthConfig::GcpCredentialsFile {
        path: dir.join("key.json").to_str().unwrap().to_owned(),
    };
    let refused = providers::connect(&ep, &TransportSettings::default())
        .await
        .err()
        .expect("key files are refused");
    assert_eq!(refused.kind, ErrorKind::UpstreamAuth);
    errors.push(refused);

    // OpenAI: key from a named variable; a forged token is rejected by Vertex.
    let mut ep = EndpointConfig::new("azure-east", Provider::Openai, "gpt-4o-mini", "eastus");
    ep.base_url = Some(sim.url("openai"));
    ep.auth = AuthConfig::ApiKeyEnv {
        env: "CROSSBAR_TEST_OPENAI_KEY".into(),
    };
    providers::connect(&ep, &TransportSettings::default())
        .await
        .unwrap()
        .chat(&request())
        .await
        .unwrap();
    ep.auth = AuthConfig::ApiKeyEnv {
        env: "CROSSBAR_TEST_UNSET_KEY".into(),
    };
    errors.push(
        providers::connect(&ep, &TransportSettings::default())
            .await
            .err()
            .expect("a missing key variable is an error"),
    );

    // Nothing secret in any log line or error.
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.len() > 1_000 && logs.contains("TRACE"),
        "the capture must see the clients' logs ({} bytes)",
        logs.len()
    );
    let rendered: String = errors
        .iter()
        .map(|e| format!("{e} {e:?} {}\n", e.to_openai_json()))
        .collect();
    let mut secrets = sim.endpoint("identity").registry.secret_values();
    assert!(secrets.len() >= 4, "{} secrets issued", secrets.len());
    secrets.extend([CONTAINER_TOKEN.to_owned(), OPENAI_KEY.to_owned()]);
    for secret in &secrets {
        if let Some(at) = logs.find(secret.as_str()) {
            // Show where, never what: the log text before the value.
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = &logs[line_start..at];
            panic!(
                "a credential ({} chars) reached the log line starting {:?}",
                secret.len(),
                &line[..line.len().min(300)]
            );
        }
        assert!(
            !rendered.contains(secret.as_str()),
            "a credential reached an error message"
        );
    }
}
