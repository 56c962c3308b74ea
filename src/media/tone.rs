//! Generated audio: sine tones (beeps, ringback, hold music) and DTMF key tones.

use std::f32::consts::TAU;

use super::dtmf::Digit;

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
}
