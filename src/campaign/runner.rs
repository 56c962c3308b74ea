//! Running a campaign on this machine: contacts from the journal, dialled through one bot of
//! the daemon, paced by calls per second and concurrency, retried by the rules, inside the
//! daily window in each contact's own time zone and under the daily cap, with a progress bar.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::task::JoinSet;

use super::eta::Eta;
use super::journal::{Entry, Journal, JournalError, now_ms};
use super::outcome::{Outcome, RetryRule};
use super::pacing::Window;
use super::schedule::{Next, Schedule};
use crate::call::Pacer;
use crate::daemon::{CampaignProgress, Daemon};

/// How long the loop sleeps when nothing is due (it wakes at least every second anyway, and at
/// once when a call ends or a stop is asked for).
const IDLE: Duration = Duration::from_secs(3600);

/// How the campaign dials.
#[derive(Clone, Debug)]
pub struct Pace {
    /// Calls at the same time.
    pub concurrency: usize,
    /// New calls per second at most.
    pub cps: f64,
    pub retry: RetryRule,
    /// The hours of the day to call, in each contact's own time.
    pub window: Option<Window>,
    /// How long a contact's phone may ring (default: a minute).
    pub ring_timeout: Option<Duration>,
    /// Attempts per contact in one of its days at most.
    pub per_day: Option<u32>,
}

/// What a finished (or stopped) run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub attempts: u32,
    pub by_state: BTreeMap<String, u32>,
    /// Contacts still waiting (stopped early, or retries due later).
    pub pending: usize,
}

fn progress(total: usize, done: usize) -> ProgressBar {
    let bar = crate::console::bar(
        total as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} done, {msg}",
    );
    bar.set_position(done as u64);
    bar
}

/// What the bar and the dashboard show now.
struct Shown<'a> {
    bot: &'a str,
    total: usize,
    done: u64,
    failed: u32,
    summary: &'a Summary,
    live: &'a HashMap<i64, Instant>,
    queue: &'a VecDeque<Entry>,
    eta: &'a Eta,
    pace: &'a Pace,
    /// How long until the next contact may be called, when nobody may be called now.
    next_call: Option<Duration>,
}

impl Shown<'_> {
    fn remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        let live: Vec<Duration> = self.live.values().map(|at| now - *at).collect();
        let now_ms = now_ms();
        let waiting: Vec<Duration> = self
            .queue
            .iter()
            .map(|e| Duration::from_millis(e.next_at.saturating_sub(now_ms)))
            .collect();
        self.eta
            .remaining(&live, &waiting, self.pace.concurrency, self.pace.cps)
    }

    fn show(&self, bar: &ProgressBar, daemon: &Daemon, finished: bool) {
        let remaining = self.remaining();
        let eta = match remaining {
            None => "ETA after the first call".to_owned(),
            // Past the usual length of a call: it ends when it ends.
            Some(left) if left.is_zero() && !self.live.is_empty() => {
                "ETA when the last call ends".to_owned()
            }
            Some(left) => format!("ETA {}", crate::console::human(left)),
        };
        let mut message = format!("{} active, {} failed, {eta}", self.live.len(), self.failed);
        if let Some(wait) = self.next_call
            && wait >= Duration::from_secs(60)
        {
            // Everyone left waits for a window, a daily cap or a retry.
            message.push_str(&format!(
                ", next call in {} min",
                wait.as_secs().div_ceil(60)
            ));
        }
        bar.set_message(message);
        daemon.show_campaign(CampaignProgress {
            bot: self.bot.to_owned(),
            total: self.total,
            done: self.done as usize,
            active: self.live.len(),
            failed: self.failed,
            by_state: self.summary.by_state.clone(),
            eta_secs: remaining.map(|d| d.as_secs()),
            finished,
        });
    }
}

/// The outcome of one attempt, with what is needed to journal it.
struct Finished {
    entry: Entry,
    attempt: i64,
    outcome: Outcome,
}

