//! Headless Chromium driven over the DevTools protocol with our own websocket client: the
//! browser peer of `callbot bench` and the end-to-end tests. Every browser gets a fresh profile
//! and a fake microphone fed from a WAV file; dropping it kills the browser (all its processes)
//! and removes its profile.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

/// Debian's Chromium, started directly (the /usr/bin wrapper adds flags).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// A running Chromium with its DevTools socket.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill only reads its arguments; the group is the browser's own.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tab, attached with a flat session.
pub struct Tab {
    pub session: String,
}

impl Browser {
    /// Starts Chromium with a microphone that plays `microphone` (a WAV file) in a loop.
    pub async fn launch(microphone: &Path) -> Result<Self, String> {
        if !Path::new(CHROMIUM).exists() {
            return Err(format!(
                "{CHROMIUM} is missing: install Debian's chromium package (`make test` does)"
            ));
        }
        let profile = tempfile::tempdir().map_err(|e| format!("profile folder: {e}"))?;
        let mut command = Command::new(CHROMIUM);
        // Its own process group, so dropping the browser also ends its renderer processes.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--ignore-certificate-errors",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
                "--window-size=1100,800",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                microphone.display()
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{CHROMIUM}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "chromium did not print its DevTools URL".to_owned())?;
        let address = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| format!("unexpected DevTools URL {url}"))?
            .to_owned();
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("DevTools port: {e}"))?;
        let (socket, _) = client_async(url.as_str(), tcp)
            .await
            .map_err(|e| format!("DevTools socket: {e}"))?;
        Ok(Self {
            child,
            _profile: profile,
            socket,
            next_id: 1,
        })
    }

    /// The browser's process group (all its processes), for measuring what it costs.
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// Sends a DevTools command and returns its result (events in between are skipped).
    pub async fn command(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("DevTools: {e}"))?;
        let reply = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(Ok(frame)) = self.socket.next().await {
                if let Message::Text(text) = frame {
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if value["id"] == id {
                        return Ok(value);
                    }
                }
            }
            Err("the DevTools socket closed".to_owned())
        })
        .await
        .map_err(|_| format!("no reply to {method}"))??;
        if let Some(error) = reply.get("error") {
            return Err(format!("{method}: {error}"));
        }
        Ok(reply["result"].clone())
    }

    /// Opens `url` in a new tab.
    pub async fn open(&mut self, url: &str) -> Result<Tab, String> {
        let target = self
            .command(None, "Target.createTarget", json!({ "url": url }))
            .await?;
        let attached = self
            .command(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("no DevTools session")?;
        Ok(Tab {
            session: session.to_owned(),
        })
    }

    /// Evaluates `expression` in the tab (awaiting promises) and returns its JSON value.
    pub async fn eval(&mut self, tab: &Tab, expression: &str) -> Result<Value, String> {
        let result = self
            .command(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression} threw: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` until `done` accepts its value; the error holds the last value.
    pub async fn wait_for(
        &mut self,
        tab: &Tab,
        expression: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self.eval(tab, expression).await?;
            if done(&value) {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "waited {within:?} for {expression}; last value: {value}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the tab.
    pub async fn screenshot(&mut self, tab: &Tab, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let shot = self
            .command(
                Some(&tab.session),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await?;
        let data = shot["data"].as_str().ok_or("no PNG data")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}
