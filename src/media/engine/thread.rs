//! One engine thread: its UDP socket, the legs placed on it, and the 1 ms loop that drives them.
//!
//! Every millisecond the thread reads what arrived on its sockets (one `recvmmsg` per ready
//! socket), feeds the connections whose timers are due, runs the player and recorder of the
//! legs in this millisecond's slot (each leg has one of 20, so it sends every 20 ms and the
//! thread's work is spread evenly), and then sends everything the connections produced with one
//! `sendmmsg` per socket. Commands from the legs' owners arrive on the thread's queue; an idle
//! thread sleeps in `epoll` until one does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Instant;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::{mpsc, oneshot};

use super::demux::{LegId, Route, Router};
use super::leg::{
    BridgedFrame, Control, Leg, LegAddress, LegEnv, PublishedStats, SignalOp, Signalled,
};
use super::loader::{Loaded, Loader, Reply};
use super::peer::{LocalCandidate, PeerFactory};
use super::reflexive::{Mapped, Reflexive, Request, StunServer};
use super::relay::{RelayEvent, Relays, TurnServer};
use super::udp::{self, Outgoing, Received};
use crate::media::codec::FRAME_MS;
use crate::media::pacer::{Due, Pacer};
use crate::media::recorder::{RecordingWriter, WriteBatch};
use crate::media::transport::{Sockets, TransportError};
use crate::media::{LegEvent, MediaError};

/// Sub-intervals of the 20 ms media interval, 1 ms each: every leg belongs to one.
const SLOTS: usize = FRAME_MS as usize;
/// Datagrams read from one socket per millisecond at most, so one flooded socket cannot starve
/// the rest of the loop.
const MAX_READS: usize = 16;

const WAKER: u64 = 0;
/// Shared sockets are tokens 1..=2 (IPv4, IPv6); a leg's own sockets count up from here.
const FIRST_PRIVATE: u64 = 16;

/// Something for an engine thread.
pub enum Command {
    Open {
        leg: LegId,
        ssrc: u32,
        events: mpsc::Sender<LegEvent>,
        published: PublishedStats,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Signal {
        leg: LegId,
        op: SignalOp,
        reply: oneshot::Sender<Result<Signalled, MediaError>>,
    },
    Control {
        leg: LegId,
        control: Control,
    },
    /// Ends the leg; the reply says its final statistics are published.
    Close {
        leg: LegId,
        reply: Option<oneshot::Sender<()>>,
    },
    Bridged {
        leg: LegId,
        frame: BridgedFrame,
    },
    Loaded(Loaded),
}

/// What a thread is started with.
pub struct Setup {
    pub index: usize,
    pub port: u16,
    pub sockets: Sockets,
    /// The addresses host candidates name.
    pub host_ips: Vec<IpAddr>,
    pub peers: PeerFactory,
    pub recordings: RecordingWriter,
    pub loader: Loader,
    /// Asked what each socket looks like from outside (server-reflexive candidates).
    pub stun: Vec<StunServer>,
    /// Asked to relay for each socket (relayed candidates).
    pub turn: Vec<TurnServer>,
    /// Offer relayed candidates only.
    pub relay_only: bool,
}

/// An engine thread as others see it.
#[derive(Clone)]
pub struct ThreadHandle {
    commands: SyncSender<Command>,
    waker: Arc<EventFd>,
}

/// Commands waiting at most per thread; more are refused. The thread empties its queue every
/// millisecond, so this is 160 ms of a thousand bridged legs' frames. Every slot of the ring
/// becomes resident memory as the queue turns (about 80 bytes each), so it is no larger.
const QUEUE: usize = 8192;

impl ThreadHandle {
    /// Queues a command and wakes the thread. `Err` gives the command back when the queue is
    /// full or the thread is gone.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        self.commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })?;
        let _ = self.waker.write(1);
        Ok(())
    }

    /// Queues without waking: for media the thread will pick up within a millisecond anyway.
    fn send_quietly(&self, command: Command) {
        let _ = self.commands.try_send(command);
    }
}

/// Socket tokens of the shared sockets.
fn shared_token(ip: IpAddr) -> u64 {
    if ip.is_ipv4() { 1 } else { 2 }
}

