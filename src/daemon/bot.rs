//! One bot at run time: its link, its script, its calls. A single task owns them; calls run on
//! tasks of their own and report back here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, info, warn};

use super::metrics::BotMetrics;
use super::records::{CdrLog, call_record, recording_path, write_sidecars};
use crate::call::{
    self, Action, ActorInput, CALLS_TARGET, CallCommand, CallInfo, CallReport, CallSetup,
    CallTable, Delivery, Direction, Inbox, LiveCalls, Origin, RING_TIMEOUT,
};
use crate::config::{BotConfig, RecordMode};
use crate::connection::{FaultLog, Link, LinkEvent, LinkSettings};
use crate::media::{MediaRuntime, RecordOptions};
use crate::protocol::{
    CallId, ClientFrame, ConnectionState, Dialect, Invite, ServerFrame, SipCode,
};
use crate::script::{BotApi, BotCommand, Limits, ScriptErrors, ScriptHost, client_value};
use crate::speech::Speech;
use crate::untrusted::escaped;
use crate::voice::StreamSettings;

/// A reload waits this long after the last request, so an editor's save (truncate, write,
/// rename …) is compiled once it is complete.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);

/// What the daemon asks of a bot.
#[derive(Debug)]
pub enum BotControl {
    /// Compile the script again (file changed, SIGHUP).
    Reload,
    /// Place a call as if the script had (campaigns); `done` gets the finished call. A bot
    /// that is shutting down drops `done` without dialling.
    Dial {
        to: String,
        vars: BTreeMap<String, String>,
        /// How long the call may ring (default: a minute).
        ring_timeout: Option<Duration>,
        done: oneshot::Sender<Box<CallInfo>>,
    },
    /// Take no new calls; hang up the rest after `grace`; then stop.
    Shutdown { grace: Duration },
}

/// What the daemon (`/healthz`, `/readyz`, the dashboard) can see of a bot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotStatus {
    pub connection: Option<ConnectionState>,
    pub active_calls: usize,
    /// Calls since the daemon started, either way.
    pub total_calls: u64,
    /// Other extensions the bot sees online, of those it has heard of.
    pub clients_online: usize,
    pub clients_known: usize,
    /// The latest link failure (with the setting to fix, when a setting must change).
    pub last_error: Option<Noted>,
    /// Script reloads done, and the latest one (its error when it was refused).
    pub reloads: u64,
    pub last_reload: Option<Noted>,
    pub last_reload_failed: bool,
    /// Shutting down: no new calls.
    pub draining: bool,
}

/// Something that happened, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted {
    pub at: SystemTime,
    pub text: String,
}

impl Noted {
    fn now(text: impl Into<String>) -> Self {
        Self {
            at: SystemTime::now(),
            text: text.into(),
        }
    }
}

/// Whether the bot's link is registered with the PBX (calls can be placed only then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    /// Not yet: the first grant is no reconnect.
    Never,
    Granted,
    /// Was granted and lost it: the next grant is a reconnect.
    Lost,
}

/// Whether the bot takes calls, or is shutting down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Running,
    /// Shut down: no new calls; those still live get until `hang_up_at`.
    Draining {
        hang_up_at: Instant,
    },
    /// The grace is over and the calls left were told to hang up: waiting for their reports.
    HangingUp,
}

impl Lifecycle {
    /// No new calls are taken or placed.
    fn is_closing(self) -> bool {
        self != Lifecycle::Running
    }

    /// When the calls still live are hung up, if that is still to come.
    fn hang_up_at(self) -> Option<Instant> {
        match self {
            Lifecycle::Draining { hang_up_at } => Some(hang_up_at),
            Lifecycle::Running | Lifecycle::HangingUp => None,
        }
    }
}

pub struct BotTask {
    config: Arc<BotConfig>,
    /// The bot's key in the config (`bots[2]`), for messages that name a setting.
    key: String,
    /// Faults (settings to fix) said once each.
    faults: FaultLog,
    live: LiveCalls,
    total_calls: u64,
    link: Link,
    events: mpsc::Receiver<LinkEvent>,
    script: ScriptHost,
    media: MediaRuntime,
    speech: Speech,
    dialect: Dialect,
    registration: Registration,
    /// Live calls, each with whoever waits for its end (campaign dials).
    calls: CallTable<Option<oneshot::Sender<Box<CallInfo>>>>,
    reports: mpsc::UnboundedSender<CallReport>,
    reports_rx: mpsc::UnboundedReceiver<CallReport>,
    commands: mpsc::UnboundedReceiver<BotCommand>,
    control: mpsc::Receiver<BotControl>,
    status: watch::Sender<BotStatus>,
    timers: HashMap<String, Instant>,
    metrics: BotMetrics,
    cdr: Arc<CdrLog>,
    lifecycle: Lifecycle,
    /// A reload asked for, and when it is due.
    reload_at: Option<Instant>,
    /// Spaces the bot's outbound calls (`max_cps`).
    dial_pacer: Arc<crate::call::Pacer>,
    /// How the bot's calls reach voice agents.
    stream: Arc<StreamSettings>,
}

