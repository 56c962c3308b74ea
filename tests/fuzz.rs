//! A mutation fuzzer for the frame decoders and the config loader that runs on stable Rust.
//!
//! It starts from a seed corpus (sample frames of docs/protocol.md §4–§5, the example frames of
//! `tests/fixtures/wire/` and the config fixtures), mutates inputs byte- and token-wise, and
//! feeds them to the same targets as the property tests (`common::exercise_*`). A panic is
//! caught, the input is saved to `target/fuzz-crashes/`, and the run fails at the end.
//!
//! CI runs a short smoke pass. For a long run:
//!
//! ```text
//! FUZZ_ITERATIONS=10000000 FUZZ_SEED=7 cargo test --release --test fuzz -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use common::mutate::{Mutator, Tally, env_number, guarded};
use common::{FRAME_WORDS, exercise_config, exercise_frame, fixture_dir};

const FRAME_SEEDS: &[&str] = &[
    r#"{"action":"avoid-disconnect"}"#,
    r#"{"action":"own-calls","subscribe":true}"#,
    r#"{"action":"blf","add":["500","501"]}"#,
    r#"{"action":"sip-register","useragent":"callbot"}"#,
    r#"{"action":"sdp-packet","to":"500","callid":"0123456789abcdef0123456789abcdef","sdp":{"type":"offer","sdp":"v=0\r\n"}}"#,
    r#"{"action":"sip-ringing","callid":"c1","cseq":"12"}"#,
    r#"{"action":"sdp-200ok","callid":"c1","cseq":12,"sdp":{"type":"answer","sdp":"v=0"}}"#,
    r#"{"action":"sip-busy","callid":"c1","cseq":3,"code":603}"#,
    r#"{"action":"ice-candidate","callid":"c1","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    r#"{"action":"sip-bye","callid":"c1","caller":"true"}"#,
    r#"{"action":"wrtc-hold","callid":"c1","holdcmd":"sendonly"}"#,
    r#"{"action":"blind-transfer2","id":"c1","from":"500","to":"700"}"#,
    r#"{"action":"att-transfer","id":"c1","from":"500","id2":"c2","to":"700"}"#,
    r#"{"action":"rec-call","id":"c1","startstop":"on"}"#,
    r#"{"sdp":"v=0","callid":"c1","cseq":"2","code":183,"reason":"Session Progress"}"#,
    r#"{"invitesdp":{"type":"offer","sdp":"v=0"},"callid":"c2","cseq":1,"from":"501","to":"500","from-user":"501","from-display":"Ann"}"#,
    r#"{"candidate":"candidate:1 1 udp 2130706431 10.0.0.1 9 typ host","callid":"c1","adr":[["127.0.0.1",5000]]}"#,
    r#"{"bye":"true","callid":"c1","cseq":3,"code":415}"#,
    r#"{"cancel":"true","callid":"c1","cseq":"4"}"#,
    r#"{"action":"call-state","calls":[{"id":"c1","state":"connected","from-number":"501","start":1700000000}]}"#,
    r#"{"action":"user-state","account":"501","registered":"true","dnd":false}"#,
    r#"{"action":"domain-state","accounts":[{"account":"500","registered":true}]}"#,
    r#"{"action":"sip-register","add":true,"expires":120}"#,
    r#"{"action":"callerid","callid":"c1","name":"Ann","number":"501"}"#,
];

/// Frame seeds: the samples above and every example frame of the wire conformance fixtures
/// (the vendor's page and the protocol document).
fn frame_seeds() -> Vec<Vec<u8>> {
    let wire = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let examples = ["vendor.json", "protocol.json"]
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(wire.join(file)).expect("wire fixtures");
            let fixtures: serde_json::Value = serde_json::from_str(&text).expect("wire fixtures");
            fixtures["frames"]
                .as_array()
                .expect("a list of frames")
                .iter()
                .flat_map(|f| [&f["frame"], &f["wire"]])
                .filter(|frame| !frame.is_null())
                .map(|frame| frame.to_string().into_bytes())
                .collect::<Vec<_>>()
        });
    FRAME_SEEDS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain(examples)
        .collect()
}

/// Config seeds: every fixture, plus the example config.
fn config_seeds() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("bots.example.yaml"));
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("seed config"))
        .collect()
}

const CONFIG_WORDS: &[&str] = &[
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "${",
    "${SET}",
    "${UNSET}",
    "$${",
    "*",
    "?",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "|\n",
    "~",
    "bots:",
    "pbx:",
    "allow_dial: [",
    "extension: ",
    "script: bot.rhai",
    "prompts: prompts",
    "record: ",
];

/// Runs `iterations` mutated inputs; returns the number of inputs that panicked.
fn fuzz(iterations: u64, seed: u64) -> usize {
    let frames = frame_seeds();
    let configs: Vec<Vec<u8>> = config_seeds().into_iter().map(String::into_bytes).collect();
    let mut mutator = Mutator::new(StdRng::seed_from_u64(seed));
    let mut tally = Tally::new("frames+config");
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..iterations {
        let config_round = i % 4 == 3;
        let (corpus, words) = if config_round {
            (&configs, CONFIG_WORDS)
        } else {
            (&frames, FRAME_WORDS.as_slice())
        };
        let input = &corpus[mutator.rng.random_range(0..corpus.len())];
        let mutated = mutator.mutate(input, corpus, words);
        let text = String::from_utf8_lossy(&mutated);
        let target = if config_round { "config" } else { "frame" };
        tally.add(guarded(target, seed, i, &mutated, || {
            if config_round {
                exercise_config(&text, fixture_dir())
            } else {
                exercise_frame(&text)
            }
        }));
    }
    let _ = std::panic::take_hook();
    tally.finish()
}

#[test]
fn smoke_run_finds_no_panics() {
    assert_eq!(fuzz(20_000, 1), 0);
}

#[test]
#[ignore = "long run: FUZZ_ITERATIONS=10000000 cargo test --release --test fuzz -- --ignored"]
fn long_run_finds_no_panics() {
    let iterations = env_number("FUZZ_ITERATIONS", 1_000_000);
    let seed = env_number("FUZZ_SEED", 7);
    assert_eq!(fuzz(iterations, seed), 0);
}
