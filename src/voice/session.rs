//! One stream of one call: a task that owns the agent's WebSocket, sends the caller's audio,
//! keys and returned marks as they come, and feeds the agent's audio, marks and clears to the
//! leg's player. The call keeps a [`Stream`] handle: events come out of it, and stopping or
//! dropping it ends the task.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tracing::{Instrument, debug, info, warn};

use super::audio::{Downlink, Framer, to_stream_rate};
use super::message::{Incoming, Outgoing, Track};
use super::socket::{self, AgentSocket};
use super::{StreamError, StreamEvent, StreamRequest, StreamSettings};
use crate::media::MediaLeg;
use crate::media::live::{DEFAULT_CAPACITY_FRAMES, LiveFeed, MAX_PENDING_MARKS, MarkListener};
use crate::media::player::ItemId;
use crate::media::tap::AudioTap;

/// What waits to go to the agent: about 2.5 s of the caller's audio (5 s with one track)…
const UPLINK_AUDIO: usize = 256;
/// …and room kept free for marks and keys, which must not be lost to a burst of audio.
const UPLINK_RESERVED: usize = MAX_PENDING_MARKS + 28;
/// Events waiting for the call.
const EVENTS: usize = 32;
/// A write the agent does not take within this long means it stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages written before one flush, when several are waiting.
const WRITE_BATCH: usize = 16;

/// Something for the agent, from the media path or the call.
#[derive(Debug)]
enum Uplink {
    /// 8 kHz audio of one track, taken at `at`.
    Audio(Track, Vec<i16>, Instant),
    /// The agent's mark has been reached.
    Mark(String),
    Dtmf(char),
}

/// Hands the leg's audio and reached marks to the stream task, dropping audio (and counting it)
/// rather than waiting when the task is behind.
struct Bridge {
    uplink: mpsc::Sender<Uplink>,
    outbound: bool,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl Bridge {
    fn audio(&self, track: Track, pcm: Vec<i16>) {
        let sent = self.uplink.capacity() > UPLINK_RESERVED
            && self
                .uplink
                .try_send(Uplink::Audio(track, pcm, Instant::now()))
                .is_ok();
        if !sent {
            self.dropped.inc();
        }
    }
}

impl AudioTap for Bridge {
    fn received(&self, pcm: &[i16], rate: u32, _timestamp: u32) {
        self.audio(Track::Inbound, to_stream_rate(pcm, rate));
    }

    fn sent(&self, pcm: Option<&[i16]>, rate: u32) {
        if self.outbound {
            let pcm = pcm.map_or_else(|| vec![0; super::FRAME], |p| to_stream_rate(p, rate));
            self.audio(Track::Outbound, pcm);
        }
    }
}

impl MarkListener for Bridge {
    fn reached(&self, name: String) {
        let _ = self.uplink.try_send(Uplink::Mark(name));
    }
}

/// A call's open stream.
pub struct Stream {
    item: ItemId,
    events: mpsc::Receiver<StreamEvent>,
    uplink: mpsc::Sender<Uplink>,
    stop: Option<oneshot::Sender<String>>,
}

impl Stream {
    /// Starts streaming `leg` (call `call_id`) to the agent at `request.url`. The agent's audio
    /// plays as player item `item`, queued now, which ends with the stream; a URL
    /// the policy refuses or an agent that cannot be reached is reported as
    /// [`StreamEvent::Error`].
    pub fn open(
        leg: &Arc<MediaLeg>,
        item: ItemId,
        call_id: &str,
        request: StreamRequest,
        settings: Arc<StreamSettings>,
    ) -> Self {
        let (uplink, uplink_rx) = mpsc::channel(UPLINK_AUDIO + UPLINK_RESERVED);
        let (events_tx, events) = mpsc::channel(EVENTS);
        let (stop, stop_rx) = oneshot::channel();
        let bridge = Arc::new(Bridge {
            uplink: uplink.clone(),
            outbound: request.tracks == super::Tracks::Both,
            dropped: settings.metrics.dropped_to_agent.clone(),
        });
        let feed = Arc::new(LiveFeed::new(DEFAULT_CAPACITY_FRAMES, bridge.clone()));
        leg.play_live(item, feed.clone());
        let stream_sid = format!("MZ{:032x}", rand::random::<u128>());
        let mut params: BTreeMap<String, String> = request.params.clone();
        for (key, value) in &settings.params {
            params.insert(key.clone(), value.expose().to_owned());
        }
        let task = Task {
            leg: Arc::downgrade(leg),
            out: Outgoing::new(stream_sid, settings.account.clone(), call_id.to_owned()),
            settings,
            request,
            params,
            bridge,
            feed,
            events: events_tx,
            framers: [Framer::default(), Framer::default()],
            downlink: None,
            pending_marks: VecDeque::new(),
            started: Instant::now(),
            bad_messages: 0,
        };
        let span = tracing::info_span!("stream");
        tokio::spawn(task.run(uplink_rx, stop_rx).instrument(span));
        Self {
            item,
            events,
            uplink,
            stop: Some(stop),
        }
    }

