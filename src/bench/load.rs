//! The load generator: places calls with the project's own media stack, holds them, and keeps
//! what each caller saw (setup time, packets, loss, arrival jitter, first audio).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Barrier, watch};

use super::target::Target;
use crate::call::{Action, CallCommand, Pacer};
use crate::media::stats::LegStats;
use crate::phone::Phone;
use crate::protocol::CallState;

/// What one caller saw.
#[derive(Clone, Debug)]
pub struct CallResult {
    /// Dial → answered, when answered.
    pub setup: Option<Duration>,
    pub stats: LegStats,
}

/// A fixed load: `calls` calls placed at `cps`, all held `hold` once the last is up.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub calls: usize,
    pub cps: f64,
    pub hold: Duration,
}

/// What happened while the load was held.
#[derive(Debug)]
pub struct Window {
    /// Calls placed; a call whose task failed has no result but still counts as placed.
    pub placed: usize,
    pub results: Vec<CallResult>,
    /// The measurement window (all calls up).
    pub seconds: f64,
    /// The peer's usage at the start and end of the window, and before any call.
    pub before_calls: crate::procstat::Usage,
    pub start: crate::procstat::Usage,
    pub end: crate::procstat::Usage,
    /// Calls placed per second, as measured.
    pub placed_cps: f64,
    /// The peer sampled every few seconds while the calls were held (seconds into the hold).
    pub samples: Vec<(f64, crate::procstat::Usage)>,
}

/// How often the peer is sampled while the calls are held.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Places the load against `target` and holds it; `progress` counts the calls placed, then
/// says how long they are held. Fails when the peer's process goes away during the run.
pub async fn run(
    phone: &Phone,
    target: &Target,
    load: Load,
    progress: &indicatif::ProgressBar,
) -> Result<Window, String> {
    let usage = || {
        target
            .usage()
            .ok_or_else(|| format!("{} exited during the measurement", target.peer.name()))
    };
    let before_calls = usage()?;
    let pacer = Pacer::new(load.cps);
    // Every call waits at the barrier once up (or failed); the window starts when all are.
    let barrier = Arc::new(Barrier::new(load.calls + 1));
    let (release_tx, release) = watch::channel(false);
    let mut tasks = Vec::new();
    let placing = Instant::now();
    for index in 0..load.calls {
        pacer.wait().await;
        let started = Instant::now();
        let mut call = phone.dial(target.number_for(index));
        let barrier = barrier.clone();
        let mut release = release.clone();
        tasks.push(tokio::spawn(async move {
            let answered =
                tokio::time::timeout(Duration::from_secs(30), call.reach(CallState::InCall))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|_| started.elapsed());
            barrier.wait().await;
            let _ = release.wait_for(|go| *go).await;
            call.command(CallCommand::Stop);
            call.command(CallCommand::Queue(Action::Hangup));
            let info = tokio::time::timeout(Duration::from_secs(30), call.ended()).await;
            let stats = info.ok().flatten().map(|i| i.stats).unwrap_or_default();
            CallResult {
                setup: answered,
                stats,
            }
        }));
        progress.set_position(index as u64 + 1);
    }
    // The first call goes out at once: `calls` calls span `calls - 1` intervals.
    let intervals = load.calls.saturating_sub(1).max(1);
    let placed_cps = intervals as f64 / placing.elapsed().as_secs_f64().max(0.001);
    progress.set_message("placed, waiting for answers");
    barrier.wait().await;
    progress.set_message(format!("all up, holding {} s", load.hold.as_secs()));
    let start = usage()?;
    let started = Instant::now();
    let mut samples = vec![(0.0, start)];
    while started.elapsed() + SAMPLE_EVERY <= load.hold {
        tokio::time::sleep(SAMPLE_EVERY).await;
        samples.push((started.elapsed().as_secs_f64(), usage()?));
    }
    tokio::time::sleep(load.hold.saturating_sub(started.elapsed())).await;
    let end = usage()?;
    samples.push((started.elapsed().as_secs_f64(), end));
    let seconds = started.elapsed().as_secs_f64();
    let _ = release_tx.send(true);
    let mut results = Vec::new();
    for task in tasks {
        if let Ok(result) = task.await {
            results.push(result);
        }
    }
    Ok(Window {
        placed: load.calls,
        results,
        seconds,
        before_calls,
        start,
        end,
        placed_cps,
        samples,
    })
}
