//! Running the real `callbot` binary in tests: the emulator (`callbot pbx`) and the daemon
//! (`callbot run`) as child processes on 127.0.0.1, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbot::bench::target::each_output_line;
use callbot::config::{DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, LinkSettings, tls};
use callbot::media::MediaRuntime;
use callbot::phone::Phone;
use callbot::protocol::Dialect;

pub const ADMIN_PASSWORD: &str = "binary-admin-secret-991";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_callbot")
}

/// The repository's folder (prompts, scripts).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A test tool installed from a Debian package (`make test-deps` installs it), in /usr/bin or
/// /usr/sbin; panics saying which package is missing.
pub fn debian_tool(name: &str, package: &str) -> PathBuf {
    ["/usr/bin", "/usr/sbin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("{name} is missing: `make test` installs Debian's {package} package")
        })
}

/// A child whose output is collected in the background.
pub struct Process {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The program, to say whose output a failing test shows.
    program: String,
}

/// `callbot <args>` as a child process.
pub fn spawn(args: &[&str]) -> Process {
    let mut command = Command::new(binary());
    command.args(args);
    Process::spawn(command)
}

impl Process {
    /// Runs `command` with its output collected.
    pub fn spawn_command(command: Command) -> Self {
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        each_output_line(&mut child, move |line| {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        });
        Self {
            child,
            output,
            program,
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle` `count` times; panics with the output if not.
    pub fn wait_for(&self, needle: &str, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let output = self.output();
            if output.matches(needle).count() >= count {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {count}× {needle:?}; output:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.ask_to_stop();
        self.wait(within)
    }

    /// SIGTERM, without waiting for the exit.
    pub fn ask_to_stop(&self) {
        // SAFETY: kill only reads its arguments; the pid is our own child's.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Lines of a child's output shown when a test fails.
const OUTPUT_SHOWN_ON_FAILURE: usize = 150;

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its children said last: the emulator's or the daemon's
        // view of what went wrong.
        if std::thread::panicking() {
            let output = self.output();
            let lines: Vec<&str> = output.lines().collect();
            let tail = &lines[lines.len().saturating_sub(OUTPUT_SHOWN_ON_FAILURE)..];
            eprintln!(
                "--- last {} lines of {} ---\n{}",
                tail.len(),
                self.program,
                tail.join("\n")
            );
        }
    }
}

/// `callbot pbx` on an OS-chosen port.
pub struct Emulator {
    pub process: Process,
    pub url: String,
    pub cert: PathBuf,
}

pub fn emulator(dir: &Path, dialect: Dialect) -> Emulator {
    emulator_with(dir, &["--dialect", dialect.as_str()])
}

/// Writes a bots.yaml for the emulator with `bots` (YAML list items) and returns its path.
pub fn config(dir: &Path, emulator: &Emulator, bots: &str) -> PathBuf {
    let text = format!(
        r#"pbx:
  url: "{url}"
  domain: localhost
  tls: {{ ca_file: "{cert}" }}
  admin: {{ user: admin, password: "${{PBX_ADMIN_PASSWORD}}" }}
defaults: {{ prompts: "{prompts}", recordings: "{recordings}" }}
media: {{ addresses: [127.0.0.1] }}
bots:
{bots}"#,
        url = emulator.url,
        cert = emulator.cert.display(),
        prompts = repo("prompts").display(),
        recordings = dir.join("recordings").display(),
    );
    let path = dir.join("bots.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Like [`config`], with the dashboard, /metrics and the probes served on a free port.
pub fn config_with_http(dir: &Path, emulator: &Emulator, bots: &str) -> PathBuf {
    let path = config(dir, emulator, bots);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("bots:\n", "http: { listen: \"127.0.0.1:0\" }\nbots:\n"),
    )
    .unwrap();
    path
}

/// Where a daemon started with [`config_with_http`] serves its metrics (`host:port`).
pub fn metrics_address(daemon: &Process) -> String {
    let needle = "dashboard on http://";
    let log = daemon.wait_for(needle, 1, Duration::from_secs(30));
    let tail = log.split(needle).nth(1).unwrap();
    tail.split('/').next().unwrap().to_owned()
}

/// The `callbot run -v -c config` command (`-v`: a log line per call, which tests wait for),
/// to adjust before starting it.
pub fn daemon_command(config: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["run", "-v", "--grace", "10", "-c"])
        .arg(config)
        .env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD);
    command
}

/// Starts `command` (a daemon) and waits until `bots` links are granted.
pub fn daemon_from(command: Command, bots: usize) -> Process {
    let process = Process::spawn(command);
    process.wait_for("ACCESS_GRANTED", bots, Duration::from_secs(20));
    process
}

/// `callbot run -c config`, waiting until `bots` links are granted.
pub fn daemon(config: &Path, bots: usize) -> Process {
    daemon_from(daemon_command(config), bots)
}

/// Copies a repository script into `dir` (so a test can edit it) and returns its path.
pub fn script(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(repo(&format!("scripts/{name}")), &path).unwrap();
    path
}

/// Every file below `dir` with extension `ext`.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `callbot pbx` with extra arguments (and its accounts, if given).
pub fn emulator_with(dir: &Path, extra: &[&str]) -> Emulator {
    let cert = dir.join("pbx.pem");
    let mut command = Command::new(binary());
    command.arg("pbx");
    if !extra.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .args([
            "--open-test-api",
            "--media-address",
            "127.0.0.1",
            "--cert-out",
        ])
        .arg(&cert)
        .args(extra)
        .env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let process = Process::spawn(command);
    let output = process.wait_for("listening on https://", 1, Duration::from_secs(20));
    let url = output
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .expect("the emulator prints its URL")
        .trim()
        .to_owned();
    Emulator { process, url, cert }
}

/// Runs `callbot <args>` to completion with the admin password set; returns (status, output).
pub fn run_to_end(
    args: &[impl AsRef<std::ffi::OsStr>],
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(binary());
    command.args(args).env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let mut process = Process::spawn(command);
    let status = process.wait(within);
    (status, process.output())
}

/// `callbot <args>` in the background with the admin password set.
pub fn start(args: &[impl AsRef<std::ffi::OsStr>]) -> Process {
    let mut command = Command::new(binary());
    command.args(args).env("PBX_ADMIN_PASSWORD", ADMIN_PASSWORD);
    Process::spawn(command)
}

impl Process {
    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A phone (our media stack) logged in to `emulator` as `extension`, recording into `dir`.
pub async fn phone(emulator: &Emulator, extension: &str, dir: &Path) -> Phone {
    let settings = LinkSettings {
        bot: format!("phone-{extension}"),
        base: emulator.url.parse().unwrap(),
        domain: "localhost".into(),
        extension: extension.into(),
        credentials: Credentials::ThirdParty {
            user: "admin".into(),
            password: Secret::new(ADMIN_PASSWORD),
        },
        tls: Arc::new(tls::client_config(&TlsSetting::CaFile(emulator.cert.clone())).unwrap()),
        dialect: DialectSetting::Auto,
        useragent: "test-phone".into(),
    };
    let media = MediaRuntime::start(super::emulator::loopback()).unwrap();
    Phone::connect(settings, media, dir.to_owned())
        .await
        .expect("phone connects")
}
