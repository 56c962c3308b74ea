//! Between the call's codec and the stream's 8 kHz μ-law: the caller's audio cut into 20 ms
//! frames for `media` messages, and the agent's μ-law (any length) made into frames the call
//! can send. PCMU calls pass the agent's bytes through untouched; PCMA and Opus calls are
//! transcoded (Opus through 48 kHz).

use std::sync::Arc;

use bytes::Bytes;

use crate::media::codec::{Codec, Decoder, Encoder, convert_rate};
use crate::media::prompt::EncodedAudio;

/// Rate of the stream's audio.
pub const STREAM_RATE: u32 = 8000;
/// Samples (and μ-law bytes) in one 20 ms frame of the stream.
pub const FRAME: usize = 160;
/// μ-law for a zero sample.
const MULAW_SILENCE: u8 = 0xFF;

/// The caller's (or the bot's) audio as 20 ms μ-law frames, whatever size it arrives in.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<i16>,
}

impl Framer {
    /// Adds audio at 8 kHz; returns the whole frames now ready, as μ-law.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<[u8; FRAME]> {
        self.pending.extend_from_slice(pcm);
        let whole = self.pending.len() / FRAME * FRAME;
        let frames = self.pending[..whole]
            .chunks_exact(FRAME)
            .map(|chunk| std::array::from_fn(|i| audio_codec_algorithms::encode_ulaw(chunk[i])))
            .collect();
        self.pending.drain(..whole);
        frames
    }
}

/// PCM at `rate` as the stream's 8 kHz.
pub fn to_stream_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
    convert_rate(pcm, rate, STREAM_RATE)
}

/// The agent's μ-law made into audio for the call's codec, 20 ms frames at a time; a short
/// rest waits for the next message (or a mark, which pads it out so the mark follows it).
pub struct Downlink {
    codec: Codec,
    pending: Vec<u8>,
    decoder: Decoder,
    encoder: Option<Encoder>,
}

impl std::fmt::Debug for Downlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Downlink({:?}, {} pending)",
            self.codec,
            self.pending.len()
        )
    }
}

impl Downlink {
    pub fn new(codec: Codec) -> Result<Self, crate::media::codec::CodecError> {
        let encoder = match codec {
            Codec::Pcmu => None,
            other => Some(Encoder::new(other)?),
        };
        Ok(Self {
            codec,
            pending: Vec::new(),
            decoder: Decoder::new(Codec::Pcmu)?,
            encoder,
        })
    }

    /// The codec it makes frames for.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Adds μ-law bytes; returns the whole frames they complete, ready to play.
    pub fn push(&mut self, mulaw: &[u8]) -> Option<Arc<EncodedAudio>> {
        self.pending.extend_from_slice(mulaw);
        let whole = self.pending.len() / FRAME * FRAME;
        if whole == 0 {
            return None;
        }
        let bytes: Vec<u8> = self.pending.drain(..whole).collect();
        Some(self.encode(&bytes))
    }

    /// Pads a short rest out to a whole frame and returns it.
    pub fn flush(&mut self) -> Option<Arc<EncodedAudio>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.resize(FRAME, MULAW_SILENCE);
        Some(self.encode(&bytes))
    }

    /// Forgets a short rest (the agent cleared its audio).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    fn encode(&mut self, mulaw: &[u8]) -> Arc<EncodedAudio> {
        let mut pcm = Vec::with_capacity(mulaw.len());
        self.decoder.decode(mulaw, &mut pcm);
        let audio = match (self.codec, self.encoder.as_mut()) {
            (Codec::Pcmu, _) | (_, None) => EncodedAudio {
                codec: Codec::Pcmu,
                frames: mulaw.chunks(FRAME).map(Bytes::copy_from_slice).collect(),
                pcm,
            },
            (codec, Some(encoder)) => {
                let pcm = convert_rate(&pcm, STREAM_RATE, codec.clock_rate());
                let frames = pcm
                    .chunks(codec.frame_samples())
                    .map(|frame| encoder.encode(frame))
                    .collect();
                EncodedAudio { codec, frames, pcm }
            }
        };
        Arc::new(audio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::inband::goertzel_power;
    use crate::media::tone::sine;

    fn mulaw(pcm: &[i16]) -> Vec<u8> {
        pcm.iter()
            .map(|&s| audio_codec_algorithms::encode_ulaw(s))
            .collect()
    }

    #[test]
    fn the_framer_cuts_any_sizes_into_20_ms() {
        let mut framer = Framer::default();
        assert!(framer.push(&[0; 100]).is_empty());
        let frames = framer.push(&[0; 400]);
        assert_eq!(frames.len(), 3);
        assert_eq!(framer.push(&[0; 140]).len(), 1, "the rest carried over");
        assert_eq!(frames[0], [MULAW_SILENCE; FRAME]);
    }

    #[test]
    fn opus_audio_reaches_the_stream_at_8_khz() {
        let wide = sine(1000.0, 48000, 20);
        let narrow = to_stream_rate(&wide, 48000);
        assert_eq!(narrow.len(), FRAME);
        let floats: Vec<f32> = narrow.iter().map(|&s| f32::from(s)).collect();
        assert!(
            goertzel_power(&floats, 1000.0, 8000.0)
                > 10.0 * goertzel_power(&floats, 2000.0, 8000.0)
        );
    }

    #[test]
    fn pcmu_calls_get_the_agents_bytes_untouched() {
        let mut down = Downlink::new(Codec::Pcmu).unwrap();
        let bytes = mulaw(&sine(440.0, 8000, 30));
        let audio = down.push(&bytes).unwrap();
        assert_eq!(audio.frames.len(), 1);
        assert_eq!(&audio.frames[0][..], &bytes[..FRAME]);
        assert_eq!(audio.pcm.len(), FRAME);
        let rest = down.flush().unwrap();
        assert_eq!(&rest.frames[0][..80], &bytes[FRAME..]);
        assert_eq!(rest.frames[0][80..], [MULAW_SILENCE; 80]);
        assert!(down.flush().is_none());
    }

    #[test]
    fn opus_calls_get_48_khz_frames_and_pcm_for_the_recorder() {
        let mut down = Downlink::new(Codec::Opus).unwrap();
        assert!(down.push(&mulaw(&[0; 100])).is_none(), "less than a frame");
        down.clear();
        let audio = down.push(&mulaw(&sine(440.0, 8000, 100))).unwrap();
        assert_eq!(audio.codec, Codec::Opus);
        assert_eq!(audio.frames.len(), 5);
        assert_eq!(audio.pcm.len(), 5 * 960);
        assert!(audio.frames.iter().all(|f| !f.is_empty() && f.len() < 400));
    }

    #[test]
    fn pcma_calls_are_transcoded() {
        let mut down = Downlink::new(Codec::Pcma).unwrap();
        let audio = down.push(&mulaw(&sine(440.0, 8000, 20))).unwrap();
        assert_eq!(audio.codec, Codec::Pcma);
        assert_eq!(audio.frames[0].len(), FRAME);
    }
}
