//! The call actor: one tokio task per call that runs the state machine with a media leg, the
//! action queue, digit collection and timers, and asks a [`CallHandler`] (the bot's script)
//! what to do at each event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::{Instrument, debug, info, warn};

use super::actions::{Action, ActionQueue};
use super::detection::Detection;
use super::gather::{Gather, GatherOptions, GatherReason, GatherStep, Gathered};
use super::machine::{
    Call, CallEnd, Command, Direction, Input, MediaCommand, MediaResult, Output, Timer,
};
use crate::amd::{AmdEvent, AmdResult, AmdSettings, Beep, Verdict};
use crate::connection::FrameSender;
use crate::media::player::{ItemId, Outcome};
use crate::media::recorder::RecordingReport;
use crate::media::stats::LegStats;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, LegEvents, MediaLeg, MediaRuntime, RecordOptions};
use crate::protocol::{CallId, CallState, ClientFrame, Dialect, Invite, ServerFrame, SipCode};
use crate::speech::Speech;
use crate::voice::{Stream, StreamEvent, StreamRequest, StreamSettings};

/// How long an unanswered call rings unless its setup says otherwise, either way: an inbound
/// call the script never answers, an outbound call nobody picks up.
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);
/// What `on_play_done` names a `say` as.
const SAY: &str = "say";
/// How long a finished call waits for its recording to be closed before it reports.
const RECORDING_CLOSE_WAIT: Duration = Duration::from_secs(3);
/// A connected call that has received no media for this long has lost its far end (whatever
/// the signalling says) and ends. WebRTC peers send packets even in silence.
const MEDIA_SILENCE: Duration = Duration::from_secs(30);
/// How often the media watch looks.
const MEDIA_WATCH: Duration = Duration::from_secs(5);
/// Digits kept in [`CallInfo::digits`] (for CDR and sidecar); a far end pressing keys for hours
/// must not grow the call's record without bound. Scripts still hear every digit.
const DIGITS_KEPT: usize = 1000;

/// How a call begins.
#[derive(Clone, Debug)]
pub enum Origin {
    /// An `invitesdp` for this bot.
    Inbound(Invite),
    /// A call the bot places; `id` is ours until the PBX gives its own.
    Outbound { to: String, id: CallId },
}

/// Everything a call needs besides its handler.
pub struct CallSetup {
    pub origin: Origin,
    pub dialect: Dialect,
    pub own_extension: String,
    /// How long the call may ring unanswered ([`RING_TIMEOUT`] unless a campaign or `dial`
    /// asks for another).
    pub ring_timeout: Duration,
    /// `bot.dial(number, vars)`'s vars.
    pub vars: BTreeMap<String, String>,
    /// Record from the moment the call is answered.
    pub record: Option<RecordOptions>,
    /// Where `call.record()` writes when it names no file.
    pub recording_path: PathBuf,
    pub frames: FrameSender,
    pub media: MediaRuntime,
    /// The bot's outbound pacer: our offer waits for a slot before it goes out.
    pub dial_pacer: Option<Arc<super::Pacer>>,
    /// Where the call shows itself while it lasts (the dashboard's live calls).
    pub live: Option<super::LiveCalls>,
    /// How `call.stream(url)` reaches voice agents; `None`: streams are refused.
    pub stream: Option<Arc<StreamSettings>>,
    /// Answering-machine detection from the answer on (the bot's `detect_machine`).
    pub detect_machine: Option<AmdSettings>,
    /// Renders `say` text.
    pub speech: Speech,
}

/// What a handler sees of a call: a snapshot taken before each event.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// The id the call started with (stable for logs and files, even when the PBX renames it).
    pub id: CallId,
    pub direction: Direction,
    pub from: String,
    pub from_name: String,
    pub to: String,
    pub state: Option<CallState>,
    pub started: SystemTime,
    pub answered: Option<SystemTime>,
    pub ended: Option<SystemTime>,
    /// The digits received so far (the first thousand).
    pub digits: String,
    pub vars: BTreeMap<String, String>,
    pub end: Option<CallEnd>,
    pub gather_reason: Option<GatherReason>,
    /// About the prompt of the latest `PlayDone`.
    pub play_interrupted: bool,
    pub play_error: Option<String>,
    /// `set_result(text)`.
    pub result: Option<String>,
    /// Recordings closed so far, and the latest recording error.
    pub recordings: Vec<PathBuf>,
    pub recording_error: Option<String>,
    /// Offer received → answer sent (inbound); dial → answered (outbound).
    pub setup_time: Option<Duration>,
    /// Who answered, by answering-machine detection (`on_machine`).
    pub machine: Option<Verdict>,
    /// When a machine's greeting ended (`on_beep`).
    pub beep: Option<Beep>,
    /// The leg's packet counts, loss and jitter, filled in when the call ends.
    pub stats: LegStats,
}

