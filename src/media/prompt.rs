//! WAV prompts: decoded once, converted to each codec's rate and frames once, and shared by every
//! call that plays them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use hound::{SampleFormat, WavReader};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use thiserror::Error;

use super::codec::{Codec, CodecError};
use crate::lock::lock;

/// Why a prompt cannot be played. Each names the file.
#[derive(Debug, Error)]
pub enum PromptError {
    #[error("prompt {0}: file not found")]
    NotFound(PathBuf),
    #[error("prompt {path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("prompt {path}: not a WAV file ({reason})")]
    NotWav { path: PathBuf, reason: String },
    #[error("prompt {0}: the file is empty or truncated")]
    Truncated(PathBuf),
    #[error("prompt {path}: unsupported WAV format ({reason})")]
    Unsupported { path: PathBuf, reason: String },
    #[error("prompt {0}: the file holds no audio (0 samples)")]
    Empty(PathBuf),
    #[error("prompt {path}: cannot convert: {reason}")]
    Convert { path: PathBuf, reason: String },
}

/// Audio ready to send in one codec: 20 ms frames, plus the same audio as PCM at the codec's
/// rate (the recorder writes what was sent).
#[derive(Debug)]
pub struct EncodedAudio {
    pub codec: Codec,
    pub frames: Vec<Bytes>,
    pub pcm: Vec<i16>,
}

impl EncodedAudio {
    /// Encodes mono PCM at the codec's clock rate.
    pub fn from_pcm(codec: Codec, pcm: Vec<i16>) -> Result<Self, CodecError> {
        let frames = codec.encode_frames(&pcm)?;
        Ok(Self { codec, frames, pcm })
    }
}

/// Sample rates we convert from; outside this a header is more likely corrupt than real, and the
/// resampler's tables would grow without bound.
const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 1000..=384_000;

/// Reads a WAV file of any rate, 8/16/24/32-bit integer or 32-bit float, mono or stereo, and
/// returns it as mono samples in [-1, 1] with its rate.
pub fn read_wav(path: &Path) -> Result<(Vec<f32>, u32), PromptError> {
    let reader = WavReader::open(path).map_err(|e| open_error(path, e))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || !SUPPORTED_RATES.contains(&spec.sample_rate) {
        return Err(PromptError::Unsupported {
            path: path.into(),
            reason: format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        });
    }
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| sample_error(path, e))?,
        (SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| sample_error(path, e))?
        }
        (format, bits) => {
            return Err(PromptError::Unsupported {
                path: path.into(),
                reason: format!("{bits}-bit {format:?}"),
            });
        }
    };
    let mono: Vec<f32> = samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(PromptError::Empty(path.into()));
    }
    Ok((mono, spec.sample_rate))
}

fn open_error(path: &Path, error: hound::Error) -> PromptError {
    match error {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::NotFound => {
            PromptError::NotFound(path.into())
        }
        // hound reports running out of bytes as `Other` ("Failed to read enough bytes").
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::Other => {
            PromptError::Truncated(path.into())
        }
        hound::Error::IoError(source) => PromptError::Unreadable {
            path: path.into(),
            source,
        },
        hound::Error::FormatError(reason) => PromptError::NotWav {
            path: path.into(),
            reason: reason.into(),
        },
        other => PromptError::Unsupported {
            path: path.into(),
            reason: other.to_string(),
        },
    }
}

fn sample_error(path: &Path, error: hound::Error) -> PromptError {
    match error {
        hound::Error::IoError(_) => PromptError::Truncated(path.into()),
        other => open_error(path, other),
    }
}

fn modified(path: &Path) -> Result<SystemTime, PromptError> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PromptError::NotFound(path.into()),
            _ => PromptError::Unreadable {
                path: path.into(),
                source: e,
            },
        })
}

/// Converts mono samples from `from` Hz to `to` Hz with an FFT resampler (flat to 0.9 × Nyquist).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| e.to_string())?;
    let adapter = InterleavedSlice::new(input, 1, input.len()).map_err(|e| e.to_string())?;
    let mut output = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| e.to_string())?
        .take_data();
    // process_all rounds the length up by one sample at some ratios.
    output.truncate((input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize);
    Ok(output)
}

pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Loads `path` for `codec`, without caching.
pub fn load(path: &Path, codec: Codec) -> Result<EncodedAudio, PromptError> {
    let (mono, rate) = read_wav(path)?;
    let convert = |reason: String| PromptError::Convert {
        path: path.into(),
        reason,
    };
    let resampled = resample(&mono, rate, codec.clock_rate()).map_err(convert)?;
    EncodedAudio::from_pcm(codec, to_i16(&resampled)).map_err(|e| convert(e.to_string()))
}

/// Prompts by (file, modification time, codec): a thousand calls playing the same prompt share
/// one copy, decoded once even when they all start together, and an edited file is loaded again.
#[derive(Debug, Default)]
pub struct PromptCache {
    slots: Mutex<HashMap<(PathBuf, Codec), Arc<Slot>>>,
}

