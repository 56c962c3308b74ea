//! Whether a frame is a steady tone (a voicemail beep) rather than speech or noise: nearly all of
//! its power in one narrow band between 400 and 3000 Hz, at the same pitch as the frame before.
//! Speech spreads its power over many harmonics that glide; a beep does neither. (A high voice
//! holding a vowel comes close: its fundamental can carry most of the power, which is why the
//! band starts above most voices' pitch and the share asked for is high.)

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::frames::{RATE, WINDOW};

/// Beeps are between these pitches.
const LOWEST_HZ: f32 = 400.0;
const HIGHEST_HZ: f32 = 3000.0;
/// Share of the window's power within the strongest bin and its neighbours for a tone.
const TONE_SHARE: f32 = 0.9;
/// Quieter than about -40 dBFS is silence, not a tone.
const MIN_RMS: f32 = 330.0;
/// Two frames of one tone are at most this many bins apart.
const SAME_PITCH_BINS: usize = 1;

/// The tone measurement of one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneFrame {
    /// The tone's pitch, when the frame is one.
    pub hz: Option<f32>,
}

/// Looks for a steady tone, one window at a time.
pub struct ToneDetector {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// The previous frame's tone bin.
    previous: Option<usize>,
}

impl std::fmt::Debug for ToneDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToneDetector")
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl Default for ToneDetector {
    fn default() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(WINDOW);
        let hann = (0..WINDOW)
            .map(|i| {
                let phase = 2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        Self {
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window: hann,
            previous: None,
        }
    }
}

fn bin_hz(bin: usize) -> f32 {
    bin as f32 * RATE as f32 / WINDOW as f32
}

impl ToneDetector {
    /// Measures the newest [`WINDOW`] samples (fewer at the very start: no tone yet).
    pub fn push(&mut self, samples: &[i16]) -> ToneFrame {
        let tone = self.measure(samples);
        let steady = match (tone, self.previous) {
            (Some(bin), Some(before)) => bin.abs_diff(before) <= SAME_PITCH_BINS,
            _ => false,
        };
        self.previous = tone;
        ToneFrame {
            hz: tone.filter(|_| steady).map(bin_hz),
        }
    }

    /// The bin of the window's tone, if it is one.
    fn measure(&mut self, samples: &[i16]) -> Option<usize> {
        if samples.len() < WINDOW {
            return None;
        }
        let samples = &samples[samples.len() - WINDOW..];
        let energy: f32 = samples.iter().map(|&s| f32::from(s).powi(2)).sum();
        if (energy / WINDOW as f32).sqrt() < MIN_RMS {
            return None;
        }
        for ((input, &sample), &weight) in self.input.iter_mut().zip(samples).zip(&self.window) {
            *input = f32::from(sample) * weight;
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .ok()?;
        let power: Vec<f32> = self.spectrum.iter().map(Complex::norm_sqr).collect();
        let total: f32 = power.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let lowest = (LOWEST_HZ / bin_hz(1)).ceil() as usize;
        let highest = ((HIGHEST_HZ / bin_hz(1)) as usize).min(power.len() - 2);
        let (peak, band) = (lowest..=highest)
            .map(|bin| (bin, power[bin - 1] + power[bin] + power[bin + 1]))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        (band / total >= TONE_SHARE).then_some(peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, amplitude: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                (amplitude * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    fn tones(samples: &[i16]) -> Vec<Option<f32>> {
        let mut detector = ToneDetector::default();
        samples
            .chunks(WINDOW / 2)
            .scan(Vec::new(), |window: &mut Vec<i16>, frame| {
                window.extend_from_slice(frame);
                if window.len() > WINDOW {
                    window.drain(..window.len() - WINDOW);
                }
                Some(detector.push(window).hz)
            })
            .collect()
    }

    #[test]
    fn a_beep_is_a_tone_at_its_pitch() {
        for hz in [440.0, 850.0, 1000.0, 1400.0] {
            let found = tones(&sine(hz, 8000.0, RATE as usize / 2));
            let steady: Vec<f32> = found.iter().flatten().copied().collect();
            assert!(steady.len() >= found.len() - 3, "{hz} Hz: {found:?}");
            assert!(
                steady.iter().all(|f| (f - hz).abs() < 40.0),
                "{hz}: {steady:?}"
            );
        }
    }

    #[test]
    fn chords_noise_and_silence_are_not() {
        // A vowel-like sound: a 150 Hz voice with many harmonics.
        let voice: Vec<i16> = (0..RATE as usize / 2)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                (1..12)
                    .map(|h| {
                        2500.0 / h as f32
                            * (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin()
                    })
                    .sum::<f32>() as i16
            })
            .collect();
        assert!(tones(&voice).iter().all(Option::is_none));
        let mut seed = 1u32;
        let noise: Vec<i16> = (0..RATE as usize / 2)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((seed >> 16) as i16) / 4
            })
            .collect();
        assert!(tones(&noise).iter().all(Option::is_none));
        assert!(
            tones(&vec![0; RATE as usize / 2])
                .iter()
                .all(Option::is_none)
        );
        assert!(
            tones(&sine(1000.0, 100.0, RATE as usize / 2))
                .iter()
                .all(Option::is_none),
            "too quiet"
        );
    }
}
