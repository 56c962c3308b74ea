//! End-to-end: headless Chromium runs the emulator's softphone page (a second, independent
//! implementation of the protocol) and calls the bots, is called by them, and calls another
//! browser. The browser's microphone is a 440 Hz WAV file.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use callbot::bench::browser::{Browser, Tab};
use callbot::protocol::Dialect;
use common::audio::{channel, dominant, rms};
use common::binary::{self, Process, files};
use common::{both_dialects, wait};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Where the tests keep screenshots people look at: `target/e2e/`.
fn artefact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/e2e")
        .join(name)
}

/// `callbot demo` on a free port, its bots recording into `dir`; returns it and its URL.
fn demo(dir: &Path, dialect: Dialect) -> (Process, String) {
    let process = binary::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--media-address",
        "127.0.0.1",
        "--dialect",
        dialect.as_str(),
        "--recordings",
        &dir.join("recordings").display().to_string(),
        "--open-test-api",
    ]);
    let output = process.wait_for("ACCESS_GRANTED", 4, WAIT);
    let url = output
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .expect("the demo prints its URL")
        .trim()
        .to_owned();
    (process, url)
}

/// A 440 Hz microphone: 48 kHz mono 16-bit, looped by Chromium.
fn microphone(dir: &Path) -> PathBuf {
    let path = dir.join("mic-440.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for sample in callbot::media::tone::sine(440.0, 48000, 4000) {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
    path
}

async fn state(browser: &mut Browser, tab: &Tab) -> Value {
    browser.eval(tab, "window.softphone.state()").await.unwrap()
}

async fn log_in(browser: &mut Browser, url: &str, extension: &str, autoanswer: bool) -> Tab {
    let page = format!(
        "{url}?ext={extension}&password={extension}&autologin=1{}",
        if autoanswer { "&autoanswer=1" } else { "" }
    );
    let tab = browser.open(&page).await.unwrap();
    browser
        .wait_for(
            &tab,
            "window.softphone && window.softphone.state().connection",
            WAIT,
            |v| v == "ACCESS_GRANTED",
        )
        .await
        .unwrap();
    tab
}

async fn call_state(browser: &mut Browser, tab: &Tab, want: &str) -> Value {
    browser
        .wait_for(
            tab,
            "(s => s.call ? s.call.state : null)(window.softphone.state())",
            WAIT,
            |v| v == want,
        )
        .await
        .unwrap()
}

/// Waits until the page hears audio: packets arrived and their energy is above zero.
async fn hears_audio(browser: &mut Browser, tab: &Tab) -> Value {
    browser
        .wait_for(tab, "window.softphone.audioStats()", WAIT, |v| {
            v["packetsReceived"].as_u64().unwrap_or(0) > 25
                && v["audioEnergy"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await
        .unwrap()
}

async fn last_logged(browser: &mut Browser, tab: &Tab) -> Value {
    browser
        .wait_for(tab, "window.softphone.state().log", WAIT, |log| {
            log.as_array().is_some_and(|l| !l.is_empty())
        })
        .await
        .unwrap()[0]
        .clone()
}

async fn browser_calls_the_ivr_and_is_transferred(dialect: Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, url) = demo(dir.path(), dialect);
    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let tab = log_in(&mut browser, &url, "502", false).await;
    assert_eq!(state(&mut browser, &tab).await["dialect"], dialect.as_str());

    browser
        .eval(&tab, "window.softphone.dial('500')")
        .await
        .unwrap();
    call_state(&mut browser, &tab, "IN_CALL").await;
    hears_audio(&mut browser, &tab).await;
    browser
        .screenshot(
            &tab,
            &artefact(&format!("softphone-ivr-{}.png", dialect.as_str())),
        )
        .await
        .unwrap();
    // The IVR records the browser's microphone: let a second of it reach the bot first.
    wait::emulator_leg(
        &url,
        "a second of the microphone sent to the IVR",
        WAIT,
        |leg| leg["extension"] == "500" && leg["packets_sent"].as_u64().is_some_and(|n| n >= 50),
    )
    .await;
    assert_eq!(
        browser
            .eval(&tab, "window.softphone.dtmf('1')")
            .await
            .unwrap(),
        true
    );

    // The IVR transfers the browser to the test line, which keeps sending audio.
    wait::emulator_leg(&url, "the transfer to 501", WAIT, |leg| {
        leg["role"] == "transfer-target" && leg["extension"] == "501" && leg["state"] == "connected"
    })
    .await;
    let at_transfer = browser
        .eval(&tab, "window.softphone.audioStats()")
        .await
        .unwrap();
    let received = |v: &Value| v["packetsReceived"].as_u64().unwrap_or(0);
    // audioEnergy is a running total: it grows only while something audible arrives.
    let energy = |v: &Value| v["audioEnergy"].as_f64().unwrap_or(0.0);
    browser
        .wait_for(&tab, "window.softphone.audioStats()", WAIT, |after| {
            received(after) > received(&at_transfer) + 100 && energy(after) > energy(&at_transfer)
        })
        .await
        .unwrap_or_else(|e| panic!("the test line is audible after the transfer: {e}"));
    call_state(&mut browser, &tab, "IN_CALL").await;
    // The page names the far end the PBX lists now: the test line, not the IVR.
    browser
        .wait_for(
            &tab,
            "(s => s.call && s.call.peer)(window.softphone.state())",
            WAIT,
            |peer| peer == "501",
        )
        .await
        .unwrap();
    browser
        .eval(&tab, "window.softphone.hangup()")
        .await
        .unwrap();
    let logged = last_logged(&mut browser, &tab).await;
    assert_eq!(logged["state"], "COMPLETED", "{logged}");

    // The IVR's records: the digit, the transfer, and the browser's 440 Hz microphone.
    let ivr = dir.path().join("recordings/ivr");
    let deadline = tokio::time::Instant::now() + WAIT;
    while files(&ivr, "json").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no IVR sidecar");
        tokio::time::sleep(wait::POLL).await;
    }
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(&files(&ivr, "json")[0]).unwrap()).unwrap();
    assert_eq!(sidecar["digits"], "1", "{sidecar}");
    assert_eq!(sidecar["reason"], "transferred", "{sidecar}");
    let (far, rate) = channel(&files(&ivr, "wav")[0], 0);
    assert!(
        rms(&far) > 0.02,
        "the browser's microphone reached the IVR's recording"
    );
    let found = dominant(&far, rate, 300, 1500);
    assert!(
        (found - 440.0).abs() <= 10.0,
        "the recording holds the 440 Hz microphone, found {found} Hz"
    );
}

both_dialects!(browser_calls_the_ivr_and_is_transferred);

const CALLER_BOT: &str = r#"// Calls extension 503 as soon as it comes online, greets it and hangs up.
fn on_client_state(client) {
    if client.number == "503" && client.status == "ONLINE" {
        bot.dial("503");
    }
}

fn on_call_state(call, state) {
    if state == "IN_CALL" {
        call.play("welcome.wav");
        call.hangup();
    }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_calls_the_browser_which_answers_and_hears_it() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = binary::emulator(dir.path(), Dialect::Modern);
    std::fs::write(dir.path().join("caller.rhai"), CALLER_BOT).unwrap();
    let bots = format!(
        "  - name: caller\n    extension: \"600\"\n    script: \"{}\"\n    allow_dial: [\"503\"]\n",
        dir.path().join("caller.rhai").display()
    );
    let config = binary::config(dir.path(), &pbx, &bots);
    let daemon = binary::daemon(&config, 1);
    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let tab = log_in(
        &mut browser,
        &format!("{}/", pbx.url.trim_end_matches('/')),
        "503",
        true,
    )
    .await;
    call_state(&mut browser, &tab, "IN_CALL").await;
    hears_audio(&mut browser, &tab).await;
    let logged = last_logged(&mut browser, &tab).await;
    assert_eq!(logged["state"], "COMPLETED", "{logged}");
    assert_eq!(logged["direction"], "inbound");
    assert_eq!(logged["peer"], "600");
    daemon.wait_for("ended: local_hangup", 1, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_see_each_other_and_talk() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, url) = demo(dir.path(), Dialect::Modern);
    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let a = log_in(&mut browser, &url, "503", false).await;
    let b = log_in(&mut browser, &url, "504", true).await;
    for (tab, other) in [(&a, "504"), (&b, "503")] {
        let presence = format!("window.softphone.state().presence['{other}']");
        browser
            .wait_for(tab, &presence, WAIT, |v| v == "ONLINE")
            .await
            .unwrap();
    }
    // The two-browser scenario this follows: one side calls after a random 0–200 ms delay.
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=200))).await;
    browser
        .eval(&a, "window.softphone.dial('504')")
        .await
        .unwrap();
    call_state(&mut browser, &a, "IN_CALL").await;
    call_state(&mut browser, &b, "IN_CALL").await;
    hears_audio(&mut browser, &a).await;
    hears_audio(&mut browser, &b).await;
    browser
        .screenshot(&a, &artefact("softphone-two-browsers.png"))
        .await
        .unwrap();
    browser.eval(&a, "window.softphone.hangup()").await.unwrap();
    for tab in [&a, &b] {
        let logged = last_logged(&mut browser, tab).await;
        assert_eq!(logged["state"], "COMPLETED", "{logged}");
    }
}

