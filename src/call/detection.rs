//! A call's answering-machine detection at run time: the leg's received audio, heard through
//! an audio tap, fed to the sans-IO [`MachineListener`] in order, lost packets filled with
//! silence so the audio's clock keeps time, and a deadline on the call's own clock for when too
//! little audio arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use crate::amd::{AmdEvent, AmdSettings, MachineListener};
use crate::media::MediaLeg;
use crate::media::tap::AudioTap;

/// Frames the listener may fall behind by before the leg drops some for it (2 s of audio).
const BACKLOG: usize = 100;
/// The call's clock gives the audio this much longer than its own deadlines before it
/// decides without it (the audio arrives a little behind the wall clock).
const GRACE: Duration = Duration::from_secs(1);
/// A gap in the RTP timestamps up to this long is filled with silence; a longer one is a
/// jump of the far end's clock, not loss.
const MAX_GAP: Duration = Duration::from_secs(2);

/// One received frame, decoded: mono PCM at the codec's clock rate.
#[derive(Debug)]
pub struct ReceivedAudio {
    rate: u32,
    /// The packet's RTP timestamp (same clock), to tell lost packets.
    timestamp: u32,
    samples: Vec<i16>,
}

/// The leg's side: copies each received frame into a bounded queue. A detection that falls
/// behind loses frames (a gap in the timestamps, filled with silence; counted) rather than
/// holding up the media path.
struct Tap {
    frames: mpsc::Sender<ReceivedAudio>,
    dropped: AtomicU64,
}

impl AudioTap for Tap {
    fn received(&self, pcm: &[i16], rate: u32, timestamp: u32) {
        let frame = ReceivedAudio {
            rate,
            timestamp,
            samples: pcm.to_vec(),
        };
        if self.frames.try_send(frame).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Detection {
    listener: MachineListener,
    tap: Arc<Tap>,
    audio: mpsc::Receiver<ReceivedAudio>,
    started: Instant,
    /// The RTP timestamp the next frame should have.
    expected: Option<u32>,
}

impl Detection {
    /// Starts listening to `leg` now.
    pub fn start(leg: &MediaLeg, settings: AmdSettings) -> Self {
        let (frames, audio) = mpsc::channel(BACKLOG);
        let tap = Arc::new(Tap {
            frames,
            dropped: AtomicU64::new(0),
        });
        leg.add_tap(tap.clone());
        Self {
            listener: MachineListener::new(settings),
            tap,
            audio,
            started: Instant::now(),
            expected: None,
        }
    }

    /// Stops listening to `leg` (the one it started on).
    pub fn stop(self, leg: &MediaLeg) {
        let tap: Arc<dyn AudioTap> = self.tap.clone();
        leg.remove_tap(&tap);
        let dropped = self.tap.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            warn!("answering-machine detection fell behind: {dropped} frames heard as silence");
        }
    }

    /// The next received frame (pending forever once the leg is gone).
    pub async fn next_audio(&mut self) -> ReceivedAudio {
        match self.audio.recv().await {
            Some(frame) => frame,
            None => std::future::pending().await,
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

    /// The deadline passed.
    pub fn time_up(&mut self) -> Option<AmdEvent> {
        let elapsed = self.started.elapsed().as_millis();
        self.listener
            .time_up(u32::try_from(elapsed).unwrap_or(u32::MAX))
    }

    pub fn is_done(&self) -> bool {
        self.listener.is_done()
    }
}
