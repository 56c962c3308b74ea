//! Voice agents: calls streamed to a WebSocket agent in the Twilio Media Streams format. The
//! agent is ours (tests/common/agent.rs): it checks the shape of every message it gets.
//!
//! Through the real binaries (emulator, daemon, demo): scripts/agent.rhai streams a caller to
//! the agent, who hears every message as Twilio sends it and echoes the caller 200 ms later; a
//! dead agent makes the script apologise and transfer; the demo's line 604 echoes. On two legs
//! of one process (an Opus call): the agent's audio, its marks after their audio, `clear`
//! within a tick, a flood beyond the buffer, and agents that are dead or crash mid-call.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callbot::call::{Action, CallCommand};
use callbot::config::{DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, LinkSettings, tls};
use callbot::media::RecordOptions;
use callbot::media::codec::Codec;
use callbot::media::player::Outcome;
use callbot::phone::{Phone, PhoneCall};
use callbot::protocol::CallState;
use callbot::voice::{Stream, StreamEvent, StreamRequest, StreamSettings, Tracks};
use common::agent::{Received, TestAgent, loud, tone};
use common::audio::{channel, dominant, loud_seconds, onset, rms, slice};
use common::binary::{self, config_with_http, daemon_from, emulator, metrics_address, phone};
use common::emulator::media_runtime;
use common::legs;
use common::wait;
use serde_json::json;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "tok-s3cret-7140";
const API_KEY: &str = "key-s3cret-9921";

/// scripts/agent.rhai on extension 602, with a token and a key for the agent from the
/// environment, and the operator 509 as the fallback.
fn agent_bot(dir: &Path, agent_url: &str) -> String {
    let script = binary::script(dir, "agent.rhai");
    format!(
        r#"  - name: agent
    extension: "602"
    script: "{script}"
    allow_dial: ["509"]
    vars: {{ agent_url: "{agent_url}", fallback: "509" }}
    stream:
      headers: {{ Authorization: "Bearer ${{AGENT_TOKEN}}" }}
      params: {{ api_key: "${{AGENT_KEY}}" }}
"#,
        script = script.display()
    )
}

fn agent_daemon(config: &Path) -> binary::Process {
    let mut command = binary::daemon_command(config);
    command
        .env("AGENT_TOKEN", TOKEN)
        .env("AGENT_KEY", API_KEY)
        .arg("-v");
    daemon_from(command, 1)
}

async fn answered(call: &mut PhoneCall) {
    timeout(WAIT, call.reach(CallState::InCall))
        .await
        .expect("answered in time")
        .unwrap_or_else(|unreached| panic!("not answered: {unreached}"));
}

fn record_to(path: &Path) -> CallCommand {
    CallCommand::Record {
        path: Some(path.to_owned()),
        stereo: true,
        max_secs: None,
    }
}

fn digits(received: &[Received]) -> String {
    received
        .iter()
        .filter(|r| r.event() == "dtmf")
        .filter_map(|r| r.message["dtmf"]["digit"].as_str())
        .collect()
}

