//! One bot's link to the PBX: a task that logs in, opens the socket, runs the bootstrap, keeps
//! the socket alive, and reconnects with backoff when anything breaks (docs/protocol.md §1,
//! §2, §6).
//!
//! The owner talks to it through two channels: frames to send go in, [`LinkEvent`]s come out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tracing::{Instrument, debug, info, warn};
use url::Url;

use super::backoff::Backoff;
use super::fault::Fault;
use super::login::{Credentials, LoginError, login};
use super::presence::{Client, PresenceTable};
use super::socket::{PbxSocket, SocketError, open};
use crate::config::DialectSetting;
use crate::protocol::{CallScope, ClientFrame, ConnectionState, Dialect, ServerFrame};

/// Keepalive period (§2).
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Without a `sip-register` reply, the link counts as ready this long after the bootstrap (§6).
const READY_FALLBACK: Duration = Duration::from_secs(3);
/// Login requests, and the opening of the socket (TCP, TLS, upgrade), give up after this long:
/// a PBX that accepts connections and then stalls must not hang the link.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after a [`Fault`] (a setting someone must fix): rarely, so a wrong password does
/// not lock the account or flood the PBX's log, but still, since the fix may be on the PBX.
const FAULT_RETRY_FIRST: Duration = Duration::from_secs(60);
const FAULT_RETRY_CAP: Duration = Duration::from_secs(15 * 60);
/// Frames waiting to be sent; senders wait when the socket is this far behind.
const OUTGOING_QUEUE: usize = 1024;
/// Events waiting for the owner; the socket is not read while the owner is this far behind
/// (frames to send keep flowing meanwhile: the owner may be waiting to queue one).
const EVENT_QUEUE: usize = 1024;

/// Everything a link needs to reach and log in to the PBX.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// The bot's name, for logs.
    pub bot: String,
    /// `https://host[:port]` of the PBX.
    pub base: Url,
    pub domain: String,
    pub extension: String,
    pub credentials: Credentials,
    pub tls: Arc<ClientConfig>,
    pub dialect: DialectSetting,
    /// Sent in `sip-register`.
    pub useragent: String,
}

/// What a link reports.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// The link changed state (§8). `dialect` is the one calls must speak from now on; `reason`
    /// says why a link failed or closed, and `fault` when only a changed setting can fix it.
    Connection {
        state: ConnectionState,
        dialect: Dialect,
        reason: Option<String>,
        fault: Option<Fault>,
    },
    /// Another extension went online or offline.
    Client(Client),
    /// A frame about calls (signalling, `call-state` lists, caller ids …), for the call layer.
    Frame(ServerFrame),
}

/// A handle to send frames on the link; cheap to clone, one per call.
#[derive(Clone, Debug)]
pub struct FrameSender(mpsc::Sender<ClientFrame>);

impl FrameSender {
    /// A sender whose frames go to `channel` instead of a socket (the emulator's own test
    /// extensions speak the protocol over channels).
    pub fn from_channel(channel: mpsc::Sender<ClientFrame>) -> Self {
        Self(channel)
    }

    /// Queues a frame for the socket. Frames sent while the link is down are dropped (the calls
    /// they belong to end with the socket).
    pub async fn send(&self, frame: ClientFrame) {
        let _ = self.0.send(frame).await;
    }
}

