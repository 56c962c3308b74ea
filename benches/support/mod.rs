//! What the benchmarks share: starting `callbot` as a child process on 127.0.0.1, phones that
//! talk to it, and percentiles.

#![allow(dead_code)] // each bench uses part of this module

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use callbot::config::{DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, LinkSettings, tls};
use callbot::media::transport::NetworkSettings;
use callbot::media::transport::TransportState;
use callbot::media::{LegEvent, LegEvents, MediaLeg, MediaRuntime};
use callbot::phone::Phone;
use callbot::protocol::RemoteCandidate;

pub const ADMIN_PASSWORD: &str = "bench-admin";

/// A child `callbot` process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub stdout: std::sync::mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line containing `needle`.
    pub fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(60))
                .expect("the child prints");
            if line.contains(needle) {
                return line;
            }
        }
    }
}

pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbot"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("callbot starts");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Process { child, stdout: rx }
}

/// `callbot pbx` on a free loopback port; returns it and its URL.
pub fn emulator(extra: &[&str], cert: &Path) -> (Process, String) {
    let mut args = vec![
        "pbx",
        "--listen",
        "127.0.0.1:0",
        "--media-address",
        "127.0.0.1",
        "--ring-timeout",
        "300",
        // The benches read /emulator/calls, which is closed to anyone but the admin otherwise.
        "--open-test-api",
        "--cert-out",
    ];
    let cert = cert.display().to_string();
    args.push(&cert);
    args.extend_from_slice(extra);
    let child = spawn(
        &args,
        &[
            ("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RUST_LOG", "error"),
        ],
    );
    let line = child.line_with("listening on");
    let url = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    (child, url)
}

pub fn loopback_media() -> MediaRuntime {
    MediaRuntime::start(NetworkSettings {
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ice_servers: vec![],
        ..NetworkSettings::default()
    })
    .expect("media runtime")
}

pub async fn phone(url: &str, extension: &str, media: &MediaRuntime) -> Phone {
    let settings = LinkSettings {
        bot: format!("bench-{extension}"),
        base: url.parse().expect("URL"),
        domain: "localhost".into(),
        extension: extension.into(),
        credentials: Credentials::ThirdParty {
            user: "admin".into(),
            password: Secret::new(ADMIN_PASSWORD),
        },
        tls: Arc::new(tls::client_config(&TlsSetting::Insecure).expect("TLS")),
        dialect: DialectSetting::Auto,
        useragent: "callbot-bench".into(),
    };
    Phone::connect(settings, media.clone(), std::env::temp_dir())
        .await
        .expect("phone connects")
}

/// Arguments after `--bench`: sizes (numbers) and `--name value` options.
pub struct Args {
    pub sizes: Vec<usize>,
    options: Vec<(String, String)>,
}

impl Args {
    pub fn parse() -> Self {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut sizes = Vec::new();
        let mut options = Vec::new();
        let mut i = 0;
        while i < args.len() {
            if let Some(name) = args[i].strip_prefix("--") {
                options.push((
                    name.to_owned(),
                    args.get(i + 1).cloned().unwrap_or_default(),
                ));
                i += 2;
            } else {
                if let Ok(n) = args[i].parse() {
                    sizes.push(n);
                }
                i += 1;
            }
        }
        Self { sizes, options }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn number(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// `ms` of a sine at `hz` (8 kHz mono WAV), to play in a loop.
pub fn write_tone(path: &Path, hz: f32, ms: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("tone file");
    for sample in callbot::media::tone::sine(hz, 8000, ms) {
        writer.write_sample(sample).expect("tone sample");
    }
    writer.finalize().expect("tone file");
}

/// Two legs of one process connected to each other: A (a bot's) and B (its far end).
pub struct Pair {
    pub a: Arc<MediaLeg>,
    pub b: Arc<MediaLeg>,
}

/// Forwards candidates to `to` and reports when the leg is connected.
fn forward(mut events: LegEvents, to: Arc<MediaLeg>) -> tokio::sync::oneshot::Receiver<()> {
    let (connected, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connected = Some(connected);
        while let Some(event) = events.recv().await {
            match event {
                LegEvent::LocalCandidate(c) => {
                    let remote = RemoteCandidate {
                        callid: None,
                        candidate: c.candidate,
                        addresses: vec![],
                    };
                    let _ = to.add_remote_candidate(&remote).await;
                }
                LegEvent::State(TransportState::Connected) => {
                    if let Some(tx) = connected.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    done
}

/// Leg A on `media` offers, leg B on `far` answers; returns once both are connected (or 30 s).
pub async fn connect(media: &MediaRuntime, far: &MediaRuntime) -> Pair {
    let (a, a_events) = media.new_leg().await.expect("leg");
    let (b, b_events) = far.new_leg().await.expect("leg");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let a_up = forward(a_events, b.clone());
    let b_up = forward(b_events, a.clone());
    let offer = a.create_offer().await.expect("offer");
    let answer = b.accept_offer(&offer).await.expect("answer");
    a.apply_answer(&answer).await.expect("apply answer");
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = a_up.await;
        let _ = b_up.await;
    })
    .await;
    Pair { a, b }
}

/// Pairs set up at once: keeps ICE checks of many legs from crowding each other out.
const SETUP_BATCH: usize = 25;

/// `count` pairs of [`connect`], set up [`SETUP_BATCH`] at a time.
pub async fn connect_many(media: &MediaRuntime, far: &MediaRuntime, count: usize) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(count);
    while pairs.len() < count {
        let batch = SETUP_BATCH.min(count - pairs.len());
        let connecting: Vec<_> = (0..batch)
            .map(|_| {
                let (media, far) = (media.clone(), far.clone());
                tokio::spawn(async move { connect(&media, &far).await })
            })
            .collect();
        for pair in connecting {
            pairs.push(pair.await.expect("setup task"));
        }
    }
    pairs
}
