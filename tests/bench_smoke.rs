//! `callbot bench` produces a sane report for a small load (performance itself is measured by
//! the benchmark, never asserted in tests).
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::time::Duration;

use common::binary::{Process, repo};
use serde_json::Value;

#[test]
fn a_small_bench_run_reports_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut command = std::process::Command::new(common::binary::binary());
    command
        .current_dir(repo(""))
        .args(["bench", "--calls", "5", "--hold-secs", "3", "--json"])
        .arg(&json);
    let mut process = Process::spawn_command(command);
    let status = process.wait(Duration::from_secs(180));
    let output = process.output();
    assert!(status.success(), "{output}");
    assert!(output.contains("calls/core"), "a table: {output}");
    let measurements: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(measurements.len(), 1);
    let m = &measurements[0];
    assert_eq!(m["peer"], "callbot");
    assert_eq!(m["calls"], 5);
    assert_eq!(m["answered"], 5, "{m}");
    assert_eq!(
        m["recordings_valid"], 5,
        "the bot's recordings are valid WAV files: {m}"
    );
    assert!(m["cores"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["rss_per_call_kib"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["loss_pct"].as_f64().unwrap() < 5.0, "{m}");
    assert!(m["setup_p99_ms"].as_f64().unwrap() > 0.0, "{m}");
}
