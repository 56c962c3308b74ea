//! The received audio of a call's leg, handed to answering-machine detection: an audio tap
//! copies each received frame into a bounded queue the call actor reads from, so detection
//! never holds up the media path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::warn;

use super::detection::ReceivedAudio;
use crate::media::MediaLeg;
use crate::media::tap::AudioTap;

/// Frames the listener may fall behind by before the leg drops some for it (2 s of audio).
const BACKLOG: usize = 100;

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

/// A leg's received audio, frame by frame, while detection listens.
pub struct AudioFeed {
    tap: Arc<Tap>,
    audio: mpsc::Receiver<ReceivedAudio>,
}

impl AudioFeed {
    /// Starts listening to `leg` now.
    pub fn start(leg: &MediaLeg) -> Self {
        let (frames, audio) = mpsc::channel(BACKLOG);
        let tap = Arc::new(Tap {
            frames,
            dropped: AtomicU64::new(0),
        });
        leg.add_tap(tap.clone());
        Self { tap, audio }
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
    pub async fn next(&mut self) -> ReceivedAudio {
        match self.audio.recv().await {
            Some(frame) => frame,
            None => std::future::pending().await,
        }
    }
}
