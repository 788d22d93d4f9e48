//! The admin API client: one typed function per route, each returning
//! `Result<T, ApiError>`. Errors are never swallowed: the caller shows them.
//!
//! Every request carries `Authorization: Bearer <token>`; the event stream, which
//! `EventSource` cannot give headers, takes `?access_token=` ([`Api::events_url`]):
//! the only route where the router accepts a token in the URL.
//! The JSON types are `router-core`'s, shared with the server.

use std::fmt;

use router_core::admin::BreakerEvent;
use router_core::admin::{
    AdminTokenInfo, AuditEntry, ConfigVersion, ConfigVersionSummary, CreateKeyRequest,
    CreateTokenRequest, CreatedKey, CreatedToken, EndpointHealth, FailedRequest, FeatureEdit,
    FeatureLive, GatewayKeyInfo, OverrideRequest, PublishRequest, PublishResult, RollbackRequest,
    SpendGroup, SpendReport, ValidationResult, WhoAmI,
};
use router_core::config::{Problem, RouterConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What went wrong talking to the router.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The router could not be reached (down, wrong URL, CORS, offline).
    Network(String),
    /// The router answered with a non-2xx status.
    Http(HttpError),
    /// The router answered 2xx with something this console cannot read.
    Decode(String),
}

/// A non-2xx answer: `{"error": {"message", "type", "param", "code"}, "problems"?,
/// "current_version"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub status: u16,
    /// `unauthorized`, `forbidden`, `conflict`, `invalid_config`, `not_found`, ...
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// Validation problems (422), each with its path.
    pub problems: Vec<Problem>,
    /// The active version (409: someone published since the edit's base version).
    pub current_version: Option<i64>,
}

impl ApiError {
    /// Reads an error answer; a body that is not the documented JSON still gives a
    /// useful message (a proxy's HTML page, an empty body).
    pub fn from_response(status: u16, body: &str) -> ApiError {
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let err = &json["error"];
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let code = text(&err["code"])
            .or_else(|| text(&err["type"]))
            .unwrap_or_else(|| default_code(status).to_owned());
        let message = text(&err["message"]).unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() || body.starts_with('<') {
                format!("HTTP {status}")
            } else {
                body.chars().take(300).collect()
            }
        });
        ApiError::Http(HttpError {
            status,
            code,
            message,
            param: text(&err["param"]),
            problems: serde_json::from_value(json["problems"].clone()).unwrap_or_default(),
            current_version: json["current_version"].as_i64(),
        })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http(e) => Some(e.status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Http(e) => Some(&e.code),
            _ => None,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401) || self.code() == Some("unauthorized")
    }

    pub fn problems(&self) -> &[Problem] {
        match self {
            ApiError::Http(e) => &e.problems,
            _ => &[],
        }
    }
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "invalid_config",
        429 => "rate_limited",
        500..=599 => "server_error",
        _ => "http_error",
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Network(m) => write!(f, "Cannot reach the router: {m}"),
            ApiError::Decode(m) => write!(f, "Unexpected answer from the router: {m}"),
            ApiError::Http(e) => match e.code.as_str() {
                "unauthorized" => write!(
                    f,
                    "The router refused this token ({}): {}",
                    e.status, e.message
                ),
                "forbidden" => write!(f, "Your role may not do this ({}): {}", e.status, e.message),
                "conflict" => match e.current_version {
                    Some(v) => write!(
                        f,
                        "Someone else published since this edit started: version {v} is now active. Nothing was changed. ({})",
                        e.message
                    ),
                    None => write!(f, "Conflict ({}): {}", e.status, e.message),
                },
                "invalid_config" => write!(
                    f,
                    "The router rejected the change: {} problem{}. Nothing was changed.",
                    e.problems.len(),
                    if e.problems.len() == 1 { "" } else { "s" }
                ),
                "not_found" => write!(f, "Not found ({}): {}", e.status, e.message),
                code => write!(f, "{} ({} {code})", e.message, e.status),
            },
        }
    }
}

