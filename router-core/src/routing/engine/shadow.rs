//! Shadow requests: a sample of a feature's requests also sent to a candidate
//! binding, off the client's path, and the candidate's answer compared with the
//! client's.
//!
//! Off the path means: the client's request picks its shadow and hands it to a task
//! of its own (one atomic permit and one spawn), and never waits for it; the
//! client's answer, latency and headers do not depend on the shadow; a shadow that
//! fails fails alone. When the client's request ends — answered, streamed, or
//! failed — its run reports a summary of its answer to the shadow task, which
//! compares the two in memory ([`crate::routing::parity`]) and hands the
//! comparison to the telemetry sink.
//!
//! A shadow is routed like any request, on the candidate binding: inside the
//! feature's data boundary (validation refuses a candidate outside it), through the
//! candidate's breakers (its samples feed them: the candidate's health is known
//! before it takes real traffic), with the retry budget, deadline and credentials of
//! any attempt. It is recorded as a shadow: its cost is migration cost, billed to no
//! team ([`MIGRATION_TEAM`]), and its errors are no user's. Shadows are shed first:
//! beyond [`super::EngineParts::shadow_concurrency`] in flight, or when every
//! endpoint of the candidate is unavailable, a sampled request runs no shadow.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::attempt::{Answer, RequestContext, Served, run_routed};
use super::{Shared, Snapshot};
use crate::api::{ChatRequest, Error};
use crate::config::{Feature, Shadow};
use crate::cost::token_cost;
use crate::routing::clock::unix_ms;
use crate::routing::parity::{AnswerSummary, ShadowComparison, argument_keys, compare};
use crate::routing::rolls::Rolls;
use crate::routing::select::assignment_point;

/// The team a shadow's cost is recorded under: migration cost, never a team's.
/// (Not a valid team name, so it cannot collide with one.)
pub const MIGRATION_TEAM: &str = "(migration)";

/// How the client's run reports its answer to its shadow.
pub(super) type AnswerTx = oneshot::Sender<AnswerSummary>;