    /// The player item that plays the agent's audio.
    pub fn item(&self) -> ItemId {
        self.item
    }

    /// The next event; after `Closed` or `Error` there are no more (`None`).
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        self.events.recv().await
    }

    /// A key the caller pressed, for the agent.
    pub fn dtmf(&self, digit: char) {
        let _ = self.uplink.try_send(Uplink::Dtmf(digit));
    }

    /// Ends the stream: `stop` goes to the agent, the agent's queued audio is dropped, and a
    /// `Closed(reason)` event follows.
    pub fn stop(&mut self, reason: &str) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(reason.to_owned());
        }
    }
}

/// How the task's main loop ended.
enum End {
    /// We stopped it: the agent's queued audio is dropped.
    Stopped(String),
    /// The agent closed it: what it sent still plays.
    Closed(String),
    Broken(String),
}

struct Task {
    leg: Weak<MediaLeg>,
    settings: Arc<StreamSettings>,
    request: StreamRequest,
    params: BTreeMap<String, String>,
    out: Outgoing,
    bridge: Arc<Bridge>,
    feed: Arc<LiveFeed>,
    events: mpsc::Sender<StreamEvent>,
    /// Inbound and outbound.
    framers: [Framer; 2],
    downlink: Option<Downlink>,
    /// The agent's marks not yet returned, with when they came (for the round-trip time).
    pending_marks: VecDeque<(String, Instant)>,
    started: Instant,
    bad_messages: u64,
}

impl Task {
    async fn run(
        mut self,
        mut uplink: mpsc::Receiver<Uplink>,
        mut stop: oneshot::Receiver<String>,
    ) {
        let socket = match self.connect(&mut stop).await {
            Ok(socket) => socket,
            Err(reason) => {
                self.feed.close();
                let _ = self.events.send(StreamEvent::Error(reason)).await;
                return;
            }
        };
        let metrics = self.settings.metrics.clone();
        metrics.open.inc();
        let tap: Arc<dyn AudioTap> = self.bridge.clone();
        if let Some(leg) = self.leg.upgrade() {
            leg.add_tap(tap.clone());
        }
        let end = self.pump(socket, &mut uplink, &mut stop).await;
        if let Some(leg) = self.leg.upgrade() {
            leg.remove_tap(&tap);
        }
        metrics.open.dec();
        let event = match end {
            End::Stopped(reason) => {
                self.feed.close();
                info!("stream stopped ({reason})");
                StreamEvent::Closed(reason)
            }
            End::Closed(reason) => {
                self.feed.finish();
                info!("stream closed: {reason}");
                StreamEvent::Closed(reason)
            }
            End::Broken(reason) => {
                self.feed.finish();
                warn!("stream broke: {reason}");
                StreamEvent::Error(reason)
            }
        };
        let _ = self.events.send(event).await;
    }

    /// Opens the socket and sends `connected` and `start`; a stop meanwhile gives up.
    async fn connect(
        &mut self,
        stop: &mut oneshot::Receiver<String>,
    ) -> Result<AgentSocket, String> {
        let url = socket::check_url(&self.request.url, self.settings.allow_ws)
            .map_err(|e| e.to_string())?;
        let shown = socket::shown(&url);
        let connecting = socket::connect(&url, &self.settings);
        let mut socket = tokio::select! {
            result = connecting => result.map_err(|e: StreamError| {
                warn!("stream to {shown} failed: {e}");
                e.to_string()
            })?,
            _ = stop => return Err("stopped before the agent answered".into()),
        };
        let connected = self.out.connected();
        let start = self.out.start(self.request.tracks.list(), &self.params);
        for text in [connected, start] {
            write(&mut socket, text)
                .await
                .map_err(|e| format!("sending start: {e}"))?;
        }
        info!("streaming to {shown} as {}", self.out.stream_sid());
        self.started = Instant::now();
        let _ = self.events.send(StreamEvent::Connected).await;
        Ok(socket)
    }

