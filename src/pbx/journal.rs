//! What the emulator saw, for tests and for people debugging: an event log
//! (`GET /emulator/events`) and the calls with their legs (`GET /emulator/calls`).

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// Events kept; older ones are dropped first.
const MAX_EVENTS: usize = 100_000;
/// Finished calls kept.
const MAX_CALLS: usize = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct Event {
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
    /// `caller`, `callee` or `transfer-target`.
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

#[derive(Debug)]
pub struct Journal {
    started: Instant,
    events: VecDeque<Event>,
    calls: VecDeque<CallView>,
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            events: VecDeque::new(),
            calls: VecDeque::new(),
        }
    }
}

impl Journal {
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
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        let event = Event {
            at_ms: self.now_ms(),
            kind,
            extension: extension.map(str::to_owned),
            callid: callid.map(str::to_owned),
            detail,
        };
        tracing::debug!(
            kind,
            ext = extension.unwrap_or("-"),
            call = callid.unwrap_or("-"),
            "{}",
            event.detail
        );
        self.events.push_back(event);
    }

    /// Adds or replaces the view of call `view.id`. Views are kept in id order (the order calls
    /// began), so a live call's view is found by bisection however many are kept.
    pub fn call(&mut self, view: CallView) {
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

    pub fn events(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }

    pub fn calls(&self) -> Vec<CallView> {
        self.calls.iter().cloned().collect()
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
    fn views_are_replaced_by_id_kept_in_order_and_capped() {
        let mut journal = Journal::default();
        journal.call(view(2, "ringing"));
        journal.call(view(1, "ringing"));
        journal.call(view(2, "connected"));
        let calls = journal.calls();
        let seen: Vec<(u64, &str)> = calls.iter().map(|c| (c.id, c.state)).collect();
        assert_eq!(seen, [(1, "ringing"), (2, "connected")]);
        for id in 3..=MAX_CALLS as u64 + 5 {
            journal.call(view(id, "ended"));
        }
        let calls = journal.calls();
        assert_eq!(calls.len(), MAX_CALLS);
        assert_eq!(calls[0].id, 6, "the oldest views go first");
    }
}
