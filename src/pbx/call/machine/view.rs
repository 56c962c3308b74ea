//! What others see of a call: each party's entry in `call-state` lists, and the call's view
//! in `/emulator/calls`.

use std::time::Instant;

use super::{CALLER, Call, PartyIndex, Role, Stage, Status, Transfer, ms_since};
use crate::pbx::call::PartyState;
use crate::pbx::journal::{CallView, LegView};
use crate::protocol::PbxCallState;

/// What a party's leg carried (anchored media), for the view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(in crate::pbx::call) struct LegMedia {
    pub codec: Option<String>,
    pub packets_sent: u64,
    pub packets_received: u64,
}

impl Call {
    /// Each party's entry in `call-state` lists: the caller's `to` and the others' `from`
    /// name the far end as it is now (after a transfer, the new one).
    pub(in crate::pbx::call) fn party_states(&self) -> Vec<PartyState> {
        self.parties
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status != Status::Moved)
            .map(|(index, p)| {
                let held_by_partner = self
                    .partner(index)
                    .is_some_and(|partner| self.parties[partner].is_holding());
                let state = match p.status {
                    Status::Ended | Status::Moved => PartyState::disconnected(),
                    Status::Ringing if index == CALLER => PbxCallState::Ringback,
                    Status::Ringing => PbxCallState::Alerting,
                    Status::Connected { holding: true } => PbxCallState::Holding,
                    Status::Connected { .. } if held_by_partner => PbxCallState::OnHold,
                    Status::Connected { .. } => PbxCallState::Connected,
                };
                let own = (p.peer.extension.clone(), p.peer.name.clone());
                let far = self.far_end(index);
                let ((from_number, from_name), (to_number, to_name)) = if index == CALLER {
                    (own, far)
                } else {
                    (far, own)
                };
                PartyState {
                    socket: p.peer.socket,
                    extension: p.peer.extension.clone(),
                    callid: p.id.clone(),
                    state,
                    from_number,
                    from_name,
                    to_number,
                    to_name,
                    start: self.started_ms,
                    connect: self.answered_ms,
                }
            })
            .collect()
    }

    /// Who `party` talks to now, as number and name: its bridge partner, the transfer target
    /// ringing for it, or (before anyone answered) the number the caller dialled / the caller.
    fn far_end(&self, party: PartyIndex) -> (String, String) {
        let ringing_target = (self.transfer.map(Transfer::transferee) == Some(party))
            .then(|| {
                self.parties
                    .iter()
                    .rposition(|p| p.role == Role::Target && p.status != Status::Ended)
            })
            .flatten();
        match self.partner(party).or(ringing_target) {
            Some(other) => {
                let peer = &self.parties[other].peer;
                (peer.extension.clone(), peer.name.clone())
            }
            None if party == CALLER => (self.to.clone(), self.to_name.clone()),
            None => {
                let caller = &self.parties[CALLER].peer;
                (caller.extension.clone(), caller.name.clone())
            }
        }
    }

    /// The call as `/emulator/calls` shows it at `now`; `media` tells what a party's leg
    /// carried.
    pub(in crate::pbx::call) fn view(
        &self,
        now: Instant,
        media: impl Fn(PartyIndex) -> LegMedia,
    ) -> CallView {
        let legs = self
            .parties
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status != Status::Moved)
            .map(|(index, p)| {
                let media = media(index);
                LegView {
                    extension: p.peer.extension.clone(),
                    callid: p.id.to_string(),
                    role: match p.role {
                        Role::Caller => "caller",
                        Role::Callee => "callee",
                        Role::Target => "transfer-target",
                        Role::Joined => "joined",
                    },
                    state: match p.status {
                        Status::Ringing => "ringing",
                        Status::Connected { holding: true } => "holding",
                        Status::Connected { .. } => "connected",
                        Status::Ended | Status::Moved => "ended",
                    },
                    codec: media.codec,
                    packets_sent: media.packets_sent,
                    packets_received: media.packets_received,
                    dtmf_relayed: p.dtmf.clone(),
                    bridged_to: self.partner(index).map(|i| self.parties[i].id.to_string()),
                }
            })
            .collect();
        let over = matches!(self.stage, Stage::Over);
        let state = if over {
            "ended"
        } else if self
            .bridge
            .is_some_and(|(a, b)| self.parties[a].is_holding() || self.parties[b].is_holding())
        {
            "held"
        } else if self.bridge.is_some()
            || matches!(self.parties[CALLER].status, Status::Connected { .. })
        {
            "connected"
        } else {
            "ringing"
        };
        CallView {
            id: self.key,
            from: self.parties[CALLER].peer.extension.clone(),
            to: self.to.clone(),
            state,
            media: self.settings.media.as_str(),
            started_ms: self.started_ms,
            answered_ms: self.answered_ms,
            ended_ms: over.then(|| ms_since(self.settings.epoch, now)),
            end_code: self.end_code.map(|c| c.0),
            legs,
        }
    }
}
