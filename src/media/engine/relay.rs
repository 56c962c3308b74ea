//! Relayed candidates: an allocation on each configured TURN server for each engine socket, so
//! a call reaches a far end that only a relay can reach (a symmetric NAT, a firewall that lets
//! only the TURN server through). Like the socket it is made from, one allocation serves every
//! leg on the socket: what the relay passes on is told apart by the far end's address, exactly
//! as datagrams on the socket are. Built on rtc-turn's sans-IO client; nothing here touches a
//! socket or a clock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::crypto::RTCCryptoProvider;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};

use super::reflexive::Request;
use crate::config::Secret;

/// Datagrams kept per far end while the relay's permission for it is asked for; ICE sends its
/// checks again anyway, so only the first few matter.
const MAX_HELD: usize = 4;

/// A TURN server from config, resolved.
#[derive(Clone, Debug)]
pub struct TurnServer {
    pub address: SocketAddr,
    /// As configured (`turn:host:port`), named in the candidates it yields.
    pub url: String,
    pub username: String,
    pub credential: Secret,
}

/// What the relays have for the engine thread.
#[derive(Debug)]
pub enum RelayEvent {
    /// The server relays for the socket `socket` at `address`: a candidate for its legs.
    Allocated {
        socket: u64,
        address: SocketAddr,
        url: String,
    },
    /// A far end's datagram that came through the relay at `relayed`.
    Data {
        socket: u64,
        relayed: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    },
}

/// One allocation: a socket's TURN client for one server.
struct Allocation {
    socket: u64,
    port: u16,
    server: TurnServer,
    client: Client,
    relayed: Option<SocketAddr>,
    /// Datagrams for far ends whose permission is being asked for.
    held: HashMap<SocketAddr, Vec<BytesMut>>,
}

/// The allocations of one engine thread.
pub struct Relays {
    servers: Vec<TurnServer>,
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    allocations: Vec<Allocation>,
    events: Vec<RelayEvent>,
}

impl Relays {
    pub fn new(servers: Vec<TurnServer>) -> Self {
        let crypto = if servers.is_empty() {
            None
        } else {
            rtc::crypto::default_provider()
                .inspect_err(|e| tracing::warn!("TURN is off: no crypto provider: {e}"))
                .ok()
        };
        Self {
            servers,
            crypto,
            allocations: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Asks every TURN server of the socket's address family for an allocation.
    pub fn allocate(&mut self, socket: u64, port: u16, is_ipv4: bool, now: Instant) {
        let Some(crypto) = &self.crypto else {
            return;
        };
        for server in self
            .servers
            .iter()
            .filter(|s| s.address.is_ipv4() == is_ipv4)
        {
            let unspecified: IpAddr = if is_ipv4 {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            };
            let config = ClientConfig {
                turn_serv_addr: server.address.to_string(),
                local_addr: SocketAddr::new(unspecified, port),
                transport_protocol: TransportProtocol::UDP,
                username: server.username.clone(),
                password: server.credential.expose().to_owned(),
                ..ClientConfig::default()
            };
            let client = Client::new(config, crypto.clone()).and_then(|mut client| {
                client.allocate(now)?;
                Ok(client)
            });
            match client {
                Ok(client) => self.allocations.push(Allocation {
                    socket,
                    port,
                    server: server.clone(),
                    client,
                    relayed: None,
                    held: HashMap::new(),
                }),
                Err(e) => tracing::warn!("{}: cannot ask for a relay: {e}", server.url),
            }
        }
    }

    /// Gives up a socket's allocations (the socket is about to close); what tells the servers
    /// is returned to be sent from it first.
    pub fn release(&mut self, socket: u64, now: Instant) -> Vec<Request> {
        let mut requests = Vec::new();
        for mut allocation in extract(&mut self.allocations, |a| a.socket == socket) {
            if let Some(relayed) = allocation.relayed
                && let Ok(mut relay) = allocation.client.relay(relayed)
            {
                let _ = relay.close(now);
            }
            transmits(&mut allocation, &mut requests);
        }
        requests
    }

    /// Whether a datagram on `socket` from `from` comes from one of its TURN servers.
    pub fn is_server(&self, socket: u64, from: SocketAddr) -> bool {
        self.allocations
            .iter()
            .any(|a| a.socket == socket && a.server.address == from)
    }

    /// A datagram from a TURN server (see [`Relays::is_server`]).
    pub fn receive(&mut self, socket: u64, local: SocketAddr, from: SocketAddr, data: BytesMut) {
        let now = Instant::now();
        let Some(allocation) = self
            .allocations
            .iter_mut()
            .find(|a| a.socket == socket && a.server.address == from)
        else {
            return;
        };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        };
        if let Err(e) = allocation.client.handle_read(message) {
            tracing::debug!("{}: {e}", allocation.server.url);
        }
        self.poll_events(now);
    }

    /// The socket whose allocation has the relayed address `address`, if one has.
    pub fn socket_of(&self, address: SocketAddr) -> Option<u64> {
        self.allocations
            .iter()
            .find(|a| a.relayed == Some(address))
            .map(|a| a.socket)
    }

    /// Sends `data` from the relayed address `from` to `to`. The first datagram to a far end
    /// asks the server to let it through; it and a few more wait for the answer.
    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, data: BytesMut, now: Instant) {
        let Some(allocation) = self
            .allocations
            .iter_mut()
            .find(|a| a.relayed == Some(from))
        else {
            return;
        };
        let Ok(mut relay) = allocation.client.relay(from) else {
            return;
        };
        if relay.send_to(now, &data, to).is_ok() {
            return;
        }
        match relay.create_permission(now, to) {
            Ok(_) => {
                let held = allocation.held.entry(to).or_default();
                if held.len() < MAX_HELD {
                    held.push(data);
                }
            }
            Err(e) => tracing::debug!("{}: no permission for {to}: {e}", allocation.server.url),
        }
    }

