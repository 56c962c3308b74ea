//! The call's decisions driven with plain values: changes and times in, effects and events
//! out, the script played by a closure and the leg's results fed back by hand.

use std::collections::BTreeMap;

use super::*;
use crate::call::GatherOptions;
use crate::call::GatherReason;
use crate::call::machine::EndReason;
use crate::protocol::{Bye, Cseq, HoldCommand, Sdp, SdpFrame, SipCode};

use crate::call::test_fixtures::{RING, id, invite};

fn setup(origin: Origin) -> LogicSetup {
    let (callid, direction) = match &origin {
        Origin::Inbound(invite) => (invite.callid.clone(), Direction::Inbound),
        Origin::Outbound { id, .. } => (id.clone(), Direction::Outbound),
    };
    LogicSetup {
        origin,
        dialect: Dialect::Modern,
        own_extension: "500".into(),
        ring_timeout: RING,
        info: CallInfo::new(callid, direction, ("501", ""), "500", BTreeMap::new()),
        record: None,
        recording_path: "/rec/call.wav".into(),
        streams: false,
        detect_machine: None,
    }
}

/// Runs what is left of a turn as the actor would, `script` answering each event: the
/// effects to carry out and the events heard, in order.
fn settle(
    logic: &mut CallLogic,
    now: Instant,
    script: &mut dyn FnMut(&CallInfo, &CallEvent) -> Vec<CallCommand>,
) -> (Vec<Effect>, Vec<CallEvent>) {
    let (mut effects, mut heard) = (Vec::new(), Vec::new());
    while let Some(turn) = logic.next(now) {
        match turn {
            Turn::Do(more) => effects.extend(more),
            Turn::Hear(event) => {
                for command in script(logic.info(), &event) {
                    effects.extend(logic.step(now, Change::Command(command)));
                }
                heard.push(event);
            }
        }
    }
    (effects, heard)
}

fn silent(_: &CallInfo, _: &CallEvent) -> Vec<CallCommand> {
    Vec::new()
}

/// An inbound call the script answered, connected at the returned time.
fn connected() -> (CallLogic, Instant) {
    let now = Instant::now();
    let (mut logic, _) = CallLogic::new(setup(Origin::Inbound(invite())), now);
    let (effects, _) = settle(&mut logic, now, &mut |_, event| match event {
        CallEvent::Incoming => vec![CallCommand::Answer],
        _ => Vec::new(),
    });
    assert!(effects.contains(&Effect::Media(MediaCommand::AcceptOffer(
        "remote-offer".into()
    ))));
    logic.step(
        now,
        Change::Negotiated(MediaResult::Answer("our-answer".into())),
    );
    settle(&mut logic, now, &mut silent);
    assert_eq!(logic.info().state, Some(CallState::InCall));
    (logic, now)
}

fn sent(effects: &[Effect]) -> Vec<ClientFrame> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(frame) => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

fn queue(action: Action) -> Change {
    Change::Command(CallCommand::Queue(action))
}

fn play(name: &str) -> Action {
    Action::Play {
        prompt: name.into(),
        loops: 1,
        for_gather: false,
    }
}

fn far_end_hangs_up() -> Change {
    Change::Frame(ServerFrame::Bye(Bye {
        callid: id(1),
        cseq: None,
        code: None,
        reason: None,
    }))
}

fn digit(c: char) -> Change {
    Change::Leg(LegEvent::Digit {
        digit: Digit::from_char(c).expect("a DTMF digit"),
        duration: Duration::from_millis(100),
        inband: false,
    })
}

fn played(id: ItemId, outcome: Outcome) -> Change {
    Change::Leg(LegEvent::Played { id, outcome })
}

