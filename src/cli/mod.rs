//! Subcommands of the `callbot` binary: argument parsing (clap) and the glue that starts the
//! library's pieces. Each subcommand lives in a file of its own.

mod agent_echo;
mod bench;
mod campaign;
mod check;
mod demo;
mod dial;
mod pbx;
mod run;

/// Exit status for a config with errors, so scripts can tell it from a crash (1).
const EXIT_CONFIG_ERRORS: u8 = 2;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "callbot",
    version,
    about = "Call-automation bots for PBXs that speak the Vodia websocket protocol",
    long_about = "Call-automation bots for PBXs that speak the Vodia websocket protocol.\n\n\
        Each bot is one PBX extension with its own websocket and a Rhai script that answers, \
        dials, plays prompts, collects DTMF, transfers and records calls. Bots are listed in a \
        YAML file (see bots.example.yaml and the README). `callbot pbx` is a PBX emulator that \
        speaks the same protocol, for trying bots out on one machine."
)]
pub struct Cli {
    /// More log output (-v: a line per call, -vv: debug, -vvv: trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log lines as text, or as one JSON object per line (for journald, Loki, Elasticsearch).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    Run(run::RunArgs),
    Check(check::CheckArgs),
    Pbx(pbx::PbxArgs),
    Demo(demo::DemoArgs),
    Dial(dial::DialArgs),
    Campaign(campaign::CampaignArgs),
    Bench(bench::BenchArgs),
    AgentEcho(agent_echo::AgentEchoArgs),
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Run(args) => block_on(run::run(args)),
            Command::Check(args) => check::run(&args),
            Command::Pbx(args) => block_on(pbx::run(args)),
            Command::Demo(args) => block_on(demo::run(args)),
            Command::Dial(args) => block_on(dial::run(args)),
            Command::Campaign(args) => block_on(campaign::run(args)),
            Command::Bench(args) => block_on(bench::run(args)),
            Command::AgentEcho(args) => block_on(agent_echo::run(args)),
        }
    }
}

/// Runs an async subcommand on a multi-thread tokio runtime.
fn block_on(future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("callbot: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    /// Commands a person watches (a bar and a summary): their log shows only problems
    /// unless `-v` asks for more.
    pub fn watched(&self) -> bool {
        matches!(
            self.command,
            Command::Dial(_) | Command::Campaign(_) | Command::Bench(_)
        )
    }
}

/// Logs go to stderr (below any progress bar); `RUST_LOG` wins over `-v`. `watched` commands
/// log only warnings and errors by default.
pub fn init_logging(verbose: u8, format: LogFormat, watched: bool) {
    // The WebRTC stack warns about routine things (a DTLS server name, ICE checks before
    // candidates arrive); its errors still show. A line per call only with -v.
    const QUIET_STACK: &str = "rtc=error,rtc_dtls=error,rtc_ice=error,rtc_srtp=error,webrtc=error";
    let default = match (verbose, watched) {
        (0, true) => format!("warn,{QUIET_STACK}"),
        (0, false) => format!("warn,callbot=info,callbot::calls=warn,{QUIET_STACK}"),
        (1, _) => format!("warn,callbot=info,{QUIET_STACK}"),
        (2, _) => "info,callbot=debug".to_owned(),
        _ => "trace".to_owned(),
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // The websocket handshake is traced with its headers, the session cookie among them:
    // secrets never reach the logs, whatever the level asked for.
    for quiet in [
        "tungstenite::handshake=off",
        "tokio_tungstenite::handshake=off",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    use std::io::IsTerminal;
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    // Values from the wire are escaped where they are logged; the writer makes sure no record
    // ever spans two lines, whatever slipped through, and draws it below any progress bar.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || {
            callbot::untrusted::OneLineWriter::new(callbot::console::Stderr, ansi)
        });
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `--engine`: `sans-io` (the media engine) or `legacy` (the first one, kept for comparisons).
fn engine_kind(text: &str) -> Result<callbot::media::transport::EngineKind, String> {
    use callbot::media::transport::EngineKind;
    match text {
        "sans-io" => Ok(EngineKind::SansIo),
        "legacy" => Ok(EngineKind::Legacy),
        other => Err(format!("unknown engine {other:?} (sans-io or legacy)")),
    }
}
