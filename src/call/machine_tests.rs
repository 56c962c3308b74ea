//! One test per transition of the call state machine, driven with plain values.

use super::*;
use crate::protocol::{Bye, CallRef, Sdp};

use crate::call::test_fixtures::{RING, id, invite};

fn inbound() -> Call {
    Call::inbound(&invite(), Dialect::Modern, "500", RING).0
}

fn answered_inbound() -> Call {
    let mut call = inbound();
    call.handle(Input::Command(Command::Answer));
    call.handle(Input::Media(MediaResult::Answer("our-answer".into())));
    call
}

fn sdp(callid: CallId, code: u16, sdp: Sdp) -> Input {
    Input::Frame(ServerFrame::Sdp(SdpFrame {
        callid,
        cseq: Some(Cseq::Number(9)),
        code: Some(SipCode(code)),
        reason: None,
        sdp,
    }))
}

fn outbound(dialect: Dialect) -> Call {
    let (mut call, out) = Call::outbound("600", id(2), dialect, "500", RING);
    assert_eq!(out, vec![Output::Media(MediaCommand::CreateOffer)]);
    call.handle(Input::Media(MediaResult::Offer("our-offer".into())));
    call
}

fn bye(code: Option<u16>) -> Input {
    Input::Frame(ServerFrame::Bye(Bye {
        callid: id(1),
        cseq: Some(Cseq::Number(3)),
        code: code.map(SipCode),
        reason: None,
    }))
}

fn ended(out: &[Output]) -> Option<CallEnd> {
    out.iter().find_map(|o| match o {
        Output::Ended(end) => Some(*end),
        _ => None,
    })
}

fn sent(out: &[Output]) -> Vec<ClientFrame> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(frame) => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn inbound_call_rings_at_once() {
    let (call, out) = Call::inbound(&invite(), Dialect::Modern, "500", RING);
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SipRinging {
            callid: id(1),
            cseq: Cseq::Text("7".into())
        }]
    );
    assert!(out.contains(&Output::State(CallState::Ringing)));
    assert!(out.contains(&Output::SetTimer(Timer::Ring, RING)));
    assert_eq!(call.direction(), Direction::Inbound);
}

#[test]
fn answer_accepts_the_offer_then_sends_200_with_the_same_cseq() {
    let mut call = inbound();
    let out = call.handle(Input::Command(Command::Answer));
    assert_eq!(
        out,
        vec![Output::Media(MediaCommand::AcceptOffer(
            "remote-offer".into()
        ))]
    );
    let out = call.handle(Input::Media(MediaResult::Answer("our-answer".into())));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::Sdp200Ok {
            callid: id(1),
            cseq: Cseq::Text("7".into()),
            answer: "our-answer".into()
        }]
    );
    assert!(out.contains(&Output::State(CallState::InCall)));
    assert!(call.is_connected());
}

#[test]
fn early_candidates_go_to_the_leg_and_ours_wait_for_our_sdp() {
    let mut call = inbound();
    let remote = RemoteCandidate {
        callid: Some(id(1)),
        candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
        addresses: vec![],
    };
    let out = call.handle(Input::Frame(ServerFrame::Candidate(remote.clone())));
    assert_eq!(out, vec![Output::Media(MediaCommand::AddCandidate(remote))]);
    let local = IceCandidate {
        candidate: "candidate:2 1 udp 1 127.0.0.1 10 typ host".into(),
        sdp_mid: None,
        sdp_mline_index: Some(0),
        username_fragment: None,
    };
    call.handle(Input::Command(Command::Answer));
    assert!(call.handle(Input::LocalCandidate(local.clone())).is_empty());
    let out = call.handle(Input::Media(MediaResult::Answer("a".into())));
    assert!(sent(&out).contains(&ClientFrame::IceCandidate {
        callid: Some(id(1)),
        candidate: Some(local)
    }));
}

