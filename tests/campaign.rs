//! Outbound campaigns through the real binary against `callbot pbx` (relay media) whose test
//! extensions say hello and press 1, answer silently, are busy, never answer, or are answering
//! machines: pacing, retries, results, a killed and resumed campaign, two workers on a NATS
//! JetStream queue, and answering-machine detection with spoken personal messages, a
//! do-not-call list and contacts in other time zones.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::binary::{
    self, ADMIN_PASSWORD, Emulator, Process, debian_tool, emulator_with, repo, run_to_end, start,
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(240);

/// Behaviours by the last digit of a test extension: most are people who say hello and press
/// 1 while the reminder plays; a silent answer is a machine to the detector.
fn behaviour(n: u32) -> &'static str {
    match n % 10 {
        3 => "{ action: busy }",
        7 => "{ action: no-answer }",
        9 => "{ action: answer }",
        _ => "{ action: person, press: \"1\", after_ms: 2500, hangup_ms: 20000 }",
    }
}

/// An accounts file with the campaign bot (602) and test extensions 7000.. (`count` of them).
fn accounts(dir: &Path, count: u32) -> PathBuf {
    let mut text = format!(
        "admin: {{ user: admin, password: \"{ADMIN_PASSWORD}\" }}\nextensions:\n  - {{ number: \"602\", password: \"602\" }}\n",
    );
    for n in 7000..7000 + count {
        writeln!(text, "  - {{ number: \"{n}\", auto: {} }}", behaviour(n)).unwrap();
    }
    let path = dir.join("accounts.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn contacts(dir: &Path, count: u32, extra: &str) -> PathBuf {
    let mut text = String::from("number,name\n");
    for n in 7000..7000 + count {
        writeln!(text, "{n},Contact {n}").unwrap();
    }
    text.push_str(extra);
    let path = dir.join("contacts.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn campaign_pbx(dir: &Path, count: u32) -> Emulator {
    let accounts = accounts(dir, count);
    emulator_with(
        dir,
        &[
            "--media",
            "relay",
            "--ring-timeout",
            "4",
            "--accounts",
            &accounts.display().to_string(),
        ],
    )
}

/// `callbot campaign` for the campaign bot: `list` in, results to `out`, then `options`.
fn local_campaign(config: &Path, list: &Path, out: &Path, options: &[&str]) -> Vec<String> {
    let paths = [config, list, out].map(|p| p.display().to_string());
    let [config, list, out] = paths;
    let mut args: Vec<String> = ["campaign", "-c", &config, "--bot", "campaign"]
        .into_iter()
        .chain(["--contacts", &list, "--results", &out])
        .map(str::to_owned)
        .collect();
    args.extend(options.iter().map(|o| o.to_string()));
    args
}

fn campaign_config(dir: &Path, pbx: &Emulator) -> PathBuf {
    std::fs::copy(repo("scripts/campaign.rhai"), dir.join("campaign.rhai")).unwrap();
    let bot = format!(
        "  - name: campaign\n    extension: \"602\"\n    script: \"{}\"\n    max_calls: 50\n    allow_dial: [\"7???\"]\n",
        dir.join("campaign.rhai").display()
    );
    binary::config(dir, pbx, &bot)
}

async fn events(pbx: &Emulator) -> Vec<Value> {
    common::emulator_json(&pbx.url, "events").await
}

/// How many times each number was dialled, and the dial times, from the emulator.
async fn dials(pbx: &Emulator) -> (HashMap<String, usize>, Vec<u64>) {
    let mut counts = HashMap::new();
    let mut times = Vec::new();
    for event in events(pbx).await {
        if event["kind"] == "dial" && event["extension"] == "602" {
            *counts
                .entry(event["detail"]["to"].as_str().unwrap().to_owned())
                .or_default() += 1;
            times.push(event["at_ms"].as_u64().unwrap());
        }
    }
    (counts, times)
}

fn results(path: &Path) -> Vec<callbot::campaign::Row> {
    callbot::campaign::read_results(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_contacts_are_paced_retried_and_reported_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = campaign_pbx(dir.path(), 200);
    let config = campaign_config(dir.path(), &pbx);
    let list = contacts(dir.path(), 200, "");
    let out = dir.path().join("results.csv");
    let options = [
        "--concurrency",
        "20",
        "--cps",
        "10",
        "--retries",
        "1",
        "--retry-after",
        "1s",
        "--retry-on",
        "busy",
    ];
    let args = local_campaign(&config, &list, &out, &options);
    let (status, output) = run_to_end(&args, LONG);
    assert!(status.success(), "{output}");
    let rows = results(&out);
    assert_eq!(rows.len(), 200, "one row per contact");
    let numbers: std::collections::BTreeSet<u32> =
        rows.iter().map(|r| r.number.parse().unwrap()).collect();
    assert!(numbers.iter().copied().eq(7000..7200), "every contact once");
    for row in &rows {
        let n: u32 = row.number.parse().unwrap();
        let (state, attempts) = (row.outcome.state.as_str(), row.attempts);
        match n % 10 {
            3 => assert_eq!(
                (state, attempts),
                ("BUSY", 2),
                "busy is retried once: {row:?}"
            ),
            7 => {
                assert_eq!(
                    (state, row.outcome.reason.as_str(), attempts),
                    ("REJECTED", "no_answer", 1),
                    "{row:?}"
                );
            }
            // Silence from the start is a machine (Asterisk's rule); with no beep to wait
            // for, the voicemail is left when the wait for one times out.
            9 => assert_eq!(
                (
                    state,
                    row.outcome.result.as_str(),
                    row.outcome.amd.as_str(),
                    attempts
                ),
                ("COMPLETED", "voicemail", "MACHINE", 1),
                "{row:?}"
            ),
            _ => assert_eq!(
                (
                    state,
                    row.outcome.result.as_str(),
                    row.outcome.amd.as_str(),
                    attempts
                ),
                ("COMPLETED", "confirmed", "HUMAN", 1),
                "{row:?}"
            ),
        }
    }
    let (counts, mut times) = dials(&pbx).await;
    assert_eq!(
        counts.values().sum::<usize>(),
        220,
        "200 first attempts and 20 busy retries"
    );
    times.sort_unstable();
    // The pacer spaces the attempts it lets go (the journal's start times, in whole ms)...
    let journal = rusqlite::Connection::open(out.with_extension("journal")).unwrap();
    let mut statement = journal
        .prepare("SELECT started_at FROM attempts ORDER BY started_at")
        .unwrap();
    let started: Vec<i64> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(started.len(), 220);
    let closest = started.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(closest >= 98, "two attempts {closest} ms apart at --cps 10");
    // ...and the emulator sees them at that rate on average (a single second can bunch up when
    // a loaded machine delays some dials on their way).
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(
        span >= 219 * 100 * 9 / 10,
        "220 dials within {span} ms at --cps 10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_campaign_resumes_and_calls_nobody_twice() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = campaign_pbx(dir.path(), 60);
    let config = campaign_config(dir.path(), &pbx);
    let list = contacts(dir.path(), 60, "");
    let out = dir.path().join("results.csv");
    let args = local_campaign(
        &config,
        &list,
        &out,
        &["--concurrency", "10", "--cps", "10"],
    );
    let mut first = start(&args);
    let deadline = tokio::time::Instant::now() + LONG;
    while dials(&pbx).await.0.len() < 25 {
        assert!(tokio::time::Instant::now() < deadline, "{}", first.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();
    let (status, output) = run_to_end(&args, LONG);
    assert!(status.success(), "{output}");
    assert!(output.contains("resuming"), "{output}");
    let (counts, _) = dials(&pbx).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dialled twice: {twice:?}");
    let rows = results(&out);
    assert_eq!(rows.len(), 60);
    assert!(
        rows.iter().all(|r| r.outcome.state != "PENDING"),
        "all finished"
    );
    // A contact whose attempt was journalled when the kill came may or may not have reached the
    // PBX: it is INTERRUPTED and never dialled again. Every other contact was dialled.
    for row in &rows {
        assert!(
            counts.contains_key(&row.number) || row.outcome.state == "INTERRUPTED",
            "never dialled: {row:?}"
        );
    }
    let interrupted = rows
        .iter()
        .filter(|r| r.outcome.state == "INTERRUPTED")
        .count();
    assert!(
        interrupted <= 10,
        "{interrupted} interrupted: more than the calls live at the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_reported_with_their_line_and_not_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = campaign_pbx(dir.path(), 3);
    let config = campaign_config(dir.path(), &pbx);
    let list = contacts(
        dir.path(),
        3,
        "7000,Again\n12ab,Typo\n9999,Outside\n7001,Too,Many\n",
    );
    let out = dir.path().join("results.csv");
    let args = local_campaign(&config, &list, &out, &[]);
    let (status, output) = run_to_end(&args, LONG);
    assert!(status.success(), "{output}");
    let name = list.display().to_string();
    for (line, problem) in [
        (5, "duplicate of line 2"),
        (6, "is not a phone number"),
        (7, "not in the bot's allow_dial"),
        (8, "malformed line"),
    ] {
        let expected = format!("{name}:{line}:");
        let reported = output.lines().find(|l| l.contains(&expected));
        assert!(
            reported.is_some_and(|l| l.contains(problem)),
            "line {line} ({problem}):\n{output}"
        );
    }
    let (counts, _) = dials(&pbx).await;
    assert_eq!(
        counts.len(),
        3,
        "only the good rows were dialled: {counts:?}"
    );
    assert!(!counts.contains_key("9999"));
    let rows = results(&out);
    assert_eq!(
        rows.iter().filter(|r| r.outcome.state == "SKIPPED").count(),
        4
    );
}

/// A JetStream server on a port of its own choosing (killed on drop).
struct Nats {
    _server: Process,
    url: String,
    _store: tempfile::TempDir,
}

fn nats() -> Nats {
    let server = debian_tool("nats-server", "nats-server");
    let store = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(server);
    // `-p -1`: the server picks a free port and says which.
    command
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(store.path());
    let server = Process::spawn_command(command);
    const READY: &str = "Listening for client connections on ";
    let log = server.wait_for(READY, 1, Duration::from_secs(15));
    let address = log
        .split(READY)
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("nats-server says where it listens")
        .trim()
        .to_owned();
    Nats {
        _server: server,
        url: format!("nats://{address}"),
        _store: store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_nats_do_every_contact_once_even_when_one_dies() {
    let dir = tempfile::tempdir().unwrap();
    let queue = nats();
    let pbx = campaign_pbx(dir.path(), 40);
    let config = campaign_config(dir.path(), &pbx);
    let list = contacts(dir.path(), 40, "");
    let config_arg = config.display().to_string();
    let (status, output) = run_to_end(
        &[
            "campaign",
            "publish",
            "--queue",
            &queue.url,
            "--campaign",
            "reminders",
            "--contacts",
            &list.display().to_string(),
        ],
        LONG,
    );
    assert!(status.success(), "{output}");
    assert!(output.contains("published 40"), "{output}");
    let worker = |idle: &str| {
        start(&[
            "campaign",
            "work",
            "--queue",
            &queue.url,
            "--campaign",
            "reminders",
            "-c",
            &config_arg,
            "--bot",
            "campaign",
            "--concurrency",
            "4",
            "--cps",
            "8",
            "--ack-wait",
            "4",
            "--idle-exit",
            idle,
        ])
    };
    let mut doomed = worker("60");
    let mut survivor = worker("10");
    let deadline = tokio::time::Instant::now() + LONG;
    while dials(&pbx).await.0.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            doomed.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doomed.kill();
    let status = survivor.wait(LONG);
    assert!(status.success(), "{}", survivor.output());
    let out = dir.path().join("results.csv");
    let (status, output) = run_to_end(
        &[
            "campaign",
            "results",
            "--queue",
            &queue.url,
            "--campaign",
            "reminders",
            "--results",
            &out.display().to_string(),
        ],
        LONG,
    );
    assert!(status.success(), "{output}");
    let rows = results(&out);
    assert_eq!(rows.len(), 40, "every contact has a result");
    let (counts, _) = dials(&pbx).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dialled twice: {twice:?}");
}

/// Times of day from two hours before to two hours after now, in UTC: open for a contact in
/// UTC, closed for one twelve or more hours away.
fn window_around_now() -> String {
    let now = chrono::Utc::now();
    let hours = chrono::TimeDelta::hours(2);
    format!(
        "{}-{}",
        (now - hours).format("%H:%M"),
        (now + hours).format("%H:%M")
    )
}

/// Seconds of speech in `what` as our renderer says it (the script's voice and rate).
fn spoken_seconds(what: &str) -> f32 {
    let speech = callbot::speech::Speech::default();
    let utterance = callbot::speech::Utterance::new(what, "en-us", 160).unwrap();
    let rendered = speech.render_blocking(&utterance).unwrap();
    let (samples, rate) = common::audio::channel(&rendered.path, 0);
    speech_seconds(&samples, rate)
}

/// The first stretch of speech in `samples`, in seconds (pauses under 0.8 s are part of it).
fn speech_seconds(samples: &[f32], rate: u32) -> f32 {
    let spans = common::audio::sound_spans(samples, rate, 0.8);
    spans.first().map_or(0.0, |(start, end)| end - start)
}

/// Where a test extension put its recording of the call from 602 (`recorded` events).
async fn recording_of(pbx: &Emulator, extension: &str) -> PathBuf {
    let within = Duration::from_secs(120);
    common::wait::until(&format!("{extension}'s recording"), within, || async {
        events(pbx).await.into_iter().find_map(|event| {
            let path = event["detail"]["path"].as_str().map(PathBuf::from);
            path.filter(|_| event["kind"] == "recorded" && event["extension"] == extension)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_get_a_voicemail_people_their_own_message_and_the_rules_hold() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(
        &accounts,
        format!(
            "admin: {{ user: admin, password: \"{ADMIN_PASSWORD}\" }}\nextensions:\n  \
             - {{ number: \"602\", password: \"602\" }}\n  \
             - {{ number: \"7100\", auto: {{ action: machine }} }}\n  \
             - {{ number: \"7101\", auto: {{ action: person }} }}\n  \
             - {{ number: \"7102\", auto: {{ action: person }} }}\n  \
             - {{ number: \"7103\", auto: {{ action: person }} }}\n"
        ),
    )
    .unwrap();
    let accounts = accounts.display().to_string();
    let pbx = emulator_with(dir.path(), &["--media", "relay", "--accounts", &accounts]);
    let config = campaign_config(dir.path(), &pbx);
    let list = dir.path().join("contacts.csv");
    std::fs::write(
        &list,
        "number,name,appointment,tz\n\
         7100,Ann,Monday 10:00,UTC\n\
         7101,Bob,Tuesday 11:30,Africa/Abidjan\n\
         7102,Cy,Wednesday 09:15,UTC\n\
         7103,Dee,Thursday 14:00,Pacific/Kiritimati\n",
    )
    .unwrap();
    let dnc = dir.path().join("dnc.csv");
    std::fs::write(&dnc, "number\n7102\n").unwrap();
    let out = dir.path().join("results.csv");
    let window = window_around_now();
    let dnc_arg = dnc.display().to_string();
    let options = ["--dnc", &dnc_arg, "--window", &window, "--concurrency", "4"];
    let mut campaign = start(&local_campaign(&config, &list, &out, &options));

    // The machine and the person are called, and each records what it heard.
    let voicemail = recording_of(&pbx, "7100").await;
    let heard = recording_of(&pbx, "7101").await;
    // Dee's local time is half a day away: her window is closed, she waits; Cy is never
    // called. Stopped now, the campaign keeps her for another run.
    let status = campaign.terminate(LONG);
    let output = campaign.output();
    assert!(status.success(), "{output}");
    let skipped = format!(
        "{}:4: 7102 skipped: on the do-not-call list ({dnc_arg}:2)",
        list.display()
    );
    assert!(output.contains(&skipped), "{skipped}\n{output}");
    let (counts, _) = dials(&pbx).await;
    assert_eq!(counts.get("7100"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("7101"), Some(&1), "{counts:?}");
    assert!(!counts.contains_key("7102"), "do not call: {counts:?}");
    assert!(
        !counts.contains_key("7103"),
        "outside her window: {counts:?}"
    );

    let rows: HashMap<String, callbot::campaign::Row> = results(&out)
        .into_iter()
        .map(|r| (r.number.clone(), r))
        .collect();
    let machine = &rows["7100"].outcome;
    assert_eq!(
        (
            machine.state.as_str(),
            machine.amd.as_str(),
            machine.result.as_str()
        ),
        ("COMPLETED", "MACHINE", "voicemail"),
        "{machine:?}"
    );
    // The greeting (about 5.8 s of speech and a pause) ends with the beep at about 6.3 s.
    let beep = machine.beep_ms.expect("the beep is in the results");
    assert!((5500..8000).contains(&beep), "beep at {beep} ms");
    let person = &rows["7101"].outcome;
    assert_eq!(
        (
            person.state.as_str(),
            person.amd.as_str(),
            person.result.as_str()
        ),
        ("COMPLETED", "HUMAN", "no_response"),
        "{person:?}"
    );
    assert_eq!(person.beep_ms, None);
    assert_eq!(rows["7102"].outcome.state, "SKIPPED");
    assert!(rows["7102"].outcome.reason.contains("do-not-call"));
    assert_eq!(
        (rows["7103"].outcome.state.as_str(), rows["7103"].attempts),
        ("PENDING", 0)
    );

    // What the machine recorded after its beep is our message, whole; what the person heard
    // is their own reminder (the far end is the left channel of each recording).
    let expected = spoken_seconds(
        "Hello Ann, this is a reminder of your appointment on Monday 10:00. \
         If you cannot come, please call us back. Goodbye.",
    );
    let (samples, rate) = common::audio::channel(&voicemail, 0);
    let left = speech_seconds(&samples, rate);
    assert!(
        (left - expected).abs() <= expected * 0.15,
        "voicemail holds {left:.2} s of speech, the message is {expected:.2} s ({})",
        voicemail.display()
    );
    let expected = spoken_seconds(
        "Hello Bob, this is a reminder of your appointment on Tuesday 11:30. \
         Press 1 to confirm, or 2 to cancel.",
    );
    let (samples, rate) = common::audio::channel(&heard, 0);
    let said = speech_seconds(&samples, rate);
    assert!(
        (said - expected).abs() <= expected * 0.15,
        "the person heard {said:.2} s of speech, the reminder is {expected:.2} s ({})",
        heard.display()
    );
    assert!(common::audio::rms(&samples) > 0.01, "speech energy");

    // The verdict and the beep are in the call records too.
    let cdr = std::fs::read_to_string(dir.path().join("recordings/cdr.jsonl")).unwrap();
    let records: Vec<Value> = cdr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let machine_call = records
        .iter()
        .find(|r| r["to"] == "7100")
        .expect("a CDR line");
    assert_eq!(machine_call["amd"]["result"], "MACHINE", "{machine_call}");
    assert_eq!(
        machine_call["amd"]["reason"], "long_greeting",
        "{machine_call}"
    );
    assert_eq!(machine_call["beep"]["how"], "tone", "{machine_call}");
    let person_call = records
        .iter()
        .find(|r| r["to"] == "7101")
        .expect("a CDR line");
    assert_eq!(person_call["amd"]["result"], "HUMAN", "{person_call}");
    assert!(person_call["beep"].is_null());
}
