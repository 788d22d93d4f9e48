//! Deterministic completions and the simulators' token count.
//!
//! # How tokens are counted
//! Every simulator counts tokens the same way, so usage figures agree with the text
//! produced whatever the provider:
//! - a *token* is a maximal run of ASCII letters and digits, or any other single
//!   non-whitespace character; whitespace is never a token of its own and belongs to
//!   the token that follows it (so the pieces streamed concatenate to the full text);
//! - prompt tokens = tokens of every text in the request (system prompt, message text,
//!   tool call arguments and tool results as JSON text, tool definitions as
//!   `name description schema-json`) plus [`IMAGE_TOKENS`] per image;
//! - completion tokens = tokens of the returned text, or of `name` plus the JSON
//!   arguments for a tool call.
//!
//! # What is generated
//! The reply is a function of (seed, model, prompt): sentences drawn from a fixed
//! vocabulary, 16 to 63 tokens long. `max_tokens` cuts it (finish: length), a stop
//! sequence cuts it before the match (finish: stop sequence), JSON mode wraps one
//! sentence as `{"answer": "..."}`. With tools, the model calls a tool when the
//! request forces one (tool choice any/required/named) or when the last user text
//! names a tool; once a tool result is the last message it answers in text. A prompt
//! containing [`CONTENT_FILTER_TRIGGER`] is refused as filtered content.
//!
//! # Continuations (assistant prefill)
//! When a request ends with an assistant message the provider continues (Claude on
//! Vertex or Bedrock; an OpenAI-compatible endpoint with vLLM's
//! `continue_final_message`), that text is the [`Prompt::prefill`]. The reply is then
//! generated for the conversation *without* it — the full answer that conversation
//! gets — and only what comes after its first N tokens is returned, N being the
//! prefill's token count. So for the same seed, model and conversation, a prefill that
//! is the start of the answer is continued exactly: `prefill + continuation` is the full
//! answer, and two simulators with the same model and seed continue each other's
//! answers, whatever provider each speaks (given the same conversation: the same texts
//! in the same order — a message sent as one text in one dialect and as several text
//! blocks in another is not the same prompt). The prefill counts as prompt tokens;
//! `max_tokens` and stop sequences apply to the continuation; a prefilled reply is text,
//! never a tool call.

use serde_json::{Map, Value, json};

/// Tokens charged for each image part of a prompt.
pub const IMAGE_TOKENS: u32 = 85;

/// A prompt containing this text is refused by the provider's content filter.
pub const CONTENT_FILTER_TRIGGER: &str = "SIM_CONTENT_FILTER";

const VOCABULARY: &[&str] = &[
    "the", "service", "summary", "latency", "request", "model", "answer", "region", "quarter",
    "report", "customer", "traffic", "cloud", "signal", "result", "team", "feature", "update",
    "incident", "review", "capacity", "growth", "search", "recap", "endpoint", "budget", "metric",
    "trend", "focus", "plan", "of", "and", "for", "with", "across", "during", "after", "before",
    "on", "in", "shows", "improves", "reduces", "tracks", "keeps", "moves", "holds", "meets",
    "needs", "adds", "steady", "clear", "brief", "higher", "lower", "stable", "early", "final",
    "key", "main", "42", "7", "2026", "three",
];

/// Splits text into token pieces; each piece carries the whitespace before it, so the
/// pieces concatenate back to exactly `text`.
pub fn token_pieces(text: &str) -> Vec<&str> {
    let starts = token_starts(text);
    let mut pieces = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let from = if i == 0 {
            0
        } else {
            start_of_piece(text, start)
        };
        let to = starts
            .get(i + 1)
            .map_or(text.len(), |&next| start_of_piece(text, next));
        pieces.push(&text[from..to]);
    }
    pieces
}

/// The number of tokens in `text` (see the module docs for the rule).
pub fn count_tokens(text: &str) -> u32 {
    token_starts(text).len() as u32
}

/// Byte offsets where tokens begin.
fn token_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_alnum = false;
    for (i, c) in text.char_indices() {
        let alnum = c.is_ascii_alphanumeric();
        if c.is_whitespace() {
            prev_alnum = false;
            continue;
        }
        if !alnum || !prev_alnum {
            starts.push(i);
        }
        prev_alnum = alnum;
    }
    starts
}

