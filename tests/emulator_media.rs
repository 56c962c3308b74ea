//! The emulator as a media-anchored B2BUA (docs/protocol.md §9), in both dialects: media-stack
//! phones call each other through it; audio, DTMF, hold music and transfer are checked in what
//! the phones receive and record.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;
use std::time::Duration;

use callbot::call::{Action, CallCommand, CallEvent};
use callbot::pbx::MediaMode;
use callbot::phone::{Phone, PhoneCall, PhoneEvent};
use callbot::protocol::{CallId, CallState, ClientFrame, Dialect, SipCode};
use common::audio::{channel, dominant, rms, slice};
use common::emulator::{TestClient, emulator, media_runtime, next_frame, phone, start_pbx};
use common::{both_dialects, wait};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn record(path: &Path) -> CallCommand {
    CallCommand::Record {
        path: Some(path.to_owned()),
        stereo: true,
        max_secs: None,
    }
}

fn tone(hz: f32, ms: u32) -> CallCommand {
    CallCommand::Queue(Action::Tone { hz, ms })
}

/// An anchored emulator in `dialect`, a folder for recordings, and phones 502 and 503.
async fn setup(
    dialect: Dialect,
) -> (
    callbot::pbx::Pbx,
    tempfile::TempDir,
    callbot::media::MediaRuntime,
    Phone,
    Phone,
) {
    let pbx = start_pbx(MediaMode::Anchored, dialect).await;
    let dir = tempfile::tempdir().unwrap();
    let media = media_runtime();
    let a = phone(&pbx, "502", &media, dir.path()).await;
    let b = phone(&pbx, "503", &media, dir.path()).await;
    (pbx, dir, media, a, b)
}

/// `caller` dials `callee`'s extension; the callee answers. Returns both calls, connected.
async fn connect(caller: &Phone, callee: &mut Phone) -> (PhoneCall, PhoneCall) {
    let mut outgoing = caller.dial(callee.extension());
    let mut incoming = timeout(WAIT, callee.incoming())
        .await
        .expect("the call rings")
        .expect("phone alive");
    incoming.command(CallCommand::Answer);
    timeout(WAIT, incoming.reach(CallState::InCall))
        .await
        .expect("callee in call")
        .expect("callee connected");
    timeout(WAIT, outgoing.reach(CallState::InCall))
        .await
        .expect("caller in call")
        .expect("caller connected");
    (outgoing, incoming)
}

/// `a` hangs up; waits until both calls are over (recordings closed).
async fn hang_up(a: &mut PhoneCall, b: &mut PhoneCall) {
    a.command(CallCommand::Queue(Action::Hangup));
    for call in [a, b] {
        timeout(WAIT, call.ended()).await.expect("call ends");
    }
}

