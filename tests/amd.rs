//! Answering-machine detection held to the labelled recordings of tests/fixtures/amd (people
//! and machines of our own making, with and without beeps, some over noise): what the `amd`
//! benchmark measures, as a floor that a change to the detector must not break.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

use std::path::Path;

use callbot::amd::{AmdSettings, evaluation};

#[test]
fn the_labelled_set_is_told_apart_quickly_and_every_beep_is_found() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amd");
    let clips = evaluation::load(&dir).unwrap();
    assert!(clips.len() >= 40, "{} clips", clips.len());
    let score = evaluation::score(AmdSettings::default(), &clips);
    assert!(
        score.accuracy() >= 0.95,
        "accuracy {:.3}; wrong: {:?}",
        score.accuracy(),
        score.wrong
    );
    assert!(
        score.median_ms() <= 2500,
        "decision median {} ms (in the audio's own time)",
        score.median_ms()
    );
    assert_eq!(score.beeps_found, score.beeps, "beeps found where they end");
    assert_eq!(
        score.ends_found, score.beepless,
        "greetings without a beep end in silence"
    );
}

#[test]
fn labels_that_are_not_human_or_machine_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("labels.csv"),
        "file,label,beep_end_s,description\nx.wav,ROBOT,,\n",
    )
    .unwrap();
    let error = evaluation::load(dir.path()).unwrap_err();
    assert!(
        error.contains("labels.csv:2") && error.contains("ROBOT"),
        "{error}"
    );
}
