//! In-band DTMF detection with the Goertzel algorithm: the fallback when the far end sends keys as
//! audio tones instead of RFC 4733 events (no telephone-event negotiated).

use super::dtmf::{Digit, KEYPAD_COLUMNS as COLS, KEYPAD_ROWS as ROWS};

const SAMPLE_RATE: f32 = 8000.0;
/// 205 samples at 8 kHz (25.6 ms): the classic block length whose bins fit the DTMF grid.
const BLOCK: usize = 205;
/// Quieter blocks (mean square of samples in [-1, 1]) are silence: about -40 dBFS.
const MIN_ENERGY: f32 = 1e-4;
/// Share of the block's energy the two tones must hold (speech and noise spread wider).
const MIN_TONE_SHARE: f32 = 0.6;
/// Each chosen tone must be this much stronger than the runner-up of its group (≈ 8 dB).
const MIN_DOMINANCE: f32 = 6.0;
/// Allowed level difference between the two tones (twist), as a power ratio (≈ 8 dB).
const MAX_TWIST: f32 = 6.3;
/// Consecutive blocks a digit must be seen in before it counts (2 × 25.6 ms ≥ the 40 ms minimum).
const CONFIRM_BLOCKS: u32 = 2;

/// Finds DTMF keys in 8 kHz audio; reports each key press once.
#[derive(Debug, Default)]
pub struct InbandDetector {
    block: Vec<f32>,
    candidate: Option<Digit>,
    seen_for: u32,
    reported: bool,
}

impl InbandDetector {
    pub fn new() -> Self {
        Self {
            block: Vec::with_capacity(BLOCK),
            ..Self::default()
        }
    }

    /// Feeds 8 kHz samples; returns the keys whose press was confirmed in them.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Digit> {
        let mut found = Vec::new();
        for &sample in samples {
            self.block.push(f32::from(sample) / 32768.0);
            if self.block.len() == BLOCK {
                let digit = classify(&self.block);
                self.block.clear();
                found.extend(self.track(digit));
            }
        }
        found
    }

    fn track(&mut self, digit: Option<Digit>) -> Option<Digit> {
        if digit != self.candidate {
            self.candidate = digit;
            self.seen_for = 0;
            self.reported = false;
        }
        let digit = self.candidate?;
        self.seen_for += 1;
        if self.seen_for >= CONFIRM_BLOCKS && !self.reported {
            self.reported = true;
            return Some(digit);
        }
        None
    }
}

/// Goertzel power of `frequency` in `block`: a sine of amplitude A gives about (A·N/2)².
pub fn goertzel_power(block: &[f32], frequency: f32, sample_rate: f32) -> f32 {
    let coefficient = 2.0 * (2.0 * std::f32::consts::PI * frequency / sample_rate).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

/// The strongest frequency of a group, with its power, if it dominates the others.
fn dominant(block: &[f32], group: &[f32; 4]) -> Option<(usize, f32)> {
    let powers = group.map(|f| goertzel_power(block, f, SAMPLE_RATE));
    let (best, &best_power) = powers
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let dominates = powers
        .iter()
        .enumerate()
        .all(|(i, &p)| i == best || p * MIN_DOMINANCE < best_power);
    dominates.then_some((best, best_power))
}

fn classify(block: &[f32]) -> Option<Digit> {
    let energy: f32 = block.iter().map(|x| x * x).sum();
    if energy / (block.len() as f32) < MIN_ENERGY {
        return None;
    }
    let (row, row_power) = dominant(block, &ROWS)?;
    let (col, col_power) = dominant(block, &COLS)?;
    let twist = row_power / col_power;
    if !(1.0 / MAX_TWIST..=MAX_TWIST).contains(&twist) {
        return None;
    }
    // A sine of amplitude A has power ≈ (A·N/2)² and energy ≈ N·A²/2.
    let tone_share = (row_power + col_power) / (energy * block.len() as f32 / 2.0);
    if tone_share < MIN_TONE_SHARE {
        return None;
    }
    Digit::at(row, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::dtmf_tone;

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * 8]
    }

    #[test]
    fn detects_every_key_once() {
        let mut audio = Vec::new();
        for c in "0123456789*#ABCD".chars() {
            audio.extend(dtmf_tone(Digit::from_char(c).unwrap(), 8000, 80));
            audio.extend(silence(60));
        }
        let mut detector = InbandDetector::new();
        let found: String = audio
            .chunks(160)
            .flat_map(|frame| detector.push(frame))
            .map(Digit::as_char)
            .collect();
        assert_eq!(found, "0123456789*#ABCD");
    }

    #[test]
    fn a_held_key_is_one_press_and_a_repeat_after_a_gap_is_another() {
        let five = Digit::from_char('5').unwrap();
        let mut audio = dtmf_tone(five, 8000, 400);
        audio.extend(silence(60));
        audio.extend(dtmf_tone(five, 8000, 80));
        let mut detector = InbandDetector::new();
        assert_eq!(detector.push(&audio), vec![five, five]);
    }

    #[test]
    fn single_tones_speechlike_noise_and_short_blips_are_not_keys() {
        let mut detector = InbandDetector::new();
        let single: Vec<i16> = (0..8000)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 697.0 / 8000.0).sin() * 8000.0) as i16
            })
            .collect();
        assert!(detector.push(&single).is_empty());
        let mut seed = 1u32;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((seed >> 16) as i16) / 4
            })
            .collect();
        assert!(detector.push(&noise).is_empty());
        let blip = dtmf_tone(Digit::from_char('1').unwrap(), 8000, 20);
        assert!(detector.push(&blip).is_empty());
    }
}
