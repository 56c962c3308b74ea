//! A media leg as its owner (a call, the emulator's bridge, a test) sees it: signalling steps,
//! the player's queue, the recorder, statistics, and a bounded stream of [`LegEvent`]s.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use super::dtmf::Digit;
use super::engine::{Control, EngineLeg, SignalOp, Signalled};
use super::legacy::leg::LegacyLeg;
use super::live::LiveFeed;
use super::player::{ItemId, Negotiated, Outcome};
use super::recorder::RecordingReport;
use super::stats::{GapHistogram, LegStats};
use super::tap::AudioTap;
use super::tone::Signal;
use super::transport::{TransportError, TransportState};
use crate::protocol::{CandidateError, IceCandidate, RemoteCandidate};

#[derive(Debug, Error)]
pub enum MediaError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Candidate(#[from] CandidateError),
    #[error("not DTMF digits: {0:?} (allowed: 0-9 * # A-D)")]
    Digits(String),
}

/// What a leg tells its owner.
#[derive(Debug, Clone)]
pub enum LegEvent {
    /// A local ICE candidate to trickle to the far end.
    LocalCandidate(IceCandidate),
    State(TransportState),
    /// A key the far end pressed, by RFC 4733 event or (`inband`) detected in the audio.
    Digit {
        digit: Digit,
        duration: Duration,
        inband: bool,
    },
    /// A queued item finished, was interrupted or failed.
    Played {
        id: ItemId,
        outcome: Outcome,
    },
    Recording(RecordingReport),
}

/// How to record a leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    pub path: PathBuf,
    /// Left = far end, right = us; otherwise both mixed into one channel.
    pub stereo: bool,
    pub max_secs: Option<u32>,
}

/// A leg's event stream: bounded, so a stalled owner cannot grow it without limit.
pub type LegEvents = tokio::sync::mpsc::Receiver<LegEvent>;

enum Inner {
    Engine(EngineLeg),
    Legacy(LegacyLeg),
}

/// One WebRTC audio leg. Dropping it without [`MediaLeg::close`] still stops its media.
///
/// Its owner names each queued item (the id its `Played` event carries): a call decides its
/// item ids without asking the leg, so its decisions stay plain values (see `call::core`).
pub struct MediaLeg {
    inner: Inner,
    negotiated: Mutex<Option<Negotiated>>,
}

impl MediaLeg {
    pub(super) fn engine(leg: EngineLeg) -> Self {
        Self::new(Inner::Engine(leg))
    }

    pub(super) fn legacy(leg: LegacyLeg) -> Self {
        Self::new(Inner::Legacy(leg))
    }

    fn new(inner: Inner) -> Self {
        Self {
            inner,
            negotiated: Mutex::new(None),
        }
    }

    /// Identifies the leg in logs.
    pub fn id(&self) -> u64 {
        match &self.inner {
            Inner::Engine(leg) => leg.id(),
            Inner::Legacy(leg) => leg.id(),
        }
    }

    fn settled(&self, negotiated: Negotiated) {
        *self.negotiated.lock().unwrap_or_else(|e| e.into_inner()) = Some(negotiated);
    }

