//! Loads prompts for the engine threads on a thread of its own, so that reading and converting a
//! WAV file (or even checking that a cached one is unchanged) never holds up a media slot.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::demux::LegId;
use crate::media::codec::Codec;
use crate::media::player::ItemId;
use crate::media::prompt::{EncodedAudio, PromptCache, PromptError};

/// Loads waiting at most; more are refused (the item then fails), which only a runaway script
/// queueing prompts faster than files can be read would reach.
const QUEUE: usize = 4096;

/// A prompt the engine wants, for a leg's queued item.
pub struct Request {
    pub leg: LegId,
    pub item: ItemId,
    pub path: PathBuf,
    pub codec: Codec,
}

/// The answer, handed to the engine thread that asked.
pub struct Loaded {
    pub leg: LegId,
    pub item: ItemId,
    pub result: Result<Arc<EncodedAudio>, PromptError>,
}

/// Where a request's answer goes.
pub type Reply = Box<dyn Fn(Loaded) + Send + Sync>;

#[derive(Clone)]
pub struct Loader {
    requests: SyncSender<(Request, Arc<Reply>)>,
}

impl Loader {
    /// Starts the loader thread; it ends when every handle is dropped.
    pub fn start(prompts: Arc<PromptCache>) -> std::io::Result<Self> {
        let (requests, receiver) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("callbot-prompts".into())
            .spawn(move || serve(&prompts, &receiver))?;
        Ok(Self { requests })
    }

    /// Asks for a prompt; the answer goes to `reply`. A full queue answers at once, with an error.
    pub fn request(&self, request: Request, reply: &Arc<Reply>) {
        match self.requests.try_send((request, reply.clone())) {
            Ok(()) => {}
            Err(
                TrySendError::Full((request, reply)) | TrySendError::Disconnected((request, reply)),
            ) => {
                let error = PromptError::Unreadable {
                    path: request.path.clone(),
                    source: std::io::Error::other("too many prompts waiting to load"),
                };
                reply(Loaded {
                    leg: request.leg,
                    item: request.item,
                    result: Err(error),
                });
            }
        }
    }
}

fn serve(prompts: &PromptCache, requests: &Receiver<(Request, Arc<Reply>)>) {
    while let Ok((request, reply)) = requests.recv() {
        let result = prompts.get(&request.path, request.codec);
        if let Err(e) = &result {
            tracing::warn!("{e}");
        }
        reply(Loaded {
            leg: request.leg,
            item: request.item,
            result,
        });
    }
}