/// Asserts that `far` (what a caller heard) holds `hz` from where sound starts, for `seconds`.
fn heard(far: &[f32], rate: u32, hz: f32, seconds: f32, what: &str) {
    let start = onset(far, rate).unwrap_or_else(|| panic!("{what}: the caller heard nothing"));
    let part = slice(far, rate, start + 0.1, start + seconds);
    assert!(rms(part) > 0.02, "{what}: too quiet");
    let found = dominant(part, rate, 300, 1500);
    assert!(
        (found - hz).abs() <= 10.0,
        "{what}: heard {found} Hz, expected {hz}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_streamed_to_an_agent_is_heard_in_twilios_format_and_hears_itself_back() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), callbot::protocol::Dialect::Modern);
    let mut agent = TestAgent::start().await;
    let config = config_with_http(dir.path(), &pbx, &agent_bot(dir.path(), &agent.url));
    let daemon = agent_daemon(&config);
    let caller = phone(&pbx, "503", dir.path()).await;

    let serve = tokio::spawn(async move {
        let mut stream = agent.stream().await;
        stream.started().await;
        // The caller's audio comes back 200 ms later, until the bot says stop.
        let stop = stream
            .echo_until(Duration::from_millis(200), |r| r.event() == "stop")
            .await;
        assert!(stop.is_some(), "stop came before the socket closed");
        assert!(stream.next().await.is_none(), "the bot closes after stop");
        stream
    });

    let mut call = caller.dial("602");
    answered(&mut call).await;
    let recording = dir.path().join("caller.wav");
    call.command(record_to(&recording));
    for action in [
        Action::Tone {
            hz: 1000.0,
            ms: 2500,
        },
        Action::Pause { ms: 600 },
        Action::SendDtmf {
            digits: "12".into(),
        },
        Action::Pause { ms: 800 },
        Action::Hangup,
    ] {
        call.command(CallCommand::Queue(action));
    }
    let info = timeout(WAIT, call.ended()).await.unwrap().unwrap();
    assert_eq!(info.end.unwrap().reason.as_str(), "local_hangup");

    let stream = timeout(WAIT, serve).await.unwrap().unwrap();
    let auth = stream.headers.get("authorization").expect("the token");
    assert_eq!(auth.to_str().unwrap(), format!("Bearer {TOKEN}"));
    assert_eq!(stream.start["accountSid"], "agent");
    assert_eq!(stream.start["tracks"], json!(["inbound"]));
    assert_eq!(
        stream.start["customParameters"],
        json!({"from": "503", "bot": "agent", "api_key": API_KEY})
    );
    assert_eq!(
        digits(&stream.received),
        "12",
        "keys arrive as dtmf messages"
    );
    let inbound = stream
        .received
        .iter()
        .filter(|r| r.event() == "media")
        .count();
    assert!(
        inbound >= 150,
        "the caller's 3.9 s reached the agent as 20 ms messages: {inbound}"
    );

    let (far, rate) = channel(&recording, 0);
    heard(&far, rate, 1000.0, 2.0, "the echo of the caller's tone");

    // The token and key were sent, and never logged.
    let address = metrics_address(&daemon);
    let log = daemon.output();
    assert!(log.contains("streaming to ws://"), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains(API_KEY), "{log}");
    let metrics = wait::until("the stream's metrics", WAIT, || async {
        let text = common::insecure_http()
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(r#"callbot_open_streams{bot="agent"} 0"#)
            .then_some(text)
    })
    .await;
    for direction in ["to_agent", "from_agent"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    r#"callbot_stream_media_messages_total{{bot="agent",direction="{direction}"}}"#
                ))
            })
            .unwrap_or_else(|| panic!("{direction} messages counted:\n{metrics}"));
        let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 100.0, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_agent_down_agent_rhai_apologises_and_transfers_to_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), callbot::protocol::Dialect::Modern);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}/", listener.local_addr().unwrap())
    };
    let config = binary::config(dir.path(), &pbx, &agent_bot(dir.path(), &dead));
    let daemon = agent_daemon(&config);
    let caller = phone(&pbx, "503", dir.path()).await;
    let mut operator = phone(&pbx, "509", dir.path()).await;

    let mut call = caller.dial("602");
    answered(&mut call).await;
    let recording = dir.path().join("caller.wav");
    call.command(record_to(&recording));
    let mut desk = timeout(WAIT, operator.incoming())
        .await
        .expect("the call goes on to the operator")
        .expect("phone alive");
    desk.command(CallCommand::Answer);
    answered(&mut desk).await;
    daemon.wait_for("the agent is unavailable", 1, WAIT);
    desk.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap().unwrap();

    let (far, rate) = channel(&recording, 0);
    let (apology, apology_rate) = channel(&binary::repo("prompts/agent_unavailable.wav"), 0);
    let expected = loud_seconds(&apology, apology_rate);
    let got = loud_seconds(&far, rate);
    assert!(
        got >= expected * 0.8,
        "the apology played before the transfer: {got:.2} s of {expected:.2} s"
    );
    let cdr = wait::until("the agent bot's CDR line", WAIT, || async {
        let text = std::fs::read_to_string(dir.path().join("recordings/cdr.jsonl")).ok()?;
        let line = text.lines().next()?.to_owned();
        Some(serde_json::from_str::<serde_json::Value>(&line).unwrap())
    })
    .await;
    assert_eq!(cdr["reason"], "transferred", "{cdr}");
}

