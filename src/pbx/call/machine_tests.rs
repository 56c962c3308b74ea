//! One test per transition of the emulator's call machine, driven with plain values: frames
//! from the parties, the results of media work, media events, the switch's answers and the
//! time.

use super::*;
use crate::pbx::call::PartyState;
use crate::protocol::{HoldCommand, IceCandidate, PbxCallState};

const RING: Duration = Duration::from_secs(60);
const OFFER_WAIT: Duration = Duration::from_secs(10);
const CALLER_SOCKET: SocketId = 1;

fn id(n: u128) -> CallId {
    CallId::from_bits(n)
}

/// Socket `n` of extension `50n` (named `Ext 50n`), rung with call id `n`.
fn peer(n: u64) -> Peer {
    Peer {
        socket: n,
        extension: format!("50{n}"),
        name: format!("Ext 50{n}"),
        callid: id(u128::from(n)),
    }
}

fn settings(media: MediaMode, modern: bool, epoch: Instant) -> Settings {
    Settings {
        media,
        modern,
        ring_timeout: RING,
        offer_timeout: OFFER_WAIT,
        epoch,
    }
}

/// A call from socket 1 (extension 501) to extension 600, ringing on sockets 2, 3 ….
fn start(media: MediaMode, modern: bool, callees: u64) -> (Call, Vec<Output>, Instant) {
    let now = Instant::now();
    let start = Start {
        key: 7,
        caller: Peer {
            name: "Alice".into(),
            ..peer(CALLER_SOCKET)
        },
        caller_alias: id(99),
        to: "600".into(),
        to_name: "Sales".into(),
        offer: "caller-offer".into(),
        callees: (2..2 + callees).map(peer).collect(),
    };
    let (call, out) = Call::start(settings(media, modern, now), start, now);
    (call, out, now)
}

fn sent(out: &[Output]) -> Vec<(PartyIndex, ServerFrame)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, frame } => Some((*to, frame.clone())),
            _ => None,
        })
        .collect()
}

fn legs(out: &[Output]) -> Vec<(PartyIndex, LegCommand)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Leg { party, command } => Some((*party, command.clone())),
            _ => None,
        })
        .collect()
}

fn journaled(out: &[Output]) -> Vec<&'static str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Journal(entry) => Some(entry.kind),
            _ => None,
        })
        .collect()
}

fn reported(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Report))
}

fn frame(socket: SocketId, frame: ClientFrame) -> Input {
    Input::Frame { socket, frame }
}

fn answer(socket: SocketId, callid: CallId) -> Input {
    frame(
        socket,
        ClientFrame::Sdp200Ok {
            callid,
            cseq: Cseq::Number(1),
            answer: format!("answer-{socket}"),
        },
    )
}

fn bye(socket: SocketId, callid: CallId) -> Input {
    frame(
        socket,
        ClientFrame::SipBye {
            callid: Some(callid),
            caller: false,
        },
    )
}

fn busy(socket: SocketId, callid: CallId, code: SipCode) -> Input {
    frame(
        socket,
        ClientFrame::SipBusy {
            callid,
            cseq: Cseq::Number(1),
            code,
        },
    )
}

fn hold(socket: SocketId, command: HoldCommand, offer: Option<&str>) -> Input {
    frame(
        socket,
        ClientFrame::WrtcHold {
            callid: None,
            command,
            offer: offer.map(str::to_owned),
            calldir: None,
        },
    )
}

fn negotiated(party: PartyIndex, purpose: Purpose, result: Result<&str, LegFailure>) -> Input {
    Input::Negotiated {
        party,
        purpose,
        result: result.map(str::to_owned),
    }
}

fn bye_code(frame: &ServerFrame) -> Option<Option<SipCode>> {
    match frame {
        ServerFrame::Bye(bye) => Some(bye.code),
        _ => None,
    }
}

fn states(call: &Call) -> Vec<PbxCallState> {
    call.party_states().into_iter().map(|p| p.state).collect()
}

/// Whom each listed party talks to, as `call-state` names it: the caller's `to`, the others'
/// `from`.
fn far_ends(call: &Call) -> Vec<(String, Option<String>)> {
    call.party_states()
        .into_iter()
        .map(|p| {
            let info = p.info();
            if p.socket == CALLER_SOCKET {
                (p.to_number, info.to_name)
            } else {
                (p.from_number, info.from_name)
            }
        })
        .collect()
}

fn named(number: &str, name: &str) -> (String, Option<String>) {
    (number.into(), Some(name.into()))
}

/// A relay call whose first callee (socket 2) answered.
fn relay_connected() -> (Call, Instant) {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    call.handle(answer(2, id(2)), now);
    (call, now)
}

