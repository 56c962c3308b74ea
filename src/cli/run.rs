//! `callbot run`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use callbot::config::Config;
use callbot::daemon::Daemon;
use callbot::media::transport::EngineKind;
use callbot::script::Limits;

/// Run the bots of a config until SIGTERM or Ctrl-C.
///
/// Each bot logs in to the PBX, registers its extension and runs its script. SIGHUP (or
/// editing a script) reloads scripts without touching live calls; a script that does not
/// compile keeps the previous version. SIGTERM/Ctrl-C stops taking calls, lets live calls
/// finish for up to --grace seconds, closes recordings and exits 0.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE", default_value = "bots.yaml")]
    config: PathBuf,
    /// Seconds live calls may go on after SIGTERM before they are hung up.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// The media engine (the first one is kept only to be measured against; `callbot bench
    /// --engine legacy` uses it).
    #[arg(long, hide = true, default_value = "sans-io", value_parser = super::engine_kind)]
    engine: EngineKind,
}

pub async fn run(args: RunArgs) -> ExitCode {
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(super::EXIT_CONFIG_ERRORS);
        }
    };
    config.media.engine = args.engine;
    let daemon = match Daemon::start(config, Limits::default()).await {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("callbot: {e}");
            return ExitCode::from(super::EXIT_CONFIG_ERRORS);
        }
    };
    let systemd = callbot::daemon::systemd::started(&daemon);
    wait_for_stop(&daemon).await;
    callbot::daemon::systemd::stopping();
    systemd.abort();
    stop(daemon, Duration::from_secs(args.grace)).await;
    ExitCode::SUCCESS
}

/// Reloads on SIGHUP; shuts down on SIGTERM or Ctrl-C.
pub async fn serve_until_stopped(daemon: Daemon, grace: Duration) {
    wait_for_stop(&daemon).await;
    stop(daemon, grace).await;
}

async fn stop(daemon: Daemon, grace: Duration) {
    tracing::info!("stopping: live calls have {} s to finish", grace.as_secs());
    daemon.shutdown(grace).await;
}

/// Serves until SIGTERM or Ctrl-C, reloading scripts on SIGHUP.
async fn wait_for_stop(daemon: &Daemon) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hangup) = signal(SignalKind::hangup()) {
            let stop = super::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading scripts");
                        daemon.reload().await;
                    }
                    () = &mut stop => break,
                }
            }
        } else {
            super::shutdown_signal().await;
        }
    }
    #[cfg(not(unix))]
    super::shutdown_signal().await;
}
