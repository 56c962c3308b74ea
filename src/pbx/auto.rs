//! Test extensions the emulator answers itself (campaigns need numbers that answer, press a
//! digit, are busy or never answer, and people and answering machines to tell apart). Each is
//! a phone of the project's own call stack, talking to the switch over channels instead of a
//! websocket, so it follows the protocol exactly as a bot would.
//!
//! A person says "Hello?" and records what it hears from then on; an answering machine plays
//! its greeting, which ends in a beep, and records what follows. Each closed recording is an
//! event (`recorded`, with the file) in `/emulator/events`, for tests to read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Context;
use super::accounts::{AutoAction, AutoAnswer};
use super::switch::{SocketId, SwitchInput};
use crate::call::{Action, CallCommand, CallEvent};
use crate::connection::{FrameSender, LinkEvent};
use crate::lock::lock;
use crate::media::MediaRuntime;
use crate::phone::{Phone, PhoneCall, PhoneEvent};
use crate::protocol::{CallState, ClientFrame, Dialect, SipCode};
use serde_json::json;

/// Socket ids of test extensions count down from here (websockets count up from 1).
const FIRST_SOCKET: SocketId = u64::MAX;

/// The voices of the test extensions (src/pbx/voices, made by its generate.sh).
const MACHINE_GREETING: &[u8] = include_bytes!("voices/machine_greeting.wav");
const HELLO: &[u8] = include_bytes!("voices/hello.wav");

/// The running test extensions, and the folder of their voices and recordings (removed with
/// them).
pub(super) struct TestExtensions {
    pub tasks: Vec<JoinHandle<()>>,
    _folder: Option<tempfile::TempDir>,
}

/// Where an extension's prompts are and its recordings go.
#[derive(Clone)]
struct Files {
    greeting: PathBuf,
    hello: PathBuf,
    recordings: PathBuf,
}

impl Files {
    fn write(folder: &Path) -> std::io::Result<Self> {
        let files = Self {
            greeting: folder.join("machine_greeting.wav"),
            hello: folder.join("hello.wav"),
            recordings: folder.join("recordings"),
        };
        std::fs::write(&files.greeting, MACHINE_GREETING)?;
        std::fs::write(&files.hello, HELLO)?;
        std::fs::create_dir(&files.recordings)?;
        Ok(files)
    }
}

/// Starts every test extension of the accounts; the tasks end when the switch does.
pub(super) fn start(
    ctx: &Arc<Context>,
    switch: &mpsc::UnboundedSender<SwitchInput>,
    media: &MediaRuntime,
) -> TestExtensions {
    let dialect = ctx.options.dialect;
    let folder = tempfile::Builder::new()
        .prefix("callbot-emulator-")
        .tempdir()
        .and_then(|dir| Files::write(dir.path()).map(|files| (dir, files)));
    let (folder, files) = match folder {
        Ok((dir, files)) => (Some(dir), Some(files)),
        Err(e) => {
            tracing::error!("test extensions: no folder for their voices and recordings: {e}");
            (None, None)
        }
    };
    let tasks = ctx
        .accounts
        .extensions
        .values()
        .filter_map(|e| e.auto.clone().map(|auto| (e.number.clone(), auto)))
        .enumerate()
        .map(|(i, (number, auto))| {
            let socket = FIRST_SOCKET - i as u64;
            let phone = attach(socket, &number, dialect, switch.clone(), media.clone());
            tokio::spawn(serve(phone, auto, ctx.clone(), files.clone()))
        })
        .collect();
    TestExtensions {
        tasks,
        _folder: folder,
    }
}

/// Registers `extension` with the switch as a socket of its own and returns a phone on it.
fn attach(
    socket: SocketId,
    extension: &str,
    dialect: Dialect,
    switch: mpsc::UnboundedSender<SwitchInput>,
    media: MediaRuntime,
) -> Phone {
    let (server_tx, mut server_rx) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(256);
    let (frames_tx, mut frames_rx) = mpsc::channel::<ClientFrame>(256);
    let _ = switch.send(SwitchInput::Open {
        socket,
        extension: extension.to_owned(),
        tx: server_tx,
    });
    let _ = switch.send(SwitchInput::Frame {
        socket,
        frame: ClientFrame::SipRegister {
            useragent: "callbot emulator test extension".into(),
        },
    });
    let to_switch = switch.clone();
    tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if to_switch
                .send(SwitchInput::Frame { socket, frame })
                .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Some(frame)) = server_rx.recv().await {
            if events_tx.send(LinkEvent::Frame(frame)).await.is_err() {
                break;
            }
        }
    });
    Phone::attach(
        extension,
        dialect,
        (FrameSender::from_channel(frames_tx), events),
        None,
        media,
        std::env::temp_dir(),
    )
}

