//! What a call decides, as plain values (docs/architecture.md, "Sans-IO cores"): the call
//! machine, the action queue, digit collection, prompts, recordings, streams and detection
//! bookkeeping, and timers as data. The call actor feeds it one [`Change`] at a time with the
//! time, carries out the [`Effect`]s it returns, and lets the script hear each event it
//! hands out ([`CallLogic::next`]); so every decision is tested without sockets, legs or
//! clocks.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::actions::{Action, ActionQueue};
use super::actor::{CallCommand, CallEvent, CallInfo, Origin};
use super::detection::{Detection, ReceivedAudio};
use super::gather::{Gather, GatherStep, Gathered};
use super::machine::{Call, Command, Direction, Input, MediaCommand, MediaResult, Output, Timer};
use crate::amd::{AmdEvent, AmdResult, AmdSettings};
use crate::media::dtmf::Digit;
use crate::media::player::{ItemId, Outcome};
use crate::media::recorder::RecordingReport;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, MediaError, RecordOptions};
use crate::protocol::{CallState, ClientFrame, Dialect, ServerFrame, SipCode};
use crate::speech::Utterance;
use crate::voice::{StreamEvent, StreamRequest};

/// What `on_play_done` names a `say` as.
const SAY: &str = "say";
/// A connected call that has received no media for this long has lost its far end (whatever
/// the signalling says) and ends. WebRTC peers send packets even in silence.
const MEDIA_SILENCE: Duration = Duration::from_secs(30);
/// How often the media watch looks.
const MEDIA_WATCH: Duration = Duration::from_secs(5);
/// Digits kept in [`CallInfo::digits`] (for CDR and sidecar); a far end pressing keys for hours
/// must not grow the call's record without bound. Scripts still hear every digit.
const DIGITS_KEPT: usize = 1000;

/// What the logic needs to know of a call when it starts.
pub struct LogicSetup {
    pub origin: Origin,
    pub dialect: Dialect,
    pub own_extension: String,
    pub ring_timeout: Duration,
    /// The call's record as it starts (its `started` is the wall clock at `now`).
    pub info: CallInfo,
    /// Record from the moment the call is answered.
    pub record: Option<RecordOptions>,
    /// Where `call.record()` writes when it names no file.
    pub recording_path: PathBuf,
    /// Whether `call.stream(url)` may reach voice agents.
    pub streams: bool,
    /// Answering-machine detection from the answer on (outbound calls only).
    pub detect_machine: Option<AmdSettings>,
}

/// One change to the call, in the order it happened.
#[derive(Debug)]
pub enum Change {
    /// A PBX frame about this call.
    Frame(ServerFrame),
    /// The socket to the PBX closed.
    LinkLost,
    /// The leg is gone (its events ended).
    MediaLost,
    /// From the script (or the bot).
    Command(CallCommand),
    /// What an [`Effect::Media`] with a result came to.
    Negotiated(MediaResult),
    /// What an [`Effect::Render`] came to: the file to play, or why there is none.
    Rendered(Result<PathBuf, String>),
    /// What the leg said.
    Leg(LegEvent),
    /// What the voice-agent stream said.
    Stream(StreamEvent),
    /// A received frame, while detection listens ([`Effect::Listen`]).
    Audio(ReceivedAudio),
    /// The time of the earliest timer ([`CallLogic::next_deadline`]) has come.
    Timer,
    /// What an [`Effect::CountPackets`] counted: packets received so far.
    PacketsReceived(u64),
}

/// Work for the leg's player and recorder; items are named by the logic, and their end comes
/// back as a `Played` leg event.
#[derive(Clone, Debug, PartialEq)]
pub enum LegCommand {
    Play {
        id: ItemId,
        path: PathBuf,
        loops: u32,
    },
    Pause {
        id: ItemId,
        ms: u32,
    },
    Tone {
        id: ItemId,
        hz: f32,
        ms: u32,
    },
    /// Digits already checked to be DTMF.
    SendDtmf {
        id: ItemId,
        digits: String,
    },
    /// Clear the player's queue and cut the current item.
    Stop,
    Record(RecordOptions),
    StopRecording,
    Echo(bool),
}

