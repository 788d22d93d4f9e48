//! Comparing a shadow's answer with the incumbent's: one pure function, [`compare`],
//! run in memory when both answers are in, so the texts themselves are never kept
//! (unless an operator stores texts at all).
//!
//! What is compared, per request: success and error class of each; latency and time
//! to first token; output length (ratio); finish-reason agreement; for JSON output,
//! whether each side is valid JSON; for tool calls, whether the tool names agree and
//! whether their argument keys do; and a cheap deterministic text similarity,
//! ROUGE-L F1 over word tokens (the longest common subsequence, which rewards the
//! same words in the same order without demanding the same sentence). The parity
//! report aggregates these over a time range.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::api::{ChatResponse, FinishReason};

/// Longest text, in word tokens, that the similarity looks at (bounds its
/// quadratic time: 1,500 × 1,500 cells at most).
const MAX_TOKENS: usize = 1_500;

/// One side's answer, as much of it as the comparison needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerSummary {
    pub endpoint: Option<String>,
    /// `None` when the side was answered; else its error class.
    pub error: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub text: String,
    pub finish: Option<FinishReason>,
    /// Each tool call's name and its argument keys (sorted).
    pub tools: Vec<(String, Vec<String>)>,
    pub completion_tokens: u64,
    pub cost: Decimal,
}