/// The running link. Dropping it (or [`Link::close`]) stops the task and closes the socket.
pub struct Link {
    frames: FrameSender,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts the link task; it connects at once and keeps reconnecting until stopped.
    pub fn spawn(settings: LinkSettings) -> (Link, mpsc::Receiver<LinkEvent>) {
        let (frames_tx, frames_rx) = mpsc::channel(OUTGOING_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let span = tracing::info_span!("link", bot = %settings.bot, ext = %settings.extension);
        let task = tokio::spawn(
            Runner {
                http: http_client(&settings.tls),
                presence: PresenceTable::new(&settings.extension),
                settings,
                frames: frames_rx,
                events: events_tx,
                stop: stop_rx,
            }
            .run()
            .instrument(span),
        );
        let link = Link {
            frames: FrameSender(frames_tx),
            stop: Some(stop_tx),
            task,
        };
        (link, events_rx)
    }

    pub fn sender(&self) -> FrameSender {
        self.frames.clone()
    }

    /// Closes the socket cleanly and waits for the task to end.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

fn http_client(tls: &Arc<ClientConfig>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(ClientConfig::clone(tls))
        .timeout(OPEN_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// How one session ended.
enum Ended {
    /// The owner asked the link to stop, or went away.
    Stopped,
    /// Login or upgrade refused.
    Denied(String),
    /// Refused in a way retrying cannot heal.
    Fault(Fault),
    /// Never got a socket.
    Failed(String),
    /// The socket closed after it was open; `granted` tells whether it had become ready.
    Closed { reason: String, granted: bool },
}

struct Runner {
    settings: LinkSettings,
    http: Result<reqwest::Client, String>,
    presence: PresenceTable,
    frames: mpsc::Receiver<ClientFrame>,
    events: mpsc::Sender<LinkEvent>,
    stop: oneshot::Receiver<()>,
}

/// A session's outcome plus the dialect it learned.
struct Attempt {
    ended: Ended,
    dialect: Dialect,
}

impl Runner {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut fault_backoff = Backoff::new(FAULT_RETRY_FIRST, FAULT_RETRY_CAP);
        let mut dialect = self.settings.dialect.initial();
        loop {
            let attempt = self.session(dialect).await;
            dialect = attempt.dialect;
            let (state, reason, fault) = match attempt.ended {
                Ended::Stopped => return,
                Ended::Fault(fault) => (fault.state(), fault.what(), Some(fault)),
                Ended::Denied(reason) => (ConnectionState::AccessDenied, reason, None),
                Ended::Failed(reason) => (ConnectionState::ConnectionFailed, reason, None),
                Ended::Closed { reason, granted } => {
                    if granted {
                        backoff.reset();
                        fault_backoff.reset();
                    }
                    (ConnectionState::ConnectionClosed, reason, None)
                }
            };
            let delay = if fault.is_some() {
                // The owner says once what to fix; the retries stay quiet.
                let delay = fault_backoff.next_delay();
                debug!(
                    "{}: {reason}; trying again in {:.0} s",
                    state.as_str(),
                    delay.as_secs_f64()
                );
                delay
            } else {
                let delay = backoff.next_delay();
                warn!(
                    "{}: {reason}; reconnecting in {:.1} s",
                    state.as_str(),
                    delay.as_secs_f64()
                );
                delay
            };
            let event = LinkEvent::Connection {
                state,
                dialect,
                reason: Some(reason),
                fault,
            };
            if !self.report_down(event).await || !self.idle(delay).await {
                return;
            }
        }
    }

    /// Hands the owner a link-down event. Frames queued meanwhile are dropped rather than left
    /// to fill the queue: an owner blocked on a full frame queue would never take the event.
    /// Returns false when the owner is gone.
    async fn report_down(&mut self, event: LinkEvent) -> bool {
        let send = self.events.send(event);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.is_ok(),
                frame = self.frames.recv() => match frame {
                    Some(frame) => debug!("link down, dropped {}", frame.encode()),
                    None => return false,
                },
            }
        }
    }

    /// Waits out a backoff delay. Frames queued meanwhile are dropped: their calls died with the
    /// socket. Returns false when the link must stop.
    async fn idle(&mut self, delay: Duration) -> bool {
        let deadline = sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return true,
                _ = &mut self.stop => return false,
                frame = self.frames.recv() => match frame {
                    Some(frame) => debug!("link down, dropped {}", frame.encode()),
                    None => return false,
                },
            }
        }
    }

    /// Login, socket, bootstrap, then serve until something ends it.
    async fn session(&mut self, mut dialect: Dialect) -> Attempt {
        let http = match &self.http {
            Ok(http) => http.clone(),
            Err(e) => {
                return Attempt {
                    ended: Ended::Failed(e.clone()),
                    dialect,
                };
            }
        };
        let s = &self.settings;
        let login = tokio::select! {
            result = login(&http, &s.base, &s.domain, &s.extension, &s.credentials) => result,
            _ = &mut self.stop => return Attempt { ended: Ended::Stopped, dialect },
        };
        let session = match login {
            Ok(session) => session,
            Err(LoginError::Fault(fault)) => {
                return Attempt {
                    ended: Ended::Fault(fault),
                    dialect,
                };
            }
            Err(LoginError::Denied(reason)) => {
                return Attempt {
                    ended: Ended::Denied(reason),
                    dialect,
                };
            }
            Err(LoginError::Failed(reason)) => {
                return Attempt {
                    ended: Ended::Failed(reason),
                    dialect,
                };
            }
        };
        if self.settings.dialect == DialectSetting::Auto {
            match session
                .server
                .as_deref()
                .and_then(Dialect::from_server_header)
            {
                Some(found) => dialect = found,
                None => warn!(
                    "no PBX version in the Server header ({:?}); assuming the {dialect} dialect",
                    session.server
                ),
            }
        }
        let opened = tokio::select! {
            result = timeout(OPEN_TIMEOUT, open(&s.base, &s.domain, &s.extension, &session.id, s.tls.clone())) => {
                result.unwrap_or_else(|_| Err(SocketError::Failed(format!("no websocket within {OPEN_TIMEOUT:?}"))))
            }
            _ = &mut self.stop => return Attempt { ended: Ended::Stopped, dialect },
        };
        let ended = match opened {
            Ok(socket) => {
                info!(%dialect, "socket open");
                self.serve(socket, dialect).await
            }
            Err(SocketError::Refused(status)) => {
                Ended::Denied(format!("websocket refused ({status})"))
            }
            Err(SocketError::Failed(reason)) => Ended::Failed(reason),
            Err(SocketError::Fault(fault)) => Ended::Fault(fault),
        };
        Attempt { ended, dialect }
    }

    fn bootstrap(&self) -> Vec<ClientFrame> {
        let subscribe = |scope| ClientFrame::CallSubscription {
            scope,
            subscribe: true,
        };
        vec![
            ClientFrame::AvoidDisconnect,
            subscribe(CallScope::Own),
            subscribe(CallScope::Orbit),
            ClientFrame::Blf {
                add: vec![self.settings.extension.clone()],
                remove: vec![],
            },
            ClientFrame::Ringtones,
            subscribe(CallScope::Domain),
            self.register(),
        ]
    }

    fn register(&self) -> ClientFrame {
        ClientFrame::SipRegister {
            useragent: self.settings.useragent.clone(),
        }
    }

    async fn serve(&mut self, mut socket: PbxSocket, dialect: Dialect) -> Ended {
        for frame in self.bootstrap() {
            if let Err(e) = socket.send(Message::text(frame.encode())).await {
                return Ended::Closed {
                    reason: format!("bootstrap: {e}"),
                    granted: false,
                };
            }
        }
        let mut granted = false;
        // Events decoded but not yet taken by the owner. While any wait, the socket is not read
        // but frames to send still are, so the owner and the link never wait on each other.
        let mut pending: VecDeque<LinkEvent> = VecDeque::new();
        let mut keepalive = Instant::now() + KEEPALIVE;
        let mut refresh: Option<Instant> = None;
        let ready_fallback = Instant::now() + READY_FALLBACK;
        loop {
            let refresh_at = refresh.unwrap_or(keepalive);
            tokio::select! {
                _ = &mut self.stop => {
                    let _ = socket.close(None).await;
                    return Ended::Stopped;
                }
                frame = self.frames.recv() => {
                    let Some(frame) = frame else {
                        let _ = socket.close(None).await;
                        return Ended::Stopped;
                    };
                    debug!("→ {}", frame.encode());
                    if let Err(e) = socket.send(Message::text(frame.encode())).await {
                        return Ended::Closed { reason: e.to_string(), granted };
                    }
                }
                permit = self.events.reserve(), if !pending.is_empty() => {
                    let (Ok(permit), Some(event)) = (permit, pending.pop_front()) else {
                        return Ended::Stopped;
                    };
                    permit.send(event);
                }
                message = socket.next(), if pending.is_empty() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(close))) => {
                            let reason = close.map_or_else(
                                || "closed by the PBX".to_owned(),
                                |c| format!("closed by the PBX ({} {})", u16::from(c.code), c.reason),
                            );
                            return Ended::Closed { reason, granted };
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Ended::Closed { reason: e.to_string(), granted },
                        None => return Ended::Closed { reason: "socket ended".into(), granted },
                    };
                    let frame = match ServerFrame::decode(&text) {
                        Ok(frame) => frame,
                        Err(e) => {
                            warn!("ignoring a malformed frame: {e}");
                            continue;
                        }
                    };
                    if let ServerFrame::SipRegister { expires, .. } = &frame {
                        refresh = Some(Instant::now() + refresh_interval(*expires));
                        if !granted {
                            pending.push_back(granted_event(dialect));
                            granted = true;
                        }
                        continue;
                    }
                    dispatch(&mut self.presence, frame, &mut pending);
                }
                () = sleep_until(keepalive) => {
                    keepalive = Instant::now() + KEEPALIVE;
                    if let Err(e) = socket.send(Message::text(ClientFrame::AvoidDisconnect.encode())).await {
                        return Ended::Closed { reason: e.to_string(), granted };
                    }
                }
                () = sleep_until(refresh_at), if refresh.is_some() => {
                    refresh = None;
                    if let Err(e) = socket.send(Message::text(self.register().encode())).await {
                        return Ended::Closed { reason: e.to_string(), granted };
                    }
                }
                () = sleep_until(ready_fallback), if !granted => {
                    info!("no sip-register reply; counting the link as ready");
                    pending.push_back(granted_event(dialect));
                    granted = true;
                }
            }
        }
    }
}