/// What the actor does for the logic, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A frame for the PBX.
    Send(ClientFrame),
    /// Media negotiation (or a candidate, or mute); a result comes back as
    /// [`Change::Negotiated`] before anything else happens.
    Media(MediaCommand),
    Leg(LegCommand),
    /// Render text to a file; the outcome comes back as [`Change::Rendered`] before anything
    /// else happens (the actions after the `say` wait for it).
    Render(Utterance),
    /// Open a voice-agent stream whose audio plays as leg item `item`.
    OpenStream {
        item: ItemId,
        request: StreamRequest,
    },
    /// Hand a digit the far end pressed to the open stream.
    StreamDigit(char),
    /// End the open stream, for this reason.
    StopStream(&'static str),
    /// Start (`true`) or stop handing the leg's received audio in as [`Change::Audio`].
    Listen(bool),
    /// Count the packets the leg received; the count comes back as
    /// [`Change::PacketsReceived`].
    CountPackets,
    /// The call's state changed: show it where live calls are watched.
    Publish,
}

/// What the actor does next in a turn ([`CallLogic::next`]).
#[derive(Debug, PartialEq)]
pub enum Turn {
    /// Let the script hear this, then feed it the script's commands one by one.
    Hear(CallEvent),
    /// Carry these out.
    Do(Vec<Effect>),
}

/// What is left of a change once the script has heard what it raised so far.
#[derive(Debug)]
enum Work {
    Event(CallEvent),
    /// Player item `id` ended: actions waiting for it may go.
    Finished(ItemId),
    /// A released media action never became a player item.
    NotDispatched,
    /// A digit for the gather in progress (after the script heard it).
    GatherDigit(char),
    /// Detection may have said all it has to say.
    DetectionSettled,
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

/// One call's decisions.
pub struct CallLogic {
    machine: Call,
    info: CallInfo,
    created: Instant,
    /// Events for the script and what follows them, in order: a change is applied in full
    /// (every machine output), then the script hears its events, each before what the change
    /// does after it.
    work: VecDeque<Work>,
    actions: ActionQueue,
    /// Actions released by the queue, not yet carried out: those after a `say` wait for its
    /// render.
    ready: VecDeque<Action>,
    /// A `say` is being rendered: `ready` waits for [`Change::Rendered`].
    rendering: bool,
    /// The id the next item queued on the leg gets.
    next_item: ItemId,
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
    /// Packets received at the media watch's last look, and when that count last grew.
    media_seen: (u64, Instant),
    /// Whether streams are set up for this call (`call.stream` is refused otherwise).
    streams: bool,
    /// The open stream's player item.
    stream: Option<ItemId>,
    /// Answering-machine detection in progress, and one asked for before the answer.
    detection: Option<Detection>,
    pending_detection: Option<AmdSettings>,
}

/// `call.wav` → `call-<n>.wav`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}-{n}.wav"))
}

/// The commands a script's answer to `event` comes to: a script error is logged, and for
/// `Incoming` rejects the call with 500.
pub fn script_commands(
    event: &CallEvent,
    answer: Result<Vec<CallCommand>, String>,
) -> Vec<CallCommand> {
    match answer {
        Ok(commands) => commands,
        Err(error) => {
            warn!("script error in {event:?}: {error}");
            if *event == CallEvent::Incoming {
                vec![CallCommand::Reject(SipCode::SERVER_ERROR)]
            } else {
                Vec::new()
            }
        }
    }
}

