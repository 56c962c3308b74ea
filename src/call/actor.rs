//! The call actor: one tokio task per call that does the call's I/O. It waits for the next
//! change (a frame, a command, a leg or stream event, a timer), hands it to the call's sans-IO
//! logic ([`CallLogic`]), carries out the effects it decides with the media leg, the link, the
//! stream and the speech renderer, and asks a [`CallHandler`] (the bot's script) what to do at
//! each event the logic hands out.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::{Instrument, debug, warn};

use super::actions::Action;
use super::audio_feed::AudioFeed;
use super::detection::ReceivedAudio;
use super::gather::{GatherOptions, GatherReason};
use super::logic::{CallLogic, Change, Effect, LegCommand, LogicSetup, Turn, script_commands};
use super::machine::{CallEnd, Direction, MediaCommand, MediaResult};
use crate::amd::{AmdSettings, Beep, Verdict};
use crate::connection::FrameSender;
use crate::media::stats::LegStats;
use crate::media::{LegEvent, LegEvents, MediaLeg, MediaRuntime, RecordOptions};
use crate::protocol::{CallId, CallState, ClientFrame, Dialect, Invite, ServerFrame, SipCode};
use crate::speech::Speech;
use crate::voice::{Stream, StreamEvent, StreamSettings};

/// How long an unanswered call rings unless its setup says otherwise, either way: an inbound
/// call the script never answers, an outbound call nobody picks up.
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a finished call waits for its recording to be closed before it reports.
const RECORDING_CLOSE_WAIT: Duration = Duration::from_secs(3);

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

