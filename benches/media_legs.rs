//! Media engine benchmark: N leg pairs in one process over 127.0.0.1, every leg playing a prompt
//! and recording stereo. Reports CPU and RSS per leg and send pacing jitter.
//!
//! `cargo bench --bench media_legs -- [PAIRS…] [--secs S] [--engine sans-io|legacy]` (default:
//! 50 200 500 pairs, 10 s, the sans-IO engine). Leg A of each pair is on the engine's shared
//! ports, as a bot's legs are; leg B (the far end) has a socket of its own, as a phone has.
//! Each size runs in a fresh child process so memory figures do not mix.

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use callbot::media::stats::GapHistogram;
use callbot::media::transport::{EngineKind, NetworkSettings, Sockets};
use callbot::media::{MediaRuntime, RecordOptions};
use serde_json::{Value, json};

const CHILD_ENV: &str = "CALLBOT_BENCH_PAIRS";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: u64 = option("--secs").and_then(|s| s.parse().ok()).unwrap_or(10);
    let engine = option("--engine").unwrap_or_else(|| "sans-io".into());
    if let Ok(pairs) = std::env::var(CHILD_ENV) {
        let pairs = pairs.parse().expect("pair count");
        let engine = match engine.as_str() {
            "legacy" => EngineKind::Legacy,
            _ => EngineKind::SansIo,
        };
        let result = tokio::runtime::Runtime::new()
            .expect("tokio")
            .block_on(run(pairs, secs, engine));
        println!("{result}");
        return;
    }
    let mut sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !["--secs", "--engine"].contains(&args[i - 1].as_str()))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![50, 200, 500];
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "media_legs: {engine} engine, {secs} s per size, {cores} cores, every leg plays a prompt and records stereo"
    );
    println!(
        "{:>6} {:>6} {:>8} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "pairs",
        "legs",
        "setup s",
        "cores",
        "CPU/leg %",
        "RSS/leg KiB",
        "send p50",
        "send p99",
        "recv jit",
        "loss %",
        "drops"
    );
    for pairs in sizes {
        let output = Command::new(std::env::current_exe().expect("bench binary"))
            .env(CHILD_ENV, pairs.to_string())
            .args(["--secs", &secs.to_string(), "--engine", &engine])
            .output()
            .expect("run bench child");
        let line = String::from_utf8_lossy(&output.stdout);
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            println!(
                "{pairs:>6} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        println!(
            "{:>6} {:>6} {:>8.1} {:>10.2} {:>10.3} {:>12.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.3} {:>8}",
            r["pairs"],
            r["legs"],
            r["setup_s"].as_f64().unwrap_or(0.0),
            r["cores_used"].as_f64().unwrap_or(0.0),
            r["cpu_per_leg_pct"].as_f64().unwrap_or(0.0),
            r["rss_per_leg_kib"].as_f64().unwrap_or(0.0),
            r["send_jitter_p50_ms"].as_f64().unwrap_or(0.0),
            r["send_jitter_p99_ms"].as_f64().unwrap_or(0.0),
            r["recv_jitter_mean_ms"].as_f64().unwrap_or(0.0),
            r["loss_pct"].as_f64().unwrap_or(0.0),
            r["send_drops"]
        );
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> f64 {
    callbot::procstat::usage(None).map_or(0.0, |u| u.rss_kib as f64)
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    callbot::procstat::usage(None).map_or(Duration::ZERO, |u| u.cpu)
}

async fn run(pairs: usize, secs: u64, engine: EngineKind) -> Value {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().expect("temp dir");
    let prompt = dir.path().join("prompt.wav");
    support::write_tone(&prompt, 440.0, 5000);
    let settings = |sockets| NetworkSettings {
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        sockets,
        engine,
        ..NetworkSettings::default()
    };
    let media = MediaRuntime::start(settings(Sockets::Shared)).expect("media runtime");
    let far = MediaRuntime::start(settings(Sockets::PerLeg)).expect("media runtime");
    // The shared prompt copy belongs to the baseline, not to any leg.
    for runtime in [&media, &far] {
        runtime
            .prompts()
            .get(&prompt, callbot::media::codec::Codec::Pcmu)
            .expect("prompt");
    }
    let baseline_rss = rss_kib();

    let setup_start = Instant::now();
    let all = support::connect_many(&media, &far, pairs).await;
    let setup = setup_start.elapsed();
    for (i, pair) in all.iter().enumerate() {
        for (side, leg) in [("a", &pair.a), ("b", &pair.b)] {
            leg.play(1, prompt.clone(), 1000);
            if std::env::var_os("BENCH_NO_RECORD").is_none() {
                leg.record(RecordOptions {
                    path: dir.path().join(format!("{i}-{side}.wav")),
                    stereo: true,
                    max_secs: None,
                });
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_start, wall_start) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_time() - cpu_start;
    let wall = wall_start.elapsed();
    let rss = rss_kib();

    let legs = all.iter().flat_map(|p| [&p.a, &p.b]).collect::<Vec<_>>();
    let mut pacing = GapHistogram::default();
    let (mut received, mut lost, mut drops, mut jitter) = (0u64, 0u64, 0u64, 0.0f64);
    for leg in &legs {
        pacing.merge(&leg.send_pacing());
        let s = leg.stats();
        received += s.packets_received;
        lost += s.packets_lost;
        drops += s.packets_dropped;
        jitter += s.jitter_ms;
    }
    let n = legs.len() as f64;
    let cores_used = cpu.as_secs_f64() / wall.as_secs_f64();
    for leg in &legs {
        leg.close().await;
    }
    json!({
        "pairs": pairs,
        "legs": legs.len(),
        "setup_s": setup.as_secs_f64(),
        "cores_used": cores_used,
        "cpu_per_leg_pct": cores_used * 100.0 / n,
        "rss_per_leg_kib": (rss - baseline_rss) / n,
        "send_jitter_p50_ms": pacing.quantile(0.5).as_secs_f64() * 1000.0,
        "send_jitter_p99_ms": pacing.quantile(0.99).as_secs_f64() * 1000.0,
        "recv_jitter_mean_ms": jitter / n,
        "loss_pct": if received + lost == 0 { 0.0 } else { lost as f64 * 100.0 / (received + lost) as f64 },
        "send_drops": drops,
    })
}