impl CallLogic {
    /// A call starting at `now`, and what to do first.
    pub fn new(setup: LogicSetup, now: Instant) -> (Self, Vec<Effect>) {
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
        let direction = setup.info.direction;
        let mut logic = Self {
            machine,
            info: setup.info,
            created: now,
            work: VecDeque::new(),
            actions: ActionQueue::default(),
            ready: VecDeque::new(),
            rendering: false,
            next_item: 1,
            gather: None,
            prompts: HashMap::new(),
            gather_prompt: None,
            timers: HashMap::from([(TimerId::MediaWatch, now + MEDIA_WATCH)]),
            record: setup.record,
            recording_path: setup.recording_path,
            default_recordings: 0,
            recordings_open: 0,
            media_seen: (0, now),
            streams: setup.streams,
            stream: None,
            detection: None,
            pending_detection: setup
                .detect_machine
                .filter(|_| direction == Direction::Outbound),
        };
        let mut out = Vec::new();
        logic.apply(now, outputs, &mut out);
        if direction == Direction::Inbound {
            logic.work.push_back(Work::Event(CallEvent::Incoming));
        }
        (logic, out)
    }

    /// What the script sees of the call now.
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The call has ended (the actor then [`CallLogic::finish`]es it).
    pub fn is_over(&self) -> bool {
        self.machine.end().is_some()
    }

    /// When the earliest timer runs out ([`Change::Timer`] is due then).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    /// Recordings started and not yet reported closed or failed.
    pub fn recordings_open(&self) -> usize {
        self.recordings_open
    }

    /// The wall-clock time at `now`, on the call's own clock.
    fn wall(&self, now: Instant) -> SystemTime {
        self.info.started + now.saturating_duration_since(self.created)
    }

    /// Names the next item queued on the leg.
    fn item(&mut self) -> ItemId {
        let id = self.next_item;
        self.next_item += 1;
        id
    }

    /// Applies one change at `now`; what to do about it. Events it raises wait for
    /// [`CallLogic::next`].
    pub fn step(&mut self, now: Instant, change: Change) -> Vec<Effect> {
        let mut out = Vec::new();
        match change {
            Change::Frame(frame) => self.input(now, Input::Frame(frame), &mut out),
            Change::LinkLost => self.input(now, Input::LinkLost, &mut out),
            Change::MediaLost => self.input(now, Input::MediaLost, &mut out),
            Change::Command(command) => self.command(now, command, &mut out),
            Change::Negotiated(result) => self.input(now, Input::Media(result), &mut out),
            Change::Rendered(rendered) => self.rendered(now, rendered, &mut out),
            Change::Leg(event) => self.leg_event(now, event, &mut out),
            Change::Stream(event) => {
                if matches!(event, StreamEvent::Closed(_) | StreamEvent::Error(_)) {
                    self.stream = None;
                }
                self.work.push_back(Work::Event(CallEvent::Stream(event)));
            }
            Change::Audio(frame) => {
                let events = self
                    .detection
                    .as_mut()
                    .map(|d| d.feed(&frame))
                    .unwrap_or_default();
                self.detected(events, &mut out);
            }
            Change::Timer => self.timer(now, &mut out),
            Change::PacketsReceived(received) => self.media_check(now, received, &mut out),
        }
        out
    }

    /// What comes next in this turn: an event for the script, or what is left of a change
    /// once the script has heard the events before it; `None` when the turn is over.
    pub fn next(&mut self, now: Instant) -> Option<Turn> {
        let mut out = Vec::new();
        match self.work.pop_front()? {
            Work::Event(event) => return Some(Turn::Hear(event)),
            Work::Finished(id) => {
                self.ready.extend(self.actions.finished(id));
                self.perform_ready(now, &mut out);
            }
            Work::NotDispatched => {
                self.ready.extend(self.actions.not_dispatched());
                self.perform_ready(now, &mut out);
            }
            Work::GatherDigit(digit) => self.gather_digit(now, digit, &mut out),
            Work::DetectionSettled => {
                if self.detection.as_ref().is_some_and(Detection::is_done) {
                    self.end_detection(&mut out);
                }
            }
        }
        Some(Turn::Do(out))
    }

