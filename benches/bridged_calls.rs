//! Emulator benchmark: N calls bridged by `callbot pbx --media anchored` (its own process), each
//! direction carrying a continuous tone, so the emulator receives, forwards and sends 50
//! packets/s per leg. Reports the emulator's CPU and RSS per bridged call, and call setup time.
//!
//! `cargo bench --bench bridged_calls -- [CALLS…] [--secs S] [--dialect modern|legacy]`
//! (default: 100 calls, 10 s, modern). The phones at both ends run in the bench process.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use callbot::bench::report::percentile;
use callbot::call::{Action, CallCommand};
use callbot::phone::PhoneCall;
use callbot::procstat::usage;
use callbot::protocol::CallState;
use support::{Args, emulator, loopback_media, phone, write_tone};

/// Calls set up at once.
const BATCH: usize = 10;

/// Plays `prompt` (a one-second tone) until the call ends.
fn tone(prompt: &Path) -> CallCommand {
    CallCommand::Queue(Action::Play {
        prompt: prompt.to_owned(),
        loops: 100_000,
        for_gather: false,
    })
}

fn main() {
    let args = Args::parse();
    let sizes = if args.sizes.is_empty() {
        vec![100]
    } else {
        args.sizes.clone()
    };
    let secs = args.number("secs", 10);
    let dialect = args.get("dialect").unwrap_or("modern").to_owned();
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    println!("bridged_calls: emulator in anchored mode ({dialect}), {secs} s measured per size");
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>14} {:>12} {:>10} {:>10} {:>12}",
        "calls",
        "legs",
        "emu cores",
        "CPU/call %",
        "RSS/call KiB",
        "phones cores",
        "setup p50",
        "setup p99",
        "pkts/s/leg"
    );
    for calls in sizes {
        runtime.block_on(run(calls, secs, &dialect));
    }
}

async fn run(calls: usize, secs: u64, dialect: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (emu, url) = emulator(&["--dialect", dialect], &dir.path().join("pbx.pem"));
    let pid = emu.pid();
    let media = loopback_media();
    let (low, high) = (dir.path().join("440.wav"), dir.path().join("1000.wav"));
    write_tone(&low, 440.0, 1000);
    write_tone(&high, 1000.0, 1000);
    let caller = phone(&url, "502", &media).await;
    let mut callee = phone(&url, "503", &media).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = usage(Some(pid)).expect("emulator alive");

    let answering = tokio::spawn(async move {
        let mut answered = Vec::new();
        while let Some(call) = callee.incoming().await {
            call.command(CallCommand::Answer);
            call.command(tone(&low));
            answered.push(call);
        }
        answered
    });
    let mut live: Vec<PhoneCall> = Vec::new();
    let mut setup = Vec::new();
    for batch in (0..calls).collect::<Vec<_>>().chunks(BATCH) {
        let mut pending: Vec<(PhoneCall, Instant)> = batch
            .iter()
            .map(|_| (caller.dial("503"), Instant::now()))
            .collect();
        for (mut call, started) in pending.drain(..) {
            match tokio::time::timeout(Duration::from_secs(30), call.reach(CallState::InCall)).await
            {
                Ok(Ok(_)) => {
                    setup.push(started.elapsed().as_secs_f64() * 1000.0);
                    call.command(tone(&high));
                    live.push(call);
                }
                _ => eprintln!("a call failed to connect"),
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, phones_before, t0) = (
        usage(Some(pid)).expect("emulator alive"),
        usage(None).expect("self"),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (after, phones_after, elapsed) = (
        usage(Some(pid)).expect("emulator alive"),
        usage(None).expect("self"),
        t0.elapsed().as_secs_f64(),
    );
    let emu_cores = (after.cpu - before.cpu).as_secs_f64() / elapsed;
    let phone_cores = (phones_after.cpu - phones_before.cpu).as_secs_f64() / elapsed;
    let connected = live.len().max(1);
    let rss_per_call = after.rss_kib.saturating_sub(baseline.rss_kib) as f64 / connected as f64;
    let calls_json = emulator_calls(&url).await;
    let legs: Vec<&serde_json::Value> = calls_json
        .iter()
        .flat_map(|c| c["legs"].as_array().into_iter().flatten())
        .filter(|l| l["state"] == "connected")
        .collect();
    for call in &live {
        call.command(CallCommand::Stop);
        call.command(CallCommand::Queue(Action::Hangup));
    }
    for mut call in live.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(10), call.ended()).await;
    }
    answering.abort();
    let rate = legs
        .iter()
        .map(|l| l["packets_received"].as_u64().unwrap_or(0) as f64)
        .sum::<f64>()
        / legs.len().max(1) as f64
        / (secs as f64 + 2.0 + 1.0);
    println!(
        "{:>6} {:>8} {:>12.2} {:>14.2} {:>14.0} {:>12.2} {:>9.1}ms {:>9.1}ms {:>12.1}",
        connected,
        legs.len(),
        emu_cores,
        emu_cores * 100.0 / connected as f64,
        rss_per_call,
        phone_cores,
        percentile(&mut setup.clone(), 50.0),
        percentile(&mut setup, 99.0),
        rate,
    );
    drop(emu);
}

async fn emulator_calls(url: &str) -> Vec<serde_json::Value> {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(
            callbot::connection::tls::client_config(&callbot::config::TlsSetting::Insecure)
                .expect("TLS"),
        )
        .build()
        .expect("client");
    // A view that cannot be read fails the run instead of reading as no legs at all.
    client
        .get(format!("{url}emulator/calls"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the emulator's /emulator/calls")
        .json()
        .await
        .expect("the emulator's calls as JSON")
}
