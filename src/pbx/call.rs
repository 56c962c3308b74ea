//! One call through the emulator, as its own task: the caller, the callee's endpoints (forked
//! to every registered socket), later a transfer target. In relay mode SDP and candidates pass
//! through and the peers' media flows directly; in anchored mode the emulator is a back-to-back
//! user agent with a media leg per party, bridging audio and DTMF, playing ringback, hold music
//! and error tones (docs/protocol.md §6, §9).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::journal::{CallView, LegView};
use super::switch::{CallKey, CallReport, SocketId, SocketTx, SwitchInput};
use super::{Context, MediaMode};
use crate::lock::lock;
use crate::media::tone::Signal;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, MediaLeg};
use crate::protocol::{
    Bye, CallId, CallInfo, CallRef, ClientFrame, Cseq, Dialect, HoldCommand, Invite, PbxCallState,
    RemoteCandidate, Sdp, SdpFrame, ServerFrame, SipCode,
};

/// Plenty of loops for a signal that plays until something stops it.
const UNTIL_STOPPED: u32 = 10_000;
/// How long the error tone plays before a failed transfer's transferee is released.
const ERROR_TONE: Duration = Duration::from_millis(1600);
/// How long the caller's 200 may wait for the callee's media to come up.
const MEDIA_WAIT: Duration = Duration::from_secs(2);
/// How long an attended transfer waits for the other call to hand its far end over.
const HAND_OVER_WAIT: Duration = Duration::from_secs(5);

/// A registered socket of an extension, and the call id this call has on it.
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    pub socket: SocketId,
    pub extension: String,
    pub tx: SocketTx,
    pub callid: CallId,
}

pub(super) struct CallSetup {
    pub key: CallKey,
    pub caller: Endpoint,
    /// The emulator's own call id towards the caller (modern dialect, anchored media).
    pub caller_alias: CallId,
    pub caller_name: String,
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
pub(super) struct HandOver(Box<Party>);

/// Where a call answers a [`CallInput::HandOver`]: the party, or why not.
pub(super) type HandOverReply = oneshot::Sender<Result<HandOver, &'static str>>;

type MediaTx = mpsc::UnboundedSender<(PartyIndex, LegEvent)>;

/// Where a leg's events go: a party of a call. Retargeted when the party moves to another
/// call, cut when its leg is replaced (so a closed leg's last events are not taken for the
/// new one's).
#[derive(Clone)]
struct LegRoute(Arc<Mutex<Option<(PartyIndex, MediaTx)>>>);

impl LegRoute {
    fn set(&self, target: Option<(PartyIndex, MediaTx)>) {
        *lock(&self.0) = target;
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
    Target,
    /// Joined from another call by an attended transfer.
    Joined,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ringing,
    Connected,
    Ended,
}

struct Party {
    role: Role,
    endpoint: Endpoint,
    /// The call id this party knows the call by.
    id: CallId,
    /// Our CSeq towards this party, for the frames we originate.
    cseq: u64,
    status: Status,
    /// Put the call on hold itself.
    holding: bool,
    /// Anchored media: the emulator's leg towards this party, and where its events go.
    leg: Option<Arc<MediaLeg>>,
    route: Option<LegRoute>,
    /// Handed over to another call (attended transfer): no longer listed here.
    moved: bool,
    /// What we sent this party as SDP (anchored: our answer or offer; relay: the caller's offer).
    sdp: Option<Sdp>,
    /// Modern dialect: the caller has answered our offer.
    offer_answered: bool,
    /// Anchored: ICE and DTLS are up on our leg towards this party.
    media_up: bool,
    dtmf: String,
}

impl Party {
    /// A party whose leg of the call is just starting.
    fn ringing(role: Role, endpoint: Endpoint) -> Self {
        Self {
            role,
            id: endpoint.callid.clone(),
            endpoint,
            cseq: 0,
            status: Status::Ringing,
            holding: false,
            leg: None,
            route: None,
            moved: false,
            sdp: None,
            offer_answered: false,
            media_up: false,
            dtmf: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Nobody answered in time: 480.
    Ring,
    /// The caller never answered our offer (modern dialect): 415.
    Offer,
    /// The error tone after a failed transfer has played: release the transferee.
    ErrorTone,
    /// The callee's media did not come up in time: answer the caller anyway.
    MediaWait,
}

type PartyIndex = usize;
const CALLER: PartyIndex = 0;

struct PbxCall {
    ctx: Arc<Context>,
    key: CallKey,
    switch: mpsc::UnboundedSender<SwitchInput>,
    to: String,
    caller_name: String,
    parties: Vec<Party>,
    /// The two parties whose audio is bridged.
    bridge: Option<(PartyIndex, PartyIndex)>,
    /// The party waiting for a transfer target to answer.
    transferee: Option<PartyIndex>,
    /// The callee that answered, while the caller's 200 waits for its media.
    awaiting_media: Option<PartyIndex>,
    timers: Vec<(Instant, Timer)>,
    media_tx: MediaTx,
    started_ms: u64,
    answered_ms: Option<u64>,
    end_code: Option<SipCode>,
    finished: bool,
}

/// Runs one call until every party is gone.
pub(super) async fn run(
    ctx: Arc<Context>,
    setup: CallSetup,
    mut inputs: mpsc::UnboundedReceiver<CallInput>,
    switch: mpsc::UnboundedSender<SwitchInput>,
) {
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let started_ms = lock(&ctx.journal).now_ms();
    let caller = Party::ringing(Role::Caller, setup.caller);
    let mut call = PbxCall {
        ctx,
        key: setup.key,
        switch,
        to: setup.to,
        caller_name: setup.caller_name,
        parties: vec![caller],
        bridge: None,
        transferee: None,
        awaiting_media: None,
        timers: Vec::new(),
        media_tx,
        started_ms,
        answered_ms: None,
        end_code: None,
        finished: false,
    };
    call.start(setup.offer, setup.callees, setup.caller_alias)
        .await;
    // Media counters in `/emulator/calls` are refreshed this often.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    while !call.finished {
        let next_timer = call.timers.iter().min_by_key(|(at, _)| *at).copied();
        tokio::select! {
            input = inputs.recv() => match input {
                Some(CallInput::Frame { socket, frame }) => call.on_frame(socket, frame).await,
                Some(CallInput::SocketClosed(socket)) => call.on_socket_closed(socket),
                Some(CallInput::HandOver { socket, id2, to, reply }) => {
                    call.hand_over(socket, &id2, to, reply);
                }
                None => break,
            },
            Some((party, event)) = media_rx.recv() => call.on_media(party, event),
            _ = refresh.tick(), if call.anchored() => call.publish_view(),
            () = sleep_until(next_timer.map_or_else(Instant::now, |(at, _)| at)), if next_timer.is_some() => {
                if let Some((at, timer)) = next_timer {
                    call.timers.retain(|t| *t != (at, timer));
                    call.on_timer(timer);
                }
            }
        }
    }
    call.finish();
}

fn candidate_frame(callid: &CallId, candidate: String) -> ServerFrame {
    ServerFrame::Candidate(RemoteCandidate {
        callid: Some(callid.clone()),
        candidate,
        addresses: vec![],
    })
}

impl PbxCall {
    fn anchored(&self) -> bool {
        self.ctx.options.media == MediaMode::Anchored
    }

