//! A call's answering-machine detection, as plain values: the leg's received audio (see
//! `audio_feed`) fed to the sans-IO [`MachineListener`] in order, lost packets filled with
//! silence so the audio's clock keeps time, and a deadline on the call's own clock for when too
//! little audio arrives.

use std::time::{Duration, Instant};

use crate::amd::{AmdEvent, AmdSettings, MachineListener};

/// The call's clock gives the audio this much longer than its own deadlines before it
/// decides without it (the audio arrives a little behind the wall clock).
const GRACE: Duration = Duration::from_secs(1);
/// A gap in the RTP timestamps up to this long is filled with silence; a longer one is a
/// jump of the far end's clock, not loss.
const MAX_GAP: Duration = Duration::from_secs(2);

/// One received frame, decoded: mono PCM at the codec's clock rate.
#[derive(Debug)]
pub struct ReceivedAudio {
    pub rate: u32,
    /// The packet's RTP timestamp (same clock), to tell lost packets.
    pub timestamp: u32,
    pub samples: Vec<i16>,
}

pub struct Detection {
    listener: MachineListener,
    started: Instant,
    /// The RTP timestamp the next frame should have.
    expected: Option<u32>,
}

impl Detection {
    /// Starts deciding at `now` (the audio follows as it is received).
    pub fn start(settings: AmdSettings, now: Instant) -> Self {
        Self {
            listener: MachineListener::new(settings),
            started: now,
            expected: None,
        }
    }

    /// Feeds one received frame; what it decided.
    pub fn feed(&mut self, frame: &ReceivedAudio) -> Vec<AmdEvent> {
        let mut events = Vec::new();
        if let Some(expected) = self.expected {
            let ahead = frame.timestamp.wrapping_sub(expected) as i32;
            if ahead < 0 {
                // Late or repeated: its place has passed.
                return events;
            }
            let max_gap = (MAX_GAP.as_millis() as u64 * u64::from(frame.rate) / 1000) as i32;
            if ahead > 0 && ahead <= max_gap {
                events.extend(self.listener.push(&vec![0; ahead as usize], frame.rate));
            }
        }
        self.expected = Some(frame.timestamp.wrapping_add(frame.samples.len() as u32));
        events.extend(self.listener.push(&frame.samples, frame.rate));
        events
    }

    /// When the call's clock decides without the audio: the end of the analysis while still
    /// deciding, the beep timeout while waiting for the beep.
    pub fn deadline(&self, verdict_given: bool) -> Instant {
        let settings = self.listener.settings();
        let ms = if verdict_given {
            settings.beep_timeout_ms
        } else {
            settings.total_analysis_ms
        };
        self.started + Duration::from_millis(ms.into()) + GRACE
    }

    /// The deadline passed (it is `now`).
    pub fn time_up(&mut self, now: Instant) -> Option<AmdEvent> {
        let elapsed = now.duration_since(self.started).as_millis();
        self.listener
            .time_up(u32::try_from(elapsed).unwrap_or(u32::MAX))
    }

    pub fn is_done(&self) -> bool {
        self.listener.is_done()
    }
}