impl CallInfo {
    /// A call that is just starting; `from` is (number, display name).
    pub fn new(
        id: CallId,
        direction: Direction,
        from: (&str, &str),
        to: &str,
        vars: BTreeMap<String, String>,
    ) -> Self {
        Self {
            id,
            direction,
            from: from.0.to_owned(),
            from_name: from.1.to_owned(),
            to: to.to_owned(),
            state: None,
            started: SystemTime::now(),
            answered: None,
            ended: None,
            digits: String::new(),
            vars,
            end: None,
            gather_reason: None,
            play_interrupted: false,
            play_error: None,
            result: None,
            recordings: Vec::new(),
            recording_error: None,
            setup_time: None,
            machine: None,
            beep: None,
            stats: LegStats::default(),
        }
    }

    /// How long the call has been (or was) connected.
    pub fn duration(&self) -> Duration {
        match self.answered {
            Some(answered) => self
                .ended
                .unwrap_or_else(SystemTime::now)
                .duration_since(answered)
                .unwrap_or_default(),
            None => Duration::ZERO,
        }
    }
}

/// What happened, for the handler.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    Incoming,
    State(CallState),
    Dtmf(char),
    /// A gather finished (`gather_reason` says why).
    Digits(String),
    /// A prompt finished or was cut off (`play_interrupted`, `play_error`).
    PlayDone(String),
    Timer(String),
    /// A recording file was closed (or failed: `recording_error`).
    Recording(PathBuf),
    /// The voice-agent stream connected, returned a mark, closed or failed.
    Stream(StreamEvent),
    /// Answering-machine detection decided (`machine`).
    Machine(Verdict),
    /// A machine's greeting ended (`beep`).
    Beep(Beep),
}

/// What a handler asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum CallCommand {
    Answer,
    Reject(SipCode),
    /// Clear the action queue and cut the current prompt.
    Stop,
    Gather(GatherOptions),
    /// Record (to `path`, or the bot's recording path when `None`).
    Record {
        path: Option<PathBuf>,
        stereo: bool,
        max_secs: Option<u32>,
    },
    StopRecording,
    /// End the voice-agent stream (its queued audio is dropped).
    StopStream,
    Echo(bool),
    SetTimer(String, Duration),
    CancelTimer(String),
    SetResult(String),
    /// Start answering-machine detection (now, or when the call is answered).
    DetectMachine(AmdSettings),
    /// A queued command (play, pause, tone, say, send_dtmf, hold, resume, transfer, hangup).
    Queue(Action),
    /// Another call of the bot is being joined with this one's far end (attended transfer).
    TransferPending,
}

/// The bot's side of a call: usually its script.
pub trait CallHandler: Send + 'static {
    /// Handles one event; the commands run in order. An error is logged by the caller; for
    /// `Incoming` it also rejects the call with 500.
    fn handle(&mut self, call: &CallInfo, event: &CallEvent) -> Result<Vec<CallCommand>, String>;
}

/// What the bot hears from a call: that it is over, with its final snapshot (for CDRs,
/// sidecars and metrics).
#[derive(Debug)]
pub struct CallReport {
    pub key: u64,
    pub info: Box<CallInfo>,
}