/// An anchored legacy call: the caller's leg answered its offer and every callee rang.
fn anchored_ringing(callees: u64) -> (Call, Instant) {
    let (mut call, _, now) = start(MediaMode::Anchored, false, callees);
    call.handle(negotiated(CALLER, Purpose::Start, Ok("our-answer")), now);
    for party in 1..=callees as usize {
        call.handle(negotiated(party, Purpose::Ring, Ok("our-offer")), now);
    }
    (call, now)
}

/// An anchored legacy call whose callee (socket 2) answered with its media up.
fn anchored_connected() -> (Call, Instant) {
    let (mut call, now) = anchored_ringing(1);
    call.handle(
        Input::Media {
            party: 1,
            event: MediaEvent::Up,
        },
        now,
    );
    call.handle(answer(2, id(2)), now);
    call.handle(Input::AnswerApplied { party: 1, ok: true }, now);
    (call, now)
}

#[test]
fn relay_dial_rings_every_callee_with_the_callers_offer() {
    let (call, out, now) = start(MediaMode::Relay, false, 2);
    let invites: Vec<_> = sent(&out)
        .into_iter()
        .map(|(to, frame)| match frame {
            ServerFrame::InviteSdp(invite) => (to, invite.from, invite.sdp.text),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        invites,
        vec![
            (1, "501".into(), "caller-offer".into()),
            (2, "501".into(), "caller-offer".into())
        ]
    );
    assert_eq!(journaled(&out), vec!["invite", "invite"]);
    assert!(reported(&out));
    assert_eq!(call.next_deadline(), Some(now + RING));
    assert_eq!(
        states(&call),
        vec![
            PbxCallState::Ringback,
            PbxCallState::Alerting,
            PbxCallState::Alerting
        ]
    );
}

#[test]
fn call_state_names_the_dialled_number_until_someone_answers_then_the_callee() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    assert_eq!(
        far_ends(&call),
        vec![
            named("600", "Sales"),
            named("501", "Alice"),
            named("501", "Alice")
        ]
    );
    call.handle(answer(3, id(3)), now);
    assert_eq!(far_ends(&call)[0], named("503", "Ext 503"));
}

#[test]
fn a_dial_to_nobody_ends_with_404() {
    let (call, out, _) = start(MediaMode::Relay, false, 0);
    assert_eq!(journaled(&out), vec!["not-found"]);
    let frames = sent(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(bye_code(&frames[0].1), Some(Some(SipCode::NOT_FOUND)));
    assert!(call.is_over());
}

#[test]
fn relay_answer_goes_to_the_caller_and_cancels_the_other_forks() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    let out = call.handle(answer(2, id(2)), now);
    let frames = sent(&out);
    assert!(matches!(&frames[0], (2, ServerFrame::Cancel(c)) if c.callid == id(3)));
    match &frames[1] {
        (CALLER, ServerFrame::Sdp(sdp)) => {
            assert_eq!(sdp.code, Some(SipCode::OK));
            assert_eq!(sdp.sdp, Sdp::answer("answer-2"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(journaled(&out), vec!["answer", "cancel"]);
    assert_eq!(call.next_deadline(), None, "no ring timer");
    assert_eq!(
        states(&call),
        vec![
            PbxCallState::Connected,
            PbxCallState::Connected,
            PartyState::disconnected()
        ]
    );
}

#[test]
fn ringing_reply_is_journaled_and_reported() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 1);
    let out = call.handle(
        frame(
            2,
            ClientFrame::SipRinging {
                callid: id(2),
                cseq: Cseq::Number(1),
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["ringing"]);
    assert!(reported(&out));
}

#[test]
fn a_busy_fork_fails_the_call_only_when_it_was_the_last() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    let out = call.handle(busy(2, id(2), SipCode::BUSY_HERE), now);
    assert!(sent(&out).is_empty(), "another fork still rings");
    assert!(!call.is_over());
    let out = call.handle(busy(3, id(3), SipCode::BUSY_HERE), now);
    let frames = sent(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, CALLER);
    assert_eq!(bye_code(&frames[0].1), Some(Some(SipCode::BUSY_HERE)));
    assert!(call.is_over());
    assert_eq!(call.view(now, |_| LegMedia::default()).end_code, Some(486));
}

#[test]
fn a_ringing_callee_that_hangs_up_declines() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 1);
    let out = call.handle(bye(2, id(2)), now);
    assert_eq!(journaled(&out), vec!["bye"]);
    assert_eq!(bye_code(&sent(&out)[0].1), Some(Some(SipCode::DECLINE)));
    assert!(call.is_over());
}

#[test]
fn the_caller_giving_up_cancels_the_forks_and_is_confirmed() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    let out = call.handle(bye(CALLER_SOCKET, id(1)), now);
    let frames = sent(&out);
    assert!(matches!(frames[0], (1, ServerFrame::Cancel(_))));
    assert!(matches!(frames[1], (2, ServerFrame::Cancel(_))));
    assert!(matches!(
        frames[2],
        (CALLER, ServerFrame::CancelResponse(_))
    ));
    assert!(call.is_over());
    assert_eq!(call.view(now, |_| LegMedia::default()).end_code, Some(487));
}

