//! Received audio cut into the analysis frames both detectors use: 16 ms at 16 kHz, whatever
//! rate the call's codec has, with the last 32 ms kept for the tone detector's longer window.

use crate::media::codec::convert_rate;

/// The analysis rate (the voice detector's).
pub const RATE: u32 = 16_000;
/// Samples per frame: 16 ms.
pub const FRAME: usize = 256;
pub const FRAME_MS: u32 = 16;
/// The tone detector looks at the last two frames.
pub const WINDOW: usize = 2 * FRAME;

/// Collects audio until a whole frame is there.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<i16>,
    /// The last [`WINDOW`] samples, the newest frame at the end.
    window: Vec<i16>,
}

impl Framer {
    /// Adds `pcm` at `rate` Hz; `each` sees every completed frame's window (the newest
    /// [`FRAME`] samples are the new frame).
    pub fn push(&mut self, pcm: &[i16], rate: u32, mut each: impl FnMut(&[i16])) {
        self.pending.extend(convert_rate(pcm, rate, RATE));
        let mut start = 0;
        while self.pending.len() - start >= FRAME {
            let frame = &self.pending[start..start + FRAME];
            if self.window.len() >= WINDOW {
                self.window.drain(..FRAME);
            }
            self.window.extend_from_slice(frame);
            start += FRAME;
            each(&self.window);
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_rate_becomes_16_ms_frames_at_16_khz() {
        for rate in [8000, 16000, 48000] {
            let mut framer = Framer::default();
            let mut frames = 0;
            // One second in 20 ms packets.
            let packet = vec![1000i16; rate as usize / 50];
            for _ in 0..50 {
                framer.push(&packet, rate, |window| {
                    assert!(window.len() == FRAME || window.len() == WINDOW);
                    frames += 1;
                });
            }
            assert_eq!(frames, 1000 / FRAME_MS as usize, "{rate} Hz");
        }
    }
}
