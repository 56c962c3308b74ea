//! Operating callbot, through the real binary: the metrics that docs/deploy's Grafana dashboard
//! and alert rules use are served; liveness and readiness; settings that retrying cannot heal
//! are named once; `dial` rejects bad options before it dials; JSON logs; systemd readiness and
//! watchdog; recordings served only from inside their folder; and the README's campaign recipe.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callbot::call::{Action, CallCommand};
use callbot::protocol::{CallState, Dialect};
use common::binary::{self, ADMIN_PASSWORD, Emulator, Process, config, emulator, phone, repo};
use common::wait;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const TEST_LINE: &str = "  - name: test-line\n    extension: \"501\"\n    script: \"{dir}/test_line.rhai\"\n    record: stereo\n";

/// A config for `pbx` whose daemon serves HTTP on a free loopback port (and `extra` below
/// `http:`, such as a token).
fn config_with_http(dir: &Path, pbx: &Emulator, bots: &str, extra: &str) -> PathBuf {
    let path = config(dir, pbx, &bots.replace("{dir}", &dir.display().to_string()));
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "bots:\n",
        &format!("http: {{ listen: \"127.0.0.1:0\"{extra} }}\nbots:\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn http_address(daemon: &Process) -> String {
    let log = daemon.wait_for("dashboard on http://", 1, WAIT);
    let tail = log.split("dashboard on http://").nth(1).unwrap();
    tail.split('/').next().unwrap().to_owned()
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = common::insecure_http().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The sample names in an OpenMetrics page (`callbot_calls_total`, `…_bucket` …).
fn sample_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every `callbot_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("callbot_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_and_alerts_use_only_served_metrics_and_the_probes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let config = config_with_http(dir.path(), &pbx, TEST_LINE, "");
    let daemon = binary::daemon(&config, 1);
    let address = http_address(&daemon);
    // One answered, recorded call, so every series has samples.
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("501");
    call.reach(CallState::InCall).await.unwrap();
    call.command(CallCommand::Queue(Action::Pause { ms: 1000 }));
    call.command(CallCommand::Queue(Action::Hangup));
    call.ended().await.unwrap();
    let page = wait::until("the call in /metrics", WAIT, || async {
        let (_, page) = get(&format!("http://{address}/metrics"), None).await;
        page.contains("callbot_calls_total{").then_some(page)
    })
    .await;
    let served = sample_names(&page);
    let deploy = repo("docs/deploy");
    let grafana = std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(deploy.join("alerts.yml")).unwrap();
    serde_json::from_str::<Value>(&grafana).expect("the Grafana dashboard is JSON");
    let used: BTreeSet<String> = metric_names(&grafana)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "used in docs/deploy but not served: {missing:?}\n{page}"
    );
    for expected in [
        r#"callbot_calls_total{bot="test-line",direction="inbound",state="COMPLETED""#,
        r#"callbot_call_duration_seconds_count{bot="test-line",direction="inbound"} 1"#,
        r#"callbot_build_info{version=""#,
    ] {
        assert!(page.contains(expected), "{expected} in\n{page}");
    }
    // The probes: alive, ready (the bot is registered), and the old health check as before.
    let (live, _) = get(&format!("http://{address}/livez"), None).await;
    let (ready, body) = get(&format!("http://{address}/readyz"), None).await;
    let (health, _) = get(&format!("http://{address}/healthz"), None).await;
    assert_eq!((live, ready, health), (200, 200, 200), "{body}");
    // A script edit that does not compile: counted, and on the dashboard with its error.
    std::fs::write(
        dir.path().join("test_line.rhai"),
        "fn on_incoming_call(call) {\n",
    )
    .unwrap();
    let bot: Value = wait::until("the failed reload on the dashboard", WAIT, || async {
        let (_, body) = get(&format!("http://{address}/api/status"), None).await;
        let status: Value = serde_json::from_str(&body).ok()?;
        (status["bots"][0]["last_reload_failed"] == true).then(|| status["bots"][0].clone())
    })
    .await;
    assert!(
        bot["last_reload"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("test_line.rhai:")),
        "{bot}"
    );
    let (_, page) = get(&format!("http://{address}/metrics"), None).await;
    assert!(
        page.contains(r#"callbot_script_reloads_total{bot="test-line",result="failed"} 1"#),
        "{page}"
    );
    let unit = std::fs::read_to_string(deploy.join("callbot.service")).unwrap();
    for line in ["Type=notify", "WatchdogSec=", "LimitNOFILE=", "ExecReload="] {
        assert!(unit.contains(line), "callbot.service has {line}");
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config whose PBX is at `url`, with `bots`, `tls` and HTTP on a free port.
fn config_for_url(dir: &Path, url: &str, tls: &str, bots: &str, http: &str) -> PathBuf {
    binary::script(dir, "test_line.rhai");
    let text = format!(
        "pbx:\n  url: \"{url}\"\n  domain: localhost\n  tls: {tls}\n  admin: {{ user: admin, password: \"${{PBX_ADMIN_PASSWORD}}\" }}\n\
         defaults: {{ prompts: \"{prompts}\", recordings: \"{recordings}\" }}\n\
         http: {{ listen: \"127.0.0.1:0\"{http} }}\nmedia: {{ addresses: [127.0.0.1] }}\nbots:\n{bots}",
        prompts = repo("prompts").display(),
        recordings = dir.join("recordings").display(),
        bots = bots.replace("{dir}", &dir.display().to_string()),
    );
    let path = dir.join("bots.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pbx_the_daemon_is_alive_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", closed_port());
    let config = config_for_url(dir.path(), &url, "{ insecure: true }", TEST_LINE, "");
    let daemon = binary::start(&["run", "-c", &config.display().to_string()]);
    let address = http_address(&daemon);
    daemon.wait_for("CONNECTION_FAILED", 1, WAIT);
    let (live, _) = get(&format!("http://{address}/livez"), None).await;
    let (ready, body) = get(&format!("http://{address}/readyz"), None).await;
    assert_eq!((live, ready), (200, 503), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
}

/// Runs the daemon on `config` with `password`, waits for the first ERROR line and returns the
/// log; the dashboard's status names the same fix.
async fn daemon_error(config: &Path, password: &str, fix: &str) -> String {
    let mut command = binary::daemon_command(config);
    command.env("PBX_ADMIN_PASSWORD", password);
    let daemon = Process::spawn_command(command);
    let address = http_address(&daemon);
    let log = daemon.wait_for(fix, 1, WAIT);
    let status: Value = wait::until("the error on the dashboard", WAIT, || async {
        let (_, body) = get(&format!("http://{address}/api/status"), None).await;
        let status: Value = serde_json::from_str(&body).ok()?;
        status["bots"][0]["last_error"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(fix))
            .then_some(status)
    })
    .await;
    assert_eq!(status["bots"][0]["registered"], false);
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "said once, as an error:\n{log}");
    assert!(errors[0].contains(fix), "{log}");
    log
}

/// `callbot dial` against `pbx` with `args` and the admin password `password`: it exits at
/// once with 2 and a message holding `fix`.
fn dial_error(args: &[&str], password: &str, fix: &str) {
    let mut command = std::process::Command::new(binary::binary());
    command
        .arg("dial")
        .args(args)
        .env("PBX_ADMIN_PASSWORD", password);
    let mut process = Process::spawn_command(command);
    // The output is read as it comes: wait for the message, then for the exit.
    let output = process.wait_for(fix, 1, WAIT);
    let status = process.wait(WAIT);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(!output.contains("calling"), "nothing dialled:\n{output}");
}

fn dial_args<'a>(pbx: &'a Emulator, cert: &'a str, from: &'a str) -> Vec<&'a str> {
    vec![
        "--pbx",
        &pbx.url,
        "--domain",
        "localhost",
        "--ca-file",
        cert,
        "--from",
        from,
        "--to",
        "501",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_admin_login_names_the_admin_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    let config = config_with_http(dir.path(), &pbx, TEST_LINE, "");
    binary::script(dir.path(), "test_line.rhai");
    daemon_error(&config, "wrong-password", "pbx.admin.password").await;
    let cert = pbx.cert.display().to_string();
    dial_error(
        &dial_args(&pbx, &cert, "509"),
        "wrong-password",
        "check PBX_ADMIN_PASSWORD and --admin-user",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_extension_names_the_extension_and_domain_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let bots = TEST_LINE.replace("\"501\"", "\"999\"");
    let config = config_with_http(dir.path(), &pbx, &bots, "");
    let log = daemon_error(&config, ADMIN_PASSWORD, "bots[0].extension").await;
    assert!(log.contains("pbx.domain"), "{log}");
    let cert = pbx.cert.display().to_string();
    dial_error(
        &dial_args(&pbx, &cert, "999"),
        ADMIN_PASSWORD,
        "check --from and --domain",
    );
    // The demo's domain is localhost, not the URL's IP address.
    let ip_url = pbx.url.replace("localhost", "127.0.0.1");
    dial_error(
        &["--pbx", &ip_url, "--ca-file", &cert, "--to", "501"],
        ADMIN_PASSWORD,
        "--domain localhost",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_certificate_names_the_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    // Public roots only: the emulator's self-signed certificate is refused.
    let config = config_for_url(dir.path(), &pbx.url, "{}", TEST_LINE, "");
    daemon_error(&config, ADMIN_PASSWORD, "pbx.tls.ca_file").await;
    dial_error(
        &["--pbx", &pbx.url, "--domain", "localhost", "--to", "501"],
        ADMIN_PASSWORD,
        "--ca-file",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_checks_its_options_before_dialling_and_reports_an_unanswered_call_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    let cert = pbx.cert.display().to_string();
    let missing = dir.path().join("missing.wav").display().to_string();
    let not_wav = repo("README.md").display().to_string();
    let port = pbx.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let plain = format!("http://127.0.0.1:{port}");
    let bare = format!("127.0.0.1:{port}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--pbx", &plain],
            format!("did you mean --pbx https://127.0.0.1:{port}"),
        ),
        (
            vec!["--pbx", &bare],
            format!("did you mean --pbx https://127.0.0.1:{port}"),
        ),
        (
            vec!["--pbx", &pbx.url, "--dtmf", "12x"],
            "\"x\" are not DTMF keys".into(),
        ),
        (
            vec!["--pbx", &pbx.url, "--play", &missing],
            "missing.wav".into(),
        ),
        (
            vec!["--pbx", &pbx.url, "--play", &not_wav],
            "README.md".into(),
        ),
        (
            vec!["--pbx", &pbx.url, "--ring-timeout", "soon"],
            "expected a duration".into(),
        ),
    ];
    for (mut args, message) in cases {
        args.extend(["--to", "501", "--ca-file", &cert]);
        let mut process = binary::start(&[&["dial"], args.as_slice()].concat());
        process.wait_for(&message, 1, WAIT);
        assert_eq!(process.wait(WAIT).code(), Some(2), "{args:?}");
    }
    // None of them reached the PBX.
    let events: Vec<Value> = common::emulator_json(&pbx.url, "events").await;
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "login" || e["kind"] == "dial"),
        "{events:?}"
    );
    // 703 never answers: the ring timeout ends the call, and no answer time is made up.
    let mut process = binary::start(&[
        "dial",
        "--pbx",
        &pbx.url,
        "--domain",
        "localhost",
        "--ca-file",
        &cert,
        "--to",
        "703",
        "--ring-timeout",
        "2s",
    ]);
    let output = process.wait_for("not answered", 1, WAIT);
    assert_eq!(process.wait(WAIT).code(), Some(1), "{output}");
    assert!(!output.contains("answered after"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_quiet_about_calls_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    binary::script(dir.path(), "test_line.rhai");
    let config = config(
        dir.path(),
        &pbx,
        &TEST_LINE.replace("{dir}", &dir.path().display().to_string()),
    );
    let daemon = binary::start(&[
        "run",
        "--log-format",
        "json",
        "-c",
        &config.display().to_string(),
    ]);
    daemon.wait_for("ACCESS_GRANTED", 1, WAIT);
    let caller = phone(&pbx, "502", dir.path()).await;
    let mut call = caller.dial("501");
    call.reach(CallState::InCall).await.unwrap();
    call.command(CallCommand::Queue(Action::Hangup));
    call.ended().await.unwrap();
    wait::until("the call's CDR line", WAIT, || async {
        std::fs::read_to_string(dir.path().join("recordings/cdr.jsonl")).ok()
    })
    .await;
    let log = daemon.output();
    let granted = log
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .find(|line| line["message"] == "ACCESS_GRANTED")
        .expect("the grant is logged");
    assert_eq!(granted["level"], "INFO", "{granted}");
    assert!(
        granted["spans"].to_string().contains("test-line"),
        "{granted}"
    );
    // One line per call only with -v.
    assert!(!log.contains("incoming call"), "{log}");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("https://127.0.0.1:{}", closed_port());
    let config = config_for_url(dir.path(), &url, "{ insecure: true }", TEST_LINE, "");
    let mut command = std::process::Command::new(binary::binary());
    command
        .args(["run", "-c"])
        .arg(&config)
        .env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000");
    let mut daemon = Process::spawn_command(command);
    let mut heard = String::new();
    let mut buffer = [0u8; 4096];
    while !(heard.contains("READY=1") && heard.contains("WATCHDOG=1")) {
        let n = socket
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("{e}; heard so far: {heard}"));
        heard.push_str(&String::from_utf8_lossy(&buffer[..n]));
        heard.push('\n');
    }
    assert!(heard.contains("STATUS=0/1 bots registered"), "{heard}");
    daemon.ask_to_stop();
    while !heard.contains("STOPPING=1") {
        let n = socket.recv(&mut buffer).unwrap();
        heard.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(daemon.wait(WAIT).success());
}

const TOKEN: &str = "ops-test-token-0123456789";

fn write_wav(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for sample in callbot::media::tone::sine(440.0, 8000, 8000) {
        writer.write_sample(sample).unwrap();
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_served_only_from_inside_their_folder_and_only_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", closed_port());
    let http = ", token: \"${DASH_TOKEN}\"";
    let config = config_for_url(dir.path(), &url, "{ insecure: true }", TEST_LINE, http);
    let recordings = dir.path().join("recordings");
    let wav = recordings.join("test-line/2026-01-01/call-1.wav");
    write_wav(&wav);
    std::fs::write(dir.path().join("secret.wav"), b"RIFF not for you").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.wav"),
        recordings.join("test-line/2026-01-01/out.wav"),
    )
    .unwrap();
    let record = serde_json::json!({
        "bot": "test-line", "call_id": "call-1", "from": "502", "to": "501",
        "state": "COMPLETED", "recordings": [wav.display().to_string()],
    });
    std::fs::write(recordings.join("cdr.jsonl"), format!("{record}\n")).unwrap();
    let mut command = std::process::Command::new(binary::binary());
    command
        .args(["run", "-c"])
        .arg(&config)
        .env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DASH_TOKEN", TOKEN);
    let daemon = Process::spawn_command(command);
    let base = format!("http://{}", http_address(&daemon));

    // The page itself is open; its data and /metrics are not.
    assert_eq!(get(&format!("{base}/"), None).await.0, 200);
    assert_eq!(get(&format!("{base}/api/calls"), None).await.0, 401);
    assert_eq!(get(&format!("{base}/metrics"), Some("wrong")).await.0, 401);
    assert_eq!(get(&format!("{base}/metrics"), Some(TOKEN)).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 503);

    let (status, body) = get(&format!("{base}/api/calls"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let calls: Value = serde_json::from_str(&body).unwrap();
    let file = &calls["calls"][0]["recordings"][0];
    assert_eq!(file["name"], "test-line/2026-01-01/call-1.wav", "{calls}");
    // The signed link works without the header; a tampered one does not.
    let link = format!("{base}/{}", file["url"].as_str().unwrap());
    let response = common::insecure_http().get(&link).send().await.unwrap();
    assert_eq!(response.status(), 200, "{link}");
    let body = response.bytes().await.unwrap();
    assert_eq!(body, std::fs::read(&wav).unwrap(), "the recording, whole");
    let tampered = link.replace("call-1", "call-2");
    assert_eq!(get(&tampered, None).await.0, 401);
    let (status, waveform) = get(
        &format!("{base}/{}?buckets=10", file["waveform"].as_str().unwrap()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{waveform}");
    let waveform: Value = serde_json::from_str(&waveform).unwrap();
    assert_eq!(waveform["channels"], 2);
    assert_eq!(waveform["peaks"][0].as_array().unwrap().len(), 10);

    // Nothing outside the folder, however it is asked for.
    for path in [
        "test-line/2026-01-01/out.wav",
        "test-line/..%2F..%2Fsecret.wav",
        "test-line/%2E%2E/%2E%2E/secret.wav",
        "test-line//etc/passwd",
        "nobody/2026-01-01/call-1.wav",
        "test-line/2026-01-01/call-1.json",
    ] {
        let (status, body) = get(&format!("{base}/recordings/{path}"), Some(TOKEN)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

/// The README's campaign recipe, as written there: `callbot demo` in one terminal, the
/// campaign in another, from the repository's folder (here a copy of what it needs). The demo
/// listens on its default port, 8443, as the recipe says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_campaign_recipe_works_against_the_demo() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("callbot demo") && b.contains("callbot campaign"))
        .expect("a recipe block in the README");
    let commands: Vec<Vec<String>> = block
        .lines()
        .map(|line| line.split(" #").next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(commands.len(), 2, "{block}");
    if std::net::TcpListener::bind("127.0.0.1:8443").is_err() {
        panic!("port 8443 is taken: the recipe's demo needs it (stop `callbot demo`)");
    }
    let dir = tempfile::tempdir().unwrap();
    for file in ["campaign.example.yaml", "contacts.example.csv"] {
        std::fs::copy(repo(file), dir.path().join(file)).unwrap();
    }
    for folder in ["scripts", "prompts"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(repo(folder)).unwrap().flatten() {
            std::fs::copy(
                entry.path(),
                dir.path().join(folder).join(entry.file_name()),
            )
            .unwrap();
        }
    }
    let command = |words: &[String]| {
        let mut words = words.iter();
        let mut command = std::process::Command::new(binary::binary());
        for word in words.by_ref() {
            match word.split_once('=') {
                Some((name, value)) if word != "callbot" => {
                    command.env(name, value);
                }
                _ => break,
            }
        }
        command.args(words).current_dir(dir.path());
        command
    };
    let demo = Process::spawn_command(command(&commands[0]));
    demo.wait_for("Ctrl-C stops it", 1, WAIT);
    demo.wait_for("ACCESS_GRANTED", 4, WAIT);
    let mut campaign = Process::spawn_command(command(&commands[1]));
    let status = campaign.wait(Duration::from_secs(120));
    let output = campaign.output();
    assert!(status.success(), "{output}");
    assert!(output.contains("8 attempt(s) this run"), "{output}");
    let rows = callbot::campaign::read_results(&dir.path().join("campaign-results.csv")).unwrap();
    let outcome = |number: &str| {
        rows.iter()
            .find(|r| r.number == number)
            .map(|r| (r.outcome.state.clone(), r.outcome.reason.clone()))
            .unwrap_or_default()
    };
    let result = |number: &str| {
        rows.iter()
            .find(|r| r.number == number)
            .map(|r| (r.outcome.amd.clone(), r.outcome.result.clone()))
            .unwrap_or_default()
    };
    assert_eq!(outcome("700").0, "COMPLETED", "{output}");
    assert_eq!(outcome("702").0, "BUSY", "{output}");
    assert_eq!(outcome("703").1, "no_answer", "{output}");
    // The answering machine gets the reminder as a voicemail; the person who waits hears it.
    assert_eq!(
        result("706"),
        ("MACHINE".to_owned(), "voicemail".to_owned()),
        "{output}"
    );
    assert_eq!(result("707").0, "HUMAN", "{output}");
    assert!(
        !output.contains("incoming call") && !output.contains("dialling"),
        "{output}"
    );
}