/// A piece begins at the whitespace run preceding its token.
fn start_of_piece(text: &str, token_start: usize) -> usize {
    let before = &text[..token_start];
    before.trim_end_matches(char::is_whitespace).len()
}

/// What a request asks for, in provider-neutral terms.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    pub model: String,
    /// Every text of the request in order (system, messages, tool I/O), for hashing and counting.
    pub texts: Vec<String>,
    pub images: u32,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// The last message is a tool result: the model answers in text.
    pub last_is_tool_result: bool,
    pub last_user_text: String,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub json_mode: bool,
    /// The final assistant text the reply continues (not in `texts`: the answer is
    /// that of the conversation without it).
    pub prefill: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub schema: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    #[default]
    Auto,
    /// The model must call some tool.
    Any,
    /// The model must call this tool.
    Named(String),
    /// Tools are listed but may not be called.
    None,
}

impl Prompt {
    pub fn prompt_tokens(&self) -> u32 {
        let texts: u32 = self.texts.iter().map(|t| count_tokens(t)).sum();
        let tools: u32 = self
            .tools
            .iter()
            .map(|t| count_tokens(&format!("{} {} {}", t.name, t.description, t.schema)))
            .sum();
        let prefill = self.prefill.as_deref().map_or(0, count_tokens);
        texts + tools + self.images * IMAGE_TOKENS + prefill
    }

