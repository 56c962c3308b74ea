//! One bot at run time: its link, its script, its calls. A single task owns them; calls run on
//! tasks of their own and report back here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, info, warn};

use super::metrics::BotMetrics;
use super::records::{CdrLog, call_record, recording_path, write_sidecars};
use crate::call::{
    self, Action, ActorInput, CallCommand, CallInfo, CallReport, CallSetup, CallTable, Delivery,
    Inbox, Origin,
};
use crate::config::{BotConfig, RecordMode};
use crate::connection::{Link, LinkEvent, LinkSettings};
use crate::media::{MediaRuntime, RecordOptions};
use crate::protocol::{
    CallId, CallState, ClientFrame, ConnectionState, Dialect, Invite, ServerFrame, SipCode,
};
use crate::script::{BotApi, BotCommand, Limits, ScriptHost, client_value};
use crate::untrusted::escaped;

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
        done: oneshot::Sender<Box<CallInfo>>,
    },
    /// Take no new calls; hang up the rest after `grace`; then stop.
    Shutdown { grace: Duration },
}

/// What the daemon (and `/healthz`) can see of a bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotStatus {
    pub connection: Option<ConnectionState>,
    pub active_calls: usize,
}

pub struct BotTask {
    config: Arc<BotConfig>,
    link: Link,
    events: mpsc::Receiver<LinkEvent>,
    script: ScriptHost,
    media: MediaRuntime,
    dialect: Dialect,
    /// The link is registered now: calls can be placed.
    granted: bool,
    /// It has been at least once (a later grant is a reconnect).
    ever_granted: bool,
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
    /// Set by a shutdown: when to hang up whatever is left.
    closing: Option<Instant>,
    /// A reload asked for, and when it is due.
    reload_at: Option<Instant>,
    /// Spaces the bot's outbound calls (`max_cps`).
    dial_pacer: Arc<crate::call::Pacer>,
}

/// Handles to a running bot.
pub struct BotHandle {
    pub name: String,
    /// The script file, for the reload watcher.
    pub script: std::path::PathBuf,
    pub control: mpsc::Sender<BotControl>,
    pub status: watch::Receiver<BotStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

impl BotTask {
    /// Compiles the bot's script, opens its link and starts its task.
    pub fn spawn(
        config: Arc<BotConfig>,
        link: LinkSettings,
        media: MediaRuntime,
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
        let (status_tx, status) = watch::channel(BotStatus {
            connection: None,
            active_calls: 0,
        });
        let name = config.name.clone();
        let script_file = config.script.clone();
        let max_cps = config.max_cps;
        let task = BotTask {
            config,
            link,
            events,
            script,
            media,
            dialect,
            granted: false,
            ever_granted: false,
            calls: CallTable::default(),
            reports,
            reports_rx,
            commands,
            control,
            status: status_tx,
            timers: HashMap::new(),
            metrics,
            cdr,
            closing: None,
            reload_at: None,
            dial_pacer: Arc::new(crate::call::Pacer::new(max_cps)),
        };
        let span = tracing::info_span!("bot", bot = %name);
        let task = tokio::spawn(task.run().instrument(span));
        Ok(BotHandle {
            name,
            script: script_file,
            control: control_tx,
            status,
            task,
        })
    }

    async fn run(mut self) {
        self.script.bot_event("on_start", ());
        loop {
            if self.closing.is_some() && self.calls.is_empty() {
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
                .chain(self.closing)
                .chain(self.reload_at)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
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
                    Some(BotControl::Dial { to, vars, done }) => self.dial(to, vars, None, Some(done)),
                    Some(BotControl::Shutdown { grace }) => self.shut_down(grace),
                    None => self.shut_down(Duration::ZERO),
                },
                () = sleep_until(wake) => self.wake(next_timer),
            }
        }
        info!("stopped");
        self.link.close().await;
    }

    fn publish_status(&self, connection: Option<ConnectionState>) {
        self.status.send_modify(|status| {
            if connection.is_some() {
                status.connection = connection;
            }
            status.active_calls = self.calls.len();
        });
        self.metrics.active.set(self.calls.len() as i64);
    }

