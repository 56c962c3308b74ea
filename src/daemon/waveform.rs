//! A recording's waveform for the dashboard: per channel, the lowest and highest sample of
//! each of `buckets` equal slices, read in one streaming pass (a long recording is never held
//! in memory).

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Waveform {
    pub sample_rate: u32,
    pub channels: u16,
    pub seconds: f64,
    /// `peaks[channel][bucket] = [min, max]`, samples scaled to -1 … 1.
    pub peaks: Vec<Vec<[f32; 2]>>,
}

/// The waveform of the 16-bit WAV file at `path`.
pub fn peaks(path: &Path, buckets: usize) -> Result<Waveform, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("not a WAV file: {e}"))?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err("only 16-bit WAV files are drawn".into());
    }
    let channels = usize::from(spec.channels.max(1));
    let frames = reader.duration() as usize;
    let buckets = buckets.clamp(1, frames.max(1));
    let mut peaks = vec![vec![[0.0f32, 0.0f32]; buckets]; channels];
    for (index, sample) in reader.into_samples::<i16>().enumerate() {
        // A file cut short (a killed daemon's last second) still draws what it has.
        let Ok(sample) = sample else { break };
        let frame = index / channels;
        let bucket = (frame * buckets / frames.max(1)).min(buckets - 1);
        let value = f32::from(sample) / 32768.0;
        let peak = &mut peaks[index % channels][bucket];
        peak[0] = peak[0].min(value);
        peak[1] = peak[1].max(value);
    }
    Ok(Waveform {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        seconds: frames as f64 / f64::from(spec.sample_rate.max(1)),
        peaks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_then_a_tone_on_the_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..16000 {
            let left = if i >= 8000 {
                16384 * if i % 2 == 0 { 1 } else { -1 }
            } else {
                0
            };
            writer.write_sample(left as i16).unwrap();
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
        let waveform = peaks(&path, 4).unwrap();
        assert_eq!(waveform.channels, 2);
        assert!((waveform.seconds - 2.0).abs() < 1e-9);
        assert_eq!(waveform.peaks[0][0], [0.0, 0.0]);
        assert_eq!(waveform.peaks[0][3], [-0.5, 0.5]);
        assert_eq!(waveform.peaks[1][3], [0.0, 0.0]);
        assert!(peaks(&dir.path().join("none.wav"), 4).is_err());
    }
}