    fn hash(&self, seed: u64) -> u64 {
        let mut h = Fnv::new(seed);
        h.write(self.model.as_bytes());
        for t in &self.texts {
            h.write(&[0xff]);
            h.write(t.as_bytes());
        }
        h.write(&self.images.to_le_bytes());
        h.finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(String),
    ToolCall {
        id_seed: u64,
        name: String,
        arguments: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    StopSequence(String),
    ToolUse,
    ContentFiltered,
}

/// A generated reply, with usage that agrees with it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub output: Output,
    pub finish: Finish,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Completion {
    /// The text of a text reply ("" for a tool call).
    pub fn text(&self) -> &str {
        match &self.output {
            Output::Text(t) => t,
            Output::ToolCall { .. } => "",
        }
    }

    /// The pieces a stream sends: text tokens, or fragments of the tool-call arguments JSON.
    pub fn stream_pieces(&self) -> Vec<String> {
        match &self.output {
            Output::Text(t) => token_pieces(t).into_iter().map(str::to_owned).collect(),
            Output::ToolCall { arguments, .. } => {
                let json = arguments.to_string();
                let mut out = Vec::new();
                let mut rest = json.as_str();
                while !rest.is_empty() {
                    let mut cut = rest.len().min(8);
                    while !rest.is_char_boundary(cut) {
                        cut += 1;
                    }
                    out.push(rest[..cut].to_owned());
                    rest = &rest[cut..];
                }
                out
            }
        }
    }
}

/// Does the provider's content filter refuse `prompt` (it contains
/// [`CONTENT_FILTER_TRIGGER`])?
pub fn is_content_filtered(prompt: &Prompt) -> bool {
    prompt
        .texts
        .iter()
        .any(|t| t.contains(CONTENT_FILTER_TRIGGER))
}

/// Generates the deterministic reply to `prompt` for `seed`.
pub fn generate(seed: u64, prompt: &Prompt) -> Completion {
    let prompt_tokens = prompt.prompt_tokens();
    let hash = prompt.hash(seed);
    if is_content_filtered(prompt) {
        return Completion {
            output: Output::Text(String::new()),
            finish: Finish::ContentFiltered,
            prompt_tokens,
            completion_tokens: 0,
        };
    }
    if let Some(tool) = chosen_tool(prompt).filter(|_| prompt.prefill.is_none()) {
        let arguments = arguments_for(&tool.schema, hash);
        let completion_tokens = count_tokens(&tool.name) + count_tokens(&arguments.to_string());
        return Completion {
            output: Output::ToolCall {
                id_seed: hash,
                name: tool.name.clone(),
                arguments,
            },
            finish: Finish::ToolUse,
            prompt_tokens,
            completion_tokens,
        };
    }

    let mut rng = SplitMix(hash);
    let natural_len = 16 + (rng.next_u64() % 48) as u32;
    let mut text = if prompt.json_mode {
        json_answer(&mut rng, natural_len)
    } else {
        sentences(&mut rng, natural_len)
    };
    let mut finish = Finish::Stop;
    if let Some(prefill) = &prompt.prefill {
        let skip = count_tokens(prefill) as usize;
        text = token_pieces(&text).get(skip..).unwrap_or_default().concat();
    }

    if let Some(max) = prompt.max_tokens
        && count_tokens(&text) > max
    {
        text = token_pieces(&text)[..max as usize].concat();
        finish = Finish::Length;
    }
    if let Some((at, stop)) = prompt
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text.truncate(at);
        finish = Finish::StopSequence(stop.clone());
    }
    let completion_tokens = count_tokens(&text);
    Completion {
        output: Output::Text(text),
        finish,
        prompt_tokens,
        completion_tokens,
    }
}

fn chosen_tool(prompt: &Prompt) -> Option<&Tool> {
    if prompt.tools.is_empty() || prompt.last_is_tool_result {
        return None;
    }
    match &prompt.tool_choice {
        ToolChoice::None => None,
        ToolChoice::Named(name) => prompt.tools.iter().find(|t| &t.name == name),
        ToolChoice::Any => prompt
            .tools
            .iter()
            .find(|t| prompt.last_user_text.contains(&t.name))
            .or_else(|| prompt.tools.first()),
        ToolChoice::Auto => prompt
            .tools
            .iter()
            .find(|t| prompt.last_user_text.contains(&t.name)),
    }
}

fn sentences(rng: &mut SplitMix, tokens: u32) -> String {
    let mut text = String::new();
    let mut count = 0;
    let mut sentence_len = 0;
    while count < tokens {
        let remaining = tokens - count;
        // End a sentence when it is long enough, or when only the period is left.
        if remaining == 1 || (sentence_len >= 5 && rng.next_u64().is_multiple_of(4)) {
            if sentence_len == 0 {
                push_word(&mut text, rng, true);
            } else {
                text.push('.');
            }
            count += 1;
            sentence_len = 0;
            continue;
        }
        push_word(&mut text, rng, sentence_len == 0);
        sentence_len += 1;
        count += 1;
    }
    debug_assert_eq!(count_tokens(&text), tokens);
    text
}

fn push_word(text: &mut String, rng: &mut SplitMix, capitalise: bool) {
    let word = VOCABULARY[(rng.next_u64() % VOCABULARY.len() as u64) as usize];
    if !text.is_empty() {
        text.push(' ');
    }
    if capitalise {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            text.extend(first.to_uppercase());
            text.push_str(chars.as_str());
        }
    } else {
        text.push_str(word);
    }
}

fn json_answer(rng: &mut SplitMix, tokens: u32) -> String {
    // `{"answer": "` and `"}` are 8 tokens.
    let inner = sentences(rng, tokens.saturating_sub(8).max(1));
    json!({ "answer": inner })
        .to_string()
        .replacen(":", ": ", 1)
}

/// Arguments satisfying a schema's declared properties, deterministically: always an
/// object (every provider's tool arguments are one, whatever the schema declares).
///
/// Schemas come as JSON Schema (`"type": "object"`) or as Vertex's OpenAPI subset, whose
/// types are upper case (`"OBJECT"`, what the Google Gen AI SDK sends): both are read.
fn arguments_for(schema: &Value, hash: u64) -> Value {
    let mut rng = SplitMix(hash ^ 0x5eed);
    match value_for(schema, &mut rng, 0) {
        object @ Value::Object(_) => object,
        _ => json!({}),
    }
}

/// A schema's type, lower-cased (`OBJECT` → `object`); for a list, the first non-null.
fn schema_type(schema: &Value) -> Option<String> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .find(|t| t != "null"),
        _ => None,
    }
}

