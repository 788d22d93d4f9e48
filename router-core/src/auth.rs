//! Secretless cloud credentials.
//!
//! - AWS: the SDK's default chain (environment, web identity / IRSA, container
//!   credentials, IMDS), optionally a named profile and a role assumed on top. The SDK
//!   caches and refreshes what it obtains.
//! - GCP: Application Default Credentials, or a credentials file of a secretless kind
//!   (external account = workload identity federation, possibly with service-account
//!   impersonation; impersonated service account). A service-account *key* file is
//!   refused: it is a long-lived secret. google-cloud-auth caches and refreshes tokens.
//! - OpenAI-compatible: an API key read once from a named environment variable.
//!
//! No credential value is ever logged or put in an error message.

use std::sync::Arc;

use crate::api::{Error, ErrorKind};
use crate::config::{AuthConfig, EndpointConfig};

/// AWS SDK configuration for a Bedrock endpoint: region and credential chain.
pub async fn aws_config(endpoint: &EndpointConfig) -> Result<aws_config::SdkConfig, Error> {
    let region = aws_config::Region::new(endpoint.region.clone());
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone());
    let role = match &endpoint.auth {
        AuthConfig::Default | AuthConfig::None => None,
        AuthConfig::Aws { profile, role_arn } => {
            if let Some(profile) = profile {
                loader = loader.profile_name(profile);
            }
            role_arn.clone()
        }
        other => {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "endpoint `{}`: {other:?} does not apply to Bedrock",
                    endpoint.name
                ),
            ));
        }
    };
    let base = loader.load().await;
    let Some(role_arn) = role else {
        return Ok(base);
    };
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(format!("crossbar-{}", endpoint.name))
        .region(region)
        .configure(&base)
        .build()
        .await;
    Ok(base
        .into_builder()
        .credentials_provider(
            aws_sdk_bedrockruntime::config::SharedCredentialsProvider::new(provider),
        )
        .build())
}

pub const GCP_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// GCP credentials for a Vertex endpoint.
pub async fn gcp_credentials(
    endpoint: &EndpointConfig,
) -> Result<Arc<google_cloud_auth::credentials::Credentials>, Error> {
    use google_cloud_auth::credentials;
    let auth_error = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::UpstreamAuth,
            format!("endpoint `{}`: GCP credentials: {e}", endpoint.name),
        )
    };
    let creds = match &endpoint.auth {
        AuthConfig::Default => credentials::Builder::default()
            .with_scopes([GCP_SCOPE])
            .build()
            .map_err(|e| auth_error(&e))?,
        AuthConfig::GcpCredentialsFile { path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| auth_error(&format!("reading {path}: {e}")))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| auth_error(&format!("{path} is not JSON: {e}")))?;
            match json.get("type").and_then(serde_json::Value::as_str) {
                Some("external_account") => credentials::external_account::Builder::new(json)
                    .with_scopes([GCP_SCOPE])
                    .build()
                    .map_err(|e| auth_error(&e))?,
                Some("impersonated_service_account") => {
                    credentials::impersonated::Builder::new(json)
                        .with_scopes([GCP_SCOPE])
                        .build()
                        .map_err(|e| auth_error(&e))?
                }
                Some("service_account") => {
                    return Err(auth_error(&format!(
                        "{path} is a service-account key, a long-lived secret; use workload identity federation or impersonation instead"
                    )));
                }
                other => {
                    return Err(auth_error(&format!(
                        "{path}: unsupported credentials type {other:?}"
                    )));
                }
            }
        }
        AuthConfig::None => return Err(auth_error(&"Vertex endpoints need credentials")),
        other => {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "endpoint `{}`: {other:?} does not apply to Vertex",
                    endpoint.name
                ),
            ));
        }
    };
    Ok(Arc::new(creds))
}

/// The auth headers for one Vertex request (cached tokens, refreshed by the library).
pub async fn gcp_headers(
    creds: &google_cloud_auth::credentials::Credentials,
) -> Result<http::HeaderMap, Error> {
    use google_cloud_auth::credentials::CacheableResource;
    match creds.headers(http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => Ok(data),
        Ok(CacheableResource::NotModified) => Err(Error::new(
            ErrorKind::Internal,
            "GCP credentials returned no headers",
        )),
        // The library's errors describe the failing step, not the token.
        Err(e) => Err(Error::new(
            ErrorKind::UpstreamAuth,
            format!("obtaining a GCP access token: {e}"),
        )),
    }
}

/// An API key from the named environment variable.
pub fn api_key_from_env(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(Error::new(
            ErrorKind::UpstreamAuth,
            format!("environment variable {name} (the API key) is not set"),
        )),
    }
}
