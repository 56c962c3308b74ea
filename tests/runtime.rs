//! The bot runtime through the real binary: `callbot run` with the example scripts against
//! `callbot pbx` (anchored media), callers being `callbot dial` or an in-process phone. Every
//! call test runs in both dialects.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;
use std::time::Duration;

use callbot::call::{Action, CallCommand, CallEvent};
use callbot::phone::{Phone, PhoneCall, PhoneEvent};
use callbot::protocol::{CallState, Dialect};
use common::audio::{channel, dominant, loud_seconds, onset, rms, slice};
use common::binary::{self, config, daemon, emulator, files, phone, script};
use common::{both_dialects, ivr, wait};
use serde_json::Value;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

async fn answered(call: &mut PhoneCall) {
    timeout(WAIT, call.reach(CallState::InCall))
        .await
        .expect("answered in time")
        .unwrap_or_else(|unreached| panic!("call not answered: {unreached:?}"));
}

/// The bot's sidecars, once there is at least one: a bot writes them after its side of the call
/// has closed its recording, which may be a moment after the far end saw the call end.
async fn sidecars(dir: &Path, bot: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = files(&dir.join("recordings").join(bot), "json");
        if !found.is_empty() || tokio::time::Instant::now() > deadline {
            return found
                .iter()
                .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const IVR: &str = r#"  - name: ivr
    extension: "500"
    script: "{dir}/ivr.rhai"
    record: stereo
    allow_dial: ["501", "509"]
    vars: { test_line: "501", operator: "509" }
"#;

const TEST_LINE: &str = r#"  - name: test-line
    extension: "501"
    script: "{dir}/test_line.rhai"
    record: stereo
"#;

fn bots(dir: &Path, templates: &[&str]) -> String {
    templates
        .iter()
        .map(|t| t.replace("{dir}", &dir.display().to_string()))
        .collect()
}

async fn dial_2_at_the_ivr_hears_welcome_and_goodbye(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    script(dir.path(), "ivr.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[IVR]));
    let _daemon = daemon(&config, 1);
    let recording = dir.path().join("r.wav");
    let (status, stdout) = tokio::task::spawn_blocking({
        let args = [
            "dial".into(),
            "--pbx".into(),
            pbx.url.clone(),
            "--domain".into(),
            "localhost".into(),
            "--ca-file".into(),
            pbx.cert.display().to_string(),
            "--to".into(),
            "500".into(),
            "--dtmf".into(),
            "2".into(),
            "--media-address".into(),
            "127.0.0.1".into(),
            "--record".into(),
            recording.display().to_string(),
        ];
        move || binary::run_to_end(&args, WAIT)
    })
    .await
    .unwrap();
    assert!(status.success(), "dial failed:\n{stdout}");
    assert!(stdout.contains("state IN_CALL"), "{stdout}");
    assert!(
        stdout.contains("ended: remote_hangup"),
        "the IVR hung up: {stdout}"
    );

    // The welcome prompt, whole, first in what the IVR sent: from the moment it becomes
    // audible (when the IVR's media came up), for the prompt's length.
    let (far, rate) = channel(&recording, 0);
    let (welcome, welcome_rate) = channel(&binary::repo("prompts/welcome.wav"), 0);
    let expected = loud_seconds(&welcome, welcome_rate);
    let length = welcome.len() as f32 / welcome_rate as f32;
    let start = onset(&far, rate).expect("the IVR's prompt is audible");
    let heard = loud_seconds(slice(&far, rate, start, start + length), rate);
    assert!(
        heard >= expected * 0.8,
        "welcome: {heard:.2} s loud in the recording from {start:.2} s, {expected:.2} s in the prompt"
    );
    assert!(
        rms(slice(&far, rate, start, start + length)) > 0.02,
        "the welcome prompt is audible"
    );

    let sidecars = sidecars(dir.path(), "ivr").await;
    assert_eq!(sidecars.len(), 1, "{sidecars:?}");
    assert_eq!(sidecars[0]["digits"], "2");
    assert_eq!(sidecars[0]["reason"], "local_hangup");
    // The CDR line follows the sidecar.
    let cdr_path = dir.path().join("recordings/cdr.jsonl");
    let deadline = tokio::time::Instant::now() + WAIT;
    let cdr = loop {
        let text = std::fs::read_to_string(&cdr_path).unwrap_or_default();
        if !text.is_empty() || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!cdr.is_empty(), "a CDR line");
    assert!(
        cdr.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{cdr}"
    );
}
both_dialects!(dial_2_at_the_ivr_hears_welcome_and_goodbye);

async fn menu_1_transfers_to_the_test_line_which_echoes(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    script(dir.path(), "ivr.rhai");
    script(dir.path(), "test_line.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[IVR, TEST_LINE]));
    let _daemon = daemon(&config, 2);
    let caller = phone(&pbx, "502", dir.path()).await;
    ivr::press_1_and_hear_the_test_line(&pbx, &caller, &dir.path().join("caller.wav")).await;
    let ivr = sidecars(dir.path(), "ivr").await;
    assert_eq!(ivr[0]["digits"], "1");
    assert_eq!(ivr[0]["reason"], "transferred");
}
both_dialects!(menu_1_transfers_to_the_test_line_which_echoes);

const GREETERS: &str = r#"  - name: greeter-a
    extension: "600"
    script: "{dir}/greeter.rhai"
    record: stereo
    allow_dial: ["601"]
    vars: { peer: "601", role: caller, greeting: greeting_a.wav }
  - name: greeter-b
    extension: "601"
    script: "{dir}/greeter.rhai"
    record: stereo
    vars: { peer: "600", role: callee, greeting: greeting_b.wav }
"#;

async fn greeters_see_each_other_call_and_record_each_other(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    script(dir.path(), "greeter.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[GREETERS]));
    let daemon = daemon(&config, 2);
    let log = daemon.wait_for("is ONLINE", 2, WAIT);
    assert!(log.contains("Greeter B (601) is ONLINE"), "{log}");
    assert!(log.contains("Greeter A (600) is ONLINE"), "{log}");
    // The bots' own end-of-call lines come after the recordings are closed.
    daemon.wait_for("→ 601) ended: local_hangup", 1, WAIT);
    daemon.wait_for("→ 601) ended: remote_hangup", 1, WAIT);
    for (bot, greeting) in [
        ("greeter-a", "greeting_b.wav"),
        ("greeter-b", "greeting_a.wav"),
    ] {
        let recordings = files(&dir.path().join("recordings").join(bot), "wav");
        assert_eq!(recordings.len(), 1, "{bot}: {recordings:?}");
        let (far, rate) = channel(&recordings[0], 0);
        let (prompt, prompt_rate) = channel(&binary::repo(&format!("prompts/{greeting}")), 0);
        let expected = loud_seconds(&prompt, prompt_rate);
        let heard = loud_seconds(&far, rate);
        assert!(
            heard >= expected * 0.8 && heard <= expected * 1.3,
            "{bot} recorded {heard:.2} s of the other's greeting, which is {expected:.2} s"
        );
    }
}
both_dialects!(greeters_see_each_other_call_and_record_each_other);

const BROKEN: &str = r#"  - name: thrower
    extension: "505"
    script: "{dir}/thrower.rhai"
  - name: looper
    extension: "506"
    script: "{dir}/looper.rhai"
  - name: missing
    extension: "507"
    script: "{dir}/missing.rhai"
  - name: dialer
    extension: "508"
    script: "{dir}/dialer.rhai"
    allow_dial: ["5??"]
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Calls `number`; once answered, the caller stays for `talk` (on its own media clock) and
/// hangs up. Returns how the call ended.
async fn final_state(caller: &Phone, number: &str, talk: Duration) -> (CallState, Option<u16>) {
    let mut call = caller.dial(number);
    loop {
        let event = timeout(WAIT, call.next()).await.expect("call progresses");
        match event {
            Some(PhoneEvent::Call(_, CallEvent::State(CallState::InCall))) => {
                if !talk.is_zero() {
                    let ms = u32::try_from(talk.as_millis()).expect("a short talk");
                    call.command(CallCommand::Queue(Action::Pause { ms }));
                }
                call.command(CallCommand::Queue(Action::Hangup));
            }
            Some(PhoneEvent::Ended(info)) => {
                return (
                    info.state.unwrap(),
                    info.end.and_then(|e| e.code).map(|c| c.0),
                );
            }
            Some(_) => {}
            None => panic!("call vanished"),
        }
    }
}

async fn script_errors_are_reported_and_the_daemon_goes_on(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    write(
        dir.path(),
        "thrower.rhai",
        "fn on_incoming_call(call) {\n    call.answer();\n    throw \"no such customer\";\n}\n",
    );
    write(
        dir.path(),
        "looper.rhai",
        "fn on_incoming_call(call) {\n    let n = 0;\n    loop { n += 1; }\n}\n",
    );
    write(
        dir.path(),
        "missing.rhai",
        "fn on_incoming_call(call) {\n    call.answer();\n    call.play(\"no-such-prompt.wav\");\n    call.tone(440, 3000);\n}\nfn on_play_done(call, prompt) {\n    bot.log(`play_error=${call.play_error}`);\n}\n",
    );
    write(
        dir.path(),
        "dialer.rhai",
        "fn on_incoming_call(call) {\n    call.answer();\n    bot.dial(\"0900123456\");\n}\n",
    );
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[BROKEN]));
    let daemon = daemon(&config, 4);
    let caller = phone(&pbx, "502", dir.path()).await;

    let (state, code) = final_state(&caller, "505", Duration::ZERO).await;
    assert_eq!(
        (state, code),
        (CallState::Rejected, Some(500)),
        "a failing on_incoming_call rejects with 500"
    );
    daemon.wait_for("thrower.rhai:3:", 1, WAIT);
    assert!(daemon.output().contains("no such customer"));

    let (state, code) = final_state(&caller, "506", Duration::ZERO).await;
    assert_eq!((state, code), (CallState::Rejected, Some(500)));
    // A budget error has no position of its own: the handler's line is named. Which budget
    // runs out first, operations or time, depends on how busy the machine is.
    let log = daemon.wait_for("looper.rhai:1:", 1, WAIT);
    assert!(
        log.contains("operations budget") || log.contains("time budget"),
        "{log}"
    );

    let (state, _) = final_state(&caller, "507", Duration::from_millis(1500)).await;
    assert_eq!(
        state,
        CallState::Completed,
        "a missing prompt does not end the call"
    );
    let log = daemon.wait_for("play_error=", 1, WAIT);
    assert!(log.contains("no-such-prompt.wav"), "{log}");

    // Dialling a number outside allow_dial raises a script error: the incoming call whose
    // handler failed is rejected with 500 (docs/scripting.md "Limits and errors").
    let (state, code) = final_state(&caller, "508", Duration::ZERO).await;
    assert_eq!((state, code), (CallState::Rejected, Some(500)));
    let log = daemon.wait_for("dialer.rhai:3:", 1, WAIT);
    assert!(log.contains("not in allow_dial"), "{log}");
    let events: Vec<Value> = common::emulator_json(&pbx.url, "events").await;
    assert!(
        events.iter().any(|e| e["kind"] == "dial"),
        "the emulator journals dials: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e["detail"]["to"] == "0900123456"),
        "nothing was dialled: {events:?}"
    );

    // The daemon is still serving: the bots are all still up and answer.
    let (state, _) = final_state(&caller, "507", Duration::from_millis(300)).await;
    assert_eq!(state, CallState::Completed);
}
both_dialects!(script_errors_are_reported_and_the_daemon_goes_on);

const VERSIONED: &str = r#"  - name: versioned
    extension: "500"
    script: "{dir}/versioned.rhai"
"#;

fn versioned(version: &str) -> String {
    format!(
        "fn on_incoming_call(call) {{\n    call.answer();\n    call.set_timer(\"report\", 2500);\n}}\n\
         fn on_call_timer(call, name) {{\n    bot.log(\"handled by {version}\");\n    call.hangup();\n}}\n"
    )
}

async fn an_edited_script_applies_to_the_next_call_only(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    write(dir.path(), "versioned.rhai", &versioned("version one"));
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[VERSIONED]));
    let daemon = daemon(&config, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut live = caller.dial("500");
    answered(&mut live).await;
    write(dir.path(), "versioned.rhai", &versioned("version two"));
    daemon.wait_for("reloaded", 1, WAIT);
    timeout(WAIT, live.ended()).await.unwrap().unwrap();
    let log = daemon.wait_for("handled by", 1, WAIT);
    assert!(
        log.contains("handled by version one"),
        "the live call keeps its code:\n{log}"
    );
    let mut next = caller.dial("500");
    answered(&mut next).await;
    timeout(WAIT, next.ended()).await.unwrap().unwrap();
    let log = daemon.wait_for("handled by", 2, WAIT);
    assert!(
        log.contains("handled by version two"),
        "the next call runs the new code:\n{log}"
    );

    // A script that no longer compiles keeps the last good one running.
    write(
        dir.path(),
        "versioned.rhai",
        "fn on_incoming_call(call) {\n    call.answer(\n}\n",
    );
    daemon.wait_for("not reloaded", 1, WAIT);
    let mut after = caller.dial("500");
    answered(&mut after).await;
    timeout(WAIT, after.ended()).await.unwrap().unwrap();
    daemon.wait_for("handled by version two", 2, WAIT);
}
both_dialects!(an_edited_script_applies_to_the_next_call_only);

async fn sigterm_lets_the_call_finish_closes_the_recording_and_exits_0(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    script(dir.path(), "test_line.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[TEST_LINE]));
    let mut daemon = daemon(&config, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("501");
    answered(&mut call).await;
    // The caller sends a 4 s tone, then hangs up; the daemon is stopped while it records.
    call.command(CallCommand::Queue(Action::Tone {
        hz: 500.0,
        ms: 4000,
    }));
    call.command(CallCommand::Queue(Action::Hangup));
    let recordings = dir.path().join("recordings/test-line");
    let recording = wait::until("the bot's recording", WAIT, || async {
        files(&recordings, "wav").pop()
    })
    .await;
    wait::wav_reaches(&recording, 1.0, WAIT).await;
    daemon.ask_to_stop();
    daemon.wait_for("shutting down: no new calls", 1, WAIT);
    let stopping = std::thread::spawn(move || {
        let status = daemon.wait(Duration::from_secs(20));
        (status, daemon.output())
    });
    // New calls are refused while the daemon winds down; the live call goes on to its end.
    let mut refused = caller.dial("501");
    let info = timeout(WAIT, refused.ended()).await.unwrap().unwrap();
    assert_eq!(info.state, Some(CallState::Busy), "{:?}", info.end);
    let info = timeout(WAIT, call.ended()).await.unwrap().unwrap();
    assert_eq!(
        info.end.unwrap().reason.as_str(),
        "local_hangup",
        "the caller, not the stopping daemon, ended the call"
    );
    let (status, output) = stopping.join().unwrap();
    assert!(status.success(), "exit status {status}:\n{output}");
    let recordings = files(&dir.path().join("recordings/test-line"), "wav");
    assert_eq!(recordings.len(), 1);
    let (far, rate) = channel(&recordings[0], 0);
    let seconds = far.len() as f32 / rate as f32;
    assert!(
        seconds > 2.5,
        "the recording runs to the end of the call: {seconds} s"
    );
    assert!((dominant(slice(&far, rate, 0.5, 2.5), rate, 300, 1500) - 500.0).abs() <= 10.0);
}
both_dialects!(sigterm_lets_the_call_finish_closes_the_recording_and_exits_0);

/// Waits for an emulator event of `kind` about `extension`.
async fn emulator_event(url: &str, kind: &str, extension: &str) {
    wait::until(&format!("{kind} of {extension}"), WAIT, || async {
        let events: Value = common::emulator_json(url, "events").await;
        events
            .as_array()?
            .iter()
            .any(|e| e["kind"] == kind && e["extension"] == extension)
            .then_some(())
    })
    .await;
}

/// The lines of a `cdr.jsonl` so far.
fn cdr(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn record_to(path: &Path) -> CallCommand {
    CallCommand::Record {
        path: Some(path.to_owned()),
        stereo: true,
        max_secs: None,
    }
}

/// Menu 0: the IVR holds the caller, calls the operator, announces the caller and connects the
/// two with an attended transfer. Caller and operator then hear each other; the IVR's two legs
/// are gone.
async fn menu_0_connects_the_caller_with_the_operator(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    script(dir.path(), "ivr.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[IVR]));
    let _daemon = daemon(&config, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut operator = phone(&pbx, "509", dir.path()).await;
    let mut call = caller.dial("500");
    answered(&mut call).await;
    call.command(CallCommand::Queue(Action::SendDtmf { digits: "0".into() }));
    let mut desk = timeout(WAIT, operator.incoming())
        .await
        .expect("the IVR calls the operator")
        .expect("phone alive");
    desk.command(CallCommand::Answer);
    answered(&mut desk).await;

    // After the announcement, the transfer: the caller's call now has the operator on it.
    emulator_event(&pbx.url, "att-transfer", "500").await;
    let calls: Value = common::emulator_json(&pbx.url, "calls").await;
    let calls = calls.as_array().unwrap();
    let leg = |call: &Value, extension: &str| {
        call["legs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["extension"] == extension)
            .cloned()
            .unwrap_or_default()
    };
    let inbound = calls.iter().find(|c| c["from"] == "502").unwrap();
    assert_eq!(leg(inbound, "500")["state"], "ended", "{inbound}");
    let joined = leg(inbound, "509");
    assert_eq!(
        (joined["role"].as_str(), joined["state"].as_str()),
        (Some("joined"), Some("connected")),
        "{inbound}"
    );
    assert_eq!(joined["bridged_to"], leg(inbound, "502")["callid"]);
    let to_operator = calls.iter().find(|c| c["to"] == "509").unwrap();
    assert_eq!(to_operator["state"], "ended", "{to_operator}");
    let cdr_path = dir.path().join("recordings/cdr.jsonl");
    let cdr = wait::until("the IVR's two CDR lines", WAIT, || async {
        Some(cdr(&cdr_path)).filter(|lines| lines.len() >= 2)
    })
    .await;
    assert!(
        cdr.iter().all(|c| c["reason"] == "transferred"),
        "both of the IVR's calls ended as transferred: {cdr:?}"
    );

    // Caller (440 Hz) and operator (1 kHz) talk; the caller hangs up after its tone.
    let (heard_by_caller, heard_by_operator) = (
        dir.path().join("caller.wav"),
        dir.path().join("operator.wav"),
    );
    call.command(record_to(&heard_by_caller));
    desk.command(record_to(&heard_by_operator));
    desk.command(CallCommand::Queue(Action::Tone {
        hz: 1000.0,
        ms: 2500,
    }));
    call.command(CallCommand::Queue(Action::Tone {
        hz: 440.0,
        ms: 2500,
    }));
    call.command(CallCommand::Queue(Action::Hangup));
    for (side, ended) in [("caller", &mut call), ("operator", &mut desk)] {
        let info = timeout(WAIT, ended.ended()).await.unwrap().unwrap();
        assert!(info.answered.is_some(), "{side}: {:?}", info.end);
    }
    for (recording, expected) in [(&heard_by_caller, 1000.0), (&heard_by_operator, 440.0)] {
        let (far, rate) = channel(recording, 0);
        let middle = slice(&far, rate, 0.7, 1.9);
        assert!(rms(middle) > 0.02, "{}: silence", recording.display());
        let found = dominant(middle, rate, 300, 1500);
        assert!(
            (found - expected).abs() <= 10.0,
            "{}: heard {found} Hz, expected {expected}",
            recording.display()
        );
    }
}
both_dialects!(menu_0_connects_the_caller_with_the_operator);

/// Several daemons with the same bots: every registration of the IVR's extension rings, the
/// first answer wins, so the daemons share the calls; when one is killed, the other takes
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_with_the_same_ivr_share_the_calls_and_survive_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    script(dir.path(), "ivr.rhai");
    let ivr = bots(dir.path(), &[IVR]);
    let mut daemons: Vec<(std::path::PathBuf, binary::Process)> = ["a", "b"]
        .iter()
        .map(|name| {
            let home = dir.path().join(name);
            std::fs::create_dir_all(&home).unwrap();
            let config = config(&home, &pbx, &ivr);
            (home.join("recordings/cdr.jsonl"), daemon(&config, 1))
        })
        .collect();
    let caller = phone(&pbx, "502", dir.path()).await;
    // The calls each daemon's IVR took (the other daemon's fork got `cancel`).
    let taken = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["reason"] == "remote_hangup")
            .count()
    };
    let answered_calls = |count: usize| {
        let caller = &caller;
        async move {
            for _ in 0..count / 5 {
                futures_util::future::join_all((0..5).map(|_| async {
                    let mut call = caller.dial("500");
                    answered(&mut call).await;
                    call.command(CallCommand::Queue(Action::Hangup));
                    timeout(WAIT, call.ended()).await.expect("the call ends");
                }))
                .await;
            }
        }
    };

    answered_calls(20).await;
    let (a_cdr, b_cdr) = (daemons[0].0.clone(), daemons[1].0.clone());
    let (by_a, by_b) = wait::until("a CDR line for every call", WAIT, || async {
        let taken = (taken(&cdr(&a_cdr)), taken(&cdr(&b_cdr)));
        (taken.0 + taken.1 >= 20).then_some(taken)
    })
    .await;
    assert_eq!(by_a + by_b, 20, "each call answered once");
    assert!(
        by_a > 0 && by_b > 0,
        "both daemons answered: {by_a} and {by_b}"
    );

    daemons[0].1.kill();
    emulator_event(&pbx.url, "socket-closed", "500").await;
    answered_calls(10).await;
    let by_b_after = wait::until("the survivor's CDR lines", WAIT, || async {
        Some(taken(&cdr(&b_cdr))).filter(|n| *n >= by_b + 10)
    })
    .await;
    assert_eq!(by_b_after, by_b + 10, "the survivor took the next 10");
}

const BUSY_DIALER: &str = r#"  - name: dialer
    extension: "500"
    script: "{dir}/busy_dialer.rhai"
    max_calls: 1
    allow_dial: ["503"]
"#;

/// `max_calls` limits ringing calls *to* the bot: a call the bot places itself (a campaign
/// dial, a greeter's call) does not use up the capacity its callers have.
async fn outbound_calls_do_not_count_against_max_calls(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), dialect);
    write(
        dir.path(),
        "busy_dialer.rhai",
        "fn on_connection_state(state) {\n    if state == \"ACCESS_GRANTED\" { bot.dial(\"503\"); }\n}\n\
         fn on_incoming_call(call) {\n    call.answer();\n}\n",
    );
    // 503 lets the bot's call ring (and never answers), so it stays live during the test.
    let mut callee = phone(&pbx, "503", dir.path()).await;
    let config = config(dir.path(), &pbx, &bots(dir.path(), &[BUSY_DIALER]));
    let _daemon = daemon(&config, 1);
    let _ringing = timeout(WAIT, callee.incoming())
        .await
        .expect("the bot dials 503")
        .expect("the phone is up");
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("500");
    answered(&mut call).await;
    call.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap().unwrap();
}
both_dialects!(outbound_calls_do_not_count_against_max_calls);
