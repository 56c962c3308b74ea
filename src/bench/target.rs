//! The process under test: our daemon (`callbot run`), the Python aiortc bot, or headless
//! Chromium with one softphone page per extension. Each answers the load generator's calls,
//! plays a looping prompt and (where it can) records; its CPU and memory are what we measure.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::browser::Browser;
use crate::procstat::{Usage, usage};

/// Who answers the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    Callbot,
    /// `callbot run --engine legacy`: the first media engine, kept to be measured against.
    #[value(hide = true)]
    CallbotLegacy,
    Aiortc,
    Chromium,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Callbot => "callbot",
            Peer::CallbotLegacy => "callbot-legacy",
            Peer::Aiortc => "aiortc",
            Peer::Chromium => "chromium",
        }
    }
}

/// Where the emulator is and what the peers need.
#[derive(Clone, Debug)]
pub struct Environment {
    pub url: String,
    pub cert: PathBuf,
    pub admin_password: String,
    /// The looping prompt (8 kHz mono WAV).
    pub prompt: PathBuf,
    /// A scratch folder for configs and recordings.
    pub work: PathBuf,
    /// The repository, for the Python peer and its setup script.
    pub repo: PathBuf,
    /// The first extension the bots answer on (the callbot and aiortc bots use only it).
    pub first_extension: u32,
}

/// The bench bot: answers, plays the prompt in a loop, records (the config says stereo) and
/// sends back every digit it hears.
const BENCH_SCRIPT: &str = r#"fn on_incoming_call(call) {
    call.answer();
    call.play("prompt.wav", #{ loops: 100000 });
}

fn on_dtmf(call, digit) {
    call.send_dtmf(digit);
}
"#;

/// A running peer.
pub struct Target {
    pub peer: Peer,
    child: Option<Child>,
    browser: Option<Browser>,
    /// Extensions to call, round-robin.
    numbers: Vec<String>,
    /// Where it records, if it does.
    pub recordings: Option<PathBuf>,
}

/// Hands every line `child` writes to its piped stdout and stderr to `on_line`, from one reader
/// thread per stream, until the streams close. Reading all output keeps the child from blocking
/// on a full pipe.
pub fn each_output_line(child: &mut Child, on_line: impl Fn(String) + Clone + Send + 'static) {
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let on_line = on_line.clone();
        std::thread::spawn(move || {
            BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
                .for_each(on_line)
        });
    }
}