fn value_for(schema: &Value, rng: &mut SplitMix, depth: u32) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema_type(schema) {
        Some(t) => t,
        None if schema.get("properties").is_some() => "object".into(),
        None => "string".into(),
    };
    match ty.as_str() {
        "object" if depth < 4 => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    out.insert(name.clone(), value_for(sub, rng, depth + 1));
                }
            }
            Value::Object(out)
        }
        "object" => json!({}),
        "array" => match schema.get("items") {
            Some(items) if depth < 4 => json!([value_for(items, rng, depth + 1)]),
            _ => json!([]),
        },
        "integer" => json!(1 + rng.next_u64() % 100),
        "number" => json!((1 + rng.next_u64() % 1000) as f64 / 10.0),
        "boolean" => json!(rng.next_u64().is_multiple_of(2)),
        "null" => Value::Null,
        _ => json!(VOCABULARY[(rng.next_u64() % VOCABULARY.len() as u64) as usize]),
    }
}

/// SplitMix64: tiny, fast and good enough for deterministic simulation.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `len` characters from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[(self.next_u64() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

/// FNV-1a, seeded.
pub struct Fnv(u64);

impl Fnv {
    pub fn new(seed: u64) -> Self {
        Self(0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x100_0000_01b3))
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(text: &str) -> Prompt {
        Prompt {
            model: "m".into(),
            texts: vec![text.into()],
            last_user_text: text.into(),
            ..Prompt::default()
        }
    }

