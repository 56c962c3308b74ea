//! `callbot bench`: load, latency and cost of a bot process, measured side by side with peers.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use callbot::bench::load::{self, Load};
use callbot::bench::report::{self, Measurement};
use callbot::bench::target::{Environment, Peer, Target, spawn_until};
use callbot::config::{DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, LinkSettings, tls};
use callbot::media::MediaRuntime;
use callbot::media::transport::{NetworkSettings, Sockets};
use callbot::phone::Phone;

/// Measure a bot process under load: N concurrent calls through the emulator.
///
/// Starts `callbot pbx --media relay` (signalling only, so the emulator costs little) and the
/// process under test: `callbot run` with a bench bot that answers, plays a looping prompt,
/// records stereo and echoes DTMF; with --compare also a Python aiortc bot
/// (bench/peers/aiortc_bot.py, set up by bench/setup.sh) and headless Chromium with one
/// softphone page per extension. The load generator (this process, the project's media stack)
/// places the calls at --cps, holds them --hold-secs once all are up, and measures for the
/// process under test only: CPU and RSS per call, and at the callers setup time, RTP arrival
/// jitter and loss, and the first audio. Prints a table (and --markdown) and writes --json.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent calls (repeat for several sizes).
    #[arg(long, default_values_t = vec![50])]
    calls: Vec<usize>,
    /// Seconds to hold the calls once all are up.
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
    /// Calls placed per second.
    #[arg(long, default_value_t = 50.0)]
    cps: f64,
    /// Add --ramp-step calls per run until a limit breaks (loss > 0.5 %, p99 jitter > 5 ms,
    /// setup p99 > 100 ms); report the largest load that held.
    #[arg(long)]
    ramp: bool,
    #[arg(long, default_value_t = 50)]
    ramp_step: usize,
    #[arg(long, default_value_t = 2000)]
    ramp_max: usize,
    /// Also run the peers (aiortc, chromium) at the same sizes and print ratios.
    #[arg(long)]
    compare: bool,
    /// Only these peers (callbot, aiortc, chromium).
    #[arg(long = "peer", value_enum)]
    peers: Vec<Peer>,
    /// The looping prompt the bots play.
    #[arg(long, default_value = "prompts/welcome.wav")]
    prompt: PathBuf,
    /// Write every measurement here.
    #[arg(long, default_value = "target/bench/bench.json")]
    json: PathBuf,
    /// Also print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
}

