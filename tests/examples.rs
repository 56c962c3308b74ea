//! The example config as a new user runs it: `callbot run -c bots.example.yaml` against the
//! emulator, a caller dials the IVR (500), presses 1 and is put through to the test line,
//! which it hears announce itself and then echo.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;
use std::time::Duration;

use callbot::call::{Action, CallCommand};
use callbot::protocol::{CallState, Dialect};
use common::audio::{channel, dominant, loud_seconds, rms, slice};
use common::binary::{self, daemon, emulator, phone};
use common::wait;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

/// Copies the files of `folder` (scripts, prompts) from the repository into `dir`.
fn copy_folder(folder: &str, dir: &Path) {
    let to = dir.join(folder);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(binary::repo(folder)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// bots.example.yaml beside copies of scripts/ and prompts/ in `dir`, changed only where a
/// test must: the emulator's URL and an OS-chosen metrics port.
fn example_config(dir: &Path, pbx_url: &str) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(binary::repo("bots.example.yaml")).unwrap();
    for (example, here) in [
        ("url: https://127.0.0.1:8443", format!("url: {pbx_url}")),
        ("listen: 127.0.0.1:9100", "listen: 127.0.0.1:0".to_owned()),
    ] {
        assert_eq!(text.matches(example).count(), 1, "{example} in the example");
        text = text.replace(example, &here);
    }
    copy_folder("scripts", dir);
    copy_folder("prompts", dir);
    let config = dir.join("bots.example.yaml");
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_ivr_puts_key_1_through_to_the_test_line() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    let config = example_config(dir.path(), &pbx.url);
    let _daemon = daemon(&config, 2);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("500");
    timeout(WAIT, call.reach(CallState::InCall))
        .await
        .expect("answered in time")
        .unwrap_or_else(|unreached| panic!("the IVR did not answer: {unreached}"));
    let recording = dir.path().join("caller.wav");
    call.command(CallCommand::Record {
        path: Some(recording.clone()),
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
    // The test line announces itself, then echoes: a tone that outlasts the announcement by
    // the seconds we listen to the echo, then hang up.
    let announcement = wait::wav_seconds(&binary::repo("prompts/test_line.wav"));
    let (margin, listen, tail) = (1.2, 2.0, 0.3);
    call.command(CallCommand::Queue(Action::Tone {
        hz: 1000.0,
        ms: ((announcement + margin + listen + tail) * 1000.0) as u32,
    }));
    call.command(CallCommand::Queue(Action::Hangup));
    let info = timeout(WAIT, call.ended()).await.unwrap().unwrap();
    assert_eq!(
        info.end.map(|end| end.reason.as_str()),
        Some("local_hangup"),
        "the call stayed up through the transfer"
    );

    let (far, rate) = channel(&recording, 0);
    let (prompt, prompt_rate) = channel(&binary::repo("prompts/test_line.wav"), 0);
    let expected = loud_seconds(&prompt, prompt_rate);
    let heard = slice(&far, rate, connected, connected + announcement + margin);
    assert!(
        loud_seconds(heard, rate) >= expected * 0.8,
        "the announcement: {:.2} s loud after the transfer, {expected:.2} s in test_line.wav",
        loud_seconds(heard, rate)
    );
    let found = dominant(heard, rate, 300, 1500);
    assert!(
        (found - 1000.0).abs() > 10.0,
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
