//! Voice-agent streams under load: N calls as leg pairs in one process over 127.0.0.1 (PCMU),
//! both ends talking, each bot leg streamed to an agent that runs in a child process (so its
//! CPU is not counted as the bot's).
//!
//! Three phases, `--secs` each after 2 s of warm-up: (A) no streams, the bot legs play a prompt;
//! (B) every bot leg streams to an echo agent that sends the caller's audio straight back, so
//! audio flows both ways through every stream; (C) every bot leg streams to a probe agent that
//! sends one 20 ms frame every 100-140 ms carrying its send time (CLOCK_MONOTONIC), and a tap
//! on each far leg notes when the RTP packet with that frame arrives: the latency from an
//! agent's `media` message to the RTP packet that carries it (plus the loopback hops).
//!
//! `cargo bench --bench voice_stream -- [CALLS…] [--secs S]` (default: 1 and 200 calls, 10 s).
//! Each size runs in a fresh child process.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use callbot::config::TlsSetting;
use callbot::connection::tls;
use callbot::media::MediaRuntime;
use callbot::media::tap::AudioTap;
use callbot::media::transport::{NetworkSettings, Sockets};
use callbot::voice::echo::EchoAgent;
use callbot::voice::{Stream, StreamEvent, StreamRequest, StreamSettings, Tracks};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CHILD_CALLS: &str = "CALLBOT_BENCH_STREAM_CALLS";
const CHILD_AGENT: &str = "CALLBOT_BENCH_STREAM_AGENT";
/// A probe frame starts with these μ-law codes (loud, and each decodes and encodes back to
/// itself), then the send time as 16 nibbles, each as `NIBBLE_BASE + nibble`.
const MAGIC: [u8; 4] = [0x91, 0xA2, 0x93, 0xA4];
const NIBBLE_BASE: u8 = 0x90;
/// Latencies kept at most.
const MAX_SAMPLES: usize = 1_000_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = || tokio::runtime::Runtime::new().expect("tokio");
    if std::env::var_os(CHILD_AGENT).is_some() {
        runtime().block_on(agents());
        return;
    }
    if let Ok(calls) = std::env::var(CHILD_CALLS) {
        let result = runtime().block_on(run(calls.parse().expect("call count"), secs));
        println!("{result}");
        return;
    }
    let mut sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--secs")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1, 200];
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "voice_stream: {secs} s per phase, {cores} cores, PCMU calls, agent in a child process"
    );
    println!(
        "{:>6} {:>11} {:>11} {:>13} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7}",
        "calls",
        "CPU/call A",
        "CPU/call B",
        "stream/call",
        "msgs/s out",
        "msgs/s in",
        "lat p50",
        "lat p99",
        "lat max",
        "probes",
        "drops"
    );
    for calls in sizes {
        let output = Command::new(std::env::current_exe().expect("bench binary"))
            .env(CHILD_CALLS, calls.to_string())
            .args(["--secs", &secs.to_string()])
            .output()
            .expect("run bench child");
        let line = String::from_utf8_lossy(&output.stdout);
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            println!(
                "{calls:>6} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        let f = |key: &str| r[key].as_f64().unwrap_or(0.0);
        println!(
            "{:>6} {:>10.3}% {:>10.3}% {:>12.3}% {:>10.0} {:>10.0} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>8} {:>7}",
            calls,
            f("cpu_per_call_plain_pct"),
            f("cpu_per_call_streamed_pct"),
            f("cpu_per_stream_pct"),
            f("messages_to_agent_per_s"),
            f("messages_from_agent_per_s"),
            f("latency_p50_ms"),
            f("latency_p99_ms"),
            f("latency_max_ms"),
            r["probes"],
            r["dropped_frames"]
        );
        println!(
            "        agent process: {:.3} cores in B; bot process: {:.2} cores in A, {:.2} in B, {:.2} in C",
            f("agent_cores_b"),
            f("cores_a"),
            f("cores_b"),
            f("cores_c")
        );
    }
}