/// Sent to a running call by its bot.
#[derive(Debug)]
pub enum ActorInput {
    Frame(ServerFrame),
    LinkLost,
    Command(CallCommand),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TimerId {
    Machine(Timer),
    Gather,
    Script(String),
    /// Looks whether media still arrives.
    MediaWatch,
    /// Answering-machine detection decides without the audio.
    Detection,
}

struct Actor {
    key: u64,
    machine: Call,
    leg: Arc<MediaLeg>,
    handler: Box<dyn CallHandler>,
    info: CallInfo,
    frames: FrameSender,
    dial_pacer: Option<Arc<super::Pacer>>,
    live: Option<super::LiveCalls>,
    reports: mpsc::UnboundedSender<CallReport>,
    /// Events for the handler, dispatched once the change that raised them has been applied
    /// in full (every machine output drained), so a handler never runs in the middle of one.
    events: VecDeque<CallEvent>,
    actions: ActionQueue,
    gather: Option<Gather>,
    /// Player items that are prompts (for `PlayDone`), and which one is the gather's.
    prompts: HashMap<ItemId, String>,
    gather_prompt: Option<ItemId>,
    timers: HashMap<TimerId, Instant>,
    record: Option<RecordOptions>,
    recording_path: PathBuf,
    /// Recordings started to `recording_path` so far.
    default_recordings: u32,
    recordings_open: usize,
    created: Instant,
    /// Packets received at the media watch's last look, and when that count last grew.
    media_seen: (u64, Instant),
    stream_settings: Option<Arc<StreamSettings>>,
    /// The voice-agent stream, while one is open.
    stream: Option<Stream>,
    /// Answering-machine detection in progress, and one asked for before the answer.
    detection: Option<Detection>,
    pending_detection: Option<AmdSettings>,
    speech: Speech,
    media: MediaRuntime,
    /// The id of the next item queued on the leg.
    next_item: ItemId,
}

/// The open stream's next event; never ready without a stream. A stream whose task is gone
/// without a word counts as closed.
async fn next_stream_event(stream: &mut Option<Stream>) -> StreamEvent {
    match stream {
        Some(stream) => stream
            .next_event()
            .await
            .unwrap_or_else(|| StreamEvent::Closed("the stream ended".into())),
        None => std::future::pending().await,
    }
}

/// `call.wav` → `call-<n>.wav`.
fn numbered(path: &std::path::Path, n: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}-{n}.wav"))
}

/// Starts a call on a task of its own (it creates its leg first). `inbox` is where the bot
/// (and the handler's `call` objects) send it frames and commands.
pub fn spawn(
    key: u64,
    setup: CallSetup,
    handler: Box<dyn CallHandler>,
    inbox: mpsc::UnboundedReceiver<ActorInput>,
    reports: mpsc::UnboundedSender<CallReport>,
) {
    let id = match &setup.origin {
        Origin::Inbound(invite) => invite.callid.clone(),
        Origin::Outbound { id, .. } => id.clone(),
    };
    let span = tracing::info_span!("call", call = %crate::untrusted::escaped(id.as_str()));
    tokio::spawn(run(key, setup, handler, inbox, reports).instrument(span));
}