/// The call's I/O: its leg, its frames, its script, its stream and detection audio. What to
/// do is decided by [`CallLogic`]; the actor carries it out.
struct Actor {
    key: u64,
    logic: CallLogic,
    leg: Arc<MediaLeg>,
    handler: Box<dyn CallHandler>,
    frames: FrameSender,
    dial_pacer: Option<Arc<super::Pacer>>,
    live: Option<super::LiveCalls>,
    reports: mpsc::UnboundedSender<CallReport>,
    stream_settings: Option<Arc<StreamSettings>>,
    /// The voice-agent stream, while one is open.
    stream: Option<Stream>,
    /// The leg's received audio, while answering-machine detection listens.
    audio: Option<AudioFeed>,
    speech: Speech,
    media: MediaRuntime,
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

/// The next received frame for detection; never ready while detection does not listen.
async fn next_audio(audio: &mut Option<AudioFeed>) -> ReceivedAudio {
    match audio {
        Some(audio) => audio.next().await,
        None => std::future::pending().await,
    }
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

/// What the call looks like before anything happened.
fn first_info(setup: &CallSetup) -> CallInfo {
    match &setup.origin {
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
    }
}

/// A call that got no leg: refused (when it rang here) and reported as a media failure.
async fn no_leg(
    key: u64,
    setup: &CallSetup,
    mut info: CallInfo,
    reports: &mpsc::UnboundedSender<CallReport>,
) {
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
    info.ended = Some(SystemTime::now());
    info.end = Some(CallEnd {
        reason: super::EndReason::MediaFailed,
        code: Some(SipCode::SERVER_ERROR),
    });
    let _ = reports.send(CallReport {
        key,
        info: Box::new(info),
    });
}

async fn run(
    key: u64,
    setup: CallSetup,
    handler: Box<dyn CallHandler>,
    mut inputs: mpsc::UnboundedReceiver<ActorInput>,
    reports: mpsc::UnboundedSender<CallReport>,
) {
    let created = Instant::now();
    let info = first_info(&setup);
    let (leg, mut leg_events) = match setup.media.new_leg().await {
        Ok((leg, events)) => (Arc::new(leg), events),
        Err(e) => {
            warn!("no media leg: {e}");
            return no_leg(key, &setup, info, &reports).await;
        }
    };
    let (logic, first) = CallLogic::new(
        LogicSetup {
            origin: setup.origin,
            dialect: setup.dialect,
            own_extension: setup.own_extension,
            ring_timeout: setup.ring_timeout,
            info,
            record: setup.record,
            recording_path: setup.recording_path,
            streams: setup.stream.is_some(),
            detect_machine: setup.detect_machine,
        },
        created,
    );
    let mut actor = Actor {
        key,
        logic,
        leg,
        handler,
        frames: setup.frames,
        dial_pacer: setup.dial_pacer,
        live: setup.live,
        reports,
        stream_settings: setup.stream,
        stream: None,
        audio: None,
        speech: setup.speech,
        media: setup.media,
    };
    if let Some(live) = &actor.live {
        live.insert(key, actor.logic.info(), actor.leg.clone());
    }
    actor.execute(first).await;
    actor.settle().await;
    // Each turn applies one change (an input, a leg event, a timer) with every machine output
    // it causes, then lets the handler hear the events it raised.
    while !actor.logic.is_over() {
        let change = actor.next_change(&mut inputs, &mut leg_events).await;
        actor.turn(change).await;
    }
    actor.finish(&mut leg_events).await;
}

impl Actor {
    /// Waits for the next change: an input from the bot, a leg event, a stream event, audio
    /// for detection, or the earliest timer (a guard: with none set, it waits for the rest).
    async fn next_change(
        &mut self,
        inputs: &mut mpsc::UnboundedReceiver<ActorInput>,
        leg_events: &mut LegEvents,
    ) -> Change {
        let deadline = self.logic.next_deadline();
        let wake = deadline.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
        tokio::select! {
            input = inputs.recv() => match input {
                Some(ActorInput::Frame(frame)) => Change::Frame(frame),
                Some(ActorInput::LinkLost) | None => Change::LinkLost,
                Some(ActorInput::Command(command)) => Change::Command(command),
            },
            event = leg_events.recv() => event.map_or(Change::MediaLost, Change::Leg),
            event = next_stream_event(&mut self.stream) => {
                if matches!(event, StreamEvent::Closed(_) | StreamEvent::Error(_)) {
                    self.stream = None;
                }
                Change::Stream(event)
            },
            audio = next_audio(&mut self.audio) => Change::Audio(audio),
            () = sleep_until(wake), if deadline.is_some() => Change::Timer,
        }
    }

    /// One change, carried out in full, then heard by the handler.
    async fn turn(&mut self, change: Change) {
        let effects = self.logic.step(Instant::now(), change);
        self.execute(effects).await;
        self.settle().await;
    }

    /// Lets the handler hear every event the logic hands out, in order, feeding back each
    /// one's commands (which may raise more events) before the next, and carries out what
    /// follows them.
    async fn settle(&mut self) {
        while let Some(turn) = self.logic.next(Instant::now()) {
            match turn {
                Turn::Do(effects) => self.execute(effects).await,
                Turn::Hear(event) => {
                    let answer = self.handler.handle(self.logic.info(), &event);
                    for command in script_commands(&event, answer) {
                        let effects = self.logic.step(Instant::now(), Change::Command(command));
                        self.execute(effects).await;
                    }
                }
            }
        }
    }

    /// Carries out effects in order; a result goes back to the logic at once, and what it
    /// leads to is carried out after the effects already decided.
    async fn execute(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if let Some(result) = self.carry_out(effect).await {
                queue.extend(self.logic.step(Instant::now(), result));
            }
        }
    }

    /// Does one effect; what it came to, when the logic waits for that.
    async fn carry_out(&mut self, effect: Effect) -> Option<Change> {
        match effect {
            Effect::Send(frame) => {
                if let (ClientFrame::SdpPacket { .. }, Some(pacer)) = (&frame, &self.dial_pacer) {
                    pacer.wait().await;
                }
                self.frames.send(frame).await;
            }
            Effect::Media(command) => {
                return negotiate(&self.leg, command).await.map(Change::Negotiated);
            }
            Effect::Leg(command) => self.leg_command(command),
            Effect::Render(utterance) => {
                let rendered = render(&self.speech, &self.media, utterance).await;
                return Some(Change::Rendered(rendered));
            }
            Effect::OpenStream { item, request } => {
                if let Some(settings) = self.stream_settings.clone() {
                    let id = self.logic.info().id.as_str();
                    self.stream = Some(Stream::open(&self.leg, item, id, request, settings));
                }
            }
            Effect::StreamDigit(digit) => {
                if let Some(stream) = &self.stream {
                    stream.dtmf(digit);
                }
            }
            Effect::StopStream(reason) => {
                if let Some(stream) = self.stream.as_mut() {
                    stream.stop(reason);
                }
            }
            Effect::Listen(on) => {
                if let Some(audio) = self.audio.take() {
                    audio.stop(&self.leg);
                }
                if on {
                    self.audio = Some(AudioFeed::start(&self.leg));
                }
            }
            Effect::CountPackets => {
                return Some(Change::PacketsReceived(self.leg.stats().packets_received));
            }
            Effect::Publish => {
                if let Some(live) = &self.live {
                    live.update(self.key, self.logic.info());
                }
            }
        }
        None
    }

    fn leg_command(&self, command: LegCommand) {
        match command {
            LegCommand::Play { id, path, loops } => self.leg.play(id, path, loops),
            LegCommand::Pause { id, ms } => self.leg.pause(id, ms),
            LegCommand::Tone { id, hz, ms } => self.leg.tone(id, hz, ms),
            LegCommand::SendDtmf { id, digits } => {
                if let Err(e) = self.leg.send_dtmf(id, &digits) {
                    warn!("{e}");
                }
            }
            LegCommand::Stop => self.leg.stop(),
            LegCommand::Record(options) => self.leg.record(options),
            LegCommand::StopRecording => self.leg.stop_recording(),
            LegCommand::Echo(on) => self.leg.set_echo(on),
        }
    }

    /// The call is over: the final state heard, recordings closed (waiting a moment for the
    /// writer), the leg shut, the report sent.
    async fn finish(mut self, leg_events: &mut LegEvents) {
        let effects = self.logic.finish();
        self.execute(effects).await;
        self.settle().await;
        self.leg.close().await;
        let deadline = tokio::time::Instant::now() + RECORDING_CLOSE_WAIT;
        while self.logic.recordings_open() > 0 {
            match tokio::time::timeout_at(deadline, leg_events.recv()).await {
                Ok(Some(LegEvent::Recording(report))) => {
                    self.turn(Change::Leg(LegEvent::Recording(report))).await;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(live) = &self.live {
            live.remove(self.key);
        }
        let mut info = self.logic.into_info();
        info.stats = self.leg.stats();
        let _ = self.reports.send(CallReport {
            key: self.key,
            info: Box::new(info),
        });
    }
}

/// Does media work; returns its result for the machine when it has one.
async fn negotiate(leg: &MediaLeg, command: MediaCommand) -> Option<MediaResult> {
    let result = match command {
        MediaCommand::CreateOffer => leg.create_offer().await.map(MediaResult::Offer),
        MediaCommand::AcceptOffer(offer) => leg.accept_offer(&offer).await.map(MediaResult::Answer),
        MediaCommand::RollbackAndAccept(offer) => match leg.rollback().await {
            Ok(()) => leg.accept_offer(&offer).await.map(MediaResult::Answer),
            Err(e) => Err(e),
        },
        MediaCommand::ApplyAnswer(answer) => leg
            .apply_answer(&answer)
            .await
            .map(|()| MediaResult::AnswerApplied),
        MediaCommand::AddCandidate(candidate) => {
            if let Err(e) = leg.add_remote_candidate(&candidate).await {
                debug!("remote candidate refused: {e}");
            }
            return None;
        }
        MediaCommand::Mute(muted) => {
            leg.set_muted(muted);
            return None;
        }
    };
    Some(result.unwrap_or_else(|e| MediaResult::Failed(e.to_string())))
}

/// Renders `utterance` (at once when cached); the files the cache let go of are
/// forgotten by the prompt cache too.
async fn render(
    speech: &Speech,
    media: &MediaRuntime,
    utterance: crate::speech::Utterance,
) -> Result<PathBuf, String> {
    let rendered = speech.render(utterance).await.map_err(|e| e.to_string())?;
    for gone in &rendered.evicted {
        media.prompts().forget(gone);
    }
    Ok(rendered.path)
}
