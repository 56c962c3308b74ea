//! Which leg a datagram on a shared socket belongs to.
//!
//! All legs of an engine thread share its socket, so a datagram is told apart by where it comes
//! from: a remote address belongs to the one leg that first talked with it, through a
//! connectivity check it sent there or a check that arrived from there naming its ICE username
//! fragment. After that, everything from the address (DTLS, SRTP, RTCP, STUN answers) goes to that
//! leg without being parsed.
//!
//! Two legs can meet the same remote address when the far end also serves several calls from one
//! port (another callbot, or two of our own legs on one socket). DTLS carries nothing that says
//! which call a record belongs to, so the address cannot be shared: the second leg is told
//! ([`Route::Collision`]) and moves to a socket of its own, trickling a candidate for it.

use std::collections::HashMap;
use std::net::SocketAddr;

use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{BINDING_REQUEST, MAGIC_COOKIE, MESSAGE_HEADER_SIZE, Message};

/// A leg, as its engine thread names it.
pub type LegId = u64;

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Leg(LegId),
    /// For this leg, but another leg already talks with that remote address on this socket.
    Collision(LegId),
    /// Nobody's: not a check for one of our legs from an address none of them knows.
    Unknown,
}

#[derive(Debug, Default)]
pub struct Router {
    ufrags: HashMap<String, LegId>,
    remotes: HashMap<SocketAddr, LegId>,
    /// The addresses each leg holds, to let go of them when it ends.
    held: HashMap<LegId, Vec<SocketAddr>>,
}

impl Router {
    /// Incoming checks naming `ufrag` (our local username fragment) are for `leg`.
    pub fn add_ufrag(&mut self, ufrag: &str, leg: LegId) {
        self.ufrags.insert(ufrag.to_owned(), leg);
    }

    /// Forgets the leg: its username fragments and the addresses it held.
    pub fn remove_leg(&mut self, leg: LegId) {
        self.ufrags.retain(|_, owner| *owner != leg);
        for address in self.held.remove(&leg).unwrap_or_default() {
            self.remotes.remove(&address);
        }
    }

    /// The leg a datagram from `from` belongs to.
    pub fn inbound(&mut self, from: SocketAddr, datagram: &[u8]) -> Route {
        let holder = self.remotes.get(&from).copied();
        let named = stun_request_ufrag(datagram).map(|ufrag| self.ufrags.get(&ufrag).copied());
        match (holder, named) {
            // A check naming a ufrag we do not know (a leg that has ended, say).
            (_, Some(None)) => Route::Unknown,
            (Some(holder), None) => Route::Leg(holder),
            (Some(holder), Some(Some(leg))) if holder == leg => Route::Leg(leg),
            (Some(_), Some(Some(leg))) => Route::Collision(leg),
            (None, Some(Some(leg))) => {
                self.hold(from, leg);
                Route::Leg(leg)
            }
            (None, None) => Route::Unknown,
        }
    }

    /// Whether `leg` may send to `to` from the shared socket; sending makes it the address's
    /// holder if nobody is.
    pub fn outbound(&mut self, leg: LegId, to: SocketAddr) -> Route {
        match self.remotes.get(&to) {
            Some(&holder) if holder == leg => Route::Leg(leg),
            Some(_) => Route::Collision(leg),
            None => {
                self.hold(to, leg);
                Route::Leg(leg)
            }
        }
    }

    fn hold(&mut self, address: SocketAddr, leg: LegId) {
        self.remotes.insert(address, leg);
        self.held.entry(leg).or_default().push(address);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.remotes.len()
    }
}

