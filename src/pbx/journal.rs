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

    /// Adds or replaces the view of call `view.id`.
    pub fn call(&mut self, view: CallView) {
        match self.calls.iter_mut().rev().find(|c| c.id == view.id) {
            Some(slot) => *slot = view,
            None => {
                if self.calls.len() >= MAX_CALLS {
                    self.calls.pop_front();
                }
                self.calls.push_back(view);
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