#[test]
fn hanging_up_while_ringing_leaves_no_media_work_for_the_ended_call() {
    let now = Instant::now();
    let origin = Origin::Outbound {
        to: "600".into(),
        id: id(2),
    };
    let (mut logic, first) = CallLogic::new(setup(origin), now);
    assert_eq!(first, vec![Effect::Media(MediaCommand::CreateOffer)]);
    let offered = logic.step(now, Change::Negotiated(MediaResult::Offer("ours".into())));
    assert!(matches!(
        sent(&offered)[..],
        [ClientFrame::SdpPacket { .. }]
    ));
    let progress = logic.step(
        now,
        Change::Frame(ServerFrame::Sdp(SdpFrame {
            callid: id(99),
            cseq: Some(Cseq::Number(9)),
            code: Some(SipCode(183)),
            reason: None,
            sdp: Sdp::offer("pbx-offer"),
        })),
    );
    // The change's media work is decided before the script hears RINGING.
    assert_eq!(
        progress,
        vec![
            Effect::Publish,
            Effect::Media(MediaCommand::RollbackAndAccept("pbx-offer".into()))
        ]
    );
    let (effects, heard) = settle(&mut logic, now, &mut |_, event| match event {
        CallEvent::State(CallState::Ringing) => vec![CallCommand::Queue(Action::Hangup)],
        _ => Vec::new(),
    });
    assert_eq!(heard, vec![CallEvent::State(CallState::Ringing)]);
    assert!(logic.is_over());
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Media(_))),
        "no media work on the ended call: {effects:?}"
    );
    assert!(matches!(sent(&effects)[..], [ClientFrame::SipBye { .. }]));
    let late = logic.step(now, Change::Negotiated(MediaResult::Answer("a".into())));
    assert!(
        late.is_empty(),
        "the answer made meanwhile goes nowhere: {late:?}"
    );
}

#[test]
fn answering_accepts_the_offer_then_sends_200() {
    let now = Instant::now();
    let (mut logic, first) = CallLogic::new(setup(Origin::Inbound(invite())), now);
    assert!(matches!(sent(&first)[..], [ClientFrame::SipRinging { .. }]));
    let (effects, heard) = settle(&mut logic, now, &mut |_, event| match event {
        CallEvent::Incoming => vec![CallCommand::Answer],
        _ => Vec::new(),
    });
    assert_eq!(
        heard,
        vec![CallEvent::State(CallState::Ringing), CallEvent::Incoming]
    );
    assert_eq!(
        effects,
        vec![Effect::Media(MediaCommand::AcceptOffer(
            "remote-offer".into()
        ))]
    );
    let later = now + Duration::from_millis(40);
    let answered = logic.step(
        later,
        Change::Negotiated(MediaResult::Answer("our-answer".into())),
    );
    assert_eq!(
        sent(&answered),
        vec![ClientFrame::Sdp200Ok {
            callid: id(1),
            cseq: Cseq::Text("7".into()),
            answer: "our-answer".into()
        }]
    );
    let (_, heard) = settle(&mut logic, later, &mut silent);
    assert_eq!(heard, vec![CallEvent::State(CallState::InCall)]);
    assert_eq!(logic.info().setup_time, Some(Duration::from_millis(40)));
    assert_eq!(
        logic.info().answered,
        Some(logic.info().started + Duration::from_millis(40))
    );
}

#[test]
fn a_script_error_on_the_incoming_call_rejects_it() {
    assert_eq!(
        script_commands(&CallEvent::Incoming, Err("boom".into())),
        vec![CallCommand::Reject(SipCode::SERVER_ERROR)]
    );
    assert!(script_commands(&CallEvent::Dtmf('1'), Err("boom".into())).is_empty());
}

fn gather(logic: &mut CallLogic, now: Instant) {
    let options = GatherOptions {
        max: 4,
        timeout: Duration::from_secs(2),
        interdigit: Duration::from_secs(1),
        ..GatherOptions::default()
    };
    logic.step(now, Change::Command(CallCommand::Gather(options)));
    assert_eq!(logic.next_deadline(), Some(now + Duration::from_secs(2)));
}

#[test]
fn gather_collects_digits_until_the_terminator() {
    let (mut logic, now) = connected();
    gather(&mut logic, now);
    let mut heard = Vec::new();
    // The script hears each digit before the gather takes it.
    let mut gathering_when_heard = Vec::new();
    let mut script = |info: &CallInfo, event: &CallEvent| {
        if let CallEvent::Dtmf(_) = event {
            gathering_when_heard.push(info.gather_reason.is_none());
        }
        Vec::new()
    };
    for (n, c) in "12#".chars().enumerate() {
        let at = now + Duration::from_millis(100 * (n as u64 + 1));
        logic.step(at, digit(c));
        heard.extend(settle(&mut logic, at, &mut script).1);
        if c == '1' {
            assert_eq!(
                logic.next_deadline(),
                Some(at + Duration::from_secs(1)),
                "the interdigit timer runs"
            );
        }
    }
    assert_eq!(
        heard,
        vec![
            CallEvent::Dtmf('1'),
            CallEvent::Dtmf('2'),
            CallEvent::Dtmf('#'),
            CallEvent::Digits("12".into())
        ]
    );
    assert_eq!(gathering_when_heard, [true; 3]);
    assert_eq!(logic.info().gather_reason, Some(GatherReason::Terminator));
    assert_eq!(logic.info().digits, "12#");
}