#[test]
fn a_hang_up_in_a_connected_call_clears_it() {
    let (mut call, now) = relay_connected();
    let out = call.handle(bye(2, id(2)), now);
    let frames = sent(&out);
    assert_eq!(frames.len(), 1);
    match &frames[0] {
        (CALLER, ServerFrame::Bye(bye)) => {
            assert_eq!(bye.code, None);
            assert_eq!(bye.reason.as_deref(), Some("Normal Call Clearing"));
        }
        other => panic!("{other:?}"),
    }
    assert!(call.is_over());
}

#[test]
fn a_confirmation_from_a_party_that_left_is_journaled() {
    let (mut call, now) = relay_connected();
    let out = call.handle(
        frame(
            3,
            ClientFrame::CancelResponse {
                callid: id(3),
                cseq: Cseq::Number(1),
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["cancel-response"]);
}

#[test]
fn a_frame_from_a_socket_not_in_the_call_is_ignored() {
    let (mut call, now) = relay_connected();
    assert!(call.handle(bye(42, id(2)), now).is_empty());
    assert!(!call.is_over());
}

#[test]
fn relay_candidates_cross_to_the_other_side() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    let candidate = |socket, callid| {
        frame(
            socket,
            ClientFrame::IceCandidate {
                callid: Some(callid),
                candidate: Some(IceCandidate {
                    candidate: format!("candidate:{socket}"),
                    sdp_mid: None,
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                }),
            },
        )
    };
    let to: Vec<PartyIndex> = sent(&call.handle(candidate(1, id(1)), now))
        .into_iter()
        .map(|(to, _)| to)
        .collect();
    assert_eq!(to, vec![1, 2], "every live fork");
    let out = call.handle(candidate(2, id(2)), now);
    assert!(
        matches!(&sent(&out)[..], [(CALLER, ServerFrame::Candidate(c))] if c.callid == Some(id(1)))
    );
}

#[test]
fn nobody_answering_ends_with_480() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 1);
    assert!(call.on_timeout(now + RING / 2).is_empty(), "not yet");
    let out = call.on_timeout(now + RING);
    assert_eq!(journaled(&out), vec!["no-answer", "cancel"]);
    let frames = sent(&out);
    assert!(matches!(frames[0], (1, ServerFrame::Cancel(_))));
    assert_eq!(
        bye_code(&frames[1].1),
        Some(Some(SipCode::TEMPORARILY_UNAVAILABLE))
    );
    assert!(call.is_over());
}

#[test]
fn a_lost_socket_fails_a_ringing_fork_and_hangs_up_a_connected_party() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 2);
    let out = call.handle(Input::SocketClosed(2), now);
    assert_eq!(journaled(&out), vec!["socket-lost"]);
    assert!(!call.is_over(), "the other fork rings");
    call.handle(answer(3, id(3)), now);
    let out = call.handle(Input::SocketClosed(CALLER_SOCKET), now);
    assert!(matches!(&sent(&out)[..], [(2, ServerFrame::Bye(_))]));
    assert!(call.is_over());
}