    /// Runs the clients' timers: retransmissions, allocation and permission refreshes.
    pub fn timeouts(&mut self, now: Instant) {
        let mut due = false;
        for allocation in &mut self.allocations {
            if allocation.client.poll_timeout().is_some_and(|t| t <= now) {
                let _ = allocation.client.handle_timeout(now);
                due = true;
            }
        }
        if due {
            self.poll_events(now);
        }
    }

    /// What the clients have to send, each from its socket.
    pub fn transmits(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        for allocation in &mut self.allocations {
            transmits(allocation, &mut requests);
        }
        requests
    }

    /// What the clients found out since last asked.
    pub fn events(&mut self) -> Vec<RelayEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether any allocation is held or asked for (the thread then keeps its timers running).
    pub fn active(&self) -> bool {
        !self.allocations.is_empty()
    }

    fn poll_events(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (index, allocation) in self.allocations.iter_mut().enumerate() {
            while let Some(event) = allocation.client.poll_event() {
                match event {
                    Event::AllocateResponse(_, relayed) => {
                        allocation.relayed = Some(relayed);
                        self.events.push(RelayEvent::Allocated {
                            socket: allocation.socket,
                            address: relayed,
                            url: allocation.server.url.clone(),
                        });
                    }
                    Event::AllocateError(_, e) => {
                        tracing::warn!(
                            "{}: no relay: {e} (check the TURN username and credential)",
                            allocation.server.url
                        );
                        failed.push(index);
                    }
                    Event::TransactionTimeout(_) if allocation.relayed.is_none() => {
                        tracing::warn!("{}: the TURN server did not answer", allocation.server.url);
                        failed.push(index);
                    }
                    Event::CreatePermissionResponse(_, peer) => {
                        let held = allocation.held.remove(&peer).unwrap_or_default();
                        if let Some(relayed) = allocation.relayed
                            && let Ok(mut relay) = allocation.client.relay(relayed)
                        {
                            for data in held {
                                let _ = relay.send_to(now, &data, peer);
                            }
                        }
                    }
                    Event::CreatePermissionError(_, e) => {
                        tracing::debug!("{}: permission refused: {e}", allocation.server.url);
                    }
                    Event::DataIndicationOrChannelData(_, from, data) => {
                        if let Some(relayed) = allocation.relayed {
                            self.events.push(RelayEvent::Data {
                                socket: allocation.socket,
                                relayed,
                                from,
                                data,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        failed.dedup();
        for index in failed.into_iter().rev() {
            self.allocations.remove(index);
        }
    }
}

/// Moves an allocation's outgoing datagrams onto `requests`.
fn transmits(allocation: &mut Allocation, requests: &mut Vec<Request>) {
    while let Some(transmit) = allocation.client.poll_write() {
        requests.push(Request {
            socket: allocation.socket,
            port: allocation.port,
            to: transmit.transport.peer_addr,
            data: transmit.message,
        });
    }
}

/// Takes the items that match out of `items`.
fn extract<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> Vec<T> {
    let (taken, kept) = std::mem::take(items)
        .into_iter()
        .partition(|item| matches(item));
    *items = kept;
    taken
}
