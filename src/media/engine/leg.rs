//! A leg as its engine thread owns it: the peer connection, the player, what was received, the
//! recordings. A plain struct, touched only by its thread; the owner's handle talks to it through
//! the thread's command queue and hears from it through a bounded event queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::demux::LegId;
use super::loader::{Loader, Reply, Request};
use super::peer::{LocalCandidate, Peer, PeerEvent};
use crate::media::codec::{Codec, Decoder, Encoder, FRAME_MS, convert_rate};
use crate::media::dtmf::{Digit, EventReceiver};
use crate::media::inband::InbandDetector;
use crate::media::live::LiveFeed;
use crate::media::player::{EchoFrame, ItemId, Negotiated, Player};
use crate::media::prompt::{EncodedAudio, PromptError};
use crate::media::recorder::{Recording, RecordingWriter, Recordings, Timeline, WriteBatch};
use crate::media::rtp::RtpPacket;
use crate::media::stats::{GapHistogram, LegStats, LevelMeter, ReceiveStats};
use crate::media::tap::{AudioTap, AudioTaps};
use crate::media::tone::Signal;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, MediaError, RecordOptions};

/// Received frames queued for echo (or from a bridged leg) beyond this are dropped, bounding
/// the delay they add.
const MAX_ECHO_FRAMES: usize = 5;
/// Events kept for an owner that is not reading; beyond this they are dropped.
const MAX_UNSENT_EVENTS: usize = 1024;
/// How often (in the leg's 20 ms intervals) its statistics are published to its handle.
const PUBLISH_EVERY: u32 = 5;

/// Which engine thread a leg lives on, and its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegAddress {
    pub thread: usize,
    pub leg: LegId,
}

/// Audio a leg received, on its way to the leg bridged to it.
#[derive(Debug)]
pub struct BridgedFrame {
    pub payload: Bytes,
    pub codec: Codec,
}

/// The statistics a leg's handle reads: refreshed by the engine every 100 ms, on state changes
/// and when the leg ends.
#[derive(Debug, Default)]
pub struct Published {
    pub stats: LegStats,
    pub pacing: GapHistogram,
}

pub type PublishedStats = Arc<Mutex<Published>>;

/// An offer/answer step, asked for by the leg's owner.
#[derive(Debug)]
pub enum SignalOp {
    CreateOffer,
    AcceptOffer(String),
    ApplyAnswer(String),
    Rollback,
    /// `candidate:` lines from the far end (queued until there is a remote description).
    AddCandidates(Vec<String>),
}

/// What a signalling step produced.
#[derive(Debug)]
pub enum Signalled {
    Offer(String),
    Answer(String, Negotiated),
    Applied(Negotiated),
    Done,
}

/// Something for the player or the recorder.
#[derive(Debug)]
pub enum Control {
    Play {
        id: ItemId,
        path: std::path::PathBuf,
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
    Signal {
        id: ItemId,
        signal: Signal,
        loops: u32,
    },
    Dtmf {
        id: ItemId,
        digits: Vec<Digit>,
    },
    /// Audio pushed from outside (a voice agent), played until the feed ends.
    Live {
        id: ItemId,
        feed: Arc<LiveFeed>,
    },
    AddTap(Arc<dyn AudioTap>),
    RemoveTap(Arc<dyn AudioTap>),
    Stop,
    Echo(bool),
    Bridge(Option<LegAddress>),
    Mute(bool),
    Record(RecordOptions),
    StopRecording,
}

/// What the engine thread lends a leg for one call.
pub struct LegEnv<'a> {
    pub recordings: &'a RecordingWriter,
    pub loader: &'a Loader,
    /// Where this thread's prompt loads are answered.
    pub loaded: &'a Arc<Reply>,
    /// Frames for bridged legs, delivered by the thread after the batch.
    pub bridged: &'a mut Vec<(LegAddress, BridgedFrame)>,
}

/// Events on their way to the owner: the queue is bounded, so what does not fit waits here.
struct Events {
    sender: mpsc::Sender<LegEvent>,
    unsent: VecDeque<LegEvent>,
}

