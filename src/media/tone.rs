//! Generated audio: sine tones (beeps, ringback, hold music) and DTMF key tones.

use std::collections::HashMap;
use std::f32::consts::TAU;
use std::sync::{Arc, Mutex, OnceLock};

use super::codec::Codec;
use super::dtmf::Digit;
use super::prompt::EncodedAudio;

/// Level of a generated tone: about -10 dBFS, loud enough and never clipping.
const TONE_LEVEL: f32 = 0.3;
/// Level of each of the two DTMF frequencies (together about -9 dBFS peak).
const DTMF_LEVEL: f32 = 0.18;

/// `ms` milliseconds of a sine at `frequency` Hz, as 16-bit samples at `sample_rate`.
pub fn sine(frequency: f32, sample_rate: u32, ms: u32) -> Vec<i16> {
    mix(&[frequency], TONE_LEVEL, sample_rate, ms)
}

/// `ms` milliseconds of the two tones of a DTMF key, for in-band signalling.
pub fn dtmf_tone(digit: Digit, sample_rate: u32, ms: u32) -> Vec<i16> {
    let (row, col) = digit.frequencies();
    mix(&[row, col], DTMF_LEVEL, sample_rate, ms)
}

/// Call-progress sounds a PBX plays: what a caller hears while the far end rings, while held,
/// and when a call cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// 440 + 480 Hz, 2 s on, 4 s off (North American ringback).
    Ringback,
    /// A gentle three-note figure with pauses: "music" on hold.
    Hold,
    /// The three rising special-information tones (950, 1400, 1800 Hz), then silence.
    Error,
}

impl Signal {
    /// One period of the signal as PCM at `rate`.
    pub fn pcm(self, rate: u32) -> Vec<i16> {
        let silence = |ms: u32| vec![0i16; (rate * ms / 1000) as usize];
        match self {
            Signal::Ringback => [
                mix(&[440.0, 480.0], TONE_LEVEL / 2.0, rate, 2000),
                silence(4000),
            ]
            .concat(),
            Signal::Hold => [
                sine(523.25, rate, 400),
                sine(659.25, rate, 400),
                sine(783.99, rate, 600),
                silence(1600),
            ]
            .concat(),
            Signal::Error => [
                sine(950.0, rate, 330),
                sine(1400.0, rate, 330),
                sine(1800.0, rate, 330),
                silence(500),
            ]
            .concat(),
        }
    }

    /// The signal encoded for `codec`, made once per process and shared by every leg.
    pub fn encoded(self, codec: Codec) -> Option<Arc<EncodedAudio>> {
        cached(Sound::Signal(self), codec, || self.pcm(codec.clock_rate()))
    }
}

/// How long the shared piece of a script's tone is; a longer tone repeats it (seamlessly for
/// whole-hertz frequencies), so no tone is synthesised at length on the media clock.
pub const TONE_PIECE_MS: u32 = 1000;

/// [`TONE_PIECE_MS`] of a sine at `hz`, encoded for `codec`, made once per process.
pub fn sine_piece(hz: f32, codec: Codec) -> Option<Arc<EncodedAudio>> {
    cached(Sound::Sine(hz.to_bits()), codec, || {
        sine(hz, codec.clock_rate(), TONE_PIECE_MS)
    })
}

/// What the cache holds: call-progress signals and pieces of scripts' tones (by the bits of
/// their frequency).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Sound {
    Signal(Signal),
    Sine(u32),
}

/// Sounds kept encoded; a script sweeping through frequencies empties the cache rather than
/// growing it.
const CACHE_ENTRIES: usize = 64;

fn cached(sound: Sound, codec: Codec, pcm: impl FnOnce() -> Vec<i16>) -> Option<Arc<EncodedAudio>> {
    type Cache = Mutex<HashMap<(Sound, Codec), Arc<EncodedAudio>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let mut cache = crate::lock::lock(cache);
    if let Some(audio) = cache.get(&(sound, codec)) {
        return Some(audio.clone());
    }
    let audio = Arc::new(EncodedAudio::from_pcm(codec, pcm()).ok()?);
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert((sound, codec), audio.clone());
    Some(audio)
}

fn mix(frequencies: &[f32], level: f32, sample_rate: u32, ms: u32) -> Vec<i16> {
    let count = (u64::from(sample_rate) * u64::from(ms) / 1000) as usize;
    let rate = sample_rate as f32;
    (0..count)
        .map(|i| {
            let t = i as f32 / rate;
            let value: f32 = frequencies.iter().map(|f| (TAU * f * t).sin()).sum();
            (value * level * f32::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_levels() {
        let tone = sine(1000.0, 8000, 200);
        assert_eq!(tone.len(), 1600);
        let peak = tone.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((9000..=9900).contains(&peak), "{peak}");
        let key = dtmf_tone(Digit::from_char('#').unwrap(), 48000, 50);
        assert_eq!(key.len(), 2400);
        assert!(key.iter().all(|s| s.unsigned_abs() < 12_000));
    }

    #[test]
    fn signals_have_their_cadence_and_are_cached() {
        assert_eq!(Signal::Ringback.pcm(8000).len(), 6 * 8000);
        assert_eq!(Signal::Error.pcm(8000).len(), 8000 * 1490 / 1000);
        let a = Signal::Hold.encoded(Codec::Pcmu).unwrap();
        let b = Signal::Hold.encoded(Codec::Pcmu).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.frames.len(), 150);
    }
}