    /// Our offer, for an outbound call.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        match &self.inner {
            Inner::Engine(leg) => match leg.signal(SignalOp::CreateOffer).await? {
                Signalled::Offer(offer) => Ok(offer),
                other => Err(unexpected(&other)),
            },
            Inner::Legacy(leg) => leg.create_offer().await,
        }
    }

    /// Answers a remote offer (an incoming call, or the PBX's offer after a rollback).
    pub async fn accept_offer(&self, offer: &str) -> Result<String, MediaError> {
        match &self.inner {
            Inner::Engine(leg) => {
                match leg.signal(SignalOp::AcceptOffer(offer.to_owned())).await? {
                    Signalled::Answer(answer, negotiated) => {
                        self.settled(negotiated);
                        Ok(answer)
                    }
                    other => Err(unexpected(&other)),
                }
            }
            Inner::Legacy(leg) => leg.accept_offer(offer).await,
        }
    }

    /// Applies the answer to our offer.
    pub async fn apply_answer(&self, answer: &str) -> Result<(), MediaError> {
        match &self.inner {
            Inner::Engine(leg) => {
                match leg.signal(SignalOp::ApplyAnswer(answer.to_owned())).await? {
                    Signalled::Applied(negotiated) => {
                        self.settled(negotiated);
                        Ok(())
                    }
                    other => Err(unexpected(&other)),
                }
            }
            Inner::Legacy(leg) => leg.apply_answer(answer).await,
        }
    }

    /// Withdraws our offer so the far end's own offer can be answered (modern PBX flow).
    pub async fn rollback(&self) -> Result<(), MediaError> {
        match &self.inner {
            Inner::Engine(leg) => leg.signal(SignalOp::Rollback).await.map(drop),
            Inner::Legacy(leg) => leg.rollback().await,
        }
    }

    /// Adds a candidate from the far end, expanding `adr` lists; queued until a remote
    /// description exists.
    pub async fn add_remote_candidate(
        &self,
        candidate: &RemoteCandidate,
    ) -> Result<(), MediaError> {
        match &self.inner {
            Inner::Engine(leg) => {
                let lines = candidate.lines()?;
                leg.signal(SignalOp::AddCandidates(lines)).await.map(drop)
            }
            Inner::Legacy(leg) => leg.add_remote_candidate(candidate).await,
        }
    }

    /// The codecs settled with the far end, once known.
    pub fn negotiated(&self) -> Option<Negotiated> {
        match &self.inner {
            Inner::Engine(_) => *self.negotiated.lock().unwrap_or_else(|e| e.into_inner()),
            Inner::Legacy(leg) => leg.negotiated(),
        }
    }

    /// Queues a WAV prompt, `loops` times; it is loaded (once per codec, cached) in the
    /// background and reported with a `Played` event for `id`.
    pub fn play(&self, id: ItemId, path: PathBuf, loops: u32) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Play { id, path, loops }),
            Inner::Legacy(leg) => leg.play(id, path, loops),
        }
    }

    pub fn pause(&self, id: ItemId, ms: u32) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Pause { id, ms }),
            Inner::Legacy(leg) => leg.pause(id, ms),
        }
    }

    pub fn tone(&self, id: ItemId, hz: f32, ms: u32) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Tone { id, hz, ms }),
            Inner::Legacy(leg) => leg.tone(id, hz, ms),
        }
    }

    /// Queues DTMF (`"12#"`): RFC 4733 events, or tones when the far end has no telephone-event.
    pub fn send_dtmf(&self, id: ItemId, digits: &str) -> Result<(), MediaError> {
        let parsed = Digit::parse_all(digits).ok_or_else(|| MediaError::Digits(digits.into()))?;
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Dtmf { id, digits: parsed }),
            Inner::Legacy(leg) => leg.send_dtmf(id, parsed),
        }
        Ok(())
    }

    /// Clears the queue and cuts the current item (barge-in).
    pub fn stop(&self) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Stop),
            Inner::Legacy(leg) => leg.stop(),
        }
    }

    /// Queues a live feed: audio pushed into it from outside plays in order, with its marks,
    /// until the feed ends (see [`LiveFeed`]). Reported with a `Played` event like a prompt.
    pub fn play_live(&self, id: ItemId, feed: Arc<LiveFeed>) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Live { id, feed }),
            Inner::Legacy(leg) => leg.play_live(id, feed),
        }
    }

    /// Hands this leg's audio, both ways, to `tap` from now on.
    pub fn add_tap(&self, tap: Arc<dyn AudioTap>) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::AddTap(tap)),
            Inner::Legacy(leg) => leg.add_tap(tap),
        }
    }

    /// Stops handing audio to `tap` (the object given to [`MediaLeg::add_tap`]).
    pub fn remove_tap(&self, tap: &Arc<dyn AudioTap>) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::RemoveTap(tap.clone())),
            Inner::Legacy(leg) => leg.remove_tap(tap),
        }
    }

    /// Queues a call-progress signal (ringback, hold music, error tone), `loops` times.
    pub fn play_signal(&self, id: ItemId, signal: Signal, loops: u32) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Signal { id, signal, loops }),
            Inner::Legacy(leg) => leg.play_signal(id, signal, loops),
        }
    }

    /// Echo mode: what arrives is sent back (re-timed) whenever nothing is queued.
    pub fn set_echo(&self, on: bool) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Echo(on)),
            Inner::Legacy(leg) => leg.set_echo(on),
        }
    }

    /// Sends what this leg receives out through `to` (whenever `to` has nothing queued),
    /// transcoding if the two legs chose different codecs. One direction; bridge both legs to
    /// each other for a two-way call. `None` ends the bridge.
    pub fn bridge_to(&self, to: Option<&MediaLeg>) {
        match &self.inner {
            Inner::Engine(leg) => {
                let to = to.and_then(|to| match &to.inner {
                    Inner::Engine(to) => Some(to.address()),
                    Inner::Legacy(_) => None,
                });
                leg.control(Control::Bridge(to));
            }
            Inner::Legacy(leg) => {
                let to = to.and_then(|to| match &to.inner {
                    Inner::Legacy(to) => Some(to),
                    Inner::Engine(_) => None,
                });
                leg.bridge_to(to);
            }
        }
    }

    /// Local hold: send nothing (the recording goes on with silence).
    pub fn set_muted(&self, muted: bool) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Mute(muted)),
            Inner::Legacy(leg) => leg.set_muted(muted),
        }
    }

    /// Starts recording (replacing a recording in progress). Before the codec is known the
    /// recording waits for it.
    pub fn record(&self, options: RecordOptions) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::Record(options)),
            Inner::Legacy(leg) => leg.record(options),
        }
    }

    pub fn stop_recording(&self) {
        match &self.inner {
            Inner::Engine(leg) => leg.control(Control::StopRecording),
            Inner::Legacy(leg) => leg.stop_recording(),
        }
    }

    /// The leg's statistics: at most 100 ms old while it runs, final once it is closed.
    pub fn stats(&self) -> LegStats {
        match &self.inner {
            Inner::Engine(leg) => leg.stats(),
            Inner::Legacy(leg) => leg.stats(),
        }
    }

    /// How regularly this leg's packets left.
    pub fn send_pacing(&self) -> GapHistogram {
        match &self.inner {
            Inner::Engine(leg) => leg.send_pacing(),
            Inner::Legacy(leg) => leg.send_pacing(),
        }
    }

    /// Ends the leg: its recording is closed, and the connection is shut.
    pub async fn close(&self) {
        match &self.inner {
            Inner::Engine(leg) => leg.close().await,
            Inner::Legacy(leg) => leg.close().await,
        }
    }
}

fn unexpected(answer: &Signalled) -> MediaError {
    MediaError::Transport(TransportError::Stack(format!(
        "the media engine answered {answer:?}"
    )))
}