#[test]
fn reject_sends_busy_with_the_code() {
    let mut call = inbound();
    let out = call.handle(Input::Command(Command::Reject(SipCode::DECLINE)));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SipBusy {
            callid: id(1),
            cseq: Cseq::Text("7".into()),
            code: SipCode::DECLINE
        }]
    );
    let end = ended(&out).unwrap();
    assert_eq!(end.reason, EndReason::Rejected);
    assert_eq!(end.reason.state(), CallState::Rejected);
}

#[test]
fn unanswered_inbound_call_times_out_with_480() {
    let mut call = inbound();
    let out = call.handle(Input::Timer(Timer::Ring));
    assert!(matches!(
        sent(&out)[..],
        [ClientFrame::SipBusy {
            code: SipCode::TEMPORARILY_UNAVAILABLE,
            ..
        }]
    ));
    assert_eq!(ended(&out).unwrap().reason, EndReason::NoAnswer);
}

#[test]
fn caller_cancel_is_confirmed() {
    let mut call = inbound();
    let out = call.handle(Input::Frame(ServerFrame::Cancel(CallRef {
        callid: id(1),
        cseq: Some(Cseq::Number(8)),
    })));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::CancelResponse {
            callid: id(1),
            cseq: Cseq::Number(8)
        }]
    );
    let end = ended(&out).unwrap();
    assert_eq!(end.reason, EndReason::Cancelled);
    assert_eq!(end.reason.state(), CallState::Completed);
}

#[test]
fn remote_bye_is_confirmed_and_completes_the_call() {
    let mut call = answered_inbound();
    let out = call.handle(bye(None));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::ByeResponse {
            callid: id(1),
            cseq: Some(Cseq::Number(3))
        }]
    );
    assert_eq!(ended(&out).unwrap().reason, EndReason::RemoteHangup);
    assert!(call.handle(bye(None)).is_empty(), "nothing after the end");
}

#[test]
fn bye_415_means_media_failed() {
    let mut call = answered_inbound();
    let end = ended(&call.handle(bye(Some(415)))).unwrap();
    assert_eq!(end.reason, EndReason::MediaFailed);
    assert_eq!(end.code, Some(SipCode::UNSUPPORTED_MEDIA_TYPE));
}

#[test]
fn local_hangup_sends_bye_as_callee() {
    let mut call = answered_inbound();
    let out = call.handle(Input::Command(Command::Hangup));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SipBye {
            callid: Some(id(1)),
            caller: false
        }]
    );
    assert_eq!(ended(&out).unwrap().reason, EndReason::LocalHangup);
}

#[test]
fn hold_and_resume_mute_the_leg_and_change_state() {
    let mut call = answered_inbound();
    let out = call.handle(Input::Command(Command::Hold));
    assert!(out.contains(&Output::Media(MediaCommand::Mute(true))));
    assert!(out.contains(&Output::State(CallState::Hold)));
    assert!(matches!(
        sent(&out)[..],
        [ClientFrame::WrtcHold {
            command: HoldCommand::Hold,
            ..
        }]
    ));
    assert!(
        call.handle(Input::Command(Command::Hold)).is_empty(),
        "already held"
    );
    let out = call.handle(Input::Command(Command::Resume));
    assert!(out.contains(&Output::Media(MediaCommand::Mute(false))));
    assert!(out.contains(&Output::State(CallState::InCall)));
}

#[test]
fn transfer_then_bye_ends_as_transferred() {
    let mut call = answered_inbound();
    let out = call.handle(Input::Command(Command::Transfer("501".into())));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::BlindTransfer {
            id: id(1),
            from: "500".into(),
            to: "501".into()
        }]
    );
    assert_eq!(
        ended(&call.handle(bye(None))).unwrap().reason,
        EndReason::Transferred
    );
}