impl Events {
    fn emit(&mut self, event: LegEvent) {
        if self.unsent.is_empty() {
            match self.sender.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(event)) => self.unsent.push_back(event),
            }
        } else if self.unsent.len() < MAX_UNSENT_EVENTS {
            self.unsent.push_back(event);
        }
    }

    fn flush(&mut self) {
        while let Some(event) = self.unsent.pop_front() {
            if let Err(mpsc::error::TrySendError::Full(event)) = self.sender.try_send(event) {
                self.unsent.push_front(event);
                return;
            }
        }
    }
}

struct Receive {
    negotiated: Option<Negotiated>,
    /// When (since the leg was created) the first audible packet arrived.
    first_loud: Option<Duration>,
    arrival: GapHistogram,
    decoder: Option<Decoder>,
    events: EventReceiver,
    /// Only when the far end did not accept telephone-event.
    inband: Option<InbandDetector>,
    stats: ReceiveStats,
    pcm: Vec<i16>,
    /// The far end's loudness, for live meters.
    level: LevelMeter,
}

/// Audio to send when nothing is queued: our own received frames in echo mode, or a bridged
/// leg's received frames.
#[derive(Default)]
struct Passthrough {
    echo: bool,
    frames: VecDeque<EchoFrame>,
}

impl Passthrough {
    fn push(&mut self, frame: EchoFrame) {
        if self.frames.len() >= MAX_ECHO_FRAMES {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
    }
}

/// Re-encodes audio bridged in from a leg that speaks another codec.
struct Transcoder {
    from: Codec,
    decoder: Decoder,
    encoder: Encoder,
    pcm: Vec<i16>,
}

#[derive(Default)]
struct Sent {
    packets: u64,
    bytes: u64,
    dropped: u64,
    skipped: u64,
    pacing: GapHistogram,
    connect_time: Option<Duration>,
    first_audio: Option<Duration>,
}

/// Signalling progress: remote candidates wait until there is a remote description.
#[derive(Default)]
struct Signalling {
    remote_description: bool,
    pending_candidates: Vec<String>,
    /// Our host addresses become candidates once our description is out: the far end has
    /// nothing to pair them with before, and the description itself then lists none (they are
    /// trickled, as browsers do).
    local_description: bool,
    local_candidates: Vec<LocalCandidate>,
}

pub struct Leg {
    pub id: LegId,
    created: Instant,
    pub peer: Peer,
    events: Events,
    player: Player,
    receive: Receive,
    passthrough: Passthrough,
    bridge: Option<LegAddress>,
    transcoder: Option<Transcoder>,
    recordings: Recordings,
    /// A recording asked for before the codec (and so the rate) was known.
    pending_recording: Option<RecordOptions>,
    sent: Sent,
    signalling: Signalling,
    state: TransportState,
    published: PublishedStats,
    publish_in: u32,
    /// Listeners of the audio both ways (a voice agent's stream).
    taps: AudioTaps,
}

impl Leg {
    pub fn new(
        id: LegId,
        peer: Peer,
        ssrc: u32,
        events: mpsc::Sender<LegEvent>,
        published: PublishedStats,
        now: Instant,
    ) -> Self {
        Self {
            id,
            created: now,
            peer,
            events: Events {
                sender: events,
                unsent: VecDeque::new(),
            },
            player: Player::new(ssrc),
            receive: Receive {
                negotiated: None,
                first_loud: None,
                arrival: GapHistogram::default(),
                decoder: None,
                events: EventReceiver::default(),
                inband: None,
                stats: ReceiveStats::default(),
                pcm: Vec::new(),
                level: LevelMeter::default(),
            },
            passthrough: Passthrough::default(),
            bridge: None,
            transcoder: None,
            recordings: Recordings::default(),
            pending_recording: None,
            sent: Sent::default(),
            signalling: Signalling::default(),
            state: TransportState::Connecting,
            published,
            publish_in: PUBLISH_EVERY,
            taps: AudioTaps::default(),
        }
    }

    fn emit(&mut self, event: LegEvent) {
        self.events.emit(event);
    }