/// The emulator's call that `done` accepts, once there is one.
async fn wait_for_call(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait::until(what, WAIT, || async {
        let calls: Value = common::emulator_json(url, "calls").await;
        calls.as_array()?.iter().find(|c| done(c)).cloned()
    })
    .await
}

/// Whether `call` has a leg of `extension` in `role` and `state`.
fn has_leg(call: &Value, extension: &str, role: &str, state: &str) -> bool {
    call["legs"].as_array().unwrap().iter().any(|l| {
        l["extension"] == extension && (role.is_empty() || l["role"] == role) && l["state"] == state
    })
}

/// Waits until the sample page's peer connection is up and hears something.
async fn sample_hears_audio(browser: &mut Browser, tab: &Tab) -> Value {
    browser
        .wait_for(tab, "window.sample.audioStats()", WAIT, |v| {
            v["connection"] == "connected"
                && v["packetsReceived"].as_u64().unwrap_or(0) > 25
                && v["audioEnergy"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await
        .unwrap()
}

/// The sample client (`/sample.html`), which handles frames exactly as the vendor's sample
/// does, against the legacy demo: it connects and hears the IVR, its DTMF reaches the IVR
/// (which transfers it to the test line), it holds by closing its peer connection and resumes
/// with a new offer, it transfers the test line blind to the IVR and is released with `bye`;
/// a second call ends with its own `sip-bye`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_style_sample_client_works_against_the_legacy_demo() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, url) = demo(dir.path(), Dialect::Legacy);
    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let tab = browser
        .open(&format!("{url}sample.html?domain=localhost"))
        .await
        .unwrap();
    browser
        .wait_for(&tab, "typeof window.sample", WAIT, |v| v == "object")
        .await
        .unwrap();
    let logged_in = browser
        .eval(&tab, "window.sample.login('502', '502', 'localhost')")
        .await
        .unwrap();
    assert_eq!(logged_in, true);

    // Connected to the IVR, whose welcome is audible.
    browser
        .eval(&tab, "window.sample.call('500')")
        .await
        .unwrap();
    sample_hears_audio(&mut browser, &tab).await;
    let sdp_types = browser
        .eval(
            &tab,
            "window.sample.frames().filter(f => f.direction === 'in' && f.frame.sdp)
                .map(f => typeof f.frame.sdp)",
        )
        .await
        .unwrap();
    assert!(
        !sdp_types.as_array().unwrap().is_empty()
            && sdp_types.as_array().unwrap().iter().all(|t| t == "string"),
        "the PBX's SDP arrives as text: {sdp_types}"
    );

    // DTMF through RTCDTMFSender: the IVR hears 1 and transfers the call to the test line.
    assert_eq!(
        browser.eval(&tab, "window.sample.dtmf('1')").await.unwrap(),
        true
    );
    wait_for_call(&url, "the transfer to the test line", |c| {
        c["from"] == "502" && has_leg(c, "501", "transfer-target", "connected")
    })
    .await;

    // Hold: the page closes its peer connection; resume: a new offer in wrtc-hold, answered
    // with an `sdp` frame; the test line (which echoes) is heard again.
    browser.eval(&tab, "window.sample.hold()").await.unwrap();
    wait_for_call(&url, "the page holding", |c| {
        c["from"] == "502" && has_leg(c, "502", "caller", "holding")
    })
    .await;
    browser.eval(&tab, "window.sample.resume()").await.unwrap();
    wait_for_call(&url, "the page resuming", |c| {
        c["from"] == "502" && has_leg(c, "502", "caller", "connected")
    })
    .await;
    sample_hears_audio(&mut browser, &tab).await;

    // Blind transfer of the test line to the IVR: the page is released with `bye`.
    browser
        .eval(&tab, "window.sample.transfer('500')")
        .await
        .unwrap();
    browser
        .wait_for(&tab, "window.sample.state().ended", WAIT, |v| v == "remote")
        .await
        .unwrap();
    wait_for_call(&url, "the test line transferred to the IVR", |c| {
        c["from"] == "502"
            && has_leg(c, "502", "caller", "ended")
            && has_leg(c, "500", "transfer-target", "connected")
    })
    .await;

    // A second call, hung up by the page.
    browser
        .eval(&tab, "window.sample.call('501')")
        .await
        .unwrap();
    sample_hears_audio(&mut browser, &tab).await;
    browser.eval(&tab, "window.sample.hangup()").await.unwrap();
    wait_for_call(&url, "the page's hang-up ending the call", |c| {
        c["from"] == "502" && c["to"] == "501" && c["state"] == "ended"
    })
    .await;
    let events = common::emulator_json::<Value>(&url, "events").await;
    let from_page = |kind: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == kind && e["extension"] == "502")
    };
    for kind in ["hold", "reoffer", "transfer", "bye-response", "bye"] {
        assert!(from_page(kind), "no {kind} from the page: {events}");
    }

    // The IVR's record of the first call: the digit, and the transfer.
    let ivr = dir.path().join("recordings/ivr");
    let sidecar = wait::until("the IVR's sidecar with the digit", WAIT, || async {
        files(&ivr, "json").iter().find_map(|path| {
            let sidecar: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            (sidecar["digits"] == "1").then_some(sidecar)
        })
    })
    .await;
    assert_eq!(sidecar["reason"], "transferred", "{sidecar}");
}