/// Percent-encodes a query or path component (RFC 3986 unreserved characters kept).
pub fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A router's admin API, as one signed-in caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// `""` for the router serving this page, else `https://router.example:8080`.
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim().trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}/admin/v1{path_and_query}", self.base)
    }

    /// The live event stream: `EventSource` cannot set headers, so the token rides in
    /// the query.
    pub fn events_url(&self) -> String {
        self.url(&format!("/events?access_token={}", encode(&self.token)))
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ApiError> {
        self.get("/whoami").await
    }

    /// The active configuration version.
    pub async fn config(&self) -> Result<ConfigVersion, ApiError> {
        self.get("/config").await
    }

    pub async fn versions(&self, limit: u32) -> Result<Vec<ConfigVersionSummary>, ApiError> {
        self.get(&format!("/config/versions?limit={limit}")).await
    }

    pub async fn version(&self, version: i64) -> Result<ConfigVersion, ApiError> {
        self.get(&format!("/config/versions/{version}")).await
    }

    pub async fn validate(&self, config: &RouterConfig) -> Result<ValidationResult, ApiError> {
        self.send_json("POST", "/config/validate", Some(config))
            .await
    }

    pub async fn edit_feature(
        &self,
        name: &str,
        edit: &FeatureEdit,
    ) -> Result<PublishResult, ApiError> {
        self.send_json("PUT", &format!("/features/{}", encode(name)), Some(edit))
            .await
    }

    pub async fn rollback(&self, request: &RollbackRequest) -> Result<PublishResult, ApiError> {
        self.send_json("POST", "/config/rollback", Some(request))
            .await
    }

    pub async fn publish(&self, request: &PublishRequest) -> Result<PublishResult, ApiError> {
        self.send_json("POST", "/config", Some(request)).await
    }

    pub async fn endpoints(&self) -> Result<Vec<EndpointHealth>, ApiError> {
        self.get("/endpoints").await
    }

    pub async fn set_override(
        &self,
        endpoint: &str,
        request: &OverrideRequest,
    ) -> Result<EndpointHealth, ApiError> {
        self.send_json(
            "PUT",
            &format!("/endpoints/{}/breaker", encode(endpoint)),
            Some(request),
        )
        .await
    }

    pub async fn features_live(&self) -> Result<Vec<FeatureLive>, ApiError> {
        self.get("/features/live").await
    }

    /// Breaker transitions, newest first.
    pub async fn breaker_events(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<BreakerEvent>, ApiError> {
        self.get(&format!(
            "/breaker-events?since_ms={since_ms}&limit={limit}"
        ))
        .await
    }

    pub fn spend_query(from_ms: i64, to_ms: i64, group: SpendGroup) -> String {
        format!(
            "?from_ms={from_ms}&to_ms={to_ms}&group_by={}",
            group.as_str()
        )
    }

    pub async fn spend(
        &self,
        from_ms: i64,
        to_ms: i64,
        group: SpendGroup,
    ) -> Result<SpendReport, ApiError> {
        self.get(&format!(
            "/spend{}",
            Self::spend_query(from_ms, to_ms, group)
        ))
        .await
    }

    /// The same report as CSV, as a blob ready to save.
    pub async fn spend_csv(
        &self,
        from_ms: i64,
        to_ms: i64,
        group: SpendGroup,
    ) -> Result<web_sys::Blob, ApiError> {
        let path = format!("/spend.csv{}", Self::spend_query(from_ms, to_ms, group));
        let response = self.fetch("GET", &path, None, "text/csv").await?;
        let blob = response
            .blob()
            .map_err(|e| ApiError::Decode(js_message(&e)))?;
        let blob = wasm_bindgen_futures::JsFuture::from(blob)
            .await
            .map_err(|e| ApiError::Network(js_message(&e)))?;
        Ok(wasm_bindgen::JsCast::unchecked_into(blob))
    }

    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, ApiError> {
        self.get(&format!("/audit?limit={limit}")).await
    }

    /// The newest failed requests with their attempts' detail, or only `request_id`.
    pub async fn failed_requests(
        &self,
        limit: u32,
        request_id: Option<&str>,
    ) -> Result<Vec<FailedRequest>, ApiError> {
        let mut path = format!("/requests/failed?limit={limit}");
        if let Some(id) = request_id {
            path.push_str(&format!("&request_id={}", encode(id)));
        }
        self.get(&path).await
    }

    /// Admin tokens, revoked and expired ones included (never the tokens).
    pub async fn tokens(&self) -> Result<Vec<AdminTokenInfo>, ApiError> {
        self.get("/tokens").await
    }

    /// A new admin token: the answer holds the token, shown this once.
    pub async fn create_token(
        &self,
        request: &CreateTokenRequest,
    ) -> Result<CreatedToken, ApiError> {
        self.send_json("POST", "/tokens", Some(request)).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ApiError> {
        self.send_empty("DELETE", &format!("/tokens/{}", encode(id)))
            .await
    }

    /// Gateway keys, revoked and expired ones included (never the keys).
    pub async fn keys(&self) -> Result<Vec<GatewayKeyInfo>, ApiError> {
        self.get("/keys").await
    }

    /// A new gateway key: the answer holds the key, shown this once.
    pub async fn create_key(&self, request: &CreateKeyRequest) -> Result<CreatedKey, ApiError> {
        self.send_json("POST", "/keys", Some(request)).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<(), ApiError> {
        self.send_empty("DELETE", &format!("/keys/{}", encode(id)))
            .await
    }

    /// A request whose answer has no body (204).
    async fn send_empty(&self, method: &str, path: &str) -> Result<(), ApiError> {
        self.fetch(method, path, None, "application/json")
            .await
            .map(|_| ())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send_json::<T, ()>("GET", path, None).await
    }

    async fn send_json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let body = body
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ApiError::Decode(format!("cannot encode the request: {e}")))?;
        let response = self
            .fetch(method, path, body.as_deref(), "application/json")
            .await?;
        let text = response_text(&response).await?;
        serde_json::from_str(&text).map_err(|e| ApiError::Decode(format!("{method} {path}: {e}")))
    }

    /// One request; a non-2xx answer becomes [`ApiError::Http`] with the body read.
    async fn fetch(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        accept: &str,
    ) -> Result<web_sys::Response, ApiError> {
        use wasm_bindgen::{JsCast, JsValue};
        let net = |e: JsValue| ApiError::Network(js_message(&e));
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        let headers = web_sys::Headers::new().map_err(net)?;
        headers
            .set("authorization", &format!("Bearer {}", self.token))
            .map_err(net)?;
        headers.set("accept", accept).map_err(net)?;
        if let Some(body) = body {
            headers
                .set("content-type", "application/json")
                .map_err(net)?;
            init.set_body(&JsValue::from_str(body));
        }
        init.set_headers(&headers);
        let request =
            web_sys::Request::new_with_str_and_init(&self.url(path), &init).map_err(net)?;
        let window = web_sys::window().ok_or_else(|| ApiError::Network("no window".into()))?;
        let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_request(&request))
            .await
            .map_err(net)?;
        let response: web_sys::Response = response
            .dyn_into()
            .map_err(|_| ApiError::Network("fetch did not return a Response".into()))?;
        if response.ok() {
            Ok(response)
        } else {
            let status = response.status();
            let text = response_text(&response).await.unwrap_or_default();
            Err(ApiError::from_response(status, &text))
        }
    }
}