struct SharedSocket {
    socket: UdpSocket,
    port: u16,
    outgoing: Vec<Outgoing>,
}

struct PrivateSocket {
    socket: UdpSocket,
    port: u16,
    leg: LegId,
    outgoing: Vec<Outgoing>,
}

/// A leg with the thread's bookkeeping.
struct Entry {
    /// Boxed: a leg is kilobytes, and the table's spare capacity should not be.
    leg: Box<Leg>,
    slot: usize,
    /// Needs its connection's output drained.
    dirty: bool,
    /// Its connection's next timer, as last asked.
    deadline: Option<Instant>,
    private: Vec<u64>,
}

pub struct EngineThread {
    index: usize,
    commands: Receiver<Command>,
    waker: Arc<EventFd>,
    epoll: Epoll,
    sockets: Sockets,
    host_ips: Vec<IpAddr>,
    shared: HashMap<u64, SharedSocket>,
    private: HashMap<u64, PrivateSocket>,
    next_token: u64,
    legs: HashMap<LegId, Entry>,
    router: Router,
    slots: Vec<Vec<LegId>>,
    slot: usize,
    timers: BinaryHeap<Reverse<(Instant, LegId)>>,
    dirty: Vec<LegId>,
    /// Legs that met an address another leg holds, and need a socket of their own.
    collided: Vec<LegId>,
    received: Vec<(u64, Received)>,
    receiver: udp::Receiver,
    sender: udp::Sender,
    peers: PeerFactory,
    recordings: RecordingWriter,
    loader: Loader,
    loaded: Arc<Reply>,
    writes: WriteBatch,
    bridged: Vec<(LegAddress, BridgedFrame)>,
    reflexive: Reflexive,
    relays: Relays,
    relay_only: bool,
    /// The shared sockets' server-reflexive and relayed candidates, offered to every leg on them.
    shared_found: Vec<LocalCandidate>,
    /// Every engine thread of the runtime, this one included (for bridged audio).
    threads: Arc<std::sync::OnceLock<Vec<ThreadHandle>>>,
}

