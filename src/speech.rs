//! `call.say(text)`: text spoken by espeak-ng into a WAV file, rendered once per (text, voice,
//! rate) and kept in a bounded cache, so that the same sentence for a thousand calls is rendered
//! once and a campaign's personal messages (one per contact) cannot fill the disk or memory.
//!
//! espeak-ng runs as a child process with arguments (never through a shell); the text, which
//! may come from a contact list, goes to its standard input, so no text can become an option.
//! A render that takes too long is killed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use thiserror::Error;

/// The longest text one `say` speaks (bytes): a paragraph, about a minute of speech.
pub const MAX_TEXT_BYTES: usize = 1000;
/// Words per minute.
pub const RATES: std::ops::RangeInclusive<u32> = 80..=450;
pub const DEFAULT_VOICE: &str = "en-us";
pub const DEFAULT_RATE: u32 = 160;
/// Rendered files kept; the least recently used goes first.
const CAPACITY: usize = 1000;
/// A render that takes longer is killed.
const RENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// What is kept of espeak-ng's error output for the message.
const MAX_ERROR_BYTES: u64 = 2048;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SpeechError {
    #[error("say: the text is empty")]
    Empty,
    #[error("say: the text is {0} bytes; at most {MAX_TEXT_BYTES}")]
    TooLong(usize),
    #[error("say: voice {0:?} is not an espeak-ng voice name (letters, digits, - _ +)")]
    Voice(String),
    #[error("say: rate {0} is not {min} to {max} words per minute", min = RATES.start(), max = RATES.end())]
    Rate(i64),
    #[error(
        "say: {0} is not installed (Debian: apt-get install espeak-ng; `make demo` and `make test` install it)"
    )]
    Missing(String),
    #[error("say: espeak-ng failed: {0}")]
    Failed(String),
    #[error("say: espeak-ng took longer than {} s and was stopped", RENDER_TIMEOUT.as_secs())]
    Timeout,
}

/// What to say, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Utterance {
    text: String,
    voice: String,
    rate: u32,
}