async fn serve(mut phone: Phone, auto: AutoAnswer, ctx: Arc<Context>, files: Option<Files>) {
    let extension = phone.extension().to_owned();
    while let Some(call) = phone.incoming().await {
        let treat = Treat {
            auto: auto.clone(),
            ctx: ctx.clone(),
            files: files.clone(),
            extension: extension.clone(),
        };
        tokio::spawn(treat.call(call));
    }
}

/// How one call is treated.
struct Treat {
    auto: AutoAnswer,
    ctx: Arc<Context>,
    files: Option<Files>,
    extension: String,
}

impl Treat {
    async fn call(self, mut call: PhoneCall) {
        let auto = &self.auto;
        match auto.action {
            AutoAction::Busy => call.command(CallCommand::Reject(SipCode::BUSY_HERE)),
            AutoAction::Reject => call.command(CallCommand::Reject(SipCode::DECLINE)),
            AutoAction::NoAnswer => {}
            AutoAction::Answer | AutoAction::Person | AutoAction::Machine => {
                call.command(CallCommand::Answer);
            }
        }
        while let Some(event) = call.next().await {
            match event {
                PhoneEvent::Call(_, CallEvent::State(CallState::InCall)) => self.answered(&call),
                PhoneEvent::Call(_, CallEvent::PlayDone(prompt))
                    if auto.action == AutoAction::Machine && prompt == GREETING_NAME =>
                {
                    // The beep has ended: what comes now is the message.
                    self.record(&call);
                }
                PhoneEvent::Call(_, CallEvent::Timer(_)) => {
                    call.command(CallCommand::Stop);
                    call.command(CallCommand::Queue(Action::Hangup));
                }
                PhoneEvent::Call(info, CallEvent::Recording(path)) => {
                    let detail = match &info.recording_error {
                        Some(error) => json!({ "path": path, "error": error }),
                        None => json!({ "path": path }),
                    };
                    lock(&self.ctx.journal).event(
                        "recorded",
                        Some(&self.extension),
                        Some(info.id.as_str()),
                        detail,
                    );
                }
                PhoneEvent::Ended(_) => break,
                PhoneEvent::Call(..) => {}
            }
        }
    }

    fn answered(&self, call: &PhoneCall) {
        let auto = &self.auto;
        match (auto.action, &self.files) {
            (AutoAction::Person, Some(files)) => {
                self.play(call, &files.hello);
                self.record(call);
            }
            (AutoAction::Machine, Some(files)) => self.play(call, &files.greeting),
            _ => {}
        }
        if let Some(digits) = &auto.press {
            call.command(CallCommand::Queue(Action::Pause { ms: auto.after_ms }));
            call.command(CallCommand::Queue(Action::SendDtmf {
                digits: digits.clone(),
            }));
        }
        let hangup = Duration::from_millis(auto.hangup_ms.into());
        call.command(CallCommand::SetTimer("hangup".into(), hangup));
    }

    fn play(&self, call: &PhoneCall, prompt: &Path) {
        call.command(CallCommand::Queue(Action::Play {
            prompt: prompt.to_owned(),
            loops: 1,
            for_gather: false,
        }));
    }

    /// Records the call, the far end on the left, into the extensions' folder.
    fn record(&self, call: &PhoneCall) {
        let Some(files) = &self.files else {
            return;
        };
        let name = format!(
            "{}-{}",
            self.extension,
            crate::untrusted::unique_file_name(call.id.as_str(), "wav")
        );
        call.command(CallCommand::Record {
            path: Some(files.recordings.join(name)),
            stereo: true,
            max_secs: Some(MAX_RECORDING_SECS),
        });
    }
}

/// What `on_play_done` calls the machine's greeting.
const GREETING_NAME: &str = "machine_greeting.wav";
/// A test extension records at most this much of one call.
const MAX_RECORDING_SECS: u32 = 120;