    #[test]
    fn tokens_are_word_runs_and_single_punctuation() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("   "), 0);
        assert_eq!(count_tokens("Hello, world!"), 4);
        assert_eq!(count_tokens("{\"a\": 12}"), 7);
        assert_eq!(count_tokens("naïve"), 3);
    }

    #[test]
    fn pieces_concatenate_to_the_text_and_match_the_count() {
        for text in [
            "  Hello, world! ",
            "a",
            "x  y\n\nz.",
            "{\"answer\": \"Ok.\"}",
            "",
        ] {
            let pieces = token_pieces(text);
            assert_eq!(pieces.len() as u32, count_tokens(text), "{text:?}");
            if pieces.is_empty() {
                assert!(text.trim().is_empty());
            } else {
                assert_eq!(pieces.concat(), text, "{text:?}");
            }
        }
    }

    #[test]
    fn same_seed_and_prompt_give_the_same_reply() {
        let a = generate(7, &prompt("Summarise the quarter"));
        let b = generate(7, &prompt("Summarise the quarter"));
        let c = generate(8, &prompt("Summarise the quarter"));
        assert_eq!(a.text(), b.text());
        assert_ne!(a.text(), c.text());
    }

    #[test]
    fn usage_agrees_with_the_text() {
        for i in 0..50 {
            let c = generate(i, &prompt(&format!("question {i}")));
            assert_eq!(c.completion_tokens, count_tokens(c.text()));
            assert!(
                (16..64).contains(&c.completion_tokens),
                "{}",
                c.completion_tokens
            );
            assert_eq!(c.finish, Finish::Stop);
            assert_eq!(c.prompt_tokens, 2);
        }
    }

    #[test]
    fn max_tokens_cuts_with_finish_length() {
        let mut p = prompt("hello");
        p.max_tokens = Some(5);
        let c = generate(1, &p);
        assert_eq!(c.completion_tokens, 5);
        assert_eq!(c.finish, Finish::Length);
    }

    #[test]
    fn stop_sequence_cuts_before_the_match() {
        let full = generate(3, &prompt("hello"));
        let word = full
            .text()
            .split(' ')
            .nth(3)
            .unwrap()
            .trim_end_matches('.')
            .to_owned();
        let mut p = prompt("hello");
        p.stop = vec![format!(" {word}")];
        let c = generate(3, &p);
        assert!(full.text().starts_with(c.text()));
        assert!(!c.text().contains(&format!(" {word}")));
        assert_eq!(c.finish, Finish::StopSequence(format!(" {word}")));
        assert_eq!(c.completion_tokens, count_tokens(c.text()));
    }

    #[test]
    fn json_mode_returns_json() {
        let mut p = prompt("hello");
        p.json_mode = true;
        let c = generate(3, &p);
        let v: Value = serde_json::from_str(c.text()).unwrap();
        assert!(v["answer"].as_str().unwrap().ends_with('.'));
    }

    #[test]
    fn a_named_tool_in_the_user_text_is_called_with_schema_shaped_arguments() {
        let mut p = prompt("what is the weather via get_weather");
        p.tools = vec![Tool {
            name: "get_weather".into(),
            description: "Weather".into(),
            schema: json!({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["c","f"]}},"required":["city"]}),
        }];
        let c = generate(1, &p);
        let Output::ToolCall {
            name, arguments, ..
        } = &c.output
        else {
            panic!("no tool call")
        };
        assert_eq!(name, "get_weather");
        assert!(arguments["city"].is_string() && arguments["days"].is_u64());
        assert_eq!(arguments["unit"], "c");
        assert_eq!(c.finish, Finish::ToolUse);
        assert_eq!(c.stream_pieces().concat(), arguments.to_string());

        p.last_is_tool_result = true;
        assert_eq!(generate(1, &p).finish, Finish::Stop);
        p.last_is_tool_result = false;
        p.last_user_text = "no tool named here".into();
        assert_eq!(generate(1, &p).finish, Finish::Stop);
        p.tool_choice = ToolChoice::Any;
        assert_eq!(generate(1, &p).finish, Finish::ToolUse);
    }

    #[test]
    fn upper_case_schema_types_give_the_same_shapes_and_arguments_are_always_objects() {
        let tool = |schema: Value| Tool {
            name: "get_weather".into(),
            description: String::new(),
            schema,
        };
        let arguments = |schema: Value| {
            let mut p = prompt("use get_weather");
            p.tools = vec![tool(schema)];
            match generate(1, &p).output {
                Output::ToolCall { arguments, .. } => arguments,
                Output::Text(t) => panic!("no tool call: {t}"),
            }
        };
        let upper = arguments(
            json!({"type": "OBJECT", "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}, "hot": {"type": "BOOLEAN"}}}),
        );
        assert!(upper["city"].is_string(), "{upper}");
        assert!(upper["days"].is_u64(), "{upper}");
        assert!(upper["hot"].is_boolean(), "{upper}");
        let lower = arguments(
            json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "hot": {"type": "boolean"}}}),
        );
        assert_eq!(upper, lower);
        assert_eq!(arguments(Value::Null), json!({}));
        assert_eq!(arguments(json!({"type": "STRING"})), json!({}));
    }

    #[test]
    fn a_prefill_is_continued_from_the_full_answer() {
        let full = generate(5, &prompt("Summarise the quarter"))
            .text()
            .to_owned();
        let pieces = token_pieces(&full);
        let mut p = prompt("Summarise the quarter");
        p.prefill = Some(pieces[..4].concat());
        let c = generate(5, &p);
        assert_eq!(format!("{}{}", pieces[..4].concat(), c.text()), full);
        assert_eq!(c.completion_tokens, count_tokens(&full) - 4);
        assert_eq!(c.prompt_tokens, count_tokens("Summarise the quarter") + 4);
        assert_eq!(c.finish, Finish::Stop);

        // Any prefill skips as many tokens as it has; max_tokens counts what follows.
        p.prefill = Some("Something else entirely".into());
        p.max_tokens = Some(2);
        let c = generate(5, &p);
        assert_eq!(c.text(), pieces[3..5].concat());
        assert_eq!(c.finish, Finish::Length);

        // A prefill as long as the answer leaves nothing to add.
        p.prefill = Some(full.clone());
        p.max_tokens = None;
        let c = generate(5, &p);
        assert_eq!((c.text(), c.completion_tokens), ("", 0));
    }

    #[test]
    fn a_prefilled_reply_is_text_even_when_a_tool_would_be_called() {
        let mut p = prompt("call get_weather");
        p.tools = vec![Tool {
            name: "get_weather".into(),
            description: String::new(),
            schema: json!({"type": "object"}),
        }];
        assert_eq!(generate(1, &p).finish, Finish::ToolUse);
        p.prefill = Some("The".into());
        assert_eq!(generate(1, &p).finish, Finish::Stop);
    }

    #[test]
    fn the_trigger_text_is_content_filtered() {
        let c = generate(1, &prompt(&format!("please {CONTENT_FILTER_TRIGGER}")));
        assert_eq!(c.finish, Finish::ContentFiltered);
        assert_eq!(c.completion_tokens, 0);
    }
}