/// The local username fragment a STUN binding request names (`USERNAME` is
/// `<receiver's ufrag>:<sender's ufrag>`), if the datagram is one.
fn stun_request_ufrag(datagram: &[u8]) -> Option<String> {
    // RFC 7983: STUN starts with 0..=3; RFC 5389: the magic cookie follows type and length.
    if datagram.len() < MESSAGE_HEADER_SIZE
        || datagram[0] > 3
        || datagram[4..8] != MAGIC_COOKIE.to_be_bytes()
    {
        return None;
    }
    let mut message = Message::new();
    message.unmarshal_binary(datagram).ok()?;
    if message.typ != BINDING_REQUEST {
        return None;
    }
    let username = message.get(ATTR_USERNAME).ok()?;
    let username = String::from_utf8(username).ok()?;
    username.split(':').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_SUCCESS, Setter};
    use rtc::stun::textattrs::TextAttribute;

    fn check(username: &str) -> Vec<u8> {
        let mut message = Message::new();
        let username = TextAttribute::new(ATTR_USERNAME, username.to_owned());
        message
            .build(&[
                Box::new(BINDING_REQUEST),
                Box::new(rtc::stun::message::TransactionId::new()),
                Box::new(username) as Box<dyn Setter>,
            ])
            .unwrap();
        message.raw
    }

    fn answer() -> Vec<u8> {
        let mut message = Message::new();
        message
            .build(&[
                Box::new(BINDING_SUCCESS),
                Box::new(rtc::stun::message::TransactionId::new()),
            ])
            .unwrap();
        message.raw
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const DTLS: &[u8] = &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    #[test]
    fn a_check_naming_a_leg_makes_it_the_address_holder() {
        let mut router = Router::default();
        router.add_ufrag("aaaa", 1);
        router.add_ufrag("bbbb", 2);
        assert_eq!(router.inbound(address(5000), DTLS), Route::Unknown);
        assert_eq!(
            router.inbound(address(5000), &check("aaaa:zzzz")),
            Route::Leg(1)
        );
        assert_eq!(router.inbound(address(5000), DTLS), Route::Leg(1));
        assert_eq!(router.inbound(address(5000), &answer()), Route::Leg(1));
        assert_eq!(
            router.inbound(address(5001), &check("bbbb:yyyy")),
            Route::Leg(2)
        );
        assert_eq!(router.inbound(address(5001), DTLS), Route::Leg(2));
        assert_eq!(
            router.inbound(address(5002), &check("cccc:yyyy")),
            Route::Unknown
        );
    }

    #[test]
    fn sending_first_holds_the_address() {
        let mut router = Router::default();
        router.add_ufrag("aaaa", 1);
        assert_eq!(router.outbound(1, address(6000)), Route::Leg(1));
        assert_eq!(router.inbound(address(6000), &answer()), Route::Leg(1));
        assert_eq!(router.outbound(1, address(6000)), Route::Leg(1));
    }

    #[test]
    fn a_second_leg_on_a_held_address_collides() {
        let mut router = Router::default();
        router.add_ufrag("aaaa", 1);
        router.add_ufrag("bbbb", 2);
        assert_eq!(router.outbound(1, address(7000)), Route::Leg(1));
        assert_eq!(router.outbound(2, address(7000)), Route::Collision(2));
        assert_eq!(
            router.inbound(address(7000), &check("bbbb:x")),
            Route::Collision(2)
        );
        // The holder's own traffic is unaffected.
        assert_eq!(
            router.inbound(address(7000), &check("aaaa:x")),
            Route::Leg(1)
        );
        assert_eq!(router.inbound(address(7000), DTLS), Route::Leg(1));
    }

    #[test]
    fn an_ended_leg_lets_go() {
        let mut router = Router::default();
        router.add_ufrag("aaaa", 1);
        router.add_ufrag("bbbb", 2);
        assert_eq!(router.outbound(1, address(8000)), Route::Leg(1));
        router.remove_leg(1);
        assert_eq!(router.held(), 0);
        assert_eq!(router.inbound(address(8000), DTLS), Route::Unknown);
        assert_eq!(
            router.inbound(address(8000), &check("aaaa:x")),
            Route::Unknown
        );
        assert_eq!(router.outbound(2, address(8000)), Route::Leg(2));
    }

    #[test]
    fn garbage_is_nobodys() {
        let mut router = Router::default();
        router.add_ufrag("aaaa", 1);
        for datagram in [&b""[..], &[0u8; 19][..], &[0u8; 64][..], &[1, 1, 0, 4][..]] {
            assert_eq!(router.inbound(address(9000), datagram), Route::Unknown);
        }
        // A STUN header that lies about its length.
        let mut bad = check("aaaa:x");
        bad[3] = 0xff;
        assert_eq!(router.inbound(address(9000), &bad), Route::Unknown);
    }
}
