//! Test extensions the emulator answers itself (campaigns need numbers that answer, press a
//! digit, are busy or never answer). Each is a phone of the project's own call stack, talking
//! to the switch over channels instead of a websocket, so it follows the protocol exactly as a
//! bot would.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Context;
use super::accounts::{AutoAction, AutoAnswer};
use super::switch::{SocketId, SwitchInput};
use crate::call::{Action, CallCommand, CallEvent};
use crate::connection::{FrameSender, LinkEvent};
use crate::media::MediaRuntime;
use crate::phone::{Phone, PhoneCall, PhoneEvent};
use crate::protocol::{CallState, ClientFrame, Dialect, SipCode};

/// Socket ids of test extensions count down from here (websockets count up from 1).
const FIRST_SOCKET: SocketId = u64::MAX;

/// Starts every test extension of the accounts; the tasks end when the switch does.
pub(super) fn start(
    ctx: &Arc<Context>,
    switch: &mpsc::UnboundedSender<SwitchInput>,
    media: &MediaRuntime,
) -> Vec<JoinHandle<()>> {
    let dialect = ctx.options.dialect;
    ctx.accounts
        .extensions
        .values()
        .filter_map(|e| e.auto.clone().map(|auto| (e.number.clone(), auto)))
        .enumerate()
        .map(|(i, (number, auto))| {
            let socket = FIRST_SOCKET - i as u64;
            let phone = attach(socket, &number, dialect, switch.clone(), media.clone());
            tokio::spawn(serve(phone, auto))
        })
        .collect()
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

async fn serve(mut phone: Phone, auto: AutoAnswer) {
    while let Some(call) = phone.incoming().await {
        tokio::spawn(behave(call, auto.clone()));
    }
}

/// Treats one call as configured.
async fn behave(mut call: PhoneCall, auto: AutoAnswer) {
    match auto.action {
        AutoAction::Busy => call.command(CallCommand::Reject(SipCode::BUSY_HERE)),
        AutoAction::Reject => call.command(CallCommand::Reject(SipCode::DECLINE)),
        AutoAction::NoAnswer => {}
        AutoAction::Answer => call.command(CallCommand::Answer),
    }
    while let Some(event) = call.next().await {
        match event {
            PhoneEvent::Call(_, CallEvent::State(CallState::InCall)) => {
                if let Some(digits) = &auto.press {
                    call.command(CallCommand::Queue(Action::Pause { ms: auto.after_ms }));
                    call.command(CallCommand::Queue(Action::SendDtmf {
                        digits: digits.clone(),
                    }));
                }
                let hangup = Duration::from_millis(auto.hangup_ms.into());
                call.command(CallCommand::SetTimer("hangup".into(), hangup));
            }
            PhoneEvent::Call(_, CallEvent::Timer(_)) => {
                call.command(CallCommand::Stop);
                call.command(CallCommand::Queue(Action::Hangup));
            }
            PhoneEvent::Ended(_) => break,
            PhoneEvent::Call(..) => {}
        }
    }
}
