//! What a leg sends, 20 ms at a time: an ordered queue of prompts, pauses, tones and DTMF, with
//! silence (or echoed audio) when the queue is empty so the stream never stalls. Sans-IO: the
//! media clock calls [`Player::tick`] once per interval and sends the packets it returns.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::codec::Codec;
use super::dtmf::{Digit, EventSender, GAP_MS, TONE_MS};
use super::live::{LiveFeed, LiveFrame};
use super::prompt::{EncodedAudio, PromptError};
use super::rtp::{RtpPacket, Sequencer};
use super::tone;

/// Identifies a queued item in events.
pub type ItemId = u64;

/// Intervals of silence sent after media comes up before the queue starts: the first packets
/// after connect can be lost (docs/architecture.md "Media").
const START_DELAY_TICKS: u32 = 5;

/// What the codec negotiation settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    /// Payload type of telephone-event/8000, if the far end accepted it.
    pub telephone_event: Option<u8>,
}

/// How a queued item ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Done,
    /// Cut off by [`Player::stop`] (barge-in) before it finished, or never started.
    Interrupted,
    Failed(Arc<PromptError>),
}

#[derive(Clone, Debug)]
pub struct PlayerEvent {
    pub id: ItemId,
    pub outcome: Outcome,
}

/// One interval's output.
#[derive(Debug, Default)]
pub struct Tick {
    pub packets: Vec<RtpPacket>,
    /// The audio sent, as PCM at the codec's rate, for the recorder; `None` is silence.
    pub pcm: Option<(Arc<EncodedAudio>, usize)>,
    pub events: Vec<PlayerEvent>,
}

impl Tick {
    /// The PCM of this interval, if any audio was sent.
    pub fn pcm(&self) -> Option<&[i16]> {
        let (audio, frame) = self.pcm.as_ref()?;
        let n = audio.codec.frame_samples();
        let start = frame * n;
        audio.pcm.get(start..(start + n).min(audio.pcm.len()))
    }
}

/// A received frame to send back in echo mode, with its PCM if it was decoded.
#[derive(Debug)]
pub struct EchoFrame {
    pub payload: Bytes,
    pub pcm: Option<Arc<EncodedAudio>>,
}

#[derive(Debug)]
enum Prompt {
    /// Waiting for the codec to be known, then for the loader.
    Loading(PathBuf),
    Ready(Arc<EncodedAudio>),
    Failed(Arc<PromptError>),
}

#[derive(Debug)]
enum Kind {
    Prompt {
        prompt: Prompt,
        loops: u32,
    },
    Pause {
        ticks: u32,
    },
    Tone {
        hz: f32,
        ms: u32,
    },
    Signal {
        signal: tone::Signal,
        loops: u32,
    },
    Dtmf {
        digits: VecDeque<Digit>,
    },
    /// Audio pushed from outside while it plays (a voice agent), until the feed ends.
    Live(Arc<LiveFeed>),
}

#[derive(Debug)]
struct Item {
    id: ItemId,
    kind: Kind,
}

/// The item being played, with its progress.
#[derive(Debug)]
enum Current {
    Audio {
        id: ItemId,
        audio: Arc<EncodedAudio>,
        frame: usize,
        loops_left: u32,
        /// Frames still to send, whatever the loops say (a tone ends mid-piece).
        frames_left: u32,
    },
    /// A prompt whose file is still loading: silence meanwhile.
    Waiting(Item),
    Pause {
        id: ItemId,
        ticks_left: u32,
    },
    Dtmf {
        id: ItemId,
        digits: VecDeque<Digit>,
        sending: Option<(EventSender, u32)>,
        gap_ticks: u32,
    },
    Live {
        id: ItemId,
        feed: Arc<LiveFeed>,
    },
}

#[derive(Debug)]
pub struct Player {
    sequencer: Sequencer,
    negotiated: Option<Negotiated>,
    /// Media is up: packets can be sent.
    connected: bool,
    start_delay: u32,
    queue: VecDeque<Item>,
    current: Option<Current>,
    first_packet: bool,
    /// Send nothing at all (local hold).
    muted: bool,
}

impl Player {
    pub fn new(ssrc: u32) -> Self {
        Self {
            sequencer: Sequencer::new(ssrc),
            negotiated: None,
            connected: false,
            start_delay: START_DELAY_TICKS,
            queue: VecDeque::new(),
            current: None,
            first_packet: true,
            muted: false,
        }
    }

    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    /// Media is up: start sending, beginning with a few intervals of silence.
    pub fn connected(&mut self) {
        if !self.connected {
            self.connected = true;
            self.start_delay = START_DELAY_TICKS;
        }
    }

