//! What became of one attempt, and whether it is worth another.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::call::CallInfo;
use crate::protocol::CallState;

/// The outcome of one call attempt, as journaled and written to the results.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// COMPLETED, BUSY, REJECTED, NOT_FOUND; INTERRUPTED when the campaign stopped during the
    /// call (it is not dialled again: the contact may have been reached).
    pub state: String,
    /// The call's end reason (`local_hangup`, `no_answer`, `busy` …).
    pub reason: String,
    pub code: Option<u16>,
    pub answered_at: Option<String>,
    pub duration_ms: u64,
    pub digits: String,
    /// What the script passed to `set_result`.
    pub result: String,
    pub call_id: String,
    /// Answering-machine detection's verdict (HUMAN, MACHINE, NOTSURE), when it ran.
    #[serde(default)]
    pub amd: String,
    /// When a machine's greeting ended (its beep), since detection started.
    #[serde(default)]
    pub beep_ms: Option<u64>,
}

fn timestamp(at: SystemTime) -> String {
    DateTime::<Local>::from(at).to_rfc3339_opts(SecondsFormat::Secs, false)
}

impl Outcome {
    pub fn from_call(info: &CallInfo) -> Self {
        Self {
            state: info.state.map_or("REJECTED", CallState::as_str).to_owned(),
            reason: info.end.map_or("unknown", |e| e.reason.as_str()).to_owned(),
            code: info.end.and_then(|e| e.code).map(|c| c.0),
            answered_at: info.answered.map(timestamp),
            duration_ms: info.duration().as_millis() as u64,
            digits: info.digits.clone(),
            result: info.result.clone().unwrap_or_default(),
            call_id: info.id.to_string(),
            amd: info
                .machine
                .map(|v| v.result.as_str().to_owned())
                .unwrap_or_default(),
            beep_ms: info.beep.map(|b| u64::from(b.ms)),
        }
    }

    /// The campaign stopped while this attempt was in progress.
    pub fn interrupted() -> Self {
        Self {
            state: "INTERRUPTED".into(),
            reason: "campaign stopped during the call".into(),
            ..Self::default()
        }
    }

    /// A contact that was never dialled (bad row).
    pub fn skipped(problem: &str) -> Self {
        Self {
            state: "SKIPPED".into(),
            reason: problem.into(),
            ..Self::default()
        }
    }

    fn class(&self) -> Option<RetryOn> {
        match (self.state.as_str(), self.reason.as_str()) {
            ("BUSY", _) => Some(RetryOn::Busy),
            (_, "no_answer") => Some(RetryOn::NoAnswer),
            ("REJECTED", _) => Some(RetryOn::Rejected),
            _ => None,
        }
    }
}

/// Which failures are tried again (`--retry-on busy,no-answer,rejected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryOn {
    Busy,
    NoAnswer,
    Rejected,
}

/// How many times, after what, and for which failures a contact is dialled again.
#[derive(Clone, Debug)]
pub struct RetryRule {
    pub on: Vec<RetryOn>,
    /// Retries after the first attempt.
    pub retries: u32,
    pub after: Duration,
}

impl RetryRule {
    /// Whether a contact whose `attempts`-th attempt ended in `outcome` is tried again.
    pub fn again(&self, outcome: &Outcome, attempts: u32) -> bool {
        attempts <= self.retries && outcome.class().is_some_and(|c| self.on.contains(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(state: &str, reason: &str) -> Outcome {
        Outcome {
            state: state.into(),
            reason: reason.into(),
            ..Outcome::default()
        }
    }

    #[test]
    fn retries_only_the_configured_failures_up_to_the_limit() {
        let rule = RetryRule {
            on: vec![RetryOn::Busy, RetryOn::NoAnswer],
            retries: 2,
            after: Duration::ZERO,
        };
        assert!(rule.again(&outcome("BUSY", "busy"), 1));
        assert!(rule.again(&outcome("REJECTED", "no_answer"), 2));
        assert!(
            !rule.again(&outcome("BUSY", "busy"), 3),
            "two retries, three attempts"
        );
        assert!(!rule.again(&outcome("REJECTED", "rejected"), 1));
        assert!(!rule.again(&outcome("COMPLETED", "remote_hangup"), 1));
        assert!(!rule.again(&Outcome::interrupted(), 1));
    }

    #[test]
    fn retry_on_parses() {
        use clap::ValueEnum;
        assert_eq!(RetryOn::from_str("no-answer", false), Ok(RetryOn::NoAnswer));
        assert!(RetryOn::from_str("maybe", false).is_err());
    }
}
