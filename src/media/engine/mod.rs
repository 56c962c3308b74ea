//! The media engine on `rtc`, webrtc-rs's sans-IO core: a few engine threads (one per core by
//! default), each owning one UDP socket and the peer connections placed on it, driven by a 1 ms
//! loop with batched reads and writes. No task, channel or lock per leg on the packet path: a
//! leg's owner holds a [`EngineLeg`] handle that queues commands to the leg's thread, and hears
//! back on the leg's bounded event queue.

mod demux;
mod leg;
mod loader;
mod peer;
mod reflexive;
mod relay;
mod thread;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

pub use self::leg::{Control, LegAddress, SignalOp, Signalled};
use self::leg::{Published, PublishedStats};
use self::loader::Loader;
use self::peer::PeerFactory;
use self::reflexive::StunServer;
use self::relay::TurnServer;
use self::thread::{Command, EngineThread, Setup, ThreadHandle};
use super::prompt::PromptCache;
use super::recorder::RecordingWriter;
use super::stats::{GapHistogram, LegStats};
use super::transport::{NetworkSettings, TransportError};
use super::{LegEvent, MediaError};

/// The engine threads of a runtime.
pub struct Engine {
    threads: Arc<OnceLock<Vec<ThreadHandle>>>,
    ports: Vec<u16>,
    next: AtomicUsize,
}