    /// Sets the codec once negotiation is done; returns the prompts to load for it now.
    pub fn configure(&mut self, negotiated: Negotiated) -> Vec<(ItemId, PathBuf)> {
        self.negotiated = Some(negotiated);
        let waiting = self.current.iter().filter_map(|c| match c {
            Current::Waiting(item) => Some(item),
            _ => None,
        });
        waiting
            .chain(self.queue.iter())
            .filter_map(|item| match &item.kind {
                Kind::Prompt {
                    prompt: Prompt::Loading(path),
                    ..
                } => Some((item.id, path.clone())),
                _ => None,
            })
            .collect()
    }

    /// Items are numbered by whoever queues them (the leg's handle), so that the number is known
    /// before the player sees the item.
    fn push(&mut self, id: ItemId, kind: Kind) {
        self.queue.push_back(Item { id, kind });
    }

    /// Queues a prompt file; the caller loads it (off the clock) and reports with
    /// [`Player::loaded`]. Returns whether loading can start now (codec known).
    pub fn enqueue_prompt(&mut self, id: ItemId, path: PathBuf, loops: u32) -> bool {
        self.push(
            id,
            Kind::Prompt {
                prompt: Prompt::Loading(path),
                loops: loops.max(1),
            },
        );
        self.negotiated.is_some()
    }

    /// Queues audio that is already encoded for the negotiated codec.
    #[cfg(test)]
    pub fn enqueue_audio(&mut self, id: ItemId, audio: Arc<EncodedAudio>, loops: u32) {
        self.push(
            id,
            Kind::Prompt {
                prompt: Prompt::Ready(audio),
                loops: loops.max(1),
            },
        );
    }

    pub fn enqueue_pause(&mut self, id: ItemId, ms: u32) {
        self.push(
            id,
            Kind::Pause {
                ticks: ms.div_ceil(super::codec::FRAME_MS),
            },
        );
    }

    pub fn enqueue_tone(&mut self, id: ItemId, hz: f32, ms: u32) {
        self.push(id, Kind::Tone { hz, ms });
    }

    /// Queues a call-progress signal (ringback, hold music, error tone), `loops` times.
    pub fn enqueue_signal(&mut self, id: ItemId, signal: tone::Signal, loops: u32) {
        self.push(
            id,
            Kind::Signal {
                signal,
                loops: loops.max(1),
            },
        );
    }

    /// Queues DTMF: RFC 4733 events when negotiated, otherwise in-band tones.
    pub fn enqueue_dtmf(&mut self, id: ItemId, digits: Vec<Digit>) {
        self.push(
            id,
            Kind::Dtmf {
                digits: digits.into(),
            },
        );
    }

    /// Queues a live feed: when its turn comes, each tick plays the feed's next frame (silence
    /// while it has none) until the feed ends.
    pub fn enqueue_live(&mut self, id: ItemId, feed: Arc<LiveFeed>) {
        self.push(id, Kind::Live(feed));
    }

    /// A prompt finished loading (or failed to).
    pub fn loaded(&mut self, id: ItemId, result: Result<Arc<EncodedAudio>, PromptError>) {
        let prompt = match result {
            Ok(audio) => Prompt::Ready(audio),
            Err(error) => Prompt::Failed(Arc::new(error)),
        };
        let waiting = self.current.iter_mut().filter_map(|c| match c {
            Current::Waiting(item) => Some(item),
            _ => None,
        });
        for item in waiting.chain(self.queue.iter_mut()) {
            if item.id == id
                && let Kind::Prompt { prompt: slot, .. } = &mut item.kind
            {
                *slot = prompt;
                return;
            }
        }
    }

