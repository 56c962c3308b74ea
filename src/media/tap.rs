//! Listening in on a leg's audio as PCM, for whoever needs it besides the recorder: a voice
//! agent's stream, a detector. A leg keeps a list of taps and hands each 20 ms to all of them
//! on the media path, so a tap must only copy and pass on (a bounded channel), never block.

use std::sync::Arc;

/// One listener of a leg's audio.
pub trait AudioTap: Send + Sync {
    /// Audio the far end sent, decoded, mono at `rate` Hz, as it arrives (usually 20 ms).
    fn received(&self, pcm: &[i16], rate: u32);

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

    pub fn received(&self, pcm: &[i16], rate: u32) {
        for tap in &self.0 {
            tap.received(pcm, rate);
        }
    }

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
        fn received(&self, pcm: &[i16], _rate: u32) {
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
        taps.received(&[0; 160], 8000);
        taps.remove(&a_tap);
        taps.received(&[0; 160], 8000);
        taps.sent(None, 8000);
        assert_eq!(a.0.load(Ordering::Relaxed), 160);
        assert_eq!(b.0.load(Ordering::Relaxed), 320);
    }
}
