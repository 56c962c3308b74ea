//! The audio codecs a leg can negotiate (PCMU, PCMA, Opus) and 20 ms frame coding.

use std::sync::OnceLock;

use bytes::Bytes;
use thiserror::Error;

/// Packet interval: every codec sends one frame per 20 ms (docs/protocol.md §7, ptime 20).
pub const FRAME_MS: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    Opus,
}

#[derive(Debug, Error)]
#[error("opus: {0}")]
pub struct CodecError(#[from] opus::Error);

impl Codec {
    /// The codec for an SDP encoding name (`PCMU`, `pcma`, `opus`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            "opus" => Some(Codec::Opus),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// RTP clock rate, which is also the PCM rate we code at.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48000,
        }
    }

    /// Samples (and RTP timestamp units) in one 20 ms frame.
    pub fn frame_samples(self) -> usize {
        (self.clock_rate() * FRAME_MS / 1000) as usize
    }

    /// Encodes mono PCM at [`Codec::clock_rate`] into 20 ms frames; a short last frame is padded
    /// with silence. Opus keeps state across the frames of one call to this function.
    pub fn encode_frames(self, pcm: &[i16]) -> Result<Vec<Bytes>, CodecError> {
        let n = self.frame_samples();
        let padded;
        let pcm = if pcm.len().is_multiple_of(n) {
            pcm
        } else {
            padded = [pcm, &vec![0; n - pcm.len() % n]].concat();
            &padded
        };
        match self {
            Codec::Pcmu => Ok(pcm
                .chunks(n)
                .map(|f| f.iter().map(|&s| g711::encode_ulaw(s)).collect())
                .collect()),
            Codec::Pcma => Ok(pcm
                .chunks(n)
                .map(|f| f.iter().map(|&s| g711::encode_alaw(s)).collect())
                .collect()),
            Codec::Opus => {
                let mut encoder = opus_encoder()?;
                let mut buffer = [0u8; 1500];
                pcm.chunks(n)
                    .map(|frame| {
                        let len = encoder.encode(frame, &mut buffer)?;
                        Ok(Bytes::copy_from_slice(&buffer[..len]))
                    })
                    .collect()
            }
        }
    }

    /// One 20 ms frame of silence, shared by every leg.
    pub fn silence(self) -> Bytes {
        static FRAMES: OnceLock<[Bytes; 3]> = OnceLock::new();
        let frames = FRAMES.get_or_init(|| {
            [Codec::Pcmu, Codec::Pcma, Codec::Opus].map(|codec| {
                codec
                    .encode_frames(&vec![0; codec.frame_samples()])
                    .ok()
                    .and_then(|frames| frames.into_iter().next())
                    .unwrap_or_default()
            })
        });
        frames[self as usize].clone()
    }
}

/// Encodes a live stream frame by frame (a bridged call whose legs chose different codecs);
/// Opus keeps its state from one frame to the next.
pub struct Encoder {
    codec: Codec,
    opus: Option<opus::Encoder>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoder({:?})", self.codec)
    }
}

impl Encoder {
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let opus = match codec {
            Codec::Opus => Some(opus_encoder()?),
            _ => None,
        };
        Ok(Self { codec, opus })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// One 20 ms frame of mono PCM at the codec's rate (shorter input is padded with silence).
    pub fn encode(&mut self, pcm: &[i16]) -> Bytes {
        let n = self.codec.frame_samples();
        let mut frame = pcm[..pcm.len().min(n)].to_vec();
        frame.resize(n, 0);
        match (&mut self.opus, self.codec) {
            (Some(encoder), _) => {
                let mut buffer = [0u8; 1500];
                match encoder.encode(&frame, &mut buffer) {
                    Ok(len) => Bytes::copy_from_slice(&buffer[..len]),
                    Err(_) => Codec::Opus.silence(),
                }
            }
            (None, Codec::Pcma) => frame.iter().map(|&s| g711::encode_alaw(s)).collect(),
            (None, _) => frame.iter().map(|&s| g711::encode_ulaw(s)).collect(),
        }
    }
}

/// Converts mono PCM between rates a whole factor apart (our codecs' 8 and 48 kHz, and the 16 kHz
/// of answering-machine detection): averaging groups going down (enough low-pass for narrowband
/// speech and DTMF), linear interpolation going up.
pub fn convert_rate(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    match (from, to) {
        (a, b) if a == b => pcm.to_vec(),
        // Down by a whole factor (48 kHz to 8 or 16 kHz): each output sample is the mean of
        // its group.
        (from, to) if to > 0 && from > to && from % to == 0 => pcm
            .chunks((from / to) as usize)
            .map(|group| {
                (group.iter().map(|&s| i32::from(s)).sum::<i32>() / group.len() as i32) as i16
            })
            .collect(),
        // Up by a whole factor (8 kHz to 16 or 48 kHz): straight lines between samples.
        (from, to) if from > 0 && to > from && to % from == 0 => {
            let factor = (to / from) as i32;
            let mut out = Vec::with_capacity(pcm.len() * factor as usize);
            for (i, &sample) in pcm.iter().enumerate() {
                let next = i32::from(*pcm.get(i + 1).unwrap_or(&sample));
                let sample = i32::from(sample);
                out.extend((0..factor).map(|k| (sample + (next - sample) * k / factor) as i16));
            }
            out
        }
        _ => {
            // Not a pair our codecs produce; nearest sample keeps the length right.
            let len = pcm.len() * to as usize / from.max(1) as usize;
            (0..len)
                .map(|i| {
                    pcm[(i * from as usize / to.max(1) as usize).min(pcm.len().saturating_sub(1))]
                })
                .collect()
        }
    }
}