/// The bench's PBX: `callbot pbx --media relay` with the caller and the peers' extensions.
struct Emulator {
    child: Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ADMIN_PASSWORD: &str = "callbot-bench";
const CALLER: &str = "509";
const FIRST_EXTENSION: u32 = 1000;

/// The emulator's limits raised for a load of `extensions` calls: one caller places them all
/// (its frames and live calls), and with --compare a browser holds a socket per extension.
fn load_limits(extensions: usize) -> Vec<String> {
    let sockets = (2 * extensions + 64).to_string();
    let calls = (extensions + 16).to_string();
    let frames = (100 * extensions.max(10)).to_string();
    [
        "--max-sockets-per-address",
        &sockets,
        "--max-sockets",
        &sockets,
        "--max-calls-per-extension",
        &calls,
        "--max-frame-rate",
        &frames,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start_emulator(
    work: &std::path::Path,
    extensions: usize,
) -> Result<(Emulator, PathBuf), String> {
    let mut accounts = format!(
        "admin: {{ user: admin, password: {ADMIN_PASSWORD} }}\nextensions:\n  - {{ number: \"{CALLER}\", password: \"{CALLER}\" }}\n"
    );
    for n in FIRST_EXTENSION..FIRST_EXTENSION + extensions.max(1) as u32 {
        let _ = writeln!(accounts, "  - {{ number: \"{n}\", password: \"{n}\" }}");
    }
    let accounts_path = work.join("accounts.yaml");
    std::fs::write(&accounts_path, accounts).map_err(|e| e.to_string())?;
    let cert = work.join("pbx.pem");
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command
        .args([
            "pbx",
            "--listen",
            "127.0.0.1:0",
            "--media",
            "relay",
            "--media-address",
            "127.0.0.1",
        ])
        .arg("--accounts")
        .arg(&accounts_path)
        .arg("--cert-out")
        .arg(&cert)
        .args(load_limits(extensions))
        .env("RUST_LOG", "error");
    const READY: &str = "listening on ";
    let (child, line) = spawn_until(command, READY, Duration::from_secs(30))?;
    let url = line
        .split(READY)
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok((Emulator { child, url }, cert))
}

pub async fn run(args: BenchArgs) -> ExitCode {
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbot bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let repo = std::env::current_dir().map_err(|e| e.to_string())?;
    let prompt = repo.join(&args.prompt);
    if !prompt.is_file() {
        return Err(format!(
            "{}: no such prompt (run from the repository, or give --prompt)",
            prompt.display()
        ));
    }
    let work = tempfile::Builder::new()
        .prefix("callbot-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut peers = args.peers.clone();
    if peers.is_empty() {
        peers.push(Peer::Callbot);
        if args.compare {
            peers.extend([Peer::Aiortc, Peer::Chromium]);
        }
    }
    let largest = args
        .calls
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(if args.ramp { args.ramp_max } else { 0 });
    let (emulator, cert) = start_emulator(work.path(), largest)?;
    let env = Environment {
        url: emulator.url.clone(),
        cert: cert.clone(),
        admin_password: ADMIN_PASSWORD.into(),
        prompt,
        work: work.path().to_owned(),
        repo,
        first_extension: FIRST_EXTENSION,
    };
    let media = MediaRuntime::start(NetworkSettings {
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ice_servers: vec![],
        // The callers stand for browsers and phones: a socket per call.
        sockets: Sockets::PerLeg,
        ..NetworkSettings::default()
    })
    .map_err(|e| format!("media: {e}"))?;
    let settings = LinkSettings {
        bot: "bench-caller".into(),
        base: env.url.parse().map_err(|e| format!("{e}"))?,
        domain: "localhost".into(),
        extension: CALLER.into(),
        credentials: Credentials::ThirdParty {
            user: "admin".into(),
            password: Secret::new(ADMIN_PASSWORD),
        },
        tls: Arc::new(tls::client_config(&TlsSetting::CaFile(cert)).map_err(|e| e.to_string())?),
        dialect: DialectSetting::Auto,
        useragent: "callbot-bench".into(),
    };
    let phone = Phone::connect(settings, media, work.path().to_owned()).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "callbot bench: {cores} cores, calls held {} s, placed at {} cps, emulator in relay mode",
        args.hold_secs, args.cps
    );
    println!("{}", report::header());
    let mut measurements = Vec::new();
    for peer in peers {
        let sizes: Vec<usize> = if args.ramp {
            (1..)
                .map(|i| i * args.ramp_step)
                .take_while(|n| *n <= args.ramp_max)
                .collect()
        } else {
            args.calls.clone()
        };
        for calls in sizes {
            let load = Load {
                calls,
                cps: args.cps,
                hold: Duration::from_secs(args.hold_secs),
            };
            let measurement = match measure(peer, &env, &phone, load).await {
                Ok(m) => m,
                Err(e) => {
                    println!("{:<9} {calls:>6} failed: {e}", peer.name());
                    break;
                }
            };
            println!("{}", report::row(&measurement));
            if args.hold_secs >= 60 {
                println!("          soak: {}", measurement.soak.describe());
            }
            let held = measurement.passes();
            measurements.push(measurement);
            if args.ramp && !held {
                println!(
                    "{} held up to {} calls",
                    peer.name(),
                    calls.saturating_sub(args.ramp_step)
                );
                break;
            }
        }
    }
    for line in report::ratios(&measurements) {
        println!("{line}");
    }
    if args.markdown {
        println!("\n{}", report::markdown(&measurements));
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let json = serde_json::to_string_pretty(&measurements).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, json).map_err(|e| format!("{}: {e}", args.json.display()))?;
    println!("measurements written to {}", args.json.display());
    drop(phone);
    drop(emulator);
    Ok(())
}

/// One run: a fresh peer, the load, the numbers.
async fn measure(
    peer: Peer,
    env: &Environment,
    phone: &Phone,
    load: Load,
) -> Result<Measurement, String> {
    let mut target = Target::start(peer, env, load.calls).await?;
    let progress = callbot::console::bar(
        load.calls as u64,
        &format!(
            "{:<9} [{{bar:30}}] {{pos}}/{{len}} calls {{msg}} ({{elapsed}})",
            peer.name()
        ),
    );
    progress.set_message("placing");
    let window = load::run(phone, &target, load, &progress).await;
    progress.finish_and_clear();
    let window = window?;
    target.stop();
    let recordings = target.recordings.clone();
    let measurement = Measurement::new(peer, &window, recordings.as_deref());
    if let Some(dir) = recordings {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(measurement)
}