async fn audio_flows_both_ways(dialect: Dialect) {
    let (pbx, dir, _media, a, mut b) = setup(dialect).await;
    assert_eq!(a.dialect(), dialect);
    let (mut call_a, mut call_b) = connect(&a, &mut b).await;
    let (rec_a, rec_b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    call_a.command(record(&rec_a));
    call_b.command(record(&rec_b));
    call_a.command(tone(440.0, 2500));
    call_b.command(tone(1000.0, 2500));
    let calls = wait::until("50 packets received on every leg", WAIT, || async {
        let calls = emulator(&pbx, "calls").await;
        let legs = calls[0]["legs"].as_array()?;
        legs.iter()
            .all(|l| l["packets_received"].as_u64().is_some_and(|n| n > 50))
            .then_some(calls)
    })
    .await;
    let legs = calls[0]["legs"].as_array().unwrap();
    assert_eq!(legs[0]["bridged_to"], legs[1]["callid"]);
    // A hangs up once its tone is over.
    call_a.command(CallCommand::Queue(Action::Hangup));
    for call in [&mut call_a, &mut call_b] {
        timeout(WAIT, call.ended()).await.expect("call ends");
    }
    for (recording, expected) in [(&rec_a, 1000.0), (&rec_b, 440.0)] {
        let (far, rate) = channel(recording, 0);
        let middle = slice(&far, rate, 0.8, 2.2);
        assert!(
            rms(middle) > 0.05,
            "{}: far end too quiet",
            recording.display()
        );
        let found = dominant(middle, rate, 300, 1500);
        assert!(
            (found - expected).abs() <= 10.0,
            "{}: heard {found} Hz, expected {expected}",
            recording.display()
        );
    }
}

both_dialects!(audio_flows_both_ways);

/// Digits received by a call until `count` arrived.
async fn digits(call: &mut PhoneCall, count: usize) -> String {
    let mut digits = String::new();
    while digits.len() < count {
        match timeout(WAIT, call.next()).await.expect("digits arrive") {
            Some(PhoneEvent::Call(_, CallEvent::Dtmf(digit))) => digits.push(digit),
            Some(PhoneEvent::Ended(_)) | None => panic!("call ended after {digits:?}"),
            Some(_) => {}
        }
    }
    digits
}

async fn dtmf_is_relayed_once_each(dialect: Dialect) {
    let (pbx, _dir, _media, a, mut b) = setup(dialect).await;
    let (call_a, mut call_b) = connect(&a, &mut b).await;
    call_a.command(CallCommand::Queue(Action::Pause { ms: 300 }));
    call_a.command(CallCommand::Queue(Action::SendDtmf {
        digits: "0123456789*#".into(),
    }));
    assert_eq!(digits(&mut call_b, 12).await, "0123456789*#");
    // The emulator's view of the call is published about once a second.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let calls = emulator(&pbx, "calls").await;
        let relayed = calls[0]["legs"][0]["dtmf_relayed"]
            .as_str()
            .unwrap_or_default();
        if relayed.len() >= 12 || tokio::time::Instant::now() > deadline {
            assert_eq!(relayed, "0123456789*#", "{calls}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call_a.command(CallCommand::Queue(Action::Hangup));
    let info_b = timeout(WAIT, call_b.ended()).await.unwrap().unwrap();
    // Every digit the callee ever saw: each one exactly once.
    assert_eq!(info_b.digits, "0123456789*#");
}

both_dialects!(dtmf_is_relayed_once_each);

async fn hold_plays_music_to_the_other_party(dialect: Dialect) {
    let (pbx, dir, _media, a, mut b) = setup(dialect).await;
    let (mut call_a, mut call_b) = connect(&a, &mut b).await;
    let rec_b = dir.path().join("b.wav");
    let recording_started = tokio::time::Instant::now();
    call_b.command(record(&rec_b));
    // One second of silence from A, then A holds for three seconds, then resumes.
    call_a.command(CallCommand::Queue(Action::Pause { ms: 1000 }));
    call_a.command(CallCommand::Queue(Action::Hold));
    call_a.command(CallCommand::Queue(Action::Pause { ms: 3000 }));
    call_a.command(CallCommand::Queue(Action::Resume));
    timeout(WAIT, call_a.reach(CallState::Hold))
        .await
        .unwrap()
        .unwrap();
    let held_at = wait::seconds_since(recording_started);
    timeout(WAIT, call_a.reach(CallState::InCall))
        .await
        .unwrap()
        .unwrap();
    let resumed_at = wait::seconds_since(recording_started);
    let calls = emulator(&pbx, "calls").await;
    let events = emulator(&pbx, "events").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "hold"),
        "{events}"
    );
    hang_up(&mut call_a, &mut call_b).await;
    // B's recording follows the media clock: an instant's place in it is the time since it
    // started. Music starts once the emulator has seen the hold, a moment after A sent it.
    let (far, rate) = channel(&rec_b, 0);
    let before = slice(&far, rate, 0.2, held_at - 0.2);
    let held = slice(&far, rate, held_at + 0.4, resumed_at - 0.2);
    assert!(
        rms(before) < 0.01,
        "silence before the hold: {}",
        rms(before)
    );
    assert!(
        rms(held) > 0.03,
        "hold music while held ({held_at:.2}–{resumed_at:.2} s): {} ({calls})",
        rms(held)
    );
    let note = dominant(held, rate, 400, 900);
    assert!(
        [523.0, 659.0, 784.0]
            .iter()
            .any(|f: &f32| (note - f).abs() <= 10.0),
        "hold music notes, heard {note} Hz"
    );
}

both_dialects!(hold_plays_music_to_the_other_party);

async fn transfer_bridges_the_caller_to_the_target(dialect: Dialect) {
    let (pbx, dir, media, a, mut b) = setup(dialect).await;
    let mut c = phone(&pbx, "504", &media, dir.path()).await;
    let (mut call_a, mut call_b) = connect(&a, &mut b).await;
    let rec_a = dir.path().join("a.wav");
    call_a.command(record(&rec_a));
    call_b.command(CallCommand::Queue(Action::Transfer { to: "504".into() }));
    let ended_b = timeout(WAIT, call_b.ended()).await.unwrap().unwrap();
    assert_eq!(ended_b.end.unwrap().reason.as_str(), "transferred");
    let mut call_c = timeout(WAIT, c.incoming()).await.unwrap().unwrap();
    call_c.command(CallCommand::Answer);
    timeout(WAIT, call_c.reach(CallState::InCall))
        .await
        .unwrap()
        .unwrap();
    let calls = wait::until("the transfer target's leg connected", WAIT, || async {
        let calls = emulator(&pbx, "calls").await;
        let connected = calls[0]["legs"]
            .as_array()?
            .iter()
            .any(|l| l["role"] == "transfer-target" && l["state"] == "connected");
        connected.then_some(calls)
    })
    .await;
    let legs = calls[0]["legs"].as_array().unwrap();
    let target = legs
        .iter()
        .find(|l| l["role"] == "transfer-target")
        .expect("a target leg");
    assert_eq!(legs[0]["bridged_to"], target["callid"], "{calls}");
    // C speaks, then hangs up: the end of A's recording holds C's tone.
    call_c.command(tone(700.0, 2000));
    call_c.command(CallCommand::Queue(Action::Hangup));
    for call in [&mut call_c, &mut call_a] {
        timeout(WAIT, call.ended()).await.expect("call ends");
    }
    let (far, rate) = channel(&rec_a, 0);
    let found = dominant(
        slice(
            &far,
            rate,
            far.len() as f32 / rate as f32 - 2.4,
            far.len() as f32 / rate as f32 - 0.6,
        ),
        rate,
        300,
        1500,
    );
    assert!(
        (found - 700.0).abs() <= 10.0,
        "A hears C's 700 Hz tone, heard {found} Hz"
    );
}

both_dialects!(transfer_bridges_the_caller_to_the_target);

/// Raw protocol clients: 502 has just called 503, with a real WebRTC offer, through an anchored
/// emulator (the leg that made the offer lives as long as this).
struct RawCall {
    pbx: callbot::pbx::Pbx,
    _media: (callbot::media::MediaRuntime, callbot::media::MediaLeg),
    sdp: String,
    caller: TestClient,
    callee: TestClient,
    callid: CallId,
}

async fn raw_call(dialect: Dialect) -> RawCall {
    let pbx = start_pbx(MediaMode::Anchored, dialect).await;
    let media = media_runtime();
    let (leg, _events) = media.new_leg().await.unwrap();
    let sdp = leg.create_offer().await.unwrap();
    let caller = TestClient::ready(&pbx, "502").await;
    let callee = TestClient::ready(&pbx, "503").await;
    let callid = CallId::random();
    caller.dial("503", &callid, &sdp).await;
    RawCall {
        pbx,
        _media: (media, leg),
        sdp,
        caller,
        callee,
        callid,
    }
}

#[tokio::test]
async fn legacy_answers_the_callers_offer_and_offers_to_the_callee() {
    let RawCall {
        pbx: _pbx,
        _media,
        sdp,
        mut caller,
        mut callee,
        callid,
    } = raw_call(Dialect::Legacy).await;
    let early = next_frame!(caller, Sdp);
    assert_eq!(early.callid, callid, "legacy keeps the caller's call id");
    assert_eq!(early.code, Some(SipCode::SESSION_PROGRESS));
    assert_eq!(early.sdp.kind, None, "SDP goes as bare text (§3)");
    assert!(!early.sdp.text.contains("a=setup:actpass"), "an answer");
    let invite = next_frame!(callee, InviteSdp);
    assert_ne!(
        invite.sdp.text, sdp,
        "the callee gets the emulator's own offer"
    );
    assert!(invite.sdp.text.contains("a=setup:actpass"));
}

#[tokio::test]
async fn modern_offers_to_the_caller_under_its_own_call_id_and_kills_it_with_415_when_ignored() {
    // A client written for the legacy dialect: it treats the PBX's offer as an answer and
    // never answers it, so the call must fail visibly.
    let RawCall {
        pbx,
        _media,
        sdp: _,
        mut caller,
        mut callee,
        callid,
    } = raw_call(Dialect::Modern).await;
    let pbx_offer = next_frame!(caller, Sdp);
    assert_ne!(
        pbx_offer.callid, callid,
        "modern offers under the PBX's own call id"
    );
    assert_eq!(pbx_offer.sdp.kind, None, "SDP goes as bare text (§3)");
    assert!(pbx_offer.sdp.text.contains("a=setup:actpass"));
    caller
        .send(ClientFrame::SipAck {
            callid: pbx_offer.callid.clone(),
        })
        .await;
    let invite = next_frame!(callee, InviteSdp);
    let bye = next_frame!(caller, Bye);
    assert_eq!(bye.code, Some(SipCode::UNSUPPORTED_MEDIA_TYPE));
    assert_eq!(bye.callid, pbx_offer.callid);
    let cancel = next_frame!(callee, Cancel);
    assert_eq!(
        cancel.callid, invite.callid,
        "the callee's ringing leg is cancelled"
    );
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["end_code"], 415, "{calls}");
}
