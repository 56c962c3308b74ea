//! Turning what the callers saw and what the peer cost into the numbers of BENCHMARKS.md.

use std::path::Path;

use serde::Serialize;

use super::load::Window;
use super::target::Peer;
use crate::media::stats::GapHistogram;

/// Limits of a passing load (`--ramp` stops at the first size that breaks one).
pub const MAX_LOSS_PCT: f64 = 0.5;
pub const MAX_JITTER_P99_MS: f64 = 5.0;
pub const MAX_SETUP_P99_MS: f64 = 100.0;

/// One run of one peer at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub peer: &'static str,
    pub calls: usize,
    pub answered: usize,
    /// Cores the peer used while the calls were held.
    pub cores: f64,
    pub cpu_per_call_pct: f64,
    pub calls_per_core: f64,
    pub rss_per_call_kib: f64,
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    /// Dial → the caller's media connected (ICE and DTLS done).
    pub media_up_p50_ms: f64,
    pub media_up_p99_ms: f64,
    /// Arrival gap minus 20 ms, at the callers.
    pub jitter_p50_ms: f64,
    pub jitter_p99_ms: f64,
    pub loss_pct: f64,
    /// Answer → first audible packet at the caller.
    pub first_audio_p50_ms: f64,
    pub first_audio_p99_ms: f64,
    /// Recordings the peer left that a WAV reader opens and that hold audio, and how many
    /// were expected (`None`: the peer does not record).
    pub recordings_valid: Option<usize>,
    pub recordings_expected: Option<usize>,
    pub placed_cps: f64,
    /// Over the hold, after a warm-up of a tenth of it: RSS, threads and open files at the
    /// first and the last sample (a soak shows whether they grow).
    pub soak: Soak,
}

/// First and last readings of the peer after warm-up.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Soak {
    pub seconds: f64,
    pub rss_first_kib: u64,
    pub rss_last_kib: u64,
    pub rss_change_pct: f64,
    pub threads_first: u64,
    pub threads_last: u64,
    pub open_files_first: u64,
    pub open_files_last: u64,
}

impl Soak {
    fn from_samples(samples: &[(f64, crate::procstat::Usage)]) -> Self {
        let total = samples.last().map_or(0.0, |(t, _)| *t);
        let warm = samples
            .iter()
            .find(|(t, _)| *t >= total / 10.0)
            .or(samples.first());
        let (Some((t0, first)), Some((t1, last))) = (warm, samples.last()) else {
            return Self::default();
        };
        Self {
            seconds: t1 - t0,
            rss_first_kib: first.rss_kib,
            rss_last_kib: last.rss_kib,
            rss_change_pct: (last.rss_kib as f64 - first.rss_kib as f64) * 100.0
                / first.rss_kib.max(1) as f64,
            threads_first: first.threads,
            threads_last: last.threads,
            open_files_first: first.open_files,
            open_files_last: last.open_files,
        }
    }

    /// A line for the report.
    pub fn describe(&self) -> String {
        format!(
            "over {:.0} s after warm-up: RSS {} → {} KiB ({:+.1} %), threads {} → {}, open files {} → {}",
            self.seconds,
            self.rss_first_kib,
            self.rss_last_kib,
            self.rss_change_pct,
            self.threads_first,
            self.threads_last,
            self.open_files_first,
            self.open_files_last
        )
    }
}

/// A quantile of the arrival gaps in ms; NaN when no packet arrived (the histogram caps at
/// 25 ms, so 25 means "25 or more").
fn jitter(arrival: &GapHistogram, quantile: f64) -> f64 {
    if arrival.count() == 0 {
        return f64::NAN;
    }
    arrival.quantile(quantile).as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0–100) of `values`, which it sorts (nearest rank).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Recordings in `folder` (any depth) that open as WAV and hold samples.
pub fn valid_recordings(folder: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "wav")
                && hound::WavReader::open(&path).is_ok_and(|r| r.duration() > 0)
            {
                count += 1;
            }
        }
    }
    count
}