/// Picks the shadow `request` runs, if any (active, the user in its cohort, the
/// request in its sample), and starts it. Returns where the client's run reports
/// its answer.
pub(super) fn start(
    shared: &Arc<Shared>,
    snapshot: &Arc<Snapshot>,
    feature_id: usize,
    ctx: &RequestContext,
    request: &Arc<ChatRequest>,
    rolls: &mut Rolls,
) -> Option<AnswerTx> {
    let feature = &snapshot.config.features()[feature_id];
    let now_ms = unix_ms();
    let shadow = feature.shadows.iter().find(|s| {
        s.active_at(now_ms) && in_cohort(s, feature, ctx, rolls) && rolls.roll() < s.sample
    })?;
    let Ok(permit) = shared.shadow_permits.clone().try_acquire_owned() else {
        shared.shadow_shed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let (tx, rx) = oneshot::channel();
    let job = Job {
        shared: shared.clone(),
        snapshot: snapshot.clone(),
        shadow: shadow.clone(),
        feature: feature.name.clone(),
        deadline: Duration::from_millis(feature.deadline_ms),
        ctx: ctx.clone(),
        request: request.clone(),
    };
    tokio::spawn(async move {
        job.run(rx).await;
        drop(permit);
    });
    Some(tx)
}

/// Whether the request's user is in the shadow's cohort (by the sticky hash; a
/// request without a sticky key is in it by a roll).
fn in_cohort(shadow: &Shadow, feature: &Feature, ctx: &RequestContext, rolls: &mut Rolls) -> bool {
    if shadow.cohort >= 1.0 {
        return true;
    }
    let point = match &ctx.sticky_key {
        Some(key) => assignment_point(&feature.name, &format!("shadow:{}", shadow.id), key),
        None => rolls.roll(),
    };
    point < shadow.cohort
}

/// One shadow request, from its start to its comparison.
struct Job {
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    shadow: Shadow,
    feature: String,
    deadline: Duration,
    ctx: RequestContext,
    request: Arc<ChatRequest>,
}

impl Job {
    async fn run(self, incumbent: oneshot::Receiver<AnswerSummary>) {
        let mut request = (*self.request).clone();
        if !self.shadow.judge_ttft {
            // Whole, unless the candidate must be judged on its first token.
            request.stream = None;
            request.stream_options = None;
        }
        let json = request.wants_json();
        let ctx = RequestContext {
            request_id: format!("{}~{}", self.ctx.request_id, self.shadow.id),
            team: MIGRATION_TEAM.to_owned(),
            ..self.ctx.clone()
        };
        // Every endpoint of the candidate unavailable (breakers open): shed, not
        // run and not compared.
        let Some(feature_id) = self.snapshot.config.feature_index(&self.feature) else {
            return;
        };
        let mut rolls = self.shared.dice.next_request();
        let planned = self.shared.route(
            &self.snapshot,
            feature_id,
            ctx.sticky_key.as_deref(),
            0,
            &mut rolls,
            Some(&self.shadow.candidate),
        );
        if planned.planned.is_err() {
            self.shared.shadow_shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let candidate = run_routed(&self.shared, &ctx, Arc::new(request), Some(&self.shadow)).await;
        let candidate = self.summarise(candidate).await;
        // The client's answer; a client that is gone before its answer ended has
        // none to compare.
        let clock = &*self.shared.clock;
        let wait = clock.now() + self.deadline + Duration::from_secs(30);
        let Some(Ok(incumbent)) = crate::routing::clock::within(clock, wait, incumbent).await
        else {
            return;
        };
        let (incumbent_side, candidate_side, agreement) = compare(&incumbent, &candidate, json);
        self.shared.sink.shadow(ShadowComparison {
            shadow: self.shadow.id.clone(),
            feature: self.feature.clone(),
            request_id: self.ctx.request_id.clone(),
            at_ms: unix_ms(),
            incumbent: incumbent_side,
            candidate: candidate_side,
            similarity: agreement.similarity,
            length_ratio: agreement.length_ratio,
            finish_agree: agreement.finish_agree,
            tool_name_agree: agreement.tool_name_agree,
            tool_keys_agree: agreement.tool_keys_agree,
        });
    }

    /// The candidate's answer, read to its end (a stream's too).
    async fn summarise(&self, served: Result<Served, super::Unserved>) -> AnswerSummary {
        let clock = &*self.shared.clock;
        let started = clock.now();
        let served = match served {
            Ok(served) => served,
            Err(unserved) => return failed(&unserved.error),
        };
        let endpoint = served.route.endpoint.clone();
        let config = &self.snapshot.config;
        let pricing = |usage: &crate::api::Usage| {
            endpoint
                .as_deref()
                .and_then(|e| config.endpoint_id(e))
                .map(|id| {
                    let e = &config.endpoint(id).config;
                    token_cost(&e.pricing, usage, e.is_provisioned())
                })
                .unwrap_or_default()
        };
        match served.answer {
            Answer::Whole(completion) => {
                let mut summary = AnswerSummary::of_response(completion.response());
                summary.endpoint.clone_from(&endpoint);
                summary.latency_ms = completion.latency_ms();
                summary.cost = completion
                    .response()
                    .usage
                    .map(|u| pricing(&u))
                    .unwrap_or_default();
                summary
            }
            Answer::Stream(mut stream) => {
                let ttft = stream.ttft();
                let mut summary = AnswerSummary {
                    endpoint: endpoint.clone(),
                    ttft_ms: Some(ttft.as_secs_f64() * 1000.0),
                    ..AnswerSummary::default()
                };
                let mut arguments: Vec<(String, String)> = Vec::new();
                while let Some(item) = stream.next().await {
                    let chunk = match item {
                        Ok(chunk) => chunk,
                        Err(e) => return failed(&e),
                    };
                    for choice in &chunk.choices {
                        if let Some(t) = &choice.delta.content {
                            summary.text.push_str(t);
                        }
                        summary.finish = choice.finish_reason.or(summary.finish);
                        for call in choice.delta.tool_calls.iter().flatten() {
                            let i = call.index as usize;
                            if i >= arguments.len() && i < 64 {
                                arguments.resize(i + 1, Default::default());
                            }
                            if let Some(slot) = arguments.get_mut(i) {
                                if let Some(name) = &call.function.name {
                                    slot.0.push_str(name);
                                }
                                if let Some(args) = &call.function.arguments {
                                    slot.1.push_str(args);
                                }
                            }
                        }
                    }
                    if let Some(usage) = chunk.usage {
                        summary.completion_tokens = u64::from(usage.completion_tokens);
                        summary.cost = pricing(&usage);
                    }
                }
                summary.tools = arguments
                    .into_iter()
                    .map(|(name, args)| (name, argument_keys(&args)))
                    .collect();
                summary.latency_ms =
                    (ttft + clock.now().saturating_sub(started)).as_secs_f64() * 1000.0;
                summary
            }
        }
    }
}

fn failed(error: &Error) -> AnswerSummary {
    AnswerSummary {
        error: Some(error.kind.as_str().to_owned()),
        ..AnswerSummary::default()
    }
}
