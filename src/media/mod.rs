//! The media engine: WebRTC legs that play prompts, send and receive DTMF, echo and record.
//!
//! The pure parts (codecs, prompt conversion, the player queue, DTMF, the recorder's timeline,
//! statistics) are plain values driven by the media clock; sockets and files live at the edges.

pub mod codec;
pub mod dtmf;
mod engine;
pub mod inband;
mod leg;
mod legacy;
pub mod live;
pub mod pacer;
pub mod player;
pub mod prompt;
pub mod recorder;
pub mod rtp;
mod runtime;
pub mod sdp;
pub mod stats;
pub mod tap;
pub mod tone;
pub mod transport;

pub use leg::{LegEvent, LegEvents, MediaError, MediaLeg, RecordOptions};
pub use runtime::MediaRuntime;

/// Events a leg keeps for an owner that has not read them yet.
const EVENT_QUEUE: usize = 256;
