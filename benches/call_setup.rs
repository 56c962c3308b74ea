//! Bot runtime benchmark: N sequential calls to a bot of `callbot run` (its own process) through
//! `callbot pbx`; the bot answers and plays a prompt. Reports, from the bot's call records,
//! call setup (offer received → answer sent) and the first prompt packet after media is up,
//! and, from the caller, dial → answered.
//!
//! `cargo bench --bench call_setup -- [CALLS] [--dialect modern|legacy]` (default 100, modern).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callbot::bench::report::percentile;
use callbot::call::{Action, CallCommand};
use callbot::protocol::CallState;
use serde_json::Value;
use support::{ADMIN_PASSWORD, Args, emulator, loopback_media, phone, spawn};

const SCRIPT: &str =
    "fn on_incoming_call(call) {\n    call.answer();\n    call.play(\"welcome.wav\");\n}\n";

fn main() {
    let args = Args::parse();
    let calls = args.sizes.first().copied().unwrap_or(100);
    let dialect = args.get("dialect").unwrap_or("modern").to_owned();
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(run(calls, &dialect));
}

async fn run(calls: usize, dialect: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("pbx.pem");
    let (_emulator, url) = emulator(&["--dialect", dialect], &cert);
    std::fs::write(dir.path().join("answer.rhai"), SCRIPT).expect("script");
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts");
    let config = format!(
        "pbx: {{ url: \"{url}\", domain: localhost, tls: {{ ca_file: \"{cert}\" }}, \
         admin: {{ user: admin, password: \"${{PBX_ADMIN_PASSWORD}}\" }} }}\n\
         defaults: {{ prompts: \"{prompts}\", recordings: \"{rec}\" }}\n\
         media: {{ addresses: [127.0.0.1] }}\n\
         bots:\n  - {{ name: answer, extension: \"500\", script: answer.rhai, max_calls: 5 }}\n",
        cert = cert.display(),
        rec = dir.path().join("recordings").display(),
    );
    let config_path = dir.path().join("bots.yaml");
    std::fs::write(&config_path, config).expect("config");
    let daemon = spawn(
        &["run", "-c", &config_path.display().to_string()],
        &[
            ("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RUST_LOG", "error"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let media = loopback_media();
    let caller = phone(&url, "502", &media).await;
    let mut answered = Vec::new();
    for _ in 0..calls {
        let started = Instant::now();
        let mut call = caller.dial("500");
        if call.reach(CallState::InCall).await.is_err() {
            eprintln!("a call was not answered");
            continue;
        }
        answered.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        call.command(CallCommand::Stop);
        call.command(CallCommand::Queue(Action::Hangup));
        let _ = tokio::time::timeout(Duration::from_secs(10), call.ended()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(daemon);
    let cdr = std::fs::read_to_string(dir.path().join("recordings/cdr.jsonl")).unwrap_or_default();
    let records: Vec<Value> = cdr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let column =
        |key: &str| -> Vec<f64> { records.iter().filter_map(|r| r[key].as_f64()).collect() };
    let (mut setup, mut first_audio) = (column("setup_ms"), column("first_audio_ms"));
    let mut connect = column("connect_ms");
    println!(
        "call_setup: {} sequential calls to a bot through the emulator ({dialect})",
        records.len()
    );
    println!("{:<44} {:>9} {:>9}", "", "p50", "p99");
    for (name, values) in [
        ("bot: offer received -> answer sent", &mut setup),
        ("bot: leg created -> media connected", &mut connect),
        (
            "bot: media connected -> first prompt packet",
            &mut first_audio,
        ),
        ("caller: dial -> answered (IN_CALL)", &mut answered),
    ] {
        println!(
            "{name:<44} {:>7.2}ms {:>7.2}ms",
            percentile(values, 50.0),
            percentile(values, 99.0)
        );
    }
}