    fn modern(&self) -> bool {
        self.ctx.options.dialect == Dialect::Modern
    }

    fn journal(&self, kind: &'static str, party: PartyIndex, detail: serde_json::Value) {
        let p = &self.parties[party];
        lock(&self.ctx.journal).event(
            kind,
            Some(&p.endpoint.extension),
            Some(p.id.as_str()),
            detail,
        );
    }

    fn send(&self, party: PartyIndex, frame: ServerFrame) {
        let _ = self.parties[party].endpoint.tx.send(Some(frame));
    }

    fn next_cseq(&mut self, party: PartyIndex) -> Cseq {
        let p = &mut self.parties[party];
        p.cseq += 1;
        Cseq::Number(p.cseq)
    }

    fn set_timer(&mut self, after: Duration, timer: Timer) {
        self.timers.retain(|(_, t)| *t != timer);
        self.timers.push((Instant::now() + after, timer));
    }

    fn cancel_timer(&mut self, timer: Timer) {
        self.timers.retain(|(_, t)| *t != timer);
    }

    /// A new media leg for `party` (not yet attached: see [`PbxCall::attach_leg`]).
    async fn new_leg(&self, party: PartyIndex) -> Option<(Arc<MediaLeg>, LegRoute)> {
        let media = self.ctx.media.as_ref()?;
        match media.new_leg().await {
            Ok((leg, mut events)) => {
                let route = LegRoute(Arc::new(Mutex::new(Some((party, self.media_tx.clone())))));
                let target = route.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        let sent = match &*lock(&target.0) {
                            Some((party, tx)) => tx.send((*party, event)).is_ok(),
                            None => false,
                        };
                        if !sent {
                            break;
                        }
                    }
                });
                Some((Arc::new(leg), route))
            }
            Err(e) => {
                warn!("emulator media leg: {e}");
                None
            }
        }
    }

    /// Makes `leg` the party's leg; a leg it replaces is cut off and closed.
    fn attach_leg(&mut self, party: PartyIndex, (leg, route): (Arc<MediaLeg>, LegRoute)) {
        let p = &mut self.parties[party];
        if let Some(old) = p.route.replace(route) {
            old.set(None);
        }
        if let Some(old) = p.leg.replace(leg) {
            old.bridge_to(None);
            tokio::spawn(async move { old.close().await });
        }
        p.media_up = false;
    }

