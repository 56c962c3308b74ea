//! The first media engine's leg: one async webrtc-rs peer connection per leg, its state behind
//! locks shared by the media clock, the stack's receive task and the owner. Kept while the
//! sans-IO engine is compared with it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::transport::{Transport, TransportEvents};
use crate::media::codec::{Codec, Decoder, Encoder, FRAME_MS, convert_rate};
use crate::media::dtmf::{Digit, EventReceiver};
use crate::media::inband::InbandDetector;
use crate::media::live::LiveFeed;
use crate::media::player::{EchoFrame, ItemId, Negotiated, Player};
use crate::media::prompt::{EncodedAudio, PromptCache};
use crate::media::recorder::{Recording, RecordingWriter, Recordings, Timeline, WriteBatch};
use crate::media::rtp::RtpPacket;
use crate::media::stats::{GapHistogram, LegStats, LevelMeter, ReceiveStats};
use crate::media::tap::{AudioTap, AudioTaps};
use crate::media::tone::Signal;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, MediaError, RecordOptions};
use crate::protocol::{IceCandidate, RemoteCandidate};

/// Received frames queued for echo (or from a bridged leg) beyond this are dropped, bounding
/// the delay they add.
const MAX_ECHO_FRAMES: usize = 5;

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

/// The state the clock, the receive task and the owner share. Each part has its own lock, held
/// for a few microseconds and never across an await or while taking another.
pub(super) struct LegState {
    id: u64,
    created: Instant,
    events: mpsc::Sender<LegEvent>,
    closed: AtomicBool,
    player: Mutex<Player>,
    receive: Mutex<Receive>,
    passthrough: Mutex<Passthrough>,
    /// The leg that sends what this one receives (a bridged call in the PBX emulator).
    bridge: Mutex<Option<Weak<LegState>>>,
    /// Encodes audio bridged in from a leg with another codec.
    transcoder: Mutex<Option<Encoder>>,
    recording: Mutex<Recordings>,
    /// A recording asked for before the codec (and so the rate) was known.
    pending_recording: Mutex<Option<RecordOptions>>,
    sent: Mutex<Sent>,
    recordings: RecordingWriter,
    /// Listeners of the audio both ways (a voice agent's stream).
    taps: Mutex<AudioTaps>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the media path down with it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LegState {
    pub(super) fn new(
        id: u64,
        ssrc: u32,
        recordings: RecordingWriter,
    ) -> (Arc<Self>, mpsc::Receiver<LegEvent>) {
        let (events, receiver) = mpsc::channel(crate::media::EVENT_QUEUE);
        let state = Arc::new(Self {
            id,
            created: Instant::now(),
            events,
            closed: AtomicBool::new(false),
            player: Mutex::new(Player::new(ssrc)),
            receive: Mutex::new(Receive {
                negotiated: None,
                first_loud: None,
                arrival: GapHistogram::default(),
                decoder: None,
                events: EventReceiver::default(),
                inband: None,
                stats: ReceiveStats::default(),
                pcm: Vec::new(),
                level: LevelMeter::default(),
            }),
            passthrough: Mutex::default(),
            bridge: Mutex::default(),
            transcoder: Mutex::new(None),
            recording: Mutex::default(),
            pending_recording: Mutex::new(None),
            sent: Mutex::default(),
            recordings,
            taps: Mutex::default(),
        });
        (state, receiver)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn emit(&self, event: LegEvent) {
        let _ = self.events.try_send(event);
    }

    /// One 20 ms interval: produce, send, record. Called by the media clock.
    pub(super) fn tick(&self, transport: &dyn Transport, writes: &mut WriteBatch) {
        let passthrough = lock(&self.passthrough).frames.pop_front();
        let (tick, codec) = {
            let mut player = lock(&self.player);
            (
                player.tick(passthrough),
                player.negotiated().map(|n| n.codec),
            )
        };
        for event in &tick.events {
            self.emit(LegEvent::Played {
                id: event.id,
                outcome: event.outcome.clone(),
            });
        }
        if !tick.packets.is_empty() {
            let (mut sent, mut bytes, mut dropped) = (0, 0, 0);
            for packet in tick.packets.iter().cloned() {
                let size = packet.payload.len() as u64;
                if transport.try_send(packet) {
                    sent += 1;
                    bytes += size;
                } else {
                    dropped += 1;
                }
            }
            let mut stats = lock(&self.sent);
            stats.packets += sent;
            stats.bytes += bytes;
            stats.dropped += dropped;
            if sent > 0
                && tick.pcm.is_some()
                && stats.first_audio.is_none()
                && let Some(connected) = stats.connect_time
            {
                stats.first_audio = Some(self.created.elapsed().saturating_sub(connected));
            }
            if sent > 0 {
                stats
                    .pacing
                    .record(Instant::now(), Duration::from_millis(FRAME_MS.into()));
            }
        }
        if let Some(codec) = codec {
            {
                let taps = lock(&self.taps);
                if !taps.is_empty() {
                    taps.sent(tick.pcm(), codec.clock_rate());
                }
            }
            lock(&self.recording).push_local(tick.pcm(), codec.frame_samples(), writes);
        }
    }

    /// The clock skipped `intervals` intervals ([`crate::media::pacer`]): nothing is sent for
    /// them, the queue and the RTP timestamp move on, and a recording gets silence for them, so
    /// it stays on the far end's timeline.
    pub(super) fn skip(&self, intervals: u32) {
        let (events, codec) = {
            let mut player = lock(&self.player);
            (player.skip(intervals), player.negotiated().map(|n| n.codec))
        };
        for event in events {
            self.emit(LegEvent::Played {
                id: event.id,
                outcome: event.outcome,
            });
        }
        lock(&self.sent).skipped += u64::from(intervals);
        if let Some(codec) = codec {
            let samples = codec.frame_samples() * intervals as usize;
            lock(&self.recording).skip(samples);
        }
    }

    /// The leg is gone: its recordings get their last samples and are closed.
    pub(super) fn finish(&self, writes: &mut WriteBatch) {
        let mut recordings = lock(&self.recording);
        recordings.stop();
        recordings.finish(writes);
    }

    fn configure(self: &Arc<Self>, negotiated: Negotiated, prompts: &Arc<PromptCache>) {
        let to_load = lock(&self.player).configure(negotiated);
        for (id, path) in to_load {
            self.load_prompt(id, path, negotiated.codec, prompts);
        }
        {
            let mut receive = lock(&self.receive);
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
        }
        if let Some(options) = lock(&self.pending_recording).take() {
            self.start_recording(options, negotiated.codec);
        }
    }

    /// Hands a prompt to the player: at once when cached, otherwise after loading it off the
    /// runtime's worker threads.
    fn load_prompt(
        self: &Arc<Self>,
        id: ItemId,
        path: PathBuf,
        codec: Codec,
        prompts: &Arc<PromptCache>,
    ) {
        if let Some(audio) = prompts.get_if_cached(&path, codec) {
            lock(&self.player).loaded(id, Ok(audio));
            return;
        }
        let prompts = prompts.clone();
        let state = Arc::downgrade(self);
        tokio::task::spawn_blocking(move || {
            let result = prompts.get(&path, codec);
            if let Err(e) = &result {
                tracing::warn!("{e}");
            }
            if let Some(state) = state.upgrade() {
                lock(&state.player).loaded(id, result);
            }
        });
    }

    fn start_recording(&self, options: RecordOptions, codec: Codec) {
        let rate = codec.clock_rate();
        let timeline = Timeline::new(rate, options.stereo, options.max_secs);
        let id = rand::random();
        let events = self.events.clone();
        self.recordings.open(
            id,
            &options.path,
            timeline.channels(),
            rate,
            move |report| {
                let _ = events.try_send(LegEvent::Recording(report));
            },
        );
        let mut recordings = lock(&self.recording);
        recordings.stop();
        recordings.active = Some(Recording { id, timeline });
    }

    fn stop_recording(&self) {
        lock(&self.recording).stop();
        lock(&self.pending_recording).take();
    }

    fn on_audio(&self, packet: &RtpPacket, negotiated: Negotiated, receive: &mut Receive) {
        let recording = lock(&self.recording).active.is_some();
        let echo_on = lock(&self.passthrough).echo;
        let bridged = lock(&self.bridge).as_ref().and_then(Weak::upgrade);
        let bridged_codec = bridged
            .as_ref()
            .and_then(|leg| lock(&leg.player).negotiated())
            .map(|n| n.codec);
        let transcode = bridged_codec.is_some_and(|codec| codec != negotiated.codec);
        let tapped = !lock(&self.taps).is_empty();
        // Until something audible arrived, frames are decoded to notice it (first-audio time).
        let needs_pcm = recording
            || tapped
            || receive.inband.is_some()
            || transcode
            || receive.first_loud.is_none();
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
        if receive.first_loud.is_none() && is_audible(&receive.pcm) {
            receive.first_loud = Some(self.created.elapsed());
        }
        if tapped && !receive.pcm.is_empty() {
            lock(&self.taps).received(
                &receive.pcm,
                negotiated.codec.clock_rate(),
                packet.timestamp,
            );
        }
        if let (Some(leg), Some(codec)) = (&bridged, bridged_codec) {
            leg.bridged_in(&packet.payload, &receive.pcm, negotiated.codec, codec);
        }
        if let Some(detector) = receive.inband.as_mut() {
            let digits = match negotiated.codec {
                Codec::Opus => detector.push(&convert_rate(&receive.pcm, 48000, 8000)),
                _ => detector.push(&receive.pcm),
            };
            for digit in digits {
                self.emit(LegEvent::Digit {
                    digit,
                    duration: Duration::ZERO,
                    inband: true,
                });
            }
        }
        if echo_on {
            let pcm = (recording && !receive.pcm.is_empty()).then(|| {
                Arc::new(EncodedAudio {
                    codec: negotiated.codec,
                    frames: vec![packet.payload.clone()],
                    pcm: receive.pcm.clone(),
                })
            });
            lock(&self.passthrough).push(EchoFrame {
                payload: packet.payload.clone(),
                pcm,
            });
        }
        if recording
            && !receive.pcm.is_empty()
            && let Some(active) = lock(&self.recording).active.as_mut()
        {
            active.timeline.push_remote(packet.timestamp, &receive.pcm);
        }
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

impl LegState {
    /// Audio a bridged leg received, to be sent by this one: passed on as it is when both legs
    /// speak the same codec, otherwise converted from `pcm` (decoded at `from`'s rate).
    fn bridged_in(&self, payload: &bytes::Bytes, pcm: &[i16], from: Codec, to: Codec) {
        let payload = if from == to {
            payload.clone()
        } else {
            if pcm.is_empty() {
                return;
            }
            let mut transcoder = lock(&self.transcoder);
            if transcoder.as_ref().is_none_or(|e| e.codec() != to) {
                *transcoder = Encoder::new(to)
                    .inspect_err(|e| tracing::warn!(leg = self.id, "no encoder: {e}"))
                    .ok();
            }
            let Some(encoder) = transcoder.as_mut() else {
                return;
            };
            encoder.encode(&convert_rate(pcm, from.clock_rate(), to.clock_rate()))
        };
        lock(&self.passthrough).push(EchoFrame { payload, pcm: None });
    }
}

impl TransportEvents for LegState {
    fn local_candidate(&self, candidate: IceCandidate) {
        self.emit(LegEvent::LocalCandidate(candidate));
    }

    fn state(&self, state: TransportState) {
        if state == TransportState::Connected {
            lock(&self.sent)
                .connect_time
                .get_or_insert_with(|| self.created.elapsed());
            lock(&self.player).connected();
        }
        self.emit(LegEvent::State(state));
    }

    fn rtp(&self, packet: RtpPacket) {
        let mut receive = lock(&self.receive);
        let Some(negotiated) = receive.negotiated else {
            return;
        };
        receive.stats.record(
            packet.sequence,
            packet.timestamp,
            packet.payload.len(),
            Instant::now(),
            self.created,
            negotiated.codec.clock_rate(),
        );
        if Some(packet.payload_type) == negotiated.telephone_event {
            for received in receive.events.receive(packet.timestamp, &packet.payload) {
                self.emit(LegEvent::Digit {
                    digit: received.digit,
                    duration: Duration::from_millis(u64::from(received.duration) / 8),
                    inband: false,
                });
            }
        } else if packet.payload_type == negotiated.payload_type {
            receive
                .arrival
                .record(Instant::now(), Duration::from_millis(FRAME_MS.into()));
            self.on_audio(&packet, negotiated, &mut receive);
        }
    }
}

/// Signalling progress: remote candidates wait until there is a remote description.
#[derive(Default)]
struct Signalling {
    remote_description: bool,
    pending_candidates: Vec<String>,
}

/// One WebRTC audio leg. Dropping it without [`LegacyLeg::close`] still stops its media.
pub struct LegacyLeg {
    state: Arc<LegState>,
    transport: Arc<dyn Transport>,
    prompts: Arc<PromptCache>,
    signalling: tokio::sync::Mutex<Signalling>,
}

impl LegacyLeg {
    pub(super) fn new(
        state: Arc<LegState>,
        transport: Arc<dyn Transport>,
        prompts: Arc<PromptCache>,
    ) -> Self {
        Self {
            state,
            transport,
            prompts,
            signalling: tokio::sync::Mutex::default(),
        }
    }

    /// Identifies the leg in logs.
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// Our offer, for an outbound call.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        Ok(self.transport.create_offer().await?)
    }

    /// Answers a remote offer (an incoming call, or the PBX's offer after a rollback).
    pub async fn accept_offer(&self, offer: &str) -> Result<String, MediaError> {
        let mut signalling = self.signalling.lock().await;
        let answer = self.transport.accept_offer(offer).await?;
        self.remote_description_set(&mut signalling).await?;
        Ok(answer)
    }

    /// Applies the answer to our offer.
    pub async fn apply_answer(&self, answer: &str) -> Result<(), MediaError> {
        let mut signalling = self.signalling.lock().await;
        self.transport.apply_answer(answer).await?;
        self.remote_description_set(&mut signalling).await
    }

    /// Withdraws our offer so the far end's own offer can be answered (modern PBX flow).
    pub async fn rollback(&self) -> Result<(), MediaError> {
        let _signalling = self.signalling.lock().await;
        Ok(self.transport.rollback().await?)
    }

    async fn remote_description_set(&self, signalling: &mut Signalling) -> Result<(), MediaError> {
        signalling.remote_description = true;
        for candidate in std::mem::take(&mut signalling.pending_candidates) {
            if let Err(e) = self.transport.add_remote_candidate(&candidate).await {
                tracing::debug!(leg = self.id(), "remote candidate refused: {e}");
            }
        }
        let negotiated = self.transport.negotiated().await?;
        self.state.configure(negotiated, &self.prompts);
        Ok(())
    }

    /// Adds a candidate from the far end, expanding `adr` lists; queued until a remote
    /// description exists.
    pub async fn add_remote_candidate(
        &self,
        candidate: &RemoteCandidate,
    ) -> Result<(), MediaError> {
        let lines = candidate.lines()?;
        let mut signalling = self.signalling.lock().await;
        if !signalling.remote_description {
            signalling.pending_candidates.extend(lines);
            return Ok(());
        }
        for line in lines {
            self.transport.add_remote_candidate(&line).await?;
        }
        Ok(())
    }

    /// The codecs settled with the far end, once known.
    pub fn negotiated(&self) -> Option<Negotiated> {
        lock(&self.state.player).negotiated()
    }

    /// Queues a WAV prompt, `loops` times; it is loaded (once per codec, cached) in the
    /// background and reported with a `Played` event.
    pub fn play(&self, id: ItemId, path: PathBuf, loops: u32) {
        let load_now = lock(&self.state.player).enqueue_prompt(id, path.clone(), loops);
        if load_now && let Some(negotiated) = self.negotiated() {
            self.state
                .load_prompt(id, path, negotiated.codec, &self.prompts);
        }
    }

    pub fn pause(&self, id: ItemId, ms: u32) {
        lock(&self.state.player).enqueue_pause(id, ms);
    }

    pub fn tone(&self, id: ItemId, hz: f32, ms: u32) {
        lock(&self.state.player).enqueue_tone(id, hz, ms);
    }

    pub fn send_dtmf(&self, id: ItemId, digits: Vec<Digit>) {
        lock(&self.state.player).enqueue_dtmf(id, digits);
    }

    /// Clears the queue and cuts the current item (barge-in).
    pub fn stop(&self) {
        let events = lock(&self.state.player).stop();
        for event in events {
            self.state.emit(LegEvent::Played {
                id: event.id,
                outcome: event.outcome,
            });
        }
    }

    pub fn play_live(&self, id: ItemId, feed: Arc<LiveFeed>) {
        lock(&self.state.player).enqueue_live(id, feed);
    }

    pub fn add_tap(&self, tap: Arc<dyn AudioTap>) {
        lock(&self.state.taps).add(tap);
    }

    pub fn remove_tap(&self, tap: &Arc<dyn AudioTap>) {
        lock(&self.state.taps).remove(tap);
    }

    /// Queues a call-progress signal (ringback, hold music, error tone), `loops` times.
    pub fn play_signal(&self, id: ItemId, signal: Signal, loops: u32) {
        lock(&self.state.player).enqueue_signal(id, signal, loops);
    }

    /// Echo mode: what arrives is sent back (re-timed) whenever nothing is queued.
    pub fn set_echo(&self, on: bool) {
        let mut passthrough = lock(&self.state.passthrough);
        passthrough.echo = on;
        passthrough.frames.clear();
    }

    /// Sends what this leg receives out through `to` (whenever `to` has nothing queued),
    /// transcoding if the two legs chose different codecs. One direction; bridge both legs to
    /// each other for a two-way call. `None` ends the bridge.
    pub fn bridge_to(&self, to: Option<&LegacyLeg>) {
        *lock(&self.state.bridge) = to.map(|leg| Arc::downgrade(&leg.state));
    }

    /// Local hold: send nothing (the recording goes on with silence).
    pub fn set_muted(&self, muted: bool) {
        lock(&self.state.player).set_muted(muted);
    }

    /// Starts recording (replacing a recording in progress). Before the codec is known the
    /// recording waits for it.
    pub fn record(&self, options: RecordOptions) {
        match self.negotiated() {
            Some(negotiated) => self.state.start_recording(options, negotiated.codec),
            None => *lock(&self.state.pending_recording) = Some(options),
        }
    }

    pub fn stop_recording(&self) {
        self.state.stop_recording();
    }

    pub fn stats(&self) -> LegStats {
        let mut stats = LegStats::default();
        {
            let sent = lock(&self.state.sent);
            stats.packets_sent = sent.packets;
            stats.bytes_sent = sent.bytes;
            stats.packets_dropped = sent.dropped;
            stats.intervals_skipped = sent.skipped;
            stats.connect_time = sent.connect_time;
            stats.first_audio = sent.first_audio;
        }
        let receive = lock(&self.state.receive);
        let clock_rate = receive.negotiated.map_or(8000, |n| n.codec.clock_rate());
        receive.stats.fill(&mut stats, clock_rate);
        stats.arrival = receive.arrival.clone();
        stats.level_dbfs = receive.level.dbfs();
        stats.first_audio_received = receive
            .first_loud
            .zip(stats.connect_time)
            .map(|(loud, connected)| loud.saturating_sub(connected));
        stats
    }

    /// How regularly this leg's packets left.
    pub fn send_pacing(&self) -> GapHistogram {
        lock(&self.state.sent).pacing.clone()
    }

    /// Ends the leg: the media clock closes its recording, and the connection is shut.
    pub async fn close(&self) {
        if !self.state.closed.swap(true, Ordering::Relaxed) {
            self.transport.close().await;
        }
    }
}

impl Drop for LegacyLeg {
    fn drop(&mut self) {
        if !self.state.closed.swap(true, Ordering::Relaxed) {
            let transport = self.transport.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { transport.close().await });
            }
        }
    }
}