/// Handles to a running bot.
pub struct BotHandle {
    pub name: String,
    pub extension: String,
    /// The script file, for the reload watcher.
    pub script: std::path::PathBuf,
    /// Where its recordings go (the dashboard serves files from inside it only).
    pub recordings: std::path::PathBuf,
    pub live: LiveCalls,
    pub script_errors: ScriptErrors,
    pub control: mpsc::Sender<BotControl>,
    pub status: watch::Receiver<BotStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What a bot reaches out to: its PBX and the voice agents its calls are streamed to.
pub struct BotPeers {
    pub link: LinkSettings,
    pub stream: Arc<StreamSettings>,
}

impl BotTask {
    /// Compiles the bot's script, opens its link and starts its task; its calls share the
    /// daemon's media runtime and speech cache.
    pub fn spawn(
        config: Arc<BotConfig>,
        key: String,
        BotPeers { link, stream }: BotPeers,
        (media, speech): (MediaRuntime, Speech),
        metrics: BotMetrics,
        cdr: Arc<CdrLog>,
        limits: Limits,
    ) -> Result<BotHandle, crate::script::ScriptError> {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let api = BotApi::for_bot(&config, commands_tx);
        let script = ScriptHost::load(&config.script, api, limits, metrics.script_errors.clone())?;
        let dialect = link.dialect.initial();
        let (link, events) = Link::spawn(link);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (control_tx, control) = mpsc::channel(8);
        let (status_tx, status) = watch::channel(BotStatus::default());
        let name = config.name.clone();
        let extension = config.extension.clone();
        let script_file = config.script.clone();
        let recordings = config
            .recordings
            .join(crate::untrusted::file_stem(&config.name));
        let script_errors = script.errors();
        let live = LiveCalls::default();
        let max_cps = config.max_cps;
        let task = BotTask {
            config,
            key,
            faults: FaultLog::default(),
            live: live.clone(),
            total_calls: 0,
            link,
            events,
            script,
            media,
            speech,
            dialect,
            registration: Registration::Never,
            calls: CallTable::default(),
            reports,
            reports_rx,
            commands,
            control,
            status: status_tx,
            timers: HashMap::new(),
            metrics,
            cdr,
            lifecycle: Lifecycle::Running,
            reload_at: None,
            dial_pacer: Arc::new(crate::call::Pacer::new(max_cps)),
            stream,
        };
        let span = tracing::info_span!("bot", bot = %name);
        let task = tokio::spawn(task.run().instrument(span));
        Ok(BotHandle {
            name,
            extension,
            script: script_file,
            recordings,
            live,
            script_errors,
            control: control_tx,
            status,
            task,
        })
    }