/// Nanoseconds on the system-wide monotonic clock: the same in every process.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// 20 ms of μ-law that says when it was sent.
fn probe_frame(sent_ns: u64) -> Vec<u8> {
    let mut frame = vec![0x85u8; 160];
    frame[..4].copy_from_slice(&MAGIC);
    for i in 0..16 {
        frame[4 + i] = NIBBLE_BASE + ((sent_ns >> (60 - 4 * i)) & 0xF) as u8;
    }
    frame
}

/// The send time in a received probe frame (as PCM), if it is one.
fn probe_time(pcm: &[i16]) -> Option<u64> {
    if pcm.len() != 160 {
        return None;
    }
    let code = |i: usize| audio_codec_algorithms::encode_ulaw(pcm[i]);
    if (0..4).any(|i| code(i) != MAGIC[i]) {
        return None;
    }
    (0..16).try_fold(0u64, |time, i| {
        let nibble = code(4 + i).checked_sub(NIBBLE_BASE).filter(|n| *n < 16)?;
        Some(time << 4 | u64::from(nibble))
    })
}

/// The agents: an echo agent and a probe agent on loopback ports, printed on stdout.
async fn agents() {
    let echo = EchoAgent::start((Ipv4Addr::LOCALHOST, 0).into(), Duration::ZERO)
        .await
        .expect("echo agent");
    let probes = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("probe agent");
    println!("echo {}", echo.url());
    println!("probe ws://{}/", probes.local_addr().expect("address"));
    while let Ok((tcp, _)) = probes.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(socket) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut source) = socket.split();
            // What the bot sends is read and dropped, so its socket never fills.
            tokio::spawn(async move { while source.next().await.is_some() {} });
            loop {
                let pause = 100 + rand::random_range(0..40);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let payload = BASE64.encode(probe_frame(monotonic_ns()));
                let media = json!({"event": "media", "media": {"payload": payload}});
                if sink.send(Message::text(media.to_string())).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The agent child process, killed when dropped.
struct Agents {
    child: Child,
    echo: String,
    probe: String,
}

impl Agents {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(CHILD_AGENT, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("agent process");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut url = |kind: &str| {
            let line = lines.next().expect("the agents print").expect("a line");
            line.strip_prefix(kind).expect(kind).trim().to_owned()
        };
        let echo = url("echo");
        let probe = url("probe");
        Self { child, echo, probe }
    }

    fn cpu(&self) -> Duration {
        callbot::procstat::usage(Some(self.child.id())).map_or(Duration::ZERO, |u| u.cpu)
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Notes how long each probe frame took from the agent to this (far) leg.
#[derive(Default)]
struct ProbeTap {
    latencies_ns: Mutex<Vec<u64>>,
}

impl AudioTap for ProbeTap {
    fn received(&self, pcm: &[i16], _rate: u32, _timestamp: u32) {
        if let Some(sent) = probe_time(pcm) {
            let mut latencies = self.latencies_ns.lock().unwrap_or_else(|e| e.into_inner());
            if latencies.len() < MAX_SAMPLES {
                latencies.push(monotonic_ns().saturating_sub(sent));
            }
        }
    }
}

fn cpu_time() -> Duration {
    callbot::procstat::usage(None).map_or(Duration::ZERO, |u| u.cpu)
}

/// Cores this process (and the agents) used over `secs`, after 2 s of warm-up.
async fn measure(secs: u64, agents: &Agents) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu, agent_cpu, wall) = (cpu_time(), agents.cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = wall.elapsed().as_secs_f64();
    (
        (cpu_time() - cpu).as_secs_f64() / wall,
        (agents.cpu() - agent_cpu).as_secs_f64() / wall,
    )
}

/// Opens a stream on every bot leg to `url` and waits until each is connected.
async fn open_streams(
    pairs: &[support::Pair],
    url: &str,
    settings: &Arc<StreamSettings>,
) -> Vec<Stream> {
    let mut streams = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let request = StreamRequest {
            url: url.to_owned(),
            params: BTreeMap::new(),
            tracks: Tracks::Inbound,
        };
        streams.push(Stream::open(
            &pair.a,
            1,
            &format!("bench-{i}"),
            request,
            settings.clone(),
        ));
    }
    for stream in &mut streams {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next_event()).await;
        assert!(
            matches!(event, Ok(Some(StreamEvent::Connected))),
            "a stream did not connect: {event:?}"
        );
    }
    streams
}

