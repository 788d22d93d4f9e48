//! Validation: [`RouterConfig`] → [`Config`], or every [`Problem`] with its path.

use std::collections::{BTreeSet, HashMap};

use super::{
    BreakerParams, Capacity, EndpointConfig, Problem, Problems, RetryPolicy, Rollout, RouterConfig,
    Shadow, TeamConfig, valid_name,
};

/// An endpoint's index in [`Config::endpoints`].
pub type EndpointId = usize;

/// A stream's wait for its first token when the feature sets neither a TTFT timeout
/// nor a TTFT threshold: long enough for a slow model's first token, short enough
/// that a silent endpoint is left well before a client gives up.
pub const DEFAULT_TTFT_TIMEOUT_MS: u64 = 10_000;
/// Longest silence inside a started stream: models pause for milliseconds between
/// tokens, a stall for good.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 5_000;
/// Longest a stream may last when the feature does not say: long answers at a slow
/// model's pace fit, a stream that never ends does not.
pub const DEFAULT_MAX_STREAM_MS: u64 = 15 * 60_000;
/// The most a feature may set as its maximum stream duration: a day.
pub const MAX_STREAM_MS: u64 = 86_400_000;
/// A whole answer's base allowance and its allowance per requested output token
/// (50 tokens a second: slower than any healthy model writes).
pub const WHOLE_ATTEMPT_BASE_MS: u64 = 10_000;
pub const WHOLE_ATTEMPT_PER_TOKEN_MS: u64 = 20;
/// The output limit assumed when a request sets none (for timeouts and estimates).
pub const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// The most of each part a configuration may hold: far beyond any real one (the
/// demo has 8 endpoints and 4 features), and what keeps one validation — which any
/// viewer of the admin API may ask for — a bounded amount of work.
pub const MAX_ENDPOINTS: usize = 1_000;
pub const MAX_FEATURES: usize = 1_000;
pub const MAX_TEAMS: usize = 10_000;
/// Per feature: its binding's endpoints (and each variant's), its experiment's
/// variants, its data boundary's geographies.
pub const MAX_BINDING: usize = 100;
pub const MAX_VARIANTS: usize = 100;
pub const MAX_GEOGRAPHIES: usize = 100;

/// Every part of `raw` larger than its limit, counted without looking further
/// (work proportional to the number of parts, not their product).
fn oversized(raw: &RouterConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut at_most = |path: String, what: &str, n: usize, max: usize| {
        if n > max {
            problems.push(Problem::new(
                path,
                format!("{n} {what}: at most {max} are allowed"),
            ));
        }
    };
    at_most(
        "endpoints".into(),
        "endpoints",
        raw.endpoints.len(),
        MAX_ENDPOINTS,
    );
    at_most(
        "features".into(),
        "features",
        raw.features.len(),
        MAX_FEATURES,
    );
    at_most("teams".into(), "teams", raw.teams.len(), MAX_TEAMS);
    at_most(
        "breaker.endpoints".into(),
        "endpoint policies",
        raw.breaker.endpoints.len(),
        MAX_ENDPOINTS,
    );
    for (i, f) in raw.features.iter().take(MAX_FEATURES).enumerate() {
        let path = format!("features.{}", display_key(&f.name, i));
        at_most(
            format!("{path}.binding"),
            "endpoints",
            f.binding.len(),
            MAX_BINDING,
        );
        at_most(
            format!("{path}.geographies"),
            "geographies",
            f.geographies.len(),
            MAX_GEOGRAPHIES,
        );
        if let Some(exp) = &f.experiment {
            at_most(
                format!("{path}.experiment.variants"),
                "variants",
                exp.variants.len(),
                MAX_VARIANTS,
            );
            for (k, v) in exp.variants.iter().take(MAX_VARIANTS).enumerate() {
                at_most(
                    format!(
                        "{path}.experiment.variants.{}.binding",
                        display_key(&v.name, k)
                    ),
                    "endpoints",
                    v.binding.len(),
                    MAX_BINDING,
                );
            }
        }
    }
    problems
}