#[test]
fn gather_ends_when_its_timer_runs_out() {
    let (mut logic, now) = connected();
    gather(&mut logic, now);
    logic.step(now, digit('7'));
    settle(&mut logic, now, &mut silent);
    let deadline = logic.next_deadline().expect("the interdigit timer");
    assert_eq!(deadline, now + Duration::from_secs(1));
    assert!(logic.step(deadline, Change::Timer).is_empty());
    let (_, heard) = settle(&mut logic, deadline, &mut silent);
    assert_eq!(heard, vec![CallEvent::Digits("7".into())]);
    assert_eq!(logic.info().gather_reason, Some(GatherReason::Timeout));
}

/// Fires each timer at its time until the call ends; the media watch counts `received`.
fn run_timers(logic: &mut CallLogic, received: u64) -> Vec<Effect> {
    let mut effects = Vec::new();
    for _ in 0..100 {
        if logic.is_over() {
            return effects;
        }
        let at = logic.next_deadline().expect("a timer");
        let mut done = logic.step(at, Change::Timer);
        if done.contains(&Effect::CountPackets) {
            done.extend(logic.step(at, Change::PacketsReceived(received)));
        }
        effects.extend(done);
        settle(logic, at, &mut silent);
    }
    panic!("the call never ended");
}

#[test]
fn an_unanswered_call_times_out_with_480() {
    let now = Instant::now();
    let (mut logic, _) = CallLogic::new(setup(Origin::Inbound(invite())), now);
    settle(&mut logic, now, &mut silent);
    let effects = run_timers(&mut logic, 0);
    assert_eq!(
        sent(&effects),
        vec![ClientFrame::SipBusy {
            callid: id(1),
            cseq: Cseq::Text("7".into()),
            code: SipCode::TEMPORARILY_UNAVAILABLE
        }]
    );
    let info = logic.info();
    assert_eq!(info.end.map(|e| e.reason), Some(EndReason::NoAnswer));
    assert_eq!(info.ended, Some(info.started + RING));
}

#[test]
fn the_media_watch_ends_a_connected_call_whose_media_stopped() {
    let (mut logic, _) = connected();
    let effects = run_timers(&mut logic, 250);
    assert!(matches!(sent(&effects)[..], [ClientFrame::SipBye { .. }]));
    let info = logic.info();
    assert_eq!(info.end.map(|e| e.reason), Some(EndReason::MediaFailed));
    // The count was seen at the first look (5 s) and stood still for 30 s after it.
    assert_eq!(info.ended, Some(info.started + MEDIA_WATCH + MEDIA_SILENCE));
}

#[test]
fn play_names_its_item_and_the_script_hears_it_end_before_what_waited_for_it() {
    let (mut logic, now) = connected();
    let effects = logic.step(now, queue(play("hello.wav")));
    let [Effect::Leg(LegCommand::Play { id, path, loops: 1 })] = &effects[..] else {
        panic!("{effects:?}");
    };
    assert_eq!(path, &PathBuf::from("hello.wav"));
    let id = *id;
    assert!(logic.step(now, queue(Action::Hangup)).is_empty(), "waits");
    assert!(logic.step(now, played(id + 1, Outcome::Done)).is_empty());
    settle(&mut logic, now, &mut silent);
    assert!(!logic.is_over(), "another item's end releases nothing");
    logic.step(now, played(id, Outcome::Interrupted));
    let mut state_heard = None;
    let (effects, heard) = settle(&mut logic, now, &mut |info, event| {
        if let CallEvent::PlayDone(_) = event {
            state_heard = Some((info.state, info.play_interrupted));
        }
        Vec::new()
    });
    assert_eq!(heard, vec![CallEvent::PlayDone("hello.wav".into())]);
    assert_eq!(state_heard, Some((Some(CallState::InCall), true)));
    assert!(matches!(sent(&effects)[..], [ClientFrame::SipBye { .. }]));
    assert!(logic.is_over());
}

