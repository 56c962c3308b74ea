//! One emulator call as a plain state machine (docs/protocol.md §6, §9): frames from the
//! parties, media events, the results of media work and of questions to the switch, and the
//! time go in; frames to send, media work, journal entries, questions to the switch and the
//! next deadline come out. No sockets, legs or clocks: the driver owns those and feeds each
//! result back before it takes the next input, so a step sees the world as it left it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::media::tone::Signal;
use crate::pbx::MediaMode;
use crate::pbx::switch::{CallKey, SocketId};
use crate::protocol::{
    Bye, CallId, CallRef, ClientFrame, Cseq, HoldCommand, Invite, RemoteCandidate, Sdp, SdpFrame,
    ServerFrame, SipCode,
};

mod messages;
mod party;
mod transfer;
mod view;

pub(super) use messages::{
    Entry, Input, LegCommand, LegFailure, MediaEvent, Negotiation, Output, Purpose,
};
use party::Status;
pub(super) use party::{Leg, Party, Peer, Role};
use transfer::{PendingHandOver, PendingJoin, Transfer};
pub(super) use view::LegMedia;

/// Plenty of loops for a signal that plays until something stops it.
const UNTIL_STOPPED: u32 = 10_000;
/// How long the error tone plays before a failed transfer's transferee is released.
const ERROR_TONE: Duration = Duration::from_millis(1600);
/// How long the caller's 200 may wait for the callee's media to come up.
const MEDIA_WAIT: Duration = Duration::from_secs(2);

pub(super) type PartyIndex = usize;
/// The party that placed the call is always the first.
pub(super) const CALLER: PartyIndex = 0;

/// How the emulator runs its calls.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub media: MediaMode,
    /// Modern dialect: the caller's offer is ignored and we offer to it (§6).
    pub modern: bool,
    pub ring_timeout: Duration,
    pub offer_timeout: Duration,
    /// Where the journal's clock starts: the times in views count from here.
    pub epoch: Instant,
}

impl Settings {
    /// A media leg per party (otherwise SDP and candidates are relayed).
    fn anchored(&self) -> bool {
        self.media == MediaMode::Anchored
    }
}

/// What a call starts from: who calls whom, with what offer, ringing where.
pub(super) struct Start {
    pub key: CallKey,
    pub caller: Peer,
    /// Our own call id towards the caller (modern dialect, anchored media).
    pub caller_alias: CallId,
    pub to: String,
    /// The dialled extension's display name (empty: none).
    pub to_name: String,
    pub offer: String,
    /// The dialled extension's registered sockets; none: 404.
    pub callees: Vec<Peer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Nobody answered in time: 480.
    Ring,
    /// The caller never answered our offer (modern dialect): 415.
    Offer,
    /// The error tone after a failed transfer has played: release the transferee.
    ErrorTone,
    /// The callee's media did not come up in time: answer the caller anyway.
    MediaWait,
}

/// Where the call is.
#[derive(Debug)]
enum Stage {
    /// Anchored: the caller's leg is being made; nothing rings yet.
    Starting {
        offer: String,
        callees: Vec<Peer>,
        alias: CallId,
    },
    Live,
    /// Every party is gone or released: the driver winds the call up.
    Over,
}

/// Modern dialect: whether the caller has answered our offer (once; a repeat after our 200
/// is the same answer again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallerOffer {
    Unanswered,
    Answered,
}

/// One call's state.
#[derive(Debug)]
pub(super) struct Call {
    settings: Settings,
    key: CallKey,
    to: String,
    to_name: String,
    parties: Vec<Party>,
    stage: Stage,
    /// The two parties whose audio is bridged.
    bridge: Option<(PartyIndex, PartyIndex)>,
    transfer: Option<Transfer>,
    /// The callee that answered, while the caller's 200 waits for its media.
    awaiting_media: Option<PartyIndex>,
    caller_offer: CallerOffer,
    /// Legs being made for parties to ring; when none are left, the ringing is complete.
    offers_in_flight: usize,
    join: Option<PendingJoin>,
    hand_over: Option<PendingHandOver>,
    timers: Vec<(Instant, Timer)>,
    started_ms: u64,
    answered_ms: Option<u64>,
    end_code: Option<SipCode>,
}