/// A validated configuration: what the engine runs on. Immutable; a publish builds a
/// new one and swaps it in.
#[derive(Debug, Clone)]
pub struct Config {
    raw: RouterConfig,
    endpoints: Vec<Endpoint>,
    endpoint_ids: HashMap<String, EndpointId>,
    features: Vec<Feature>,
    feature_ids: HashMap<String, usize>,
    teams: HashMap<String, TeamConfig>,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub config: EndpointConfig,
    /// Provisioned: the ceiling in tokens per minute and the on-demand sibling.
    pub capacity_tpm: Option<u64>,
    pub spill_to: Option<EndpointId>,
    /// Breaker parameters resolved for this endpoint (override, then the strictest
    /// feature thresholds, then the policy defaults); unset means built-in default.
    pub breaker: BreakerParams,
}

#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    /// `None` without an experiment: one variant named `default`.
    pub experiment_id: Option<String>,
    /// Non-empty; `upper` is the cumulative share (0–1] ending at 1.
    pub variants: Vec<Variant>,
    /// The data boundary; `None` is unrestricted.
    pub geographies: Option<BTreeSet<String>>,
    pub deadline_ms: u64,
    /// `None`: by the request's output limit (see [`Feature::attempt_timeout`]).
    pub attempt_timeout_ms: Option<u64>,
    pub ttft_timeout_ms: u64,
    pub stream_idle_timeout_ms: u64,
    /// Longest a stream may last from the request's arrival.
    pub max_stream_ms: u64,
    pub continue_streams: bool,
    pub context_fallback: bool,
    pub shadows: Vec<Shadow>,
    pub rollout: Option<Rollout>,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub percent: f64,
    /// Upper end of this variant's range in [0, 1), cumulative over the variants.
    pub upper: f64,
    pub binding: Vec<EndpointId>,
}

impl Feature {
    /// The time one whole (non-streaming) attempt gets, for a request with this
    /// output limit: the feature's setting, or 10 s + 20 ms per output token.
    pub fn attempt_timeout(&self, output_limit: Option<u32>) -> std::time::Duration {
        let ms = self.attempt_timeout_ms.unwrap_or_else(|| {
            let tokens = u64::from(output_limit.unwrap_or(DEFAULT_OUTPUT_TOKENS));
            WHOLE_ATTEMPT_BASE_MS.saturating_add(tokens.saturating_mul(WHOLE_ATTEMPT_PER_TOKEN_MS))
        });
        std::time::Duration::from_millis(ms.min(self.deadline_ms))
    }

