//! The example IVR's main path, shared by the tests that run it: a caller dials 500, presses 1
//! and is put through to the test line (501), which announces itself and then echoes.

use std::time::Duration;

use callbot::call::{Action, CallCommand};
use callbot::phone::Phone;
use callbot::protocol::CallState;
use tokio::time::timeout;

use super::audio::{channel, dominant, loud_seconds, rms, slice};
use super::binary::{Emulator, repo};
use super::wait;

const WAIT: Duration = Duration::from_secs(30);

/// Calls the IVR from `caller`, presses 1, and checks what the caller heard after the transfer:
/// the test line's announcement, then the echo of its own 1 kHz tone. The recording of the
/// caller's side is written to `recording`.
pub async fn press_1_and_hear_the_test_line(
    pbx: &Emulator,
    caller: &Phone,
    recording: &std::path::Path,
) {
    let mut call = caller.dial("500");
    timeout(WAIT, call.reach(CallState::InCall))
        .await
        .expect("answered in time")
        .unwrap_or_else(|unreached| panic!("the IVR did not answer: {unreached}"));
    call.command(CallCommand::Record {
        path: Some(recording.to_owned()),
        stereo: true,
        max_secs: None,
    });
    let recording_started = tokio::time::Instant::now();
    call.command(CallCommand::Queue(Action::Pause { ms: 800 }));
    call.command(CallCommand::Queue(Action::SendDtmf { digits: "1".into() }));
    wait::emulator_leg(&pbx.url, "the transfer to the test line", WAIT, |leg| {
        leg["role"] == "transfer-target" && leg["extension"] == "501" && leg["state"] == "connected"
    })
    .await;
    // The emulator publishes its legs about once a second: the test line picked up at most
    // that long before now.
    let connected = wait::seconds_since(recording_started) - 1.0;
    // The test line announces itself, then echoes: a tone that outlasts the announcement (and
    // the silence before it) by the seconds we listen to the echo, then hang up.
    let announcement = wait::wav_seconds(&repo("prompts/test_line.wav"));
    let (margin, listen, tail) = (1.2, 2.0, 0.3);
    call.command(CallCommand::Queue(Action::Tone {
        hz: 1000.0,
        ms: ((announcement + margin + listen + tail) * 1000.0) as u32,
    }));
    call.command(CallCommand::Queue(Action::Hangup));
    let info = timeout(WAIT, call.ended())
        .await
        .expect("the call ends")
        .expect("the phone is up");
    assert_eq!(
        info.end.map(|end| end.reason.as_str()),
        Some("local_hangup"),
        "the call stayed up through the transfer"
    );

    let (far, rate) = channel(recording, 0);
    let (prompt, prompt_rate) = channel(&repo("prompts/test_line.wav"), 0);
    let expected = loud_seconds(&prompt, prompt_rate);
    let heard = slice(&far, rate, connected, connected + announcement + margin);
    assert!(
        loud_seconds(heard, rate) >= expected * 0.8,
        "the announcement: {:.2} s loud after the transfer, {expected:.2} s in test_line.wav",
        loud_seconds(heard, rate)
    );
    assert!(
        (dominant(heard, rate, 300, 1500) - 1000.0).abs() > 10.0,
        "what followed the transfer was the announcement, not our own tone"
    );
    let seconds = far.len() as f32 / rate as f32;
    let echoed = slice(&far, rate, seconds - tail - listen, seconds - tail);
    assert!(rms(echoed) > 0.02, "the echo is audible");
    let found = dominant(echoed, rate, 300, 1500);
    assert!(
        (found - 1000.0).abs() <= 10.0,
        "heard {found} Hz back, expected the test line's 1 kHz echo"
    );
}
