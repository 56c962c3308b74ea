//! Faults and hostile conditions, each through the real binary: a chaotic PBX, SIGKILL during
//! recorded calls, a file-size limit, the PBX dying mid-call, secrets in logs at trace level,
//! TLS verification, and the outbound rate limit.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;
use std::time::Duration;

use callbot::call::{Action, CallCommand};
use callbot::phone::PhoneCall;
use callbot::protocol::{CallState, Dialect};
use common::audio::channel;
use common::binary::{
    self, ADMIN_PASSWORD, config, config_with_http, daemon, daemon_command, daemon_from, emulator,
    emulator_with, files, metrics_address, phone,
};
use common::wait;
use serde_json::Value;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

const TEST_LINE: &str = "  - name: test-line\n    extension: \"501\"\n    script: \"{dir}/test_line.rhai\"\n    record: stereo\n";

fn bots(dir: &Path, text: &str) -> String {
    text.replace("{dir}", &dir.display().to_string())
}

async fn answered(call: &mut PhoneCall) -> bool {
    matches!(
        timeout(WAIT, call.reach(CallState::InCall)).await,
        Ok(Ok(_))
    )
}

async fn get(url: &str) -> (u16, String) {
    let response = common::insecure_http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn cdr(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("recordings/cdr.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("half-written CDR line {line:?}: {e}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_survive_a_chaotic_pbx_and_every_call_ends_in_a_defined_state() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator_with(
        dir.path(),
        &[
            "--media",
            "relay",
            "--chaos",
            "11:0.03",
            "--ring-timeout",
            "5",
        ],
    );
    binary::script(dir.path(), "test_line.rhai");
    let config = config_with_http(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let daemon = daemon(&config, 1);
    let address = metrics_address(&daemon);
    let caller = phone(&pbx, "502", dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let (mut placed, mut answered) = (0, 0);
    while tokio::time::Instant::now() < deadline {
        placed += 1;
        let mut call = caller.dial("501");
        // A lost frame can stall a call; give up on it early so many calls meet the chaos.
        let reached = timeout(Duration::from_secs(4), call.reach(CallState::InCall)).await;
        if matches!(reached, Ok(Ok(_))) {
            answered += 1;
            // A short talk on the caller's own media clock, then the hang-up.
            call.command(CallCommand::Queue(Action::Pause { ms: 800 }));
        }
        call.command(CallCommand::Queue(Action::Hangup));
        let _ = timeout(Duration::from_secs(5), call.ended()).await;
    }
    // Whatever the chaos did, every call of the bot ends (lost signalling is caught by the
    // media watch within 30 s) and the bot is registered again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, metrics) = get(&format!("http://{address}/metrics")).await;
        let (status, _) = get(&format!("http://{address}/healthz")).await;
        if metrics.contains("callbot_active_calls{bot=\"test-line\"} 0") && status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never all ended:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = daemon.output();
    assert!(!log.contains("panicked"), "{log}");
    let drops = log.matches("CONNECTION_CLOSED").count() + log.matches("CONNECTION_FAILED").count();
    let grants = log.matches("ACCESS_GRANTED").count();
    assert!(
        grants > drops,
        "re-registered after each of {drops} drops ({grants} grants)"
    );
    // Every call the bot answered has its CDR line (written as the call ends).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = cdr(dir.path());
        if records.len() >= answered || tokio::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        answered > 0 && records.len() >= answered,
        "{answered} calls answered, {} CDR lines",
        records.len()
    );
    let defined = ["COMPLETED", "BUSY", "REJECTED", "NOT_FOUND"];
    for record in records {
        assert!(
            defined.contains(&record["state"].as_str().unwrap()),
            "{record}"
        );
    }
    let mischief = pbx.process.output().matches("chaos: ").count();
    eprintln!("{placed} calls placed, {mischief} frames mistreated, {drops} link drops survived");
    assert!(mischief > 0, "the chaos did something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_recorded_calls_leaves_playable_recordings_and_whole_cdr_lines() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let mut daemon = daemon(&config, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut finished = caller.dial("501");
    assert!(answered(&mut finished).await);
    let mut live = Vec::new();
    for _ in 0..3 {
        let mut call = caller.dial("501");
        assert!(answered(&mut call).await);
        call.command(CallCommand::Queue(Action::Tone {
            hz: 600.0,
            ms: 20_000,
        }));
        live.push(call);
    }
    finished.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, finished.ended()).await.unwrap();
    // Killed while the live calls record, once three files' headers say two seconds.
    let folder = dir.path().join("recordings/test-line");
    wait::until("three recordings of two seconds", WAIT, || async {
        let long = files(&folder, "wav")
            .iter()
            .filter(|f| wait::wav_header_seconds(f).is_some_and(|s| s >= 2.0))
            .count();
        (long >= 3).then_some(())
    })
    .await;
    let before: std::collections::HashMap<_, f32> = files(&folder, "wav")
        .into_iter()
        .filter_map(|f| wait::wav_header_seconds(&f).map(|s| (f, s)))
        .collect();
    daemon.kill();
    // Every file is a valid WAV that keeps what its header held before the kill, and the
    // audio written past its last header rewrite is at most about a second (the recorder
    // rewrites headers once a second, and a starved writer thread may write a backlog first).
    let recordings = files(&folder, "wav");
    assert_eq!(recordings.len(), 4);
    for recording in &recordings {
        let (samples, rate) = channel(recording, 0);
        let seconds = samples.len() as f32 / rate as f32;
        let unheaded = unheaded_seconds(recording);
        assert!(
            unheaded < 2.5,
            "{}: {unheaded} s written past the header",
            recording.display()
        );
        let held = before.get(recording).copied().unwrap_or(0.0);
        assert!(
            seconds >= held,
            "{}: {seconds} s kept of {held} s held before the kill",
            recording.display()
        );
    }
    assert_eq!(cdr(dir.path()).len(), 1, "the finished call's line, whole");
}

/// Seconds of audio in a WAV file beyond what its header declares: what a crash between two
/// header rewrites leaves unreachable.
fn unheaded_seconds(path: &Path) -> f32 {
    let bytes = std::fs::read(path).unwrap();
    let reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let frame = u64::from(spec.channels) * u64::from(spec.bits_per_sample / 8);
    let declared = u64::from(reader.duration()) * frame;
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("a data chunk")
        + 8;
    let unheaded = (bytes.len() as u64).saturating_sub(data as u64 + declared);
    unheaded as f32 / (frame * u64::from(spec.sample_rate)) as f32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_limit_fails_the_recording_but_not_the_call() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    let script = "fn on_incoming_call(call) {\n    call.answer();\n    call.echo(true);\n}\n\
                  fn on_recording(call, path) {\n    bot.log(`recording ${path} error: ${call.recording_error}`);\n}\n";
    std::fs::write(dir.path().join("test_line.rhai"), script).unwrap();
    let config = config(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let mut command = daemon_command(&config);
    // SAFETY: setrlimit only changes this child's limits, between fork and exec.
    unsafe {
        command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::FSIZE, 64_000, 64_000));
    }
    let daemon = daemon_from(command, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("501");
    assert!(answered(&mut call).await);
    // Six seconds of tone, then the caller hangs up: the recording fails after about two.
    call.command(CallCommand::Queue(Action::Tone {
        hz: 700.0,
        ms: 6000,
    }));
    call.command(CallCommand::Queue(Action::Hangup));
    let info = timeout(WAIT, call.ended()).await.unwrap().unwrap();
    assert_eq!(
        info.end.unwrap().reason.as_str(),
        "local_hangup",
        "the call went on"
    );
    assert!(
        info.stats.packets_received > 200,
        "the echo kept coming: {:?}",
        info.stats
    );
    let log = daemon.wait_for("error: ", 1, WAIT);
    assert!(
        log.contains("recording") && (log.contains("File too large") || log.contains("too large")),
        "{log}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while cdr(dir.path()).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no CDR line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = cdr(dir.path());
    assert!(
        records[0]["recording_error"].is_string(),
        "{:?}",
        records[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_dying_mid_call_ends_it_and_the_bot_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    // The PBX keeps its certificate across the restart, as a real one does.
    let identity =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("pbx.pem"), dir.path().join("pbx.key"));
    std::fs::write(&cert, identity.cert.pem()).unwrap();
    std::fs::write(&key, identity.signing_key.serialize_pem()).unwrap();
    let files_args = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let pbx = emulator_with(dir.path(), &files_args);
    let address = pbx
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    binary::script(dir.path(), "test_line.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let daemon = daemon(&config, 1);
    {
        let caller = phone(&pbx, "502", dir.path()).await;
        let mut call = caller.dial("501");
        assert!(answered(&mut call).await);
        drop(pbx); // SIGKILL: sockets vanish without a close
        daemon.wait_for("ended: link_lost", 1, WAIT);
    }
    let mut again_args = vec!["--listen", address.as_str()];
    again_args.extend(files_args);
    let again = emulator_with(dir.path(), &again_args);
    daemon.wait_for("ACCESS_GRANTED", 2, WAIT);
    let caller = phone(&again, "502", dir.path()).await;
    let mut call = caller.dial("501");
    assert!(
        answered(&mut call).await,
        "new calls work after the PBX came back"
    );
    call.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let config = config(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let mut command = daemon_command(&config);
    command.arg("-vvv").env_remove("RUST_LOG");
    let mut daemon = daemon_from(command, 1);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("501");
    assert!(answered(&mut call).await);
    call.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap();
    daemon.terminate(WAIT);
    let log = daemon.output();
    assert!(log.len() > 10_000, "a trace-level log: {} bytes", log.len());
    assert!(!log.contains(ADMIN_PASSWORD), "the admin password leaked");
    let basic = base64_of(&format!("admin:{ADMIN_PASSWORD}"));
    assert!(!log.contains(&basic), "the Basic auth header leaked");
    assert!(!log.contains("session="), "a session cookie leaked");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_by_default_and_insecure_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let path = config(dir.path(), &pbx, &bots(dir.path(), TEST_LINE));
    let text = std::fs::read_to_string(&path).unwrap();
    let ca_line = format!("  tls: {{ ca_file: \"{}\" }}\n", pbx.cert.display());
    // No tls setting: public roots, which do not know the emulator's certificate.
    std::fs::write(&path, text.replace(&ca_line, "")).unwrap();
    let strict = binary::Process::spawn_command(daemon_command(&path));
    let log = strict.wait_for("CONNECTION_FAILED", 1, WAIT);
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    drop(strict);
    std::fs::write(&path, text.replace(&ca_line, "  tls: { insecure: true }\n")).unwrap();
    let lax = daemon(&path, 1);
    assert!(
        lax.output().contains("pbx.tls.insecure"),
        "insecure is logged as a warning"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_script_cannot_dial_faster_than_max_cps_nor_outside_allow_dial() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator_with(dir.path(), &["--media", "relay"]);
    let script = "fn on_connection_state(state) {\n    if state == \"ACCESS_GRANTED\" { for i in 0..12 { bot.dial(\"702\"); } }\n}\n\
                  fn on_incoming_call(call) {\n    call.answer();\n    call.transfer(\"0900666\");\n}\n";
    std::fs::write(dir.path().join("runaway.rhai"), script).unwrap();
    let bot = format!(
        "  - name: runaway\n    extension: \"505\"\n    script: \"{}\"\n    allow_dial: [\"70?\"]\n    max_cps: 4\n",
        dir.path().join("runaway.rhai").display()
    );
    let config = config(dir.path(), &pbx, &bot);
    let daemon = daemon(&config, 1);
    daemon.wait_for("(outbound 505 → 702) ended: busy", 12, WAIT);
    let events: Vec<Value> = common::emulator_json(&pbx.url, "events").await;
    let mut times: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "dial" && e["extension"] == "505")
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    times.sort_unstable();
    assert_eq!(times.len(), 12);
    let span = times[11] - times[0];
    // The pacer's slots are exact; half an interval allows for each dial's trip.
    assert!(
        span >= 11 * 250 - 125,
        "12 dials at 4 per second take 2.75 s, took {span} ms"
    );
    // Transfers are checked against allow_dial too.
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("505");
    let log = daemon.wait_for("0900666", 1, WAIT);
    assert!(log.contains("not in allow_dial"), "{log}");
    call.command(CallCommand::Queue(Action::Hangup));
    timeout(WAIT, call.ended()).await.unwrap().unwrap();
    let events: Vec<Value> = common::emulator_json(&pbx.url, "events").await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "dial" && e["detail"]["to"] == "505"),
        "the call to 505 is in the journal: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e["kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("transfer"))
            || e["detail"]["to"] == "0900666"),
        "nothing was transferred: {events:?}"
    );
}