    /// Does the data boundary allow `geography`?
    pub fn allows(&self, geography: &str) -> bool {
        self.geographies
            .as_ref()
            .is_none_or(|allowed| allowed.contains(geography))
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

impl Config {
    /// Validates `raw`, reporting every problem at once.
    pub fn validate(raw: RouterConfig) -> Result<Config, Problems> {
        // Too large a configuration is refused before anything else is checked.
        let problems = oversized(&raw);
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let mut problems: Vec<Problem> = Vec::new();
        let team_names: std::collections::HashSet<&str> =
            raw.teams.iter().map(|t| t.name.as_str()).collect();
        let bad = &mut |path: String, message: String| problems.push(Problem::new(path, message));

        // Endpoints: each on its own, then names, then spill targets.
        let mut endpoint_ids = HashMap::new();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let path = format!("endpoints.{}", display_key(&e.name, i));
            for p in e.problems(&path) {
                bad(p.path, p.message);
            }
            if endpoint_ids.insert(e.name.clone(), i).is_some() {
                bad(
                    format!("{path}.name"),
                    format!("endpoint `{}` is defined twice", e.name),
                );
            }
        }
        let mut endpoints: Vec<Endpoint> = raw
            .endpoints
            .iter()
            .enumerate()
            .map(|(id, config)| Endpoint {
                id,
                config: config.clone(),
                capacity_tpm: None,
                spill_to: None,
                breaker: BreakerParams::default(),
            })
            .collect();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let path = format!("endpoints.{}.capacity.spill_to", display_key(&e.name, i));
            if let Capacity::Provisioned {
                tokens_per_minute,
                spill_to,
            } = &e.capacity
            {
                endpoints[i].capacity_tpm = Some(*tokens_per_minute);
                let Some(target) = spill_to else { continue };
                match endpoint_ids.get(target).map(|&t| &raw.endpoints[t]) {
                    None => bad(path, format!("no endpoint is named `{target}`")),
                    Some(t) if t.name == e.name => {
                        bad(path, "an endpoint cannot spill to itself".into())
                    }
                    Some(t) if t.is_provisioned() => bad(
                        path,
                        format!("`{target}` is provisioned: spill to an on-demand endpoint"),
                    ),
                    Some(t) if t.geography != e.geography => bad(
                        path,
                        format!(
                            "`{target}` is in geography `{}`, not `{}`: spilling must not cross a data boundary",
                            t.geography, e.geography
                        ),
                    ),
                    Some(_) => endpoints[i].spill_to = endpoint_ids.get(target).copied(),
                }
            }
        }

        // Features.
        let mut features = Vec::new();
        let mut feature_ids = HashMap::new();
        // The strictest thresholds of the features that bind each endpoint.
        let mut strictest: Vec<BreakerParams> = vec![BreakerParams::default(); endpoints.len()];
        for (i, f) in raw.features.iter().enumerate() {
            let path = format!("features.{}", display_key(&f.name, i));
            if !valid_name(&f.name) {
                bad(
                    format!("{path}.name"),
                    format!("`{}` must be 1–64 letters, digits, '-', '_' or '.'", f.name),
                );
            }
            if feature_ids.insert(f.name.clone(), features.len()).is_some() {
                bad(
                    format!("{path}.name"),
                    format!("feature `{}` is defined twice", f.name),
                );
            }
            for (j, g) in f.geographies.iter().enumerate() {
                if g.is_empty()
                    || !g
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    bad(
                        format!("{path}.geographies[{j}]"),
                        format!("`{g}` must be a lowercase geography such as `us` or `eu`"),
                    );
                }
            }
            let geographies: Option<BTreeSet<String>> =
                (!f.geographies.is_empty()).then(|| f.geographies.iter().cloned().collect());
            if let Some(owner) = &f.owner
                && !team_names.contains(owner.as_str())
            {
                bad(
                    format!("{path}.owner"),
                    format!("no team is named `{owner}`"),
                );
            }
            let t = &f.thresholds;
            if t.ttft_p90_ms == Some(0) {
                bad(
                    format!("{path}.thresholds.ttft_p90_ms"),
                    "must be positive".into(),
                );
            }
            if t.latency_p90_ms == Some(0) {
                bad(
                    format!("{path}.thresholds.latency_p90_ms"),
                    "must be positive".into(),
                );
            }
            if let Some(rate) = t.error_rate
                && !(rate > 0.0 && rate <= 1.0)
            {
                bad(
                    format!("{path}.thresholds.error_rate"),
                    format!("{rate} must be in (0, 1]"),
                );
            }
            if f.deadline_ms == 0 {
                bad(format!("{path}.deadline_ms"), "must be positive".into());
            }
            for (field, value) in [
                ("attempt_timeout_ms", f.attempt_timeout_ms),
                ("ttft_timeout_ms", f.ttft_timeout_ms),
                ("stream_idle_timeout_ms", f.stream_idle_timeout_ms),
                ("max_stream_ms", f.max_stream_ms),
            ] {
                if value == Some(0) {
                    bad(format!("{path}.{field}"), "must be positive".into());
                }
            }
            if let Some(ms) = f.max_stream_ms
                && ms > MAX_STREAM_MS
            {
                bad(
                    format!("{path}.max_stream_ms"),
                    format!("{ms} is more than a day ({MAX_STREAM_MS})"),
                );
            }

            let check_binding =
                |bad: &mut dyn FnMut(String, String), binding_path: String, binding: &[String]| {
                    resolve_binding(
                        bad,
                        &raw,
                        &endpoint_ids,
                        geographies.as_ref(),
                        binding_path,
                        binding,
                    )
                };

            let variants = match &f.experiment {
                None => {
                    let binding = check_binding(bad, format!("{path}.binding"), &f.binding);
                    vec![Variant {
                        name: "default".into(),
                        percent: 100.0,
                        upper: 1.0,
                        binding,
                    }]
                }
                Some(exp) => {
                    // A feature-level binding is allowed next to an experiment (it is
                    // what a rollback of the experiment returns to), but checked too.
                    if !f.binding.is_empty() {
                        check_binding(bad, format!("{path}.binding"), &f.binding);
                    }
                    let exp_path = format!("{path}.experiment");
                    if !valid_name(&exp.id) {
                        bad(
                            format!("{exp_path}.id"),
                            format!("`{}` must be 1–64 letters, digits, '-', '_' or '.'", exp.id),
                        );
                    }
                    if exp.variants.is_empty() {
                        bad(
                            format!("{exp_path}.variants"),
                            "needs at least one variant".into(),
                        );
                    }
                    let mut names = BTreeSet::new();
                    let mut total = 0.0;
                    let mut variants = Vec::new();
                    for (k, v) in exp.variants.iter().enumerate() {
                        let vpath = format!("{exp_path}.variants.{}", display_key(&v.name, k));
                        if !valid_name(&v.name) {
                            bad(
                                format!("{vpath}.name"),
                                format!(
                                    "`{}` must be 1–64 letters, digits, '-', '_' or '.'",
                                    v.name
                                ),
                            );
                        }
                        if !names.insert(v.name.as_str()) {
                            bad(
                                format!("{vpath}.name"),
                                format!("variant `{}` is defined twice", v.name),
                            );
                        }
                        if !(0.0..=100.0).contains(&v.percent) || !v.percent.is_finite() {
                            bad(
                                format!("{vpath}.percent"),
                                format!("{} must be between 0 and 100", v.percent),
                            );
                        }
                        total += v.percent;
                        let binding = check_binding(bad, format!("{vpath}.binding"), &v.binding);
                        variants.push(Variant {
                            name: v.name.clone(),
                            percent: v.percent,
                            upper: total / 100.0,
                            binding,
                        });
                    }
                    if !exp.variants.is_empty() && (total - 100.0).abs() > 1e-6 {
                        bad(
                            format!("{exp_path}.variants"),
                            format!("percentages sum to {}, must be 100", trim_float(total)),
                        );
                    }
                    // Rounding must never leave a gap at the top of [0, 1).
                    if let Some(last) = variants.last_mut() {
                        last.upper = 1.0;
                    }
                    variants
                }
            };
            let variant_names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            for (at, message) in
                super::playbook::problems(&path, &f.shadows, f.rollout.as_ref(), &variant_names)
            {
                bad(at, message);
            }
            let shadows: Vec<Shadow> = f
                .shadows
                .iter()
                .enumerate()
                .map(|(k, s)| Shadow {
                    id: s.id.clone(),
                    candidate: check_binding(
                        bad,
                        format!("{path}.shadows[{k}].candidate"),
                        &s.candidate,
                    ),
                    sample: s.sample_percent / 100.0,
                    cohort: s.cohort_percent.map_or(1.0, |c| c / 100.0),
                    from_ms: s.from_ms,
                    until_ms: s.until_ms,
                    judge_ttft: s.judge_ttft,
                })
                .collect();
            let rollout = f.rollout.as_ref().map(|r| Rollout {
                id: r.id.clone(),
                target: check_binding(bad, format!("{path}.rollout.target"), &r.target),
                fraction: r.percent / 100.0,
                variant: r.variant.clone(),
            });
            let extra = shadows
                .iter()
                .flat_map(|s| s.candidate.iter())
                .chain(rollout.iter().flat_map(|r| r.target.iter()));
            // Shadow candidates and rollout targets are judged by the feature's
            // thresholds too: their health is known before they take its traffic.
            for &id in variants.iter().flat_map(|v| v.binding.iter()).chain(extra) {
                let s = &mut strictest[id];
                s.ttft_p90_ms = min_opt(s.ttft_p90_ms, t.ttft_p90_ms);
                s.latency_p90_ms = min_opt(s.latency_p90_ms, t.latency_p90_ms);
                s.error_rate = min_opt_f(s.error_rate, t.error_rate);
            }
            let deadline = f.deadline_ms.max(1);
            let attempt = f.attempt_timeout_ms.map(|ms| ms.min(deadline));
            let ttft = f
                .ttft_timeout_ms
                .or(t.ttft_p90_ms.map(|ms| ms.saturating_mul(2)))
                .unwrap_or(DEFAULT_TTFT_TIMEOUT_MS)
                .min(deadline);
            features.push(Feature {
                name: f.name.clone(),
                experiment_id: f.experiment.as_ref().map(|e| e.id.clone()),
                variants,
                geographies,
                deadline_ms: deadline,
                attempt_timeout_ms: attempt,
                ttft_timeout_ms: ttft,
                stream_idle_timeout_ms: f
                    .stream_idle_timeout_ms
                    .unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT_MS),
                max_stream_ms: f.max_stream_ms.unwrap_or(DEFAULT_MAX_STREAM_MS),
                continue_streams: f.continue_streams,
                context_fallback: f.context_fallback,
                shadows,
                rollout,
            });
        }

        // Teams.
        let mut teams = HashMap::new();
        for (i, t) in raw.teams.iter().enumerate() {
            let path = format!("teams.{}", display_key(&t.name, i));
            if !valid_name(&t.name) {
                bad(
                    format!("{path}.name"),
                    format!("`{}` must be 1–64 letters, digits, '-', '_' or '.'", t.name),
                );
            }
            if t.requests_per_minute == Some(0) || t.tokens_per_minute == Some(0) {
                bad(
                    path.clone(),
                    "a limit must be positive (leave it out for no limit)".into(),
                );
            }
            if teams.insert(t.name.clone(), t.clone()).is_some() {
                bad(
                    format!("{path}.name"),
                    format!("team `{}` is defined twice", t.name),
                );
            }
        }

        // Policies.
        check_breaker_params(bad, "breaker.defaults", &raw.breaker.defaults);
        for (name, params) in &raw.breaker.endpoints {
            let path = format!("breaker.endpoints.{name}");
            if !endpoint_ids.contains_key(name) {
                bad(path.clone(), format!("no endpoint is named `{name}`"));
            }
            check_breaker_params(bad, &path, params);
        }
        check_retry(bad, &raw.retry);

        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        for e in &mut endpoints {
            let own = raw
                .breaker
                .endpoints
                .get(&e.config.name)
                .cloned()
                .unwrap_or_default();
            e.breaker = own.or(&strictest[e.id]).or(&raw.breaker.defaults);
        }
        Ok(Config {
            raw,
            endpoints,
            endpoint_ids,
            features,
            feature_ids,
            teams,
        })
    }

    /// The configuration as written: what `config export` prints and the console edits.
    pub fn raw(&self) -> &RouterConfig {
        &self.raw
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id]
    }

    pub fn endpoint_id(&self, name: &str) -> Option<EndpointId> {
        self.endpoint_ids.get(name).copied()
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.feature_ids.get(name).copied()
    }

    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.feature_ids.get(name).map(|&i| &self.features[i])
    }

    pub fn team(&self, name: &str) -> Option<&TeamConfig> {
        self.teams.get(name)
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.raw.retry
    }
}