    /// One offer/answer step.
    pub fn signal(
        &mut self,
        op: SignalOp,
        now: Instant,
        env: &mut LegEnv<'_>,
    ) -> Result<Signalled, MediaError> {
        match op {
            SignalOp::CreateOffer => {
                let offer = self.peer.create_offer(now)?;
                self.local_description_set();
                Ok(Signalled::Offer(offer))
            }
            SignalOp::AcceptOffer(offer) => {
                let answer = self.peer.accept_offer(&offer, now)?;
                self.local_description_set();
                let negotiated = self.remote_description_set(env)?;
                Ok(Signalled::Answer(answer, negotiated))
            }
            SignalOp::ApplyAnswer(answer) => {
                self.peer.apply_answer(&answer, now)?;
                Ok(Signalled::Applied(self.remote_description_set(env)?))
            }
            SignalOp::Rollback => {
                self.peer.rollback(now)?;
                Ok(Signalled::Done)
            }
            SignalOp::AddCandidates(lines) => {
                if !self.signalling.remote_description {
                    self.signalling.pending_candidates.extend(lines);
                    return Ok(Signalled::Done);
                }
                for line in lines {
                    self.peer.add_remote_candidate(&line)?;
                }
                Ok(Signalled::Done)
            }
        }
    }

    fn local_description_set(&mut self) {
        if !self.signalling.local_description {
            self.signalling.local_description = true;
            let candidates = std::mem::take(&mut self.signalling.local_candidates);
            self.add_local_candidates(&candidates);
        }
    }

    /// Offers candidates of ours (on the thread's socket, or one of the leg's own).
    pub fn add_local_candidates(&mut self, candidates: &[LocalCandidate]) {
        if !self.signalling.local_description {
            self.signalling
                .local_candidates
                .extend_from_slice(candidates);
            return;
        }
        for candidate in candidates {
            if let Err(e) = self.peer.add_local_candidate(candidate) {
                tracing::warn!(leg = self.id, "cannot offer {candidate:?}: {e}");
            }
        }
    }

    fn remote_description_set(&mut self, env: &mut LegEnv<'_>) -> Result<Negotiated, MediaError> {
        self.signalling.remote_description = true;
        for candidate in std::mem::take(&mut self.signalling.pending_candidates) {
            if let Err(e) = self.peer.add_remote_candidate(&candidate) {
                tracing::debug!(leg = self.id, "remote candidate refused: {e}");
            }
        }
        let negotiated = self.peer.negotiated()?;
        self.configure(negotiated, env);
        Ok(negotiated)
    }

    fn configure(&mut self, negotiated: Negotiated, env: &mut LegEnv<'_>) {
        for (id, path) in self.player.configure(negotiated) {
            self.load(id, path, negotiated.codec, env);
        }
        let receive = &mut self.receive;
        receive.negotiated = Some(negotiated);
        receive.decoder = Decoder::new(negotiated.codec)
            .inspect_err(|e| tracing::warn!(leg = self.id, "no decoder: {e}"))
            .ok();
        if negotiated.telephone_event.is_none() {
            tracing::info!(
                leg = self.id,
                "the far end has no telephone-event: keys go both ways as in-band tones"
            );
        }
        receive.inband = negotiated
            .telephone_event
            .is_none()
            .then(InbandDetector::new);
        if let Some(options) = self.pending_recording.take() {
            self.start_recording(options, negotiated.codec, env.recordings);
        }
    }

    fn load(&self, item: ItemId, path: std::path::PathBuf, codec: Codec, env: &LegEnv<'_>) {
        let request = Request {
            leg: self.id,
            item,
            path,
            codec,
        };
        env.loader.request(request, env.loaded);
    }

    /// A prompt the loader finished (or failed to load).
    pub fn loaded(&mut self, item: ItemId, result: Result<Arc<EncodedAudio>, PromptError>) {
        self.player.loaded(item, result);
    }