async fn close(streams: Vec<Stream>) {
    for mut stream in streams {
        stream.stop("bench");
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(10), stream.next_event()).await
        {
            if matches!(event, StreamEvent::Closed(_) | StreamEvent::Error(_)) {
                break;
            }
        }
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index] as f64 / 1e6
}

async fn run(calls: usize, secs: u64) -> Value {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    for code in MAGIC.into_iter().chain((0..16).map(|n| NIBBLE_BASE + n)) {
        let back = audio_codec_algorithms::encode_ulaw(audio_codec_algorithms::decode_ulaw(code));
        assert_eq!(back, code, "probe code {code:#x} does not survive decoding");
    }
    let agents = Agents::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let prompt = dir.path().join("prompt.wav");
    support::write_tone(&prompt, 440.0, 5000);
    let network = |sockets| NetworkSettings {
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        sockets,
        ..NetworkSettings::default()
    };
    let media = MediaRuntime::start(network(Sockets::Shared)).expect("media runtime");
    let far = MediaRuntime::start(network(Sockets::PerLeg)).expect("media runtime");
    let pairs = support::connect_many(&media, &far, calls).await;
    for pair in &pairs {
        pair.a.play(1, prompt.clone(), 1000);
        pair.b.play(1, prompt.clone(), 1000);
    }
    let (cores_a, _) = measure(secs, &agents).await;

    // B: the bot legs' audio comes from the echo agent instead of the prompt.
    let tls = tls::client_config(&TlsSetting::PublicRoots).expect("TLS");
    let settings = Arc::new(StreamSettings::new("bench", Arc::new(tls)));
    for pair in &pairs {
        pair.a.stop();
    }
    let streams = open_streams(&pairs, &agents.echo, &settings).await;
    let metrics = &settings.metrics;
    let (to_agent, from_agent) = (metrics.to_agent.get(), metrics.from_agent.get());
    let started = Instant::now();
    let (cores_b, agent_cores_b) = measure(secs, &agents).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = |now: u64, before: u64| (now - before) as f64 / elapsed;
    let messages_out = rate(metrics.to_agent.get(), to_agent);
    let messages_in = rate(metrics.from_agent.get(), from_agent);
    close(streams).await;

    // C: probes, timed at the far legs.
    let probe = Arc::new(ProbeTap::default());
    let tap: Arc<dyn AudioTap> = probe.clone();
    for pair in &pairs {
        pair.b.add_tap(tap.clone());
    }
    let streams = open_streams(&pairs, &agents.probe, &settings).await;
    let (cores_c, _) = measure(secs, &agents).await;
    close(streams).await;
    let mut latencies = std::mem::take(&mut *probe.latencies_ns.lock().expect("probe"));
    latencies.sort_unstable();
    for pair in &pairs {
        pair.a.close().await;
        pair.b.close().await;
    }
    let per_call = |cores: f64| cores * 100.0 / calls as f64;
    json!({
        "calls": calls,
        "cores_a": cores_a,
        "cores_b": cores_b,
        "cores_c": cores_c,
        "agent_cores_b": agent_cores_b,
        "cpu_per_call_plain_pct": per_call(cores_a),
        "cpu_per_call_streamed_pct": per_call(cores_b),
        "cpu_per_stream_pct": per_call(cores_b - cores_a),
        "messages_to_agent_per_s": messages_out,
        "messages_from_agent_per_s": messages_in,
        "dropped_frames": metrics.dropped_to_agent.get() + metrics.dropped_from_agent.get(),
        "probes": latencies.len(),
        "latency_p50_ms": quantile(&latencies, 0.5),
        "latency_p99_ms": quantile(&latencies, 0.99),
        "latency_max_ms": latencies.last().map_or(0.0, |l| *l as f64 / 1e6),
    })
}