async fn response_text(response: &web_sys::Response) -> Result<String, ApiError> {
    let promise = response
        .text()
        .map_err(|e| ApiError::Decode(js_message(&e)))?;
    let text = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| ApiError::Network(js_message(&e)))?;
    Ok(text.as_string().unwrap_or_default())
}

/// A JavaScript exception's message (`TypeError: Failed to fetch`).
pub fn js_message(value: &wasm_bindgen::JsValue) -> String {
    if let Some(s) = value.as_string() {
        return s;
    }
    js_sys::Reflect::get(value, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_error_bodies_are_read_with_problems_and_current_version() {
        let body = r#"{"error":{"message":"percentages sum to 90","type":"invalid_request_error","param":null,"code":"invalid_config"},
            "problems":[{"path":"features.recap.experiment.variants","message":"percentages sum to 90, must be 100"}]}"#;
        let e = ApiError::from_response(422, body);
        assert_eq!(e.code(), Some("invalid_config"));
        assert_eq!(e.problems().len(), 1);
        assert_eq!(
            e.to_string(),
            "The router rejected the change: 1 problem. Nothing was changed."
        );

        let e = ApiError::from_response(
            409,
            r#"{"error":{"message":"base version 4 is not the active version 5","type":"conflict","code":"conflict"},"current_version":5}"#,
        );
        assert!(e.to_string().contains("version 5 is now active"));
        assert!(matches!(&e, ApiError::Http(h) if h.current_version == Some(5)));
    }

    #[test]
    fn undocumented_bodies_still_give_a_code_and_message() {
        let e = ApiError::from_response(401, "");
        assert!(e.is_unauthorized());
        assert_eq!(
            e.to_string(),
            "The router refused this token (401): HTTP 401"
        );
        let e = ApiError::from_response(502, "<html>Bad gateway</html>");
        assert_eq!(e.code(), Some("server_error"));
        assert_eq!(e.to_string(), "HTTP 502 (502 server_error)");
        let e = ApiError::from_response(403, "role viewer may not override");
        assert_eq!(
            e.to_string(),
            "Your role may not do this (403): role viewer may not override"
        );
    }

    #[test]
    fn urls_are_built_under_admin_v1_and_the_stream_token_is_encoded() {
        let api = Api::new("https://r.example:8080/ ", " t+k/=1 ");
        assert_eq!(api.url("/whoami"), "https://r.example:8080/admin/v1/whoami");
        assert_eq!(
            api.events_url(),
            "https://r.example:8080/admin/v1/events?access_token=t%2Bk%2F%3D1"
        );
        assert_eq!(Api::new("", "x").url("/config"), "/admin/v1/config");
        assert_eq!(
            Api::spend_query(1, 2, SpendGroup::Cloud),
            "?from_ms=1&to_ms=2&group_by=cloud"
        );
        assert_eq!(encode("a b~é"), "a%20b~%C3%A9");
    }
}