    /// Cuts the current item and clears the queue (barge-in); each gets an `Interrupted` event.
    /// A live feed cut off this way is closed, so its sender learns it is no longer heard.
    pub fn stop(&mut self) -> Vec<PlayerEvent> {
        let current = self.current.take().map(|c| match c {
            Current::Audio { id, .. } | Current::Pause { id, .. } | Current::Dtmf { id, .. } => id,
            Current::Live { id, feed } => {
                feed.close();
                id
            }
            Current::Waiting(item) => item.id,
        });
        let queued = self.queue.drain(..).map(|item| {
            if let Kind::Live(feed) = &item.kind {
                feed.close();
            }
            item.id
        });
        current
            .into_iter()
            .chain(queued)
            .map(|id| PlayerEvent {
                id,
                outcome: Outcome::Interrupted,
            })
            .collect()
    }

    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    /// Produces the next 20 ms. `echo` is sent when nothing is queued (echo mode). Nothing is
    /// produced before the codec is known and media is up.
    pub fn tick(&mut self, echo: Option<EchoFrame>) -> Tick {
        let Some(negotiated) = self.negotiated.filter(|_| self.connected) else {
            return Tick::default();
        };
        let mut tick = Tick::default();
        if self.start_delay > 0 {
            self.start_delay -= 1;
        } else {
            self.play(negotiated, echo, &mut tick);
        }
        if tick.packets.is_empty() {
            let payload = match &tick.pcm {
                Some((audio, frame)) => audio.frames[*frame].clone(),
                None => negotiated.codec.silence(),
            };
            self.audio_packet(negotiated.payload_type, payload, &mut tick);
        }
        if self.muted {
            // Nothing reaches the far end, so the recording hears nothing from us either.
            tick.packets.clear();
            tick.pcm = None;
        }
        self.sequencer
            .advance(negotiated.codec.frame_samples() as u32);
        tick
    }

    /// The media clock stalled and skipped `intervals` intervals ([`super::pacer`]): nothing is
    /// sent for them, but the queue moves on as if they had been played and the RTP timestamp
    /// jumps by as much, so the far end hears a gap as long as the stall and everything after it
    /// keeps its timing. Returns the events of items that ended meanwhile.
    pub fn skip(&mut self, intervals: u32) -> Vec<PlayerEvent> {
        let Some(negotiated) = self.negotiated.filter(|_| self.connected) else {
            return Vec::new();
        };
        let mut skipped = Tick::default();
        for _ in 0..intervals {
            if self.start_delay > 0 {
                self.start_delay -= 1;
            } else {
                // Event packets made here are never sent: their sequence numbers read as lost.
                self.play(negotiated, None, &mut skipped);
            }
        }
        self.sequencer
            .advance((negotiated.codec.frame_samples() as u32).wrapping_mul(intervals));
        skipped.events
    }

    fn audio_packet(&mut self, payload_type: u8, payload: Bytes, tick: &mut Tick) {
        let timestamp = self.sequencer.timestamp();
        let marker = std::mem::take(&mut self.first_packet);
        let packet = self
            .sequencer
            .packet(payload_type, timestamp, marker, payload);
        tick.packets.push(packet);
    }

    /// Advances the queue by one interval, filling `tick` with audio PCM or event packets.
    fn play(&mut self, negotiated: Negotiated, echo: Option<EchoFrame>, tick: &mut Tick) {
        loop {
            let Some(current) = self.current.take() else {
                match self.queue.pop_front() {
                    Some(item) => {
                        self.current = self.start(item, negotiated, tick);
                        continue;
                    }
                    None => {
                        if let Some(echo) = echo {
                            self.send_echo(negotiated, echo, tick);
                        }
                        return;
                    }
                }
            };
            self.current = self.advance(current, negotiated, tick);
            return;
        }
    }

    /// Turns a queued item into the current one; `None` if it ended at once.
    fn start(&mut self, item: Item, negotiated: Negotiated, tick: &mut Tick) -> Option<Current> {
        let id = item.id;
        let codec = negotiated.codec;
        let rate = codec.clock_rate();
        let encode = |pcm: Vec<i16>| EncodedAudio::from_pcm(codec, pcm).ok().map(Arc::new);
        match item.kind {
            Kind::Prompt {
                prompt: Prompt::Ready(audio),
                loops,
            } => audio_item(id, Some(audio), loops, u32::MAX, tick),
            Kind::Prompt {
                prompt: Prompt::Failed(error),
                ..
            } => {
                tick.events.push(PlayerEvent {
                    id,
                    outcome: Outcome::Failed(error),
                });
                None
            }
            Kind::Prompt {
                prompt: Prompt::Loading(_),
                ..
            } => Some(Current::Waiting(item)),
            Kind::Pause { ticks } => Some(Current::Pause {
                id,
                ticks_left: ticks,
            }),
            Kind::Tone { hz, ms } => {
                let frames = ms.div_ceil(super::codec::FRAME_MS);
                audio_item(id, tone::sine_piece(hz, codec), u32::MAX, frames, tick)
            }
            Kind::Signal { signal, loops } => {
                audio_item(id, signal.encoded(codec), loops, u32::MAX, tick)
            }
            Kind::Dtmf { digits } if negotiated.telephone_event.is_none() => {
                // In-band: the keys as tones with gaps, played like a prompt.
                let mut pcm = Vec::new();
                for digit in digits {
                    pcm.extend(tone::dtmf_tone(digit, rate, TONE_MS));
                    pcm.extend(std::iter::repeat_n(0, (rate * GAP_MS / 1000) as usize));
                }
                audio_item(id, encode(pcm), 1, u32::MAX, tick)
            }
            Kind::Dtmf { digits } => Some(Current::Dtmf {
                id,
                digits,
                sending: None,
                gap_ticks: 0,
            }),
            Kind::Live(feed) => Some(Current::Live { id, feed }),
        }
    }

