//! Looking into recordings: channels, loudness, dominant frequency.

use std::path::Path;

use callbot::media::inband::goertzel_power;

/// One channel of a WAV file (0 = left = the far end in our recordings), as floats in [-1, 1].
pub fn channel(path: &Path, index: usize) -> (Vec<f32>, u32) {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable WAV: {e}", path.display()));
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let picked = samples
        .chunks(channels)
        .map(|frame| f32::from(frame[index.min(channels - 1)]) / 32768.0)
        .collect();
    (picked, spec.sample_rate)
}

pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32).sqrt()
}

/// The strongest frequency in `lo..=hi` Hz (5 Hz steps).
pub fn dominant(samples: &[f32], rate: u32, lo: u32, hi: u32) -> f32 {
    (lo..=hi)
        .step_by(5)
        .map(|f| (f as f32, goertzel_power(samples, f as f32, rate as f32)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.0, |(f, _)| f)
}

/// Seconds in 10 ms windows louder than about -30 dBFS.
pub fn loud_seconds(samples: &[f32], rate: u32) -> f32 {
    let window = (rate / 100) as usize;
    let loud = samples.chunks(window).filter(|w| rms(w) > 0.03).count();
    loud as f32 / 100.0
}

/// Where sound starts: the first 10 ms window louder than about -30 dBFS, in seconds.
pub fn onset(samples: &[f32], rate: u32) -> Option<f32> {
    let window = (rate / 100) as usize;
    samples
        .chunks(window)
        .position(|w| rms(w) > 0.03)
        .map(|i| i as f32 / 100.0)
}

/// The samples between `from` and `to` seconds.
pub fn slice(samples: &[f32], rate: u32, from: f32, to: f32) -> &[f32] {
    let start = ((from * rate as f32) as usize).min(samples.len());
    let end = ((to * rate as f32) as usize).clamp(start, samples.len());
    &samples[start..end]
}

/// Where speech (or any sound louder than about -40 dBFS) is: (start, end) in seconds, with
/// pauses shorter than `bridge` seconds (between words and sentences) inside one span.
pub fn sound_spans(samples: &[f32], rate: u32, bridge: f32) -> Vec<(f32, f32)> {
    let window = (rate / 100) as usize;
    let mut spans: Vec<(f32, f32)> = Vec::new();
    for (i, chunk) in samples.chunks(window).enumerate() {
        if rms(chunk) < 0.01 {
            continue;
        }
        let (start, end) = (i as f32 / 100.0, (i + 1) as f32 / 100.0);
        match spans.last_mut() {
            Some(last) if start - last.1 <= bridge => last.1 = end,
            _ => spans.push((start, end)),
        }
    }
    spans
}
