//! One call's signalling as a pure state machine (docs/protocol.md §6): frames, media results,
//! commands and timers go in; frames to send, media work to do, state changes and timers come
//! out. No sockets, no clocks; the call actor runs it.

use std::time::Duration;

use crate::protocol::{
    CallFailure, CallId, CallState, ClientFrame, Cseq, Dialect, HoldCommand, IceCandidate, Invite,
    RemoteCandidate, SdpFrame, SdpKind, ServerFrame, SipCode,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up (or gave up on our unanswered call).
    LocalHangup,
    /// The far end hung up.
    RemoteHangup,
    /// The caller gave up before we answered.
    Cancelled,
    /// We rejected an incoming call.
    Rejected,
    /// Our call failed with a final code (busy, not found, declined …).
    Failed(CallFailure),
    /// Nobody answered in time.
    NoAnswer,
    /// We transferred the call away.
    Transferred,
    /// The media path never came up or broke (`bye` 415, ICE/DTLS failure).
    MediaFailed,
    /// The socket to the PBX died during the call.
    LinkLost,
}

impl EndReason {
    /// The name scripts see as `call.end_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::LocalHangup => "local_hangup",
            EndReason::RemoteHangup => "remote_hangup",
            EndReason::Cancelled => "cancelled",
            EndReason::Rejected => "rejected",
            EndReason::Failed(CallFailure::Busy) => "busy",
            EndReason::Failed(CallFailure::NotFound) => "not_found",
            EndReason::Failed(CallFailure::Cancelled) => "cancelled",
            EndReason::Failed(CallFailure::Rejected(_)) => "rejected",
            EndReason::NoAnswer => "no_answer",
            EndReason::Transferred => "transferred",
            EndReason::MediaFailed => "media_failed",
            EndReason::LinkLost => "link_lost",
        }
    }

    /// The final state scripts see (docs/scripting.md "Events"): failures keep their own state,
    /// every other ending is COMPLETED, and an unanswered call is REJECTED.
    pub fn state(self) -> CallState {
        match self {
            EndReason::Failed(failure) => failure.call_state(),
            EndReason::NoAnswer | EndReason::Rejected => CallState::Rejected,
            _ => CallState::Completed,
        }
    }
}

/// How a call ended: the reason and the SIP code that came with it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallEnd {
    pub reason: EndReason,
    pub code: Option<SipCode>,
}

/// Work for the media leg; its result comes back as a [`MediaResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    CreateOffer,
    /// Answer a remote offer.
    AcceptOffer(String),
    /// Withdraw our offer and answer the PBX's instead (modern outbound, §6).
    RollbackAndAccept(String),
    ApplyAnswer(String),
    AddCandidate(RemoteCandidate),
    /// Local hold: stop sending.
    Mute(bool),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaResult {
    Offer(String),
    Answer(String),
    AnswerApplied,
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// An outbound call rang too long, or an inbound call was never answered.
    Ring,
}

/// What the call wants done and what scripts should hear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send(ClientFrame),
    Media(MediaCommand),
    /// The state scripts see changed (RINGING, IN_CALL, HOLD).
    State(CallState),
    SetTimer(Timer, Duration),
    CancelTimer(Timer),
    /// The call is over; nothing more will come out.
    Ended(CallEnd),
}

/// What a script or the bot asks of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Answer,
    Reject(SipCode),
    Hangup,
    Hold,
    Resume,
    /// Blind transfer to this number.
    Transfer(String),
    /// Attended transfer: connect this call's far end with the far end of our call `id2`
    /// (whose far end is `to`); the PBX then releases both of our legs.
    AttendedTransfer {
        id2: CallId,
        to: String,
    },
    /// Another of our calls is joining this one's far end (attended transfer): the `bye` that
    /// follows ends this call as transferred.
    TransferPending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Frame(ServerFrame),
    Command(Command),
    Media(MediaResult),
    /// The leg gathered a candidate to trickle.
    LocalCandidate(IceCandidate),
    /// ICE/DTLS failed for good.
    MediaLost,
    Timer(Timer),
    /// The socket to the PBX closed.
    LinkLost,
}

/// Where the call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Outbound: our offer is being made.
    Offering,
    /// Outbound: `sdp-packet` sent, waiting for the PBX.
    Calling,
    /// Inbound: ringing here, waiting for the script.
    Ringing,
    /// Inbound: answering (our answer is being made).
    Answering,
    /// Talking (held or not, being transferred or not). An outbound call gets here only by
    /// acknowledging the PBX's final answer (`sip-ack`), so a connected outbound call has
    /// acked, and a repeated answer is not acked again.
    Connected(Talk),
    Ended,
}

