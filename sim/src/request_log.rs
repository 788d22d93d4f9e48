//! What each simulated endpoint saw: the last [`CAPACITY`] requests, in arrival order,
//! for tests that assert attempt counts, the gaps between attempts (a retry that waited
//! out a `Retry-After: 2`), whether a request was a stream or ended with a prefill, and
//! what it got.
//!
//! Times are milliseconds since the simulator started, on the monotonic clock (tokio's,
//! so a test on a paused clock sees paused time), shared by every endpoint of one
//! [`crate::Sim`]: gaps between requests to different endpoints are meaningful.
//!
//! An entry is written when a request's head arrives (`outcome: "pending"`), completed
//! when its response head is ready (or when the connection is reset or left silent),
//! and, for a stream, once more when the stream ends. Provider code adds what only it
//! knows (model, stream, prefill, the error class) through [`note`], which works on a
//! task-local set for the duration of one request by the endpoint's middleware.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde::Serialize;

/// How many requests each endpoint remembers.
pub const CAPACITY: usize = 1000;

/// One request, as the endpoint saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    /// Position in the endpoint's request sequence (from 0 at start; never reused, not
    /// even by a stats reset).
    pub seq: u64,
    /// When the request head arrived, in ms since the simulator started.
    pub at_ms: f64,
    pub method: String,
    /// The URL path (no query string).
    pub path: String,
    /// The model, deployment or model id the request named, when it named one.
    pub model: Option<String>,
    pub stream: bool,
    /// The request ended with an assistant message the provider treats as a prefill
    /// (Claude on Vertex or Bedrock: any final assistant message; OpenAI-compatible:
    /// with `continue_final_message`; Gemini: a final `model` turn). Recorded whatever
    /// became of the request, refused or not.
    pub prefill: bool,
    /// The HTTP status answered; `None` while pending and for `reset` / `silent`.
    pub status: Option<u16>,
    /// `pending`, `ok`, an injected class (`throttle`, `server_error`, `timeout`,
    /// `overloaded`, `unavailable`, `reset`, `silent`), `capacity`, `context_length`,
    /// `bad_request`, `unauthenticated`, `forbidden`, `not_found`, or `http_<status>`
    /// for an answer from outside the provider code (a malformed path, say).
    pub outcome: String,
    /// When the response head was ready (or the connection reset / left silent), in ms
    /// since the simulator started.
    pub responded_ms: Option<f64>,
    /// For a stream: how it ended — `complete`, `cut` (`cut_after_tokens`),
    /// `end_stream`, `stream_error`, `omit_terminal` (`omit_terminal_event`), or
    /// `client_gone` (the client stopped reading); `None` while it runs.
    pub stream_end: Option<String>,
    /// When the stream ended, in ms since the simulator started.
    pub ended_ms: Option<f64>,
}

/// The last [`CAPACITY`] requests of one endpoint.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: VecDeque<Seen>,
    next_seq: u64,
}

impl RequestLog {
    /// Records a request head; returns its sequence number.
    pub fn arrive(&mut self, at_ms: f64, method: &str, path: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Seen {
            seq,
            at_ms,
            method: method.to_owned(),
            path: path.to_owned(),
            model: None,
            stream: false,
            prefill: false,
            status: None,
            outcome: "pending".into(),
            responded_ms: None,
            stream_end: None,
            ended_ms: None,
        });
        seq
    }

    /// Changes entry `seq`, if it is still remembered.
    pub fn update(&mut self, seq: u64, f: impl FnOnce(&mut Seen)) {
        // Entries are in sequence order: the position follows from the first one.
        let Some(first) = self.entries.front().map(|e| e.seq) else {
            return;
        };
        if let Some(entry) = seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.entries.get_mut(i))
        {
            debug_assert_eq!(entry.seq, seq);
            f(entry);
        }
    }

    pub fn entries(&self) -> Vec<Seen> {
        self.entries.iter().cloned().collect()
    }

    /// Forgets every entry (sequence numbers go on).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// What the provider code learns about the request being served.
#[derive(Debug, Default, Clone)]
pub struct Note {
    pub seq: u64,
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub prefill: bool,
    pub outcome: Option<&'static str>,
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// Runs `request` (one request's handling) with a fresh [`Note`] for entry `seq`;
/// returns its result and what was noted.
pub async fn with_note<T>(seq: u64, request: impl Future<Output = T>) -> (T, Note) {
    let note = RefCell::new(Note {
        seq,
        ..Note::default()
    });
    NOTE.scope(note, async {
        let out = request.await;
        (out, NOTE.with(|n| n.take()))
    })
    .await
}

/// Adds to the note of the request being served (nothing outside one).
pub fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

/// The log entry of the request being served.
pub fn current_seq() -> Option<u64> {
    NOTE.try_with(|n| n.borrow().seq).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries_and_updates_by_sequence() {
        let mut log = RequestLog::default();
        for i in 0..(CAPACITY as u64 + 5) {
            assert_eq!(log.arrive(i as f64, "POST", "/x"), i);
        }
        let entries = log.entries();
        assert_eq!(entries.len(), CAPACITY);
        assert_eq!(entries[0].seq, 5);
        log.update(7, |e| e.outcome = "ok".into());
        log.update(2, |e| e.outcome = "forgotten".into());
        log.update(9_999, |e| e.outcome = "future".into());
        let entries = log.entries();
        assert_eq!(entries[2].outcome, "ok");
        assert!(entries.iter().all(|e| e.seq == 7 || e.outcome == "pending"));
        log.clear();
        assert!(log.entries().is_empty());
        assert_eq!(log.arrive(0.0, "GET", "/"), CAPACITY as u64 + 5);
    }

    #[tokio::test]
    async fn notes_are_per_request_and_absent_outside_one() {
        note(|n| n.prefill = true);
        assert_eq!(current_seq(), None);
        let ((), noted) = with_note(3, async {
            note(|n| n.stream = Some(true));
            tokio::task::yield_now().await;
            note(|n| n.outcome = Some("throttle"));
            assert_eq!(current_seq(), Some(3));
        })
        .await;
        assert_eq!(
            (noted.seq, noted.stream, noted.outcome, noted.prefill),
            (3, Some(true), Some("throttle"), false)
        );
    }
}