    fn advance(
        &mut self,
        current: Current,
        negotiated: Negotiated,
        tick: &mut Tick,
    ) -> Option<Current> {
        let done = |tick: &mut Tick, id| {
            tick.events.push(PlayerEvent {
                id,
                outcome: Outcome::Done,
            });
            None
        };
        match current {
            Current::Audio {
                id,
                audio,
                frame,
                loops_left,
                frames_left,
            } => {
                let last = frame + 1 >= audio.frames.len();
                tick.pcm = Some((audio.clone(), frame));
                let frames_left = frames_left.saturating_sub(1);
                match (last, loops_left) {
                    _ if frames_left == 0 => done(tick, id),
                    (false, _) => Some(Current::Audio {
                        id,
                        audio,
                        frame: frame + 1,
                        loops_left,
                        frames_left,
                    }),
                    (true, 0 | 1) => done(tick, id),
                    (true, _) => Some(Current::Audio {
                        id,
                        audio,
                        frame: 0,
                        loops_left: loops_left - 1,
                        frames_left,
                    }),
                }
            }
            Current::Waiting(item) => match &item.kind {
                Kind::Prompt {
                    prompt: Prompt::Loading(_),
                    ..
                } => Some(Current::Waiting(item)),
                _ => {
                    let started = self.start(item, negotiated, tick)?;
                    self.advance(started, negotiated, tick)
                }
            },
            Current::Live { id, feed } => match feed.next_frame() {
                LiveFrame::Audio(audio, frame) if audio.codec == negotiated.codec => {
                    tick.pcm = Some((audio, frame));
                    Some(Current::Live { id, feed })
                }
                // Audio made for another codec (renegotiated meanwhile) is skipped, not sent.
                LiveFrame::Audio(..) | LiveFrame::Silence => Some(Current::Live { id, feed }),
                LiveFrame::Ended => done(tick, id),
            },
            Current::Pause { id, ticks_left } => match ticks_left {
                0 | 1 => done(tick, id),
                _ => Some(Current::Pause {
                    id,
                    ticks_left: ticks_left - 1,
                }),
            },
            Current::Dtmf {
                id,
                mut digits,
                mut sending,
                mut gap_ticks,
            } => {
                let Some(payload_type) = negotiated.telephone_event else {
                    return done(tick, id);
                };
                if gap_ticks > 0 {
                    gap_ticks -= 1;
                } else {
                    if sending.is_none() {
                        let Some(digit) = digits.pop_front() else {
                            return done(tick, id);
                        };
                        let sender = EventSender::new(digit, 8000);
                        sending = Some((sender, self.sequencer.timestamp()));
                    }
                    if let Some((sender, timestamp)) = &mut sending {
                        let timestamp = *timestamp;
                        for event in sender.next_packets() {
                            let payload = Bytes::copy_from_slice(&event.payload.encode());
                            let packet = self.sequencer.packet(
                                payload_type,
                                timestamp,
                                event.marker,
                                payload,
                            );
                            tick.packets.push(packet);
                        }
                        if sender.is_done() {
                            sending = None;
                            gap_ticks = GAP_MS / super::codec::FRAME_MS;
                            if digits.is_empty() {
                                return done(tick, id);
                            }
                        }
                    }
                }
                Some(Current::Dtmf {
                    id,
                    digits,
                    sending,
                    gap_ticks,
                })
            }
        }
    }

