//! Transfers in an emulator call: blind (`blind-transfer2`: the target rings for the
//! transferee) and attended (`att-transfer`: the far end of another call joins this one, which
//! the other call hands over).

use std::time::Instant;

use serde_json::json;

use super::{
    CALLER, Call, ERROR_TONE, LegCommand, Output, Party, PartyIndex, Peer, Role, Status, Timer,
    UNTIL_STOPPED,
};
use crate::media::tone::Signal;
use crate::pbx::switch::{CallKey, SocketId};
use crate::protocol::{CallId, SipCode};

/// A blind transfer in progress, with the party that waits for the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transfer {
    /// The target rings; the transferee hears ringback.
    Ringing(PartyIndex),
    /// It failed: the transferee hears the error tone, then is released.
    Failed(PartyIndex),
}

impl Transfer {
    pub(super) fn transferee(self) -> PartyIndex {
        match self {
            Transfer::Ringing(party) | Transfer::Failed(party) => party,
        }
    }
}

/// An attended transfer waiting for the switch: `party` leaves, `stays` is its partner here.
#[derive(Debug)]
pub(super) struct PendingJoin {
    pub(super) party: PartyIndex,
    pub(super) stays: PartyIndex,
    pub(super) id2: CallId,
    pub(super) to: String,
}

/// The other side of an attended transfer: our party `far` is on its way to call `to`.
#[derive(Debug)]
pub(super) struct PendingHandOver {
    pub(super) transferor: PartyIndex,
    pub(super) far: PartyIndex,
    pub(super) to: CallKey,
}

impl Call {
    /// Attended transfer (`att-transfer`): `party` has this call and call `id2`; the far end
    /// of that call joins this one and is bridged to `party`'s partner here, and `party`'s two
    /// legs end. Relay media cannot be re-bridged, so relay mode refuses it.
    pub(super) fn attended_transfer(
        &mut self,
        party: PartyIndex,
        id2: CallId,
        to: String,
        out: &mut Vec<Output>,
    ) {
        let stays = match self.partner(party) {
            Some(stays) if self.settings.anchored() => stays,
            _ => {
                let why = if self.settings.anchored() {
                    "the call is not connected"
                } else {
                    "relay media cannot be re-bridged"
                };
                let pending = PendingJoin {
                    party,
                    stays: party,
                    id2,
                    to,
                };
                return self.join_refused(&pending, why, out);
            }
        };
        out.push(Output::Join {
            socket: self.parties[party].peer.socket,
            id2: id2.clone(),
        });
        self.join = Some(PendingJoin {
            party,
            stays,
            id2,
            to,
        });
    }

    fn join_refused(&self, pending: &PendingJoin, why: &str, out: &mut Vec<Output>) {
        let detail = json!({ "id2": pending.id2.as_str(), "to": pending.to, "why": why });
        self.journal("att-transfer-refused", pending.party, detail, out);
    }

    /// The switch's answer for an attended transfer: the far end of the other call joins.
    pub(super) fn joined(
        &mut self,
        joined: Result<Box<Party>, &'static str>,
        out: &mut Vec<Output>,
    ) {
        let Some(pending) = self.join.take() else {
            return;
        };
        let joined = match joined {
            Ok(joined) => joined,
            Err(why) => return self.join_refused(&pending, why, out),
        };
        let index = self.parties.len();
        let detail = json!({
            "id2": pending.id2.as_str(),
            "to": pending.to,
            "joined": joined.peer.extension,
        });
        self.parties.push(*joined);
        self.journal("att-transfer", pending.party, detail, out);
        self.bye(pending.party, None, "Transferred", out);
        self.connect(pending.stays, index, out);
        out.push(Output::Report);
    }