async fn run(
    key: u64,
    setup: CallSetup,
    handler: Box<dyn CallHandler>,
    mut inputs: mpsc::UnboundedReceiver<ActorInput>,
    reports: mpsc::UnboundedSender<CallReport>,
) {
    let created = Instant::now();
    let info = match &setup.origin {
        Origin::Inbound(invite) => CallInfo::new(
            invite.callid.clone(),
            Direction::Inbound,
            (
                &invite.from,
                invite.from_display.as_deref().unwrap_or_default(),
            ),
            &setup.own_extension,
            setup.vars.clone(),
        ),
        Origin::Outbound { to, id } => CallInfo::new(
            id.clone(),
            Direction::Outbound,
            (&setup.own_extension, ""),
            to,
            setup.vars.clone(),
        ),
    };
    let direction = info.direction;
    let (leg, mut leg_events) = match setup.media.new_leg().await {
        Ok((leg, events)) => (Arc::new(leg), events),
        Err(e) => {
            warn!("no media leg: {e}");
            if let Origin::Inbound(invite) = &setup.origin {
                setup
                    .frames
                    .send(ClientFrame::SipBusy {
                        callid: invite.callid.clone(),
                        cseq: invite.cseq.clone(),
                        code: SipCode::SERVER_ERROR,
                    })
                    .await;
            }
            let mut info = info;
            info.ended = Some(SystemTime::now());
            info.end = Some(CallEnd {
                reason: super::EndReason::MediaFailed,
                code: Some(SipCode::SERVER_ERROR),
            });
            let _ = reports.send(CallReport {
                key,
                info: Box::new(info),
            });
            return;
        }
    };
    let (machine, outputs) = match &setup.origin {
        Origin::Inbound(invite) => Call::inbound(
            invite,
            setup.dialect,
            &setup.own_extension,
            setup.ring_timeout,
        ),
        Origin::Outbound { to, id } => Call::outbound(
            to,
            id.clone(),
            setup.dialect,
            &setup.own_extension,
            setup.ring_timeout,
        ),
    };
    let mut actor = Actor {
        key,
        machine,
        leg,
        handler,
        info,
        frames: setup.frames,
        dial_pacer: setup.dial_pacer,
        live: setup.live,
        reports,
        events: VecDeque::new(),
        actions: ActionQueue::default(),
        gather: None,
        prompts: HashMap::new(),
        gather_prompt: None,
        timers: HashMap::new(),
        record: setup.record,
        recording_path: setup.recording_path,
        default_recordings: 0,
        recordings_open: 0,
        created,
        media_seen: (0, created),
        stream_settings: setup.stream,
        stream: None,
        detection: None,
        pending_detection: setup
            .detect_machine
            .filter(|_| direction == Direction::Outbound),
        speech: setup.speech,
        media: setup.media,
        next_item: 1,
    };
    actor
        .timers
        .insert(TimerId::MediaWatch, Instant::now() + MEDIA_WATCH);
    if let Some(live) = &actor.live {
        live.insert(key, &actor.info, actor.leg.clone());
    }
    actor.apply(outputs).await;
    if direction == Direction::Inbound {
        actor.events.push_back(CallEvent::Incoming);
    }
    actor.dispatch().await;
    // Each turn applies one change (an input, a leg event, a timer) with every machine output
    // it causes, then lets the handler hear the events it raised.
    while actor.machine.end().is_none() {
        let next = actor
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(id, at)| (id.clone(), *at));
        let deadline = next
            .as_ref()
            .map_or_else(tokio::time::Instant::now, |(_, at)| {
                tokio::time::Instant::from_std(*at)
            });
        tokio::select! {
            input = inputs.recv() => match input {
                Some(ActorInput::Frame(frame)) => actor.input(Input::Frame(frame)).await,
                Some(ActorInput::LinkLost) | None => actor.input(Input::LinkLost).await,
                Some(ActorInput::Command(command)) => actor.command(command).await,
            },
            event = leg_events.recv() => match event {
                Some(event) => actor.leg_event(event).await,
                None => actor.input(Input::MediaLost).await,
            },
            event = next_stream_event(&mut actor.stream) => actor.stream_event(event).await,
            Some(audio) = async {
                match actor.detection.as_mut() {
                    Some(detection) => Some(detection.next_audio().await),
                    None => std::future::pending().await,
                }
            } => {
                let events = actor.detection.as_mut().map(|d| d.feed(&audio)).unwrap_or_default();
                actor.detected(events).await;
            },
            () = sleep_until(deadline), if next.is_some() => {
                if let Some((id, _)) = next {
                    actor.timers.remove(&id);
                    actor.timer(id).await;
                }
            }
        }
        actor.dispatch().await;
    }
    actor.finish(&mut leg_events).await;
}

impl Actor {
    /// Names the next item queued on the leg.
    fn item(&mut self) -> ItemId {
        let id = self.next_item;
        self.next_item += 1;
        id
    }

    /// Brings the call's live entry up to date.
    fn show_live(&self) {
        if let Some(live) = &self.live {
            live.update(self.key, &self.info);
        }
    }

    /// Lets the handler hear `event` now (with any events still queued before it). For
    /// changes outside the machine; its outputs queue their events instead (see `apply`).
    async fn event(&mut self, event: CallEvent) {
        self.events.push_back(event);
        self.dispatch().await;
    }

