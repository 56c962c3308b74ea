//! What all legs share: the 20 ms media clock, the prompt cache, the recording writer and the
//! network settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::codec::FRAME_MS;
use super::leg::{LegEvent, LegState, MediaLeg};
use super::prompt::PromptCache;
use super::recorder::RecordingWriter;
use super::transport::{NetworkSettings, Transport, TransportError};
use super::webrtc::WebRtcTransport;

type ClockEntry = (Arc<LegState>, Arc<dyn Transport>);

/// A handle on the media machinery; cheap to clone.
#[derive(Clone)]
pub struct MediaRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    network: NetworkSettings,
    prompts: Arc<PromptCache>,
    recordings: RecordingWriter,
    clock: mpsc::UnboundedSender<ClockEntry>,
}

impl MediaRuntime {
    /// Starts the media clock (a tokio task: call from inside the runtime) and the recording
    /// writer thread. Both stop when the last handle and the last leg are gone.
    pub fn start(network: NetworkSettings) -> std::io::Result<Self> {
        let (clock, legs) = mpsc::unbounded_channel();
        tokio::spawn(run_clock(legs));
        Ok(Self {
            inner: Arc::new(Inner {
                network,
                prompts: Arc::new(PromptCache::default()),
                recordings: RecordingWriter::start()?,
                clock,
            }),
        })
    }

    pub fn prompts(&self) -> &PromptCache {
        &self.inner.prompts
    }

    /// A new leg with its event stream.
    pub async fn new_leg(
        &self,
    ) -> Result<(MediaLeg, mpsc::UnboundedReceiver<LegEvent>), TransportError> {
        let ssrc: u32 = rand::random();
        let id = u64::from(ssrc);
        let (state, events) = LegState::new(id, ssrc, self.inner.recordings.clone());
        let transport: Arc<dyn Transport> =
            Arc::new(WebRtcTransport::new(&self.inner.network, ssrc, state.clone()).await?);
        let _ = self.inner.clock.send((state.clone(), transport.clone()));
        let leg = MediaLeg::new(state, transport, self.inner.prompts.clone());
        Ok((leg, events))
    }
}

/// One clock for all legs: every 20 ms each leg sends its next interval, in the same order every
/// time, so each leg's packets leave at a steady offset from the tick.
async fn run_clock(mut new_legs: mpsc::UnboundedReceiver<ClockEntry>) {
    let period = Duration::from_millis(FRAME_MS.into());
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut legs: Vec<ClockEntry> = Vec::new();
    loop {
        if legs.is_empty() {
            // Nothing to pace: sleep until a leg arrives (or every handle is gone).
            match new_legs.recv().await {
                Some(entry) => legs.push(entry),
                None => return,
            }
            interval.reset();
        }
        interval.tick().await;
        while let Ok(entry) = new_legs.try_recv() {
            legs.push(entry);
        }
        let now = Instant::now();
        legs.retain(|(state, transport)| {
            if state.is_closed() {
                return false;
            }
            state.tick(transport.as_ref(), now);
            true
        });
    }
}