impl AnswerSummary {
    /// The summary of a whole completion.
    pub fn of_response(response: &ChatResponse) -> Self {
        let choice = response.choices.first();
        let tools = choice
            .and_then(|c| c.message.tool_calls.as_ref())
            .map(|calls| {
                calls
                    .iter()
                    .map(|call| {
                        (
                            call.function.name.clone(),
                            argument_keys(&call.function.arguments),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            text: response.text().to_owned(),
            finish: choice.and_then(|c| c.finish_reason),
            tools,
            completion_tokens: response.usage.map_or(0, |u| u64::from(u.completion_tokens)),
            ..Self::default()
        }
    }
}

/// The sorted top-level keys of a tool call's arguments (JSON text); none when they
/// are not a JSON object.
pub fn argument_keys(arguments: &str) -> Vec<String> {
    let mut keys: Vec<String> = serde_json::from_str::<serde_json::Value>(arguments)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    keys.sort();
    keys
}

/// One side, as stored (no text).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub endpoint: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub completion_tokens: u64,
    pub cost: Decimal,
    /// For JSON output: whether this side's text is valid JSON.
    pub json_valid: Option<bool>,
}

/// One request compared: the incumbent's answer (what the client got) and the
/// shadow candidate's.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowComparison {
    pub shadow: String,
    pub feature: String,
    pub request_id: String,
    /// Wall-clock time of the request, ms since the Unix epoch.
    pub at_ms: i64,
    pub incumbent: Side,
    pub candidate: Side,
    /// ROUGE-L F1 of the two texts, in [0, 1], when both answered with text.
    pub similarity: Option<f64>,
    /// Candidate output tokens / incumbent output tokens, when both answered.
    pub length_ratio: Option<f64>,
    pub finish_agree: Option<bool>,
    /// When either side called tools: do the tool names (in order) agree, and the
    /// argument keys of each call?
    pub tool_name_agree: Option<bool>,
    pub tool_keys_agree: Option<bool>,
}

/// Compares the candidate's answer with the incumbent's. `json_mode`: the request
/// asked for JSON output.
pub fn compare(
    incumbent: &AnswerSummary,
    candidate: &AnswerSummary,
    json_mode: bool,
) -> (Side, Side, Agreement) {
    let side = |a: &AnswerSummary| Side {
        endpoint: a.endpoint.clone(),
        ok: a.error.is_none(),
        error: a.error.clone(),
        latency_ms: a.latency_ms,
        ttft_ms: a.ttft_ms,
        completion_tokens: a.completion_tokens,
        cost: a.cost,
        json_valid: (json_mode && a.error.is_none())
            .then(|| serde_json::from_str::<serde_json::Value>(&a.text).is_ok()),
    };
    let both = incumbent.error.is_none() && candidate.error.is_none();
    let tools = both && !(incumbent.tools.is_empty() && candidate.tools.is_empty());
    let agreement = Agreement {
        similarity: (both && !(incumbent.text.is_empty() && candidate.text.is_empty()))
            .then(|| rouge_l(&incumbent.text, &candidate.text)),
        length_ratio: (both && incumbent.completion_tokens > 0)
            .then(|| candidate.completion_tokens as f64 / incumbent.completion_tokens as f64),
        finish_agree: (both && incumbent.finish.is_some() && candidate.finish.is_some())
            .then(|| incumbent.finish == candidate.finish),
        tool_name_agree: tools.then(|| {
            incumbent
                .tools
                .iter()
                .map(|t| &t.0)
                .eq(candidate.tools.iter().map(|t| &t.0))
        }),
        tool_keys_agree: tools.then(|| {
            incumbent.tools.len() == candidate.tools.len()
                && incumbent
                    .tools
                    .iter()
                    .zip(&candidate.tools)
                    .all(|(a, b)| a.1 == b.1)
        }),
    };
    (side(incumbent), side(candidate), agreement)
}

/// What [`compare`] finds besides each side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    pub similarity: Option<f64>,
    pub length_ratio: Option<f64>,
    pub finish_agree: Option<bool>,
    pub tool_name_agree: Option<bool>,
    pub tool_keys_agree: Option<bool>,
}

/// ROUGE-L F1 of `a` and `b` over lower-cased word tokens: 1 for the same words in
/// the same order, 0 for nothing in common (and 1 for two empty texts).
pub fn rouge_l(a: &str, b: &str) -> f64 {
    let tokens = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(MAX_TOKENS)
            .map(str::to_lowercase)
            .collect()
    };
    let (a, b) = (tokens(a), tokens(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    // Longest common subsequence, one row at a time.
    let mut row = vec![0u32; b.len() + 1];
    for x in &a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    let lcs = f64::from(row[b.len()]);
    let (precision, recall) = (lcs / b.len() as f64, lcs / a.len() as f64);
    if lcs == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str, tokens: u64) -> AnswerSummary {
        AnswerSummary {
            text: text.into(),
            completion_tokens: tokens,
            finish: Some(FinishReason::Stop),
            ..AnswerSummary::default()
        }
    }

    #[test]
    fn rouge_l_rewards_the_same_words_in_the_same_order() {
        assert_eq!(rouge_l("The cat sat.", "the cat sat"), 1.0);
        assert_eq!(rouge_l("alpha beta", "gamma delta"), 0.0);
        assert_eq!(rouge_l("", ""), 1.0);
        assert_eq!(rouge_l("word", ""), 0.0);
        // LCS "a c d" of 4 and 3 tokens: P = 1, R = 3/4.
        let f = rouge_l("a b c d", "a c d");
        assert!((f - 2.0 * 0.75 / 1.75).abs() < 1e-12, "{f}");
        assert!(rouge_l("a b c", "c b a") < rouge_l("a b c", "a b c"));
    }

    #[test]
    fn identical_answers_agree_on_everything() {
        let a = answer("Revenue grew twelve percent.", 5);
        let (inc, cand, agree) = compare(&a, &a, false);
        assert!(inc.ok && cand.ok);
        assert_eq!(agree.similarity, Some(1.0));
        assert_eq!(agree.length_ratio, Some(1.0));
        assert_eq!(agree.finish_agree, Some(true));
        assert_eq!(agree.tool_name_agree, None, "no tools on either side");
        assert_eq!(inc.json_valid, None, "not JSON mode");
    }

    #[test]
    fn a_failed_candidate_is_recorded_and_nothing_is_compared() {
        let a = answer("text", 1);
        let failed = AnswerSummary {
            error: Some("timeout".into()),
            ..AnswerSummary::default()
        };
        let (_, cand, agree) = compare(&a, &failed, true);
        assert!(!cand.ok);
        assert_eq!(cand.error.as_deref(), Some("timeout"));
        assert_eq!(cand.json_valid, None);
        assert_eq!(agree, Agreement::default());
    }

    #[test]
    fn json_mode_checks_each_side_is_valid_json() {
        let (inc, cand, _) = compare(&answer("{\"a\": 1}", 3), &answer("{\"a\": 1", 3), true);
        assert_eq!((inc.json_valid, cand.json_valid), (Some(true), Some(false)));
    }

    #[test]
    fn tool_calls_agree_by_name_and_by_argument_keys() {
        let call = |name: &str, args: &str| AnswerSummary {
            tools: vec![(name.into(), argument_keys(args))],
            finish: Some(FinishReason::ToolCalls),
            completion_tokens: 4,
            ..AnswerSummary::default()
        };
        let inc = call("get_weather", r#"{"city": "Oslo", "unit": "c"}"#);
        let same_keys = call("get_weather", r#"{"unit": "f", "city": "Bergen"}"#);
        let fewer_keys = call("get_weather", r#"{"city": "Oslo"}"#);
        let other = call("get_time", r#"{"city": "Oslo", "unit": "c"}"#);
        let agree = |a, b| {
            let (_, _, g) = compare(a, b, false);
            (g.tool_name_agree, g.tool_keys_agree)
        };
        assert_eq!(agree(&inc, &same_keys), (Some(true), Some(true)));
        assert_eq!(agree(&inc, &fewer_keys), (Some(true), Some(false)));
        assert_eq!(agree(&inc, &other), (Some(false), Some(true)));
    }

    #[test]
    fn the_length_ratio_is_candidate_over_incumbent() {
        let (_, _, g) = compare(&answer("a b", 10), &answer("a b c", 15), false);
        assert_eq!(g.length_ratio, Some(1.5));
    }
}