const DASHBOARD_TOKEN: &str = "dashboard-test-token-5521";

/// The daemon's dashboard in Chromium, against a daemon with a live call and a finished,
/// recorded one: the live call with its state, codec and level; the recent call's waveform
/// drawn and its recording played in the page. The screenshot is docs/dashboard.png's source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_calls_and_plays_recordings() {
    use callbot::call::{Action, CallCommand};
    use callbot::protocol::CallState;

    let dir = tempfile::tempdir().unwrap();
    let pbx = binary::emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let bots = format!(
        "  - name: test-line\n    extension: \"501\"\n    script: \"{}\"\n    record: stereo\n",
        dir.path().join("test_line.rhai").display()
    );
    let config = binary::config(dir.path(), &pbx, &bots);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "bots:\n",
        "http: { listen: \"127.0.0.1:0\", token: \"${DASHBOARD_TOKEN}\" }\nbots:\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut command = binary::daemon_command(&config);
    command.env("DASHBOARD_TOKEN", DASHBOARD_TOKEN);
    let daemon = binary::daemon_from(command, 1);
    let log = daemon.wait_for("dashboard on http://", 1, WAIT);
    let address = log
        .split("dashboard on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();

    // The API wants the token.
    let unauthorized = common::insecure_http()
        .get(format!("http://{address}/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let caller = binary::phone(&pbx, "509", dir.path()).await;
    let talk = |call: &callbot::phone::PhoneCall| {
        call.command(CallCommand::Queue(Action::Play {
            prompt: binary::repo("prompts/welcome.wav"),
            loops: 50,
            for_gather: false,
        }));
    };
    // A first call, recorded for a few seconds, then hung up.
    let recordings = dir.path().join("recordings");
    let mut first = caller.dial("501");
    first.reach(CallState::InCall).await.unwrap();
    talk(&first);
    let wav = wait::until("the first recording", WAIT, || async {
        files(&recordings, "wav").into_iter().next()
    })
    .await;
    wait::wav_reaches(&wav, 3.0, WAIT).await;
    first.command(CallCommand::Stop);
    first.command(CallCommand::Queue(Action::Hangup));
    first.ended().await.unwrap();
    wait::until("the first call's CDR line", WAIT, || async {
        std::fs::read_to_string(recordings.join("cdr.jsonl"))
            .ok()
            .filter(|t| t.lines().count() == 1)
    })
    .await;
    // A second call stays up.
    let mut second = caller.dial("501");
    second.reach(CallState::InCall).await.unwrap();
    talk(&second);

    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let tab = browser
        .open(&format!("http://{address}/#token={DASHBOARD_TOKEN}"))
        .await
        .unwrap();
    let live = browser
        .wait_for(
            &tab,
            "window.dashboard && window.dashboard.status() && window.dashboard.status().bots[0].calls",
            WAIT,
            |calls| {
                calls.as_array().is_some_and(|c| {
                    c.len() == 1 && c[0]["state"] == "IN_CALL" && c[0]["level_dbfs"].is_number()
                })
            },
        )
        .await
        .unwrap();
    assert_eq!(live[0]["from"], "509", "{live}");
    assert!(live[0]["codec"].is_string(), "{live}");
    let bot = browser
        .eval(&tab, "window.dashboard.status().bots[0]")
        .await
        .unwrap();
    assert_eq!(bot["registered"], true, "{bot}");
    assert_eq!(bot["total_calls"], 2, "{bot}");
    // What the page shows: the live call's row and level meter, the recent call's waveform.
    browser
        .wait_for(
            &tab,
            "(() => { const m = document.querySelector('#live tbody tr[data-call] .meter'); \
             return m ? m.dataset.dbfs : ''; })()",
            WAIT,
            |dbfs| dbfs.as_str().is_some_and(|d| !d.is_empty()),
        )
        .await
        .unwrap();
    let inked = browser
        .wait_for(
            &tab,
            "(() => { const c = document.querySelector('#recent canvas'); \
             if (!c || !c.dataset.drawn) return 0; \
             const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; })()",
            WAIT,
            |inked| inked.as_u64().unwrap_or(0) > 200,
        )
        .await
        .unwrap();
    assert!(inked.as_u64().unwrap() > 200, "the waveform is drawn");
    browser
        .screenshot(&tab, &artefact("dashboard.png"))
        .await
        .unwrap();
    // The recording plays in the page (through its signed link).
    browser
        .eval(
            &tab,
            "(async () => { await document.querySelector('#recent audio').play(); return true; })()",
        )
        .await
        .unwrap();
    browser
        .wait_for(
            &tab,
            "document.querySelector('#recent audio').currentTime",
            WAIT,
            |t| t.as_f64().unwrap_or(0.0) > 1.0,
        )
        .await
        .unwrap();
    let duration = browser
        .eval(&tab, "document.querySelector('#recent audio').duration")
        .await
        .unwrap();
    assert!(
        duration.as_f64().unwrap_or(0.0) >= 3.0,
        "the player knows the recording's length: {duration}"
    );
    second.command(CallCommand::Stop);
    second.command(CallCommand::Queue(Action::Hangup));
    second.ended().await.unwrap();
}

/// The softphone keeps only the extension in localStorage unless asked for the password too,
/// and shows the others' presence as UNKNOWN (not a stale ONLINE) once the PBX is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_softphone_remembers_only_the_extension_and_knows_when_presence_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = binary::emulator(dir.path(), Dialect::Modern);
    let mut browser = Browser::launch(&microphone(dir.path())).await.unwrap();
    let url = format!("{}/", pbx.url.trim_end_matches('/'));
    let tab = browser.open(&url).await.unwrap();
    browser
        .wait_for(&tab, "!!window.softphone", WAIT, |v| v == true)
        .await
        .unwrap();
    browser
        .eval(
            &tab,
            "(() => { document.getElementById('login-ext').value = '504'; \
             document.getElementById('login-password').value = '504'; \
             document.getElementById('login-form').requestSubmit(); return true; })()",
        )
        .await
        .unwrap();
    browser
        .wait_for(&tab, "window.softphone.state().connection", WAIT, |v| {
            v == "ACCESS_GRANTED"
        })
        .await
        .unwrap();
    let stored = browser
        .eval(&tab, "localStorage.getItem('callbot.softphone')")
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(stored.as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({ "ext": "504" }));
    let presence = "window.softphone.state().presence";
    browser
        .wait_for(&tab, presence, WAIT, |p| p["500"] == "OFFLINE")
        .await
        .unwrap();
    // The PBX goes away: nobody's presence is known any more.
    pbx.process.kill();
    let unknown = browser
        .wait_for(&tab, presence, WAIT, |p| {
            p.as_object()
                .is_some_and(|p| !p.is_empty() && p.values().all(|v| v == "UNKNOWN"))
        })
        .await
        .unwrap();
    assert!(unknown.get("504").is_some(), "{unknown}");
}