fn candidate_frame(callid: &CallId, candidate: String) -> ServerFrame {
    ServerFrame::Candidate(RemoteCandidate {
        callid: Some(callid.clone()),
        candidate,
        addresses: vec![],
    })
}

impl Call {
    /// Rings the callees and answers (legacy) or offers to (modern) the caller.
    pub(super) fn start(settings: Settings, start: Start, now: Instant) -> (Self, Vec<Output>) {
        let started_ms = ms_since(settings.epoch, now);
        let mut call = Self {
            settings,
            key: start.key,
            to: start.to,
            to_name: start.to_name,
            parties: vec![Party::ringing(Role::Caller, start.caller)],
            stage: Stage::Live,
            bridge: None,
            transfer: None,
            awaiting_media: None,
            caller_offer: CallerOffer::Unanswered,
            offers_in_flight: 0,
            join: None,
            hand_over: None,
            timers: Vec::new(),
            started_ms,
            answered_ms: None,
            end_code: None,
        };
        let mut out = Vec::new();
        if start.callees.is_empty() {
            call.journal("not-found", CALLER, json!({ "to": call.to }), &mut out);
            call.fail_caller(SipCode::NOT_FOUND, "Not Found", &mut out);
            call.end();
        } else if call.settings.anchored() {
            let negotiation = if call.settings.modern {
                Negotiation::Offer
            } else {
                Negotiation::Answer(start.offer.clone())
            };
            call.stage = Stage::Starting {
                offer: start.offer,
                callees: start.callees,
                alias: start.caller_alias,
            };
            call.leg(
                CALLER,
                LegCommand::Negotiate {
                    purpose: Purpose::Start,
                    negotiation,
                },
                &mut out,
            );
        } else {
            call.ring_all(start.callees, Role::Callee, &start.offer, now, &mut out);
        }
        (call, out)
    }