    /// Something for the player or the recorder.
    pub fn control(&mut self, control: Control, env: &mut LegEnv<'_>) {
        match control {
            Control::Play { id, path, loops } => {
                let load_now = self.player.enqueue_prompt(id, path.clone(), loops);
                if load_now && let Some(negotiated) = self.player.negotiated() {
                    self.load(id, path, negotiated.codec, env);
                }
            }
            Control::Pause { id, ms } => self.player.enqueue_pause(id, ms),
            Control::Tone { id, hz, ms } => self.player.enqueue_tone(id, hz, ms),
            Control::Signal { id, signal, loops } => {
                self.player.enqueue_signal(id, signal, loops);
            }
            Control::Dtmf { id, digits } => self.player.enqueue_dtmf(id, digits),
            Control::Live { id, feed } => self.player.enqueue_live(id, feed),
            Control::AddTap(tap) => self.taps.add(tap),
            Control::RemoveTap(tap) => self.taps.remove(&tap),
            Control::Stop => {
                for event in self.player.stop() {
                    self.emit(LegEvent::Played {
                        id: event.id,
                        outcome: event.outcome,
                    });
                }
            }
            Control::Echo(on) => {
                self.passthrough.echo = on;
                self.passthrough.frames.clear();
            }
            Control::Bridge(to) => self.bridge = to,
            Control::Mute(muted) => self.player.set_muted(muted),
            Control::Record(options) => match self.player.negotiated() {
                Some(negotiated) => {
                    self.start_recording(options, negotiated.codec, env.recordings);
                }
                None => self.pending_recording = Some(options),
            },
            Control::StopRecording => {
                self.recordings.stop();
                self.pending_recording = None;
            }
        }
    }

    fn start_recording(&mut self, options: RecordOptions, codec: Codec, writer: &RecordingWriter) {
        let rate = codec.clock_rate();
        let timeline = Timeline::new(rate, options.stereo, options.max_secs);
        let id = rand::random();
        let events = self.events.sender.clone();
        writer.open(
            id,
            &options.path,
            timeline.channels(),
            rate,
            move |report| {
                if events.try_send(LegEvent::Recording(report)).is_err() {
                    tracing::warn!("a recording report was lost: the call's event queue is full");
                }
            },
        );
        self.recordings.stop();
        self.recordings.active = Some(Recording { id, timeline });
    }

    /// One 20 ms interval: produce, send, record.
    pub fn tick(&mut self, now: Instant, writes: &mut WriteBatch) {
        self.events.flush();
        let passthrough = self.passthrough.frames.pop_front();
        let codec = self.player.negotiated().map(|n| n.codec);
        let mut tick = self.player.tick(passthrough);
        for event in std::mem::take(&mut tick.events) {
            self.emit(LegEvent::Played {
                id: event.id,
                outcome: event.outcome,
            });
        }
        let packets = std::mem::take(&mut tick.packets);
        if !packets.is_empty() {
            let (mut sent, mut bytes, mut dropped) = (0, 0, 0);
            for packet in packets {
                let size = packet.payload.len() as u64;
                if self.peer.send_rtp(packet, now) {
                    sent += 1;
                    bytes += size;
                } else {
                    dropped += 1;
                }
            }
            let stats = &mut self.sent;
            stats.packets += sent;
            stats.bytes += bytes;
            stats.dropped += dropped;
            if sent > 0
                && tick.pcm.is_some()
                && stats.first_audio.is_none()
                && let Some(connected) = stats.connect_time
            {
                stats.first_audio =
                    Some(now.duration_since(self.created).saturating_sub(connected));
            }
            if sent > 0 {
                stats
                    .pacing
                    .record(now, Duration::from_millis(FRAME_MS.into()));
            }
        }
        if let Some(codec) = codec
            && !self.taps.is_empty()
        {
            self.taps.sent(tick.pcm(), codec.clock_rate());
        }
        if let Some(codec) = codec {
            self.recordings
                .push_local(tick.pcm(), codec.frame_samples(), writes);
        }
        self.publish_in = self.publish_in.saturating_sub(1);
        if self.publish_in == 0 {
            self.publish();
        }
    }

