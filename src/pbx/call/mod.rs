//! One call through the emulator: the caller, the callee's endpoints (forked to every
//! registered socket), later a transfer target. In relay mode SDP and candidates pass through
//! and the peers' media flows directly; in anchored mode the emulator is a back-to-back user
//! agent with a media leg per party, bridging audio and DTMF, playing ringback, hold music and
//! error tones (docs/protocol.md §6, §9).
//!
//! The call's logic is a plain state machine ([`machine`]) fed frames, media events, results
//! of media work and the time; the [`driver`] is the task that owns the sockets' writers, the
//! legs and the timers, and runs it.

mod driver;
mod machine;

use tokio::sync::oneshot;

use super::accounts::Accounts;
use super::switch::{CallKey, SocketId, SocketTx};
use crate::protocol::{CallId, CallInfo, ClientFrame, PbxCallState};

pub(super) use driver::run;

/// A registered socket of an extension, and the call id this call has on it.
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    pub socket: SocketId,
    pub extension: String,
    pub tx: SocketTx,
    pub callid: CallId,
}

impl Endpoint {
    /// Who the endpoint is, with its display name from `accounts` and without its socket's
    /// writer (what the call's machine knows).
    fn peer(&self, accounts: &Accounts) -> machine::Peer {
        machine::Peer {
            socket: self.socket,
            extension: self.extension.clone(),
            name: accounts.display_name(&self.extension),
            callid: self.callid.clone(),
        }
    }
}

pub(super) struct CallSetup {
    pub key: CallKey,
    pub caller: Endpoint,
    /// The emulator's own call id towards the caller (modern dialect, anchored media).
    pub caller_alias: CallId,
    pub to: String,
    pub offer: String,
    /// The dialled extension's registered sockets; empty: 404.
    pub callees: Vec<Endpoint>,
}

pub(super) enum CallInput {
    Frame {
        socket: SocketId,
        frame: ClientFrame,
    },
    SocketClosed(SocketId),
    /// Attended transfer: hand the far end of the party on `socket` known as `id2` over to
    /// call `to`, and release that party.
    HandOver {
        socket: SocketId,
        id2: CallId,
        to: CallKey,
        reply: HandOverReply,
    },
}

/// A party on its way from one call to another (attended transfer), leg and all.
pub(super) struct HandOver {
    party: Box<machine::Party>,
    tx: SocketTx,
    leg: Option<driver::AttachedLeg>,
}

/// Where a call answers a [`CallInput::HandOver`]: the party, or why not.
pub(super) type HandOverReply = oneshot::Sender<Result<HandOver, &'static str>>;

/// One party's entry in `call-state` lists.
#[derive(Clone, Debug)]
pub(super) struct PartyState {
    pub socket: SocketId,
    pub extension: String,
    pub callid: CallId,
    pub state: PbxCallState,
    pub from_number: String,
    pub from_name: String,
    pub to_number: String,
    pub to_name: String,
    pub start: u64,
    pub connect: Option<u64>,
}

impl PartyState {
    /// The last state a party is listed in (the emulator's word; docs/protocol.md names none).
    pub(super) fn disconnected() -> PbxCallState {
        PbxCallState::Other("disconnected".into())
    }

    /// Still in the call (listed in any state but the last).
    pub(super) fn is_live(&self) -> bool {
        self.state != Self::disconnected()
    }

    pub(super) fn info(&self) -> CallInfo {
        CallInfo {
            id: self.callid.to_string(),
            state: self.state.clone(),
            from: Some(self.from_number.clone()),
            to: Some(self.to_number.clone()),
            from_number: Some(self.from_number.clone()),
            from_name: Some(self.from_name.clone()),
            to_number: Some(self.to_number.clone()),
            to_name: (!self.to_name.is_empty()).then(|| self.to_name.clone()),
            start: Some(self.start),
            connect: self.connect,
        }
    }
}