    fn send_echo(&mut self, negotiated: Negotiated, echo: EchoFrame, tick: &mut Tick) {
        if let Some(pcm) = echo.pcm {
            tick.pcm = Some((pcm, 0));
        }
        self.audio_packet(negotiated.payload_type, echo.payload, tick);
    }
}

/// Starts playing `audio`; audio that is empty or could not be made ends at once as done.
fn audio_item(
    id: ItemId,
    audio: Option<Arc<EncodedAudio>>,
    loops: u32,
    frames: u32,
    tick: &mut Tick,
) -> Option<Current> {
    match audio {
        Some(audio) if !audio.frames.is_empty() && frames > 0 => Some(Current::Audio {
            id,
            audio,
            frame: 0,
            loops_left: loops,
            frames_left: frames,
        }),
        _ => {
            tick.events.push(PlayerEvent {
                id,
                outcome: Outcome::Done,
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::{EventPayload, EventReceiver};

    const PCMU: Negotiated = Negotiated {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };

    fn audio(frames: usize) -> Arc<EncodedAudio> {
        Arc::new(EncodedAudio::from_pcm(Codec::Pcmu, vec![1000; frames * 160]).unwrap())
    }

    fn ready_player() -> Player {
        let mut p = Player::new(1);
        p.configure(PCMU);
        p.connected();
        for _ in 0..START_DELAY_TICKS {
            let t = p.tick(None);
            assert_eq!(t.packets.len(), 1, "silence while starting");
            assert!(t.pcm.is_none());
        }
        p
    }

    fn outcomes(ticks: &[Tick]) -> Vec<(ItemId, String)> {
        ticks
            .iter()
            .flat_map(|t| &t.events)
            .map(|e| (e.id, format!("{:?}", e.outcome)))
            .collect()
    }

    #[test]
    fn nothing_is_sent_before_negotiation_and_connection() {
        let mut p = Player::new(1);
        p.connected();
        assert!(p.tick(None).packets.is_empty());
        let mut p = Player::new(1);
        p.configure(PCMU);
        assert!(p.tick(None).packets.is_empty());
        p.connected();
        assert_eq!(p.tick(None).packets.len(), 1);
    }

    #[test]
    fn a_skip_sends_nothing_and_the_rest_keeps_its_timing() {
        let frame = Codec::Pcmu.frame_samples() as u32;
        let mut p = ready_player();
        let distinct = (0..10u8)
            .flat_map(|i| std::iter::repeat_n(i16::from(i) * 100, 160))
            .collect();
        p.enqueue_audio(
            1,
            Arc::new(EncodedAudio::from_pcm(Codec::Pcmu, distinct).unwrap()),
            1,
        );
        let first = p.tick(None);
        let start = first.packets[0].timestamp;
        // The clock stalls for 3 intervals: frames 1..=3 are due but never sent.
        assert!(p.skip(3).is_empty());
        let ticks: Vec<Tick> = (0..6).map(|_| p.tick(None)).collect();
        let after = &ticks[0];
        assert_eq!(after.packets.len(), 1);
        // Frame 4 goes out with frame 4's timestamp and the next sequence number.
        assert_eq!(after.packets[0].timestamp, start.wrapping_add(4 * frame));
        assert_eq!(
            after.packets[0].sequence,
            first.packets[0].sequence.wrapping_add(1)
        );
        assert_eq!(after.pcm().unwrap()[0], 400);
        assert_eq!(outcomes(&ticks), [(1, "Done".to_string())]);
        // A skip past the end of the queue reports what ended meanwhile.
        p.enqueue_audio(2, audio(2), 1);
        assert_eq!(p.skip(5).len(), 1);
    }

    #[test]
    fn prompts_play_in_order_with_continuous_numbering() {
        let mut p = ready_player();
        let (a, b, c) = (1, 2, 3);
        p.enqueue_audio(a, audio(3), 1);
        p.enqueue_pause(b, 40);
        p.enqueue_audio(c, audio(2), 2);
        let ticks: Vec<Tick> = (0..12).map(|_| p.tick(None)).collect();
        let with_audio: Vec<bool> = ticks.iter().map(|t| t.pcm.is_some()).collect();
        assert_eq!(
            with_audio,
            [
                true, true, true, false, false, true, true, true, true, false, false, false
            ]
        );
        assert_eq!(
            outcomes(&ticks),
            vec![(a, "Done".into()), (b, "Done".into()), (c, "Done".into())]
        );
        let packets: Vec<&RtpPacket> = ticks.iter().flat_map(|t| &t.packets).collect();
        assert_eq!(packets.len(), 12);
        for pair in packets.windows(2) {
            assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
            assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
        }
        assert!(p.is_idle());
    }

    #[test]
    fn a_tone_repeats_its_shared_piece_for_exactly_its_length() {
        let mut p = ready_player();
        let id = 7;
        p.enqueue_tone(id, 1000.0, 2_510);
        let ticks: Vec<Tick> = (0..140).map(|_| p.tick(None)).collect();
        let sounding = ticks.iter().filter(|t| t.pcm.is_some()).count();
        assert_eq!(sounding, 126, "2510 ms is 126 frames of 20 ms");
        assert_eq!(outcomes(&ticks), vec![(id, "Done".into())]);
        let piece = |t: &Tick| t.pcm.as_ref().map(|(audio, _)| Arc::as_ptr(audio));
        let pieces: std::collections::HashSet<_> = ticks.iter().filter_map(piece).collect();
        assert_eq!(pieces.len(), 1, "one shared second, played three times");
    }

    #[test]
    fn stop_interrupts_current_and_queued() {
        let mut p = ready_player();
        let (a, b) = (1, 2);
        p.enqueue_audio(a, audio(10), 1);
        p.enqueue_tone(b, 440.0, 100);
        p.tick(None);
        let events = p.stop();
        let ids: Vec<ItemId> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![a, b]);
        assert!(
            events
                .iter()
                .all(|e| matches!(e.outcome, Outcome::Interrupted))
        );
        assert!(p.tick(None).pcm.is_none());
    }

    #[test]
    fn loading_prompts_keep_their_place_and_failures_are_reported_in_order() {
        let mut p = Player::new(1);
        let (a, b) = (1, 2);
        let can_load = p.enqueue_prompt(a, "a.wav".into(), 1);
        assert!(!can_load, "codec not known yet");
        p.enqueue_prompt(b, "b.wav".into(), 1);
        let to_load = p.configure(PCMU);
        p.connected();
        assert_eq!(to_load, vec![(a, "a.wav".into()), (b, "b.wav".into())]);
        for _ in 0..START_DELAY_TICKS + 2 {
            assert!(p.tick(None).pcm.is_none(), "silence while a.wav loads");
        }
        p.loaded(b, Err(PromptError::NotFound("b.wav".into())));
        p.loaded(a, Ok(audio(1)));
        let ticks: Vec<Tick> = (0..2).map(|_| p.tick(None)).collect();
        assert!(ticks[0].pcm.is_some());
        let got = outcomes(&ticks);
        assert_eq!(got[0], (a, "Done".into()));
        assert_eq!(got[1].0, b);
        assert!(got[1].1.starts_with("Failed"));
    }

    #[test]
    fn dtmf_events_share_a_timestamp_and_audio_resumes_in_step() {
        let mut p = ready_player();
        let id = 3;
        p.enqueue_dtmf(id, Digit::parse_all("12").unwrap());
        let ticks: Vec<Tick> = (0..20).map(|_| p.tick(None)).collect();
        let mut receiver = EventReceiver::default();
        let mut digits = String::new();
        for packet in ticks.iter().flat_map(|t| &t.packets) {
            if packet.payload_type == 101 {
                for d in receiver.receive(packet.timestamp, &packet.payload) {
                    digits.push(d.digit.as_char());
                }
            }
        }
        assert_eq!(digits, "12");
        assert_eq!(outcomes(&ticks), vec![(id, "Done".into())]);
        let events: Vec<&RtpPacket> = ticks
            .iter()
            .flat_map(|t| &t.packets)
            .filter(|p| p.payload_type == 101)
            .collect();
        // Two digits × (4 packets + 3 end packets).
        assert_eq!(events.len(), 14);
        assert!(events[0].marker && events[7].marker);
        assert!(
            events[..7]
                .iter()
                .all(|p| p.timestamp == events[0].timestamp)
        );
        let end = EventPayload::decode(&events[6].payload).unwrap();
        assert!(end.end && end.duration == 800);
        // The next audio packet's timestamp counts every interval, events included.
        let all: Vec<&RtpPacket> = ticks.iter().flat_map(|t| &t.packets).collect();
        let first_audio_after = all.iter().rev().find(|p| p.payload_type == 0).unwrap();
        let audio_before = all.iter().find(|p| p.payload_type == 0);
        assert!(audio_before.is_some());
        assert_eq!(
            first_audio_after
                .timestamp
                .wrapping_sub(events[0].timestamp)
                % 160,
            0
        );
    }

    #[test]
    fn inband_dtmf_when_no_telephone_event() {
        let mut p = Player::new(1);
        p.configure(Negotiated {
            telephone_event: None,
            ..PCMU
        });
        p.connected();
        p.enqueue_dtmf(1, vec![Digit::from_char('5').unwrap()]);
        let ticks: Vec<Tick> = (0..20).map(|_| p.tick(None)).collect();
        assert!(
            ticks
                .iter()
                .flat_map(|t| &t.packets)
                .all(|p| p.payload_type == 0)
        );
        let pcm: Vec<i16> = ticks
            .iter()
            .filter_map(Tick::pcm)
            .flatten()
            .copied()
            .collect();
        let mut detector = crate::media::inband::InbandDetector::new();
        assert_eq!(detector.push(&pcm), vec![Digit::from_char('5').unwrap()]);
    }

    #[test]
    fn echo_fills_idle_time_and_mute_sends_and_records_nothing() {
        let mut p = ready_player();
        let echo = EchoFrame {
            payload: Bytes::from_static(&[7; 160]),
            pcm: None,
        };
        assert_eq!(p.tick(Some(echo)).packets[0].payload[0], 7);
        p.set_muted(true);
        assert!(p.tick(None).packets.is_empty());
        p.enqueue_audio(1, audio(3), 1);
        let tick = p.tick(None);
        assert!(
            tick.packets.is_empty() && tick.pcm.is_none(),
            "nor recorded"
        );
    }

    #[derive(Default)]
    struct Marks(std::sync::Mutex<Vec<String>>);

    impl crate::media::live::MarkListener for Marks {
        fn reached(&self, name: String) {
            self.0.lock().unwrap().push(name);
        }
    }

    #[test]
    fn a_live_feed_plays_as_it_is_fed_and_blocks_the_queue_until_it_ends() {
        let mut p = ready_player();
        let marks = Arc::new(Marks::default());
        let feed = Arc::new(LiveFeed::new(100, marks.clone()));
        let (live, after) = (1, 2);
        p.enqueue_live(live, feed.clone());
        p.enqueue_tone(after, 440.0, 20);
        assert!(p.tick(None).pcm.is_none(), "silence while nothing is fed");
        feed.push_audio(audio(2));
        feed.push_mark("m".into());
        assert!(p.tick(None).pcm.is_some());
        assert!(p.tick(None).pcm.is_some());
        let tick = p.tick(None);
        assert!(tick.pcm.is_none() && tick.events.is_empty());
        assert_eq!(*marks.0.lock().unwrap(), ["m"]);
        feed.push_audio(audio(1));
        feed.finish();
        assert!(
            p.tick(None).pcm.is_some(),
            "what was fed before the end plays"
        );
        let ticks: Vec<Tick> = (0..2).map(|_| p.tick(None)).collect();
        assert_eq!(
            outcomes(&ticks),
            vec![(live, "Done".into()), (after, "Done".into())]
        );
    }

    #[test]
    fn clearing_a_live_feed_silences_the_very_next_tick() {
        let mut p = ready_player();
        let feed = Arc::new(LiveFeed::new(100, Arc::new(Marks::default())));
        p.enqueue_live(1, feed.clone());
        feed.push_audio(audio(50));
        assert!(p.tick(None).pcm.is_some());
        feed.clear();
        assert!(p.tick(None).pcm.is_none());
    }

    #[test]
    fn stop_closes_a_live_feed() {
        let mut p = ready_player();
        let marks = Arc::new(Marks::default());
        let feed = Arc::new(LiveFeed::new(100, marks.clone()));
        let id = 1;
        p.enqueue_live(id, feed.clone());
        feed.push_audio(audio(5));
        feed.push_mark("cut".into());
        p.tick(None);
        let events = p.stop();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, id);
        assert_eq!(*marks.0.lock().unwrap(), ["cut"]);
        feed.push_audio(audio(5));
        assert_eq!(feed.queued_frames(), 0, "a closed feed takes nothing");
    }

    #[test]
    fn loops_repeat_a_prompt() {
        let mut p = ready_player();
        p.enqueue_audio(1, audio(2), 3);
        let played = (0..8).filter(|_| p.tick(None).pcm.is_some()).count();
        assert_eq!(played, 6);
    }
}