#[test]
fn a_held_call_transferred_stays_held_until_the_bye_ends_it_as_transferred() {
    let mut call = answered_inbound();
    call.handle(Input::Command(Command::Hold));
    call.handle(Input::Command(Command::Transfer("501".into())));
    assert!(call.is_held(), "the transfer does not resume the call");
    let out = call.handle(Input::Command(Command::Resume));
    assert!(out.contains(&Output::State(CallState::InCall)));
    assert_eq!(
        ended(&call.handle(bye(None))).unwrap().reason,
        EndReason::Transferred,
        "resuming does not forget the transfer"
    );
}

#[test]
fn reoffer_mid_call_is_answered() {
    let mut call = answered_inbound();
    let out = call.handle(sdp(id(1), 200, Sdp::offer("new-offer")));
    assert_eq!(
        out,
        vec![Output::Media(MediaCommand::AcceptOffer("new-offer".into()))]
    );
    let out = call.handle(Input::Media(MediaResult::Answer("new-answer".into())));
    assert!(matches!(sent(&out)[..], [ClientFrame::Sdp200Ok { .. }]));
}

#[test]
fn outbound_sends_sdp_packet_with_our_offer() {
    let (mut call, _) = Call::outbound("600", id(2), Dialect::Legacy, "500", RING);
    let out = call.handle(Input::Media(MediaResult::Offer("our-offer".into())));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SdpPacket {
            to: "600".into(),
            callid: id(2),
            offer: "our-offer".into()
        }]
    );
    assert!(out.contains(&Output::SetTimer(Timer::Ring, RING)));
}

#[test]
fn legacy_answer_is_applied_once_then_acked() {
    let mut call = outbound(Dialect::Legacy);
    let out = call.handle(sdp(id(2), 183, Sdp::answer("a=setup:actpass")));
    assert!(out.contains(&Output::State(CallState::Ringing)));
    assert!(out.contains(&Output::Media(MediaCommand::ApplyAnswer(
        "a=setup:actpass".into()
    ))));
    let out = call.handle(sdp(id(2), 200, Sdp::answer("a=setup:actpass")));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Media(_))),
        "applied once"
    );
    assert_eq!(sent(&out), vec![ClientFrame::SipAck { callid: id(2) }]);
    assert!(out.contains(&Output::State(CallState::InCall)));
}

#[test]
fn a_repeated_final_answer_is_acked_once() {
    let mut call = outbound(Dialect::Legacy);
    let first = call.handle(sdp(id(2), 200, Sdp::answer("answer")));
    assert_eq!(sent(&first), vec![ClientFrame::SipAck { callid: id(2) }]);
    let again = call.handle(sdp(id(2), 200, Sdp::answer("answer")));
    assert!(sent(&again).is_empty(), "{again:?}");
    assert!(!again.contains(&Output::State(CallState::InCall)));
    assert!(call.is_connected());
}

#[test]
fn modern_offer_under_a_new_id_is_adopted_rolled_back_and_answered() {
    let mut call = outbound(Dialect::Modern);
    let out = call.handle(sdp(id(99), 183, Sdp::offer("pbx-offer")));
    assert_eq!(call.id(), &id(99));
    assert!(out.contains(&Output::Media(MediaCommand::RollbackAndAccept(
        "pbx-offer".into()
    ))));
    let out = call.handle(Input::Media(MediaResult::Answer("our-answer".into())));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::Sdp200Ok {
            callid: id(99),
            cseq: Cseq::Number(9),
            answer: "our-answer".into()
        }]
    );
    assert!(!call.is_connected(), "183 is not an answer");
    let out = call.handle(sdp(id(99), 200, Sdp::offer("pbx-offer")));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Media(_))),
        "same offer: no new media work"
    );
    let frames = sent(&out);
    assert!(matches!(frames[0], ClientFrame::Sdp200Ok { .. }));
    assert_eq!(frames[1], ClientFrame::SipAck { callid: id(99) });
    assert!(call.is_connected());
}

