//! Identity services for secretless authentication, so the real credential chains
//! of the AWS SDK and google-cloud-auth can run offline:
//!
//! | route | what it stands for |
//! |---|---|
//! | `GET /creds` | AWS container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) |
//! | `POST /` `Action=AssumeRoleWithWebIdentity` | AWS STS web identity (IRSA; `AWS_ENDPOINT_URL_STS`) |
//! | `POST /v1/token` | GCP STS token exchange (workload identity federation `token_url`) |
//! | `POST /v1/projects/-/serviceAccounts/{sa}:generateAccessToken` | GCP IAM credentials (impersonation) |
//! | `GET /computeMetadata/v1/instance/service-accounts/{sa}/token` | GCE metadata server (`GCE_METADATA_HOST`) |
//!
//! Every credential issued is put in the process's [`Registry`], so a Bedrock or
//! Vertex endpoint with `auth = "issued"` accepts exactly those. Issued values are
//! random and short-lived (one hour); none is logged or counted by value.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::auth::header;
use crate::endpoint::{Endpoint, Issued, SimError, rfc3339, unix_now};

const LIFETIME_S: u64 = 3600;
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn routes() -> Router<Arc<Endpoint>> {
    Router::new()
        .route("/creds", get(container_credentials))
        .route("/", post(aws_sts).get(metadata_root))
        .route("/v1/token", post(gcp_sts))
        .route(
            "/v1/projects/{project}/serviceAccounts/{sa_method}",
            post(generate_access_token),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/token",
            get(metadata_token),
        )
        .route(
            "/computeMetadata/v1/project/project-id",
            get(metadata_project),
        )
}

/// Points the AWS SDK's default credential chain at the container credentials of a
/// simulated identity endpoint, `creds_url` (`http://HOST:PORT/creds`), and at nothing
/// else on this machine: the variables that would give it static keys, a profile, a
/// bearer token or web identity are removed, the shared config and credentials files
/// are `config_file` (empty or absent), and the EC2 metadata service is off.
/// `authorization` is the token the endpoint expects (its `container_authorization`);
/// `None` removes `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
///
/// # Safety
///
/// Changes the process environment ([`std::env::set_var`]): no other thread may read
/// or write it meanwhile.
pub unsafe fn use_container_credentials(
    creds_url: &str,
    config_file: impl AsRef<std::ffi::OsStr>,
    authorization: Option<&str>,
) {
    // SAFETY: the caller guarantees nothing else touches the environment meanwhile.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_BEARER_TOKEN_BEDROCK",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_CONFIG_FILE", config_file.as_ref());
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", config_file.as_ref());
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds_url);
        match authorization {
            Some(token) => std::env::set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", token),
            None => std::env::remove_var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        }
    }
}

/// The common failure modes (latency, outage, injected 5xx) apply to identity too,
/// so a DR drill can take the credential service down.
async fn arrive(ep: &Endpoint) -> Result<(), SimError> {
    let faults = ep.arrive().await?;
    ep.admit(&faults, 0, 0, false).await
}

fn issue_aws(ep: &Endpoint, label: &str) -> (String, String, String, String) {
    let key_id = format!("ASIA{}", ep.random_string(KEY_ALPHABET, 16));
    let secret = ep.random_string(SECRET_ALPHABET, 40);
    let token = ep.random_string(SECRET_ALPHABET, 180);
    ep.registry.insert(
        key_id.clone(),
        Issued {
            label: label.to_owned(),
            session_token: Some(token.clone()),
            secret: Some(secret.clone()),
        },
    );
    ep.record(|s| *s.credentials.entry(format!("issued:{label}")).or_default() += 1);
    (key_id, secret, token, rfc3339(unix_now() + LIFETIME_S))
}

fn issue_token(ep: &Endpoint, label: &str) -> String {
    let token = format!("ya29.sim-{}", ep.random_string(TOKEN_ALPHABET, 96));
    ep.registry.insert(
        token.clone(),
        Issued {
            label: label.to_owned(),
            session_token: None,
            secret: None,
        },
    );
    ep.record(|s| *s.credentials.entry(format!("issued:{label}")).or_default() += 1);
    token
}

async fn container_credentials(State(ep): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if let Err(e) = arrive(&ep).await {
        return plain_error(&e);
    }
    if let Some(expected) = &ep.spec.container_authorization
        && header(&headers, "authorization") != Some(expected.as_str())
    {
        ep.record(|s| s.auth_rejected += 1);
        return (StatusCode::UNAUTHORIZED, Json(json!({ "code": "AccessDenied", "message": "Authorization token is missing or invalid." }))).into_response();
    }
    let (key_id, secret, token, expiration) = issue_aws(&ep, "aws-container");
    Json(json!({
        "AccessKeyId": key_id,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": expiration,
        "RoleArn": "arn:aws:iam::123456789012:role/crossbar-sim",
    }))
    .into_response()
}

async fn aws_sts(
    State(ep): State<Arc<Endpoint>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(e) = arrive(&ep).await {
        if let Some(unanswered) = crate::endpoint::unanswered(&e) {
            return unanswered;
        }
        return sts_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("{e:?}"),
        );
    }
    if form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity") {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "Only AssumeRoleWithWebIdentity is simulated.",
        );
    }
    let (Some(role), Some(web_token)) = (form.get("RoleArn"), form.get("WebIdentityToken")) else {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn and WebIdentityToken are required.",
        );
    };
    if web_token.trim().is_empty() {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidIdentityToken",
            "The web identity token is empty.",
        );
    }
    let session = form
        .get("RoleSessionName")
        .cloned()
        .unwrap_or_else(|| "crossbar".into());
    let (key_id, secret, token, expiration) = issue_aws(&ep, "aws-web-identity");
    let body = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{key_id}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:crossbar:router</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>{role}/{session}</Arn>
      <AssumedRoleId>AROASIMULATED:{session}</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
        role = xml_escape(role),
        session = xml_escape(&session),
        request_id = ep.next_id(b"0123456789abcdef", 32),
    );
    ([("content-type", "text/xml")], body).into_response()
}

fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>0</RequestId></ErrorResponse>"#,
        xml_escape(message)
    );
    (status, [("content-type", "text/xml")], body).into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// GCP STS (RFC 8693 token exchange); the client may send a form or JSON.
async fn gcp_sts(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = arrive(&ep).await {
        if let Some(unanswered) = crate::endpoint::unanswered(&e) {
            return unanswered;
        }
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            &format!("{e:?}"),
        );
    }
    let is_json =
        header(&headers, "content-type").is_some_and(|c| c.starts_with("application/json"));
    let fields: HashMap<String, String> = if is_json {
        match serde_json::from_slice::<HashMap<String, Value>>(&body) {
            Ok(map) => map
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect(),
            Err(e) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("malformed JSON: {e}"),
                );
            }
        }
    } else {
        match serde_urlencoded_pairs(&body) {
            Some(map) => map,
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "malformed form body",
                );
            }
        }
    };
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange",
        );
    }
    if get("subject_token").is_empty() || get("subject_token_type").is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token and subject_token_type are required",
        );
    }
    if get("audience").is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "audience is required",
        );
    }
    let token = issue_token(&ep, "gcp-sts");
    Json(json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": LIFETIME_S,
    }))
    .into_response()
}

fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// IAM credentials `generateAccessToken`: the caller must present a token this
/// process issued (from the STS exchange or the metadata server).
async fn generate_access_token(
    State(ep): State<Arc<Endpoint>>,
    Path((_project, sa_method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = arrive(&ep).await {
        return crate::google::error_response(&e);
    }
    let Some(account) = sa_method.strip_suffix(":generateAccessToken") else {
        return crate::google::error_response(&SimError::NotFound(format!(
            "Method not found: {sa_method}"
        )));
    };
    let bearer = header(&headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    let Some(caller) = bearer.and_then(|t| ep.registry.get(t)) else {
        ep.record(|s| s.auth_rejected += 1);
        return crate::google::error_response(&SimError::Unauthenticated(
            "Request had invalid authentication credentials. Expected OAuth 2 access token.".into(),
        ));
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return crate::google::error_response(&SimError::bad_request(format!(
                "Invalid JSON payload received. {e}"
            )));
        }
    };
    if request
        .get("scope")
        .is_none_or(|s| s.as_array().is_none_or(|a| a.is_empty()))
    {
        return crate::google::error_response(&SimError::bad_param("scope", "Scope required."));
    }
    let token = issue_token(
        &ep,
        &format!("gcp-impersonated:{account} via {}", caller.label),
    );
    Json(json!({ "accessToken": token, "expireTime": rfc3339(unix_now() + LIFETIME_S) }))
        .into_response()
}

/// The metadata server answers only requests that carry `Metadata-Flavor: Google`.
fn missing_flavor(headers: &HeaderMap) -> Option<Response> {
    (header(headers, "metadata-flavor") != Some("Google")).then(|| {
        (
            StatusCode::FORBIDDEN,
            [("metadata-flavor", "Google")],
            "Missing required header: Metadata-Flavor\n",
        )
            .into_response()
    })
}

async fn metadata_root() -> Response {
    ([("metadata-flavor", "Google")], "computeMetadata/\n").into_response()
}

async fn metadata_project(headers: HeaderMap) -> Response {
    if let Some(refused) = missing_flavor(&headers) {
        return refused;
    }
    (
        [
            ("metadata-flavor", "Google"),
            ("content-type", "application/text"),
        ],
        "crossbar-sim",
    )
        .into_response()
}

async fn metadata_token(
    State(ep): State<Arc<Endpoint>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = missing_flavor(&headers) {
        return refused;
    }
    if let Err(e) = arrive(&ep).await {
        return plain_error(&e);
    }
    let token = issue_token(&ep, &format!("gcp-metadata:{account}"));
    (
        [("metadata-flavor", "Google")],
        Json(json!({ "access_token": token, "expires_in": LIFETIME_S, "token_type": "Bearer" })),
    )
        .into_response()
}

fn plain_error(e: &SimError) -> Response {
    if let Some(unanswered) = crate::endpoint::unanswered(e) {
        return unanswered;
    }
    let status = match e {
        SimError::Injected {
            class: crate::faults::ErrorClass::Throttle,
            ..
        }
        | SimError::Capacity { .. } => StatusCode::TOO_MANY_REQUESTS,
        SimError::Injected {
            class: crate::faults::ErrorClass::Timeout,
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        SimError::Injected { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    (
        status,
        Json(
            json!({ "code": "ServiceUnavailable", "message": "identity service failure injected" }),
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let m = serde_urlencoded_pairs(b"grant_type=urn%3Aietf%3Aparams&scope=a+b&empty=").unwrap();
        assert_eq!(m["grant_type"], "urn:ietf:params");
        assert_eq!(m["scope"], "a b");
        assert_eq!(m["empty"], "");
        assert!(serde_urlencoded_pairs(b"bad=%zz").is_none());
    }
}