    async fn pump(
        &mut self,
        socket: AgentSocket,
        uplink: &mut mpsc::Receiver<Uplink>,
        stop: &mut oneshot::Receiver<String>,
    ) -> End {
        let (mut sink, mut source) = socket.split();
        loop {
            tokio::select! {
                biased;
                reason = &mut *stop => {
                    let reason = reason.unwrap_or_else(|_| "the call is gone".into());
                    let stop = self.out.stop();
                    let goodbye = async {
                        sink.send(Message::text(stop)).await?;
                        sink.close().await
                    };
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, goodbye).await;
                    return End::Stopped(reason);
                }
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) => self.incoming(text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map_or_else(
                            || "the agent closed the stream".to_owned(),
                            |f| format!("the agent closed the stream ({} {})", u16::from(f.code), crate::untrusted::escaped(&f.reason)),
                        );
                        return End::Closed(reason);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Broken(format!("the connection to the agent failed: {e}")),
                    None => return End::Broken("the agent's connection ended without a close".into()),
                },
                Some(first) = uplink.recv() => {
                    let mut texts = Vec::new();
                    self.outgoing(first, &mut texts);
                    while texts.len() < WRITE_BATCH {
                        match uplink.try_recv() {
                            Ok(next) => self.outgoing(next, &mut texts),
                            Err(_) => break,
                        }
                    }
                    let batch = async {
                        for text in texts {
                            sink.feed(Message::text(text)).await?;
                        }
                        sink.flush().await
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Broken(format!("writing to the agent failed: {e}")),
                        Err(_) => return End::Broken(format!("the agent took nothing for {WRITE_TIMEOUT:?}")),
                    }
                }
            }
        }
    }

    /// Turns what the leg or the call handed over into messages.
    fn outgoing(&mut self, uplink: Uplink, texts: &mut Vec<String>) {
        match uplink {
            Uplink::Audio(track, pcm, at) => {
                let timestamp = at.saturating_duration_since(self.started).as_millis() as u64;
                for frame in self.framers[track as usize].push(&pcm) {
                    texts.push(self.out.media(track, timestamp, &frame));
                    self.settings.metrics.to_agent.inc();
                }
            }
            Uplink::Mark(name) => {
                if let Some(index) = self.pending_marks.iter().position(|(n, _)| *n == name)
                    && let Some((_, at)) = self.pending_marks.remove(index)
                {
                    self.settings
                        .metrics
                        .mark_rtt
                        .observe(at.elapsed().as_secs_f64());
                }
                texts.push(self.out.mark(&name));
                let _ = self.events.try_send(StreamEvent::Mark(name));
            }
            Uplink::Dtmf(digit) => texts.push(self.out.dtmf(digit)),
        }
    }

    /// Acts on one message from the agent.
    fn incoming(&mut self, text: &str) {
        match Incoming::parse(text) {
            Ok(Incoming::Media(mulaw)) => {
                self.settings.metrics.from_agent.inc();
                if let Some(audio) = self.downlink().and_then(|d| d.push(&mulaw)) {
                    self.play(audio);
                }
            }
            Ok(Incoming::Mark(name)) => {
                if let Some(audio) = self.downlink.as_mut().and_then(Downlink::flush) {
                    self.play(audio);
                }
                if self.pending_marks.len() >= MAX_PENDING_MARKS * 2 {
                    self.pending_marks.pop_front();
                }
                self.pending_marks.push_back((name.clone(), Instant::now()));
                self.feed.push_mark(name);
            }
            Ok(Incoming::Clear) => {
                if let Some(downlink) = self.downlink.as_mut() {
                    downlink.clear();
                }
                self.feed.clear();
            }
            Ok(Incoming::Other) => {}
            Err(e) => {
                self.bad_messages += 1;
                if self.bad_messages == 1 {
                    warn!("ignoring a bad message from the agent (further ones at debug): {e}");
                } else {
                    debug!("ignoring a bad message from the agent: {e}");
                }
            }
        }
    }

    fn play(&self, audio: Arc<crate::media::prompt::EncodedAudio>) {
        let dropped = self.feed.push_audio(audio);
        self.settings
            .metrics
            .dropped_from_agent
            .inc_by(dropped as u64);
    }

    /// The transcoder for the call's codec as negotiated now (made again if it changed).
    fn downlink(&mut self) -> Option<&mut Downlink> {
        let codec = self.leg.upgrade()?.negotiated()?.codec;
        if self.downlink.as_ref().is_none_or(|d| d.codec() != codec) {
            self.downlink = Downlink::new(codec)
                .inspect_err(|e| warn!("no transcoder for {}: {e}", codec.name()))
                .ok();
        }
        self.downlink.as_mut()
    }
}

async fn write(
    socket: &mut AgentSocket,
    text: String,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::text(text))).await {
        Ok(result) => result,
        Err(_) => Err(tokio_tungstenite::tungstenite::Error::Io(
            std::io::ErrorKind::TimedOut.into(),
        )),
    }
}