impl EngineThread {
    /// Starts an engine thread: binds its sockets (on the thread, where its buffers stay) and
    /// returns its handle and the ports of its shared sockets.
    pub fn spawn(
        setup: Setup,
        threads: Arc<std::sync::OnceLock<Vec<ThreadHandle>>>,
    ) -> std::io::Result<(ThreadHandle, Vec<u16>)> {
        let (started_tx, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("callbot-media-{}", setup.index))
            .spawn(move || match Self::new(setup, threads) {
                Ok((thread, handle)) => {
                    let ports = thread.shared.values().map(|s| s.port).collect();
                    let _ = started_tx.send(Ok((handle, ports)));
                    thread.run();
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            })?;
        started
            .recv()
            .map_err(|_| std::io::Error::other("the media engine thread did not start"))?
    }

    fn new(
        setup: Setup,
        threads: Arc<std::sync::OnceLock<Vec<ThreadHandle>>>,
    ) -> std::io::Result<(Self, ThreadHandle)> {
        let (commands_tx, commands) = std::sync::mpsc::sync_channel(QUEUE);
        let waker = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(waker.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKER))?;
        let mut shared = HashMap::new();
        if setup.sockets == Sockets::Shared {
            let mut port = setup.port;
            if setup.host_ips.iter().any(IpAddr::is_ipv4) {
                let socket = udp::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
                port = udp::port(&socket)?;
                shared.insert(1, shared_socket(socket)?);
            }
            if setup.host_ips.iter().any(IpAddr::is_ipv6) {
                let socket = udp::bind_v6_only(port)?;
                shared.insert(2, shared_socket(socket)?);
            }
            for (&token, socket) in &shared {
                epoll.add(
                    socket.socket.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, token),
                )?;
            }
        }
        let handle = ThreadHandle {
            commands: commands_tx.clone(),
            waker: waker.clone(),
        };
        let index = setup.index;
        let loaded: Arc<Reply> = {
            let queue = commands_tx;
            Arc::new(Box::new(move |loaded: Loaded| {
                let _ = queue.try_send(Command::Loaded(loaded));
            }))
        };
        let thread = Self {
            index,
            commands,
            waker,
            epoll,
            sockets: setup.sockets,
            host_ips: setup.host_ips,
            shared,
            private: HashMap::new(),
            next_token: FIRST_PRIVATE,
            legs: HashMap::new(),
            router: Router::default(),
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            slot: 0,
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            collided: Vec::new(),
            received: Vec::new(),
            receiver: udp::Receiver::default(),
            sender: udp::Sender::default(),
            peers: setup.peers,
            recordings: setup.recordings,
            loader: setup.loader,
            loaded,
            writes: WriteBatch::default(),
            bridged: Vec::new(),
            reflexive: Reflexive::new(setup.stun),
            relays: Relays::new(setup.turn),
            relay_only: setup.relay_only,
            shared_found: Vec::new(),
            threads,
        };
        Ok((thread, handle))
    }

    /// Runs until every handle is gone and every leg has ended.
    fn run(mut self) {
        raise_priority();
        let shared: Vec<(u64, u16)> = self.shared.iter().map(|(&t, s)| (t, s.port)).collect();
        for (token, port) in shared {
            self.ask_servers(token, port, token == 1, Instant::now());
        }
        self.send_all();
        let mut pacer = Pacer::new(Instant::now(), SLOTS as u32);
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            if self.legs.is_empty() {
                // Nothing to pace: wait for a command (or a STUN server's answer).
                match self.commands.try_recv() {
                    Ok(command) => self.command(command, Instant::now()),
                    Err(TryRecvError::Disconnected) => {
                        self.release_shared();
                        return;
                    }
                    Err(TryRecvError::Empty) => {
                        let timeout = if self.reflexive.waiting() || self.relays.active() {
                            EpollTimeout::from(100u16)
                        } else {
                            EpollTimeout::NONE
                        };
                        let _ = self.epoll.wait(&mut events, timeout);
                    }
                }
                pacer.restart(Instant::now());
            }
            let mut skipped = 0;
            if !self.legs.is_empty() {
                // Late wake-ups run every slot they missed, one per pass, at once.
                loop {
                    match pacer.due(Instant::now()) {
                        Due::Wait(wait) => std::thread::sleep(wait),
                        Due::Slot { skipped: intervals } => {
                            skipped = intervals;
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            let ready = self.ready(&mut events);
            self.take_commands(now);
            self.receive(&events[..ready], now);
            for request in self.reflexive.retries(now) {
                self.queue_stun(request);
            }
            self.relays.timeouts(now);
            self.relay_events();
            self.timeouts(now);
            if skipped > 0 {
                self.skip_intervals(skipped);
            }
            if !self.legs.is_empty() {
                self.run_slot(now);
            }
            self.flush(now);
            // Once per 20 ms cycle: the writer thread wakes 50 times a second, not 1,000.
            if self.slot == 0 || self.legs.is_empty() {
                self.recordings.send(std::mem::take(&mut self.writes));
            }
        }
    }

    fn take_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.command(command, now),
                Err(_) => return,
            }
        }
    }

    fn env(&mut self) -> (LegEnvParts<'_>, &mut HashMap<LegId, Entry>) {
        (
            LegEnvParts {
                recordings: &self.recordings,
                loader: &self.loader,
                loaded: &self.loaded,
                bridged: &mut self.bridged,
            },
            &mut self.legs,
        )
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Open {
                leg,
                ssrc,
                events,
                published,
                reply,
            } => {
                let _ = reply.send(self.open(leg, ssrc, events, published, now));
            }
            Command::Signal { leg, op, reply } => {
                let result = self
                    .on_leg(leg, |l, env| l.signal(op, now, env))
                    .unwrap_or_else(|| {
                        Err(MediaError::Transport(TransportError::Stack(
                            "the leg has ended".into(),
                        )))
                    });
                self.mark_dirty(leg);
                // A description may name a new ufrag (an ICE restart by the far end).
                if let Some(entry) = self.legs.get(&leg)
                    && let Some(ufrag) = entry.leg.peer.local_ufrag()
                {
                    self.router.add_ufrag(&ufrag, leg);
                }
                let _ = reply.send(result);
            }
            Command::Control { leg, control } => {
                self.on_leg(leg, |l, env| l.control(control, env));
                self.mark_dirty(leg);
            }
            Command::Close { leg, reply } => {
                self.close(leg);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Bridged { leg, frame } => {
                self.on_leg(leg, |l, _| l.bridged_in(frame));
            }
            Command::Loaded(loaded) => {
                self.on_leg(loaded.leg, |l, _| l.loaded(loaded.item, loaded.result));
            }
        }
    }

    /// Runs `work` on a leg. A panic in it (the stack tripping over some input) ends that leg
    /// alone: the thread and its other calls go on.
    fn on_leg<R>(
        &mut self,
        id: LegId,
        work: impl FnOnce(&mut Leg, &mut LegEnv<'_>) -> R,
    ) -> Option<R> {
        let (mut parts, legs) = self.env();
        let entry = legs.get_mut(&id)?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            work(&mut entry.leg, &mut parts.env())
        }));
        match outcome {
            Ok(result) => Some(result),
            Err(_) => {
                self.fail(id);
                None
            }
        }
    }

    /// Ends a leg whose connection panicked: its owner hears it failed, its recordings are
    /// closed, and nothing more is sent for it.
    fn fail(&mut self, id: LegId) {
        tracing::error!(
            leg = id,
            "the media stack failed on this leg's input: the leg is ended, the others go on"
        );
        let Some(mut entry) = self.legs.remove(&id) else {
            return;
        };
        let writes = &mut self.writes;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            entry.leg.fail(writes);
        }));
        self.forget(id, entry);
    }

    fn open(
        &mut self,
        id: LegId,
        ssrc: u32,
        events: mpsc::Sender<LegEvent>,
        published: PublishedStats,
        now: Instant,
    ) -> Result<(), TransportError> {
        let ufrag = random_text(16);
        let password = random_text(32);
        let peer = self.peers.build(&ufrag, &password, ssrc, now)?;
        let mut private = Vec::new();
        let candidates = match self.sockets {
            Sockets::Shared => {
                let mut candidates = self.shared_candidates();
                candidates.extend(self.shared_found.iter().cloned());
                candidates
            }
            Sockets::PerLeg => self
                .bind_private(id, &mut private, now)
                .map_err(|e| TransportError::Stack(format!("cannot bind a media socket: {e}")))?,
        };
        let mut leg = Box::new(Leg::new(id, peer, ssrc, events, published, now));
        leg.add_local_candidates(&self.usable(candidates));
        self.router.add_ufrag(&ufrag, id);
        let slot = (0..SLOTS).min_by_key(|&i| self.slots[i].len()).unwrap_or(0);
        self.slots[slot].push(id);
        self.legs.insert(
            id,
            Entry {
                leg,
                slot,
                dirty: true,
                deadline: None,
                private,
            },
        );
        self.dirty.push(id);
        Ok(())
    }

    /// The host candidates of the shared sockets.
    fn shared_candidates(&self) -> Vec<LocalCandidate> {
        self.host_ips
            .iter()
            .filter_map(|&ip| {
                let socket = self.shared.get(&shared_token(ip))?;
                Some(LocalCandidate::Host(SocketAddr::new(ip, socket.port)))
            })
            .collect()
    }

    /// Binds a socket of the leg's own (one per address family), asks the STUN servers about
    /// it, and returns its host candidates.
    fn bind_private(
        &mut self,
        leg: LegId,
        tokens: &mut Vec<u64>,
        now: Instant,
    ) -> std::io::Result<Vec<LocalCandidate>> {
        let mut candidates = Vec::new();
        for v4 in [true, false] {
            if !self.host_ips.iter().any(|ip| ip.is_ipv4() == v4) {
                continue;
            }
            let socket = if v4 {
                udp::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?
            } else {
                udp::bind_v6_only(0)?
            };
            let port = udp::port(&socket)?;
            let token = self.next_token;
            self.next_token += 1;
            self.epoll
                .add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
            self.private.insert(
                token,
                PrivateSocket {
                    socket,
                    port,
                    leg,
                    outgoing: Vec::new(),
                },
            );
            tokens.push(token);
            candidates.extend(
                self.host_ips
                    .iter()
                    .filter(|ip| ip.is_ipv4() == v4)
                    .map(|&ip| LocalCandidate::Host(SocketAddr::new(ip, port))),
            );
            self.ask_servers(token, port, v4, now);
        }
        Ok(candidates)
    }

    /// Asks the STUN servers what a socket looks like from outside, and the TURN servers to
    /// relay for it.
    fn ask_servers(&mut self, token: u64, port: u16, v4: bool, now: Instant) {
        for request in self.reflexive.ask(token, port, v4, now) {
            tracing::debug!("asking {} about socket {token} (port {port})", request.to);
            self.queue_stun(request);
        }
        self.relays.allocate(token, port, v4, now);
    }

    /// The candidates a leg may offer: with `relay_only`, relayed ones alone.
    fn usable(&self, candidates: Vec<LocalCandidate>) -> Vec<LocalCandidate> {
        if !self.relay_only {
            return candidates;
        }
        candidates
            .into_iter()
            .filter(|c| matches!(c, LocalCandidate::Relayed { .. }))
            .collect()
    }

    /// Puts a STUN or TURN message on its socket's queue (sent with the rest of the slot).
    fn queue_stun(&mut self, request: Request) {
        let unspecified: IpAddr = if request.to.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        let datagram = Outgoing {
            from: SocketAddr::new(unspecified, request.port),
            to: request.to,
            data: request.data,
        };
        if let Some(shared) = self.shared.get_mut(&request.socket) {
            shared.outgoing.push(datagram);
        } else if let Some(private) = self.private.get_mut(&request.socket) {
            private.outgoing.push(datagram);
        }
    }

    /// A STUN server told us a socket's outside address: its legs offer it.
    fn reflexive_found(&mut self, mapped: Mapped) {
        tracing::debug!(
            "{} sees socket {} as {}",
            mapped.url,
            mapped.socket,
            mapped.address
        );
        self.server_candidate(mapped.socket, mapped.address, mapped.url, false);
    }

    /// A server found an address for a socket (its outside address, or a relay's): the legs on
    /// the socket offer it.
    fn server_candidate(&mut self, socket: u64, address: SocketAddr, url: String, relayed: bool) {
        let v4 = address.is_ipv4();
        let base_ip = self
            .host_ips
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == v4)
            .min_by_key(IpAddr::is_loopback);
        let (port, owner) = if let Some(shared) = self.shared.get(&socket) {
            (shared.port, None)
        } else if let Some(private) = self.private.get(&socket) {
            (private.port, Some(private.leg))
        } else {
            return;
        };
        let Some(base_ip) = base_ip else {
            return;
        };
        let base = SocketAddr::new(base_ip, port);
        let candidate = if relayed {
            LocalCandidate::Relayed { address, base, url }
        } else {
            LocalCandidate::Reflexive { address, base, url }
        };
        let legs: Vec<LegId> = match owner {
            Some(leg) => vec![leg],
            None => {
                self.shared_found.push(candidate.clone());
                self.legs.keys().copied().collect()
            }
        };
        let candidates = self.usable(vec![candidate]);
        if candidates.is_empty() {
            return;
        }
        for id in legs {
            self.on_leg(id, |leg, _| leg.add_local_candidates(&candidates));
            self.mark_dirty(id);
        }
    }

    /// What the TURN clients found: relayed addresses to offer, far ends' datagrams to deliver.
    fn relay_events(&mut self) {
        for event in self.relays.events() {
            match event {
                RelayEvent::Allocated {
                    socket,
                    address,
                    url,
                } => {
                    tracing::debug!("{url} relays for socket {socket} at {address}");
                    self.server_candidate(socket, address, url, true);
                }
                RelayEvent::Data {
                    socket,
                    relayed,
                    from,
                    data,
                } => self.deliver(socket, relayed, from, Instant::now(), data),
            }
        }
    }

    /// Gives the shared sockets' allocations back to the TURN servers (the thread is ending).
    fn release_shared(&mut self) {
        let now = Instant::now();
        let tokens: Vec<u64> = self.shared.keys().copied().collect();
        for token in tokens {
            for request in self.relays.release(token, now) {
                self.queue_stun(request);
            }
        }
        self.send_all();
    }

    fn close(&mut self, id: LegId) {
        let Some(mut entry) = self.legs.remove(&id) else {
            return;
        };
        let writes = &mut self.writes;
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            entry.leg.finish(writes);
            // The close_notify goes out now; nothing more will be read for the leg.
            let mut datagrams = Vec::new();
            while let Some(datagram) = entry.leg.peer.poll_datagram() {
                datagrams.push(datagram);
            }
            datagrams
        }));
        let now = Instant::now();
        for (from, to, data) in finished.unwrap_or_default() {
            self.route_out(id, &entry.private, from, to, data, now);
        }
        self.send_all();
        self.forget(id, entry);
    }

    /// Lets go of an ended leg's slot, addresses and sockets.
    fn forget(&mut self, id: LegId, entry: Entry) {
        self.slots[entry.slot].retain(|&l| l != id);
        self.router.remove_leg(id);
        let now = Instant::now();
        for &token in &entry.private {
            self.reflexive.forget(token);
            for request in self.relays.release(token, now) {
                self.queue_stun(request);
            }
        }
        self.send_all();
        for token in entry.private {
            if let Some(private) = self.private.remove(&token) {
                let _ = self.epoll.delete(private.socket.as_fd());
            }
        }
    }

    fn mark_dirty(&mut self, id: LegId) {
        if let Some(entry) = self.legs.get_mut(&id)
            && !std::mem::replace(&mut entry.dirty, true)
        {
            self.dirty.push(id);
        }
    }

    /// What is ready now, without waiting. The waker is read only when it fired (not a syscall
    /// every slot), and before the commands are taken, so a wake-up is never lost.
    fn ready(&mut self, events: &mut [EpollEvent]) -> usize {
        let ready = self.epoll.wait(events, EpollTimeout::ZERO).unwrap_or(0);
        if events[..ready].iter().any(|e| e.data() == WAKER) {
            let _ = self.waker.read();
        }
        ready
    }

    /// Reads every ready socket and hands each datagram to its leg.
    fn receive(&mut self, events: &[EpollEvent], now: Instant) {
        for event in events {
            let token = event.data();
            let (socket, port) = match token {
                WAKER => continue,
                1 | 2 => match self.shared.get(&token) {
                    Some(s) => (&s.socket, s.port),
                    None => continue,
                },
                _ => match self.private.get(&token) {
                    Some(s) => (&s.socket, s.port),
                    None => continue,
                },
            };
            let mut batch = Vec::new();
            for _ in 0..MAX_READS {
                match self.receiver.receive(socket, port, &mut batch) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("receive: {e}");
                        break;
                    }
                }
            }
            self.received
                .extend(batch.into_iter().map(|datagram| (token, datagram)));
        }
        let _ = now;
        for (token, datagram) in std::mem::take(&mut self.received) {
            if let Some(mapped) = self.reflexive.answer(datagram.from, &datagram.data) {
                self.reflexive_found(mapped);
                continue;
            }
            if self.relays.is_server(token, datagram.from) {
                self.relays
                    .receive(token, datagram.to, datagram.from, datagram.data);
                continue;
            }
            self.deliver(
                token,
                datagram.to,
                datagram.from,
                datagram.at,
                datagram.data,
            );
        }
        self.relay_events();
    }

    /// Hands a datagram that reached the socket `token` at `local` (or the socket's relay) to
    /// the leg it belongs to.
    fn deliver(
        &mut self,
        token: u64,
        local: SocketAddr,
        from: SocketAddr,
        at: Instant,
        data: bytes::BytesMut,
    ) {
        let route = if token < FIRST_PRIVATE {
            self.router.inbound(from, &data)
        } else {
            match self.private.get(&token) {
                Some(private) => Route::Leg(private.leg),
                None => Route::Unknown,
            }
        };
        match route {
            Route::Leg(id) => {
                if let Some(entry) = self.legs.get_mut(&id) {
                    entry.leg.peer.receive(local, from, at, data);
                    if !std::mem::replace(&mut entry.dirty, true) {
                        self.dirty.push(id);
                    }
                }
            }
            Route::Collision(id) => self.collided.push(id),
            Route::Unknown => {}
        }
    }

    /// Feeds the connections whose timers are due.
    fn timeouts(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.legs.get_mut(&id) else {
                continue;
            };
            if entry.deadline != Some(deadline) {
                continue; // a stale entry: the leg's timer moved since
            }
            entry.deadline = None;
            self.on_leg(id, |l, _| l.peer.handle_timeout(now));
            self.mark_dirty(id);
        }
    }

    /// The clock stalled past what it catches up: every leg skips the same whole intervals.
    fn skip_intervals(&mut self, intervals: u32) {
        tracing::warn!(
            "media clock stalled: {} ms of audio skipped on every leg",
            u64::from(intervals) * u64::from(FRAME_MS)
        );
        let mut failed = Vec::new();
        for (&id, entry) in &mut self.legs {
            let skipped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                entry.leg.skip(intervals);
            }));
            if skipped.is_err() {
                failed.push(id);
            }
        }
        for id in failed {
            self.fail(id);
        }
    }

    /// Plays and records the 20 ms interval of this slot's legs.
    fn run_slot(&mut self, now: Instant) {
        let slot = self.slot;
        self.slot = (self.slot + 1) % SLOTS;
        for i in 0..self.slots[slot].len() {
            let Some(&id) = self.slots[slot].get(i) else {
                break; // a leg that failed left the slot
            };
            let writes = &mut self.writes;
            let Some(entry) = self.legs.get_mut(&id) else {
                continue;
            };
            let ticked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                entry.leg.tick(now, writes);
            }));
            match ticked {
                Ok(()) => self.mark_dirty(id),
                Err(_) => self.fail(id),
            }
        }
    }

    /// Drains every touched connection (datagrams, events, RTP), moves collided legs to sockets
    /// of their own, delivers bridged audio, and sends.
    fn flush(&mut self, now: Instant) {
        // Bounded: a collision adds candidates, which may make more output.
        for _ in 0..4 {
            for id in std::mem::take(&mut self.dirty) {
                self.drain(id, now);
            }
            for id in std::mem::take(&mut self.collided) {
                self.give_own_socket(id);
            }
            if self.dirty.is_empty() {
                break;
            }
        }
        self.deliver_bridged();
        self.send_all();
    }

    fn drain(&mut self, id: LegId, now: Instant) {
        let polled = self.on_leg(id, |leg, env| {
            let mut datagrams = Vec::new();
            loop {
                leg.poll_events(now);
                leg.poll_rtp(env);
                let before = datagrams.len();
                while let Some(datagram) = leg.peer.poll_datagram() {
                    datagrams.push(datagram);
                }
                if datagrams.len() == before {
                    break;
                }
            }
            (datagrams, leg.peer.poll_timeout())
        });
        let Some((datagrams, deadline)) = polled else {
            return;
        };
        let Some(entry) = self.legs.get_mut(&id) else {
            return;
        };
        entry.dirty = false;
        if deadline != entry.deadline {
            entry.deadline = deadline;
            if let Some(deadline) = deadline {
                self.timers.push(Reverse((deadline, id)));
            }
        }
        let private = std::mem::take(&mut entry.private);
        for (from, to, data) in datagrams {
            self.route_out(id, &private, from, to, data, now);
        }
        if let Some(entry) = self.legs.get_mut(&id) {
            entry.private = private;
        }
    }

    /// Puts a leg's datagram on the socket it comes from.
    fn route_out(
        &mut self,
        id: LegId,
        private: &[u64],
        from: SocketAddr,
        to: SocketAddr,
        data: bytes::BytesMut,
        now: Instant,
    ) {
        if let Some(socket) = self.relays.socket_of(from) {
            // Through the socket's relay: on a shared socket, the far end's address is held as
            // it is for datagrams sent directly.
            let allowed =
                socket >= FIRST_PRIVATE || matches!(self.router.outbound(id, to), Route::Leg(_));
            if allowed {
                self.relays.send(from, to, data, now);
            } else {
                self.collided.push(id);
            }
            return;
        }
        let datagram = Outgoing { from, to, data };
        if let Some(token) = private.iter().find(|token| {
            self.private
                .get(token)
                .is_some_and(|s| s.port == from.port())
        }) {
            if let Some(socket) = self.private.get_mut(token) {
                socket.outgoing.push(datagram);
            }
            return;
        }
        let token = shared_token(from.ip());
        let Some(shared) = self.shared.get_mut(&token) else {
            return;
        };
        if shared.port != from.port() {
            return;
        }
        match self.router.outbound(id, to) {
            Route::Leg(_) => shared.outgoing.push(datagram),
            _ => self.collided.push(id),
        }
    }

    /// A leg met an address another leg of this socket holds: it gets a socket of its own and
    /// offers it as a new candidate.
    fn give_own_socket(&mut self, id: LegId) {
        let Some(entry) = self.legs.get_mut(&id) else {
            return;
        };
        if !entry.private.is_empty() {
            return;
        }
        let mut tokens = Vec::new();
        match self.bind_private(id, &mut tokens, Instant::now()) {
            Ok(candidates) => {
                tracing::debug!(
                    leg = id,
                    "the far end shares a port with another call: the leg moves to {candidates:?}"
                );
                let candidates = self.usable(candidates);
                if let Some(entry) = self.legs.get_mut(&id) {
                    entry.private = tokens;
                    entry.leg.add_local_candidates(&candidates);
                    if !std::mem::replace(&mut entry.dirty, true) {
                        self.dirty.push(id);
                    }
                }
            }
            Err(e) => tracing::warn!(leg = id, "cannot bind a media socket: {e}"),
        }
    }

    fn deliver_bridged(&mut self) {
        let threads = self.threads.get();
        for (to, frame) in std::mem::take(&mut self.bridged) {
            if to.thread == self.index {
                if let Some(entry) = self.legs.get_mut(&to.leg) {
                    entry.leg.bridged_in(frame);
                }
            } else if let Some(thread) = threads.and_then(|t| t.get(to.thread)) {
                thread.send_quietly(Command::Bridged { leg: to.leg, frame });
            }
        }
    }

    fn send_all(&mut self) {
        for request in self.relays.transmits() {
            self.queue_stun(request);
        }
        for shared in self.shared.values_mut() {
            if !shared.outgoing.is_empty() {
                self.sender.send(&shared.socket, &mut shared.outgoing);
            }
        }
        for private in self.private.values_mut() {
            if !private.outgoing.is_empty() {
                self.sender.send(&private.socket, &mut private.outgoing);
            }
        }
    }
}

