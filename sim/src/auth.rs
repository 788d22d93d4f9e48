//! Credential checks shared by the simulated clouds (see [`AuthMode`]).
//!
//! Only credential *identifiers* are recorded (an AWS access key id, or the label of
//! the identity flow that issued a bearer token): never a secret, a signature or a
//! token value.

use http::HeaderMap;

use crate::config::AuthMode;
use crate::endpoint::{Endpoint, SimError};

/// Checks an AWS SigV4 `Authorization` header for `service`.
pub fn check_sigv4(ep: &Endpoint, headers: &HeaderMap, service: &str) -> Result<(), SimError> {
    let result = sigv4(ep, headers, service);
    settle(ep, result)
}

fn sigv4(ep: &Endpoint, headers: &HeaderMap, service: &str) -> Result<String, SimError> {
    let mode = ep.spec.auth;
    let value = header(headers, "authorization");
    if mode == AuthMode::None {
        return Ok(value
            .and_then(|v| scope(v).map(|s| s.0.to_owned()))
            .unwrap_or_else(|| "anonymous".into()));
    }
    let value =
        value.ok_or_else(|| SimError::Unauthenticated("Missing Authentication Token".into()))?;
    let (key_id, region, scope_service) = scope(value)
        .filter(|_| value.starts_with("AWS4-HMAC-SHA256 ") && value.contains("Signature="))
        .ok_or_else(|| {
            SimError::Unauthenticated(
                "Authorization header requires a SigV4 Credential and Signature".into(),
            )
        })?;
    if mode == AuthMode::Present {
        return Ok(key_id.to_owned());
    }
    if header(headers, "x-amz-date").is_none() {
        return Err(SimError::Unauthenticated(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header"
                .into(),
        ));
    }
    if scope_service != service {
        return Err(SimError::Forbidden(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if let Some(expected) = &ep.spec.region
        && region != expected
    {
        return Err(SimError::Forbidden(format!(
            "Credential should be scoped to a valid region, not '{region}'. Expected '{expected}'."
        )));
    }
    if mode == AuthMode::Issued {
        let issued = ep.registry.get(key_id).ok_or_else(|| {
            SimError::Forbidden("The security token included in the request is invalid.".into())
        })?;
        if issued.session_token.as_deref() != header(headers, "x-amz-security-token") {
            return Err(SimError::Forbidden(
                "The security token included in the request is invalid.".into(),
            ));
        }
        return Ok(format!("{key_id} ({})", issued.label));
    }
    Ok(key_id.to_owned())
}

/// `Credential=AKID/DATE/REGION/SERVICE/aws4_request` → (key id, region, service).
fn scope(authorization: &str) -> Option<(&str, &str, &str)> {
    let credential = authorization
        .split("Credential=")
        .nth(1)?
        .split([',', ' '])
        .next()?;
    let mut parts = credential.split('/');
    let key_id = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    let service = parts.next()?;
    (parts.next()? == "aws4_request").then_some((key_id, region, service))
}

/// Checks a bearer token (or, when `api_key_header` names one, that header's key).
pub fn check_bearer(
    ep: &Endpoint,
    headers: &HeaderMap,
    api_key_header: Option<&str>,
) -> Result<(), SimError> {
    let token = header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| api_key_header.and_then(|h| header(headers, h)))
        .filter(|t| !t.is_empty());
    let result = match (ep.spec.auth, token) {
        (AuthMode::None, None) => Ok("anonymous".into()),
        (_, None) => Err(SimError::Unauthenticated(
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.".into(),
        )),
        (AuthMode::Issued, Some(token)) => match ep.registry.get(token) {
            Some(issued) => Ok(issued.label),
            None => Err(SimError::Unauthenticated("Request had invalid authentication credentials.".into())),
        },
        (_, Some(token)) => Ok(ep.registry.get(token).map_or_else(|| "bearer (not issued here)".to_owned(), |i| i.label)),
    };
    settle(ep, result)
}

fn settle(ep: &Endpoint, result: Result<String, SimError>) -> Result<(), SimError> {
    match result {
        Ok(id) => {
            ep.record(|s| *s.credentials.entry(id).or_default() += 1);
            Ok(())
        }
        Err(e) => {
            ep.record(|s| s.auth_rejected += 1);
            Err(e)
        }
    }
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EndpointSpec, Kind};
    use crate::endpoint::Issued;
    use std::sync::Arc;

    fn ep(auth: AuthMode) -> Arc<Endpoint> {
        let mut spec = EndpointSpec::new("b", Kind::Bedrock);
        spec.auth = auth;
        spec.region = Some("us-east-1".into());
        Endpoint::new(spec, 0, Arc::default())
    }

    fn signed(region: &str, key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "AWS4-HMAC-SHA256 Credential={key}/20261122/{region}/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
        );
        h.insert("authorization", v.parse().unwrap());
        h.insert("x-amz-date", "20261122T000000Z".parse().unwrap());
        h
    }

    #[test]
    fn sigv4_scope_must_match_region_and_service() {
        let e = ep(AuthMode::Signed);
        assert!(check_sigv4(&e, &signed("us-east-1", "AKID"), "bedrock").is_ok());
        assert!(matches!(
            check_sigv4(&e, &signed("eu-west-1", "AKID"), "bedrock"),
            Err(SimError::Forbidden(_))
        ));
        assert!(matches!(
            check_sigv4(&e, &HeaderMap::new(), "bedrock"),
            Err(SimError::Unauthenticated(_))
        ));
        assert_eq!(e.stats().credentials["AKID"], 1);
        assert_eq!(e.stats().auth_rejected, 2);
    }

    #[test]
    fn issued_mode_needs_a_key_and_session_token_from_the_registry() {
        let e = ep(AuthMode::Issued);
        assert!(check_sigv4(&e, &signed("us-east-1", "ASIAX"), "bedrock").is_err());
        e.registry.insert(
            "ASIAX".into(),
            Issued {
                label: "aws-container".into(),
                session_token: Some("tok".into()),
                secret: None,
            },
        );
        assert!(check_sigv4(&e, &signed("us-east-1", "ASIAX"), "bedrock").is_err());
        let mut h = signed("us-east-1", "ASIAX");
        h.insert("x-amz-security-token", "tok".parse().unwrap());
        assert!(check_sigv4(&e, &h, "bedrock").is_ok());
        assert_eq!(e.stats().credentials["ASIAX (aws-container)"], 1);
    }

    #[test]
    fn bearer_tokens_are_checked_but_never_recorded() {
        let e = ep(AuthMode::Issued);
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer secret-token-value".parse().unwrap(),
        );
        assert!(check_bearer(&e, &h, None).is_err());
        e.registry.insert(
            "secret-token-value".into(),
            Issued {
                label: "gcp-sts".into(),
                session_token: None,
                secret: None,
            },
        );
        assert!(check_bearer(&e, &h, None).is_ok());
        let stats = serde_json::to_string(&e.stats()).unwrap();
        assert!(!stats.contains("secret-token-value"), "{stats}");
        assert!(stats.contains("gcp-sts"));
    }
}
