//! What the emulator saw, for tests and for people debugging: an event log
//! (`GET /emulator/events`) and the calls with their legs (`GET /emulator/calls`). Both are
//! bounded: events by count and by bytes (what peers send ends up here), calls by count with
//! their text fields capped.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

/// Events kept; older ones are dropped first.
const MAX_EVENTS: usize = 100_000;
/// Finished calls kept.
pub const MAX_CALLS: usize = 10_000;
/// An event's extension or call id is cut to this (field caps keep them shorter already).
const MAX_NAME_BYTES: usize = 128;
/// An event's detail larger than this (as JSON) is replaced by its size.
const MAX_DETAIL_BYTES: usize = 4096;
/// What an event costs besides its text (the struct, the queue slot).
const EVENT_OVERHEAD: usize = 96;
/// The digits a leg's view shows.
const MAX_DTMF_SHOWN: usize = 1024;

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Numbers the events in order, for paging (`?after=`).
    pub seq: u64,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callid: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// One side of a call as the emulator sees it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LegView {
    pub extension: String,
    pub callid: String,
    /// `caller`, `callee`, `transfer-target` or `joined` (attended transfer).
    pub role: &'static str,
    /// `ringing`, `connected`, `held`, `ended` …
    pub state: &'static str,
    /// Anchored media only: what the emulator's leg towards this party negotiated and carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Digits received on this leg and relayed to its bridge partner.
    pub dtmf_relayed: String,
    /// The call id of the leg this one is bridged to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridged_to: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallView {
    pub id: u64,
    pub from: String,
    pub to: String,
    /// `ringing`, `connected`, `held` or `ended`.
    pub state: &'static str,
    pub media: &'static str,
    pub started_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The SIP code the call ended with, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_code: Option<u16>,
    pub legs: Vec<LegView>,
}

/// The journal's size, for `/emulator/stats`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct JournalStats {
    pub events: usize,
    pub bytes: usize,
    pub max_bytes: usize,
    /// Events dropped to stay within the caps.
    pub dropped: u64,
    pub calls: usize,
}