/// Borrowed pieces of the thread that legs use, apart from the leg table.
struct LegEnvParts<'a> {
    recordings: &'a RecordingWriter,
    loader: &'a Loader,
    loaded: &'a Arc<Reply>,
    bridged: &'a mut Vec<(LegAddress, BridgedFrame)>,
}

impl LegEnvParts<'_> {
    fn env(&mut self) -> LegEnv<'_> {
        LegEnv {
            recordings: self.recordings,
            loader: self.loader,
            loaded: self.loaded,
            bridged: self.bridged,
        }
    }
}

fn shared_socket(socket: UdpSocket) -> std::io::Result<SharedSocket> {
    let port = udp::port(&socket)?;
    Ok(SharedSocket {
        socket,
        port,
        outgoing: Vec::new(),
    })
}

/// ICE username fragments and passwords: letters and digits (RFC 8445 allows `ice-char`).
fn random_text(length: usize) -> String {
    use rand::RngExt;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// Asks the OS to run engine threads ahead of the busy async threads (nice -10). Needs
/// CAP_SYS_NICE; without it they still run, with more jitter under load.
fn raise_priority() {
    // SAFETY: setpriority only reads its integer arguments; 0 means the calling thread on Linux.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
    if result != 0 {
        tracing::debug!(
            "media engine keeps normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