/// Dials every pending contact of `journal` through `bot` until all are done or `stop` fires;
/// live calls are always let finish.
pub async fn run(
    daemon: &Daemon,
    bot: &str,
    journal: &mut Journal,
    pace: &Pace,
    stop: impl Future<Output = ()>,
) -> Result<Summary, JournalError> {
    let entries = journal.entries()?;
    let mut queue: VecDeque<Entry> = entries.iter().filter(|e| !e.done).cloned().collect();
    let done_before = entries.len() - queue.len();
    let bar = progress(entries.len(), done_before);
    let mut summary = Summary::default();
    let mut live: JoinSet<Finished> = JoinSet::new();
    let mut started: HashMap<i64, Instant> = HashMap::new();
    let mut eta = Eta::default();
    let pacer = Pacer::new(pace.cps);
    let mut schedule = Schedule::new(pace.window, pace.per_day, journal.attempt_starts()?);
    let mut failed = 0u32;
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        let over = live.is_empty() && (stopping || queue.is_empty());
        // At the concurrency limit (or stopping) only a call's end can change anything.
        let throttled = stopping || live.len() >= pace.concurrency;
        let next = if throttled || over {
            Next::Idle
        } else {
            schedule.next(&queue, chrono::Utc::now())
        };
        let shown = Shown {
            bot,
            total: entries.len(),
            done: bar.position(),
            failed,
            summary: &summary,
            live: &started,
            queue: &queue,
            eta: &eta,
            pace,
            next_call: match next {
                Next::Wait(wait) => Some(wait),
                Next::Now(_) | Next::Idle => None,
            },
        };
        shown.show(&bar, daemon, over);
        if over {
            break;
        }
        let wait = match next {
            Next::Now(_) => Duration::ZERO,
            Next::Wait(wait) => wait,
            Next::Idle => IDLE,
        };
        if let Next::Now(index) = next {
            let went = tokio::select! {
                went = pacer.wait() => went,
                () = &mut stop => { stopping = true; continue; }
            };
            // Calls only go out on a registered link (a reconnect pauses the campaign).
            tokio::select! {
                connected = daemon.connected(bot) => if !connected { stopping = true; continue; },
                () = &mut stop => { stopping = true; continue; }
            }
            let Some(entry) = queue.remove(index) else {
                continue;
            };
            // The attempt starts when the pacer let it go, so the journal shows the pacing.
            let started_at = now_ms().saturating_sub(went.elapsed().as_millis() as u64);
            let attempt = journal.start(entry.contact.line, started_at)?;
            schedule.started(entry.contact.line, started_at);
            summary.attempts += 1;
            started.insert(attempt, Instant::now());
            let finished = daemon
                .dial(
                    bot,
                    &entry.contact.number,
                    entry.contact.vars.clone(),
                    pace.ring_timeout,
                )
                .await;
            live.spawn(async move {
                let outcome = match finished {
                    Some(finished) => finished
                        .await
                        .map_or_else(|_| Outcome::interrupted(), |info| Outcome::from_call(&info)),
                    None => Outcome::interrupted(),
                };
                let mut entry = entry;
                entry.attempts += 1;
                Finished {
                    entry,
                    attempt,
                    outcome,
                }
            });
            continue;
        }
        tokio::select! {
            Some(joined) = live.join_next() => {
                let Ok(finished) = joined else { continue };
                let Finished { mut entry, attempt, outcome } = finished;
                if let Some(at) = started.remove(&attempt) {
                    eta.finished(at.elapsed());
                }
                // A retry is journalled even while stopping: the resumed run makes it.
                let again = pace.retry.again(&outcome, entry.attempts);
                let retry_at = again.then(|| now_ms() + pace.retry.after.as_millis() as u64);
                journal.finish(attempt, entry.contact.line, &outcome, retry_at)?;
                if let Some(at) = retry_at {
                    entry.next_at = at;
                    queue.push_back(entry);
                } else {
                    if outcome.state != "COMPLETED" {
                        failed += 1;
                    }
                    *summary.by_state.entry(outcome.state.clone()).or_default() += 1;
                    bar.inc(1);
                }
            }
            () = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
            () = &mut stop, if !stopping => stopping = true,
        }
    }
    bar.finish_and_clear();
    summary.pending = queue.len();
    Ok(summary)
}
