//! Server-reflexive candidates: the address a STUN server sees a socket's datagrams come from
//! (the address in front of a NAT). Asked once per socket, so the legs sharing an engine
//! thread's socket share the answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::message::{
    BINDING_REQUEST, BINDING_SUCCESS, Getter, MAGIC_COOKIE, Message, Setter, TransactionId,
};
use rtc::stun::xoraddr::XorMappedAddress;

/// Requests per server and socket before giving up (RFC 5389's RTO doubling from 500 ms).
const TRIES: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// A STUN server from config, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunServer {
    pub address: SocketAddr,
    /// As configured (`stun:host:port`), named in the candidates it yields.
    pub url: String,
}

/// What a server said about a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The socket asked about (an engine thread's socket token).
    pub socket: u64,
    pub address: SocketAddr,
    pub url: String,
}

struct Query {
    socket: u64,
    /// The socket's port (requests go out from it, the source IP left to routing).
    port: u16,
    server: StunServer,
    tries: u32,
    next: Instant,
    request: BytesMut,
}

/// A request to send: from the socket `socket` (port `port`) to `to`.
pub struct Request {
    pub socket: u64,
    pub port: u16,
    pub to: SocketAddr,
    pub data: BytesMut,
}

#[derive(Default)]
pub struct Reflexive {
    servers: Vec<StunServer>,
    queries: HashMap<TransactionId, Query>,
}

impl Reflexive {
    pub fn new(servers: Vec<StunServer>) -> Self {
        Self {
            servers,
            queries: HashMap::new(),
        }
    }

    /// Asks every server about a socket; the requests are returned to be sent.
    pub fn ask(&mut self, socket: u64, port: u16, is_ipv4: bool, now: Instant) -> Vec<Request> {
        let mut requests = Vec::new();
        for server in self
            .servers
            .iter()
            .filter(|s| s.address.is_ipv4() == is_ipv4)
        {
            let Some((id, request)) = binding_request() else {
                continue;
            };
            requests.push(Request {
                socket,
                port,
                to: server.address,
                data: request.clone(),
            });
            self.queries.insert(
                id,
                Query {
                    socket,
                    port,
                    server: server.clone(),
                    tries: 1,
                    next: now + FIRST_RETRY,
                    request,
                },
            );
        }
        requests
    }

    /// Forgets the queries about a socket that is gone.
    pub fn forget(&mut self, socket: u64) {
        self.queries.retain(|_, q| q.socket != socket);
    }

    /// When a datagram from `from` answers one of our requests, what it says.
    pub fn answer(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<Mapped> {
        if self.queries.is_empty()
            || datagram.len() < 20
            || datagram[4..8] != MAGIC_COOKIE.to_be_bytes()
        {
            return None;
        }
        let mut message = Message::new();
        message.unmarshal_binary(datagram).ok()?;
        let query = self.queries.get(&message.transaction_id)?;
        if query.server.address != from || message.typ != BINDING_SUCCESS {
            return None;
        }
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&message).ok()?;
        let query = self.queries.remove(&message.transaction_id)?;
        Some(Mapped {
            socket: query.socket,
            address: SocketAddr::new(mapped.ip, mapped.port),
            url: query.server.url,
        })
    }

    /// Requests to send again (no answer yet); those out of tries are dropped.
    pub fn retries(&mut self, now: Instant) -> Vec<Request> {
        let mut requests = Vec::new();
        self.queries.retain(|_, query| {
            if query.next > now {
                return true;
            }
            if query.tries >= TRIES {
                tracing::warn!(
                    "STUN server {} did not answer: no server-reflexive candidate from it",
                    query.server.url
                );
                return false;
            }
            query.tries += 1;
            query.next = now + FIRST_RETRY * (1 << (query.tries - 1));
            requests.push(Request {
                socket: query.socket,
                port: query.port,
                to: query.server.address,
                data: query.request.clone(),
            });
            true
        });
        requests
    }

    /// Whether any request waits for an answer (the thread then keeps ticking).
    pub fn waiting(&self) -> bool {
        !self.queries.is_empty()
    }
}

fn binding_request() -> Option<(TransactionId, BytesMut)> {
    let mut message = Message::new();
    let id = TransactionId::new();
    let setters: [Box<dyn Setter>; 3] = [
        Box::new(BINDING_REQUEST),
        Box::new(id),
        Box::new(FINGERPRINT),
    ];
    message.build(&setters).ok()?;
    Some((id, BytesMut::from(&message.raw[..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> StunServer {
        StunServer {
            address: "192.0.2.1:3478".parse().unwrap(),
            url: "stun:192.0.2.1:3478".into(),
        }
    }

    /// The server's answer to `request`, saying the request came from `mapped`.
    fn answer_to(request: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let mut asked = Message::new();
        asked.unmarshal_binary(request).unwrap();
        let mut answer = Message::new();
        let setters: [Box<dyn Setter>; 3] = [
            Box::new(BINDING_SUCCESS),
            Box::new(asked.transaction_id),
            Box::new(XorMappedAddress {
                ip: mapped.ip(),
                port: mapped.port(),
            }),
        ];
        answer.build(&setters).unwrap();
        answer.raw
    }

    #[test]
    fn an_answer_names_the_socket_and_its_outside_address() {
        let now = Instant::now();
        let mut reflexive = Reflexive::new(vec![server()]);
        let requests = reflexive.ask(7, 5000, true, now);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].to, server().address);
        let outside: SocketAddr = "203.0.113.9:61000".parse().unwrap();
        let answer = answer_to(&requests[0].data, outside);
        // Not from the server: ignored.
        assert_eq!(
            reflexive.answer("192.0.2.2:3478".parse().unwrap(), &answer),
            None
        );
        let mapped = reflexive.answer(server().address, &answer).unwrap();
        assert_eq!(
            mapped,
            Mapped {
                socket: 7,
                address: outside,
                url: server().url
            }
        );
        // Answered once only.
        assert_eq!(reflexive.answer(server().address, &answer), None);
        assert!(!reflexive.waiting());
    }

    #[test]
    fn unanswered_requests_are_retried_then_given_up() {
        let now = Instant::now();
        let mut reflexive = Reflexive::new(vec![server()]);
        reflexive.ask(1, 5000, true, now);
        assert!(reflexive.retries(now).is_empty());
        let mut sent = 1;
        let mut at = now;
        for _ in 0..10 {
            at += Duration::from_secs(5);
            sent += reflexive.retries(at).len();
        }
        assert_eq!(sent, TRIES as usize);
        assert!(!reflexive.waiting());
    }

    #[test]
    fn only_servers_of_the_sockets_family_are_asked() {
        let mut reflexive = Reflexive::new(vec![server()]);
        assert!(reflexive.ask(1, 5000, false, Instant::now()).is_empty());
        reflexive.forget(1);
        assert!(!reflexive.waiting());
    }

    #[test]
    fn garbage_is_no_answer() {
        let mut reflexive = Reflexive::new(vec![server()]);
        reflexive.ask(1, 5000, true, Instant::now());
        for datagram in [&b""[..], &[0u8; 20][..], &[1u8; 64][..]] {
            assert_eq!(reflexive.answer(server().address, datagram), None);
        }
    }
}
