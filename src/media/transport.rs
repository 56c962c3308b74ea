//! The seam between a media leg and the WebRTC stack under it. Everything callbot needs from a
//! stack is here, so another one (str0m, say) could replace webrtc-rs by implementing it.

use std::net::IpAddr;

use async_trait::async_trait;
use thiserror::Error;

use super::player::Negotiated;
use super::rtp::RtpPacket;
use crate::config::Secret;
use crate::protocol::IceCandidate;

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
}

/// What the stack reports. Called on the stack's own tasks, so implementations must be quick and
/// must not block.
pub trait TransportEvents: Send + Sync + 'static {
    fn local_candidate(&self, candidate: IceCandidate);
    fn state(&self, state: TransportState);
    fn rtp(&self, packet: RtpPacket);
}

/// One audio peer connection: offer/answer with rollback, trickle ICE, RTP both ways.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Creates our offer and makes it the local description.
    async fn create_offer(&self) -> Result<String, TransportError>;
    /// Applies a remote offer and returns our answer (also made the local description).
    async fn accept_offer(&self, offer: &str) -> Result<String, TransportError>;
    async fn apply_answer(&self, answer: &str) -> Result<(), TransportError>;
    /// Withdraws our pending offer, so a remote offer can be answered instead.
    async fn rollback(&self) -> Result<(), TransportError>;
    /// Adds one `candidate:` line; only valid once a remote description is set.
    async fn add_remote_candidate(&self, candidate: &str) -> Result<(), TransportError>;
    /// The codecs both sides settled on, once the offer/answer exchange is complete.
    async fn negotiated(&self) -> Result<Negotiated, TransportError>;
    /// Hands a packet to the stack without waiting; `false` if it could not take it right now.
    fn try_send(&self, packet: RtpPacket) -> bool;
    async fn close(&self);
}
