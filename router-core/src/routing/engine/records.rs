//! What a request leaves behind: the route headers the client sees
//! ([`RouteInfo`]), the ledger's [`RequestRecord`] with one [`AttemptRecord`] per
//! attempt, and the error that lists every attempt when all of them failed.

use std::time::Duration;

use rust_decimal::Decimal;

use super::attempt::Run;
use crate::admin::RouteInfo;
use crate::api::{Error, ErrorKind, Usage};
use crate::config::{Config, EndpointConfig};
use crate::cost::token_cost;
use crate::routing::plan::Candidate;
use crate::telemetry::record::{AttemptRecord, RequestRecord};

impl Run {
    /// Keeps one attempt for the record: `failure` is `None` when it succeeded.
    pub(super) fn record_attempt(
        &mut self,
        candidate: Candidate,
        retry: bool,
        latency: Duration,
        ttft: Option<Duration>,
        failure: Option<&Error>,
    ) {
        // The attempt under way has ended, one way or another.
        self.in_flight = None;
        let (outcome, upstream_status, message) = match failure {
            None => ("ok".to_owned(), Some(200), None),
            Some(e) => (
                e.kind.as_str().to_owned(),
                e.upstream_status,
                Some(e.message.clone()),
            ),
        };
        let endpoint = &self.snapshot.config.endpoint(candidate.endpoint).config;
        let (name, provider, provisioned) = (
            endpoint.name.clone(),
            endpoint.provider.as_str().to_owned(),
            endpoint.is_provisioned(),
        );
        self.attempts.push(AttemptRecord {
            endpoint: name,
            provider,
            provisioned,
            outcome,
            latency_ms: ms(latency),
            ttft_ms: ttft.map(ms),
            upstream_status,
            retry,
            spilled: candidate.spilled_from.is_some(),
            message,
            ..AttemptRecord::default()
        });
    }