impl Utterance {
    /// Checks `text` (not empty, at most [`MAX_TEXT_BYTES`]), `voice` (an espeak-ng voice
    /// name such as `en-us` or `en+f3`) and `rate` (words per minute).
    pub fn new(text: &str, voice: &str, rate: i64) -> Result<Self, SpeechError> {
        if text.trim().is_empty() {
            return Err(SpeechError::Empty);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(SpeechError::TooLong(text.len()));
        }
        let voice_ok = (1..=64).contains(&voice.len())
            && !voice.starts_with(['-', '+'])
            && voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'));
        if !voice_ok {
            return Err(SpeechError::Voice(voice.to_owned()));
        }
        let rate = u32::try_from(rate)
            .ok()
            .filter(|r| RATES.contains(r))
            .ok_or(SpeechError::Rate(rate))?;
        Ok(Self {
            text: text.to_owned(),
            voice: voice.to_owned(),
            rate,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file name of its rendering: a digest, so no text ever names a file.
    fn file_name(&self) -> String {
        use md5::{Digest, Md5};
        let mut digest = Md5::new();
        for part in [
            self.voice.as_bytes(),
            &self.rate.to_le_bytes(),
            self.text.as_bytes(),
        ] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        format!("{}.wav", hex::encode(digest.finalize()))
    }
}

/// A rendering, and the files the cache let go to make room for it (whoever caches their
/// decoded audio should forget them too).
#[derive(Debug)]
pub struct Rendered {
    pub path: PathBuf,
    pub evicted: Vec<PathBuf>,
}

/// One utterance's file; its lock is held while it renders, so calls that want the same
/// sentence meanwhile wait for that render instead of starting their own.
#[derive(Debug, Default)]
struct Slot {
    last_used: AtomicU64,
    path: Mutex<Option<PathBuf>>,
}

#[derive(Debug, Default)]
struct Index {
    slots: HashMap<Utterance, Arc<Slot>>,
    uses: u64,
}

#[derive(Debug)]
struct Inner {
    program: OsString,
    capacity: usize,
    /// A private temporary folder, made on first use and removed with the cache.
    dir: OnceLock<Result<tempfile::TempDir, String>>,
    index: Mutex<Index>,
}

/// The speech renderer and its cache; cheap to clone, shared by a daemon's calls.
#[derive(Clone, Debug)]
pub struct Speech {
    inner: Arc<Inner>,
}

impl Default for Speech {
    fn default() -> Self {
        Self::with_program("espeak-ng", CAPACITY)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Speech {
    /// `program` instead of espeak-ng from the PATH, keeping at most `capacity` files.
    pub fn with_program(program: impl Into<OsString>, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                program: program.into(),
                capacity: capacity.max(1),
                dir: OnceLock::new(),
                index: Mutex::default(),
            }),
        }
    }

    /// The WAV file of `utterance`, rendered now unless cached; off the async runtime's
    /// workers.
    pub async fn render(&self, utterance: Utterance) -> Result<Rendered, SpeechError> {
        let speech = self.clone();
        tokio::task::spawn_blocking(move || speech.render_blocking(&utterance))
            .await
            .unwrap_or_else(|e| Err(SpeechError::Failed(e.to_string())))
    }

    /// [`Speech::render`] on the calling thread (blocks while espeak-ng runs).
    pub fn render_blocking(&self, utterance: &Utterance) -> Result<Rendered, SpeechError> {
        let dir = self.dir()?;
        let (slot, evicted) = self.slot(utterance);
        let mut path = lock(&slot.path);
        if let Some(done) = path.as_ref().filter(|p| p.exists()) {
            return Ok(Rendered {
                path: done.clone(),
                evicted,
            });
        }
        let target = dir.join(utterance.file_name());
        match run_espeak(&self.inner.program, utterance, &target) {
            Ok(()) => {
                *path = Some(target.clone());
                Ok(Rendered {
                    path: target,
                    evicted,
                })
            }
            Err(e) => {
                drop(path);
                let mut index = lock(&self.inner.index);
                if index
                    .slots
                    .get(utterance)
                    .is_some_and(|s| Arc::ptr_eq(s, &slot))
                {
                    index.slots.remove(utterance);
                }
                Err(e)
            }
        }
    }

    fn dir(&self) -> Result<&Path, SpeechError> {
        self.inner
            .dir
            .get_or_init(|| {
                tempfile::Builder::new()
                    .prefix("callbot-speech-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a folder for speech: {e}"))
            })
            .as_ref()
            .map(|dir| dir.path())
            .map_err(|e| SpeechError::Failed(e.clone()))
    }

    /// The slot of `utterance` (new if need be), marked as just used, and the files evicted
    /// to keep the cache within its capacity.
    fn slot(&self, utterance: &Utterance) -> (Arc<Slot>, Vec<PathBuf>) {
        let mut index = lock(&self.inner.index);
        index.uses += 1;
        let uses = index.uses;
        let slot = index.slots.entry(utterance.clone()).or_default().clone();
        slot.last_used.store(uses, Ordering::Relaxed);
        let mut evicted = Vec::new();
        while index.slots.len() > self.inner.capacity {
            // The least recently used slot that is not rendering right now.
            let oldest = index
                .slots
                .iter()
                .filter(|(_, s)| !Arc::ptr_eq(s, &slot))
                .filter_map(|(key, s)| {
                    let path = s.path.try_lock().ok()?;
                    Some((
                        s.last_used.load(Ordering::Relaxed),
                        key.clone(),
                        path.clone(),
                    ))
                })
                .min_by_key(|(used, ..)| *used);
            let Some((_, key, path)) = oldest else {
                break;
            };
            index.slots.remove(&key);
            if let Some(path) = path {
                let _ = std::fs::remove_file(&path);
                evicted.push(path);
            }
        }
        (slot, evicted)
    }
}

/// Renders `utterance` to `target`: to a temporary name first, renamed when espeak-ng
/// succeeded, so a killed or failed render never leaves a half file under the final name.
fn run_espeak(program: &OsString, utterance: &Utterance, target: &Path) -> Result<(), SpeechError> {
    let partial = target.with_extension("partial.wav");
    let mut child = Command::new(program)
        .arg("-v")
        .arg(&utterance.voice)
        .arg("-s")
        .arg(utterance.rate.to_string())
        .arg("-w")
        .arg(&partial)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                SpeechError::Missing(program.to_string_lossy().into_owned())
            }
            _ => SpeechError::Failed(e.to_string()),
        })?;
    let stderr = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = (&mut stderr).take(MAX_ERROR_BYTES).read_to_end(&mut kept);
            // Whatever is left must be read, or a chatty child blocks on a full pipe.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            String::from_utf8_lossy(&kept).trim().to_owned()
        })
    });
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits early closes the pipe; its status says why.
        let _ = stdin.write_all(utterance.text.as_bytes());
    }
    let deadline = Instant::now() + RENDER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(SpeechError::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(SpeechError::Failed(e.to_string())),
        }
    };
    let message = stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let result = match status {
        Ok(status) if status.success() && wav_has_audio(&partial) => {
            std::fs::rename(&partial, target).map_err(|e| SpeechError::Failed(e.to_string()))
        }
        Ok(status) => Err(SpeechError::Failed(if message.is_empty() {
            format!("{status}, no audio")
        } else {
            crate::untrusted::escaped(&message).to_string()
        })),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&partial);
    result
}

