//! Answering-machine detection on the labelled recordings of tests/fixtures/amd: accuracy,
//! decision time (median and p90, in the audio's own time), the beep found where it ends, and
//! the detector's CPU per call, for Asterisk's defaults and for ours.
//!
//! `cargo bench --bench amd` prints the table kept in BENCHMARKS.md;
//! `cargo bench --bench amd -- --sweep` also tries the word parameters around the defaults
//! (how the defaults were tuned) and `-- --clips` lists each clip's verdict.

use std::path::Path;
use std::time::Duration;

use callbot::amd::evaluation::{self, Clip, Score};
use callbot::amd::{ASTERISK, AmdSettings};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amd");
    let clips = evaluation::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let humans = clips
        .iter()
        .filter(|c| c.label == callbot::amd::AmdResult::Human)
        .count();
    println!(
        "{} recordings ({humans} people, {} machines), {:.0} s of audio\n",
        clips.len(),
        clips.len() - humans,
        clips
            .iter()
            .map(|c| c.samples.len() as f64 / f64::from(c.rate))
            .sum::<f64>()
    );
    println!(
        "| settings | accuracy | wrong | decision p50 | p90 | beeps found | ends without beep | CPU per call | CPU per audio second |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let quick = AmdSettings {
        greeting_ms: 1000,
        after_greeting_silence_ms: 600,
        ..ASTERISK
    };
    for (name, settings) in [
        ("defaults (Asterisk's)", AmdSettings::default()),
        ("greeting 1000, after-greeting silence 600", quick),
    ] {
        // Once to warm caches and the allocator, then the measured run.
        evaluation::score(settings, &clips);
        row(name, &evaluation::score(settings, &clips));
    }
    if args.iter().any(|a| a == "--clips") {
        clip_table(&clips);
    }
    if args.iter().any(|a| a == "--sweep") {
        sweep(&clips);
    }
}

fn row(name: &str, score: &Score) {
    let audio_seconds = score.audio.as_secs_f64().max(f64::EPSILON);
    println!(
        "| {name} | {:.1} % ({}/{}) | {} | {} ms | {} ms | {}/{} | {}/{} | {:.2} ms | {:.3} ms |",
        score.accuracy() * 100.0,
        score.correct,
        score.clips,
        score
            .wrong
            .iter()
            .map(|(file, label, got)| format!(
                "{} ({} → {})",
                file.file_name().unwrap_or_default().to_string_lossy(),
                label.as_str(),
                got.map_or("none", |r| r.as_str())
            ))
            .collect::<Vec<_>>()
            .join(", "),
        score.median_ms(),
        score.p90_ms(),
        score.beeps_found,
        score.beeps,
        score.ends_found,
        score.beepless,
        millis(score.cpu_per_call()),
        millis(score.cpu) / audio_seconds,
    );
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn clip_table(clips: &[Clip]) {
    println!("\n| clip | label | verdict | reason | ms | beep | description |");
    println!("|---|---|---|---|---|---|---|");
    for clip in clips {
        let outcome = evaluation::run(AmdSettings::default(), clip);
        let (result, reason, ms) = outcome.verdict.map_or(("-", "-", 0), |v| {
            (v.result.as_str(), v.reason.as_str(), v.ms)
        });
        let beep = outcome.beep.map_or("-".to_owned(), |b| {
            format!("{} at {} ms", b.how.as_str(), b.ms)
        });
        println!(
            "| {} | {} | {result} | {reason} | {ms} | {beep} (labelled {}) | {} |",
            clip.file.file_name().unwrap_or_default().to_string_lossy(),
            clip.label.as_str(),
            clip.beep_end_ms
                .map_or("-".to_owned(), |ms| format!("{ms} ms")),
            clip.description
        );
    }
}

/// The word, greeting and threshold parameters around the defaults (729 combinations):
/// accuracy, then decision time; the best fifteen.
fn sweep(clips: &[Clip]) {
    let mut results = Vec::new();
    for min_word_ms in [100, 150, 200] {
        for between_words_ms in [50, 100, 150] {
            for max_words in [3, 4, 5] {
                for greeting_ms in [1000, 1500, 2000] {
                    for after_greeting_silence_ms in [600, 800, 1000] {
                        for voice_threshold in [0.3, 0.5, 0.7] {
                            let settings = AmdSettings {
                                min_word_ms,
                                between_words_ms,
                                max_words,
                                greeting_ms,
                                after_greeting_silence_ms,
                                voice_threshold,
                                ..AmdSettings::default()
                            };
                            let score = evaluation::score(settings, clips);
                            results.push((score.correct, score.median_ms(), settings));
                        }
                    }
                }
            }
        }
    }
    results.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let perfect = results.iter().filter(|r| r.0 == clips.len()).count();
    println!(
        "\n{perfect} of {} combinations get every clip right; the fastest:",
        results.len()
    );
    println!(
        "\n| correct | median | min_word | between_words | max_words | greeting | after_greeting | threshold |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (correct, median, s) in results.iter().take(15) {
        println!(
            "| {correct}/{} | {median} ms | {} | {} | {} | {} | {} | {} |",
            clips.len(),
            s.min_word_ms,
            s.between_words_ms,
            s.max_words,
            s.greeting_ms,
            s.after_greeting_silence_ms,
            s.voice_threshold
        );
    }
}
