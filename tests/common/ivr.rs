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
    let connected = (wait::seconds_since(recording_started) - 1.0).max(0.0);
    // The test line announces itself (nothing else the caller hears since the transfer is
    // loud: we send nothing yet), then echoes.
    let (prompt, prompt_rate) = channel(&repo("prompts/test_line.wav"), 0);
    let expected = loud_seconds(&prompt, prompt_rate);
    wait::until("the test line's announcement", WAIT, || async {
        let (far, rate) = recorded(recording)?;
        let heard = loud_seconds(slice(&far, rate, connected, f32::MAX), rate);
        (heard >= expected * 0.8).then_some(())
    })
    .await;
    // Then a tone that outlasts the rest of the announcement (and the recording's lag) by the
    // seconds we listen to its echo, and hang up.
    let (margin, listen, tail) = (2.0, 2.0, 0.3);
    call.command(CallCommand::Queue(Action::Tone {
        hz: 1000.0,
        ms: ((margin + listen + tail) * 1000.0) as u32,
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
    let seconds = far.len() as f32 / rate as f32;
    let echoed = slice(&far, rate, seconds - tail - listen, seconds - tail);
    assert!(rms(echoed) > 0.02, "the echo is audible");
    let found = dominant(echoed, rate, 300, 1500);
    assert!(
        (found - 1000.0).abs() <= 10.0,
        "heard {found} Hz back, expected the test line's 1 kHz echo"
    );
}

/// The far end's channel of a recording still being written, as far as its header says;
/// `None` while it is not a WAV yet.
fn recorded(path: &std::path::Path) -> Option<(Vec<f32>, u32)> {
    let mut reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels).max(1);
    let samples: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    let far = samples
        .chunks(channels)
        .map(|frame| f32::from(frame[0]) / 32768.0)
        .collect();
    Some((far, spec.sample_rate))
}
