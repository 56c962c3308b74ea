//! Listening in on a leg's audio as PCM, for whoever needs it besides the recorder: a voice
//! agent's stream, answering-machine detection, a speech recogniser. Both engines serve the
//! same contract, so a listener is written once:
//!
//! - [`MediaLeg::add_tap`](super::MediaLeg::add_tap) hands the leg's audio, both ways, to a tap
//!   from then on; [`MediaLeg::remove_tap`](super::MediaLeg::remove_tap) stops it (dropping the
//!   leg drops its taps too).
//! - [`AudioTap::received`]: the far end's audio, decoded, mono, as each packet arrives (usually
//!   20 ms; nothing while no packets come), with the packet's RTP timestamp, so a listener that
//!   keeps the audio's own clock (answering-machine detection) can fill a lost packet.
//!   [`AudioTap::sent`]: what the leg sent in each 20 ms tick (prompts, tones, live feeds;
//!   echoed frames when decoded), `None` for silence, so a listener can keep a continuous
//!   timeline of our side.
//! - PCM is 16-bit at the codec's clock rate, given with every call (8000 for PCMU/PCMA, 48000
//!   for Opus); resample to what the listener needs (see `voice::audio` for 8 kHz μ-law).
//! - Taps run on the media path (an engine thread, or the legacy leg's task), once per packet or
//!   tick, for every call the thread serves. A tap copies what it needs into a **bounded** queue
//!   (`try_send`), drops and counts when that is full, and never blocks, locks for long or does
//!   I/O there; the voice stream's bridge in `voice::session` is the model.
//! - A leg holds taps its own code adds (one per feature per call, replaced rather than
//!   stacked), never one per message from the wire.

use std::sync::Arc;

/// One listener of a leg's audio.
pub trait AudioTap: Send + Sync {
    /// Audio the far end sent, decoded, mono at `rate` Hz, as it arrives (usually 20 ms);
    /// `timestamp` is its packet's RTP timestamp (same clock), so a tap that keeps time by the
    /// audio (answering-machine detection) can tell a lost packet from a pause.
    fn received(&self, pcm: &[i16], rate: u32, timestamp: u32);

    /// What the leg sent in one 20 ms interval, at `rate` Hz; `None` is silence (nothing
    /// queued, or on hold).
    fn sent(&self, _pcm: Option<&[i16]>, _rate: u32) {}
}

impl std::fmt::Debug for dyn AudioTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AudioTap")
    }
}

/// The taps of one leg. A plain value: each engine keeps it where its leg state lives.
#[derive(Clone, Default)]
pub struct AudioTaps(Vec<Arc<dyn AudioTap>>);

impl std::fmt::Debug for AudioTaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AudioTaps({})", self.0.len())
    }
}

impl AudioTaps {
    /// Adds `tap`; it hears everything from now on.
    pub fn add(&mut self, tap: Arc<dyn AudioTap>) {
        self.0.push(tap);
    }

    /// Removes `tap` (the same object that was added).
    pub fn remove(&mut self, tap: &Arc<dyn AudioTap>) {
        let target = Arc::as_ptr(tap).cast::<()>();
        self.0.retain(|t| Arc::as_ptr(t).cast::<()>() != target);
    }

    /// Whether anyone listens: received audio needs decoding only then.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands the far end's decoded audio to every tap.
    pub fn received(&self, pcm: &[i16], rate: u32, timestamp: u32) {
        for tap in &self.0 {
            tap.received(pcm, rate, timestamp);
        }
    }

    /// Hands one tick of what the leg sent (`None`: silence) to every tap.
    pub fn sent(&self, pcm: Option<&[i16]>, rate: u32) {
        for tap in &self.0 {
            tap.sent(pcm, rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl AudioTap for Count {
        fn received(&self, pcm: &[i16], _rate: u32, _timestamp: u32) {
            self.0.fetch_add(pcm.len(), Ordering::Relaxed);
        }
    }

    #[test]
    fn every_tap_hears_until_removed() {
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (a_tap, b_tap): (Arc<dyn AudioTap>, Arc<dyn AudioTap>) = (a.clone(), b.clone());
        let mut taps = AudioTaps::default();
        assert!(taps.is_empty());
        taps.add(a_tap.clone());
        taps.add(b_tap);
        taps.received(&[0; 160], 8000, 0);
        taps.remove(&a_tap);
        taps.received(&[0; 160], 8000, 0);
        taps.sent(None, 8000);
        assert_eq!(a.0.load(Ordering::Relaxed), 160);
        assert_eq!(b.0.load(Ordering::Relaxed), 320);
    }
}