/// `callbot demo` on a free port; the agent line answers a desk phone with its echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_agent_line_echoes_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let demo = binary::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--media-address",
        "127.0.0.1",
        "--recordings",
        &dir.path().join("recordings").display().to_string(),
    ]);
    let output = demo.wait_for("ACCESS_GRANTED", 5, WAIT);
    let url = output
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .expect("the demo prints its URL")
        .trim()
        .to_owned();
    let settings = LinkSettings {
        bot: "desk-503".into(),
        base: url.parse().unwrap(),
        domain: "localhost".into(),
        extension: "503".into(),
        credentials: Credentials::Password(Secret::new("503")),
        tls: Arc::new(tls::client_config(&TlsSetting::Insecure).unwrap()),
        dialect: DialectSetting::Auto,
        useragent: "voice-test".into(),
    };
    let desk = Phone::connect(settings, media_runtime(), dir.path().to_owned())
        .await
        .expect("the desk phone logs in");
    let mut call = desk.dial("604");
    answered(&mut call).await;
    let recording = dir.path().join("desk.wav");
    call.command(record_to(&recording));
    call.command(CallCommand::Queue(Action::Tone {
        hz: 1000.0,
        ms: 2000,
    }));
    call.command(CallCommand::Queue(Action::Pause { ms: 800 }));
    call.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap().unwrap();
    let (far, rate) = channel(&recording, 0);
    heard(&far, rate, 1000.0, 1.5, "the demo's echo agent");
}

fn settings() -> Arc<StreamSettings> {
    let tls = tls::client_config(&TlsSetting::PublicRoots).unwrap();
    Arc::new(StreamSettings::new("test-bot", Arc::new(tls)))
}

fn request(url: &str, tracks: Tracks) -> StreamRequest {
    StreamRequest {
        url: url.to_owned(),
        params: BTreeMap::from([("lang".to_owned(), "de".to_owned())]),
        tracks,
    }
}