#[test]
fn the_actions_after_a_say_wait_for_its_render() {
    let (mut logic, now) = connected();
    let hello = crate::speech::Utterance::new("hello", "en", 175).expect("valid text");
    let effects = logic.step(now, queue(Action::Say(hello.clone())));
    assert_eq!(effects, vec![Effect::Render(hello)]);
    assert!(logic.step(now, queue(play("after.wav"))).is_empty());
    let effects = logic.step(now, Change::Rendered(Ok("/cache/hello.wav".into())));
    let ids: Vec<_> = effects
        .iter()
        .map(|e| match e {
            Effect::Leg(LegCommand::Play { id, path, .. }) => (*id, path.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        vec![(1, "/cache/hello.wav".into()), (2, "after.wav".into())]
    );
    logic.step(now, played(1, Outcome::Done));
    let (_, heard) = settle(&mut logic, now, &mut silent);
    assert_eq!(heard, vec![CallEvent::PlayDone("say".into())]);
}

#[test]
fn hold_and_transfer_send_their_frames() {
    let (mut logic, now) = connected();
    let effects = logic.step(now, queue(Action::Hold));
    assert_eq!(
        effects,
        vec![
            Effect::Send(ClientFrame::WrtcHold {
                callid: Some(id(1)),
                command: HoldCommand::Hold,
                offer: None,
                calldir: None,
            }),
            Effect::Media(MediaCommand::Mute(true)),
            Effect::Publish,
        ]
    );
    assert_eq!(
        settle(&mut logic, now, &mut silent).1,
        vec![CallEvent::State(CallState::Hold)]
    );
    let effects = logic.step(now, queue(Action::Transfer { to: "600".into() }));
    assert_eq!(
        sent(&effects),
        vec![ClientFrame::BlindTransfer {
            id: id(1),
            from: "500".into(),
            to: "600".into()
        }]
    );
    logic.step(now, far_end_hangs_up());
    assert_eq!(
        logic.info().end.map(|e| e.reason),
        Some(EndReason::Transferred)
    );
}

#[test]
fn an_ended_call_hears_its_final_state_and_its_recording_once() {
    let now = Instant::now();
    let (mut logic, _) = CallLogic::new(setup(Origin::Inbound(invite())), now);
    let (effects, _) = settle(&mut logic, now, &mut |_, event| match event {
        CallEvent::Incoming => vec![
            CallCommand::Record {
                path: None,
                stereo: false,
                max_secs: None,
            },
            CallCommand::Answer,
        ],
        _ => Vec::new(),
    });
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Leg(LegCommand::Record(_)))),
        "recording waits for the answer"
    );
    let answered = logic.step(now, Change::Negotiated(MediaResult::Answer("a".into())));
    let recording = RecordOptions {
        path: "/rec/call.wav".into(),
        stereo: false,
        max_secs: None,
    };
    assert!(answered.contains(&Effect::Leg(LegCommand::Record(recording))));
    settle(&mut logic, now, &mut silent);
    logic.step(now, far_end_hangs_up());
    assert!(logic.is_over());
    assert_eq!(logic.finish(), vec![Effect::Leg(LegCommand::StopRecording)]);
    let (_, heard) = settle(&mut logic, now, &mut silent);
    assert_eq!(heard, vec![CallEvent::State(CallState::Completed)]);
    assert_eq!(logic.recordings_open(), 1, "the report is still to come");
    logic.step(
        now,
        Change::Leg(LegEvent::Recording(RecordingReport::Closed {
            path: "/rec/call.wav".into(),
            duration: Duration::from_secs(3),
        })),
    );
    let (_, heard) = settle(&mut logic, now, &mut silent);
    assert_eq!(heard, vec![CallEvent::Recording("/rec/call.wav".into())]);
    assert_eq!(logic.recordings_open(), 0);
    let info = logic.into_info();
    assert_eq!(info.recordings, vec![PathBuf::from("/rec/call.wav")]);
    assert_eq!(info.end.map(|e| e.reason), Some(EndReason::RemoteHangup));
}