    fn reload(&mut self) {
        match self.script.reload() {
            Ok(()) => {
                info!("script {} reloaded", self.script.file().display());
                self.script.bot_event("on_start", ());
            }
            Err(e) => warn!("script not reloaded, the previous version stays: {e}"),
        }
    }

    fn shut_down(&mut self, grace: Duration) {
        if self.closing.is_none() {
            info!("shutting down: no new calls, {} live", self.calls.len());
            self.closing = Some(Instant::now() + grace);
        }
    }

    fn wake(&mut self, timer: Option<(String, Instant)>) {
        let now = Instant::now();
        if self.reload_at.is_some_and(|at| at <= now) {
            self.reload_at = None;
            self.reload();
        }
        if let Some(closing) = self.closing
            && closing <= now
        {
            // Grace is over: hang up what is left, then wait for the calls to report.
            self.calls
                .tell_all(|| ActorInput::Command(CallCommand::Stop));
            self.calls
                .tell_all(|| ActorInput::Command(CallCommand::Queue(Action::Hangup)));
            self.closing = Some(now + Duration::from_secs(3600));
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
            LinkEvent::Connection { state, dialect, .. } => {
                self.dialect = dialect;
                if state == ConnectionState::AccessGranted {
                    if self.ever_granted {
                        self.metrics.reconnects.inc();
                    }
                    self.granted = true;
                    self.ever_granted = true;
                    self.metrics.connected.set(1);
                } else {
                    self.granted = false;
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
        if self.closing.is_some() || self.calls.inbound() >= self.config.max_calls as usize {
            info!(
                "call {} from {} refused: {}",
                escaped(invite.callid.as_str()),
                escaped(&invite.from),
                if self.closing.is_some() {
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
            self.metrics.call_ended(CallState::Busy);
            return;
        }
        info!(
            "incoming call {} from {}",
            escaped(invite.callid.as_str()),
            escaped(&invite.from)
        );
        let id = invite.callid.to_string();
        let inbox = call::inbox();
        self.start_call(Origin::Inbound(invite), &id, BTreeMap::new(), inbox, None);
    }

    /// Starts a call actor with the script's handler; `watcher` hears its end.
    fn start_call(
        &mut self,
        origin: Origin,
        id: &str,
        vars: BTreeMap<String, String>,
        (tx, rx): Inbox,
        watcher: Option<oneshot::Sender<Box<CallInfo>>>,
    ) {
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
            vars,
            record,
            recording_path: recording,
            frames: self.link.sender(),
            media: self.media.clone(),
            dial_pacer: Some(self.dial_pacer.clone()),
        };
        let handler = Box::new(self.script.call_handler(tx.clone()));
        if !self.granted {
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
                self.dial(to, vars, Some((id, inbox)), None);
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
    ) {
        if self.closing.is_some() {
            warn!("not dialling {to}: shutting down");
            return;
        }
        let (id, inbox) = made.unwrap_or_else(|| (CallId::random(), call::inbox()));
        info!("dialling {to} as call {id}");
        let name = id.to_string();
        self.start_call(Origin::Outbound { to, id }, &name, vars, inbox, watcher);
    }

    fn call_report(&mut self, report: CallReport) {
        let CallReport { key, info } = report;
        self.script.bot().forget(&info.id);
        let watcher = self.calls.remove(key).flatten();
        self.publish_status(None);
        if let Some(state) = info.state {
            self.metrics.call_ended(state);
        }
        if let (Some(setup), true) = (info.setup_time, info.answered.is_some()) {
            self.metrics.setup.observe(setup.as_secs_f64());
        }
        let record = call_record(&self.config.name, &info);
        write_sidecars(&info, &record);
        self.cdr.append(&record);
        if let Some(watcher) = watcher {
            let _ = watcher.send(info.clone());
        }
        info!(
            "call {} ({} {} → {}) ended: {}",
            escaped(info.id.as_str()),
            info.direction.as_str(),
            escaped(&info.from),
            escaped(&info.to),
            info.end.map_or("?", |e| e.reason.as_str())
        );
    }
}