/// Outbound media (what the bot played) until a message `done` accepts; how many were loud.
async fn loud_outbound_until(
    stream: &mut common::agent::AgentStream,
    done: impl Fn(&Received, usize, usize) -> bool,
) -> (usize, usize) {
    let (mut loud_frames, mut quiet) = (0, 0);
    loop {
        let received = stream.next().await.expect("the stream goes on");
        if received.event() == "media" && received.track() == "outbound" {
            if loud(&received.payload()) {
                loud_frames += 1;
            } else {
                quiet += 1;
            }
        }
        if done(&received, loud_frames, quiet) {
            return (loud_frames, quiet);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_opus_call_the_agent_is_heard_its_marks_follow_their_audio_and_clear_cuts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let media = media_runtime();
    let (bot, mut caller) = legs::connected_pair(&media, legs::opus_only).await;
    assert_eq!(bot.leg.negotiated().unwrap().codec, Codec::Opus);
    let recording = dir.path().join("caller.wav");
    caller.leg.record(RecordOptions {
        path: recording.clone(),
        stereo: true,
        max_secs: None,
    });
    let mut agent = TestAgent::start().await;
    let settings = settings();
    let mut stream = Stream::open(
        &bot.leg,
        1,
        "call-1",
        request(&agent.url, Tracks::Both),
        settings.clone(),
    );
    let mut agent_stream = agent.stream().await;
    agent_stream.started().await;
    let start = agent_stream.start.clone();
    assert_eq!(start["callSid"], "call-1");
    assert_eq!(start["accountSid"], "test-bot");
    assert_eq!(start["customParameters"], json!({"lang": "de"}));
    assert_eq!(start["tracks"], json!(["inbound", "outbound"]));
    assert_eq!(stream.next_event().await, Some(StreamEvent::Connected));

    // The agent speaks for a second, sent at once as agents do, then marks it: the mark comes
    // back once all fifty frames have gone out, not before.
    let first_sent = Instant::now();
    agent_stream.say(&tone(600.0, 1000)).await;
    agent_stream.mark("intro").await;
    let (loud_before, _) =
        loud_outbound_until(&mut agent_stream, |r, _, _| r.event() == "mark").await;
    let mark = agent_stream.received.last().unwrap().clone();
    assert_eq!(mark.message["mark"]["name"], "intro");
    assert!(
        loud_before >= 49,
        "the mark came back after {loud_before} of its 50 frames"
    );
    assert!(
        mark.at - first_sent >= Duration::from_millis(980),
        "a second of audio takes a second to play: {:?}",
        mark.at - first_sent
    );
    assert_eq!(
        stream.next_event().await,
        Some(StreamEvent::Mark("intro".into()))
    );

    // Barge-in: five seconds more, cleared once it is playing. The pending mark comes back at
    // once; after it, at most the frame of the tick already under way is loud.
    agent_stream.say(&tone(600.0, 5000)).await;
    agent_stream.mark("long").await;
    loud_outbound_until(&mut agent_stream, |_, loud_frames, _| loud_frames >= 10).await;
    agent_stream.send(json!({"event": "clear"})).await;
    let (_, _) = loud_outbound_until(&mut agent_stream, |r, _, _| r.event() == "mark").await;
    assert_eq!(
        agent_stream.received.last().unwrap().message["mark"]["name"],
        "long"
    );
    let (loud_after, _) = loud_outbound_until(&mut agent_stream, |_, _, quiet| quiet >= 25).await;
    assert!(
        loud_after <= 1,
        "{loud_after} loud frames after the clear: it must stop within one 20 ms tick"
    );

    // The caller's tone comes back, 200 ms later, through μ-law both ways.
    caller.leg.tone(1, 1000.0, 2000);
    let (tone_frames, quiet_after) = (Cell::new(0), Cell::new(0));
    agent_stream
        .echo_until(Duration::from_millis(200), |r| {
            if r.event() == "media" && r.track() == "inbound" {
                if loud(&r.payload()) {
                    tone_frames.set(tone_frames.get() + 1);
                } else if tone_frames.get() > 0 {
                    quiet_after.set(quiet_after.get() + 1);
                }
            }
            // Half a second after the tone, its last frames have been echoed.
            quiet_after.get() >= 25
        })
        .await
        .expect("the stream goes on");
    assert!(
        tone_frames.get() >= 90,
        "the caller's 2 s reached the agent: {} loud frames",
        tone_frames.get()
    );

    // A flood far beyond the ten-second buffer: the oldest audio is dropped and counted.
    agent_stream.say(&tone(600.0, 20_000)).await;
    let dropped = wait::until("the flood to overflow the buffer", WAIT, || {
        let dropped = settings.metrics.dropped_from_agent.get();
        async move { (dropped >= 400).then_some(dropped) }
    })
    .await;
    assert!(dropped <= 500, "only what exceeds ten seconds: {dropped}");

    stream.stop("done");
    agent_stream.until("stop", |r| r.event() == "stop").await;
    let mut events = Vec::new();
    while let Some(event) = timeout(WAIT, stream.next_event()).await.unwrap() {
        events.push(event);
    }
    assert_eq!(
        events,
        [
            StreamEvent::Mark("long".into()),
            StreamEvent::Closed("done".into())
        ]
    );
    let mut bot = bot;
    let outcome = bot.played(stream.item()).await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");

    caller.leg.stop_recording();
    let (path, _) = caller.recording_closed().await;
    let (far, rate) = channel(&path, 0);
    let windows: Vec<f32> = far
        .chunks((rate / 10) as usize)
        .filter(|w| rms(w) > 0.02)
        .map(|w| dominant(w, rate, 300, 1500))
        .collect();
    let near = |hz: f32| windows.iter().filter(|f| (**f - hz).abs() <= 25.0).count();
    assert!(near(600.0) >= 10, "the agent's voice: {windows:?}");
    assert!(near(1000.0) >= 12, "the echo: {windows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_refused_or_crashing_agent_ends_the_stream_with_an_error_and_the_call_goes_on() {
    let media = media_runtime();
    let (mut bot, _caller) = legs::connected_pair(&media, str::to_owned).await;
    let settings = settings();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}/", listener.local_addr().unwrap())
    };
    let mut agent = TestAgent::start().await;
    for (round, (url, crash)) in [
        (dead.clone(), false),
        ("ws://192.0.2.1/".to_owned(), false),
        (agent.url.clone(), true),
    ]
    .into_iter()
    .enumerate()
    {
        // Each round's items have ids of their own.
        let (item, after) = (2 * round as u64 + 1, 2 * round as u64 + 2);
        let mut stream = Stream::open(
            &bot.leg,
            item,
            "c",
            request(&url, Tracks::Inbound),
            settings.clone(),
        );
        bot.leg.tone(after, 440.0, 100);
        if crash {
            let mut agent_stream = agent.stream().await;
            agent_stream.started().await;
            assert_eq!(stream.next_event().await, Some(StreamEvent::Connected));
            agent_stream.crash();
        }
        let event = timeout(WAIT, stream.next_event()).await.unwrap();
        let Some(StreamEvent::Error(reason)) = event else {
            panic!("{url}: {event:?}");
        };
        let expected = match crash {
            true => "connection",
            false if url == dead => "cannot connect",
            false => "ws:// only",
        };
        assert!(reason.contains(expected), "{url}: {reason}");
        let outcome = bot.played(after).await;
        assert!(
            matches!(outcome, Outcome::Done),
            "what follows the stream plays"
        );
    }
}