    /// The clock skipped `intervals` intervals ([`crate::media::pacer`]): nothing is sent for
    /// them, the queue and the RTP timestamp move on, and a recording gets silence for them, so
    /// it stays on the far end's timeline.
    pub fn skip(&mut self, intervals: u32) {
        for event in self.player.skip(intervals) {
            self.emit(LegEvent::Played {
                id: event.id,
                outcome: event.outcome,
            });
        }
        self.sent.skipped += u64::from(intervals);
        if let Some(codec) = self.player.negotiated().map(|n| n.codec) {
            let samples = codec.frame_samples() * intervals as usize;
            self.recordings.skip(samples);
        }
    }

    /// What the connection reported since last asked.
    pub fn poll_events(&mut self, now: Instant) {
        while let Some(event) = self.peer.poll_event(now) {
            match event {
                PeerEvent::LocalCandidate(candidate) => {
                    self.emit(LegEvent::LocalCandidate(candidate));
                }
                PeerEvent::State(state) => {
                    if state == self.state {
                        continue;
                    }
                    self.state = state;
                    if state == TransportState::Connected {
                        self.sent
                            .connect_time
                            .get_or_insert_with(|| now.duration_since(self.created));
                        self.player.connected();
                    }
                    self.emit(LegEvent::State(state));
                    self.publish();
                }
            }
        }
    }

    /// The RTP that arrived since last asked.
    pub fn poll_rtp(&mut self, env: &mut LegEnv<'_>) {
        while let Some((packet, at)) = self.peer.poll_rtp() {
            self.rtp(&packet, at, env);
        }
    }

    fn rtp(&mut self, packet: &RtpPacket, at: Instant, env: &mut LegEnv<'_>) {
        let Some(negotiated) = self.receive.negotiated else {
            return;
        };
        self.receive.stats.record(
            packet.sequence,
            packet.timestamp,
            packet.payload.len(),
            at,
            self.created,
            negotiated.codec.clock_rate(),
        );
        if Some(packet.payload_type) == negotiated.telephone_event {
            for received in self
                .receive
                .events
                .receive(packet.timestamp, &packet.payload)
            {
                self.emit(LegEvent::Digit {
                    digit: received.digit,
                    duration: Duration::from_millis(u64::from(received.duration) / 8),
                    inband: false,
                });
            }
        } else if packet.payload_type == negotiated.payload_type {
            self.receive
                .arrival
                .record(at, Duration::from_millis(FRAME_MS.into()));
            self.on_audio(packet, negotiated, at, env);
        }
    }

    fn on_audio(
        &mut self,
        packet: &RtpPacket,
        negotiated: Negotiated,
        at: Instant,
        env: &mut LegEnv<'_>,
    ) {
        let recording = self.recordings.active.is_some();
        let tapped = !self.taps.is_empty();
        let receive = &mut self.receive;
        // Until something audible arrived, frames are decoded to notice it (first-audio time).
        let needs_pcm =
            recording || tapped || receive.inband.is_some() || receive.first_loud.is_none();
        let metered = LevelMeter::wants(packet.sequence);
        receive.pcm.clear();
        if (needs_pcm || metered)
            && let Some(decoder) = receive.decoder.as_mut()
        {
            decoder.decode(&packet.payload, &mut receive.pcm);
        }
        if metered {
            receive.level.measure(&receive.pcm);
        }
        if tapped && !receive.pcm.is_empty() {
            self.taps.received(
                &receive.pcm,
                negotiated.codec.clock_rate(),
                packet.timestamp,
            );
        }
        if receive.first_loud.is_none() && is_audible(&receive.pcm) {
            receive.first_loud = Some(at.duration_since(self.created));
        }
        if let Some(to) = self.bridge {
            env.bridged.push((
                to,
                BridgedFrame {
                    payload: packet.payload.clone(),
                    codec: negotiated.codec,
                },
            ));
        }
        let mut digits = Vec::new();
        if let Some(detector) = receive.inband.as_mut() {
            digits = match negotiated.codec {
                Codec::Opus => detector.push(&convert_rate(&receive.pcm, 48000, 8000)),
                _ => detector.push(&receive.pcm),
            };
        }
        if self.passthrough.echo {
            let pcm = (recording && !receive.pcm.is_empty()).then(|| {
                Arc::new(EncodedAudio {
                    codec: negotiated.codec,
                    frames: vec![packet.payload.clone()],
                    pcm: receive.pcm.clone(),
                })
            });
            self.passthrough.push(EchoFrame {
                payload: packet.payload.clone(),
                pcm,
            });
        }
        if recording
            && !receive.pcm.is_empty()
            && let Some(active) = self.recordings.active.as_mut()
        {
            active.timeline.push_remote(packet.timestamp, &receive.pcm);
        }
        for digit in digits {
            self.emit(LegEvent::Digit {
                digit,
                duration: Duration::ZERO,
                inband: true,
            });
        }
    }