#[test]
fn modern_200_offer_while_still_answering_is_acked_after_the_answer() {
    let mut call = outbound(Dialect::Modern);
    call.handle(sdp(id(99), 183, Sdp::offer("pbx-offer")));
    assert!(sent(&call.handle(sdp(id(99), 200, Sdp::offer("pbx-offer")))).is_empty());
    let out = call.handle(Input::Media(MediaResult::Answer("our-answer".into())));
    let frames = sent(&out);
    assert!(matches!(frames[0], ClientFrame::Sdp200Ok { .. }));
    assert_eq!(frames[1], ClientFrame::SipAck { callid: id(99) });
}

#[test]
fn sdp_without_type_follows_the_dialect() {
    let mut legacy = outbound(Dialect::Legacy);
    let out = legacy.handle(sdp(
        id(2),
        200,
        Sdp {
            kind: None,
            text: "x".into(),
        },
    ));
    assert!(out.contains(&Output::Media(MediaCommand::ApplyAnswer("x".into()))));
    let mut modern = outbound(Dialect::Modern);
    let out = modern.handle(sdp(
        id(2),
        200,
        Sdp {
            kind: None,
            text: "x".into(),
        },
    ));
    assert!(out.contains(&Output::Media(MediaCommand::RollbackAndAccept("x".into()))));
}

#[test]
fn failures_map_to_their_end_states() {
    for (code, state, reason) in [
        (486, CallState::Busy, "busy"),
        (404, CallState::NotFound, "not_found"),
        (603, CallState::Rejected, "rejected"),
        (480, CallState::Rejected, "no_answer"),
    ] {
        let mut call = outbound(Dialect::Legacy);
        let out = call.handle(Input::Frame(ServerFrame::Bye(Bye {
            callid: id(2),
            cseq: None,
            code: Some(SipCode(code)),
            reason: None,
        })));
        let end = ended(&out).unwrap();
        assert_eq!(end.reason.state(), state, "{code}");
        assert_eq!(end.reason.as_str(), reason, "{code}");
        assert_eq!(end.code, Some(SipCode(code)));
    }
    let mut call = outbound(Dialect::Legacy);
    let end = ended(&call.handle(sdp(id(2), 486, Sdp::answer("")))).unwrap();
    assert_eq!(
        end.reason.state(),
        CallState::Busy,
        "failure in an sdp frame"
    );
}

#[test]
fn unanswered_outbound_call_gives_up_with_bye() {
    let mut call = outbound(Dialect::Legacy);
    let out = call.handle(Input::Timer(Timer::Ring));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SipBye {
            callid: Some(id(2)),
            caller: true
        }]
    );
    assert_eq!(ended(&out).unwrap().reason, EndReason::NoAnswer);
}

#[test]
fn hanging_up_our_unanswered_call_cancels_it() {
    let mut call = outbound(Dialect::Legacy);
    let out = call.handle(Input::Command(Command::Hangup));
    assert_eq!(
        sent(&out),
        vec![ClientFrame::SipBye {
            callid: Some(id(2)),
            caller: true
        }]
    );
    assert_eq!(ended(&out).unwrap().reason, EndReason::LocalHangup);
}

#[test]
fn media_failure_while_answering_rejects_with_488() {
    let mut call = inbound();
    call.handle(Input::Command(Command::Answer));
    let out = call.handle(Input::Media(MediaResult::Failed("no codec".into())));
    assert!(matches!(
        sent(&out)[..],
        [ClientFrame::SipBusy {
            code: SipCode::NOT_ACCEPTABLE_HERE,
            ..
        }]
    ));
    assert_eq!(ended(&out).unwrap().reason, EndReason::MediaFailed);
}

#[test]
fn lost_media_or_link_ends_the_call() {
    let mut call = answered_inbound();
    let out = call.handle(Input::MediaLost);
    assert!(matches!(sent(&out)[..], [ClientFrame::SipBye { .. }]));
    assert_eq!(ended(&out).unwrap().reason, EndReason::MediaFailed);
    let mut call = answered_inbound();
    let out = call.handle(Input::LinkLost);
    assert!(sent(&out).is_empty(), "no socket to send on");
    assert_eq!(ended(&out).unwrap().reason, EndReason::LinkLost);
}