    /// Lets the handler hear every queued event in order, running each one's commands (which
    /// may queue more events) before the next. Never called while machine outputs are being
    /// applied.
    async fn dispatch(&mut self) {
        while let Some(event) = self.events.pop_front() {
            let commands = match self.handler.handle(&self.info, &event) {
                Ok(commands) => commands,
                Err(error) => {
                    warn!("script error in {event:?}: {error}");
                    if event == CallEvent::Incoming {
                        vec![CallCommand::Reject(SipCode::SERVER_ERROR)]
                    } else {
                        Vec::new()
                    }
                }
            };
            for command in commands {
                self.command(command).await;
            }
        }
    }

    async fn input(&mut self, input: Input) {
        let outputs = self.machine.handle(input);
        self.apply(outputs).await;
    }

    async fn apply(&mut self, outputs: Vec<Output>) {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Send(frame) => {
                    if let (ClientFrame::SdpPacket { .. }, Some(pacer)) = (&frame, &self.dial_pacer)
                    {
                        pacer.wait().await;
                    }
                    if matches!(
                        frame,
                        ClientFrame::Sdp200Ok { .. } | ClientFrame::SipAck { .. }
                    ) && self.info.setup_time.is_none()
                    {
                        self.info.setup_time = Some(self.created.elapsed());
                    }
                    self.frames.send(frame).await;
                }
                Output::Media(command) => {
                    if let Some(result) = self.media(command).await {
                        queue.extend(self.machine.handle(Input::Media(result)));
                    }
                }
                Output::State(state) => {
                    if state == CallState::InCall && self.info.answered.is_none() {
                        self.info.answered = Some(SystemTime::now());
                        if let Some(options) = self.record.take() {
                            self.start_recording(options);
                        }
                        if let Some(settings) = self.pending_detection.take() {
                            self.start_detection(settings);
                        }
                    }
                    self.info.state = Some(state);
                    self.show_live();
                    self.events.push_back(CallEvent::State(state));
                }
                Output::SetTimer(timer, after) => {
                    self.timers
                        .insert(TimerId::Machine(timer), Instant::now() + after);
                }
                Output::CancelTimer(timer) => {
                    self.timers.remove(&TimerId::Machine(timer));
                }
                Output::Ended(end) => {
                    self.info.end = Some(end);
                    self.info.ended = Some(SystemTime::now());
                    self.info.state = Some(end.reason.state());
                    info!(
                        target: super::CALLS_TARGET,
                        "call ended: {} ({})",
                        end.reason.as_str(),
                        end.code.map_or_else(|| "-".to_owned(), |c| c.to_string())
                    );
                }
            }
        }
    }

    /// Does media work; returns its result for the machine when it has one.
    async fn media(&mut self, command: MediaCommand) -> Option<MediaResult> {
        let result = match command {
            MediaCommand::CreateOffer => self.leg.create_offer().await.map(MediaResult::Offer),
            MediaCommand::AcceptOffer(offer) => {
                self.leg.accept_offer(&offer).await.map(MediaResult::Answer)
            }
            MediaCommand::RollbackAndAccept(offer) => match self.leg.rollback().await {
                Ok(()) => self.leg.accept_offer(&offer).await.map(MediaResult::Answer),
                Err(e) => Err(e),
            },
            MediaCommand::ApplyAnswer(answer) => self
                .leg
                .apply_answer(&answer)
                .await
                .map(|()| MediaResult::AnswerApplied),
            MediaCommand::AddCandidate(candidate) => {
                if let Err(e) = self.leg.add_remote_candidate(&candidate).await {
                    debug!("remote candidate refused: {e}");
                }
                return None;
            }
            MediaCommand::Mute(muted) => {
                self.leg.set_muted(muted);
                return None;
            }
        };
        Some(result.unwrap_or_else(|e| MediaResult::Failed(e.to_string())))
    }

    /// The recorder creates the folder and reports the file's end, closed or failed, once.
    /// Files are created new, so a call's second recording to its default path gets a name
    /// of its own (`<name>-2.wav`) rather than failing on (or replacing) the first.
    fn start_recording(&mut self, mut options: RecordOptions) {
        if options.path == self.recording_path {
            self.default_recordings += 1;
            if self.default_recordings > 1 {
                options.path = numbered(&self.recording_path, self.default_recordings);
            }
        }
        self.recordings_open += 1;
        self.leg.record(options);
    }

    async fn command(&mut self, command: CallCommand) {
        match command {
            // Bookkeeping: also from the handler that hears the call end.
            CallCommand::SetResult(text) => self.info.result = Some(text),
            // Everything else acts on the call, which is over.
            _ if self.machine.end().is_some() => {}
            CallCommand::Answer => self.input(Input::Command(Command::Answer)).await,
            CallCommand::Reject(code) => self.input(Input::Command(Command::Reject(code))).await,
            CallCommand::Stop => {
                self.actions.clear();
                self.leg.stop();
            }
            CallCommand::Gather(options) => {
                let (gather, wait) = Gather::start(options);
                self.timers.remove(&TimerId::Gather);
                if let Some(wait) = wait {
                    self.timers.insert(TimerId::Gather, Instant::now() + wait);
                }
                let prompt = gather.prompt().map(|p| p.to_path_buf());
                self.gather = Some(gather);
                self.gather_prompt = None;
                if let Some(prompt) = prompt {
                    Box::pin(self.queue(Action::Play {
                        prompt,
                        loops: 1,
                        for_gather: true,
                    }))
                    .await;
                }
            }
            CallCommand::Record {
                path,
                stereo,
                max_secs,
            } => {
                let options = RecordOptions {
                    path: path.unwrap_or_else(|| self.recording_path.clone()),
                    stereo,
                    max_secs,
                };
                if self.machine.is_connected() {
                    self.start_recording(options);
                } else {
                    self.record = Some(options);
                }
            }
            CallCommand::StopRecording => {
                self.record = None;
                self.leg.stop_recording();
            }
            CallCommand::StopStream => {
                if let Some(stream) = self.stream.as_mut() {
                    stream.stop("stopped");
                }
            }
            CallCommand::Echo(on) => self.leg.set_echo(on),
            CallCommand::SetTimer(name, after) => {
                self.timers
                    .insert(TimerId::Script(name), Instant::now() + after);
            }
            CallCommand::CancelTimer(name) => {
                self.timers.remove(&TimerId::Script(name));
            }
            CallCommand::DetectMachine(settings) => {
                if self.machine.is_connected() {
                    self.start_detection(settings);
                } else {
                    self.pending_detection = Some(settings);
                }
            }
            CallCommand::Queue(action) => Box::pin(self.queue(action)).await,
            CallCommand::TransferPending => {
                self.input(Input::Command(Command::TransferPending)).await;
            }
        }
    }

    async fn queue(&mut self, action: Action) {
        for ready in self.actions.push(action) {
            self.perform(ready).await;
        }
    }

    async fn perform(&mut self, action: Action) {
        let id = match action {
            Action::Play {
                prompt,
                loops,
                for_gather,
            } => {
                let name = prompt
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let id = self.item();
                self.leg.play(id, prompt, loops);
                self.prompts.insert(id, name);
                if for_gather {
                    self.gather_prompt = Some(id);
                }
                Some(id)
            }
            Action::Pause { ms } => {
                let id = self.item();
                self.leg.pause(id, ms);
                Some(id)
            }
            Action::Stream(request) => self.open_stream(request).await,
            Action::Say(utterance) => self.say(utterance).await,
            Action::Tone { hz, ms } => {
                let id = self.item();
                self.leg.tone(id, hz, ms);
                Some(id)
            }
            Action::SendDtmf { digits } => match self.leg.send_dtmf(self.next_item, &digits) {
                Ok(()) => Some(self.item()),
                Err(e) => {
                    warn!("{e}");
                    None
                }
            },
            Action::Hold => return self.input(Input::Command(Command::Hold)).await,
            Action::Resume => return self.input(Input::Command(Command::Resume)).await,
            Action::Transfer { to } => {
                return self.input(Input::Command(Command::Transfer(to))).await;
            }
            Action::AttendedTransfer { id2, to } => {
                let command = Command::AttendedTransfer { id2, to };
                return self.input(Input::Command(command)).await;
            }
            Action::Hangup => return self.input(Input::Command(Command::Hangup)).await,
        };
        match id {
            Some(id) => self.actions.dispatched(id),
            None => {
                for ready in self.actions.not_dispatched() {
                    Box::pin(self.perform(ready)).await;
                }
            }
        }
    }

    /// Opens a stream (replacing one that is open); returns the player item of its audio.
    async fn open_stream(&mut self, request: StreamRequest) -> Option<ItemId> {
        let Some(settings) = self.stream_settings.clone() else {
            let refused = StreamEvent::Error("streams are not set up for this call".into());
            self.event(CallEvent::Stream(refused)).await;
            return None;
        };
        if let Some(mut old) = self.stream.take() {
            old.stop("replaced by a new stream");
        }
        let item = self.item();
        let stream = Stream::open(&self.leg, item, self.info.id.as_str(), request, settings);
        self.stream = Some(stream);
        Some(item)
    }

    async fn stream_event(&mut self, event: StreamEvent) {
        if matches!(event, StreamEvent::Closed(_) | StreamEvent::Error(_)) {
            self.stream = None;
        }
        self.event(CallEvent::Stream(event)).await;
    }

    /// Starts (or restarts) answering-machine detection on the leg.
    fn start_detection(&mut self, settings: AmdSettings) {
        self.end_detection();
        let detection = Detection::start(&self.leg, settings);
        self.timers
            .insert(TimerId::Detection, detection.deadline(false));
        self.info.machine = None;
        self.info.beep = None;
        self.detection = Some(detection);
    }

    /// What detection decided: the script hears the verdict, then (a machine's) beep; the
    /// detection ends when it has nothing more to say.
    async fn detected(&mut self, events: Vec<AmdEvent>) {
        for event in events {
            match event {
                AmdEvent::Verdict(verdict) => {
                    info!(
                        "answered by {} ({}, {} ms)",
                        verdict.result.as_str(),
                        verdict.reason.as_str(),
                        verdict.ms
                    );
                    self.info.machine = Some(verdict);
                    if let Some(detection) = &self.detection
                        && verdict.result == AmdResult::Machine
                    {
                        self.timers
                            .insert(TimerId::Detection, detection.deadline(true));
                    }
                    self.event(CallEvent::Machine(verdict)).await;
                }
                AmdEvent::Beep(beep) => {
                    info!(
                        "the greeting ended: {} at {} ms",
                        beep.how.as_str(),
                        beep.ms
                    );
                    self.info.beep = Some(beep);
                    self.event(CallEvent::Beep(beep)).await;
                }
            }
        }
        if self.detection.as_ref().is_some_and(Detection::is_done) {
            self.end_detection();
        }
    }

    /// Stops detection (if any): the leg no longer hands it audio.
    fn end_detection(&mut self) {
        if let Some(detection) = self.detection.take() {
            detection.stop(&self.leg);
        }
        self.timers.remove(&TimerId::Detection);
    }

    /// Renders `utterance` (at once when cached) and queues it on the leg like a prompt; a
    /// render that fails is reported as a prompt that failed.
    async fn say(&mut self, utterance: crate::speech::Utterance) -> Option<ItemId> {
        match self.speech.render(utterance).await {
            Ok(rendered) => {
                for gone in &rendered.evicted {
                    self.media.prompts().forget(gone);
                }
                let id = self.item();
                self.leg.play(id, rendered.path, 1);
                self.prompts.insert(id, SAY.to_owned());
                Some(id)
            }
            Err(error) => {
                warn!("{error}");
                self.info.play_interrupted = false;
                self.info.play_error = Some(error.to_string());
                self.event(CallEvent::PlayDone(SAY.to_owned())).await;
                None
            }
        }
    }

    async fn leg_event(&mut self, event: LegEvent) {
        match event {
            LegEvent::LocalCandidate(candidate) => {
                self.input(Input::LocalCandidate(candidate)).await;
            }
            LegEvent::State(TransportState::Failed) => self.input(Input::MediaLost).await,
            LegEvent::State(state) => debug!("media {state:?}"),
            LegEvent::Digit { digit, .. } => self.digit(digit.as_char()).await,
            LegEvent::Played { id, outcome } => {
                if let Some(stream) = self.stream.as_mut()
                    && stream.item() == id
                    && matches!(outcome, Outcome::Interrupted)
                {
                    stream.stop("interrupted");
                }
                if let Some(name) = self.prompts.remove(&id) {
                    self.info.play_interrupted = matches!(outcome, Outcome::Interrupted);
                    self.info.play_error = match &outcome {
                        Outcome::Failed(e) => {
                            warn!("prompt failed: {e}");
                            Some(e.to_string())
                        }
                        _ => None,
                    };
                    if self.gather_prompt == Some(id) {
                        self.gather_prompt = None;
                        if let Some(wait) = self.gather.as_mut().and_then(Gather::prompt_done) {
                            self.timers.insert(TimerId::Gather, Instant::now() + wait);
                        }
                    }
                    self.event(CallEvent::PlayDone(name)).await;
                }
                for ready in self.actions.finished(id) {
                    self.perform(ready).await;
                }
            }
            LegEvent::Recording(report) => self.recording(report).await,
        }
    }

    async fn recording(&mut self, report: RecordingReport) {
        self.recordings_open = self.recordings_open.saturating_sub(1);
        let path = match report {
            RecordingReport::Closed { path, .. } => {
                self.info.recordings.push(path.clone());
                path
            }
            RecordingReport::Failed { path, error } => {
                warn!("recording {}: {error}", path.display());
                self.info.recording_error = Some(error);
                path
            }
        };
        self.event(CallEvent::Recording(path)).await;
    }

    async fn digit(&mut self, digit: char) {
        if self.info.digits.len() < DIGITS_KEPT {
            self.info.digits.push(digit);
        }
        if let Some(stream) = &self.stream {
            stream.dtmf(digit);
        }
        self.event(CallEvent::Dtmf(digit)).await;
        let Some(gather) = self.gather.as_mut() else {
            return;
        };
        match gather.digit(digit) {
            GatherStep::Continue { wait, cut_prompt } => {
                self.timers.insert(TimerId::Gather, Instant::now() + wait);
                if cut_prompt {
                    self.leg.stop();
                }
            }
            GatherStep::Done(gathered) => self.gather_done(gathered).await,
        }
    }

    async fn gather_done(&mut self, Gathered { digits, reason }: Gathered) {
        self.gather = None;
        self.timers.remove(&TimerId::Gather);
        self.info.gather_reason = Some(reason);
        self.event(CallEvent::Digits(digits)).await;
    }

    async fn timer(&mut self, id: TimerId) {
        match id {
            TimerId::Machine(timer) => self.input(Input::Timer(timer)).await,
            TimerId::Gather => {
                if let Some(gathered) = self.gather.as_mut().map(Gather::timed_out) {
                    self.gather_done(gathered).await;
                }
            }
            TimerId::Script(name) => self.event(CallEvent::Timer(name)).await,
            TimerId::Detection => {
                let event = self.detection.as_mut().and_then(Detection::time_up);
                self.detected(event.into_iter().collect()).await;
            }
            TimerId::MediaWatch => {
                let received = self.leg.stats().packets_received;
                let now = Instant::now();
                if received != self.media_seen.0
                    || !self.machine.is_connected()
                    || self.machine.is_held()
                {
                    self.media_seen = (received, now);
                } else if now.duration_since(self.media_seen.1) >= MEDIA_SILENCE {
                    warn!(
                        "no media for {} s: the far end is gone",
                        MEDIA_SILENCE.as_secs()
                    );
                    self.input(Input::MediaLost).await;
                }
                self.timers.insert(TimerId::MediaWatch, now + MEDIA_WATCH);
            }
        }
    }

    /// The call is over: the state event, recordings closed (waiting a moment for the
    /// writer), the leg shut, the report sent.
    async fn finish(mut self, leg_events: &mut LegEvents) {
        self.gather = None;
        self.timers.clear();
        if let Some(mut stream) = self.stream.take() {
            stream.stop("hangup");
        }
        if let Some(state) = self.info.state {
            self.event(CallEvent::State(state)).await;
        }
        self.leg.stop_recording();
        self.leg.close().await;
        let deadline = tokio::time::Instant::now() + RECORDING_CLOSE_WAIT;
        while self.recordings_open > 0 {
            match tokio::time::timeout_at(deadline, leg_events.recv()).await {
                Ok(Some(LegEvent::Recording(report))) => self.recording(report).await,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.info.stats = self.leg.stats();
        if let Some(live) = &self.live {
            live.remove(self.key);
        }
        let _ = self.reports.send(CallReport {
            key: self.key,
            info: Box::new(self.info),
        });
    }
}
