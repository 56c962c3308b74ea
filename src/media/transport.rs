//! What the media engines share with the rest of callbot: connection states, errors and the
//! network settings legs are built with.

use std::net::IpAddr;

use thiserror::Error;

use crate::config::Secret;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("WebRTC: {0}")]
    Stack(String),
    #[error("SDP offers no codec we speak (PCMU, PCMA or Opus)")]
    NoCommonCodec,
}

/// Connection progress, as far as a leg cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// An ICE server from config: `stun:` or `turn:` URLs, with credentials for TURN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    /// Exposed only where the WebRTC configuration is built.
    pub credential: Secret,
}

/// Where a leg's host candidates come from, and which servers it may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// Addresses to gather host candidates on; empty means every non-loopback interface plus
    /// 127.0.0.1.
    pub addresses: Vec<IpAddr>,
    pub ice_servers: Vec<IceServer>,
    /// Engine threads, each with its own UDP port; 0 means one per core.
    pub threads: usize,
    /// The ports the threads bind, one each; `None` lets the OS choose.
    pub ports: Option<PortRange>,
    pub sockets: Sockets,
    /// Offer only relayed candidates (TURN), as a browser's `iceTransportPolicy: "relay"`: the
    /// far end never learns our addresses, and calls go only where the relay reaches.
    pub relay_only: bool,
    pub engine: EngineKind,
}

/// Consecutive UDP ports, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// How many ports (and so engine threads); never 0.
    pub fn count(self) -> usize {
        usize::from(self.last.saturating_sub(self.first)) + 1
    }
}

/// How legs get their sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sockets {
    /// All legs of an engine thread share its port: one known port per thread to open in a
    /// firewall. A leg whose far end also serves several calls from one port moves to a socket
    /// of its own.
    #[default]
    Shared,
    /// Every leg has a socket of its own, as a browser or a phone has (the load generator's
    /// callers).
    PerLeg,
}

/// Which media engine builds the legs: the sans-IO engine, or the first one, kept while the two
/// are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    #[default]
    SansIo,
    Legacy,
}
