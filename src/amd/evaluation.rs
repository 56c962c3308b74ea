//! Runs a labelled set of recordings (tests/fixtures/amd) through the detector as a call would
//! hear them, 20 ms at a time, and scores it: accuracy, how soon it decides, whether the beep
//! is found where it ends, and the CPU it takes. The `amd` benchmark prints this; a test holds
//! the detector to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::greeting::{AmdResult, Verdict};
use super::listener::{AmdEvent, Beep, BeepKind, MachineListener};
use super::settings::AmdSettings;
use crate::media::prompt::{read_wav, to_i16};

/// A beep found this close to where it ends counts as found in time.
const BEEP_TOLERANCE_MS: i64 = 250;

/// One recording and what it is.
#[derive(Clone, Debug)]
pub struct Clip {
    pub file: PathBuf,
    pub label: AmdResult,
    /// Where its beep ends, if it has one.
    pub beep_end_ms: Option<u32>,
    pub description: String,
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// Reads `labels.csv` (file, label, beep_end_s, description) and the recordings it names.
pub fn load(dir: &Path) -> Result<Vec<Clip>, String> {
    let labels = dir.join("labels.csv");
    let mut csv =
        csv::Reader::from_path(&labels).map_err(|e| format!("{}: {e}", labels.display()))?;
    let mut clips = Vec::new();
    for (index, record) in csv.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|e| format!("{}:{line}: {e}", labels.display()))?;
        let field = |i: usize| record.get(i).unwrap_or_default().trim();
        let label = match field(1) {
            "HUMAN" => AmdResult::Human,
            "MACHINE" => AmdResult::Machine,
            other => {
                return Err(format!(
                    "{}:{line}: label {other:?} (HUMAN or MACHINE)",
                    labels.display()
                ));
            }
        };
        let beep_end_ms = match field(2) {
            "" => None,
            seconds => Some(
                seconds
                    .parse::<f64>()
                    .map(|s| (s * 1000.0).round() as u32)
                    .map_err(|_| format!("{}:{line}: beep_end_s {seconds:?}", labels.display()))?,
            ),
        };
        let file = dir.join(field(0));
        let (mono, rate) = read_wav(&file).map_err(|e| e.to_string())?;
        clips.push(Clip {
            file,
            label,
            beep_end_ms,
            description: field(3).to_owned(),
            rate,
            samples: to_i16(&mono),
        });
    }
    Ok(clips)
}

/// What the detector made of one clip.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub verdict: Option<Verdict>,
    pub beep: Option<Beep>,
    /// Time spent in the detector.
    pub cpu: Duration,
}

/// Plays `clip` into a fresh detector in 20 ms packets, then (as the call's clock would) ends
/// the wait when the recording is over.
pub fn run(settings: AmdSettings, clip: &Clip) -> Outcome {
    let started = Instant::now();
    let mut listener = MachineListener::new(settings);
    let packet = (clip.rate / 50).max(1) as usize;
    let mut events = Vec::new();
    for chunk in clip.samples.chunks(packet) {
        events.extend(listener.push(chunk, clip.rate));
        if listener.is_done() {
            break;
        }
    }
    let length_ms = (clip.samples.len() as u64 * 1000 / u64::from(clip.rate.max(1))) as u32;
    events.extend(listener.time_up(length_ms));
    let cpu = started.elapsed();
    let verdict = events.iter().find_map(|e| match e {
        AmdEvent::Verdict(v) => Some(*v),
        AmdEvent::Beep(_) => None,
    });
    let beep = events.iter().find_map(|e| match e {
        AmdEvent::Beep(b) => Some(*b),
        AmdEvent::Verdict(_) => None,
    });
    Outcome { verdict, beep, cpu }
}

/// The scores of one run over a set.
#[derive(Clone, Debug)]
pub struct Score {
    pub clips: usize,
    pub correct: usize,
    /// (label, result) for each wrong answer, with the file.
    pub wrong: Vec<(PathBuf, AmdResult, Option<AmdResult>)>,
    /// Decision times, sorted.
    pub decision_ms: Vec<u32>,
    /// Machines with a beep, and those whose beep was reported as a tone near its end.
    pub beeps: usize,
    pub beeps_found: usize,
    /// Machines without a beep, and those whose end was found in the silence after it.
    pub beepless: usize,
    pub ends_found: usize,
    /// Detector time per clip, and the audio it analysed.
    pub cpu: Duration,
    pub audio: Duration,
}

impl Score {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.clips.max(1) as f64
    }

    /// The median decision time.
    pub fn median_ms(&self) -> u32 {
        percentile(&self.decision_ms, 0.5)
    }

    pub fn p90_ms(&self) -> u32 {
        percentile(&self.decision_ms, 0.9)
    }

    /// Detector CPU per call (per clip).
    pub fn cpu_per_call(&self) -> Duration {
        self.cpu / self.clips.max(1) as u32
    }
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

/// Runs every clip with `settings` and scores the lot.
pub fn score(settings: AmdSettings, clips: &[Clip]) -> Score {
    let mut score = Score {
        clips: clips.len(),
        correct: 0,
        wrong: Vec::new(),
        decision_ms: Vec::new(),
        beeps: 0,
        beeps_found: 0,
        beepless: 0,
        ends_found: 0,
        cpu: Duration::ZERO,
        audio: Duration::ZERO,
    };
    for clip in clips {
        let outcome = run(settings, clip);
        score.cpu += outcome.cpu;
        score.audio += Duration::from_secs_f64(clip.samples.len() as f64 / f64::from(clip.rate));
        let result = outcome.verdict.map(|v| v.result);
        if result == Some(clip.label) {
            score.correct += 1;
        } else {
            score.wrong.push((clip.file.clone(), clip.label, result));
        }
        if let Some(verdict) = outcome.verdict {
            score.decision_ms.push(verdict.ms);
        }
        if clip.label != AmdResult::Machine {
            continue;
        }
        match clip.beep_end_ms {
            Some(end) => {
                score.beeps += 1;
                if outcome.beep.is_some_and(|b| {
                    b.how == BeepKind::Tone
                        && (i64::from(b.ms) - i64::from(end)).abs() <= BEEP_TOLERANCE_MS
                }) {
                    score.beeps_found += 1;
                }
            }
            None => {
                score.beepless += 1;
                if outcome.beep.is_some_and(|b| b.how == BeepKind::Silence) {
                    score.ends_found += 1;
                }
            }
        }
    }
    score.decision_ms.sort_unstable();
    score
}
