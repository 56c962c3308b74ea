//! A phone driven by code instead of a script: one extension, its link, and calls whose events
//! come out of channels and whose commands go in. `callbot dial`, the load generator and tests
//! use it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::{
    self, ActorInput, CallCommand, CallEvent, CallHandler, CallInfo, CallReport, CallSetup,
    CallTable, Delivery, Inbox, Origin, RING_TIMEOUT,
};
use crate::connection::{Fault, FrameSender, Link, LinkEvent, LinkSettings};
use crate::media::MediaRuntime;
use crate::protocol::{CallId, CallState, ConnectionState, Dialect, ServerFrame};

/// How long a phone waits for its link to be granted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a phone could not register.
#[derive(Clone, Debug)]
pub struct ConnectError {
    /// The link's state (`None`: no answer at all).
    pub state: Option<ConnectionState>,
    pub reason: String,
    /// Set when only a changed setting can fix it.
    pub fault: Option<Fault>,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.state {
            Some(state) => write!(f, "{}: {}", state.as_str(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<ConnectError> for String {
    fn from(error: ConnectError) -> Self {
        error.to_string()
    }
}

/// What a phone call reports.
#[derive(Clone, Debug)]
pub enum PhoneEvent {
    /// A call event, with the call as it was then.
    Call(Box<CallInfo>, CallEvent),
    /// The call is over (its final snapshot, recordings closed).
    Ended(Box<CallInfo>),
}

/// Why [`PhoneCall::reach`] did not see the state it waited for.
#[derive(Debug, Error)]
pub enum Unreached {
    /// The call ended first; its final snapshot says how.
    #[error("the call ended ({})", .0.end.map_or("?", |end| end.reason.as_str()))]
    Ended(Box<CallInfo>),
    /// The phone went away (dropped, or its link task stopped) and took the call with it.
    #[error("the phone is gone")]
    PhoneGone,
}

/// One call of a phone.
pub struct PhoneCall {
    pub id: CallId,
    inbox: mpsc::UnboundedSender<ActorInput>,
    events: mpsc::UnboundedReceiver<PhoneEvent>,
}

impl PhoneCall {
    pub fn command(&self, command: CallCommand) {
        let _ = self.inbox.send(ActorInput::Command(command));
    }

    /// The next event; `None` once the call is gone.
    pub async fn next(&mut self) -> Option<PhoneEvent> {
        self.events.recv().await
    }

    /// Waits for `state`; the call's end (or the phone's) first is an error.
    pub async fn reach(&mut self, state: CallState) -> Result<Box<CallInfo>, Unreached> {
        while let Some(event) = self.next().await {
            match event {
                PhoneEvent::Call(info, CallEvent::State(s)) if s == state => return Ok(info),
                PhoneEvent::Ended(info) => return Err(Unreached::Ended(info)),
                _ => {}
            }
        }
        Err(Unreached::PhoneGone)
    }

    /// Waits for the end of the call.
    pub async fn ended(&mut self) -> Option<Box<CallInfo>> {
        while let Some(event) = self.next().await {
            if let PhoneEvent::Ended(info) = event {
                return Some(info);
            }
        }
        None
    }
}

/// Passes events to the call's channel; commands come from whoever holds the `PhoneCall`.
struct ChannelHandler(mpsc::UnboundedSender<PhoneEvent>);

impl CallHandler for ChannelHandler {
    fn handle(&mut self, call: &CallInfo, event: &CallEvent) -> Result<Vec<CallCommand>, String> {
        let _ = self
            .0
            .send(PhoneEvent::Call(Box::new(call.clone()), event.clone()));
        Ok(Vec::new())
    }
}

enum Request {
    Dial {
        to: String,
        call: PhoneCallParts,
        ring_timeout: Duration,
    },
}

/// The actor's side of a call's channels.
struct PhoneCallParts {
    id: CallId,
    inbox: Inbox,
    events: mpsc::UnboundedSender<PhoneEvent>,
    recording: PathBuf,
}

impl PhoneCallParts {
    /// The channels of call `id`: the owner's end and the actor's.
    fn new(id: CallId, recordings: &std::path::Path) -> (PhoneCall, Self) {
        let (inbox, inbox_rx) = call::inbox();
        let (events_tx, events) = mpsc::unbounded_channel();
        let parts = Self {
            id: id.clone(),
            inbox: (inbox.clone(), inbox_rx),
            events: events_tx,
            recording: recordings.join(crate::untrusted::unique_file_name(id.as_str(), "wav")),
        };
        (PhoneCall { id, inbox, events }, parts)
    }
}

/// A registered extension whose calls are driven by code.
pub struct Phone {
    extension: String,
    dialect: Dialect,
    requests: mpsc::UnboundedSender<Request>,
    incoming: mpsc::UnboundedReceiver<PhoneCall>,
    task: JoinHandle<()>,
    recordings: PathBuf,
}

impl Phone {
    /// Logs in and waits until the link is granted; the first failure is returned (a phone is
    /// used interactively: retrying is the caller's choice). Recordings asked for without a
    /// path go to `recordings`.
    pub async fn connect(
        settings: LinkSettings,
        media: MediaRuntime,
        recordings: PathBuf,
    ) -> Result<Self, ConnectError> {
        let extension = settings.extension.clone();
        let (link, mut events) = Link::spawn(settings);
        let dialect = loop {
            match tokio::time::timeout(CONNECT_TIMEOUT, events.recv()).await {
                Ok(Some(LinkEvent::Connection {
                    state: ConnectionState::AccessGranted,
                    dialect,
                    ..
                })) => break dialect,
                Ok(Some(LinkEvent::Connection {
                    state,
                    reason,
                    fault,
                    ..
                })) => {
                    return Err(ConnectError {
                        state: Some(state),
                        reason: reason.unwrap_or_default(),
                        fault,
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(ConnectError {
                        state: None,
                        reason: "no answer from the PBX".into(),
                        fault: None,
                    });
                }
            }
        };
        let frames = link.sender();
        Ok(Self::attach(
            &extension,
            dialect,
            (frames, events),
            Some(link),
            media,
            recordings,
        ))
    }

    /// A phone on an existing frame transport: frames to send go to `transport.0`, what the
    /// PBX says arrives on `transport.1` (the emulator's test extensions use channels).
    pub fn attach(
        extension: &str,
        dialect: Dialect,
        transport: (FrameSender, mpsc::Receiver<LinkEvent>),
        link: Option<Link>,
        media: MediaRuntime,
        recordings: PathBuf,
    ) -> Self {
        let (frames, events) = transport;
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let switchboard = Switchboard {
            link,
            frames,
            events,
            requests: requests_rx,
            incoming: incoming_tx,
            calls: CallTable::default(),
            reports: mpsc::unbounded_channel(),
            media,
            speech: crate::speech::Speech::default(),
            extension: extension.to_owned(),
            dialect,
            recordings: recordings.clone(),
        };
        Self {
            extension: extension.to_owned(),
            dialect,
            requests,
            incoming,
            task: tokio::spawn(switchboard.run()),
            recordings,
        }
    }

    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// The dialect the PBX speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Places a call that rings for up to a minute.
    pub fn dial(&self, to: &str) -> PhoneCall {
        self.dial_ringing(to, RING_TIMEOUT)
    }

    /// Places a call that gives up (as `no_answer`) after ringing for `ring_timeout`.
    pub fn dial_ringing(&self, to: &str, ring_timeout: Duration) -> PhoneCall {
        let (call, parts) = PhoneCallParts::new(CallId::random(), &self.recordings);
        let _ = self.requests.send(Request::Dial {
            to: to.to_owned(),
            call: parts,
            ring_timeout,
        });
        call
    }

    /// The next call that rings here (already answered with 180; answer or reject it).
    pub async fn incoming(&mut self) -> Option<PhoneCall> {
        self.incoming.recv().await
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The phone's task: routes frames to its calls and starts them.
struct Switchboard {
    /// The websocket link, when there is one (closed when the phone goes).
    link: Option<Link>,
    frames: FrameSender,
    events: mpsc::Receiver<LinkEvent>,
    requests: mpsc::UnboundedReceiver<Request>,
    incoming: mpsc::UnboundedSender<PhoneCall>,
    /// Live calls, each with where its owner hears that it ended.
    calls: CallTable<mpsc::UnboundedSender<PhoneEvent>>,
    reports: (
        mpsc::UnboundedSender<CallReport>,
        mpsc::UnboundedReceiver<CallReport>,
    ),
    media: MediaRuntime,
    /// The phone's calls share one speech cache.
    speech: crate::speech::Speech,
    extension: String,
    dialect: Dialect,
    recordings: PathBuf,
}

impl Switchboard {
    async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(LinkEvent::Frame(frame)) => self.frame(frame),
                    Some(LinkEvent::Connection { state, dialect, .. }) => {
                        self.dialect = dialect;
                        if state != ConnectionState::AccessGranted {
                            self.calls.tell_all(|| ActorInput::LinkLost);
                        }
                    }
                    Some(LinkEvent::Client(_)) => {}
                    None => break,
                },
                request = self.requests.recv() => match request {
                    Some(Request::Dial { to, call, ring_timeout }) => {
                        let id = call.id.clone();
                        self.start(Origin::Outbound { to, id }, call, ring_timeout);
                    }
                    None => break,
                },
                Some(CallReport { key, info }) = self.reports.1.recv() => {
                    if let Some(events) = self.calls.remove(key) {
                        let _ = events.send(PhoneEvent::Ended(info));
                    }
                }
            }
        }
        if let Some(link) = self.link {
            link.close().await;
        }
    }

    fn setup(&self, origin: Origin, recording: PathBuf, ring_timeout: Duration) -> CallSetup {
        CallSetup {
            origin,
            dialect: self.dialect,
            own_extension: self.extension.clone(),
            ring_timeout,
            vars: BTreeMap::new(),
            record: None,
            recording_path: recording,
            frames: self.frames.clone(),
            media: self.media.clone(),
            dial_pacer: None,
            live: None,
            stream: None,
            detect_machine: None,
            speech: self.speech.clone(),
        }
    }

    fn start(&mut self, origin: Origin, parts: PhoneCallParts, ring_timeout: Duration) {
        let (inbox, inbox_rx) = parts.inbox;
        let handler = Box::new(ChannelHandler(parts.events.clone()));
        let key = self.calls.add(&origin, inbox, parts.events);
        let setup = self.setup(origin, parts.recording, ring_timeout);
        call::spawn(key, setup, handler, inbox_rx, self.reports.0.clone());
    }

    fn frame(&mut self, frame: ServerFrame) {
        if let Delivery::Incoming(invite) = self.calls.deliver(frame) {
            let (call, parts) = PhoneCallParts::new(invite.callid.clone(), &self.recordings);
            self.start(Origin::Inbound(invite), parts, RING_TIMEOUT);
            let _ = self.incoming.send(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_whose_phone_is_gone_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut call, parts) = PhoneCallParts::new(CallId::random(), dir.path());
        drop(parts);
        assert!(matches!(
            call.reach(CallState::InCall).await,
            Err(Unreached::PhoneGone)
        ));
    }
}
