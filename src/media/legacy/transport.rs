//! The seam between the first engine's leg and the async webrtc-rs stack under it.

use async_trait::async_trait;

use crate::media::player::Negotiated;
use crate::media::rtp::RtpPacket;
use crate::media::transport::{TransportError, TransportState};
use crate::protocol::IceCandidate;

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