    /// The error for a request whose every candidate failed.
    pub(super) fn exhausted(&self) -> Error {
        if self.deadline_hit {
            let mut e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "the feature's deadline of {} ms passed",
                    self.feature().deadline_ms
                ),
            );
            if !self.errors.is_empty() {
                e.message
                    .push_str(&format!("; attempts: {}", self.summary()));
            }
            return e;
        }
        let Some((_, last)) = self.errors.last() else {
            return Error::new(ErrorKind::Internal, "no candidate was tried");
        };
        let all_throttled = self.errors.iter().all(|(_, e)| {
            matches!(
                e.kind,
                ErrorKind::RateLimited | ErrorKind::CapacityExhausted | ErrorKind::Overloaded
            )
        });
        let mut error = Error::new(
            last.kind,
            format!(
                "all {} attempt(s) failed: {}",
                self.errors.len(),
                self.summary()
            ),
        );
        error.provider = last.provider.clone();
        error.endpoint = last.endpoint.clone();
        error.upstream_status = last.upstream_status;
        error.upstream_code = last.upstream_code.clone();
        if all_throttled {
            error.retry_after = self.errors.iter().filter_map(|(_, e)| e.retry_after).min();
        }
        error
    }

    fn summary(&self) -> String {
        self.errors
            .iter()
            .map(|(endpoint, e)| format!("{endpoint}: {} ({})", e.kind, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(super) fn route_info(&self, served: Option<Candidate>) -> RouteInfo {
        let endpoint = last_endpoint(&self.snapshot.config, &self.attempts, served);
        RouteInfo {
            endpoint: endpoint.map(|e| e.name.clone()),
            provider: endpoint.map(|e| e.provider.as_str().to_owned()),
            variant: (!self.variant.is_empty()).then(|| self.variant.clone()),
            attempts: u32::try_from(self.attempts.len()).unwrap_or(u32::MAX),
            config_version: self.snapshot.version,
            spilled: served.is_some_and(|c| c.spilled_from.is_some()),
            fallback_depth: served.map_or(0, |c| u32::try_from(c.position).unwrap_or(u32::MAX)),
        }
    }

    /// The request's record. It takes the run's attempts and prompt text (a run is
    /// recorded once), so take [`Self::route_info`] first.
    pub(super) fn base_record(
        &mut self,
        served: Option<Candidate>,
        status: u16,
        outcome: &str,
        now: Duration,
    ) -> RequestRecord {
        self.recorded = true;
        let config = self.snapshot.config.clone();
        let endpoint = last_endpoint(&config, &self.attempts, served);
        RequestRecord {
            request_id: self.ctx.request_id.clone(),
            at_ms: self.at_ms,
            team: self.ctx.team.clone(),
            key_id: self.ctx.key_id.clone(),
            feature: config
                .features()
                .get(self.feature)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
            variant: self.variant.clone(),
            config_version: self.snapshot.version,
            stream: self.stream,
            provisioned: served.is_some() && endpoint.is_some_and(|e| e.is_provisioned()),
            endpoint: endpoint.map(|e| e.name.clone()),
            provider: endpoint.map(|e| e.provider.as_str().to_owned()),
            region: endpoint.map(|e| e.region.clone()),
            geography: endpoint.map(|e| e.geography.clone()),
            spilled: served.is_some_and(|c| c.spilled_from.is_some()),
            fallback_depth: served.map_or(0, |c| u32::try_from(c.position).unwrap_or(u32::MAX)),
            outcome: outcome.to_owned(),
            status,
            latency_ms: ms(now.saturating_sub(self.received)),
            ttft_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost: Decimal::ZERO,
            attempts: std::mem::take(&mut self.attempts),
            prompt_text: self.prompt_text.take(),
            completion_text: None,
            rollout: self.arm.as_ref().map(|a| a.rollout.clone()),
            rollout_arm: self.arm.as_ref().map(|a| a.as_str().to_owned()),
            drill: self.drill.clone(),
            shadow: self.shadow.clone(),
            dialect: self.ctx.dialect,
            ..RequestRecord::default()
        }
    }

    /// Bills attempt `index` (made on `candidate`) for `usage`: its tokens and their
    /// cost at that endpoint's prices. `estimated`: Crossbar counted them, the
    /// provider did not say.
    pub(super) fn bill(
        &mut self,
        index: usize,
        candidate: Candidate,
        usage: &Usage,
        estimated: bool,
    ) {
        let endpoint = &self.snapshot.config.endpoint(candidate.endpoint).config;
        let cost = token_cost(&endpoint.pricing, usage, endpoint.is_provisioned());
        if let Some(a) = self.attempts.get_mut(index) {
            a.prompt_tokens = u64::from(usage.prompt_tokens);
            a.completion_tokens = u64::from(usage.completion_tokens);
            a.cached_tokens = u64::from(usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens));
            a.cost = cost;
            a.usage_estimated = estimated;
        }
    }

    /// The record of a request served by `candidate` (its last attempt); its
    /// tokens and cost are the sum of what its attempts were billed.
    pub(super) fn served_record(
        &mut self,
        candidate: Candidate,
        outcome: &str,
        now: Duration,
    ) -> RequestRecord {
        let mut record = self.base_record(Some(candidate), 200, outcome, now);
        for a in &record.attempts {
            record.prompt_tokens += a.prompt_tokens;
            record.completion_tokens += a.completion_tokens;
            record.cached_tokens += a.cached_tokens;
            record.cost += a.cost;
            record.usage_estimated |= a.usage_estimated;
        }
        record
    }
}

/// The endpoint that served, or else the last one tried.
fn last_endpoint<'c>(
    config: &'c Config,
    attempts: &[AttemptRecord],
    served: Option<Candidate>,
) -> Option<&'c EndpointConfig> {
    served
        .map(|c| c.endpoint)
        .or_else(|| {
            attempts
                .last()
                .and_then(|a| config.endpoint_id(&a.endpoint))
        })
        .map(|id| &config.endpoint(id).config)
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
