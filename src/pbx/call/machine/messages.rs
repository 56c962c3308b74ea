//! What goes into an emulator call's machine and what comes out of it.

use serde_json::Value;

use super::{Party, PartyIndex, Peer};
use crate::media::tone::Signal;
use crate::pbx::switch::{CallKey, SocketId};
use crate::protocol::{CallId, ClientFrame, ServerFrame, SipCode};

/// Which negotiation a new leg is for: the result goes on from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum Purpose {
    /// The caller's leg, before anything rings.
    Start,
    /// A callee's or a transfer target's leg, for its `invitesdp`.
    Ring,
    /// A connected party's new offer.
    Reoffer,
}

/// What a new leg does first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum Negotiation {
    Offer,
    Answer(String),
}

/// Why a new leg brought no SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum LegFailure {
    /// No leg could be made (no media runtime, no port).
    NoLeg,
    /// The leg refused the negotiation.
    Refused(String),
}

/// Media work on a party's leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum LegCommand {
    /// Make a new leg for the party and negotiate; on success it replaces the party's leg.
    /// The result comes back as [`Input::Negotiated`].
    Negotiate {
        purpose: Purpose,
        negotiation: Negotiation,
    },
    /// The result comes back as [`Input::AnswerApplied`].
    ApplyAnswer(String),
    AddCandidate(String),
    Play(Signal, u32),
    /// Stop what the leg plays.
    Stop,
    /// Send what this leg receives to that party's leg (or nowhere).
    Bridge(Option<PartyIndex>),
    /// A digit `from` pressed, sent on this leg; [`Input::DtmfRelayed`] when it went out.
    RelayDtmf {
        from: PartyIndex,
        digit: char,
    },
    /// Unbridge and close the leg (its counters stay readable for the view).
    Close,
}

/// What a party's leg tells the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pbx::call) enum MediaEvent {
    LocalCandidate(String),
    Up,
    Failed,
    /// A key pressed (RFC 4733 events only: in-band tones are heard, not relayed).
    Digit(char),
}

/// What happens to the call.
#[derive(Debug)]
pub(in crate::pbx::call) enum Input {
    Frame {
        socket: SocketId,
        frame: ClientFrame,
    },
    SocketClosed(SocketId),
    Media {
        party: PartyIndex,
        event: MediaEvent,
    },
    /// The result of [`LegCommand::Negotiate`]: our SDP.
    Negotiated {
        party: PartyIndex,
        purpose: Purpose,
        result: Result<String, LegFailure>,
    },
    /// The result of [`LegCommand::ApplyAnswer`].
    AnswerApplied {
        party: PartyIndex,
        ok: bool,
    },
    /// A [`LegCommand::RelayDtmf`] went out.
    DtmfRelayed {
        from: PartyIndex,
        digit: char,
    },
    /// The switch's answer to [`Output::FindTarget`].
    Targets(Result<Vec<Peer>, SipCode>),
    /// The answer to [`Output::Join`]: the party that joins, or why not.
    Joined(Result<Box<Party>, &'static str>),
    /// Another call asks for the far end of our party on `socket` known as `id2`
    /// (attended transfer to call `to`).
    HandOver {
        socket: SocketId,
        id2: CallId,
        to: CallKey,
    },
    /// The party of [`Output::GiveAway`] went to the other call…
    HandedOver,
    /// … or came back (that call gave up waiting).
    HandOverFailed(Box<Party>),
}

/// A line for the emulator's journal, about one party.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::pbx::call) struct Entry {
    pub kind: &'static str,
    pub extension: String,
    pub callid: String,
    pub detail: Value,
}

/// What the call wants done.
#[derive(Debug)]
pub(in crate::pbx::call) enum Output {
    Send {
        to: PartyIndex,
        frame: ServerFrame,
    },
    Leg {
        party: PartyIndex,
        command: LegCommand,
    },
    Journal(Entry),
    /// Blind transfer: ask the switch for the target's endpoints ([`Input::Targets`]).
    FindTarget(String),
    /// Attended transfer: ask the switch for the far end of our other call `id2`
    /// ([`Input::Joined`]).
    Join {
        socket: SocketId,
        id2: CallId,
    },
    /// Answer the switch's hand-over request with this party ([`Input::HandedOver`] or
    /// [`Input::HandOverFailed`] follows).
    GiveAway {
        party: PartyIndex,
        leaving: Box<Party>,
    },
    /// Answer the switch's hand-over request with why not.
    RefuseHandOver(&'static str),
    /// A party moved to call `to`: its ids route there now.
    Moved {
        to: CallKey,
        ids: Vec<CallId>,
        socket: SocketId,
    },
    /// The parties' states changed: publish them.
    Report,
}