fn opus_encoder() -> Result<opus::Encoder, opus::Error> {
    let mut encoder = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
    Ok(encoder)
}

mod g711 {
    pub use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};
}

/// Decodes one leg's received frames to mono PCM at the codec's clock rate. Opus needs state
/// per stream; G.711 is a table lookup.
pub struct Decoder {
    codec: Codec,
    opus: Option<opus::Decoder>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({:?})", self.codec)
    }
}

impl Decoder {
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let opus = match codec {
            // Mono output also for `opus/48000/2` streams: the decoder downmixes.
            Codec::Opus => Some(opus::Decoder::new(48000, opus::Channels::Mono)?),
            _ => None,
        };
        Ok(Self { codec, opus })
    }

    /// Appends the decoded samples of `payload` to `out`; a corrupt Opus packet is replaced by
    /// concealment of one frame.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match (&mut self.opus, self.codec) {
            (Some(decoder), _) => {
                let mut buffer = [0i16; 5760]; // 120 ms, the longest Opus frame
                let n = decoder
                    .decode(payload, &mut buffer, false)
                    .or_else(|_| decoder.decode(&[], &mut buffer[..960], false))
                    .unwrap_or(0);
                out.extend_from_slice(&buffer[..n]);
            }
            (None, Codec::Pcma) => out.extend(payload.iter().map(|&b| g711::decode_alaw(b))),
            (None, _) => out.extend(payload.iter().map(|&b| g711::decode_ulaw(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::sine;

    #[test]
    fn frame_sizes() {
        assert_eq!(Codec::Pcmu.frame_samples(), 160);
        assert_eq!(Codec::Opus.frame_samples(), 960);
        assert_eq!(Codec::from_name("PCMA"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("G722"), None);
    }

    #[test]
    fn silence_frames() {
        assert_eq!(Codec::Pcmu.silence(), Bytes::from(vec![0xFF; 160]));
        assert_eq!(Codec::Pcma.silence(), Bytes::from(vec![0xD5; 160]));
        assert!(!Codec::Opus.silence().is_empty());
    }

    fn round_trip(codec: Codec) -> (Vec<i16>, Vec<i16>) {
        let pcm = sine(440.0, codec.clock_rate(), 200);
        let frames = codec.encode_frames(&pcm).unwrap();
        assert_eq!(frames.len(), 10);
        let mut decoder = Decoder::new(codec).unwrap();
        let mut out = Vec::new();
        for frame in &frames {
            decoder.decode(frame, &mut out);
        }
        (pcm, out)
    }

    #[test]
    fn g711_round_trips_closely() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let (pcm, out) = round_trip(codec);
            assert_eq!(out.len(), pcm.len());
            let max_error = pcm
                .iter()
                .zip(&out)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap();
            assert!(max_error < 600, "{codec:?}: {max_error}");
        }
    }

    #[test]
    fn opus_round_trip_keeps_length_and_energy() {
        let (pcm, out) = round_trip(Codec::Opus);
        assert_eq!(out.len(), pcm.len());
        let energy = |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        let ratio = energy(&out[4800..]) / energy(&pcm[4800..]);
        assert!((0.5..2.0).contains(&ratio), "{ratio}");
    }

    #[test]
    fn frame_encoder_matches_batch_encoding_for_g711() {
        let pcm = sine(440.0, 8000, 20);
        let mut encoder = Encoder::new(Codec::Pcma).unwrap();
        assert_eq!(
            encoder.encode(&pcm),
            Codec::Pcma.encode_frames(&pcm).unwrap()[0]
        );
        let mut opus = Encoder::new(Codec::Opus).unwrap();
        assert!(!opus.encode(&sine(440.0, 48000, 20)).is_empty());
    }

    #[test]
    fn rate_conversion_keeps_duration_and_tone() {
        let narrow = sine(440.0, 8000, 100);
        let wide = convert_rate(&narrow, 8000, 48000);
        assert_eq!(wide.len(), 4800);
        let back = convert_rate(&wide, 48000, 8000);
        assert_eq!(back.len(), 800);
        let error = narrow
            .iter()
            .zip(&back)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(error < 1500, "{error}");
    }

    #[test]
    fn short_input_is_padded_and_garbage_decodes_to_concealment() {
        let frames = Codec::Pcmu.encode_frames(&[1, 2, 3]).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 160);
        let mut decoder = Decoder::new(Codec::Opus).unwrap();
        let mut out = Vec::new();
        decoder.decode(&[0xff, 0xff, 0xff], &mut out);
        assert!(out.len() <= 5760);
    }
}
