//! Outbound campaigns through the real binary against `callbot pbx` (relay media) whose test
//! extensions answer, press 1, are busy or never answer: pacing, retries, results, a killed
//! and resumed campaign, and two workers on a NATS JetStream queue.
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

/// Behaviours by the last digit of a test extension: most answer and press 1.
fn behaviour(n: u32) -> &'static str {
    match n % 10 {
        3 => "{ action: busy }",
        7 => "{ action: no-answer }",
        9 => "{ action: answer }",
        _ => "{ action: answer, press: \"1\", after_ms: 300, hangup_ms: 20000 }",
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
            9 => assert_eq!(
                (state, row.outcome.result.as_str(), attempts),
                ("COMPLETED", "no_response", 1),
                "{row:?}"
            ),
            _ => assert_eq!(
                (state, row.outcome.result.as_str(), attempts),
                ("COMPLETED", "confirmed", 1),
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
    assert_eq!(counts.len(), 60, "every contact dialled once");
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
