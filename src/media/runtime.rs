//! What all legs share: the engine that runs them, the prompt cache and the recording writer.

use std::sync::Arc;

use super::engine::Engine;
use super::leg::{LegEvents, MediaLeg};
use super::legacy::runtime::LegacyRuntime;
use super::prompt::PromptCache;
use super::recorder::RecordingWriter;
use super::transport::{EngineKind, NetworkSettings, TransportError};

/// A handle on the media machinery; cheap to clone.
#[derive(Clone)]
pub struct MediaRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    prompts: Arc<PromptCache>,
    engine: Engines,
}

enum Engines {
    SansIo(Engine),
    Legacy(LegacyRuntime),
}

impl MediaRuntime {
    /// Starts the engine and the recording writer, on threads of their own. They stop when the
    /// last handle and the last leg are gone.
    pub fn start(network: NetworkSettings) -> std::io::Result<Self> {
        let recordings = RecordingWriter::start()?;
        let prompts = Arc::new(PromptCache::default());
        let engine = match network.engine {
            EngineKind::SansIo => {
                Engines::SansIo(Engine::start(&network, prompts.clone(), recordings)?)
            }
            EngineKind::Legacy => {
                Engines::Legacy(LegacyRuntime::start(network, prompts.clone(), recordings)?)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner { prompts, engine }),
        })
    }

    pub fn prompts(&self) -> &PromptCache {
        &self.inner.prompts
    }

    /// The UDP ports the engine threads serve their legs on (none for per-leg sockets or the
    /// first engine).
    pub fn ports(&self) -> Vec<u16> {
        match &self.inner.engine {
            Engines::SansIo(engine) => engine.ports().to_vec(),
            Engines::Legacy(_) => Vec::new(),
        }
    }

    /// A new leg with its event stream.
    pub async fn new_leg(&self) -> Result<(MediaLeg, LegEvents), TransportError> {
        match &self.inner.engine {
            Engines::SansIo(engine) => {
                let (leg, events) = engine.new_leg().await?;
                Ok((MediaLeg::engine(leg), events))
            }
            Engines::Legacy(runtime) => {
                let (leg, events) = runtime.new_leg().await?;
                Ok((MediaLeg::legacy(leg), events))
            }
        }
    }
}