/// Resolves a binding's endpoint names, reporting unknown, repeated and out-of-boundary ones.
fn resolve_binding(
    bad: &mut dyn FnMut(String, String),
    raw: &RouterConfig,
    endpoint_ids: &HashMap<String, EndpointId>,
    geographies: Option<&BTreeSet<String>>,
    binding_path: String,
    binding: &[String],
) -> Vec<EndpointId> {
    if binding.is_empty() {
        bad(
            binding_path.clone(),
            "needs at least one endpoint (the primary)".into(),
        );
    }
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for (k, name) in binding.iter().enumerate() {
        let at = format!("{binding_path}[{k}]");
        if !seen.insert(name.as_str()) {
            bad(at, format!("`{name}` is listed twice"));
            continue;
        }
        let Some(&id) = endpoint_ids.get(name) else {
            bad(at, format!("no endpoint is named `{name}`"));
            continue;
        };
        let geography = &raw.endpoints[id].geography;
        if let Some(allowed) = geographies
            && !allowed.contains(geography)
        {
            bad(
                at,
                format!(
                    "`{name}` is in geography `{geography}`, outside the feature's data boundary [{}]",
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        }
        ids.push(id);
    }
    ids
}

fn check_breaker_params(bad: &mut dyn FnMut(String, String), path: &str, p: &BreakerParams) {
    let mut positive = |field: &str, v: Option<u64>| {
        if v == Some(0) {
            bad(format!("{path}.{field}"), "must be positive".into());
        }
    };
    positive("window_s", p.window_s);
    positive(
        "consecutive_failures",
        p.consecutive_failures.map(u64::from),
    );
    positive("ttft_p90_ms", p.ttft_p90_ms);
    positive("latency_p90_ms", p.latency_p90_ms);
    positive("open_ms", p.open_ms);
    positive("max_open_ms", p.max_open_ms);
    positive("stage_ms", p.stage_ms);
    if let (Some(open), Some(max)) = (p.open_ms, p.max_open_ms)
        && max < open
    {
        bad(
            format!("{path}.max_open_ms"),
            format!("{max} is less than open_ms {open}"),
        );
    }
    for (field, v) in [
        ("error_rate", p.error_rate),
        ("throttle_rate", p.throttle_rate),
        ("feedback_min_score", p.feedback_min_score),
        ("feedback_max_drop", p.feedback_max_drop),
    ] {
        if let Some(v) = v
            && !(v > 0.0 && v <= 1.0)
        {
            bad(format!("{path}.{field}"), format!("{v} must be in (0, 1]"));
        }
    }
    if let Some(ramp) = &p.ramp_percent {
        let increasing = ramp.windows(2).all(|w| w[0] < w[1]);
        let in_range = ramp.iter().all(|&r| r > 0.0 && r <= 100.0);
        if ramp.is_empty() || !increasing || !in_range || ramp.last() != Some(&100.0) {
            bad(
                format!("{path}.ramp_percent"),
                format!("{ramp:?} must increase, stay within (0, 100] and end at 100"),
            );
        }
    }
}

fn check_retry(bad: &mut dyn FnMut(String, String), r: &RetryPolicy) {
    if r.max_retries > 10 {
        bad(
            "retry.max_retries".into(),
            format!("{} is more than 10", r.max_retries),
        );
    }
    if r.backoff_max_ms < r.backoff_base_ms {
        bad(
            "retry.backoff_max_ms".into(),
            format!(
                "{} is less than backoff_base_ms {}",
                r.backoff_max_ms, r.backoff_base_ms
            ),
        );
    }
    if !(0.0..=1.0).contains(&r.budget_ratio) || !r.budget_ratio.is_finite() {
        bad(
            "retry.budget_ratio".into(),
            format!("{} must be in [0, 1]", r.budget_ratio),
        );
    }
}

/// `name` when it is usable as a path segment, else the index (`[3]`).
/// Where the problems of the `index`th endpoint, named `name`, are reported:
/// `endpoints.NAME` (`endpoints.[i]` when the name itself is not valid).
pub fn endpoint_path(name: &str, index: usize) -> String {
    format!("endpoints.{}", display_key(name, index))
}

fn display_key(name: &str, index: usize) -> String {
    if valid_name(name) {
        name.to_owned()
    } else {
        format!("[{index}]")
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::{ExperimentConfig, FeatureConfig, Provider, VariantConfig};
    use super::*;

    fn endpoint(name: &str, region: &str) -> EndpointConfig {
        EndpointConfig::new(name, Provider::Openai, "gpt-4o", region)
    }

    fn base() -> RouterConfig {
        RouterConfig {
            endpoints: vec![
                endpoint("us-a", "us-east-1"),
                endpoint("us-b", "us-west-2"),
                endpoint("eu-a", "eu-central-1"),
            ],
            features: vec![FeatureConfig::new("summarize", &["us-a", "us-b"])],
            ..RouterConfig::default()
        }
    }

    fn problems(raw: RouterConfig) -> Vec<String> {
        Config::validate(raw)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Validation is open to every viewer of the admin API: its work must not grow
    /// with a product of the configuration's parts (features × teams, binding ×
    /// geographies), and a configuration beyond any real one is refused at once.
    #[test]
    fn an_oversized_configuration_is_refused_before_any_other_check() {
        let mut raw = base();
        raw.teams = (0..MAX_TEAMS + 1)
            .map(|i| TeamConfig {
                name: format!("t{i}"),
                requests_per_minute: None,
                tokens_per_minute: None,
            })
            .collect();
        raw.features = (0..MAX_FEATURES + 1)
            .map(|i| {
                let mut f = FeatureConfig::new(&format!("f{i}"), &["us-a"]);
                f.owner = Some(format!("t{MAX_TEAMS}"));
                f
            })
            .collect();
        raw.features[0].binding = vec!["us-a".into(); MAX_BINDING + 1];
        assert_eq!(
            problems(raw),
            [
                format!(
                    "features: {} features: at most {MAX_FEATURES} are allowed",
                    MAX_FEATURES + 1
                ),
                format!(
                    "teams: {} teams: at most {MAX_TEAMS} are allowed",
                    MAX_TEAMS + 1
                ),
                format!(
                    "features.f0.binding: {} endpoints: at most {MAX_BINDING} are allowed",
                    MAX_BINDING + 1
                ),
            ]
        );
    }

    #[test]
    fn a_feature_owner_must_be_a_team() {
        let mut raw = base();
        raw.teams.push(TeamConfig {
            name: "docs".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
        });
        raw.features[0].owner = Some("docs".into());
        assert!(Config::validate(raw.clone()).is_ok());
        raw.features[0].owner = Some("nobody".into());
        assert_eq!(
            problems(raw),
            ["features.summarize.owner: no team is named `nobody`"]
        );
    }

    #[test]
    fn a_valid_config_resolves_names_to_indexes() {
        let config = Config::validate(base()).unwrap();
        let f = config.feature("summarize").unwrap();
        assert_eq!(f.variants.len(), 1);
        assert_eq!(f.variants[0].binding, vec![0, 1]);
        assert!(f.allows("mars"));
        assert_eq!(config.raw(), &base());
    }

    #[test]
    fn percentages_that_do_not_sum_to_100_are_reported_with_their_path() {
        let mut raw = base();
        raw.features.push(FeatureConfig {
            experiment: Some(ExperimentConfig {
                id: "exp1".into(),
                variants: vec![
                    VariantConfig {
                        name: "a".into(),
                        percent: 50.0,
                        binding: vec!["us-a".into()],
                    },
                    VariantConfig {
                        name: "b".into(),
                        percent: 40.0,
                        binding: vec!["us-b".into()],
                    },
                ],
            }),
            ..FeatureConfig::new("recap", &[])
        });
        assert_eq!(
            problems(raw),
            ["features.recap.experiment.variants: percentages sum to 90, must be 100"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut raw = base();
        raw.features[0].binding = vec!["us-a".into(), "nope".into(), "us-a".into()];
        raw.features[0].geographies = vec!["us".into()];
        raw.features.push(FeatureConfig {
            geographies: vec!["eu".into()],
            ..FeatureConfig::new("summarize", &["us-b"])
        });
        raw.endpoints[0].capacity = Capacity::Provisioned {
            tokens_per_minute: 1000,
            spill_to: Some("eu-a".into()),
        };
        raw.breaker
            .endpoints
            .insert("ghost".into(), BreakerParams::default());
        raw.retry.budget_ratio = 3.0;
        let got = problems(raw);
        for expected in [
            "endpoints.us-a.capacity.spill_to: `eu-a` is in geography `eu`, not `us`",
            "features.summarize.binding[1]: no endpoint is named `nope`",
            "features.summarize.binding[2]: `us-a` is listed twice",
            "features.summarize.name: feature `summarize` is defined twice",
            "features.summarize.binding[0]: `us-b` is in geography `us`, outside the feature's data boundary [eu]",
            "breaker.endpoints.ghost: no endpoint is named `ghost`",
            "retry.budget_ratio: 3 must be in [0, 1]",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(expected)),
                "{expected}\nnot in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
    }

    #[test]
    fn breaker_thresholds_come_from_override_then_strictest_feature_then_defaults() {
        let mut raw = base();
        raw.features[0].thresholds.ttft_p90_ms = Some(2_000);
        raw.features.push(FeatureConfig {
            thresholds: super::super::Thresholds {
                ttft_p90_ms: Some(1_500),
                latency_p90_ms: Some(9_000),
                error_rate: None,
            },
            ..FeatureConfig::new("chat", &["us-a"])
        });
        raw.breaker.defaults.latency_p90_ms = Some(20_000);
        raw.breaker.defaults.error_rate = Some(0.3);
        raw.breaker.endpoints.insert(
            "us-b".into(),
            BreakerParams {
                ttft_p90_ms: Some(5_000),
                ..BreakerParams::default()
            },
        );
        let config = Config::validate(raw).unwrap();
        let a = &config.endpoint(0).breaker;
        assert_eq!(
            (a.ttft_p90_ms, a.latency_p90_ms, a.error_rate),
            (Some(1_500), Some(9_000), Some(0.3))
        );
        let b = &config.endpoint(1).breaker;
        assert_eq!(
            (b.ttft_p90_ms, b.latency_p90_ms),
            (Some(5_000), Some(20_000))
        );
        let eu = &config.endpoint(2).breaker;
        assert_eq!(eu.ttft_p90_ms, None);
    }

    #[test]
    fn experiment_ranges_are_cumulative_and_end_at_one() {
        let mut raw = base();
        raw.features[0].experiment = Some(ExperimentConfig {
            id: "e".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 33.3,
                    binding: vec!["us-a".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 33.3,
                    binding: vec!["us-b".into()],
                },
                VariantConfig {
                    name: "c".into(),
                    percent: 33.4,
                    binding: vec!["us-a".into(), "us-b".into()],
                },
            ],
        });
        let config = Config::validate(raw).unwrap();
        let uppers: Vec<f64> = config
            .feature("summarize")
            .unwrap()
            .variants
            .iter()
            .map(|v| v.upper)
            .collect();
        assert!((uppers[0] - 0.333).abs() < 1e-9 && (uppers[1] - 0.666).abs() < 1e-9);
        assert_eq!(uppers[2], 1.0);
    }

    /// A tiny deterministic generator (no `rand` in a wasm-compatible crate).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// The property: over thousands of random experiments, validation accepts a
    /// config exactly when its percentages are each in [0, 100] and sum to 100, its
    /// variant names are distinct, and every binding names known endpoints once each.
    #[test]
    fn validation_accepts_exactly_the_valid_experiments() {
        let names = ["us-a", "us-b", "eu-a", "ghost"];
        let mut rng = Lcg(42);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..5_000 {
            let n = 1 + rng.next(4) as usize;
            // Mostly near-valid configs, each with a chance of one kind of mistake.
            let mut cuts: Vec<i64> = (0..n - 1).map(|_| rng.next(101) as i64).collect();
            cuts.sort_unstable();
            cuts.insert(0, 0);
            cuts.push(100);
            let mut variants = Vec::new();
            let mut expect_valid = true;
            let mut seen_names = BTreeSet::new();
            let mut total = 0i64;
            for i in 0..n {
                let mut percent = cuts[i + 1] - cuts[i];
                if rng.next(10) == 0 {
                    percent += rng.next(21) as i64 - 10;
                }
                total += percent;
                expect_valid &= (0..=100).contains(&percent);
                let name = if rng.next(10) == 0 {
                    format!("v{}", rng.next(3))
                } else {
                    format!("v{i}")
                };
                expect_valid &= seen_names.insert(name.clone());
                let len = 1 + rng.next(3) as usize;
                let binding: Vec<String> = (0..len)
                    .map(|_| {
                        let pool = if rng.next(8) == 0 { 4 } else { 3 };
                        names[rng.next(pool) as usize].to_owned()
                    })
                    .collect();
                let unique: BTreeSet<&String> = binding.iter().collect();
                expect_valid &= unique.len() == binding.len();
                expect_valid &= !binding.iter().any(|b| b == "ghost");
                variants.push(VariantConfig {
                    name,
                    percent: percent as f64,
                    binding,
                });
            }
            expect_valid &= total == 100;
            let mut raw = base();
            raw.features[0].experiment = Some(ExperimentConfig {
                id: "e".into(),
                variants,
            });
            let valid = Config::validate(raw).is_ok();
            assert_eq!(valid, expect_valid);
            if valid { accepted += 1 } else { rejected += 1 }
        }
        assert!(
            accepted > 500 && rejected > 500,
            "{accepted} accepted, {rejected} rejected"
        );
    }
}