/// Presence goes to the table (and out as changes); everything else to the owner.
fn dispatch(presence: &mut PresenceTable, frame: ServerFrame, pending: &mut VecDeque<LinkEvent>) {
    match &frame {
        ServerFrame::DomainState { accounts, .. } => pending.extend(
            accounts
                .iter()
                .filter_map(|p| presence.update(p))
                .map(LinkEvent::Client),
        ),
        ServerFrame::UserState(p) | ServerFrame::Blf(p) => {
            pending.extend(presence.update(p).map(LinkEvent::Client));
        }
        ServerFrame::Unknown(_)
        | ServerFrame::Ringtones(_)
        | ServerFrame::Response(_)
        | ServerFrame::Info(_) => debug!("← (not for us) {}", frame.encode()),
        _ => {
            debug!("← {}", frame.encode());
            pending.push_back(LinkEvent::Frame(frame));
        }
    }
}

/// The link became ready (logged here, reported to the owner by the caller).
fn granted_event(dialect: Dialect) -> LinkEvent {
    info!("{}", ConnectionState::AccessGranted.as_str());
    LinkEvent::Connection {
        state: ConnectionState::AccessGranted,
        dialect,
        reason: None,
        fault: None,
    }
}

/// When to re-send `sip-register` after a reply with `expires` (§2).
fn refresh_interval(expires: Option<u32>) -> Duration {
    let secs = match expires {
        Some(expires) => (expires / 2).min(expires.saturating_sub(15)).max(30),
        None => 60,
    };
    Duration::from_secs(secs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_refresh_follows_expires() {
        assert_eq!(refresh_interval(Some(3600)), Duration::from_secs(1800));
        assert_eq!(refresh_interval(Some(40)), Duration::from_secs(30));
        assert_eq!(refresh_interval(Some(100)), Duration::from_secs(50));
        assert_eq!(refresh_interval(Some(0)), Duration::from_secs(30));
        assert_eq!(refresh_interval(None), Duration::from_secs(60));
    }
}