fn wav_has_audio(path: &Path) -> bool {
    hound::WavReader::open(path).is_ok_and(|r| r.duration() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn espeak_present() -> bool {
        Command::new("espeak-ng")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn bad_text_voices_and_rates_are_refused() {
        assert_eq!(Utterance::new("  ", "en", 160), Err(SpeechError::Empty));
        assert!(matches!(
            Utterance::new(&"a".repeat(MAX_TEXT_BYTES + 1), "en", 160),
            Err(SpeechError::TooLong(_))
        ));
        for voice in ["", "-w", "en us", "../x", "en;rm"] {
            assert!(
                matches!(Utterance::new("hi", voice, 160), Err(SpeechError::Voice(_))),
                "{voice:?}"
            );
        }
        assert_eq!(Utterance::new("hi", "en", 5), Err(SpeechError::Rate(5)));
        assert!(Utterance::new("hi", "en-us+f3", 200).is_ok());
    }

    #[test]
    fn a_missing_program_says_so() {
        let speech = Speech::with_program("/nonexistent/espeak-ng", 10);
        let error = speech
            .render_blocking(&Utterance::new("hello", "en", 160).unwrap())
            .unwrap_err();
        assert!(matches!(error, SpeechError::Missing(_)), "{error}");
        assert!(error.to_string().contains("apt-get install espeak-ng"));
    }

    #[test]
    fn renders_once_and_keeps_at_most_its_capacity() {
        assert!(
            espeak_present(),
            "espeak-ng is missing: `make test` installs it"
        );
        let speech = Speech::with_program("espeak-ng", 2);
        let hello = Utterance::new("Hello Ann, -v --help", "en", 160).unwrap();
        let first = speech.render_blocking(&hello).unwrap();
        let modified = std::fs::metadata(&first.path).unwrap().modified().unwrap();
        let again = speech.render_blocking(&hello).unwrap();
        assert_eq!(first.path, again.path);
        assert_eq!(
            std::fs::metadata(&again.path).unwrap().modified().unwrap(),
            modified,
            "rendered once"
        );
        let (mono, rate) = crate::media::prompt::read_wav(&first.path).unwrap();
        assert!(
            mono.len() as f32 / rate as f32 > 0.5,
            "speech, not an error"
        );
        let second = speech
            .render_blocking(&Utterance::new("Bye", "en", 160).unwrap())
            .unwrap();
        assert!(second.evicted.is_empty());
        let third = speech
            .render_blocking(&Utterance::new("Bye", "en", 200).unwrap())
            .unwrap();
        assert_eq!(third.evicted, vec![first.path.clone()], "the oldest goes");
        assert!(!first.path.exists());
    }
}
