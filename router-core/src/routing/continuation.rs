//! Continuing a broken stream on another endpoint: the request that asks a backup to
//! go on from what the client has already seen, and the splice that joins the two
//! without retracting or repeating anything.
//!
//! A stream is committed at its first token; after that the client holds a prefix
//! of the answer. When the stream breaks (cut, stalled, an error event), the engine
//! sends the original conversation plus that prefix to a backup, in the form the
//! backup's API supports ([`Continuation`]):
//!
//! - **prefill**: the prefix as a trailing assistant message, which the model
//!   continues. Anthropic's API refuses a prefill that ends in whitespace, so the
//!   prefix goes without its trailing whitespace, and the continuation's leading
//!   whitespace — which the client already has — is dropped;
//! - **instruction**: the prefix as an assistant message, then a user message asking
//!   to continue exactly where it stopped. Models sometimes restate the end of the
//!   prefix first: a restated tail (at least a few words' worth) is dropped.
//!
//! Both are pure functions, so every edge is a unit test.

use crate::api::{ChatRequest, Message, StreamOptions};
use crate::config::Continuation;

/// The user message of an instruction continuation.
pub const CONTINUE_INSTRUCTION: &str = "Your previous message was cut off. Continue it exactly where it stopped: \
     do not repeat anything already written, do not add a preamble, start with the very next word.";

/// A restated tail shorter than this is not taken for a restatement (a word or two
/// may legitimately repeat).
const MIN_OVERLAP: usize = 12;
/// How much of an instruction continuation is held back to find a restated tail.
const OVERLAP_WINDOW: usize = 160;

/// The request that asks a backup to continue `prefix`, the text the client has
/// seen of the answer to `original`, by `method`. `already` is the number of output
/// tokens the prefix took: the output limit shrinks by it.
pub fn continuation_request(
    original: &ChatRequest,
    prefix: &str,
    method: Continuation,
    already: u32,
) -> ChatRequest {
    let mut request = original.clone();
    request.stream = Some(true);
    request.stream_options = Some(StreamOptions {
        include_usage: true,
    });
    for limit in [&mut request.max_tokens, &mut request.max_completion_tokens]
        .into_iter()
        .flatten()
    {
        *limit = limit.saturating_sub(already).max(1);
    }
    match method {
        Continuation::Prefill => {
            request.messages.push(Message::assistant(prefix.trim_end()));
            request.continue_final_message = true;
        }
        Continuation::Instruction | Continuation::None => {
            request.messages.push(Message::assistant(prefix));
            request.messages.push(Message::user(CONTINUE_INSTRUCTION));
        }
    }
    request
}

/// Joins a continuation's text to the prefix the client has: fed the continuation's
/// text deltas in order, it gives back what to send on.
#[derive(Debug, Clone)]
pub struct Splice {
    /// The end of the prefix (for finding a restated tail).
    tail: String,
    method: Continuation,
    /// The prefix ended in whitespace that the prefill left out.
    trimmed_whitespace: bool,
    /// Continuation text held back while looking for a restated tail.
    held: String,
    /// Still at the start of the continuation (nothing sent yet).
    at_start: bool,
}

impl Splice {
    pub fn new(prefix: &str, method: Continuation) -> Self {
        let start = prefix
            .char_indices()
            .rev()
            .nth(OVERLAP_WINDOW)
            .map_or(0, |(i, _)| i);
        Self {
            tail: prefix[start..].to_owned(),
            method,
            trimmed_whitespace: prefix.ends_with(char::is_whitespace),
            held: String::new(),
            at_start: true,
        }
    }

    /// The part of `delta` to send on now (maybe empty: held back or dropped).
    pub fn feed(&mut self, delta: &str) -> String {
        if !self.at_start {
            return delta.to_owned();
        }
        match self.method {
            Continuation::Prefill => {
                let text = if self.trimmed_whitespace {
                    delta.trim_start()
                } else {
                    delta
                };
                if text.is_empty() {
                    return String::new();
                }
                self.at_start = false;
                text.to_owned()
            }
            Continuation::Instruction | Continuation::None => {
                self.held.push_str(delta);
                if self.held.len() < OVERLAP_WINDOW {
                    return String::new();
                }
                self.release()
            }
        }
    }

    /// Whatever is still held back, at the end of the continuation.
    pub fn finish(&mut self) -> String {
        if self.at_start && !self.held.is_empty() {
            return self.release();
        }
        String::new()
    }

    fn release(&mut self) -> String {
        self.at_start = false;
        let held = std::mem::take(&mut self.held);
        let overlap = restated(&self.tail, &held);
        let mut rest = &held[overlap..];
        if overlap == 0 && self.tail.ends_with(char::is_whitespace) {
            rest = rest.trim_start();
        } else if overlap == 0
            && !self.tail.is_empty()
            && !rest.starts_with(char::is_whitespace)
            && rest.starts_with(char::is_alphanumeric)
            && self.tail.ends_with(char::is_alphanumeric)
        {
            // The prefix stopped at the end of a word and the continuation starts a
            // new one: a space between them.
            return format!(" {rest}");
        }
        rest.to_owned()
    }
}