    /// Rings the callees and answers (legacy) or offers to (modern) the caller.
    async fn start(&mut self, offer: String, callees: Vec<Endpoint>, alias: CallId) {
        if callees.is_empty() {
            self.journal("not-found", CALLER, json!({ "to": self.to }));
            self.fail_caller(SipCode::NOT_FOUND, "Not Found");
            self.finished = true;
            return;
        }
        if self.anchored() {
            let Some(new) = self.new_leg(CALLER).await else {
                self.fail_caller(SipCode::SERVER_ERROR, "Media Unavailable");
                self.finished = true;
                return;
            };
            let leg = new.0.clone();
            self.attach_leg(CALLER, new);
            let sdp = if self.modern() {
                // §6 modern: the caller's offer is ignored; we offer under our own call id.
                self.parties[CALLER].id = alias;
                leg.create_offer().await.map(Sdp::offer)
            } else {
                leg.accept_offer(&offer).await.map(Sdp::answer)
            };
            match sdp {
                Ok(sdp) => {
                    self.parties[CALLER].sdp = Some(sdp.clone());
                    self.send_caller_sdp(SipCode::SESSION_PROGRESS, "Session Progress", sdp);
                    if self.modern() {
                        self.set_timer(self.ctx.options.offer_timeout, Timer::Offer);
                    }
                    leg.play_signal(Signal::Ringback, UNTIL_STOPPED);
                }
                Err(e) => {
                    info!("caller's SDP refused: {e}");
                    self.fail_caller(SipCode::NOT_ACCEPTABLE_HERE, "Not Acceptable Here");
                    self.finished = true;
                    return;
                }
            }
        }
        for endpoint in callees {
            self.ring(endpoint, Role::Callee, &offer).await;
        }
        self.set_timer(self.ctx.options.ring_timeout, Timer::Ring);
        self.report();
    }

    /// Sends an `invitesdp` to one endpoint (a fork of the dialled extension, or a transfer
    /// target), with our own offer when media is anchored.
    async fn ring(&mut self, endpoint: Endpoint, role: Role, relay_offer: &str) {
        let index = self.parties.len();
        self.parties.push(Party::ringing(role, endpoint));
        let offer = if self.anchored() {
            let Some(new) = self.new_leg(index).await else {
                self.parties[index].status = Status::Ended;
                return;
            };
            let leg = new.0.clone();
            self.attach_leg(index, new);
            match leg.create_offer().await {
                Ok(offer) => offer,
                Err(e) => {
                    warn!("emulator offer: {e}");
                    self.parties[index].status = Status::Ended;
                    return;
                }
            }
        } else {
            relay_offer.to_owned()
        };
        self.parties[index].sdp = Some(Sdp::offer(offer.clone()));
        let (from, from_name) = match self.transferee {
            Some(t) if role == Role::Target => {
                (self.parties[t].endpoint.extension.clone(), String::new())
            }
            _ => (
                self.parties[CALLER].endpoint.extension.clone(),
                self.caller_name.clone(),
            ),
        };
        let cseq = self.next_cseq(index);
        let party = &self.parties[index];
        self.journal("invite", index, json!({ "from": from }));
        self.send(
            index,
            ServerFrame::InviteSdp(Invite {
                callid: party.id.clone(),
                cseq,
                from: from.clone(),
                to: party.endpoint.extension.clone(),
                from_user: Some(from),
                from_display: (!from_name.is_empty()).then_some(from_name),
                sdp: Sdp::offer(offer),
            }),
        );
    }