/// Spawns `command`, waiting until a line of its output contains `ready`; returns the child and
/// that line. A child that stays silent longer than `within` is killed.
pub fn spawn_until(
    mut command: Command,
    ready: &str,
    within: Duration,
) -> Result<(Child, String), String> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Not `{command:?}`: that shows the environment, where the admin password is.
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = command.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    each_output_line(&mut child, move |line| {
        let _ = tx.send(line);
    });
    let deadline = std::time::Instant::now() + within;
    let mut last = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(ready) => {
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Ok((child, line));
            }
            Ok(line) => {
                last.push(line);
                if last.len() > 20 {
                    last.remove(0);
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    Err(format!(
        "{shown} never said {ready:?}; last output:\n{}",
        last.join("\n")
    ))
}

impl Target {
    /// A peer that is one process answering every call on extension `number`.
    fn process(peer: Peer, child: Child, number: String, recordings: PathBuf) -> Self {
        Self {
            peer,
            child: Some(child),
            browser: None,
            numbers: vec![number],
            recordings: Some(recordings),
        }
    }

    /// Starts `peer`, able to take `calls` calls at once.
    pub async fn start(peer: Peer, env: &Environment, calls: usize) -> Result<Self, String> {
        let first = env.first_extension.to_string();
        match peer {
            Peer::Callbot | Peer::CallbotLegacy => {
                let engine = match peer {
                    Peer::CallbotLegacy => "legacy",
                    _ => "sans-io",
                };
                let recordings = env.work.join("callbot-recordings");
                let prompts = env.work.join("prompts");
                std::fs::create_dir_all(&prompts).map_err(|e| e.to_string())?;
                std::fs::copy(&env.prompt, prompts.join("prompt.wav"))
                    .map_err(|e| e.to_string())?;
                std::fs::write(env.work.join("bench.rhai"), BENCH_SCRIPT)
                    .map_err(|e| e.to_string())?;
                let config = format!(
                    "pbx: {{ url: \"{url}\", domain: localhost, tls: {{ ca_file: \"{cert}\" }}, \
                     admin: {{ user: admin, password: \"${{PBX_ADMIN_PASSWORD}}\" }} }}\n\
                     defaults: {{ prompts: \"{prompts}\", recordings: \"{recordings}\", record: stereo }}\n\
                     media: {{ addresses: [127.0.0.1] }}\n\
                     bots:\n  - {{ name: bench, extension: \"{first}\", script: bench.rhai, max_calls: {max}, max_cps: 1000 }}\n",
                    url = env.url,
                    cert = env.cert.display(),
                    prompts = prompts.display(),
                    recordings = recordings.display(),
                    max = calls.max(1) * 2,
                );
                let path = env.work.join("bench.yaml");
                std::fs::write(&path, config).map_err(|e| e.to_string())?;
                let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
                command
                    .args(["run", "--engine", engine, "--grace", "5", "-c"])
                    .arg(&path)
                    .env("PBX_ADMIN_PASSWORD", &env.admin_password)
                    .env("RUST_LOG", "warn,callbot::connection=info");
                let (child, _) = spawn_until(command, "ACCESS_GRANTED", Duration::from_secs(30))?;
                Ok(Self::process(peer, child, first, recordings))
            }
            Peer::Aiortc => {
                let python = aiortc_python(&env.repo)?;
                let recordings = env.work.join("aiortc-recordings");
                std::fs::create_dir_all(&recordings).map_err(|e| e.to_string())?;
                let mut command = Command::new(python);
                command
                    .arg(env.repo.join("bench/peers/aiortc_bot.py"))
                    .args([
                        "--url",
                        &env.url,
                        "--domain",
                        "localhost",
                        "--extension",
                        &first,
                    ])
                    .arg("--ca-file")
                    .arg(&env.cert)
                    .arg("--prompt")
                    .arg(&env.prompt)
                    .arg("--record-dir")
                    .arg(&recordings)
                    .args(["--media-address", "127.0.0.1"])
                    .env("PBX_ADMIN_PASSWORD", &env.admin_password);
                let (child, _) =
                    spawn_until(command, &format!("READY {first}"), Duration::from_secs(60))?;
                Ok(Self::process(peer, child, first, recordings))
            }
            Peer::Chromium => {
                let mut browser = Browser::launch(&env.prompt).await?;
                let mut numbers = Vec::new();
                for i in 0..calls {
                    let number = (env.first_extension + i as u32).to_string();
                    let page = format!(
                        "{}?ext={number}&password={number}&autologin=1&autoanswer=1",
                        env.url
                    );
                    let tab = browser.open(&page).await?;
                    browser
                        .wait_for(
                            &tab,
                            "window.softphone && window.softphone.state().connection",
                            Duration::from_secs(60),
                            |v| v == "ACCESS_GRANTED",
                        )
                        .await?;
                    numbers.push(number);
                }
                Ok(Self {
                    peer,
                    child: None,
                    browser: Some(browser),
                    numbers,
                    recordings: None,
                })
            }
        }
    }

    /// The extension call `index` goes to.
    pub fn number_for(&self, index: usize) -> &str {
        &self.numbers[index % self.numbers.len()]
    }

    /// CPU and memory of the peer, all its processes together.
    /// What the peer costs now; `None` once its process is gone (a measurement of a dead peer
    /// would read as free).
    pub fn usage(&self) -> Option<Usage> {
        let group = match (&self.child, &self.browser) {
            (Some(child), _) => return usage(Some(child.id())),
            (None, Some(browser)) => browser.process_group(),
            (None, None) => return None,
        };
        let members = group_members(group);
        (!members.is_empty()).then(|| {
            members.into_iter().filter_map(|pid| usage(Some(pid))).fold(
                Usage::default(),
                |total, u| Usage {
                    cpu: total.cpu + u.cpu,
                    rss_kib: total.rss_kib + u.rss_kib,
                    threads: total.threads + u.threads,
                    open_files: total.open_files + u.open_files,
                },
            )
        })
    }

    /// Stops the peer (SIGTERM first, so recordings are closed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill only reads its arguments; the pid is our child's.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.browser = None;
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The processes of process group `group` (from `/proc/<pid>/stat`, field 5).
fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| crate::procstat::process_group(pid) == Some(group))
        .collect()
}

/// The Python of the aiortc peer's virtualenv, set up with `bench/setup.sh` when missing.
fn aiortc_python(repo: &Path) -> Result<PathBuf, String> {
    let python = repo.join("target/bench-venv/bin/python");
    if python.exists() {
        return Ok(python);
    }
    let status = Command::new("bash")
        .arg(repo.join("bench/setup.sh"))
        .current_dir(repo)
        .status()
        .map_err(|e| format!("bench/setup.sh: {e}"))?;
    if !status.success() || !python.exists() {
        return Err("bench/setup.sh could not set up the aiortc peer".into());
    }
    Ok(python)
}