impl Measurement {
    pub fn new(peer: Peer, window: &Window, recordings: Option<&Path>) -> Self {
        let calls = window.placed;
        let answered = window.results.iter().filter(|r| r.setup.is_some()).count();
        let cpu = window
            .end
            .cpu
            .saturating_sub(window.start.cpu)
            .as_secs_f64();
        let cores = cpu / window.seconds.max(0.001);
        let per_call = answered.max(1) as f64;
        let rss = window
            .end
            .rss_kib
            .saturating_sub(window.before_calls.rss_kib) as f64;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let mut setup: Vec<f64> = window
            .results
            .iter()
            .filter_map(|r| r.setup.map(ms))
            .collect();
        let mut media_up: Vec<f64> = window
            .results
            .iter()
            .filter_map(|r| r.stats.connect_time.map(ms))
            .collect();
        let mut first_audio: Vec<f64> = window
            .results
            .iter()
            .filter_map(|r| r.stats.first_audio_received.map(ms))
            .collect();
        let mut arrival = GapHistogram::default();
        let (mut received, mut lost) = (0u64, 0u64);
        for result in &window.results {
            arrival.merge(&result.stats.arrival);
            received += result.stats.packets_received;
            lost += result.stats.packets_lost;
        }
        Self {
            peer: peer.name(),
            calls,
            answered,
            cores,
            cpu_per_call_pct: cores * 100.0 / per_call,
            calls_per_core: if cores > 0.0 {
                answered as f64 / cores
            } else {
                f64::NAN
            },
            rss_per_call_kib: rss / per_call,
            setup_p50_ms: percentile(&mut setup, 50.0),
            setup_p99_ms: percentile(&mut setup, 99.0),
            media_up_p50_ms: percentile(&mut media_up, 50.0),
            media_up_p99_ms: percentile(&mut media_up, 99.0),
            jitter_p50_ms: jitter(&arrival, 0.5),
            jitter_p99_ms: jitter(&arrival, 0.99),
            loss_pct: lost as f64 * 100.0 / (received + lost).max(1) as f64,
            first_audio_p50_ms: percentile(&mut first_audio, 50.0),
            first_audio_p99_ms: percentile(&mut first_audio, 99.0),
            recordings_valid: recordings.map(valid_recordings),
            recordings_expected: recordings.map(|_| answered),
            placed_cps: window.placed_cps,
            soak: Soak::from_samples(&window.samples),
        }
    }

    /// Within the limits of a passing load.
    pub fn passes(&self) -> bool {
        self.answered == self.calls
            && self.loss_pct <= MAX_LOSS_PCT
            && self.jitter_p99_ms <= MAX_JITTER_P99_MS
            && self.setup_p99_ms <= MAX_SETUP_P99_MS
    }
}

const COLUMNS: [&str; 14] = [
    "peer",
    "calls",
    "answered",
    "cores",
    "CPU/call %",
    "calls/core",
    "RSS/call KiB",
    "setup p50/p99 ms",
    "media up p50/p99 ms",
    "jitter p50/p99 ms",
    "loss %",
    "1st audio p50/p99 ms",
    "recordings",
    "cps",
];

fn cells(m: &Measurement) -> [String; 14] {
    let recordings = match (m.recordings_valid, m.recordings_expected) {
        (Some(valid), Some(expected)) => format!("{valid}/{expected}"),
        _ => "-".into(),
    };
    [
        m.peer.to_owned(),
        m.calls.to_string(),
        m.answered.to_string(),
        format!("{:.2}", m.cores),
        format!("{:.2}", m.cpu_per_call_pct),
        format!("{:.0}", m.calls_per_core),
        format!("{:.0}", m.rss_per_call_kib),
        format!("{:.1}/{:.1}", m.setup_p50_ms, m.setup_p99_ms),
        format!("{:.1}/{:.1}", m.media_up_p50_ms, m.media_up_p99_ms),
        format!("{:.1}/{:.1}", m.jitter_p50_ms, m.jitter_p99_ms),
        format!("{:.2}", m.loss_pct),
        format!("{:.0}/{:.0}", m.first_audio_p50_ms, m.first_audio_p99_ms),
        recordings,
        format!("{:.1}", m.placed_cps),
    ]
}

/// Each plain-text column's width (the first is left-aligned, the rest right-aligned).
const WIDTHS: [usize; 14] = [9, 6, 8, 6, 10, 10, 12, 17, 20, 17, 7, 20, 10, 6];

/// One line of the plain-text table.
fn line<S: AsRef<str>>(cells: &[S]) -> String {
    cells
        .iter()
        .zip(WIDTHS)
        .enumerate()
        .map(|(i, (cell, width))| match i {
            0 => format!("{:<width$}", cell.as_ref()),
            _ => format!("{:>width$}", cell.as_ref()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plain-text table header.
pub fn header() -> String {
    line(&COLUMNS)
}

/// A plain-text table row.
pub fn row(m: &Measurement) -> String {
    line(&cells(m))
}

/// The same as a Markdown table.
pub fn markdown(measurements: &[Measurement]) -> String {
    let mut text = format!(
        "| {} |\n|{}\n",
        COLUMNS.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for m in measurements {
        text.push_str(&format!("| {} |\n", cells(m).join(" | ")));
    }
    text
}

/// Each peer against callbot at the same size: how many times better callbot does.
pub fn ratios(measurements: &[Measurement]) -> Vec<String> {
    let mut lines = Vec::new();
    for ours in measurements.iter().filter(|m| m.peer == "callbot") {
        for other in measurements
            .iter()
            .filter(|m| m.peer != "callbot" && m.calls == ours.calls)
        {
            lines.push(format!(
                "{} calls: callbot vs {}: {:.1}× calls per core, {:.1}× less RSS per call, \
                 p99 jitter {:.1} vs {:.1} ms, setup p99 {:.1} vs {:.1} ms",
                ours.calls,
                other.peer,
                ours.calls_per_core / other.calls_per_core,
                other.rss_per_call_kib / ours.rss_per_call_kib.max(1.0),
                ours.jitter_p99_ms,
                other.jitter_p99_ms,
                ours.setup_p99_ms,
                other.setup_p99_ms,
            ));
        }
    }
    lines
}