    /// The other half of an attended transfer: the far end of the party on `socket` known as
    /// `id2` leaves this call for call `to`, and that party is released.
    pub(super) fn give_away(
        &mut self,
        socket: SocketId,
        id2: &CallId,
        to: CallKey,
        out: &mut Vec<Output>,
    ) {
        let Some(transferor) = self.party_of(socket, Some(id2)) else {
            return out.push(Output::RefuseHandOver("id2 is not the transferor's call"));
        };
        let Some(far) = self.partner(transferor) else {
            return out.push(Output::RefuseHandOver("the call of id2 is not connected"));
        };
        self.bridge = None;
        for index in [transferor, far] {
            self.on_leg(index, LegCommand::Bridge(None), out);
        }
        let p = &mut self.parties[far];
        let leaving = Party {
            role: Role::Joined,
            peer: p.peer.clone(),
            id: p.id.clone(),
            cseq: p.cseq,
            status: match p.status {
                Status::Connected { .. } => Status::Connected { holding: false },
                other => other,
            },
            leg: p.leg,
            sdp: p.sdp.clone(),
            dtmf: std::mem::take(&mut p.dtmf),
        };
        self.hand_over = Some(PendingHandOver {
            transferor,
            far,
            to,
        });
        out.push(Output::GiveAway {
            party: far,
            leaving: Box::new(leaving),
        });
    }

    /// Our far end went to the other call: the transferor is released, the call ends.
    pub(super) fn handed_over(&mut self, out: &mut Vec<Output>) {
        let Some(PendingHandOver {
            transferor,
            far,
            to,
        }) = self.hand_over.take()
        else {
            return;
        };
        let p = &mut self.parties[far];
        p.status = Status::Moved;
        out.push(Output::Moved {
            to,
            ids: vec![p.id.clone(), p.peer.callid.clone()],
            socket: p.peer.socket,
        });
        self.journal("handed-over", far, json!({ "to_call": to }), out);
        self.bye(transferor, None, "Transferred", out);
        self.clear(CALLER, "Transferred", out);
        self.end();
        out.push(Output::Report);
    }

    /// Blind transfer (`blind-transfer2`): the transferor is released; in anchored mode the
    /// transferee hears ringback while the target rings, then talks to the target.
    pub(super) fn transfer(&mut self, party: PartyIndex, target: String, out: &mut Vec<Output>) {
        // Only a connected call can be transferred: its partner is who stays.
        let Some(transferee) = self.partner(party) else {
            return self.journal("transfer-refused", party, json!({ "to": target }), out);
        };
        self.journal("transfer", party, json!({ "to": target }), out);
        self.bye(party, None, "Transferred", out);
        if !self.settings.anchored() {
            // Relay: media flows peer to peer, so nobody can be re-bridged (docs/protocol.md §9).
            return out.push(Output::Report);
        }
        self.transfer = Some(Transfer::Ringing(transferee));
        out.push(Output::FindTarget(target));
    }

    /// The switch found the transfer target's endpoints (or why not): they ring.
    pub(super) fn targets(
        &mut self,
        targets: Result<Vec<Peer>, SipCode>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(transfer) = self.transfer else {
            return;
        };
        match targets {
            Ok(peers) => {
                let command = LegCommand::Play(Signal::Ringback, UNTIL_STOPPED);
                self.on_leg(transfer.transferee(), command, out);
                self.ring_all(peers, Role::Target, "", now, out);
            }
            Err(code) => {
                self.transfer_failed(code, now, out);
                out.push(Output::Report);
            }
        }
    }

    /// The transferee hears the error tone, then is released.
    pub(super) fn transfer_failed(&mut self, code: SipCode, now: Instant, out: &mut Vec<Output>) {
        self.end_code = Some(code);
        let Some(transferee) = self.transfer.map(Transfer::transferee) else {
            return;
        };
        self.journal(
            "transfer-failed",
            transferee,
            json!({ "code": code.0 }),
            out,
        );
        self.on_leg(transferee, LegCommand::Stop, out);
        self.on_leg(transferee, LegCommand::Play(Signal::Error, 1), out);
        self.set_timer(now, ERROR_TONE, Timer::ErrorTone);
        self.transfer = Some(Transfer::Failed(transferee));
    }

    /// The other call gave up waiting for our far end: the party stays, as it was.
    pub(super) fn hand_over_failed(&mut self, back: Party, out: &mut Vec<Output>) {
        if let Some(PendingHandOver {
            transferor, far, ..
        }) = self.hand_over.take()
        {
            self.parties[far].dtmf = back.dtmf;
            self.connect(transferor, far, out);
        }
    }
}