    async fn run(mut self) {
        self.script.bot_event("on_start", ());
        loop {
            if self.lifecycle.is_closing() && self.calls.is_empty() {
                break;
            }
            let next_timer = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(name, at)| (name.clone(), *at));
            let wake = next_timer
                .as_ref()
                .map(|(_, at)| *at)
                .into_iter()
                .chain(self.lifecycle.hang_up_at())
                .chain(self.reload_at)
                .min();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.link_event(event).await,
                    None => break,
                },
                Some(report) = self.reports_rx.recv() => self.call_report(report),
                Some(command) = self.commands.recv() => self.bot_command(command),
                control = self.control.recv() => match control {
                    Some(BotControl::Reload) => {
                        self.reload_at = Some(Instant::now() + RELOAD_DEBOUNCE);
                    }
                    Some(BotControl::Dial { to, vars, ring_timeout, done }) => {
                        let ring_timeout = ring_timeout.unwrap_or(RING_TIMEOUT);
                        self.dial(to, vars, None, Some(done), ring_timeout);
                    }
                    Some(BotControl::Shutdown { grace }) => self.shut_down(grace),
                    None => self.shut_down(Duration::ZERO),
                },
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.wake(next_timer);
                }
            }
        }
        info!("stopped");
        self.link.close().await;
    }

    fn publish_status(&self, connection: Option<ConnectionState>) {
        let (online, known) = self.script.bot().clients_online();
        self.status.send_modify(|status| {
            if connection.is_some() {
                status.connection = connection;
            }
            status.active_calls = self.calls.len();
            status.total_calls = self.total_calls;
            status.clients_online = online;
            status.clients_known = known;
            status.draining = self.lifecycle.is_closing();
        });
        self.metrics.active.set(self.calls.len() as i64);
    }

    fn reload(&mut self) {
        let failed = match self.script.reload() {
            Ok(()) => {
                info!("script {} reloaded", self.script.file().display());
                self.metrics.reloads_ok.inc();
                self.script.bot_event("on_start", ());
                None
            }
            Err(e) => {
                warn!("script not reloaded, the previous version stays: {e}");
                self.metrics.reloads_failed.inc();
                Some(e.to_string())
            }
        };
        self.status.send_modify(|status| {
            status.reloads += 1;
            status.last_reload_failed = failed.is_some();
            status.last_reload = Some(Noted::now(failed.unwrap_or_else(|| "reloaded".into())));
        });
    }

    fn shut_down(&mut self, grace: Duration) {
        if !self.lifecycle.is_closing() {
            info!("shutting down: no new calls, {} live", self.calls.len());
            self.lifecycle = Lifecycle::Draining {
                hang_up_at: Instant::now() + grace,
            };
            self.publish_status(None);
        }
    }

    fn wake(&mut self, timer: Option<(String, Instant)>) {
        let now = Instant::now();
        if self.reload_at.is_some_and(|at| at <= now) {
            self.reload_at = None;
            self.reload();
        }
        if self.lifecycle.hang_up_at().is_some_and(|at| at <= now) {
            // Grace is over: hang up what is left, then wait for the calls to report.
            self.calls
                .tell_all(|| ActorInput::Command(CallCommand::Stop));
            self.calls
                .tell_all(|| ActorInput::Command(CallCommand::Queue(Action::Hangup)));
            self.lifecycle = Lifecycle::HangingUp;
        }
        if let Some((name, at)) = timer
            && at <= now
        {
            self.timers.remove(&name);
            self.script.bot().timer_fired(&name);
            self.script.bot_event("on_timer", (name,));
        }
    }

    async fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connection {
                state,
                dialect,
                reason,
                fault,
            } => {
                self.dialect = dialect;
                if state == ConnectionState::AccessGranted {
                    if self.registration == Registration::Lost {
                        self.metrics.reconnects.inc();
                    }
                    self.registration = Registration::Granted;
                    self.faults.cleared();
                    self.metrics.connected.set(1);
                } else {
                    let noted = match &fault {
                        Some(fault) => {
                            let text = format!("{fault}: {}", fault.config_fix(&self.key));
                            if self.faults.seen(fault) {
                                tracing::error!(
                                    "{}: {text}; trying again now and then",
                                    state.as_str()
                                );
                            }
                            text
                        }
                        None => reason.unwrap_or_else(|| state.as_str().to_owned()),
                    };
                    self.status
                        .send_modify(|status| status.last_error = Some(Noted::now(noted)));
                    if self.registration == Registration::Granted {
                        self.registration = Registration::Lost;
                    }
                    self.metrics.connected.set(0);
                    // The calls' signalling died with the socket (docs/protocol.md §6 "Reconnect":
                    // the emulator and PBXs drop them too).
                    self.calls.tell_all(|| ActorInput::LinkLost);
                }
                self.publish_status(Some(state));
                self.script
                    .bot_event("on_connection_state", (state.as_str().to_owned(),));
            }
            LinkEvent::Client(client) => {
                self.script.bot().update_client(client.clone());
                self.publish_status(None);
                self.script
                    .bot_event("on_client_state", (client_value(&client),));
            }
            LinkEvent::Frame(frame) => self.frame(frame).await,
        }
    }

    async fn frame(&mut self, frame: ServerFrame) {
        match self.calls.deliver(frame) {
            Delivery::Incoming(invite) => self.incoming(invite).await,
            Delivery::Renamed { id, wire } => self.script.bot().renamed(&id, &wire),
            Delivery::Done => {}
        }
    }

    async fn incoming(&mut self, invite: Invite) {
        // `max_calls` is the bot's capacity for callers: its own dials do not use it up.
        if self.lifecycle.is_closing() || self.calls.inbound() >= self.config.max_calls as usize {
            info!(
                target: CALLS_TARGET,
                "call {} from {} refused: {}",
                escaped(invite.callid.as_str()),
                escaped(&invite.from),
                if self.lifecycle.is_closing() {
                    "shutting down"
                } else {
                    "max_calls reached"
                }
            );
            self.link
                .sender()
                .send(ClientFrame::SipBusy {
                    callid: invite.callid,
                    cseq: invite.cseq,
                    code: SipCode::BUSY_HERE,
                })
                .await;
            self.metrics.call_refused(Direction::Inbound);
            self.total_calls += 1;
            return;
        }
        info!(
            target: CALLS_TARGET,
            "incoming call {} from {}",
            escaped(invite.callid.as_str()),
            escaped(&invite.from)
        );
        let id = invite.callid.to_string();
        let inbox = call::inbox();
        let origin = Origin::Inbound(invite);
        self.start_call(origin, &id, BTreeMap::new(), inbox, None, RING_TIMEOUT);
    }

    /// Starts a call actor with the script's handler; `watcher` hears its end.
    fn start_call(
        &mut self,
        origin: Origin,
        id: &str,
        vars: BTreeMap<String, String>,
        (tx, rx): Inbox,
        watcher: Option<oneshot::Sender<Box<CallInfo>>>,
        ring_timeout: Duration,
    ) {
        self.total_calls += 1;
        let recording = recording_path(&self.config.recordings, &self.config.name, id);
        let record = match self.config.record {
            RecordMode::Off => None,
            mode => Some(RecordOptions {
                path: recording.clone(),
                stereo: mode == RecordMode::Stereo,
                max_secs: None,
            }),
        };
        let setup = CallSetup {
            origin,
            dialect: self.dialect,
            own_extension: self.config.extension.clone(),
            ring_timeout,
            vars,
            record,
            recording_path: recording,
            frames: self.link.sender(),
            media: self.media.clone(),
            dial_pacer: Some(self.dial_pacer.clone()),
            live: Some(self.live.clone()),
            stream: Some(self.stream.clone()),
            detect_machine: self.config.detect_machine,
            speech: self.speech.clone(),
        };
        let handler = Box::new(self.script.call_handler(tx.clone()));
        if self.registration != Registration::Granted {
            let _ = tx.send(ActorInput::LinkLost);
        }
        let key = self.calls.add(&setup.origin, tx, watcher);
        call::spawn(key, setup, handler, rx, self.reports.clone());
        self.publish_status(None);
    }

    fn bot_command(&mut self, command: BotCommand) {
        match command {
            BotCommand::Dial {
                id,
                to,
                vars,
                inbox,
            } => {
                self.dial(to, vars, Some((id, inbox)), None, RING_TIMEOUT);
            }
            BotCommand::SetTimer(name, after) => {
                self.timers.insert(name, Instant::now() + after);
            }
            BotCommand::CancelTimer(name) => {
                self.timers.remove(&name);
            }
        }
    }

    /// Places a call (its id and inbox come from the script's `bot.dial`, or are made here);
    /// `watcher` hears its end. Nothing is dialled when shutting down (and `watcher` is
    /// dropped).
    fn dial(
        &mut self,
        to: String,
        vars: BTreeMap<String, String>,
        made: Option<(CallId, Inbox)>,
        watcher: Option<oneshot::Sender<Box<CallInfo>>>,
        ring_timeout: Duration,
    ) {
        if self.lifecycle.is_closing() {
            warn!("not dialling {to}: shutting down");
            return;
        }
        let (id, inbox) = made.unwrap_or_else(|| (CallId::random(), call::inbox()));
        info!(target: CALLS_TARGET, "dialling {to} as call {id}");
        let name = id.to_string();
        let origin = Origin::Outbound { to, id };
        self.start_call(origin, &name, vars, inbox, watcher, ring_timeout);
    }

    fn call_report(&mut self, report: CallReport) {
        let CallReport { key, info } = report;
        self.script.bot().forget(&info.id);
        let watcher = self.calls.remove(key).flatten();
        self.publish_status(None);
        self.metrics.call_ended(&info);
        let record = call_record(&self.config.name, &info);
        write_sidecars(&info, &record);
        self.cdr.append(&record);
        if let Some(watcher) = watcher {
            let _ = watcher.send(info.clone());
        }
        info!(
            target: CALLS_TARGET,
            "call {} ({} {} → {}) ended: {}",
            escaped(info.id.as_str()),
            info.direction.as_str(),
            escaped(&info.from),
            escaped(&info.to),
            info.end.map_or("?", |e| e.reason.as_str())
        );
    }
}