    /// The call is over: no more gathering or timers, the stream ends, the script hears the
    /// final state, and the recording is closed (its report still comes in as a leg event).
    pub fn finish(&mut self) -> Vec<Effect> {
        self.gather = None;
        self.timers.clear();
        let mut out = Vec::new();
        if self.stream.take().is_some() {
            out.push(Effect::StopStream("hangup"));
        }
        if let Some(state) = self.info.state {
            self.work.push_back(Work::Event(CallEvent::State(state)));
        }
        out.push(Effect::Leg(LegCommand::StopRecording));
        out
    }

    /// The call's final record.
    pub fn into_info(self) -> CallInfo {
        self.info
    }

    fn input(&mut self, now: Instant, input: Input, out: &mut Vec<Effect>) {
        let outputs = self.machine.handle(input);
        self.apply(now, outputs, out);
    }

    /// Applies machine outputs; the events they raise wait for the script.
    fn apply(&mut self, now: Instant, outputs: Vec<Output>, out: &mut Vec<Effect>) {
        for output in outputs {
            match output {
                Output::Send(frame) => {
                    if matches!(
                        frame,
                        ClientFrame::Sdp200Ok { .. } | ClientFrame::SipAck { .. }
                    ) && self.info.setup_time.is_none()
                    {
                        self.info.setup_time = Some(now.saturating_duration_since(self.created));
                    }
                    out.push(Effect::Send(frame));
                }
                Output::Media(command) => out.push(Effect::Media(command)),
                Output::State(state) => {
                    if state == CallState::InCall && self.info.answered.is_none() {
                        self.info.answered = Some(self.wall(now));
                        if let Some(options) = self.record.take() {
                            self.start_recording(options, out);
                        }
                        if let Some(settings) = self.pending_detection.take() {
                            self.start_detection(now, settings, out);
                        }
                    }
                    self.info.state = Some(state);
                    out.push(Effect::Publish);
                    self.work.push_back(Work::Event(CallEvent::State(state)));
                }
                Output::SetTimer(timer, after) => {
                    self.timers.insert(TimerId::Machine(timer), now + after);
                }
                Output::CancelTimer(timer) => {
                    self.timers.remove(&TimerId::Machine(timer));
                }
                Output::Ended(end) => {
                    self.info.end = Some(end);
                    self.info.ended = Some(self.wall(now));
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

    /// The recorder creates the folder and reports the file's end, closed or failed, once.
    /// Files are created new, so a call's second recording to its default path gets a name
    /// of its own (`<name>-2.wav`) rather than failing on (or replacing) the first.
    fn start_recording(&mut self, mut options: RecordOptions, out: &mut Vec<Effect>) {
        if options.path == self.recording_path {
            self.default_recordings += 1;
            if self.default_recordings > 1 {
                options.path = numbered(&self.recording_path, self.default_recordings);
            }
        }
        self.recordings_open += 1;
        out.push(Effect::Leg(LegCommand::Record(options)));
    }

    fn command(&mut self, now: Instant, command: CallCommand, out: &mut Vec<Effect>) {
        match command {
            // Bookkeeping: also from the handler that hears the call end.
            CallCommand::SetResult(text) => self.info.result = Some(text),
            // Everything else acts on the call, which is over.
            _ if self.is_over() => {}
            CallCommand::Answer => self.input(now, Input::Command(Command::Answer), out),
            CallCommand::Reject(code) => {
                self.input(now, Input::Command(Command::Reject(code)), out);
            }
            CallCommand::Stop => {
                self.actions.clear();
                out.push(Effect::Leg(LegCommand::Stop));
            }
            CallCommand::Gather(options) => {
                let (gather, wait) = Gather::start(options);
                self.timers.remove(&TimerId::Gather);
                if let Some(wait) = wait {
                    self.timers.insert(TimerId::Gather, now + wait);
                }
                let prompt = gather.prompt().map(Path::to_path_buf);
                self.gather = Some(gather);
                self.gather_prompt = None;
                if let Some(prompt) = prompt {
                    let play = Action::Play {
                        prompt,
                        loops: 1,
                        for_gather: true,
                    };
                    self.queue(now, play, out);
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
                    self.start_recording(options, out);
                } else {
                    self.record = Some(options);
                }
            }
            CallCommand::StopRecording => {
                self.record = None;
                out.push(Effect::Leg(LegCommand::StopRecording));
            }
            CallCommand::StopStream => {
                if self.stream.is_some() {
                    out.push(Effect::StopStream("stopped"));
                }
            }
            CallCommand::Echo(on) => out.push(Effect::Leg(LegCommand::Echo(on))),
            CallCommand::SetTimer(name, after) => {
                self.timers.insert(TimerId::Script(name), now + after);
            }
            CallCommand::CancelTimer(name) => {
                self.timers.remove(&TimerId::Script(name));
            }
            CallCommand::DetectMachine(settings) => {
                if self.machine.is_connected() {
                    self.start_detection(now, settings, out);
                } else {
                    self.pending_detection = Some(settings);
                }
            }
            CallCommand::Queue(action) => self.queue(now, action, out),
            CallCommand::TransferPending => {
                self.input(now, Input::Command(Command::TransferPending), out);
            }
        }
    }

    fn queue(&mut self, now: Instant, action: Action, out: &mut Vec<Effect>) {
        self.ready.extend(self.actions.push(action));
        self.perform_ready(now, out);
    }

    /// Carries out the released actions in order; a `say` holds the rest until its render is
    /// back, so the leg queues them in order.
    fn perform_ready(&mut self, now: Instant, out: &mut Vec<Effect>) {
        while !self.rendering {
            let Some(action) = self.ready.pop_front() else {
                return;
            };
            self.perform(now, action, out);
        }
    }

    fn perform(&mut self, now: Instant, action: Action, out: &mut Vec<Effect>) {
        // A media action becomes the leg's next item.
        let id = self.next_item;
        let command = match action {
            Action::Play {
                prompt,
                loops,
                for_gather,
            } => {
                let name = prompt
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.prompts.insert(id, name);
                if for_gather {
                    self.gather_prompt = Some(id);
                }
                LegCommand::Play {
                    id,
                    path: prompt,
                    loops,
                }
            }
            Action::Pause { ms } => LegCommand::Pause { id, ms },
            Action::Tone { hz, ms } => LegCommand::Tone { id, hz, ms },
            Action::SendDtmf { digits } => {
                if Digit::parse_all(&digits).is_none() {
                    warn!("{}", MediaError::Digits(digits));
                    self.ready.extend(self.actions.not_dispatched());
                    return;
                }
                LegCommand::SendDtmf { id, digits }
            }
            Action::Say(utterance) => {
                self.rendering = true;
                out.push(Effect::Render(utterance));
                return;
            }
            Action::Stream(request) => return self.open_stream(request, out),
            Action::Hold => return self.input(now, Input::Command(Command::Hold), out),
            Action::Resume => return self.input(now, Input::Command(Command::Resume), out),
            Action::Transfer { to } => {
                return self.input(now, Input::Command(Command::Transfer(to)), out);
            }
            Action::AttendedTransfer { id2, to } => {
                let command = Command::AttendedTransfer { id2, to };
                return self.input(now, Input::Command(command), out);
            }
            Action::Hangup => return self.input(now, Input::Command(Command::Hangup), out),
        };
        self.next_item += 1;
        self.actions.dispatched(id);
        out.push(Effect::Leg(command));
    }

    /// A `say`'s render is back: it plays like a prompt; a render that failed is reported as
    /// a prompt that failed.
    fn rendered(&mut self, now: Instant, rendered: Result<PathBuf, String>, out: &mut Vec<Effect>) {
        if !std::mem::replace(&mut self.rendering, false) {
            return;
        }
        match rendered {
            Ok(path) => {
                let id = self.item();
                self.prompts.insert(id, SAY.to_owned());
                self.actions.dispatched(id);
                out.push(Effect::Leg(LegCommand::Play { id, path, loops: 1 }));
                self.perform_ready(now, out);
            }
            Err(error) => {
                warn!("{error}");
                self.info.play_interrupted = false;
                self.info.play_error = Some(error);
                self.work
                    .push_back(Work::Event(CallEvent::PlayDone(SAY.to_owned())));
                self.work.push_back(Work::NotDispatched);
            }
        }
    }

    /// Opens a stream (replacing one that is open), or tells the script streams are off.
    fn open_stream(&mut self, request: StreamRequest, out: &mut Vec<Effect>) {
        if !self.streams {
            let refused = StreamEvent::Error("streams are not set up for this call".into());
            self.work.push_back(Work::Event(CallEvent::Stream(refused)));
            self.work.push_back(Work::NotDispatched);
            return;
        }
        if self.stream.is_some() {
            out.push(Effect::StopStream("replaced by a new stream"));
        }
        let item = self.item();
        self.stream = Some(item);
        self.actions.dispatched(item);
        out.push(Effect::OpenStream { item, request });
    }

    /// Starts (or restarts) answering-machine detection.
    fn start_detection(&mut self, now: Instant, settings: AmdSettings, out: &mut Vec<Effect>) {
        self.end_detection(out);
        let detection = Detection::start(settings, now);
        self.timers
            .insert(TimerId::Detection, detection.deadline(false));
        self.info.machine = None;
        self.info.beep = None;
        self.detection = Some(detection);
        out.push(Effect::Listen(true));
    }

    /// What detection decided: the script hears the verdict, then (a machine's) beep; the
    /// detection ends when it has nothing more to say.
    fn detected(&mut self, events: Vec<AmdEvent>, out: &mut Vec<Effect>) {
        if events.is_empty() {
            if self.detection.as_ref().is_some_and(Detection::is_done) {
                self.end_detection(out);
            }
            return;
        }
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
                    self.work
                        .push_back(Work::Event(CallEvent::Machine(verdict)));
                }
                AmdEvent::Beep(beep) => {
                    info!(
                        "the greeting ended: {} at {} ms",
                        beep.how.as_str(),
                        beep.ms
                    );
                    self.info.beep = Some(beep);
                    self.work.push_back(Work::Event(CallEvent::Beep(beep)));
                }
            }
        }
        self.work.push_back(Work::DetectionSettled);
    }

    /// Stops detection (if any): the leg no longer hands it audio.
    fn end_detection(&mut self, out: &mut Vec<Effect>) {
        if self.detection.take().is_some() {
            out.push(Effect::Listen(false));
        }
        self.timers.remove(&TimerId::Detection);
    }

    fn leg_event(&mut self, now: Instant, event: LegEvent, out: &mut Vec<Effect>) {
        match event {
            LegEvent::LocalCandidate(candidate) => {
                self.input(now, Input::LocalCandidate(candidate), out);
            }
            LegEvent::State(TransportState::Failed) => self.input(now, Input::MediaLost, out),
            LegEvent::State(state) => debug!("media {state:?}"),
            LegEvent::Digit { digit, .. } => self.digit(digit.as_char(), out),
            LegEvent::Played { id, outcome } => self.played(now, id, &outcome, out),
            LegEvent::Recording(report) => self.recording(report),
        }
    }

    /// A player item ended: the script hears about its prompt, then the actions waiting for
    /// it go.
    fn played(&mut self, now: Instant, id: ItemId, outcome: &Outcome, out: &mut Vec<Effect>) {
        if self.stream == Some(id) && matches!(outcome, Outcome::Interrupted) {
            out.push(Effect::StopStream("interrupted"));
        }
        if let Some(name) = self.prompts.remove(&id) {
            self.info.play_interrupted = matches!(outcome, Outcome::Interrupted);
            self.info.play_error = match outcome {
                Outcome::Failed(e) => {
                    warn!("prompt failed: {e}");
                    Some(e.to_string())
                }
                _ => None,
            };
            if self.gather_prompt == Some(id) {
                self.gather_prompt = None;
                if let Some(wait) = self.gather.as_mut().and_then(Gather::prompt_done) {
                    self.timers.insert(TimerId::Gather, now + wait);
                }
            }
            self.work.push_back(Work::Event(CallEvent::PlayDone(name)));
        }
        self.work.push_back(Work::Finished(id));
    }

    fn recording(&mut self, report: RecordingReport) {
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
        self.work.push_back(Work::Event(CallEvent::Recording(path)));
    }

    /// A digit: the stream and the script hear it, then the gather takes it.
    fn digit(&mut self, digit: char, out: &mut Vec<Effect>) {
        if self.info.digits.len() < DIGITS_KEPT {
            self.info.digits.push(digit);
        }
        if self.stream.is_some() {
            out.push(Effect::StreamDigit(digit));
        }
        self.work.push_back(Work::Event(CallEvent::Dtmf(digit)));
        self.work.push_back(Work::GatherDigit(digit));
    }

    fn gather_digit(&mut self, now: Instant, digit: char, out: &mut Vec<Effect>) {
        let Some(gather) = self.gather.as_mut() else {
            return;
        };
        match gather.digit(digit) {
            GatherStep::Continue { wait, cut_prompt } => {
                self.timers.insert(TimerId::Gather, now + wait);
                if cut_prompt {
                    out.push(Effect::Leg(LegCommand::Stop));
                }
            }
            GatherStep::Done(gathered) => self.gather_done(gathered),
        }
    }

    fn gather_done(&mut self, Gathered { digits, reason }: Gathered) {
        self.gather = None;
        self.timers.remove(&TimerId::Gather);
        self.info.gather_reason = Some(reason);
        self.work.push_back(Work::Event(CallEvent::Digits(digits)));
    }

    /// The earliest timer ran out.
    fn timer(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let Some(id) = self
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        self.timers.remove(&id);
        match id {
            TimerId::Machine(timer) => self.input(now, Input::Timer(timer), out),
            TimerId::Gather => {
                if let Some(gathered) = self.gather.as_mut().map(Gather::timed_out) {
                    self.gather_done(gathered);
                }
            }
            TimerId::Script(name) => self.work.push_back(Work::Event(CallEvent::Timer(name))),
            TimerId::Detection => {
                let event = self.detection.as_mut().and_then(|d| d.time_up(now));
                self.detected(event.into_iter().collect(), out);
            }
            TimerId::MediaWatch => {
                self.timers.insert(TimerId::MediaWatch, now + MEDIA_WATCH);
                out.push(Effect::CountPackets);
            }
        }
    }

    /// The media watch's count: a connected call (not held by us) whose count has not grown
    /// for [`MEDIA_SILENCE`] has lost its far end.
    fn media_check(&mut self, now: Instant, received: u64, out: &mut Vec<Effect>) {
        if received != self.media_seen.0 || !self.machine.is_connected() || self.machine.is_held() {
            self.media_seen = (received, now);
        } else if now.saturating_duration_since(self.media_seen.1) >= MEDIA_SILENCE {
            warn!(
                "no media for {} s: the far end is gone",
                MEDIA_SILENCE.as_secs()
            );
            self.input(now, Input::MediaLost, out);
        }
    }
}

#[cfg(test)]
#[path = "logic_tests.rs"]
mod tests;