/// One (file, codec): the file's modification time when loaded, and the prompt. Its lock is
/// held while loading, so callers that want the same prompt meanwhile wait for that load.
type Slot = Mutex<Option<(SystemTime, Arc<EncodedAudio>)>>;

impl PromptCache {
    /// The prompt, loaded on first use. Blocking (file I/O, resampling, or waiting for another
    /// thread's load of the same prompt): call it off the async runtime's worker threads.
    pub fn get(&self, path: &Path, codec: Codec) -> Result<Arc<EncodedAudio>, PromptError> {
        let modified = modified(path)?;
        let slot = self.slot(path, codec);
        let mut slot = lock(&slot);
        if let Some((stamp, audio)) = &*slot
            && *stamp == modified
        {
            return Ok(audio.clone());
        }
        let audio = Arc::new(load(path, codec)?);
        *slot = Some((modified, audio.clone()));
        Ok(audio)
    }

    /// The prompt if it is cached and the file has not changed since: one `stat`, no decoding,
    /// no waiting on a load in progress; cheap enough for the calling thread.
    pub fn get_if_cached(&self, path: &Path, codec: Codec) -> Option<Arc<EncodedAudio>> {
        let modified = modified(path).ok()?;
        let slot = self.slot(path, codec);
        let slot = slot.try_lock().ok()?;
        let (stamp, audio) = slot.as_ref()?;
        (*stamp == modified).then(|| audio.clone())
    }

    /// Drops what is cached for `path` (every codec): a file that is gone for good (speech the
    /// speech cache let go) must not stay in memory. Calls playing it keep their copy.
    pub fn forget(&self, path: &Path) {
        lock(&self.slots).retain(|(cached, _), _| cached != path);
    }

    fn slot(&self, path: &Path, codec: Codec) -> Arc<Slot> {
        lock(&self.slots)
            .entry((path.to_path_buf(), codec))
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::{WavSpec, WavWriter};

    fn write_wav(path: &Path, spec: WavSpec, frames: usize) {
        let mut writer = WavWriter::create(path, spec).unwrap();
        for i in 0..frames * usize::from(spec.channels) {
            let x = ((i as f32) * 0.01).sin() * 0.5;
            match (spec.sample_format, spec.bits_per_sample) {
                (SampleFormat::Float, _) => writer.write_sample(x).unwrap(),
                (_, 8) => writer.write_sample((x * 127.0) as i8).unwrap(),
                (_, 16) => writer.write_sample((x * 32767.0) as i16).unwrap(),
                (_, bits) => writer
                    .write_sample((x * ((1 << (bits - 1)) - 1) as f32) as i32)
                    .unwrap(),
            }
        }
        writer.finalize().unwrap();
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: SampleFormat) -> WavSpec {
        WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn reads_every_supported_format() {
        let dir = tempfile::tempdir().unwrap();
        for (i, s) in [
            spec(1, 8000, 8, SampleFormat::Int),
            spec(2, 16000, 16, SampleFormat::Int),
            spec(1, 22050, 24, SampleFormat::Int),
            spec(2, 44100, 32, SampleFormat::Float),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("{i}.wav"));
            write_wav(&path, s, 800);
            let (mono, rate) = read_wav(&path).unwrap();
            assert_eq!(rate, s.sample_rate);
            assert_eq!(mono.len(), 800);
            let peak = mono.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!((0.45..0.55).contains(&peak), "{s:?}: {peak}");
        }
    }

    #[test]
    fn resampling_keeps_duration() {
        let input = vec![0.1f32; 44100];
        for to in [8000, 16000, 48000] {
            assert_eq!(resample(&input, 44100, to).unwrap().len(), to as usize);
        }
        assert!(resample(&[], 44100, 8000).unwrap().is_empty());
    }

    #[test]
    fn calls_starting_together_share_one_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        write_wav(&path, spec(1, 44100, 16, SampleFormat::Int), 44100 * 3);
        let cache = PromptCache::default();
        let loaded: Vec<Arc<EncodedAudio>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| cache.get(&path, Codec::Opus).unwrap()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(
            loaded.iter().all(|a| Arc::ptr_eq(a, &loaded[0])),
            "one decode"
        );
    }

    #[test]
    fn cache_shares_one_copy_and_reloads_edited_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        write_wav(&path, spec(1, 8000, 16, SampleFormat::Int), 1600);
        let cache = PromptCache::default();
        let a = cache.get(&path, Codec::Pcmu).unwrap();
        let b = cache.get(&path, Codec::Pcmu).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.frames.len(), 10);
        let c = cache.get(&path, Codec::Pcma).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        // A newer file is loaded again.
        write_wav(&path, spec(1, 8000, 16, SampleFormat::Int), 3200);
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(cache.get(&path, Codec::Pcmu).unwrap().frames.len(), 20);
        cache.forget(&path);
        assert!(lock(&cache.slots).is_empty(), "forgotten, every codec");
        assert!(cache.get_if_cached(&path, Codec::Pcmu).is_none());
    }
}
