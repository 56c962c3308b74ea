//! The first media engine's clock: one thread that ticks every leg's player every 20 ms, the
//! legs spread over twenty 1 ms slots.

use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Instant;

use tokio::sync::mpsc;

use super::leg::{LegState, LegacyLeg};
use super::transport::Transport;
use super::webrtc::WebRtcTransport;
use crate::media::LegEvent;
use crate::media::codec::FRAME_MS;
use crate::media::pacer::{Due, Pacer};
use crate::media::prompt::PromptCache;
use crate::media::recorder::{RecordingWriter, WriteBatch};
use crate::media::transport::{NetworkSettings, TransportError};

type ClockEntry = (Arc<LegState>, Arc<dyn Transport>);

/// The first engine: its clock thread and what its legs are built with.
pub struct LegacyRuntime {
    network: NetworkSettings,
    prompts: Arc<PromptCache>,
    recordings: RecordingWriter,
    clock: std_mpsc::Sender<ClockEntry>,
}

impl LegacyRuntime {
    /// Starts the media clock on a thread of its own; it stops when the runtime and the last
    /// leg are gone. Legs need a tokio runtime.
    pub fn start(
        network: NetworkSettings,
        prompts: Arc<PromptCache>,
        recordings: RecordingWriter,
    ) -> std::io::Result<Self> {
        let (clock, legs) = std_mpsc::channel();
        let writer = recordings.clone();
        std::thread::Builder::new()
            .name("callbot-media-clock".into())
            .spawn(move || run_clock(legs, writer))?;
        Ok(Self {
            network,
            prompts,
            recordings,
            clock,
        })
    }

    /// A new leg with its event stream.
    pub async fn new_leg(&self) -> Result<(LegacyLeg, mpsc::Receiver<LegEvent>), TransportError> {
        let ssrc: u32 = rand::random();
        let id = u64::from(ssrc);
        let (state, events) = LegState::new(id, ssrc, self.recordings.clone());
        let transport: Arc<dyn Transport> =
            Arc::new(WebRtcTransport::new(&self.network, ssrc, state.clone()).await?);
        let _ = self.clock.send((state.clone(), transport.clone()));
        let leg = LegacyLeg::new(state, transport, self.prompts.clone());
        Ok((leg, events))
    }
}

/// Sub-ticks per 20 ms interval (1 ms each): each leg belongs to one of them. Measured with
/// `cargo bench --bench media_legs`: 10 and 40 slots gave more send jitter than 20.
const SLOTS: usize = 20;

/// One clock for all legs, on a thread of its own so that a busy async runtime cannot delay it.
///
/// Every leg sends exactly every 20 ms, but legs are spread over [`SLOTS`] 1 ms slots, so each
/// wake-up handles a twentieth of them: a leg's packets leave at a steady offset whatever the others do, and
/// the network work that follows each send is spread evenly instead of arriving in one burst.
fn run_clock(new_legs: std_mpsc::Receiver<ClockEntry>, recordings: RecordingWriter) {
    raise_priority();
    let mut slots: Vec<Vec<ClockEntry>> = (0..SLOTS).map(|_| Vec::new()).collect();
    let mut slot = 0;
    let mut pacer = Pacer::new(Instant::now(), SLOTS as u32);
    loop {
        if slots.iter().all(Vec::is_empty) {
            // Nothing to pace: sleep until a leg arrives (or every handle is gone).
            match new_legs.recv() {
                Ok(entry) => slots[slot].push(entry),
                Err(_) => return,
            }
            pacer.restart(Instant::now());
        }
        for entry in new_legs.try_iter() {
            let emptiest = (0..SLOTS).min_by_key(|&i| slots[i].len()).unwrap_or(0);
            slots[emptiest].push(entry);
        }
        let mut writes = WriteBatch::default();
        // Late wake-ups run every slot they missed, one per pass, at once.
        let skipped = loop {
            match pacer.due(Instant::now()) {
                Due::Wait(wait) => std::thread::sleep(wait),
                Due::Slot { skipped } => break skipped,
            }
        };
        if skipped > 0 {
            tracing::warn!(
                "media clock stalled: {} ms of audio skipped on every leg",
                u64::from(skipped) * u64::from(FRAME_MS)
            );
            for (state, _) in slots.iter().flatten() {
                state.skip(skipped);
            }
        }
        slots[slot].retain(|(state, transport)| {
            if state.is_closed() {
                state.finish(&mut writes);
                return false;
            }
            state.tick(transport.as_ref(), &mut writes);
            true
        });
        recordings.send(writes);
        slot = (slot + 1) % SLOTS;
    }
}

/// Asks the OS to run the clock thread ahead of the busy network threads (nice -10). Needs
/// CAP_SYS_NICE; without it the clock still runs, with more jitter under load.
fn raise_priority() {
    // SAFETY: setpriority only reads its integer arguments; 0 means the calling thread on Linux.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
    if result != 0 {
        tracing::debug!(
            "media clock keeps normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