    /// Audio a bridged leg received, to be sent by this one: passed on as it is when both legs
    /// speak the same codec, otherwise converted.
    pub fn bridged_in(&mut self, frame: BridgedFrame) {
        let Some(to) = self.player.negotiated().map(|n| n.codec) else {
            return;
        };
        let payload = if frame.codec == to {
            frame.payload
        } else {
            match self.transcode(&frame, to) {
                Some(payload) => payload,
                None => return,
            }
        };
        self.passthrough.push(EchoFrame { payload, pcm: None });
    }

    fn transcode(&mut self, frame: &BridgedFrame, to: Codec) -> Option<Bytes> {
        let stale = self
            .transcoder
            .as_ref()
            .is_none_or(|t| t.from != frame.codec || t.encoder.codec() != to);
        if stale {
            self.transcoder = Decoder::new(frame.codec)
                .and_then(|decoder| Ok((decoder, Encoder::new(to)?)))
                .inspect_err(|e| tracing::warn!(leg = self.id, "cannot transcode: {e}"))
                .ok()
                .map(|(decoder, encoder)| Transcoder {
                    from: frame.codec,
                    decoder,
                    encoder,
                    pcm: Vec::new(),
                });
        }
        let transcoder = self.transcoder.as_mut()?;
        transcoder.pcm.clear();
        transcoder
            .decoder
            .decode(&frame.payload, &mut transcoder.pcm);
        if transcoder.pcm.is_empty() {
            return None;
        }
        let pcm = convert_rate(&transcoder.pcm, frame.codec.clock_rate(), to.clock_rate());
        Some(transcoder.encoder.encode(&pcm))
    }

    /// The leg is gone: its recordings get their last samples and are closed, its connection is
    /// shut, and its final statistics are published.
    pub fn finish(&mut self, writes: &mut WriteBatch) {
        self.recordings.stop();
        self.recordings.finish(writes);
        self.peer.close();
        self.events.flush();
        self.publish();
    }

    /// The leg's connection failed beyond repair (the stack panicked on it): the owner hears it,
    /// and its recordings are closed.
    pub fn fail(&mut self, writes: &mut WriteBatch) {
        self.recordings.stop();
        self.recordings.finish(writes);
        self.state = TransportState::Failed;
        self.emit(LegEvent::State(TransportState::Failed));
        self.events.flush();
        self.publish();
    }

    fn publish(&mut self) {
        self.publish_in = PUBLISH_EVERY;
        let mut stats = LegStats {
            packets_sent: self.sent.packets,
            bytes_sent: self.sent.bytes,
            packets_dropped: self.sent.dropped,
            intervals_skipped: self.sent.skipped,
            connect_time: self.sent.connect_time,
            first_audio: self.sent.first_audio,
            ..LegStats::default()
        };
        let clock_rate = self
            .receive
            .negotiated
            .map_or(8000, |n| n.codec.clock_rate());
        self.receive.stats.fill(&mut stats, clock_rate);
        stats.arrival = self.receive.arrival.clone();
        stats.level_dbfs = self.receive.level.dbfs();
        stats.first_audio_received = self
            .receive
            .first_loud
            .zip(stats.connect_time)
            .map(|(loud, connected)| loud.saturating_sub(connected));
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        published.stats = stats;
        published.pacing = self.sent.pacing.clone();
    }
}

/// Louder than about -40 dBFS: a prompt or a voice, not silence or comfort noise.
fn is_audible(pcm: &[i16]) -> bool {
    if pcm.is_empty() {
        return false;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / pcm.len() as f64).sqrt() > 330.0
}