#[test]
fn rec_call_is_confirmed() {
    let (mut call, now) = relay_connected();
    let out = call.handle(
        frame(
            2,
            ClientFrame::RecCall {
                id: id(2),
                on: true,
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["rec-call"]);
    assert!(matches!(
        &sent(&out)[..],
        [(1, ServerFrame::RecStart { .. })]
    ));
}

#[test]
fn relay_refuses_reoffers_and_attended_transfers() {
    let (mut call, now) = relay_connected();
    let out = call.handle(hold(2, HoldCommand::Resume, Some("new-offer")), now);
    assert_eq!(journaled(&out), vec!["resume", "reoffer-refused"]);
    let out = call.handle(
        frame(
            2,
            ClientFrame::AttendedTransfer {
                id: id(2),
                from: "502".into(),
                id2: id(50),
                to: "509".into(),
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["att-transfer-refused"]);
    assert!(!out.iter().any(|o| matches!(o, Output::Join { .. })));
}

#[test]
fn relay_blind_transfer_releases_the_transferor_only() {
    let (mut call, now) = relay_connected();
    let out = call.handle(
        frame(
            2,
            ClientFrame::BlindTransfer {
                id: id(2),
                from: "502".into(),
                to: "509".into(),
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["transfer"]);
    assert!(matches!(&sent(&out)[..], [(1, ServerFrame::Bye(_))]));
    assert!(!out.iter().any(|o| matches!(o, Output::FindTarget(_))));
    assert!(!call.is_over());
}

#[test]
fn an_unconnected_party_cannot_transfer() {
    let (mut call, _, now) = start(MediaMode::Relay, false, 1);
    let out = call.handle(
        frame(
            2,
            ClientFrame::BlindTransfer {
                id: id(2),
                from: "502".into(),
                to: "509".into(),
            },
        ),
        now,
    );
    assert_eq!(journaled(&out), vec!["transfer-refused"]);
    assert!(sent(&out).is_empty());
}

#[test]
fn anchored_legacy_start_answers_the_caller_with_183_then_rings() {
    let (mut call, out, now) = start(MediaMode::Anchored, false, 1);
    assert_eq!(
        legs(&out),
        vec![(
            CALLER,
            LegCommand::Negotiate {
                purpose: Purpose::Start,
                negotiation: Negotiation::Answer("caller-offer".into())
            }
        )]
    );
    assert!(sent(&out).is_empty(), "nothing before the caller's leg");
    let out = call.handle(negotiated(CALLER, Purpose::Start, Ok("our-answer")), now);
    match &sent(&out)[..] {
        [(CALLER, ServerFrame::Sdp(sdp))] => {
            assert_eq!(sdp.code, Some(SipCode::SESSION_PROGRESS));
            assert_eq!(sdp.callid, id(1));
            assert_eq!(sdp.sdp, Sdp::answer("our-answer"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Play(Signal::Ringback, UNTIL_STOPPED)),
            (
                1,
                LegCommand::Negotiate {
                    purpose: Purpose::Ring,
                    negotiation: Negotiation::Offer
                }
            )
        ]
    );
    assert!(!reported(&out), "ringing is not complete");
    let out = call.handle(negotiated(1, Purpose::Ring, Ok("our-offer")), now);
    assert!(
        matches!(&sent(&out)[..], [(1, ServerFrame::InviteSdp(invite))] if invite.sdp == Sdp::offer("our-offer"))
    );
    assert!(reported(&out));
    assert_eq!(call.next_deadline(), Some(now + RING));
}

#[test]
fn anchored_modern_start_offers_to_the_caller_under_our_own_id() {
    let (mut call, out, now) = start(MediaMode::Anchored, true, 1);
    assert!(matches!(
        &legs(&out)[..],
        [(
            CALLER,
            LegCommand::Negotiate {
                negotiation: Negotiation::Offer,
                ..
            }
        )]
    ));
    let out = call.handle(negotiated(CALLER, Purpose::Start, Ok("our-offer")), now);
    match &sent(&out)[0] {
        (CALLER, ServerFrame::Sdp(sdp)) => {
            assert_eq!(sdp.callid, id(99), "the alias");
            assert_eq!(sdp.sdp, Sdp::offer("our-offer"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call.next_deadline(), Some(now + OFFER_WAIT));
}

#[test]
fn no_leg_for_the_caller_ends_with_500_and_a_refused_offer_with_488() {
    for (failure, code) in [
        (LegFailure::NoLeg, SipCode::SERVER_ERROR),
        (
            LegFailure::Refused("no codec".into()),
            SipCode::NOT_ACCEPTABLE_HERE,
        ),
    ] {
        let (mut call, _, now) = start(MediaMode::Anchored, false, 1);
        let out = call.handle(negotiated(CALLER, Purpose::Start, Err(failure)), now);
        assert_eq!(bye_code(&sent(&out)[0].1), Some(Some(code)));
        assert!(legs(&out).is_empty(), "nothing rings");
        assert!(call.is_over());
    }
}

#[test]
fn a_callee_whose_leg_fails_is_not_rung() {
    let (mut call, _, now) = start(MediaMode::Anchored, false, 2);
    call.handle(negotiated(CALLER, Purpose::Start, Ok("a")), now);
    let out = call.handle(negotiated(1, Purpose::Ring, Err(LegFailure::NoLeg)), now);
    assert!(sent(&out).is_empty());
    let out = call.handle(negotiated(2, Purpose::Ring, Ok("offer")), now);
    assert!(matches!(&sent(&out)[..], [(2, ServerFrame::InviteSdp(_))]));
    assert!(reported(&out), "ringing complete");
    assert_eq!(
        states(&call),
        vec![
            PbxCallState::Ringback,
            PartyState::disconnected(),
            PbxCallState::Alerting
        ]
    );
}

#[test]
fn the_modern_callers_answer_is_applied_once_and_a_refused_one_ends_the_call() {
    let (mut call, _, now) = start(MediaMode::Anchored, true, 1);
    call.handle(negotiated(CALLER, Purpose::Start, Ok("our-offer")), now);
    call.handle(negotiated(1, Purpose::Ring, Ok("our-offer")), now);
    let out = call.handle(answer(CALLER_SOCKET, id(99)), now);
    assert_eq!(
        legs(&out),
        vec![(CALLER, LegCommand::ApplyAnswer("answer-1".into()))]
    );
    assert_eq!(call.next_deadline(), Some(now + RING), "offer timer gone");
    assert!(call.handle(answer(CALLER_SOCKET, id(99)), now).is_empty());
    let out = call.handle(
        Input::AnswerApplied {
            party: CALLER,
            ok: false,
        },
        now,
    );
    let frames = sent(&out);
    assert_eq!(
        bye_code(&frames[0].1),
        Some(Some(SipCode::NOT_ACCEPTABLE_HERE))
    );
    assert!(matches!(frames[1], (1, ServerFrame::Cancel(_))));
    assert!(call.is_over());
}

#[test]
fn a_modern_caller_that_never_answers_our_offer_gets_415() {
    let (mut call, _, now) = start(MediaMode::Anchored, true, 1);
    call.handle(negotiated(CALLER, Purpose::Start, Ok("our-offer")), now);
    call.handle(negotiated(1, Purpose::Ring, Ok("our-offer")), now);
    let out = call.on_timeout(now + OFFER_WAIT);
    assert_eq!(journaled(&out), vec!["offer-unanswered", "cancel"]);
    let bye = sent(&out)
        .into_iter()
        .find(|(to, _)| *to == CALLER)
        .unwrap();
    assert_eq!(
        bye_code(&bye.1),
        Some(Some(SipCode::UNSUPPORTED_MEDIA_TYPE))
    );
    assert!(call.is_over());
}

#[test]
fn an_anchored_answer_bridges_then_waits_for_the_callees_media() {
    let (mut call, now) = anchored_ringing(1);
    let out = call.handle(answer(2, id(2)), now);
    assert_eq!(
        legs(&out),
        vec![(1, LegCommand::ApplyAnswer("answer-2".into()))]
    );
    let out = call.handle(Input::AnswerApplied { party: 1, ok: true }, now);
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Stop),
            (1, LegCommand::Stop),
            (CALLER, LegCommand::Bridge(Some(1))),
            (1, LegCommand::Bridge(Some(CALLER))),
        ]
    );
    assert!(sent(&out).is_empty(), "the caller's 200 waits");
    assert_eq!(call.next_deadline(), Some(now + MEDIA_WAIT));
    let out = call.handle(
        Input::Media {
            party: 1,
            event: MediaEvent::Up,
        },
        now,
    );
    match &sent(&out)[..] {
        [(CALLER, ServerFrame::Sdp(sdp))] => {
            assert_eq!(sdp.code, Some(SipCode::OK));
            assert_eq!(sdp.sdp, Sdp::answer("our-answer"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call.next_deadline(), None);
    let view = call.view(now + Duration::from_millis(5), |_| LegMedia::default());
    assert_eq!(view.state, "connected");
    assert_eq!(view.answered_ms, Some(0));
}

#[test]
fn the_callers_200_goes_out_anyway_when_the_media_is_slow() {
    let (mut call, now) = anchored_ringing(1);
    call.handle(answer(2, id(2)), now);
    call.handle(Input::AnswerApplied { party: 1, ok: true }, now);
    let out = call.on_timeout(now + MEDIA_WAIT);
    assert!(
        matches!(&sent(&out)[..], [(CALLER, ServerFrame::Sdp(sdp))] if sdp.code == Some(SipCode::OK))
    );
    assert_eq!(
        call.view(now, |_| LegMedia::default()).answered_ms,
        Some(2000)
    );
}

#[test]
fn media_already_up_answers_the_caller_at_once() {
    let (call, _) = anchored_connected();
    assert_eq!(
        states(&call),
        vec![PbxCallState::Connected, PbxCallState::Connected]
    );
    assert_eq!(call.next_deadline(), None);
}

#[test]
fn an_answer_the_callees_leg_refuses_fails_that_fork() {
    let (mut call, now) = anchored_ringing(1);
    call.handle(answer(2, id(2)), now);
    let out = call.handle(
        Input::AnswerApplied {
            party: 1,
            ok: false,
        },
        now,
    );
    let frames = sent(&out);
    assert_eq!(
        bye_code(&frames[0].1),
        Some(Some(SipCode::NOT_ACCEPTABLE_HERE))
    );
    assert!(call.is_over());
}

#[test]
fn hold_plays_music_to_the_partner_and_resume_stops_it() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(hold(2, HoldCommand::Hold, None), now);
    assert_eq!(journaled(&out), vec!["hold"]);
    assert_eq!(
        legs(&out),
        vec![(CALLER, LegCommand::Play(Signal::Hold, UNTIL_STOPPED))]
    );
    assert_eq!(
        states(&call),
        vec![PbxCallState::OnHold, PbxCallState::Holding]
    );
    assert_eq!(call.view(now, |_| LegMedia::default()).state, "held");
    let out = call.handle(hold(2, HoldCommand::Resume, None), now);
    assert_eq!(legs(&out), vec![(CALLER, LegCommand::Stop)]);
    assert_eq!(
        states(&call),
        vec![PbxCallState::Connected, PbxCallState::Connected]
    );
}

#[test]
fn a_reoffer_gets_a_new_leg_that_rejoins_the_bridge_and_the_music_goes_on() {
    let (mut call, now) = anchored_connected();
    call.handle(hold(2, HoldCommand::Hold, None), now);
    let out = call.handle(hold(2, HoldCommand::Hold, Some("new-offer")), now);
    assert_eq!(
        legs(&out)[1],
        (
            1,
            LegCommand::Negotiate {
                purpose: Purpose::Reoffer,
                negotiation: Negotiation::Answer("new-offer".into())
            }
        )
    );
    let out = call.handle(negotiated(1, Purpose::Reoffer, Ok("new-answer")), now);
    assert_eq!(journaled(&out), vec!["reoffer"]);
    assert!(
        matches!(&sent(&out)[..], [(1, ServerFrame::Sdp(sdp))] if sdp.sdp == Sdp::answer("new-answer"))
    );
    let commands = legs(&out);
    assert!(commands.contains(&(1, LegCommand::Bridge(Some(CALLER)))));
    assert_eq!(
        commands.last(),
        Some(&(CALLER, LegCommand::Play(Signal::Hold, UNTIL_STOPPED)))
    );
}

#[test]
fn a_refused_reoffer_is_journaled_and_the_old_leg_stays() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(
        negotiated(1, Purpose::Reoffer, Err(LegFailure::Refused("bad".into()))),
        now,
    );
    assert_eq!(journaled(&out), vec!["reoffer-refused"]);
    assert!(legs(&out).is_empty());
}

#[test]
fn failed_media_hangs_up_unless_the_party_holds() {
    let (mut call, now) = anchored_connected();
    call.handle(hold(2, HoldCommand::Hold, None), now);
    let failed = Input::Media {
        party: 1,
        event: MediaEvent::Failed,
    };
    let out = call.handle(failed, now);
    assert_eq!(journaled(&out), vec!["media-failed"]);
    assert!(!call.is_over(), "a holding party may drop its media");
    call.handle(hold(2, HoldCommand::Resume, None), now);
    let out = call.handle(
        Input::Media {
            party: 1,
            event: MediaEvent::Failed,
        },
        now,
    );
    assert!(matches!(&sent(&out)[..], [(CALLER, ServerFrame::Bye(_))]));
    assert!(legs(&out).contains(&(1, LegCommand::Close)));
    assert!(call.is_over());
}

#[test]
fn digits_are_relayed_to_the_partner_and_counted_once_sent() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(
        Input::Media {
            party: 1,
            event: MediaEvent::Digit('5'),
        },
        now,
    );
    assert_eq!(
        legs(&out),
        vec![(
            CALLER,
            LegCommand::RelayDtmf {
                from: 1,
                digit: '5'
            }
        )]
    );
    let out = call.handle(
        Input::DtmfRelayed {
            from: 1,
            digit: '5',
        },
        now,
    );
    assert_eq!(journaled(&out), vec!["dtmf"]);
    let view = call.view(now, |_| LegMedia::default());
    assert_eq!(view.legs[1].dtmf_relayed, "5");
}

#[test]
fn our_candidates_go_to_their_party() {
    let (mut call, now) = anchored_ringing(1);
    let out = call.handle(
        Input::Media {
            party: 1,
            event: MediaEvent::LocalCandidate("candidate:9".into()),
        },
        now,
    );
    assert!(
        matches!(&sent(&out)[..], [(1, ServerFrame::Candidate(c))] if c.candidate == "candidate:9" && c.callid == Some(id(2)))
    );
}

#[test]
fn a_partys_candidate_goes_to_its_leg() {
    let (mut call, now) = anchored_ringing(1);
    let out = call.handle(
        frame(
            2,
            ClientFrame::IceCandidate {
                callid: None,
                candidate: Some(IceCandidate {
                    candidate: "candidate:2".into(),
                    sdp_mid: None,
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                }),
            },
        ),
        now,
    );
    assert_eq!(
        legs(&out),
        vec![(1, LegCommand::AddCandidate("candidate:2".into()))]
    );
}

fn blind_transfer(call: &mut Call, now: Instant) -> Vec<Output> {
    call.handle(
        frame(
            2,
            ClientFrame::BlindTransfer {
                id: id(2),
                from: "502".into(),
                to: "509".into(),
            },
        ),
        now,
    )
}

#[test]
fn a_blind_transfer_rings_the_target_for_the_transferee() {
    let (mut call, now) = anchored_connected();
    let out = blind_transfer(&mut call, now);
    assert_eq!(journaled(&out), vec!["transfer"]);
    assert!(
        matches!(&sent(&out)[..], [(1, ServerFrame::Bye(bye))] if bye.reason.as_deref() == Some("Transferred"))
    );
    assert!(matches!(out.last(), Some(Output::FindTarget(to)) if to == "509"));
    let out = call.handle(Input::Targets(Ok(vec![peer(9)])), now);
    assert_eq!(
        far_ends(&call),
        vec![
            named("509", "Ext 509"),
            named("501", "Alice"),
            named("501", "Alice")
        ],
        "the transferee's far end is the target ringing for it"
    );
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Play(Signal::Ringback, UNTIL_STOPPED)),
            (
                2,
                LegCommand::Negotiate {
                    purpose: Purpose::Ring,
                    negotiation: Negotiation::Offer
                }
            )
        ]
    );
    let out = call.handle(negotiated(2, Purpose::Ring, Ok("offer-9")), now);
    assert!(
        matches!(&sent(&out)[..], [(2, ServerFrame::InviteSdp(invite))] if invite.from == "501")
    );
    assert_eq!(call.next_deadline(), Some(now + RING));
    call.handle(answer(9, id(9)), now);
    let out = call.handle(Input::AnswerApplied { party: 2, ok: true }, now);
    assert!(legs(&out).contains(&(CALLER, LegCommand::Bridge(Some(2)))));
    assert_eq!(far_ends(&call)[0], named("509", "Ext 509"));
    assert_eq!(
        states(&call),
        vec![
            PbxCallState::Connected,
            PartyState::disconnected(),
            PbxCallState::Connected
        ]
    );
}

#[test]
fn a_failed_blind_transfer_plays_the_error_tone_then_releases_the_transferee() {
    let (mut call, now) = anchored_connected();
    blind_transfer(&mut call, now);
    let out = call.handle(Input::Targets(Err(SipCode::NOT_FOUND)), now);
    assert_eq!(journaled(&out), vec!["transfer-failed"]);
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Stop),
            (CALLER, LegCommand::Play(Signal::Error, 1))
        ]
    );
    assert!(reported(&out));
    let out = call.on_timeout(now + ERROR_TONE);
    match &sent(&out)[..] {
        [(CALLER, ServerFrame::Bye(bye))] => {
            assert_eq!(bye.code, Some(SipCode::NOT_FOUND));
            assert_eq!(bye.reason.as_deref(), Some("Transfer Failed"));
        }
        other => panic!("{other:?}"),
    }
    assert!(call.is_over());
}

#[test]
fn a_transfer_target_that_never_answers_fails_the_transfer_with_480() {
    let (mut call, now) = anchored_connected();
    blind_transfer(&mut call, now);
    call.handle(Input::Targets(Ok(vec![peer(9)])), now);
    call.handle(negotiated(2, Purpose::Ring, Ok("offer-9")), now);
    let out = call.on_timeout(now + RING);
    assert_eq!(journaled(&out), vec!["cancel", "transfer-failed"]);
    assert_eq!(call.next_deadline(), Some(now + RING + ERROR_TONE));
    assert!(!call.is_over(), "the error tone plays first");
}

#[test]
fn a_transfer_whose_target_gets_no_leg_fails_with_500() {
    let (mut call, now) = anchored_connected();
    blind_transfer(&mut call, now);
    call.handle(Input::Targets(Ok(vec![peer(9)])), now);
    let out = call.handle(negotiated(2, Purpose::Ring, Err(LegFailure::NoLeg)), now);
    assert_eq!(journaled(&out), vec!["transfer-failed"]);
    assert_eq!(call.view(now, |_| LegMedia::default()).end_code, Some(500));
}

fn attended_transfer(call: &mut Call, now: Instant) -> Vec<Output> {
    call.handle(
        frame(
            CALLER_SOCKET,
            ClientFrame::AttendedTransfer {
                id: id(1),
                from: "501".into(),
                id2: id(50),
                to: "509".into(),
            },
        ),
        now,
    )
}

/// The far end (socket 2) of another anchored call, given away by its caller (socket 1).
fn leaving_party() -> Box<Party> {
    let (mut other, now) = anchored_connected();
    let out = other.handle(
        Input::HandOver {
            socket: CALLER_SOCKET,
            id2: id(1),
            to: 7,
        },
        now,
    );
    out.into_iter()
        .find_map(|o| match o {
            Output::GiveAway { leaving, .. } => Some(leaving),
            _ => None,
        })
        .unwrap()
}

#[test]
fn an_attended_transfer_asks_for_the_other_calls_far_end_and_bridges_it() {
    let (mut call, now) = anchored_connected();
    let out = attended_transfer(&mut call, now);
    assert!(matches!(&out[..], [Output::Join { socket: CALLER_SOCKET, id2 }] if *id2 == id(50)));
    assert_eq!(call.next_party(), 2);
    let out = call.handle(Input::Joined(Ok(leaving_party())), now);
    assert_eq!(journaled(&out), vec!["att-transfer"]);
    assert!(matches!(&sent(&out)[..], [(CALLER, ServerFrame::Bye(_))]));
    assert!(legs(&out).contains(&(1, LegCommand::Bridge(Some(2)))));
    assert!(legs(&out).contains(&(2, LegCommand::Bridge(Some(1)))));
    let view = call.view(now, |_| LegMedia::default());
    assert_eq!(view.legs[2].role, "joined");
    assert_eq!(view.legs[2].state, "connected");
}

#[test]
fn an_attended_transfer_the_other_call_refuses_is_journaled() {
    let (mut call, now) = anchored_connected();
    attended_transfer(&mut call, now);
    let out = call.handle(Input::Joined(Err("id2 names no call")), now);
    assert_eq!(journaled(&out), vec!["att-transfer-refused"]);
    assert!(sent(&out).is_empty());
    assert!(!call.is_over());
}

#[test]
fn a_hand_over_gives_the_far_end_away_and_ends_the_call() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(
        Input::HandOver {
            socket: CALLER_SOCKET,
            id2: id(1),
            to: 8,
        },
        now,
    );
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Bridge(None)),
            (1, LegCommand::Bridge(None))
        ]
    );
    assert!(matches!(
        out.last(),
        Some(Output::GiveAway { party: 1, .. })
    ));
    let out = call.handle(Input::HandedOver, now);
    assert!(matches!(&out[0], Output::Moved { to: 8, ids, socket: 2 } if ids.contains(&id(2))));
    assert_eq!(journaled(&out), vec!["handed-over"]);
    assert!(matches!(&sent(&out)[..], [(CALLER, ServerFrame::Bye(_))]));
    assert!(call.is_over());
    assert_eq!(
        call.party_states().len(),
        1,
        "the moved party is not listed"
    );
}

