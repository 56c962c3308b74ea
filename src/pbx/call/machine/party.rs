//! The parties of an emulator call: who they are and where each one is.

use crate::pbx::switch::SocketId;
use crate::protocol::{CallId, Sdp};

/// A socket of an extension and the call id this call has on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) struct Peer {
    pub socket: SocketId,
    pub extension: String,
    /// The extension's display name (empty: none), for `call-state` lists.
    pub name: String,
    pub callid: CallId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum Role {
    Caller,
    Callee,
    Target,
    /// Joined from another call by an attended transfer.
    Joined,
}

/// Where a party is in the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Ringing,
    /// Talking; `holding`: it put the call on hold itself.
    Connected {
        holding: bool,
    },
    Ended,
    /// Handed over to another call (attended transfer): no longer listed here.
    Moved,
}

/// Anchored media: the emulator's leg towards a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum Leg {
    /// None (relay media, or none could be made).
    None,
    /// Negotiated; ICE and DTLS are not up yet.
    Connecting,
    /// ICE and DTLS are up.
    Up,
}

/// One party of the call (also what moves to another call in an attended transfer).
#[derive(Debug)]
pub(in crate::pbx::call) struct Party {
    pub(super) role: Role,
    pub(super) peer: Peer,
    /// The call id this party knows the call by.
    pub(super) id: CallId,
    /// Our CSeq towards this party, for the frames we originate.
    pub(super) cseq: u64,
    pub(super) status: Status,
    pub(super) leg: Leg,
    /// What we sent this party as SDP (anchored: our answer or offer; relay: the caller's offer).
    pub(super) sdp: Option<Sdp>,
    /// Digits received from this party and relayed to its partner.
    pub(super) dtmf: String,
}

impl Party {
    /// A party whose leg of the call is just starting.
    pub(super) fn ringing(role: Role, peer: Peer) -> Self {
        Self {
            role,
            id: peer.callid.clone(),
            peer,
            cseq: 0,
            status: Status::Ringing,
            leg: Leg::None,
            sdp: None,
            dtmf: String::new(),
        }
    }

    /// Ringing or connected: frames from it count, it can be hung up.
    pub(super) fn is_live(&self) -> bool {
        matches!(self.status, Status::Ringing | Status::Connected { .. })
    }

    pub(super) fn is_holding(&self) -> bool {
        self.status == Status::Connected { holding: true }
    }

    /// The id is one this party knows the call by (ours, or the one it was rung with).
    pub(super) fn knows(&self, id: &CallId) -> bool {
        *id == self.id || *id == self.peer.callid
    }

    pub(in crate::pbx::call) fn peer(&self) -> &Peer {
        &self.peer
    }
}