    /// Advances the call by one input.
    pub(super) fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.is_over() {
            return out;
        }
        match input {
            Input::Frame { socket, frame } => self.on_frame(socket, frame, now, &mut out),
            Input::SocketClosed(socket) => self.on_socket_closed(socket, now, &mut out),
            Input::Media { party, event } => self.on_media(party, event, now, &mut out),
            Input::Negotiated {
                party,
                purpose,
                result,
            } => match purpose {
                Purpose::Start => self.caller_negotiated(result, now, &mut out),
                Purpose::Ring => self.rung(party, result, now, &mut out),
                Purpose::Reoffer => self.reoffered(party, result, &mut out),
            },
            Input::AnswerApplied { party, ok } => self.answer_applied(party, ok, now, &mut out),
            Input::DtmfRelayed { from, digit } => {
                self.parties[from].dtmf.push(digit);
                let detail = json!({ "digit": digit.to_string() });
                self.journal("dtmf", from, detail, &mut out);
            }
            Input::Targets(targets) => self.targets(targets, now, &mut out),
            Input::Joined(joined) => self.joined(joined, &mut out),
            Input::HandOver { socket, id2, to } => self.give_away(socket, &id2, to, &mut out),
            Input::HandedOver => self.handed_over(&mut out),
            Input::HandOverFailed(back) => self.hand_over_failed(*back, &mut out),
        }
        out
    }

    /// When [`Call::on_timeout`] is due next.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().map(|(at, _)| *at).min()
    }

    /// Fires the timers that are due at `now`.
    pub(super) fn on_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some((at, timer)) = self.timers.iter().min_by_key(|(at, _)| *at).copied() {
            if at > now || self.is_over() {
                break;
            }
            self.timers.retain(|t| *t != (at, timer));
            self.on_timer(timer, now, &mut out);
        }
        out
    }

    /// Over: every party is gone or released.
    pub(super) fn is_over(&self) -> bool {
        matches!(self.stage, Stage::Over)
    }

    /// The call is over: the legs of the parties still in it are closed.
    pub(super) fn wind_up(&mut self) -> Vec<Output> {
        self.end();
        let mut out = Vec::new();
        for party in 0..self.parties.len() {
            if self.parties[party].is_live() {
                self.end_party(party, &mut out);
            }
        }
        out
    }

    /// Where the next party joins (attended transfer): the driver attaches its leg there.
    pub(super) fn next_party(&self) -> PartyIndex {
        self.parties.len()
    }

    pub(super) fn party(&self, party: PartyIndex) -> Option<&Party> {
        self.parties.get(party)
    }

    fn end(&mut self) {
        self.stage = Stage::Over;
        self.timers.clear();
    }

    fn journal(&self, kind: &'static str, party: PartyIndex, detail: Value, out: &mut Vec<Output>) {
        let p = &self.parties[party];
        out.push(Output::Journal(Entry {
            kind,
            extension: p.peer.extension.clone(),
            callid: p.id.to_string(),
            detail,
        }));
    }

    fn send(&self, to: PartyIndex, frame: ServerFrame, out: &mut Vec<Output>) {
        out.push(Output::Send { to, frame });
    }

    fn leg(&self, party: PartyIndex, command: LegCommand, out: &mut Vec<Output>) {
        out.push(Output::Leg { party, command });
    }

    /// Media work for the party's leg, when it has one.
    fn on_leg(&self, party: PartyIndex, command: LegCommand, out: &mut Vec<Output>) {
        if self.parties[party].leg != Leg::None {
            self.leg(party, command, out);
        }
    }

    fn next_cseq(&mut self, party: PartyIndex) -> Cseq {
        let p = &mut self.parties[party];
        p.cseq += 1;
        Cseq::Number(p.cseq)
    }

    fn set_timer(&mut self, now: Instant, after: Duration, timer: Timer) {
        self.timers.retain(|(_, t)| *t != timer);
        self.timers.push((now + after, timer));
    }

    fn cancel_timer(&mut self, timer: Timer) {
        self.timers.retain(|(_, t)| *t != timer);
    }

    /// The caller's leg is made (or not): the caller gets our answer or offer with 183 and
    /// hears ringback, and the callees ring.
    fn caller_negotiated(
        &mut self,
        result: Result<String, LegFailure>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Stage::Starting {
            offer,
            callees,
            alias,
        } = std::mem::replace(&mut self.stage, Stage::Live)
        else {
            return;
        };
        if self.settings.modern && result != Err(LegFailure::NoLeg) {
            // §6 modern: the caller's offer is ignored; we offer under our own call id.
            self.parties[CALLER].id = alias;
        }
        let sdp = match result {
            Ok(sdp) if self.settings.modern => Sdp::offer(sdp),
            Ok(sdp) => Sdp::answer(sdp),
            Err(LegFailure::NoLeg) => {
                self.fail_caller(SipCode::SERVER_ERROR, "Media Unavailable", out);
                return self.end();
            }
            Err(LegFailure::Refused(why)) => {
                info!("caller's SDP refused: {why}");
                self.fail_caller(SipCode::NOT_ACCEPTABLE_HERE, "Not Acceptable Here", out);
                return self.end();
            }
        };
        self.parties[CALLER].leg = Leg::Connecting;
        self.parties[CALLER].sdp = Some(sdp.clone());
        self.send_caller_sdp(SipCode::SESSION_PROGRESS, "Session Progress", sdp, out);
        if self.settings.modern {
            self.set_timer(now, self.settings.offer_timeout, Timer::Offer);
        }
        self.leg(
            CALLER,
            LegCommand::Play(Signal::Ringback, UNTIL_STOPPED),
            out,
        );
        self.ring_all(callees, Role::Callee, &offer, now, out);
    }

    /// Rings every peer; relay media passes the caller's offer on, anchored media makes a
    /// leg (and offer) for each first.
    fn ring_all(
        &mut self,
        peers: Vec<Peer>,
        role: Role,
        relay_offer: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        for peer in peers {
            let index = self.parties.len();
            self.parties.push(Party::ringing(role, peer));
            if self.settings.anchored() {
                self.offers_in_flight += 1;
                let command = LegCommand::Negotiate {
                    purpose: Purpose::Ring,
                    negotiation: Negotiation::Offer,
                };
                self.leg(index, command, out);
            } else {
                self.invite(index, relay_offer.to_owned(), out);
            }
        }
        if self.offers_in_flight == 0 {
            self.all_rung(role, now, out);
        }
    }

    /// A party's leg made its offer (or failed to): it is rung.
    fn rung(
        &mut self,
        party: PartyIndex,
        result: Result<String, LegFailure>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.offers_in_flight = self.offers_in_flight.saturating_sub(1);
        match result {
            Ok(offer) => {
                self.parties[party].leg = Leg::Connecting;
                self.invite(party, offer, out);
            }
            Err(failure) => {
                if let LegFailure::Refused(why) = failure {
                    warn!("emulator offer: {why}");
                }
                self.parties[party].status = Status::Ended;
            }
        }
        if self.offers_in_flight == 0 {
            self.all_rung(self.parties[party].role, now, out);
        }
    }

    /// Every fork of a dial or a transfer has been rung: the ring timer runs (a transfer
    /// that could ring nobody fails).
    fn all_rung(&mut self, role: Role, now: Instant, out: &mut Vec<Output>) {
        if role == Role::Target && self.ringing_forks(Role::Target) == 0 {
            self.transfer_failed(SipCode::SERVER_ERROR, now, out);
        } else {
            self.set_timer(now, self.settings.ring_timeout, Timer::Ring);
        }
        out.push(Output::Report);
    }

    /// Sends an `invitesdp` to one party (a fork of the dialled extension, or a transfer
    /// target).
    fn invite(&mut self, index: PartyIndex, offer: String, out: &mut Vec<Output>) {
        self.parties[index].sdp = Some(Sdp::offer(offer.clone()));
        let (from, from_name) = match self.transfer {
            Some(transfer) if self.parties[index].role == Role::Target => (
                self.parties[transfer.transferee()].peer.extension.clone(),
                String::new(),
            ),
            _ => (
                self.parties[CALLER].peer.extension.clone(),
                self.parties[CALLER].peer.name.clone(),
            ),
        };
        let cseq = self.next_cseq(index);
        let party = &self.parties[index];
        self.journal("invite", index, json!({ "from": from }), out);
        let frame = ServerFrame::InviteSdp(Invite {
            callid: party.id.clone(),
            cseq,
            from: from.clone(),
            to: party.peer.extension.clone(),
            from_user: Some(from),
            from_display: (!from_name.is_empty()).then_some(from_name),
            sdp: Sdp::offer(offer),
        });
        self.send(index, frame, out);
    }

    fn party_of(&self, socket: SocketId, callid: Option<&CallId>) -> Option<PartyIndex> {
        self.parties.iter().position(|p| {
            p.peer.socket == socket && p.is_live() && callid.is_none_or(|id| p.knows(id))
        })
    }

    /// The party a frame is from: a live one, or for a confirmation (which follows our `bye`
    /// or `cancel`) also one that has left the call.
    fn sender_of(&self, socket: SocketId, frame: &ClientFrame) -> Option<PartyIndex> {
        let callid = frame.call_id();
        self.party_of(socket, callid).or_else(|| {
            matches!(
                frame,
                ClientFrame::ByeResponse { .. } | ClientFrame::CancelResponse { .. }
            )
            .then(|| {
                self.parties.iter().position(|p| {
                    p.peer.socket == socket
                        && p.status != Status::Moved
                        && callid.is_some_and(|id| p.knows(id))
                })
            })
            .flatten()
        })
    }

    fn on_frame(
        &mut self,
        socket: SocketId,
        frame: ClientFrame,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(party) = self.sender_of(socket, &frame) else {
            debug!(
                "frame from a socket that is not in call {}: {}",
                self.key,
                frame.encode()
            );
            return;
        };
        match frame {
            ClientFrame::SipRinging { .. } => {
                self.journal("ringing", party, json!(null), out);
                out.push(Output::Report);
            }
            ClientFrame::Sdp200Ok { answer, .. } => self.on_answer(party, answer, now, out),
            ClientFrame::SipBusy { code, .. } => {
                self.journal("busy", party, json!({ "code": code.0 }), out);
                self.fork_failed(party, code, now, out);
            }
            ClientFrame::SipAck { .. } => self.journal("ack", party, json!(null), out),
            ClientFrame::IceCandidate {
                candidate: Some(candidate),
                ..
            } => self.on_remote_candidate(party, candidate.candidate, out),
            ClientFrame::SipBye { .. } => {
                self.journal("bye", party, json!(null), out);
                self.hang_up(party, now, out);
            }
            ClientFrame::ByeResponse { .. } => {
                self.journal("bye-response", party, json!(null), out);
            }
            ClientFrame::CancelResponse { .. } => {
                self.journal("cancel-response", party, json!(null), out);
            }
            ClientFrame::WrtcHold { command, offer, .. } => {
                self.hold(party, command, out);
                if let Some(offer) = offer {
                    self.renegotiate(party, offer, out);
                }
            }
            ClientFrame::BlindTransfer { to, .. } => self.transfer(party, to, out),
            ClientFrame::AttendedTransfer { id2, to, .. } => {
                self.attended_transfer(party, id2, to, out);
            }
            ClientFrame::RecCall { on, .. } => {
                self.journal("rec-call", party, json!({ "on": on }), out);
                let callid = Some(self.parties[party].id.clone());
                let frame = if on {
                    ServerFrame::RecStart { callid }
                } else {
                    ServerFrame::RecStop { callid }
                };
                self.send(party, frame, out);
            }
            _ => {}
        }
    }

    /// A party's candidate: to its leg (anchored), or to the other side (relay: every live
    /// fork while ringing).
    fn on_remote_candidate(&self, party: PartyIndex, candidate: String, out: &mut Vec<Output>) {
        if self.parties[party].leg != Leg::None {
            return self.leg(party, LegCommand::AddCandidate(candidate), out);
        }
        let targets: Vec<PartyIndex> = if party == CALLER {
            (1..self.parties.len())
                .filter(|&i| self.parties[i].is_live())
                .collect()
        } else {
            vec![CALLER]
        };
        for target in targets {
            let id = &self.parties[target].id;
            self.send(target, candidate_frame(id, candidate.clone()), out);
        }
    }

    /// A party answered our offer: the caller (modern dialect) or a callee / transfer target.
    fn on_answer(
        &mut self,
        party: PartyIndex,
        answer: String,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if party == CALLER {
            // Modern dialect: the caller answers our offer (once; a repeat after our 200 is
            // the same answer again).
            if self.settings.modern && self.caller_offer == CallerOffer::Unanswered {
                self.cancel_timer(Timer::Offer);
                self.caller_offer = CallerOffer::Answered;
                self.on_leg(CALLER, LegCommand::ApplyAnswer(answer), out);
            }
            return;
        }
        if self.parties[party].status != Status::Ringing {
            return;
        }
        if self.parties[party].leg != Leg::None {
            return self.leg(party, LegCommand::ApplyAnswer(answer), out);
        }
        self.answered(party, Some(answer), now, out);
    }

    fn answer_applied(&mut self, party: PartyIndex, ok: bool, now: Instant, out: &mut Vec<Output>) {
        match (party, ok) {
            (CALLER, true) => {}
            (CALLER, false) => {
                self.fail_caller(SipCode::NOT_ACCEPTABLE_HERE, "Not Acceptable Here", out);
                self.cancel_forks(None, out);
                self.end();
            }
            (_, false) => self.fork_failed(party, SipCode::NOT_ACCEPTABLE_HERE, now, out),
            (_, true) if self.parties[party].status == Status::Ringing => {
                self.answered(party, None, now, out);
            }
            (_, true) => {}
        }
    }

    /// A callee or transfer target answered (`answer`: the SDP to pass on in relay mode).
    fn answered(
        &mut self,
        party: PartyIndex,
        answer: Option<String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let role = self.parties[party].role;
        self.parties[party].status = Status::Connected { holding: false };
        self.journal("answer", party, json!(null), out);
        self.cancel_forks(Some(party), out);
        if role == Role::Target {
            let Some(transfer) = self.transfer.take() else {
                return;
            };
            self.connect(transfer.transferee(), party, out);
        } else {
            self.cancel_timer(Timer::Ring);
            if self.parties[CALLER].sdp.is_none() {
                // Relay: the callee's answer goes to the caller as it is.
                self.parties[CALLER].sdp = answer.map(Sdp::answer);
            }
            self.connect(CALLER, party, out);
            if self.settings.anchored() && self.parties[party].leg != Leg::Up {
                // Answer the caller once the callee can hear it, so nothing said right after
                // the answer is lost (a real PBX bridges early media the same way).
                self.awaiting_media = Some(party);
                self.set_timer(now, MEDIA_WAIT, Timer::MediaWait);
            } else {
                self.answer_caller(now, out);
            }
        }
        out.push(Output::Report);
    }

    /// The caller's final answer: `sdp` 200 (our answer in legacy, our offer again in modern,
    /// the callee's answer in relay mode).
    fn answer_caller(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.awaiting_media = None;
        self.cancel_timer(Timer::MediaWait);
        if self.parties[CALLER].status != Status::Ringing {
            return;
        }
        self.parties[CALLER].status = Status::Connected { holding: false };
        self.answered_ms = Some(ms_since(self.settings.epoch, now));
        if let Some(sdp) = self.parties[CALLER].sdp.clone() {
            self.send_caller_sdp(SipCode::OK, "OK", sdp, out);
        }
    }

    /// An `sdp` frame for the caller's call (§5): progress or the final answer.
    fn send_caller_sdp(&mut self, code: SipCode, reason: &str, sdp: Sdp, out: &mut Vec<Output>) {
        let cseq = self.next_cseq(CALLER);
        let frame = ServerFrame::Sdp(SdpFrame {
            callid: self.parties[CALLER].id.clone(),
            cseq: Some(cseq),
            code: Some(code),
            reason: Some(reason.to_owned()),
            sdp,
        });
        self.send(CALLER, frame, out);
    }

    /// Bridges two connected parties' audio (anchored media).
    fn connect(&mut self, a: PartyIndex, b: PartyIndex, out: &mut Vec<Output>) {
        self.bridge = Some((a, b));
        if self.parties[a].leg != Leg::None && self.parties[b].leg != Leg::None {
            self.leg(a, LegCommand::Stop, out);
            self.leg(b, LegCommand::Stop, out);
            self.leg(a, LegCommand::Bridge(Some(b)), out);
            self.leg(b, LegCommand::Bridge(Some(a)), out);
        }
    }

    fn partner(&self, party: PartyIndex) -> Option<PartyIndex> {
        match self.bridge {
            Some((a, b)) if a == party => Some(b),
            Some((a, b)) if b == party => Some(a),
            _ => None,
        }
    }

    /// Cancels every ringing fork except `keep`.
    fn cancel_forks(&mut self, keep: Option<PartyIndex>, out: &mut Vec<Output>) {
        for index in 1..self.parties.len() {
            if Some(index) == keep || self.parties[index].status != Status::Ringing {
                continue;
            }
            let cseq = self.next_cseq(index);
            let frame = ServerFrame::Cancel(CallRef {
                callid: self.parties[index].id.clone(),
                cseq: Some(cseq),
            });
            self.send(index, frame, out);
            self.journal("cancel", index, json!(null), out);
            self.end_party(index, out);
        }
    }

    fn end_party(&mut self, party: PartyIndex, out: &mut Vec<Output>) {
        self.parties[party].status = Status::Ended;
        self.on_leg(party, LegCommand::Close, out);
        if let Some(other) = self.partner(party) {
            self.bridge = None;
            self.on_leg(other, LegCommand::Bridge(None), out);
        }
    }

    /// Ends the call for the caller with a failure code (`bye` with the code: the caller's
    /// `sdp-packet` got no answer).
    fn fail_caller(&mut self, code: SipCode, reason: &str, out: &mut Vec<Output>) {
        self.end_code = Some(code);
        self.bye(CALLER, Some(code), reason, out);
    }

    fn bye(
        &mut self,
        party: PartyIndex,
        code: Option<SipCode>,
        reason: &str,
        out: &mut Vec<Output>,
    ) {
        if !self.parties[party].is_live() {
            return;
        }
        let cseq = self.next_cseq(party);
        let frame = ServerFrame::Bye(Bye {
            callid: self.parties[party].id.clone(),
            cseq: Some(cseq),
            code,
            reason: Some(reason.to_owned()),
        });
        self.send(party, frame, out);
        self.end_party(party, out);
    }

    fn ringing_forks(&self, role: Role) -> usize {
        self.parties
            .iter()
            .filter(|p| p.role == role && p.status == Status::Ringing)
            .count()
    }

    /// A fork refused or failed; when it was the last one, the call (or transfer) fails.
    fn fork_failed(
        &mut self,
        party: PartyIndex,
        code: SipCode,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let role = self.parties[party].role;
        if party == CALLER || self.parties[party].status != Status::Ringing {
            return;
        }
        self.end_party(party, out);
        if self.ringing_forks(role) > 0 {
            return;
        }
        match role {
            Role::Callee => {
                self.fail_caller(code, "Call Failed", out);
                self.end();
            }
            Role::Target => self.transfer_failed(code, now, out),
            Role::Caller | Role::Joined => {}
        }
        out.push(Output::Report);
    }

    fn hang_up(&mut self, party: PartyIndex, now: Instant, out: &mut Vec<Output>) {
        let status = self.parties[party].status;
        if party != CALLER && status == Status::Ringing {
            // A ringing callee that hangs up declines.
            return self.fork_failed(party, SipCode::DECLINE, now, out);
        }
        self.end_party(party, out);
        if party == CALLER && status == Status::Ringing {
            self.end_code = Some(SipCode::REQUEST_TERMINATED);
            self.clear(CALLER + 1, "Caller Gone", out);
            let frame = ServerFrame::CancelResponse(CallRef {
                callid: self.parties[CALLER].id.clone(),
                cseq: None,
            });
            self.send(CALLER, frame, out);
        } else {
            // Everyone else still in the call hears the hang-up.
            self.clear(CALLER, "Normal Call Clearing", out);
        }
        self.end();
    }

    /// Cancels the forks still ringing and says `bye` to every connected party from `first`
    /// on (the callees only, when the caller is told otherwise).
    fn clear(&mut self, first: PartyIndex, reason: &str, out: &mut Vec<Output>) {
        self.cancel_forks(None, out);
        for other in first..self.parties.len() {
            if matches!(self.parties[other].status, Status::Connected { .. }) {
                self.bye(other, None, reason, out);
            }
        }
    }

    /// A party holds or resumes: its partner hears hold music meanwhile.
    fn hold(&mut self, party: PartyIndex, command: HoldCommand, out: &mut Vec<Output>) {
        let hold = command == HoldCommand::Hold;
        if let Status::Connected { holding } = &mut self.parties[party].status {
            *holding = hold;
        }
        self.journal(
            if hold { "hold" } else { "resume" },
            party,
            json!(null),
            out,
        );
        if let Some(partner) = self.partner(party) {
            let command = if hold {
                LegCommand::Play(Signal::Hold, UNTIL_STOPPED)
            } else {
                LegCommand::Stop
            };
            self.on_leg(partner, command, out);
        }
        out.push(Output::Report);
    }

    /// A new offer from a connected party (the vendor's sample resumes a held call with a new
    /// peer connection): a new leg answers it and takes the old one's place in the bridge.
    /// Relay mode has no leg to renegotiate and refuses it.
    fn renegotiate(&mut self, party: PartyIndex, offer: String, out: &mut Vec<Output>) {
        if !matches!(self.parties[party].status, Status::Connected { .. }) {
            return;
        }
        if !self.settings.anchored() {
            let detail = json!({ "why": "relay media" });
            return self.journal("reoffer-refused", party, detail, out);
        }
        let command = LegCommand::Negotiate {
            purpose: Purpose::Reoffer,
            negotiation: Negotiation::Answer(offer),
        };
        self.leg(party, command, out);
    }

    /// The new leg answered the re-offer: the answer goes out in an `sdp` frame and the new
    /// leg joins the bridge (still on hold, the music goes on).
    fn reoffered(
        &mut self,
        party: PartyIndex,
        result: Result<String, LegFailure>,
        out: &mut Vec<Output>,
    ) {
        let answer = match result {
            Ok(answer) => answer,
            Err(LegFailure::NoLeg) => return,
            Err(LegFailure::Refused(why)) => {
                info!("re-offer refused: {why}");
                return self.journal("reoffer-refused", party, json!({ "why": why }), out);
            }
        };
        self.parties[party].leg = Leg::Connecting;
        self.journal("reoffer", party, json!(null), out);
        let cseq = self.next_cseq(party);
        let frame = ServerFrame::Sdp(SdpFrame {
            callid: self.parties[party].id.clone(),
            cseq: Some(cseq),
            code: Some(SipCode::OK),
            reason: Some("OK".into()),
            sdp: Sdp::answer(answer),
        });
        self.send(party, frame, out);
        if let Some(partner) = self.partner(party) {
            self.connect(party, partner, out);
            for (holder, listener) in [(party, partner), (partner, party)] {
                if self.parties[holder].is_holding() {
                    let command = LegCommand::Play(Signal::Hold, UNTIL_STOPPED);
                    self.on_leg(listener, command, out);
                }
            }
        }
        out.push(Output::Report);
    }

    fn on_socket_closed(&mut self, socket: SocketId, now: Instant, out: &mut Vec<Output>) {
        let gone: Vec<PartyIndex> = (0..self.parties.len())
            .filter(|&i| self.parties[i].peer.socket == socket && self.parties[i].is_live())
            .collect();
        for party in gone {
            self.journal("socket-lost", party, json!(null), out);
            if self.parties[party].status == Status::Ringing && party != CALLER {
                self.fork_failed(party, SipCode::TEMPORARILY_UNAVAILABLE, now, out);
            } else {
                self.hang_up(party, now, out);
            }
        }
    }

    fn on_media(
        &mut self,
        party: PartyIndex,
        event: MediaEvent,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if !self.parties.get(party).is_some_and(Party::is_live) {
            return;
        }
        match event {
            MediaEvent::LocalCandidate(candidate) => {
                let frame = candidate_frame(&self.parties[party].id, candidate);
                self.send(party, frame, out);
            }
            MediaEvent::Up => {
                self.parties[party].leg = Leg::Up;
                if self.awaiting_media == Some(party) {
                    self.answer_caller(now, out);
                    out.push(Output::Report);
                }
            }
            MediaEvent::Failed => {
                self.journal("media-failed", party, json!(null), out);
                if self.parties[party].is_holding() {
                    // The vendor's sample closes its peer connection while it holds the call,
                    // and resumes with a new offer: not a reason to hang up.
                    return;
                }
                self.hang_up(party, now, out);
            }
            MediaEvent::Digit(digit) => {
                if let Some(partner) = self.partner(party) {
                    let command = LegCommand::RelayDtmf { from: party, digit };
                    self.on_leg(partner, command, out);
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Output>) {
        match timer {
            Timer::Ring => {
                if self.transfer.is_some() {
                    self.cancel_forks(None, out);
                    self.transfer_failed(SipCode::TEMPORARILY_UNAVAILABLE, now, out);
                } else if self.parties[CALLER].status == Status::Ringing {
                    self.journal("no-answer", CALLER, json!(null), out);
                    self.cancel_forks(None, out);
                    self.fail_caller(SipCode::TEMPORARILY_UNAVAILABLE, "No Answer", out);
                    self.end();
                }
            }
            Timer::Offer => {
                self.journal("offer-unanswered", CALLER, json!(null), out);
                self.clear(CALLER + 1, "Media Negotiation Failed", out);
                self.fail_caller(
                    SipCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    out,
                );
                self.end();
            }
            Timer::MediaWait => self.answer_caller(now, out),
            Timer::ErrorTone => {
                if let Some(transfer) = self.transfer.take() {
                    let code = self.end_code;
                    self.bye(transfer.transferee(), code, "Transfer Failed", out);
                }
                self.end();
            }
        }
        out.push(Output::Report);
    }
}

/// Milliseconds from `epoch` to `now` (the journal's clock).
fn ms_since(epoch: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_millis() as u64
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