#[test]
fn a_hand_over_that_comes_back_is_bridged_again() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(
        Input::HandOver {
            socket: CALLER_SOCKET,
            id2: id(1),
            to: 8,
        },
        now,
    );
    let Some(Output::GiveAway { leaving, .. }) = out.into_iter().last() else {
        panic!("no hand-over");
    };
    let out = call.handle(Input::HandOverFailed(leaving), now);
    assert!(legs(&out).contains(&(CALLER, LegCommand::Bridge(Some(1)))));
    assert!(!call.is_over());
}

#[test]
fn a_hand_over_of_an_unknown_or_unconnected_call_is_refused() {
    let (mut call, now) = anchored_connected();
    let out = call.handle(
        Input::HandOver {
            socket: CALLER_SOCKET,
            id2: id(77),
            to: 8,
        },
        now,
    );
    assert!(matches!(
        &out[..],
        [Output::RefuseHandOver("id2 is not the transferor's call")]
    ));
    let (mut ringing, now) = anchored_ringing(1);
    let out = ringing.handle(
        Input::HandOver {
            socket: CALLER_SOCKET,
            id2: id(1),
            to: 8,
        },
        now,
    );
    assert!(matches!(
        &out[..],
        [Output::RefuseHandOver("the call of id2 is not connected")]
    ));
}

#[test]
fn winding_up_closes_the_legs_still_open_and_the_view_says_ended() {
    let (mut call, now) = anchored_connected();
    let out = call.wind_up();
    assert_eq!(
        legs(&out),
        vec![
            (CALLER, LegCommand::Close),
            (1, LegCommand::Bridge(None)),
            (1, LegCommand::Close)
        ]
    );
    assert!(
        sent(&out).is_empty(),
        "no frames: the sockets are told by the switch"
    );
    let view = call.view(now + Duration::from_millis(30), |party| LegMedia {
        codec: Some("PCMU".into()),
        packets_sent: party as u64,
        packets_received: 0,
    });
    assert_eq!(view.state, "ended");
    assert_eq!(view.ended_ms, Some(30));
    assert_eq!(view.legs[1].packets_sent, 1);
    assert!(
        call.handle(bye(2, id(2)), now).is_empty(),
        "nothing after the end"
    );
}