#[derive(Debug)]
pub struct Journal {
    started: Instant,
    events: VecDeque<(Event, usize)>,
    /// The bytes `events` hold, by [`EVENT_OVERHEAD`] and their text.
    bytes: usize,
    max_bytes: usize,
    next_seq: u64,
    dropped: u64,
    calls: VecDeque<CallView>,
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_NAME_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Journal {
    /// A journal that holds events of at most `max_bytes` in all.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            started: Instant::now(),
            events: VecDeque::new(),
            bytes: 0,
            max_bytes,
            next_seq: 1,
            dropped: 0,
            calls: VecDeque::new(),
        }
    }

    /// Where the journal's clock starts: its times are milliseconds since.
    pub fn epoch(&self) -> Instant {
        self.started
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn event(
        &mut self,
        kind: &'static str,
        extension: Option<&str>,
        callid: Option<&str>,
        detail: Value,
    ) {
        let mut detail_bytes = detail.to_string().len();
        let detail = if detail_bytes > MAX_DETAIL_BYTES {
            let summary = json!({ "left_out_bytes": detail_bytes });
            detail_bytes = summary.to_string().len();
            summary
        } else {
            detail
        };
        let event = Event {
            seq: self.next_seq,
            at_ms: self.now_ms(),
            kind,
            extension: extension.map(cut),
            callid: callid.map(cut),
            detail,
        };
        self.next_seq += 1;
        let bytes = EVENT_OVERHEAD
            + kind.len()
            + event.extension.as_ref().map_or(0, String::len)
            + event.callid.as_ref().map_or(0, String::len)
            + detail_bytes;
        tracing::debug!(
            kind,
            ext = %crate::untrusted::escaped(event.extension.as_deref().unwrap_or("-")),
            call = %crate::untrusted::escaped(event.callid.as_deref().unwrap_or("-")),
            "{}",
            event.detail
        );
        self.bytes += bytes;
        self.events.push_back((event, bytes));
        while self.events.len() > MAX_EVENTS || self.bytes > self.max_bytes {
            let Some((_, gone)) = self.events.pop_front() else {
                break;
            };
            self.bytes -= gone;
            self.dropped += 1;
        }
    }

    /// Adds or replaces the view of call `view.id`. Views are kept in id order (the order calls
    /// began), so a live call's view is found by bisection however many are kept.
    pub fn call(&mut self, mut view: CallView) {
        for leg in &mut view.legs {
            if leg.dtmf_relayed.len() > MAX_DTMF_SHOWN {
                leg.dtmf_relayed.truncate(MAX_DTMF_SHOWN);
            }
        }
        match self.calls.binary_search_by_key(&view.id, |c| c.id) {
            Ok(index) => self.calls[index] = view,
            Err(index) => {
                self.calls.insert(index, view);
                if self.calls.len() > MAX_CALLS {
                    self.calls.pop_front();
                }
            }
        }
    }

    /// Events in order: those after `after` (the oldest `limit` of them), or without
    /// `after` the newest `limit`.
    pub fn events(&self, after: Option<u64>, limit: usize) -> Vec<Event> {
        let events = self.events.iter().map(|(event, _)| event);
        match after {
            Some(after) => events
                .skip_while(|e| e.seq <= after)
                .take(limit)
                .cloned()
                .collect(),
            None => {
                let skip = self.events.len().saturating_sub(limit);
                events.skip(skip).cloned().collect()
            }
        }
    }

    /// The newest `limit` calls, in the order they began.
    pub fn calls(&self, limit: usize) -> Vec<CallView> {
        let skip = self.calls.len().saturating_sub(limit);
        self.calls.iter().skip(skip).cloned().collect()
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            events: self.events.len(),
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            dropped: self.dropped,
            calls: self.calls.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, state: &'static str) -> CallView {
        CallView {
            id,
            from: "501".into(),
            to: "502".into(),
            state,
            media: "relay",
            started_ms: 0,
            answered_ms: None,
            ended_ms: None,
            end_code: None,
            legs: Vec::new(),
        }
    }

    #[test]
    fn events_are_capped_in_bytes_and_huge_values_cut() {
        let mut journal = Journal::new(16 << 10);
        let huge = "x".repeat(100_000);
        for _ in 0..100 {
            journal.event(
                "unknown-call",
                Some(&huge),
                Some(&huge),
                json!({ "frame": huge }),
            );
        }
        let stats = journal.stats();
        assert!(stats.bytes <= 16 << 10, "{stats:?}");
        assert!(stats.events > 10 && stats.dropped > 0, "{stats:?}");
        let all = journal.events(None, usize::MAX);
        let shown = serde_json::to_string(&all).unwrap().len();
        assert!(shown <= 16 << 10, "{shown}");
        assert_eq!(all[0].detail["left_out_bytes"], 100_000 + 12);
        assert_eq!(all[0].callid.as_ref().unwrap().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn events_page_by_sequence_number() {
        let mut journal = Journal::new(1 << 20);
        for _ in 0..10 {
            journal.event("dial", None, None, Value::Null);
        }
        let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(journal.events(None, 3)), [8, 9, 10]);
        assert_eq!(seqs(journal.events(Some(4), 3)), [5, 6, 7]);
        assert_eq!(seqs(journal.events(Some(10), 3)), Vec::<u64>::new());
    }

    #[test]
    fn views_are_replaced_by_id_kept_in_order_and_capped() {
        let mut journal = Journal::new(1 << 20);
        journal.call(view(2, "ringing"));
        journal.call(view(1, "ringing"));
        journal.call(view(2, "connected"));
        let calls = journal.calls(MAX_CALLS);
        let seen: Vec<(u64, &str)> = calls.iter().map(|c| (c.id, c.state)).collect();
        assert_eq!(seen, [(1, "ringing"), (2, "connected")]);
        for id in 3..=MAX_CALLS as u64 + 5 {
            journal.call(view(id, "ended"));
        }
        let calls = journal.calls(MAX_CALLS);
        assert_eq!(calls.len(), MAX_CALLS);
        assert_eq!(calls[0].id, 6, "the oldest views go first");
    }
}