/// The length of the longest start of `text` (at least [`MIN_OVERLAP`] bytes, on a
/// character boundary) that `tail` ends with; 0 if none.
fn restated(tail: &str, text: &str) -> usize {
    let tail = tail.trim_end();
    let text_trimmed = text.trim_start();
    let lead = text.len() - text_trimmed.len();
    let longest = tail.len().min(text_trimmed.len());
    (MIN_OVERLAP..=longest)
        .rev()
        .filter(|&n| text_trimmed.is_char_boundary(n))
        .find(|&n| tail.ends_with(&text_trimmed[..n]))
        .map_or(0, |n| lead + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResponseFormat;

    fn original() -> ChatRequest {
        ChatRequest {
            model: "f".into(),
            messages: vec![
                Message::system("Be brief."),
                Message::user("Tell me a story"),
            ],
            max_tokens: Some(100),
            stream: Some(true),
            ..ChatRequest::default()
        }
    }

    fn last_two(request: &ChatRequest) -> Vec<(String, String)> {
        request.messages[request.messages.len() - 2..]
            .iter()
            .map(|m| {
                let role = match m {
                    Message::User { .. } => "user",
                    Message::Assistant { .. } => "assistant",
                    _ => "other",
                };
                (role.to_owned(), m.text().unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn a_prefill_continuation_ends_with_the_prefix_as_an_assistant_message() {
        let r = continuation_request(&original(), "Once upon a time, ", Continuation::Prefill, 40);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(
            last_two(&r)[1],
            ("assistant".to_owned(), "Once upon a time,".to_owned()),
            "without the trailing whitespace Anthropic refuses"
        );
        assert!(r.continue_final_message);
        assert_eq!(r.max_tokens, Some(60), "the prefix's tokens are spent");
        assert_eq!(r.stream, Some(true));
        assert!(r.stream_options.unwrap().include_usage);
    }

    #[test]
    fn an_instruction_continuation_asks_to_go_on_after_the_prefix() {
        let r = continuation_request(
            &original(),
            "Once upon a time",
            Continuation::Instruction,
            4,
        );
        assert_eq!(
            last_two(&r),
            [
                ("assistant".to_owned(), "Once upon a time".to_owned()),
                ("user".to_owned(), CONTINUE_INSTRUCTION.to_owned())
            ]
        );
        assert!(!r.continue_final_message);
        assert_eq!(r.max_tokens, Some(96));
    }

    #[test]
    fn the_output_limit_never_falls_to_zero_and_the_rest_of_the_request_is_kept() {
        let mut o = original();
        o.max_tokens = None;
        o.max_completion_tokens = Some(10);
        o.temperature = Some(0.3);
        o.response_format = Some(ResponseFormat::Text);
        let r = continuation_request(&o, "x", Continuation::Prefill, 50);
        assert_eq!((r.max_tokens, r.max_completion_tokens), (None, Some(1)));
        assert_eq!(r.temperature, Some(0.3));
        assert_eq!(r.messages[0], Message::system("Be brief."));
        assert!(matches!(r.messages[2], Message::Assistant { .. }));
    }

    #[test]
    fn a_prefill_continuation_drops_whitespace_the_client_already_has() {
        let mut s = Splice::new("Once upon a time, ", Continuation::Prefill);
        assert_eq!(s.feed(" "), "");
        assert_eq!(s.feed(" there"), "there");
        assert_eq!(s.feed(" was"), " was", "only the start is spliced");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn a_prefill_continuation_is_passed_on_as_it_is_when_the_prefix_ended_mid_word() {
        let mut s = Splice::new("Once upon a ti", Continuation::Prefill);
        assert_eq!(s.feed("me, there"), "me, there");
    }

    #[test]
    fn an_instruction_continuation_that_restates_the_tail_loses_the_restatement() {
        let prefix = "The quarterly report shows revenue grew by twelve percent";
        let mut s = Splice::new(prefix, Continuation::Instruction);
        let mut out = String::new();
        for delta in [
            "revenue grew by twelve",
            " percent, while costs",
            " fell by three percent.",
        ] {
            out.push_str(&s.feed(delta));
        }
        out.push_str(&s.finish());
        assert_eq!(out, ", while costs fell by three percent.");
    }

    #[test]
    fn an_instruction_continuation_that_starts_a_new_word_gets_a_space() {
        let mut s = Splice::new("The report is", Continuation::Instruction);
        let mut out = s.feed("complete and");
        out.push_str(&s.feed(" signed."));
        out.push_str(&s.finish());
        assert_eq!(out, " complete and signed.");
    }

    #[test]
    fn a_short_repeat_is_not_taken_for_a_restatement() {
        let mut s = Splice::new("He said no", Continuation::Instruction);
        let mut out = s.feed(", no and no again.");
        out.push_str(&s.finish());
        assert_eq!(out, ", no and no again.");
    }

    #[test]
    fn a_long_instruction_continuation_is_released_once_the_window_is_full() {
        let mut s = Splice::new("Start", Continuation::Instruction);
        let long = " word".repeat(40);
        let out = s.feed(&long);
        assert_eq!(out, long, "released at once, nothing lost");
        assert_eq!(s.feed(" more"), " more");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn restated_finds_the_longest_overlap_on_character_boundaries() {
        assert_eq!(restated("hello wörld and more", "wörld and more text"), 15);
        assert_eq!(restated("abc", "abc"), 0, "shorter than the minimum");
        assert_eq!(restated("", "anything at all here"), 0);
    }
}