    fn party_of(&self, socket: SocketId, callid: Option<&CallId>) -> Option<PartyIndex> {
        self.parties.iter().position(|p| {
            p.endpoint.socket == socket
                && p.status != Status::Ended
                && callid.is_none_or(|id| *id == p.id || *id == p.endpoint.callid)
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
                    p.endpoint.socket == socket
                        && !p.moved
                        && callid.is_some_and(|id| *id == p.id || *id == p.endpoint.callid)
                })
            })
            .flatten()
        })
    }

    async fn on_frame(&mut self, socket: SocketId, frame: ClientFrame) {
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
                self.journal("ringing", party, json!(null));
                self.report();
            }
            ClientFrame::Sdp200Ok { answer, .. } => self.on_answer(party, answer).await,
            ClientFrame::SipBusy { code, .. } => {
                self.journal("busy", party, json!({ "code": code.0 }));
                self.fork_failed(party, code);
            }
            ClientFrame::SipAck { .. } => self.journal("ack", party, json!(null)),
            ClientFrame::IceCandidate {
                candidate: Some(candidate),
                ..
            } => self.on_remote_candidate(party, candidate.candidate).await,
            ClientFrame::SipBye { .. } => {
                self.journal("bye", party, json!(null));
                self.hang_up(party);
            }
            ClientFrame::ByeResponse { .. } => self.journal("bye-response", party, json!(null)),
            ClientFrame::CancelResponse { .. } => {
                self.journal("cancel-response", party, json!(null));
            }
            ClientFrame::WrtcHold { command, offer, .. } => {
                self.hold(party, command);
                if let Some(offer) = offer {
                    self.renegotiate(party, &offer).await;
                }
            }
            ClientFrame::BlindTransfer { to, .. } => self.transfer(party, to).await,
            ClientFrame::AttendedTransfer { id2, to, .. } => {
                self.attended_transfer(party, id2, to).await;
            }
            ClientFrame::RecCall { on, .. } => {
                self.journal("rec-call", party, json!({ "on": on }));
                let callid = Some(self.parties[party].id.clone());
                self.send(
                    party,
                    if on {
                        ServerFrame::RecStart { callid }
                    } else {
                        ServerFrame::RecStop { callid }
                    },
                );
            }
            _ => {}
        }
    }

    async fn on_remote_candidate(&mut self, party: PartyIndex, candidate: String) {
        if let Some(leg) = self.parties[party].leg.clone() {
            let remote = RemoteCandidate {
                callid: None,
                candidate,
                addresses: vec![],
            };
            if let Err(e) = leg.add_remote_candidate(&remote).await {
                debug!("candidate refused: {e}");
            }
            return;
        }
        // Relay: to the other side (every live fork while ringing).
        let targets: Vec<PartyIndex> = if party == CALLER {
            (1..self.parties.len())
                .filter(|&i| self.parties[i].status != Status::Ended)
                .collect()
        } else {
            vec![CALLER]
        };
        for target in targets {
            let id = self.parties[target].id.clone();
            self.send(target, candidate_frame(&id, candidate.clone()));
        }
    }

    /// A party answered our offer: the caller (modern dialect) or a callee / transfer target.
    async fn on_answer(&mut self, party: PartyIndex, answer: String) {
        if party == CALLER {
            // Modern dialect: the caller answers our offer (once; a repeat after our 200 is
            // the same answer again).
            if self.modern() && !self.parties[CALLER].offer_answered {
                self.cancel_timer(Timer::Offer);
                self.parties[CALLER].offer_answered = true;
                if !self.apply_answer(party, &answer).await {
                    self.fail_caller(SipCode::NOT_ACCEPTABLE_HERE, "Not Acceptable Here");
                    self.cancel_forks(None);
                    self.finished = true;
                }
            }
            return;
        }
        if self.parties[party].status != Status::Ringing {
            return;
        }
        if self.anchored() && !self.apply_answer(party, &answer).await {
            self.fork_failed(party, SipCode::NOT_ACCEPTABLE_HERE);
            return;
        }
        let role = self.parties[party].role;
        self.parties[party].status = Status::Connected;
        self.journal("answer", party, json!(null));
        self.cancel_forks(Some(party));
        if role == Role::Target {
            let Some(transferee) = self.transferee.take() else {
                return;
            };
            self.connect(transferee, party);
        } else {
            self.cancel_timer(Timer::Ring);
            if self.parties[CALLER].sdp.is_none() {
                // Relay: the callee's answer goes to the caller as it is.
                self.parties[CALLER].sdp = Some(Sdp::answer(answer));
            }
            self.connect(CALLER, party);
            if self.anchored() && !self.parties[party].media_up {
                // Answer the caller once the callee can hear it, so nothing said right after
                // the answer is lost (a real PBX bridges early media the same way).
                self.awaiting_media = Some(party);
                self.set_timer(MEDIA_WAIT, Timer::MediaWait);
            } else {
                self.answer_caller();
            }
        }
        self.report();
    }

    /// The caller's final answer: `sdp` 200 (our answer in legacy, our offer again in modern,
    /// the callee's answer in relay mode).
    fn answer_caller(&mut self) {
        self.awaiting_media = None;
        self.cancel_timer(Timer::MediaWait);
        if self.parties[CALLER].status != Status::Ringing {
            return;
        }
        self.parties[CALLER].status = Status::Connected;
        self.answered_ms = Some(lock(&self.ctx.journal).now_ms());
        if let Some(sdp) = self.parties[CALLER].sdp.clone() {
            self.send_caller_sdp(SipCode::OK, "OK", sdp);
        }
    }

    /// An `sdp` frame for the caller's call (§5): progress or the final answer.
    fn send_caller_sdp(&mut self, code: SipCode, reason: &str, sdp: Sdp) {
        let cseq = self.next_cseq(CALLER);
        self.send(
            CALLER,
            ServerFrame::Sdp(SdpFrame {
                callid: self.parties[CALLER].id.clone(),
                cseq: Some(cseq),
                code: Some(code),
                reason: Some(reason.to_owned()),
                sdp,
            }),
        );
    }

    async fn apply_answer(&self, party: PartyIndex, answer: &str) -> bool {
        let Some(leg) = &self.parties[party].leg else {
            return true;
        };
        match leg.apply_answer(answer).await {
            Ok(()) => true,
            Err(e) => {
                info!("answer refused: {e}");
                false
            }
        }
    }

    /// Bridges two connected parties' audio (anchored media).
    fn connect(&mut self, a: PartyIndex, b: PartyIndex) {
        self.bridge = Some((a, b));
        if let (Some(leg_a), Some(leg_b)) = (&self.parties[a].leg, &self.parties[b].leg) {
            leg_a.stop();
            leg_b.stop();
            leg_a.bridge_to(Some(leg_b));
            leg_b.bridge_to(Some(leg_a));
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
    fn cancel_forks(&mut self, keep: Option<PartyIndex>) {
        for index in 1..self.parties.len() {
            if Some(index) == keep || self.parties[index].status != Status::Ringing {
                continue;
            }
            let cseq = self.next_cseq(index);
            self.send(
                index,
                ServerFrame::Cancel(CallRef {
                    callid: self.parties[index].id.clone(),
                    cseq: Some(cseq),
                }),
            );
            self.journal("cancel", index, json!(null));
            self.end_party(index);
        }
    }

    fn end_party(&mut self, party: PartyIndex) {
        let p = &mut self.parties[party];
        p.status = Status::Ended;
        if let Some(leg) = &p.leg {
            leg.bridge_to(None);
            let leg = leg.clone();
            tokio::spawn(async move { leg.close().await });
        }
        if let Some((a, b)) = self.bridge
            && (a == party || b == party)
        {
            self.bridge = None;
            let other = if a == party { b } else { a };
            if let Some(leg) = &self.parties[other].leg {
                leg.bridge_to(None);
            }
        }
    }

    /// Ends the call for the caller with a failure code (`bye` with the code: the caller's
    /// `sdp-packet` got no answer).
    fn fail_caller(&mut self, code: SipCode, reason: &str) {
        self.end_code = Some(code);
        self.bye(CALLER, Some(code), reason);
    }

    fn bye(&mut self, party: PartyIndex, code: Option<SipCode>, reason: &str) {
        if self.parties[party].status == Status::Ended {
            return;
        }
        let cseq = self.next_cseq(party);
        self.send(
            party,
            ServerFrame::Bye(Bye {
                callid: self.parties[party].id.clone(),
                cseq: Some(cseq),
                code,
                reason: Some(reason.to_owned()),
            }),
        );
        self.end_party(party);
    }

    fn ringing_forks(&self, role: Role) -> usize {
        self.parties
            .iter()
            .filter(|p| p.role == role && p.status == Status::Ringing)
            .count()
    }

    /// A fork refused or failed; when it was the last one, the call (or transfer) fails.
    fn fork_failed(&mut self, party: PartyIndex, code: SipCode) {
        let role = self.parties[party].role;
        if party == CALLER || self.parties[party].status != Status::Ringing {
            return;
        }
        self.end_party(party);
        if self.ringing_forks(role) > 0 {
            return;
        }
        match role {
            Role::Callee => {
                self.fail_caller(code, "Call Failed");
                self.finished = true;
            }
            Role::Target => self.transfer_failed(code),
            Role::Caller | Role::Joined => {}
        }
        self.report();
    }

    fn hang_up(&mut self, party: PartyIndex) {
        let status = self.parties[party].status;
        if party != CALLER && status == Status::Ringing {
            // A ringing callee that hangs up declines.
            self.fork_failed(party, SipCode::DECLINE);
            return;
        }
        self.end_party(party);
        if party == CALLER && status == Status::Ringing {
            self.end_code = Some(SipCode::REQUEST_TERMINATED);
            self.clear(CALLER + 1, "Caller Gone");
            self.send(
                CALLER,
                ServerFrame::CancelResponse(CallRef {
                    callid: self.parties[CALLER].id.clone(),
                    cseq: None,
                }),
            );
            self.finished = true;
            return;
        }
        // Everyone else still in the call hears the hang-up.
        self.clear(CALLER, "Normal Call Clearing");
        self.finished = true;
    }

    /// Cancels the forks still ringing and says `bye` to every connected party from `first`
    /// on (the callees only, when the caller is told otherwise).
    fn clear(&mut self, first: PartyIndex, reason: &str) {
        self.cancel_forks(None);
        for other in first..self.parties.len() {
            if self.parties[other].status == Status::Connected {
                self.bye(other, None, reason);
            }
        }
    }

    fn hold(&mut self, party: PartyIndex, command: HoldCommand) {
        let hold = command == HoldCommand::Hold;
        self.parties[party].holding = hold;
        self.journal(if hold { "hold" } else { "resume" }, party, json!(null));
        if let Some(partner) = self.partner(party)
            && let Some(leg) = &self.parties[partner].leg
        {
            if hold {
                leg.play_signal(Signal::Hold, UNTIL_STOPPED);
            } else {
                leg.stop();
            }
        }
        self.report();
    }

    /// A new offer from a connected party (the vendor's sample resumes a held call with a new
    /// peer connection): a new leg answers it with an `sdp` frame and takes the old one's place
    /// in the bridge. Relay mode has no leg to renegotiate and refuses it.
    async fn renegotiate(&mut self, party: PartyIndex, offer: &str) {
        if self.parties[party].status != Status::Connected {
            return;
        }
        if !self.anchored() {
            self.journal("reoffer-refused", party, json!({ "why": "relay media" }));
            return;
        }
        let Some(new) = self.new_leg(party).await else {
            return;
        };
        let answer = match new.0.accept_offer(offer).await {
            Ok(answer) => answer,
            Err(e) => {
                info!("re-offer refused: {e}");
                new.0.close().await;
                self.journal("reoffer-refused", party, json!({ "why": e.to_string() }));
                return;
            }
        };
        self.attach_leg(party, new);
        self.journal("reoffer", party, json!(null));
        let cseq = self.next_cseq(party);
        self.send(
            party,
            ServerFrame::Sdp(SdpFrame {
                callid: self.parties[party].id.clone(),
                cseq: Some(cseq),
                code: Some(SipCode::OK),
                reason: Some("OK".into()),
                sdp: Sdp::answer(answer),
            }),
        );
        if let Some(partner) = self.partner(party) {
            self.connect(party, partner);
            // Still on hold (a re-offer that is not a resume): the music goes on.
            for (holder, listener) in [(party, partner), (partner, party)] {
                if self.parties[holder].holding
                    && let Some(leg) = &self.parties[listener].leg
                {
                    leg.play_signal(Signal::Hold, UNTIL_STOPPED);
                }
            }
        }
        self.report();
    }

    /// Attended transfer (`att-transfer`): `party` has this call and call `id2`; the far end
    /// of that call joins this one and is bridged to `party`'s partner here, and `party`'s two
    /// legs end. Relay media cannot be re-bridged, so relay mode refuses it.
    async fn attended_transfer(&mut self, party: PartyIndex, id2: CallId, to: String) {
        let refused = |call: &Self, why: &str| {
            call.journal(
                "att-transfer-refused",
                party,
                json!({ "id2": id2.as_str(), "to": to, "why": why }),
            );
        };
        if !self.anchored() {
            return refused(self, "relay media cannot be re-bridged");
        }
        let Some(stays) = self.partner(party) else {
            return refused(self, "the call is not connected");
        };
        let (reply, handed) = oneshot::channel();
        let _ = self.switch.send(SwitchInput::Call(CallReport::Join {
            call: self.key,
            socket: self.parties[party].endpoint.socket,
            id2: id2.clone(),
            reply,
        }));
        let joined = match tokio::time::timeout(HAND_OVER_WAIT, handed).await {
            Ok(Ok(Ok(HandOver(joined)))) => joined,
            Ok(Ok(Err(why))) => return refused(self, why),
            Ok(Err(_)) | Err(_) => return refused(self, "the other call did not answer"),
        };
        let index = self.parties.len();
        if let Some(route) = &joined.route {
            route.set(Some((index, self.media_tx.clone())));
        }
        let joined_extension = joined.endpoint.extension.clone();
        self.parties.push(*joined);
        self.journal(
            "att-transfer",
            party,
            json!({ "id2": id2.as_str(), "to": to, "joined": joined_extension }),
        );
        self.bye(party, None, "Transferred");
        self.connect(stays, index);
        self.report();
    }

    /// The other half of an attended transfer: the far end of the party on `socket` known as
    /// `id2` leaves this call for call `to`, and that party is released.
    fn hand_over(&mut self, socket: SocketId, id2: &CallId, to: CallKey, reply: HandOverReply) {
        let Some(transferor) = self.party_of(socket, Some(id2)) else {
            let _ = reply.send(Err("id2 is not the transferor's call"));
            return;
        };
        let Some(far) = self.partner(transferor) else {
            let _ = reply.send(Err("the call of id2 is not connected"));
            return;
        };
        self.bridge = None;
        for index in [transferor, far] {
            if let Some(leg) = &self.parties[index].leg {
                leg.bridge_to(None);
            }
        }
        let p = &mut self.parties[far];
        let leaving = Party {
            role: Role::Joined,
            endpoint: p.endpoint.clone(),
            id: p.id.clone(),
            cseq: p.cseq,
            status: p.status,
            holding: false,
            leg: p.leg.take(),
            route: p.route.take(),
            moved: false,
            sdp: p.sdp.clone(),
            offer_answered: p.offer_answered,
            media_up: p.media_up,
            dtmf: std::mem::take(&mut p.dtmf),
        };
        let ids = vec![leaving.id.clone(), leaving.endpoint.callid.clone()];
        let leaving_socket = leaving.endpoint.socket;
        if let Err(Ok(HandOver(back))) = reply.send(Ok(HandOver(Box::new(leaving)))) {
            // The transferring call gave up waiting: the party stays here, as it was.
            let p = &mut self.parties[far];
            p.leg = back.leg;
            p.route = back.route;
            p.dtmf = back.dtmf;
            self.connect(transferor, far);
            return;
        }
        let p = &mut self.parties[far];
        p.status = Status::Ended;
        p.moved = true;
        let _ = self.switch.send(SwitchInput::Call(CallReport::Moved {
            from: self.key,
            to,
            ids,
            socket: leaving_socket,
        }));
        self.journal("handed-over", far, json!({ "to_call": to }));
        self.bye(transferor, None, "Transferred");
        self.clear(CALLER, "Transferred");
        self.finished = true;
        self.report();
    }

    /// Blind transfer (`blind-transfer2`): the transferor is released; in anchored mode the
    /// transferee hears ringback while the target rings, then talks to the target.
    async fn transfer(&mut self, party: PartyIndex, target: String) {
        // Only a connected call can be transferred: its partner is who stays.
        let Some(transferee) = self.partner(party) else {
            self.journal("transfer-refused", party, json!({ "to": target }));
            return;
        };
        self.journal("transfer", party, json!({ "to": target }));
        self.bye(party, None, "Transferred");
        if !self.anchored() {
            // Relay: media flows peer to peer, so nobody can be re-bridged (docs/protocol.md §9).
            self.report();
            return;
        }
        self.transferee = Some(transferee);
        let (reply, answer) = oneshot::channel();
        let _ = self.switch.send(SwitchInput::Call(CallReport::Transfer {
            call: self.key,
            target: target.clone(),
            reply,
        }));
        match answer.await {
            Ok(Ok(endpoints)) => {
                if let Some(leg) = &self.parties[transferee].leg {
                    leg.play_signal(Signal::Ringback, UNTIL_STOPPED);
                }
                for endpoint in endpoints {
                    self.ring(endpoint, Role::Target, "").await;
                }
                if self.ringing_forks(Role::Target) == 0 {
                    self.transfer_failed(SipCode::SERVER_ERROR);
                } else {
                    self.set_timer(self.ctx.options.ring_timeout, Timer::Ring);
                }
            }
            Ok(Err(code)) => self.transfer_failed(code),
            Err(_) => self.transfer_failed(SipCode::SERVER_ERROR),
        }
        self.report();
    }

    /// The transferee hears the error tone, then is released.
    fn transfer_failed(&mut self, code: SipCode) {
        self.end_code = Some(code);
        let Some(transferee) = self.transferee else {
            return;
        };
        self.journal("transfer-failed", transferee, json!({ "code": code.0 }));
        if let Some(leg) = &self.parties[transferee].leg {
            leg.stop();
            leg.play_signal(Signal::Error, 1);
        }
        self.set_timer(ERROR_TONE, Timer::ErrorTone);
    }

    fn on_socket_closed(&mut self, socket: SocketId) {
        let gone: Vec<PartyIndex> = (0..self.parties.len())
            .filter(|&i| {
                self.parties[i].endpoint.socket == socket && self.parties[i].status != Status::Ended
            })
            .collect();
        for party in gone {
            self.journal("socket-lost", party, json!(null));
            if self.parties[party].status == Status::Ringing && party != CALLER {
                self.fork_failed(party, SipCode::TEMPORARILY_UNAVAILABLE);
            } else {
                self.hang_up(party);
            }
        }
    }

    fn on_media(&mut self, party: PartyIndex, event: LegEvent) {
        if self.parties[party].status == Status::Ended {
            return;
        }
        match event {
            LegEvent::LocalCandidate(candidate) => {
                let id = self.parties[party].id.clone();
                self.send(party, candidate_frame(&id, candidate.candidate));
            }
            LegEvent::State(TransportState::Connected) => {
                self.parties[party].media_up = true;
                if self.awaiting_media == Some(party) {
                    self.answer_caller();
                    self.report();
                }
            }
            LegEvent::State(TransportState::Failed) => {
                self.journal("media-failed", party, json!(null));
                if self.parties[party].holding {
                    // The vendor's sample closes its peer connection while it holds the call,
                    // and resumes with a new offer: not a reason to hang up.
                    return;
                }
                self.hang_up(party);
            }
            LegEvent::Digit {
                digit,
                inband: false,
                ..
            } => {
                let Some(partner) = self.partner(party) else {
                    return;
                };
                if let Some(leg) = &self.parties[partner].leg
                    && leg.send_dtmf(&digit.as_char().to_string()).is_ok()
                {
                    self.parties[party].dtmf.push(digit.as_char());
                    self.journal(
                        "dtmf",
                        party,
                        json!({ "digit": digit.as_char().to_string() }),
                    );
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Ring => {
                if self.transferee.is_some() {
                    self.cancel_forks(None);
                    self.transfer_failed(SipCode::TEMPORARILY_UNAVAILABLE);
                } else if self.parties[CALLER].status == Status::Ringing {
                    self.journal("no-answer", CALLER, json!(null));
                    self.cancel_forks(None);
                    self.fail_caller(SipCode::TEMPORARILY_UNAVAILABLE, "No Answer");
                    self.finished = true;
                }
            }
            Timer::Offer => {
                self.journal("offer-unanswered", CALLER, json!(null));
                self.clear(CALLER + 1, "Media Negotiation Failed");
                self.fail_caller(SipCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
                self.finished = true;
            }
            Timer::MediaWait => self.answer_caller(),
            Timer::ErrorTone => {
                if let Some(transferee) = self.transferee.take() {
                    let code = self.end_code;
                    self.bye(transferee, code, "Transfer Failed");
                }
                self.finished = true;
            }
        }
        self.report();
    }

    /// Who `party` talks to now: its bridge partner, the transfer target ringing for it, or
    /// (before anyone answered) the number the caller dialled / the caller.
    fn far_end(&self, party: PartyIndex) -> (String, String) {
        let ringing_target = (self.transferee == Some(party))
            .then(|| {
                self.parties
                    .iter()
                    .rposition(|p| p.role == Role::Target && p.status != Status::Ended)
            })
            .flatten();
        let other = self.partner(party).or(ringing_target);
        let number = match other {
            Some(other) => self.parties[other].endpoint.extension.clone(),
            None if party == CALLER => self.to.clone(),
            None => self.parties[CALLER].endpoint.extension.clone(),
        };
        let name = if number == self.parties[CALLER].endpoint.extension {
            self.caller_name.clone()
        } else {
            self.ctx
                .accounts
                .extension(&number)
                .map(|e| e.name.clone())
                .unwrap_or_default()
        };
        (number, name)
    }

    /// Each party's entry in `call-state` lists: the caller's `to` and the others' `from`
    /// name the far end as it is now (after a transfer, the new one).
    fn party_states(&self) -> Vec<PartyState> {
        self.parties
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.moved)
            .map(|(index, p)| {
                let held_by_partner = self
                    .partner(index)
                    .is_some_and(|partner| self.parties[partner].holding);
                let state = match p.status {
                    Status::Ended => PartyState::disconnected(),
                    Status::Ringing if index == CALLER => PbxCallState::Ringback,
                    Status::Ringing => PbxCallState::Alerting,
                    Status::Connected if p.holding => PbxCallState::Holding,
                    Status::Connected if held_by_partner => PbxCallState::OnHold,
                    Status::Connected => PbxCallState::Connected,
                };
                let own = (p.endpoint.extension.clone(), self.own_name(index));
                let far = self.far_end(index);
                let ((from_number, from_name), (to_number, to_name)) = if index == CALLER {
                    (own, far)
                } else {
                    (far, own)
                };
                PartyState {
                    socket: p.endpoint.socket,
                    extension: p.endpoint.extension.clone(),
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

    /// A party's own display name.
    fn own_name(&self, party: PartyIndex) -> String {
        if party == CALLER {
            return self.caller_name.clone();
        }
        self.ctx
            .accounts
            .extension(&self.parties[party].endpoint.extension)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    fn view(&self) -> CallView {
        let legs = self
            .parties
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.moved)
            .map(|(index, p)| {
                let stats = p.leg.as_ref().map(|leg| leg.stats()).unwrap_or_default();
                LegView {
                    extension: p.endpoint.extension.clone(),
                    callid: p.id.to_string(),
                    role: match p.role {
                        Role::Caller => "caller",
                        Role::Callee => "callee",
                        Role::Target => "transfer-target",
                        Role::Joined => "joined",
                    },
                    state: match p.status {
                        Status::Ringing => "ringing",
                        Status::Connected if p.holding => "holding",
                        Status::Connected => "connected",
                        Status::Ended => "ended",
                    },
                    codec: p
                        .leg
                        .as_ref()
                        .and_then(|leg| leg.negotiated())
                        .map(|n| n.codec.name().to_owned()),
                    packets_sent: stats.packets_sent,
                    packets_received: stats.packets_received,
                    dtmf_relayed: p.dtmf.clone(),
                    bridged_to: self.partner(index).map(|i| self.parties[i].id.to_string()),
                }
            })
            .collect();
        let state = if self.finished {
            "ended"
        } else if self
            .bridge
            .is_some_and(|(a, b)| self.parties[a].holding || self.parties[b].holding)
        {
            "held"
        } else if self.bridge.is_some() || self.parties[CALLER].status == Status::Connected {
            "connected"
        } else {
            "ringing"
        };
        CallView {
            id: self.key,
            from: self.parties[CALLER].endpoint.extension.clone(),
            to: self.to.clone(),
            state,
            media: self.ctx.options.media.as_str(),
            started_ms: self.started_ms,
            answered_ms: self.answered_ms,
            ended_ms: self.finished.then(|| lock(&self.ctx.journal).now_ms()),
            end_code: self.end_code.map(|c| c.0),
            legs,
        }
    }

    /// Publishes the call's state: `call-state` lists through the switch, the journal view.
    fn report(&self) {
        let _ = self.switch.send(SwitchInput::Call(CallReport::Parties {
            call: self.key,
            parties: self.party_states(),
        }));
        self.publish_view();
    }

    fn publish_view(&self) {
        let view = self.view();
        lock(&self.ctx.journal).call(view);
    }

    fn finish(mut self) {
        self.finished = true;
        for party in 0..self.parties.len() {
            if self.parties[party].status != Status::Ended {
                self.end_party(party);
            }
        }
        self.publish_view();
        let _ = self
            .switch
            .send(SwitchInput::Call(CallReport::Ended { call: self.key }));
    }
}
