//! Waiting for what a test means — a state, a file, a packet count, an emulator event — with
//! a deadline, instead of sleeping for a guess.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// How often a condition is looked at again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every [`POLL`] until it gives `Some`; panics naming `what` after `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what} in vain"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The emulator's call whose legs satisfy `leg`, once one does (`/emulator/calls` is
/// published about once a second).
pub async fn emulator_leg(
    base: &str,
    what: &str,
    within: Duration,
    leg: impl Fn(&Value) -> bool,
) -> Value {
    until(what, within, || async {
        let calls: Value = super::emulator_json(base, "calls").await;
        calls
            .as_array()?
            .iter()
            .find(|c| c["legs"].as_array().is_some_and(|l| l.iter().any(&leg)))
            .cloned()
    })
    .await
}

/// A WAV file's length in seconds as its header says, once it is at least `seconds` long (the
/// recorder rewrites the header about once a second).
pub async fn wav_reaches(path: &Path, seconds: f32, within: Duration) -> f32 {
    until(
        &format!("{} to hold {seconds} s", path.display()),
        within,
        || async { wav_header_seconds(path).filter(|held| *held >= seconds) },
    )
    .await
}

/// A WAV file's length in seconds as its header says; `None` while it is not a WAV yet.
pub fn wav_header_seconds(path: &Path) -> Option<f32> {
    let reader = hound::WavReader::open(path).ok()?;
    Some(reader.duration() as f32 / reader.spec().sample_rate as f32)
}

/// Seconds from `start` until now: where this moment falls in a recording started at `start`
/// (the recorder's timeline follows the media clock, so its positions are wall-clock time).
pub fn seconds_since(start: Instant) -> f32 {
    start.elapsed().as_secs_f32()
}

/// Seconds of a WAV file (a prompt's length).
pub fn wav_seconds(path: &Path) -> f32 {
    let reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable WAV: {e}", path.display()));
    reader.duration() as f32 / reader.spec().sample_rate as f32
}