/// A connected call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Talk {
    /// We put the call on hold.
    held: bool,
    /// We handed the call on: the PBX's `bye` that follows is the transfer's, not a hang-up.
    transferring: bool,
}

impl Talk {
    fn transferring(self) -> Self {
        Self {
            transferring: true,
            ..self
        }
    }
}

/// The media negotiation in progress, so its result can be put in the right frame.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// Our outbound offer.
    Offer,
    /// An answer to a remote offer; `final_code` is set when the PBX's offer came with 200,
    /// so the answer must be followed by `sip-ack`.
    Answer {
        final_code: bool,
    },
    /// The PBX's answer to our offer (legacy outbound).
    ApplyAnswer,
}

/// Our ICE candidates: they may only follow our SDP.
#[derive(Debug)]
enum LocalCandidates {
    /// Our SDP has not gone out yet: the candidates gathered so far wait.
    Waiting(Vec<IceCandidate>),
    /// It has: each candidate goes out as it is gathered.
    Trickling,
}

/// One call's signalling state.
#[derive(Debug)]
pub struct Call {
    direction: Direction,
    dialect: Dialect,
    own_extension: String,
    /// The call id on the wire now (modern outbound calls adopt the PBX's).
    id: CallId,
    /// The CSeq to echo in our responses.
    cseq: Cseq,
    to: String,
    phase: Phase,
    pending: Pending,
    state: Option<CallState>,
    /// The PBX's SDP for which we have done the media work, and our answer to it (if any).
    remote_sdp: Option<String>,
    our_answer: Option<String>,
    candidates: LocalCandidates,
    ring_timeout: Duration,
    end: Option<CallEnd>,
}

impl Call {
    /// A call that rings here: it answers 180 at once and waits for a command.
    pub fn inbound(
        invite: &Invite,
        dialect: Dialect,
        own_extension: &str,
        ring_timeout: Duration,
    ) -> (Self, Vec<Output>) {
        let mut call = Self::new(
            Direction::Inbound,
            invite.callid.clone(),
            invite.cseq.clone(),
            invite.from.clone(),
            dialect,
            own_extension,
            ring_timeout,
        );
        call.phase = Phase::Ringing;
        call.remote_sdp = Some(invite.sdp.text.clone());
        let outputs = vec![
            Output::Send(ClientFrame::SipRinging {
                callid: call.id.clone(),
                cseq: call.cseq.clone(),
            }),
            Output::SetTimer(Timer::Ring, ring_timeout),
            call.set_state(CallState::Ringing),
        ];
        (call, outputs)
    }

    /// A call we place to `to`: first our offer is made.
    pub fn outbound(
        to: &str,
        id: CallId,
        dialect: Dialect,
        own_extension: &str,
        ring_timeout: Duration,
    ) -> (Self, Vec<Output>) {
        let mut call = Self::new(
            Direction::Outbound,
            id,
            Cseq::Number(1),
            to.to_owned(),
            dialect,
            own_extension,
            ring_timeout,
        );
        call.pending = Pending::Offer;
        (call, vec![Output::Media(MediaCommand::CreateOffer)])
    }

    fn new(
        direction: Direction,
        id: CallId,
        cseq: Cseq,
        to: String,
        dialect: Dialect,
        own_extension: &str,
        ring_timeout: Duration,
    ) -> Self {
        Self {
            direction,
            dialect,
            own_extension: own_extension.to_owned(),
            id,
            cseq,
            to,
            phase: Phase::Offering,
            pending: Pending::None,
            state: None,
            remote_sdp: None,
            our_answer: None,
            candidates: LocalCandidates::Waiting(Vec::new()),
            ring_timeout,
            end: None,
        }
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }

    #[cfg(test)]
    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn end(&self) -> Option<CallEnd> {
        self.end
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected(_))
    }

    /// We put the call on hold.
    pub fn is_held(&self) -> bool {
        matches!(self.phase, Phase::Connected(talk) if talk.held)
    }

    fn set_state(&mut self, state: CallState) -> Output {
        self.state = Some(state);
        Output::State(state)
    }

    fn finish(&mut self, reason: EndReason, code: Option<SipCode>, out: &mut Vec<Output>) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        let end = CallEnd { reason, code };
        self.end = Some(end);
        self.state = Some(reason.state());
        out.push(Output::CancelTimer(Timer::Ring));
        out.push(Output::Ended(end));
    }

    /// Advances the call by one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.phase == Phase::Ended {
            return out;
        }
        match input {
            Input::Frame(frame) => self.on_frame(frame, &mut out),
            Input::Command(command) => self.on_command(command, &mut out),
            Input::Media(result) => self.on_media(result, &mut out),
            Input::LocalCandidate(candidate) => match &mut self.candidates {
                LocalCandidates::Waiting(waiting) => waiting.push(candidate),
                LocalCandidates::Trickling => out.push(self.candidate_frame(candidate)),
            },
            Input::MediaLost => {
                out.push(self.bye_frame());
                self.finish(EndReason::MediaFailed, None, &mut out);
            }
            Input::Timer(Timer::Ring) => match self.phase {
                Phase::Ringing | Phase::Answering => {
                    out.push(self.busy_frame(SipCode::TEMPORARILY_UNAVAILABLE));
                    self.finish(
                        EndReason::NoAnswer,
                        Some(SipCode::TEMPORARILY_UNAVAILABLE),
                        &mut out,
                    );
                }
                Phase::Offering | Phase::Calling => {
                    out.push(self.bye_frame());
                    self.finish(EndReason::NoAnswer, None, &mut out);
                }
                Phase::Connected(_) | Phase::Ended => {}
            },
            Input::LinkLost => self.finish(EndReason::LinkLost, None, &mut out),
        }
        out
    }

    fn candidate_frame(&self, candidate: IceCandidate) -> Output {
        Output::Send(ClientFrame::IceCandidate {
            callid: Some(self.id.clone()),
            candidate: Some(candidate),
        })
    }

    fn bye_frame(&self) -> Output {
        Output::Send(ClientFrame::SipBye {
            callid: Some(self.id.clone()),
            caller: self.direction == Direction::Outbound,
        })
    }

    fn busy_frame(&self, code: SipCode) -> Output {
        Output::Send(ClientFrame::SipBusy {
            callid: self.id.clone(),
            cseq: self.cseq.clone(),
            code,
        })
    }

    /// Our SDP went out: candidates gathered meanwhile follow it.
    fn sdp_sent(&mut self, out: &mut Vec<Output>) {
        let candidates = std::mem::replace(&mut self.candidates, LocalCandidates::Trickling);
        let LocalCandidates::Waiting(waiting) = candidates else {
            return;
        };
        for candidate in waiting {
            out.push(self.candidate_frame(candidate));
        }
    }

    fn on_command(&mut self, command: Command, out: &mut Vec<Output>) {
        match (command, self.phase) {
            (Command::Answer, Phase::Ringing) => {
                self.phase = Phase::Answering;
                self.pending = Pending::Answer { final_code: false };
                let offer = self.remote_sdp.clone().unwrap_or_default();
                out.push(Output::Media(MediaCommand::AcceptOffer(offer)));
            }
            (Command::Reject(code), Phase::Ringing | Phase::Answering) => {
                out.push(self.busy_frame(code));
                self.finish(EndReason::Rejected, Some(code), out);
            }
            (Command::Hangup, Phase::Ringing | Phase::Answering) => {
                out.push(self.busy_frame(SipCode::DECLINE));
                self.finish(EndReason::Rejected, Some(SipCode::DECLINE), out);
            }
            (Command::Hangup, Phase::Offering) => {
                self.finish(EndReason::LocalHangup, None, out);
            }
            (Command::Hangup, Phase::Calling | Phase::Connected(_)) => {
                out.push(self.bye_frame());
                self.finish(EndReason::LocalHangup, None, out);
            }
            (Command::Hold, Phase::Connected(talk)) if !talk.held => {
                self.phase = Phase::Connected(Talk { held: true, ..talk });
                out.push(Output::Send(ClientFrame::WrtcHold {
                    callid: Some(self.id.clone()),
                    command: HoldCommand::Hold,
                    offer: None,
                    calldir: None,
                }));
                out.push(Output::Media(MediaCommand::Mute(true)));
                out.push(self.set_state(CallState::Hold));
            }
            (Command::Resume, Phase::Connected(talk)) if talk.held => {
                self.phase = Phase::Connected(Talk {
                    held: false,
                    ..talk
                });
                out.push(Output::Send(ClientFrame::WrtcHold {
                    callid: Some(self.id.clone()),
                    command: HoldCommand::Resume,
                    offer: None,
                    calldir: None,
                }));
                out.push(Output::Media(MediaCommand::Mute(false)));
                out.push(self.set_state(CallState::InCall));
            }
            (Command::AttendedTransfer { id2, to }, Phase::Connected(talk)) => {
                self.phase = Phase::Connected(talk.transferring());
                out.push(Output::Send(ClientFrame::AttendedTransfer {
                    id: self.id.clone(),
                    from: self.own_extension.clone(),
                    id2,
                    to,
                }));
            }
            (Command::TransferPending, Phase::Connected(talk)) => {
                self.phase = Phase::Connected(talk.transferring());
            }
            (Command::Transfer(to), Phase::Connected(talk)) => {
                self.phase = Phase::Connected(talk.transferring());
                out.push(Output::Send(ClientFrame::BlindTransfer {
                    id: self.id.clone(),
                    from: self.own_extension.clone(),
                    to,
                }));
            }
            (command, phase) => {
                tracing::debug!(call = %crate::untrusted::escaped(self.id.as_str()), "{command:?} ignored in {phase:?}");
            }
        }
    }

    fn on_media(&mut self, result: MediaResult, out: &mut Vec<Output>) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        match (result, pending) {
            (MediaResult::Offer(offer), Pending::Offer) => {
                if self.phase != Phase::Offering {
                    return;
                }
                self.phase = Phase::Calling;
                out.push(Output::Send(ClientFrame::SdpPacket {
                    to: self.to.clone(),
                    callid: self.id.clone(),
                    offer,
                }));
                out.push(Output::SetTimer(Timer::Ring, self.ring_timeout));
                self.sdp_sent(out);
            }
            (MediaResult::Answer(answer), Pending::Answer { final_code }) => {
                self.our_answer = Some(answer.clone());
                out.push(Output::Send(ClientFrame::Sdp200Ok {
                    callid: self.id.clone(),
                    cseq: self.cseq.clone(),
                    answer,
                }));
                self.sdp_sent(out);
                match self.direction {
                    Direction::Inbound if self.phase == Phase::Answering => self.connected(out),
                    Direction::Outbound if final_code => self.ack_and_connect(out),
                    _ => {}
                }
            }
            (MediaResult::AnswerApplied, Pending::ApplyAnswer) => {}
            (MediaResult::Failed(why), _) => {
                tracing::info!(call = %crate::untrusted::escaped(self.id.as_str()), "media negotiation failed: {why}");
                match self.phase {
                    Phase::Answering | Phase::Ringing => {
                        out.push(self.busy_frame(SipCode::NOT_ACCEPTABLE_HERE));
                        self.finish(
                            EndReason::MediaFailed,
                            Some(SipCode::NOT_ACCEPTABLE_HERE),
                            out,
                        );
                    }
                    Phase::Offering => self.finish(EndReason::MediaFailed, None, out),
                    _ => {
                        out.push(self.bye_frame());
                        self.finish(EndReason::MediaFailed, None, out);
                    }
                }
            }
            (result, pending) => {
                tracing::debug!(call = %crate::untrusted::escaped(self.id.as_str()), "media result {result:?} while {pending:?}");
            }
        }
    }

    fn connected(&mut self, out: &mut Vec<Output>) {
        self.phase = Phase::Connected(Talk::default());
        out.push(Output::CancelTimer(Timer::Ring));
        out.push(self.set_state(CallState::InCall));
    }

    /// The PBX's final answer to our call: acked once, which connects the call.
    fn ack_and_connect(&mut self, out: &mut Vec<Output>) {
        if self.is_connected() {
            return;
        }
        out.push(Output::Send(ClientFrame::SipAck {
            callid: self.id.clone(),
        }));
        self.connected(out);
    }

    fn on_frame(&mut self, frame: ServerFrame, out: &mut Vec<Output>) {
        match frame {
            ServerFrame::Sdp(sdp) => self.on_sdp(sdp, out),
            ServerFrame::InviteSdp(invite) if self.is_connected() => {
                // A re-offer of the call in progress.
                self.cseq = invite.cseq.clone();
                self.on_offer(invite.sdp.text, false, out);
            }
            ServerFrame::Candidate(candidate) => {
                out.push(Output::Media(MediaCommand::AddCandidate(candidate)));
            }
            ServerFrame::Bye(bye) => {
                if let Some(cseq) = bye.cseq.clone() {
                    out.push(Output::Send(ClientFrame::ByeResponse {
                        callid: self.id.clone(),
                        cseq: Some(cseq),
                    }));
                }
                let failure = bye.code.and_then(CallFailure::from_code);
                let reason = match (bye.code, failure) {
                    _ if matches!(self.phase, Phase::Connected(talk) if talk.transferring) => {
                        EndReason::Transferred
                    }
                    (Some(SipCode::UNSUPPORTED_MEDIA_TYPE), _) => EndReason::MediaFailed,
                    (Some(SipCode::TEMPORARILY_UNAVAILABLE), _) if !self.is_connected() => {
                        EndReason::NoAnswer
                    }
                    (_, Some(failure)) if !self.is_connected() => EndReason::Failed(failure),
                    _ => EndReason::RemoteHangup,
                };
                self.finish(reason, bye.code, out);
            }
            ServerFrame::Cancel(cancel) => {
                out.push(Output::Send(ClientFrame::CancelResponse {
                    callid: self.id.clone(),
                    cseq: cancel.cseq.unwrap_or_else(|| self.cseq.clone()),
                }));
                self.finish(EndReason::Cancelled, Some(SipCode::REQUEST_TERMINATED), out);
            }
            ServerFrame::CancelResponse(_) => {}
            other => {
                tracing::debug!(call = %crate::untrusted::escaped(self.id.as_str()), "frame ignored: {}", other.encode())
            }
        }
    }

    /// An `sdp` frame for our call: progress, the answer (legacy), the PBX's own offer
    /// (modern), a failure, or a re-offer mid-call.
    fn on_sdp(&mut self, sdp: SdpFrame, out: &mut Vec<Output>) {
        let code = sdp.code.unwrap_or(SipCode::OK);
        if let Some(failure) = CallFailure::from_code(code) {
            self.finish(EndReason::Failed(failure), Some(code), out);
            return;
        }
        if sdp.callid != self.id {
            // Modern PBXs answer under a call id of their own: adopt it (§6).
            self.id = sdp.callid.clone();
        }
        if let Some(cseq) = sdp.cseq.clone() {
            self.cseq = cseq;
        }
        let is_offer = match sdp.sdp.kind {
            Some(kind) => kind == SdpKind::Offer,
            None => self.dialect == Dialect::Modern,
        };
        let final_code = code.is_success();
        if self.direction == Direction::Outbound && self.phase == Phase::Calling {
            if self.state.is_none() {
                out.push(self.set_state(CallState::Ringing));
            }
            if is_offer {
                self.on_offer(sdp.sdp.text, final_code, out);
            } else {
                if self.remote_sdp.is_none() && !sdp.sdp.text.is_empty() {
                    self.remote_sdp = Some(sdp.sdp.text.clone());
                    self.pending = Pending::ApplyAnswer;
                    out.push(Output::Media(MediaCommand::ApplyAnswer(sdp.sdp.text)));
                }
                if final_code {
                    self.ack_and_connect(out);
                }
            }
        } else if is_offer {
            self.on_offer(sdp.sdp.text, final_code, out);
        } else if final_code && self.direction == Direction::Outbound {
            self.ack_and_connect(out);
        }
    }

    /// A remote offer: answered once; the same offer again (a 200 after a 183) gets the same
    /// answer again without new media work.
    fn on_offer(&mut self, offer: String, final_code: bool, out: &mut Vec<Output>) {
        if self.remote_sdp.as_deref() == Some(offer.as_str()) {
            if let Some(answer) = self.our_answer.clone() {
                out.push(Output::Send(ClientFrame::Sdp200Ok {
                    callid: self.id.clone(),
                    cseq: self.cseq.clone(),
                    answer,
                }));
                if final_code && self.direction == Direction::Outbound {
                    self.ack_and_connect(out);
                }
            } else if final_code {
                // Still answering the earlier copy: ack once that answer is out.
                self.pending = Pending::Answer { final_code: true };
            }
            return;
        }
        let first = self.remote_sdp.is_none() && self.direction == Direction::Outbound;
        self.remote_sdp = Some(offer.clone());
        self.pending = Pending::Answer { final_code };
        out.push(Output::Media(if first {
            MediaCommand::RollbackAndAccept(offer)
        } else {
            MediaCommand::AcceptOffer(offer)
        }));
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