impl Engine {
    /// Starts the threads: `network.threads` of them (one per core when 0), bound to
    /// `network.ports` (OS-chosen when unset).
    pub fn start(
        network: &NetworkSettings,
        prompts: Arc<PromptCache>,
        recordings: RecordingWriter,
    ) -> std::io::Result<Self> {
        let count = match (network.ports, network.threads) {
            (Some(ports), _) => ports.count(),
            (None, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            (None, n) => n,
        };
        let host_ips = host_ips(&network.addresses);
        let (stun, turn) = ice_servers(network);
        let peers = PeerFactory::new(network.relay_only).map_err(std::io::Error::other)?;
        let loader = Loader::start(prompts)?;
        let handles = Arc::new(OnceLock::new());
        let mut threads = Vec::new();
        let mut ports = Vec::new();
        for index in 0..count {
            let port = network.ports.map_or(0, |range| range.first + index as u16);
            let setup = Setup {
                index,
                port,
                sockets: network.sockets,
                host_ips: host_ips.clone(),
                peers: peers.clone(),
                recordings: recordings.clone(),
                loader: loader.clone(),
                stun: stun.clone(),
                turn: turn.clone(),
                relay_only: network.relay_only,
            };
            let (handle, bound) = EngineThread::spawn(setup, handles.clone())
                .map_err(|e| std::io::Error::new(e.kind(), format!("media port {port}: {e}")))?;
            ports.extend(bound);
            threads.push(handle);
        }
        let _ = handles.set(threads);
        Ok(Self {
            threads: handles,
            ports,
            next: AtomicUsize::new(0),
        })
    }

    /// The UDP ports the threads' shared sockets are bound to.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// A new leg, placed on the next thread in turn, with its event stream.
    pub async fn new_leg(&self) -> Result<(EngineLeg, mpsc::Receiver<LegEvent>), TransportError> {
        let threads = self.threads.get().map(Vec::as_slice).unwrap_or_default();
        if threads.is_empty() {
            return Err(TransportError::Stack("no media engine thread".into()));
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % threads.len();
        let thread = threads[index].clone();
        let ssrc: u32 = rand::random();
        let id = rand::random();
        let (events, receiver) = mpsc::channel(super::EVENT_QUEUE);
        let published: PublishedStats = Arc::default();
        let (reply, answer) = oneshot::channel();
        let open = Command::Open {
            leg: id,
            ssrc,
            events,
            published: published.clone(),
            reply,
        };
        if thread.send(open).is_err() {
            return Err(TransportError::Stack(
                "the media engine is overloaded".into(),
            ));
        }
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(TransportError::Stack("the media engine stopped".into())),
        }
        let leg = EngineLeg {
            address: LegAddress {
                thread: index,
                leg: id,
            },
            thread,
            published,
            closed: AtomicBool::new(false),
        };
        Ok((leg, receiver))
    }
}

/// The addresses host candidates name: those configured, or every non-loopback interface
/// (IPv4, as the first engine did) plus 127.0.0.1.
fn host_ips(configured: &[IpAddr]) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut ips: Vec<IpAddr> = rtc::shared::ifaces::ifaces()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|interface| interface.addr.map(|a| a.ip()))
        .filter(|ip| {
            matches!(ip, IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local())
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ips
}

/// The configured ICE servers, resolved now: every server is asked for server-reflexive
/// candidates (TURN servers answer STUN too), and the TURN servers to relay.
fn ice_servers(network: &NetworkSettings) -> (Vec<StunServer>, Vec<TurnServer>) {
    use rtc::ice::url::{SchemeType, Url};
    use std::net::ToSocketAddrs;
    let mut stun = Vec::new();
    let mut turn = Vec::new();
    for server in &network.ice_servers {
        for text in &server.urls {
            let (base, query) = text.split_once('?').unwrap_or((text, ""));
            let Ok(url) = Url::parse_url(base) else {
                tracing::warn!("{text:?} is not an ICE server URL");
                continue;
            };
            let relays = match url.scheme {
                SchemeType::Stun => false,
                SchemeType::Turn if !query.contains("transport=tcp") => true,
                _ => {
                    tracing::warn!(
                        "{text}: only stun: and turn: over UDP are used; this server is skipped"
                    );
                    continue;
                }
            };
            let addresses = match (url.host.as_str(), url.port).to_socket_addrs() {
                Ok(addresses) => addresses,
                Err(e) => {
                    tracing::warn!("{text}: {e}");
                    continue;
                }
            };
            for address in addresses {
                stun.push(StunServer {
                    address,
                    url: text.clone(),
                });
                if relays {
                    turn.push(TurnServer {
                        address,
                        url: text.clone(),
                        username: server.username.clone(),
                        credential: server.credential.clone(),
                    });
                }
            }
        }
    }
    (stun, turn)
}

/// A leg's owner's side: commands go to the leg's engine thread; statistics are read from what
/// the thread last published. Dropping it without [`EngineLeg::close`] still ends the leg.
pub struct EngineLeg {
    address: LegAddress,
    thread: ThreadHandle,
    published: PublishedStats,
    closed: AtomicBool,
}

impl EngineLeg {
    pub fn id(&self) -> u64 {
        self.address.leg
    }

    pub fn address(&self) -> LegAddress {
        self.address
    }

    /// One offer/answer step, answered by the leg's thread.
    pub async fn signal(&self, op: SignalOp) -> Result<Signalled, MediaError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Signal {
            leg: self.address.leg,
            op,
            reply,
        };
        if self.thread.send(command).is_err() {
            return Err(overloaded());
        }
        answer.await.map_err(|_| overloaded())?
    }

    /// Queues something for the player or the recorder.
    pub fn control(&self, control: Control) {
        let command = Command::Control {
            leg: self.address.leg,
            control,
        };
        if self.thread.send(command).is_err() {
            tracing::warn!(
                leg = self.address.leg,
                "the media engine's queue is full: a command was dropped"
            );
        }
    }

    pub fn stats(&self) -> LegStats {
        self.published().stats.clone()
    }

    pub fn send_pacing(&self) -> GapHistogram {
        self.published().pacing.clone()
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the leg: its recordings are closed and its final statistics published.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Close {
            leg: self.address.leg,
            reply: Some(reply),
        };
        if self.thread.send(command).is_ok() {
            let _ = answer.await;
        }
    }
}

impl Drop for EngineLeg {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            let _ = self.thread.send(Command::Close {
                leg: self.address.leg,
                reply: None,
            });
        }
    }
}

fn overloaded() -> MediaError {
    MediaError::Transport(TransportError::Stack(
        "the media engine did not answer".into(),
    ))
}
